"""Load-dependent failures found by the demo and the functional tests, replayed deterministically.

Each test drives the sans-IO protocol with the interleaving that failed under load (see the module's
functions for the exact story) and fails on the code before the fix.
"""

from __future__ import annotations

import pytest

from node.stores.offerbook import OfferBook
from node.protocols.base import Notify, Publish, SetTimer, TimerFired
from node.protocols.offers import OffersProtocol, OwnSheet, decode_sheet
from node.tee.client import EnclaveRefused

from tests.protocols.offerkit import NET, NOW, Vault, cache, make_offers


def test_a_refused_republish_keeps_the_republish_timer_and_later_carries_the_retraction(tmp_path):
    """demo stage 7 timed out: "bob's book holding alice's one BTC-REG chunk left". alice's republish timer
    fired while her escrowed chunk was committed to the open escrow contract (still in her sheet until its
    release); her enclave rightly refused to sign a sheet offering a committed key (I4). The refusal escaped
    ``handle``, the driver dropped the event, and with it the timer's re-arm: alice never re-announced again,
    and the retraction of the released chunk (queued for the next sheet) never left her node."""
    v = Vault("12D3KooFlakeAlice", n=3, seed=b"f")
    refusing = {"on": False}

    def sign(body: bytes, pubs: list[bytes]) -> bytes:
        if refusing["on"] and v.keys[0] in pubs:  # what the enclave answers while key 0 is committed
            raise EnclaveRefused(f"item 0: key {v.keys[0].hex()[:16]}... is committed to open contract "
                                 "b06757afc451333b...; it is not offered", "committed")
        return v.enc.sign_offer_sheet(body, pubs)

    p = OffersProtocol(net=NET, book=OfferBook(tmp_path / "book.sqlite"), attestations=cache(),
                       republish_interval=2.0)
    p.local_peer = v.peer
    own = OwnSheet(make_offers(v.keys), [], v.quote, v.binding, sign, committed=v.keys)
    first = p.set_own_sheet(own, NOW)
    assert any(isinstance(c, Publish) for c in first)
    refusing["on"] = True  # key 0 committed to the escrow; the republish timer fires now
    cmds = p.handle(TimerFired("offers.republish"), NOW + 2)
    timers = [c for c in cmds if isinstance(c, SetTimer) and c.name == "offers.republish"]
    assert timers and timers[0].at <= NOW + 2 + 2.0, cmds  # retried soon: the commitment is transient
    assert any(isinstance(c, Notify) and "committed" in str(c.detail) for c in cmds), cmds
    assert not any(isinstance(c, Publish) for c in cmds)
    # the escrow released key 0: the desk drops it from the sheet and queues its retraction (_retract_pub)
    refusing["on"] = False
    own.offers = [o for o in own.offers if o.pubkey != v.keys[0]]
    own.retracted.append(v.keys[0])
    cmds = p.handle(TimerFired("offers.republish"), timers[0].at)
    pubs = [c for c in cmds if isinstance(c, Publish)]
    assert pubs, cmds
    assert any(isinstance(c, SetTimer) and c.name == "offers.republish" for c in cmds)
    _, body = decode_sheet(pubs[0].data)
    assert [bytes(k) for k in body.retracted] == [v.keys[0]] and len(body.offers) == 2


# ---------------------------------------------------------------- the demo's double sale (stage 8)
def _rows(side) -> dict[str, dict]:
    """A side's release contracts as ``/v1/contracts`` lists them (``SwapDesk.contracts``: the fields the demo
    reads)."""
    out = {}
    for key, c in side.proto.contracts.items():
        row = {"contract": key, "peer": c.rec.peer, "state": c.rec.state, "reason": c.rec.reason}
        if c.outcome is not None:
            row["outcome"] = c.outcome.to_json()
        out[key] = row
    return out


def _mallory_sells_to_carol_and_dave(tmp_path):
    """mallory (a BROKEN double-release enclave) and her two buyers, each expecting a swap of her one chunk:
    (mallory, carol, dave, the pair driving them, carol's schedule, dave's schedule)."""
    from node.ledger.devnet import DevLedger
    from node.protocols.schedule import swap_schedule
    from node.tee.broken import BrokenEnclave

    from tests.protocols.release_kit import Pair, Side

    ledger = DevLedger(None, automine=True)
    m = Side("A", tmp_path, ledger, 1, enclave_factory=lambda d: BrokenEnclave(d, mode="double-release"))
    carol, dave = Side("B", tmp_path, ledger, 1), Side("C", tmp_path, ledger, 1)
    pair = Pair(m, carol, dave)
    pair.run(until=0)
    s1, s2 = swap_schedule(m.chunks, carol.chunks), swap_schedule(m.chunks, dave.chunks)
    carol.expect(m.peer_id, s1)
    dave.expect(m.peer_id, s2)
    return m, carol, dave, pair, s1, s2


def _double_sale(tmp_path, *, late: bool):
    """mallory (a BROKEN double-release enclave) sells her one chunk to carol and to dave. ``late``: dave's
    hello comes once carol's contract has ended (carol swept the chunk), as under load in the demo."""
    from node.protocols.release import DONE, FAILED, WITHHELD
    from node.protocols.schedule import contract_id

    m, carol, dave, pair, s1, s2 = _mallory_sells_to_carol_and_dave(tmp_path)
    cid1 = contract_id(s1, [m.binding, carol.binding])
    pair.call(m, m.proto.propose, carol.peer_id, s1)
    if late:
        pair.run(until=60, done=lambda: carol.proto.state(cid1) in (DONE, FAILED, WITHHELD))
        assert carol.proto.state(cid1) == DONE  # carol got the key and swept it
    pair.call(m, m.proto.propose, dave.peer_id, s2)
    pair.run(until=200)
    return m, carol, dave


def test_the_double_sale_raced_late_the_second_victim_refuses_and_the_demo_wait_ends(tmp_path):
    """demo stage 8 hung ("timed out: both contracts ending", ~1 run in 8, idle machine too): mallory's two
    sales race. When dave's hello (its funds check of mallory's chunk) comes after carol swept that chunk,
    dave rightly refuses the sale ("funds": gone) and never opens a contract; mallory's proposal fails; no key
    is released twice. The demo waited for dave's contract with mallory to end: it never existed, so the wait
    could only time out. ``sale_end`` sees the refusal from mallory's side."""
    from node.dev.demo import sale_end

    m, carol, dave = _double_sale(tmp_path, late=True)
    assert dave.proto.contracts == {}  # dave never agreed: nothing of his moved
    assert any(n.kind == "release.refused" and n.detail["code"] == "funds" for n in dave.notes), dave.notes
    assert m.raw.releases == 0  # the broken enclave released no key twice: there is nothing to prove
    # the old wait: dave's last contract with mallory, once ended; there is none, so it never ends
    assert [r for r in _rows(dave).values() if r["peer"] == m.peer_id] == []
    end = sale_end(_rows(dave), {k: r for k, r in _rows(m).items() if r["peer"] == dave.peer_id}, set())
    assert end is not None and end[0] == "refused", end
    assert end[1]["state"] == "failed" and "funds" in end[1]["reason"]
    end = sale_end(_rows(carol), {k: r for k, r in _rows(m).items() if r["peer"] == carol.peer_id}, set())
    assert end is not None and end[0] == "ended" and end[1]["outcome"]["status"] == "claimed"


def test_the_double_sale_on_time_releases_twice_and_both_sales_end(tmp_path):
    """Both hellos before either sweep (the demo's usual order): the key goes out twice, one victim claims,
    the other finds the funds gone; ``sale_end`` gives both victims' ended contracts."""
    from node.dev.demo import sale_end

    m, carol, dave = _double_sale(tmp_path, late=False)
    assert m.raw.releases == 1  # the second release of the one key
    ends = [sale_end(_rows(v), {k: r for k, r in _rows(m).items() if r["peer"] == v.peer_id}, set())
            for v in (carol, dave)]
    assert all(e is not None and e[0] == "ended" for e in ends), ends
    assert {e[1]["outcome"]["status"] for e in ends} == {"claimed", "double-spent"}


def test_a_double_sale_refused_at_its_offer_ends_that_sale_and_the_cheater_tries_again():
    """demo stage 8 failed (1 demo run in 4 at load ~35, 2026-12-07: "mallory -> carol: the peer refused: chunk
    bcrt1q... is not an offer of <mallory> in this node's book"): mallory's two offers race. dave agreed first,
    mallory's honest host took the chunk off her sheet at once (02:28:11.53), carol's book held that sheet
    (11.66) before mallory's offer to carol was checked, and carol refused the offer. No contract was proposed
    to carol, so nothing of hers can ever end; the stage gave up on any error. A refusal at the offer is an
    ended sale (tried again with the next chunk); an error that is not the peer's answer is not."""
    from node.dev.demo import offer_end, sale_end

    refusal = RuntimeError("mallory /v1/contracts: the peer refused: [REFUSED] chunk bcrt1qnrsq is not an offer "
                           "of 12D3KooWDp in this node's book")
    end = offer_end(refusal)
    assert end == ("refused", {"state": "failed", "reason": "[REFUSED] chunk bcrt1qnrsq is not an offer of "
                                                             "12D3KooWDp in this node's book"}), end
    assert sale_end({}, {}, set()) is None  # what the rows of a sale refused at its offer say: never an end
    assert offer_end({"state": "agreed", "rounds": 2}) is None
    assert offer_end(RuntimeError("mallory /v1/contracts: the peer did not answer the contract offer in time")) is None


def test_two_sales_of_different_chunks_are_not_the_double_sale_and_are_tried_again():
    """Found with an injected order (mallory's sale to dave posted 5 s before her sale to carol, as a loaded
    machine may): mallory's node planned the second sale after the first had committed its chunk, so it sold
    carol its next chunk; both victims claimed, nothing was released twice, and the stage would wait a minute
    for a proof that cannot exist. Only two sales of one chunk are the double sale."""
    from node.dev.demo import one_chunk_sold_twice

    def row(address, status):
        return {"state": "done", "outcome": {"status": status, "chunks": [{"address": address, "asset": "BTC-REG"}]}}

    assert not one_chunk_sold_twice(row("bcrt1qu552", "claimed"), row("bcrt1qyuh7", "claimed"))
    assert one_chunk_sold_twice(row("bcrt1qu552", "claimed"), row("bcrt1qu552", "double-spent"))
    assert not one_chunk_sold_twice(row("bcrt1qu552", "claimed"), {"state": "failed", "reason": "refused"})


@pytest.mark.parametrize("first_answers_first", [True, False])
def test_a_resent_hello_refused_after_its_first_copy_was_agreed_leaves_no_half_open_contract(tmp_path,
                                                                                           first_answers_first):
    """Under load a victim's funds check of the hello takes longer than the proposer's request timeout (2 s):
    mallory resends the hello. The first copy's check (funds there) agrees and opens dave's contract; the
    resent copy's check runs after carol swept the chunk and answered "funds" -- so mallory dropped a
    contract dave had agreed to, and dave's side waited (its chunk committed) until its deadline, withheld.
    The same contract's hello must get the same answer: once agreed, a later copy is answered as agreed; once
    refused for funds, a later answer of an earlier copy refuses too (the checks run in worker threads: either
    may end first)."""
    from node.protocols.base import LedgerCall, ResponseReceived, TaskDone
    from node.protocols.interpret import LedgerAdapters, run_ledger_call
    from node.protocols.release import DONE, FAILED, RUNNING, WITHHELD
    from node.protocols.schedule import contract_id

    from tests.protocols.release_kit import NOW as T0

    m, carol, dave, pair, s1, s2 = _mallory_sells_to_carol_and_dave(tmp_path)
    cid1, cid2 = contract_id(s1, [m.binding, carol.binding]), contract_id(s2, [m.binding, dave.binding])
    pair.call(m, m.proto.propose, carol.peer_id, s1)
    pair.call(m, m.proto.propose, dave.peer_id, s2)
    # dave's first hello check runs now (funds there) but its answer is late: mallory's request times out
    # and the retry timer resends the hello; the resent copy's check runs once carol has swept the chunk
    held: list = []

    def check(task):  # dave's funds check, run now (the interpreter's way: dave's own ledger adapters)
        done = run_ledger_call(task, LedgerAdapters.of(dave.proto))
        assert done.error is None, done.error
        return done.result

    while pair.now < T0 + 120:
        q = pair.queue
        if q and q[0][0] == dave.peer_id and isinstance(q[0][2], LedgerCall) and q[0][2].name.startswith("release.hello:"):
            peer, gen, task = q.popleft()
            if not held:  # mallory's request times out (2 s): dave's answer to this copy goes nowhere
                src, sgen, rid, proto = pair.calls.pop(int(task.name.split(":")[1]))
                q.append((src, sgen, ResponseReceived(proto, dave.peer_id, rid, b"", "timeout")))
            held.append((peer, gen, task, check(task) if not held else None))
            continue
        if len(held) == 2 and carol.proto.state(cid1) == DONE and not q:
            (p1, g1, t1, r1), (p2, g2, t2, _) = held
            one = (p1, g1, TaskDone(t1.name, r1))  # the first copy: funds were there when it checked
            two = (p2, g2, TaskDone(t2.name, check(t2)))  # the resent copy: checked after carol's sweep
            q.extend([one, two] if first_answers_first else [two, one])
            held.append(None)
            continue
        if not pair.step():
            break
        if len(held) == 3 and all(s.proto.state(c) in (DONE, FAILED, WITHHELD)
                                  for s, c in ((carol, cid1), (dave, cid2))):
            break
    assert len(held) == 3, f"the interleaving was not reached ({len(held)} hello checks held)"
    assert any(n.kind == "release.refused" for n in dave.notes) or dave.proto.state(cid2) is not None
    # dave agreed once: the contract must not be half open (dave waiting, mallory failed)
    d_state, m_state = dave.proto.state(cid2), m.proto.state(cid2)
    m_rec = next(c.rec for c in m.proto.contracts.values() if c.rec.peer == dave.peer_id)
    assert not (d_state in (RUNNING, WITHHELD) and m_rec.state == FAILED), (d_state, m_rec.state, m_rec.reason)
    if first_answers_first:  # dave agreed, then mallory released: dave took the key and found the funds gone
        assert d_state in (DONE, FAILED), (d_state, dave.proto.contracts[cid2.hex()].rec.reason)
    else:  # dave refused: no contract on his side, and mallory's proposal failed
        assert d_state is None and m_rec.state == FAILED, (d_state, m_rec.state)
