"""The demo's summary (``node.dev.demo``): who traded what, which chunks moved, the contracts in the contract
language, and every node's view of the cheater before and after."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from node.dev.demo_net import LocalNet, Story
from node.dev.demo_contracts import _run_row
from node.dev.demo_cheat import _view_of


def stage_summary(console: Console, net: LocalNet, story: Story) -> None:
    console.rule("[bold]Summary")
    seen: set[str] = set()
    trades = Table(title="who traded what")
    for col in ("contract", "initiator", "gave", "responder", "gave", "state"):
        trades.add_column(col)
    moved = Table(title="which chunks moved")
    for col in ("contract", "chunk", "from", "to", "what became of it"):
        moved.add_column(col)
    for n in net.nodes:
        for c in net.get(n, "/v1/contracts")["contracts"]:
            if c["role"] != "initiator" or c["contract"] in seen or "outcome" not in c:
                continue
            seen.add(c["contract"])
            peer = net.name_of(c["peer"])
            mine = next((r for r in net.get(peer, "/v1/contracts")["contracts"]
                         if r["contract"] == c["contract"] and "outcome" in r), None)  # the same contract's other side
            mine_chunks = mine["outcome"]["chunks"] if mine else []
            # what one side received came from the other; a chunk never sent ("not-received", "withheld") did not move
            gave_i = [ch for ch in mine_chunks if ch["status"] in MOVED]
            gave_r = [ch for ch in c["outcome"]["chunks"] if ch["status"] in MOVED]
            trades.add_row(c["contract"][:10], n, _chunks(gave_i), peer, _chunks(gave_r) or "nothing", c["state"])
            for giver, taker, chs in ((n, peer, gave_i), (peer, n, gave_r)):
                for ch in chs:
                    moved.add_row(c["contract"][:10], f"{ch['asset']} {ch['address'][:14]}...", giver, taker,
                                  _fate(ch))
    console.print(trades)
    console.print(moved)
    if story.runs:
        runs = Table(title="contracts in the contract language (every release decided inside the enclaves)")
        for col in ("contract", "kind", "party", "party", "also", "state on each side"):
            runs.add_column(col)
        for kind, cid, p1, p2, also in story.runs:
            states = ", ".join(f"{n}: {_run_row(net, n, cid).get('state', '?')}" for n in (p1.split()[0], p2.split()[0]))
            runs.add_row(cid[:10], kind, p1, p2, also or "-", states)
        console.print(runs)
    if not story.cheater:
        return
    view = Table(title=f"every node's view of {story.cheater} (broken TEE)")
    for col in ("node", "reputation", "its offers", "proofs applied", "assembled", "ledger"):
        view.add_column(col)
    dropped = True
    for n in net.nodes:
        if n == story.cheater or not story.device:
            continue
        b, a = story.before.get(n, {}), _view_of(net, n, story.cheater, story.device)
        dropped &= a["cheater"] and a["offers"] == 0
        issuers = sorted({"own" if r.get("issuer") == net.nodes[n].peer else net.name_of(r.get("issuer", ""))
                          for r in a["revocations"]})
        view.add_row(n, f"{_score(b)} -> " + ("[red]cheater[/red]" if a["cheater"] else _score(a)),
                     f"{b.get('offers', '?')} -> {a['offers']}", ", ".join(issuers) or "-",
                     ("yes, gossiped" if a["published"] else "yes") if a["proofs"] else "no",
                     "confirmed" if a["confirmed"] else "not yet")
    console.print(view)
    console.print("columns: reputation before -> after; its offers in the book before -> after; whose proofs "
                  "of cheating were applied; whether the node assembled the proof itself; whether its ledger "
                  "confirmed the double spend yet")
    if dropped:
        console.print(f"[green]every node's view of {story.cheater}: a cheater with 0 exposure, its offers "
                      "gone[/green]")
    console.print(f"every node applies the proof it assembled at once; one node gossips it first (after a short "
                  "per-node delay) and the others, receiving it, do not repeat it. That node may be "
                  f"{story.cheater}'s own: its host software is honest, only its TEE is broken. The proof needs "
                  f"no ledger: the two release records are signed by {story.cheater}'s enclave itself")


def _chunks(chs: list[dict]) -> str:
    by: dict[str, int] = {}
    for ch in chs:
        by[ch["asset"]] = by.get(ch["asset"], 0) + 1
    return ", ".join(f"{k} x {a}" for a, k in by.items())


def _fate(ch: dict) -> str:
    if ch["status"] == "claimed":
        return f"[green]claimed[/green]: swept by {ch['txid'][:10]}..."
    return f"[red]{ch['status']}[/red] {ch.get('detail', '')[:50]}"


def _score(v: dict) -> str:
    if not v or v.get("score") is None:
        return "none"
    return "cheater" if v.get("cheater") else f"{v['score']:+.2f}"


MOVED = ("claimed", "kept", "received", "double-spent")
