"""The demo's stage 8 (``node.dev.demo``): the broken TEE sells one chunk twice, the victims' reports meet, the
proof of cheating goes round and every node drops the device; with how a sale of it ended (``sale_end``,
``offer_end``, ``one_chunk_sold_twice``), which the flake tests check alone."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from node.dev.demo_net import LocalNet, Story


def _view_of(net: LocalNet, name: str, cheater: str, device: str) -> dict:
    """``name``'s view of the cheater's device: reputation, offers in its book, revocations, proofs."""
    rep = next((r for r in net.get(name, "/v1/reputation")["devices"] if r["device"] == device), None)
    offers = [o for o in net.get(name, "/v1/offers?limit=500")["offers"] if o["device_id"] == device]
    st = net.get(name, "/v1/status")
    revs = [r for r in st["revocations"].get("applied", [])
            if r.get("evidence") == "cheating-proof" and r["target"] == device]
    return {"score": None if rep is None else rep["score"], "cheater": bool(rep and rep["cheater"]),
            "offers": len(offers), "revocations": revs, "proofs": st["outcomes"].get("proofs", 0),
            "published": st["revocations"].get("proofs_published", 0),
            "confirmed": st["outcomes"].get("confirmed", 0)}


def _contracts_with(net: LocalNet, name: str, peer: str) -> dict[str, dict]:
    """``name``'s release contracts with ``peer`` (contract key -> row)."""
    return {c["contract"]: c for c in net.get(name, "/v1/contracts")["contracts"]
            if c.get("peer") == net.nodes[peer].peer}


ENDED = ("done", "withheld", "failed")


def sale_end(victim_rows: dict[str, dict], cheater_rows: dict[str, dict], before: set[str]) -> tuple[str, dict] | None:
    """How one sale of the double-selling stage ended, from both sides' contract rows (``/v1/contracts``) and
    the contract keys known before it started: ("ended", the victim's row) once the victim's new contract
    ended with an outcome; ("refused", the cheater's row) when the victim never opened one and the cheater's
    proposal failed (the victim refused the hello: an honest node checks the offered chunk's funds before it
    agrees, and they were gone, swept by the other victim); None while it runs."""
    mine = [r for k, r in sorted(victim_rows.items()) if k not in before]
    for r in mine:
        if r["state"] in ENDED and "outcome" in r:
            return "ended", r
    if mine:
        return None
    theirs = [r for k, r in sorted(cheater_rows.items()) if k not in before]
    if theirs and all(r["state"] in ENDED for r in theirs):
        return "refused", theirs[-1]
    return None


def one_chunk_sold_twice(row1: dict, row2: dict) -> bool:
    """Whether two ended sales (victims' ``/v1/contracts`` rows with their outcomes) received the same chunk of
    the cheater: the double sale. When the cheater's node plans its second sale after the first one's agreement
    (both API calls race inside the cheater's node, the second later on a loaded machine), the first chunk is
    already off its sheet and the second sale takes the next: two honest sales."""
    got = [{ch.get("address") for ch in r.get("outcome", {}).get("chunks", [])} for r in (row1, row2)]
    return bool(got[0] & got[1])


def offer_end(answer) -> tuple[str, dict] | None:
    """How one sale of the double-selling stage ended at its offer, from the cheater's API answer to
    ``POST /v1/contracts``: ("refused", a row with the reason) when the victim refused the contract offer (no
    contract was proposed, so ``sale_end`` would never see one end). The usual refusal: the other victim agreed
    first, the cheater's (honest) host took the chunk off its sheet at once, and this victim's book held that
    sheet before the cheater's offer came (the two offers race, more often on a loaded machine). None otherwise
    (agreed, or an error that is not the peer's answer)."""
    if isinstance(answer, Exception) and "the peer refused:" in str(answer):
        return "refused", {"state": "failed", "reason": str(answer).split("the peer refused:", 1)[1].strip()}
    return None


def stage_cheat(console: Console, net: LocalNet, story: Story) -> bool:
    """The broken TEE sells one chunk twice; the victims' reports meet; the proof goes round; all drop it.

    The double release needs both victims to agree before either sweeps the key: each victim checks the
    chunk's funds on the ledger before agreeing, and a sweep already sent makes them gone. When the second
    victim's check comes after the first victim's sweep (the two sales race; about 1 run in 8), it refuses
    the sale and no key is released twice: that sale ends at once (``sale_end``), and the cheater tries again
    with its next chunk (``story.deposits`` gives it ``CHEAT_ATTEMPTS`` tries). The two sales race inside the
    cheater's node too: a victim that refused the offer (``offer_end``: the chunk left the sheet when the other
    agreed) or a second sale planned with the next chunk (``one_chunk_sold_twice``) is tried again the same way."""
    cheater, (v1, v2) = story.cheater, story.victims
    console.rule(f"[bold]8. A broken TEE: {cheater} sells one BTC-REG chunk to {v1} and to {v2} at once")
    peer = net.nodes[cheater].peer
    story.device = next(o["device_id"] for o in net.get(v1, "/v1/offers?limit=500")["offers"] if o["origin"] == peer)
    story.before = {n: _view_of(net, n, cheater, story.device) for n in net.nodes if n != cheater}
    console.print(f"{cheater}'s enclave rolls its sealed state back after a release, so it releases the same "
                  "deposit key again; an honest enclave refuses a second release")
    ends: dict[str, tuple[str, dict]] = {}
    for attempt in range(1, CHEAT_ATTEMPTS + 1):
        before = {v: set(_contracts_with(net, v, cheater)) | set(_contracts_with(net, cheater, v)) for v in (v1, v2)}
        got = net.parallel([lambda v=v: net.post(cheater, "/v1/contracts", {
            "peer": net.nodes[v].peer, "give": "BTC-REG", "take": "ETH-DEV", "chunks": 1}) for v in (v1, v2)])
        ends = {v: e for v, r in zip((v1, v2), got) if (e := offer_end(r)) is not None}
        for v, r in zip((v1, v2), got):
            console.print(f"  {cheater} -> {v}: " + (
                "refused at the offer" if v in ends else f"[red]{r}[/red]" if isinstance(r, Exception) else
                f"agreed ({r['rounds']} rounds: {cheater}'s chunk first)"))
        if any(isinstance(r, Exception) and v not in ends for v, r in zip((v1, v2), got)):
            return False

        def both_ended() -> bool:
            for v in (v1, v2):
                if v not in ends:
                    e = sale_end(_contracts_with(net, v, cheater), _contracts_with(net, cheater, v), before[v])
                    if e is not None:
                        ends[v] = e
            return len(ends) == 2

        net.until(both_ended, "both contracts ending")
        refused = [v for v in (v1, v2) if ends[v][0] == "refused"]
        if not refused and one_chunk_sold_twice(ends[v1][1], ends[v2][1]):
            break
        if not refused:
            console.print(f"  [yellow]{cheater}'s node sold two different chunks[/yellow]: it planned the second sale "
                          "after the first had taken its chunk off the sheet -- two honest sales, nothing to prove")
        for v in refused:
            why = ("the chunk had left the cheater's sheet when the other victim agreed" if "book" in
                   ends[v][1]["reason"] else "the other victim had swept the chunk before this check")
            console.print(f"  [yellow]{v} refused the sale[/yellow]: {ends[v][1]['reason'][:120]} -- {why}, so no "
                          "key went out twice and there is nothing to prove")
        if attempt < CHEAT_ATTEMPTS:
            console.print(f"  {cheater} tries again with its next BTC-REG chunk")
    else:
        console.print(f"[red]no attempt sold one chunk twice; logs in {net.root}[/red]")
        return False
    t = Table(title=f"the victims' contracts with {cheater}")
    for col in ("victim", "received", "released", "lost", "chunk", "outcome", "state"):
        t.add_column(col)
    statuses = set()
    for v in (v1, v2):
        c = ends[v][1]
        o = c["outcome"]
        ch = next((x for x in o["chunks"]), {})
        statuses.add(o["status"])
        what = (f"[green]claimed[/green] ({ch.get('txid', '')[:10]}...)" if o["status"] == "claimed" else
                f"[red]{o['status']}[/red]: {ch.get('detail', o['reason'])[:60]}")
        t.add_row(v, str(o["received"]), str(o["released"]), str(o["lost"]),
                  f"{ch.get('asset', '')} {ch.get('address', '')[:14]}...", what, c["state"])
    console.print(t)
    console.print("the first sweep of the key wins on the ledger; the other victim finds the funds gone, stops "
                  "before releasing its own chunk, and reports the double spend. Both reports carry the release "
                  "record each victim received, signed by the cheater's enclave")
    honest = [n for n in net.nodes if n != cheater]

    def caught() -> bool:
        views = [_view_of(net, n, cheater, story.device) for n in honest]
        # The first node to gossip the proof may be the cheater's own: its host software is honest and
        # assembles the proof from the same reports; only its TEE is broken.
        published = sum(net.get(n, "/v1/status")["revocations"].get("proofs_published", 0) for n in net.nodes)
        return all(v["cheater"] and v["offers"] == 0 and v["revocations"] for v in views) and published >= 1

    try:
        net.until(caught, "every node dropping the cheater", timeout=60)
    except RuntimeError as exc:
        console.print(f"[red]{exc}; logs in {net.root}[/red]")
        return False
    ok = statuses == {"claimed", "double-spent"}
    console.print(f"[green]{cheater} was caught: the two release records met in the outcome reports, the proof of "
                  "cheating was assembled and gossiped, and every node dropped the device[/green]" if ok else
                  f"[red]unexpected outcomes {sorted(statuses)}; logs in {net.root}[/red]")
    return ok


CHEAT_ATTEMPTS = 3  # double sales tried: each victim's ETH-DEV chunks (one a try), the cheater's twice that
