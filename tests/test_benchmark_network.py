"""benchmarks/network: the figures ``summarize`` derives from the nodes' publish and arrival times."""

from benchmarks._netproc import RAW
from benchmarks.network import SHEETS, summarize


def node(published, labels, arrived, duplicates, validated):
    marks = [{"step": s, "cpu": float(s), "validate_s": 0.1 * s, "book_s": 0.01 * s} for s in range(4)]
    return {"published": published, "labels": labels, "arrived": arrived, "duplicates": duplicates,
            "validated": validated, "validate_s": 0.004, "sheet_bytes": 12_000, "book_offers": 100, "own_offers": 100,
            "attestation_verifications": 1, "reject": 0, "marks": marks, "reasons": {"ignore": {"stale sequence": 1}}}


def test_summary_rates_latencies_and_duplicates():
    # two nodes, one pair of rounds: raw at t=10, sheets at 30, raw burst at 20, sheet burst at 40
    a = node({"raw:A:1": 10.0, "raw:A:1000": 20.0, "sheet:A:500": 30.0, "sheet:A:700": 40.0},
             {"A:500": 1, "A:700": 100},
             {"raw:B:1": 11.0, "raw:B:1000": 20.4, "sheet:B:600": 30.5, "sheet:B:800": 41.0},
             {RAW: 2, SHEETS: 1}, validated=2)
    b = node({"raw:B:1": 10.0, "raw:B:1000": 20.0, "sheet:B:600": 30.0, "sheet:B:800": 40.0},
             {"B:600": 1, "B:800": 100},
             {"raw:A:1": 10.5, "raw:A:1000": 20.2, "sheet:A:500": 31.0, "sheet:A:700": 40.5},
             {SHEETS: 3}, validated=2)
    r = summarize([a, b], n=2, offers=100, rounds=1, raw_burst=1, sheet_burst=1)
    assert (r["raw_p50"], r["raw_p99"], r["sheet_p99"]) == (1.0, 1.0, 1.0)
    assert r["raw_oneshot_msgs_per_s"] == 2.0  # 2 deliveries, first publish to last arrival 1 s
    assert r["sheet_time_all_books"] == 1.0 and r["oneshot_offers_per_s"] == 200.0
    assert abs(r["raw_msgs_per_s"] - 5.0) < 1e-9 and r["offers_per_s"] == 200.0
    assert r["raw_delivered_frac"] == r["sheet_delivered_frac"] == 1.0
    assert (r["dup_raw"], r["dup_sheet"]) == (0.5, 1.0)  # 2 raw copies over 4 firsts; 4 sheet copies over 4
    assert r["ignores"] == {"stale sequence": 2} and r["books_full"] == 2
    assert abs(r["cpu_sheet"] - 2.0) < 1e-9 and abs(r["cpu_raw"] - 2.0) < 1e-9  # marks 1->2 and 0->1, two nodes
    assert r["raw_round_times"] == [1.0] and r["pair_x"] == [100.0] and r["pair_x_median"] == 100.0


def test_rounds_come_in_interleaved_pairs_and_each_pair_is_compared_with_itself():
    from benchmarks._netproc import round_gap, schedule

    plan = schedule(3, 10, 2, 20)
    assert [(k, first) for _, k, first, _ in plan] == [
        ("raw", 1), ("sheet", 1), ("sheet", 2), ("raw", 2), ("raw", 3), ("sheet", 3), ("raw", 1000), ("sheet", 100)]
    assert [t for t, *_ in plan[:7]] == [i * round_gap(20) for i in range(7)]
    assert plan[7][0] == plan[6][0] + 3 * round_gap(20) and plan[6][3] == 10 and plan[7][3] == 2

    # two nodes, two pairs: pair 1 raw 1 s / sheets 2 s (50x), pair 2 raw 1.5 s / sheets 1 s (150x)
    def one(me, seqs):
        pub = {f"raw:{me}:1": 0.0, f"sheet:{me}:{seqs[0]}": 10.0, f"sheet:{me}:{seqs[1]}": 20.0,
               f"raw:{me}:2": 30.0, f"raw:{me}:1000": 40.0, f"sheet:{me}:{seqs[2]}": 50.0}
        return pub, {f"{me}:{q}": lab for q, lab in zip(seqs, (1, 2, 100))}

    pa, la = one("A", (11, 12, 13))
    pb, lb = one("B", (21, 22, 23))
    arr_b = {"raw:A:1": 1.0, "sheet:A:11": 12.0, "sheet:A:12": 21.0, "raw:A:2": 31.5, "raw:A:1000": 40.5,
             "sheet:A:13": 51.0}
    arr_a = {"raw:B:1": 0.5, "sheet:B:21": 11.0, "sheet:B:22": 20.5, "raw:B:2": 31.0, "raw:B:1000": 40.5,
             "sheet:B:23": 51.0}
    marks = [{"step": s, "cpu": 10.0 * s + (5 if s == 2 else 0), "validate_s": 1.0 * s, "book_s": 0.5 * s}
             for s in range(6)]
    common = {"duplicates": {}, "validated": 2, "validate_s": 0.0, "sheet_bytes": 1, "book_offers": 100,
              "own_offers": 100, "attestation_verifications": 1, "reject": 0, "marks": marks, "reasons": {}}
    a = {**common, "published": pa, "labels": la, "arrived": arr_a}
    b = {**common, "published": pb, "labels": lb, "arrived": arr_b}
    r = summarize([a, b], n=2, offers=100, rounds=2, raw_burst=1, sheet_burst=1)
    assert r["raw_round_times"] == [1.0, 1.5] and r["sheet_round_times"] == [2.0, 1.0]
    assert r["pair_x"] == [50.0, 150.0] and r["pair_x_median"] == 100.0
    # steps: 0 raw 1, 1 sheet 1, 2 sheet 2, 3 raw 2; each round's window runs to the next step's mark
    assert r["cpu_raw"] == 2 * (10 + 10) and r["cpu_sheet"] == 2 * (15 + 5)
    # figure (a): own work (validation 1 s + book 0.5 s a step) over the round's CPU: first sight 1.5/15, then 1.5/5
    assert abs(r["own_share_first"] - 0.1) < 1e-9 and abs(r["own_share_again"] - 0.3) < 1e-9


def test_a_small_one_process_run_publishes_every_scheduled_sheet_and_fills_every_book(tmp_path):
    """Three real nodes on 127.0.0.1 in one process (``--one-process``): every scheduled sheet is published
    (re-signed each time, the offers unchanged), none before the schedule (so round 1 is the first sight of
    every origin), and every book ends up holding every other node's offers."""
    import trio

    from benchmarks.network import bench_one_process

    n, offers = 3, 4
    sts, _ = trio.run(bench_one_process, n, offers, 1, 5, tmp_path, 1, 2)
    r = summarize(sts, n=n, offers=offers, rounds=1, raw_burst=1, sheet_burst=2, shared_process=True)
    assert r["books_full"] == n and r["own_offers"] == offers, r
    for st in sts:
        sheets = sorted(k for k in st["published"] if k.startswith("sheet:"))
        assert len(sheets) == 1 + 2, st["published"]  # the round and the burst of two: nothing at start
        assert st["labels"] and sorted(st["labels"].values()) == [1, 100, 101]
        assert st["accept"] >= n - 1 and st["reject"] == 0 and st["attestation_verifications"] == n - 1


def test_the_cost_comparison_graph_report_and_a_small_run_of_our_node(tmp_path):
    """benchmarks/_netcost: every node dials only earlier ones and the graph is connected; the report compares
    with stock py-libp2p against the goal; two of our node processes deliver every message of a round, counted
    once each and never their own (two of them: a process takes seconds to start on a loaded machine)."""
    from benchmarks._netcost import graph, report, run_impl

    g = graph(6, 7)
    assert all(j < i for i, js in enumerate(g) for j in js) and 0 in g[5]
    reach, todo = {0}, [0]
    while todo:
        x = todo.pop()
        for y in [j for i, js in enumerate(g) if i == x for j in js] + [i for i, js in enumerate(g) if x in js]:
            if y not in reach:
                reach.add(y)
                todo.append(y)
    assert reach == set(range(6))
    rows = [{"impl": "ours", "ms_per_delivery": 1.0, "gross_ms_per_delivery": 1.2, "delivered": 6, "expected": 6,
             "elapsed": 1.0, "cpu": 1.0, "idle_rate": 0.1, "n": 3, "lost_rounds": 0},
            {"impl": "stock", "ms_per_delivery": 4.0, "gross_ms_per_delivery": 4.0, "delivered": 6, "expected": 6,
             "elapsed": 1.0, "cpu": 1.0, "idle_rate": 0.0, "n": 3, "lost_rounds": 0},
            {"impl": "js", "skipped": "node is not installed"}]
    lines = report(rows)
    assert "ours / stock py-libp2p: 0.25 (goal <= 0.5: met)" in lines[-1] and "skipped (node is not installed)" in lines[2]
    r = run_impl("ours", 2, 2, 7, tmp_path, idle=0.5, settle=0.5)
    assert r["delivered"] == r["expected"] == 2 * 2 * 1 and r["lost_rounds"] == 0, r
    assert r["cpu"] > 0 and r["ms_per_delivery"] > 0, r


def test_the_cost_comparison_counts_a_few_milliseconds_of_cpu():
    """A small run's rounds take a few ms of CPU: /proc/PID/stat's clock ticks (10 ms) read 0 for them (the small
    run's ``cpu`` was 0.0 on a loaded machine); the per-thread scheduler count sees 3 ms of work."""
    import os
    import time

    from benchmarks._netcost import cpu_between, thread_cpu_ns

    before = thread_cpu_ns([os.getpid()])
    end = time.thread_time() + 0.003
    while time.thread_time() < end:
        pass
    spent = cpu_between(before, thread_cpu_ns([os.getpid()]))
    assert 0.003 <= spent < 0.5, spent

