"""The demo's stages 4 to 7 (``node.dev.demo``), on one ``LocalNet``: 4. deposits and offer sheets gossiped until
every book is full, 5. a swap key by key, 6. an escrow paid on the arbiter's approval, 7. an option bought and
exercised. Each is ``stage(console, net, story) -> bool``."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from node.dev.demo_chains import evm_claims, litecoind_claims
from node.dev.localnet import ANVIL_BLOCK_TIME, ANVIL_CHAIN_ID, LITECOIND_ASSET, LITECOIND_BLOCK_TIME
from node.dev.demo_net import LocalNet, Story


# ------------------------------------------------------------------ the stages on that network
def stage_network(console: Console, net: LocalNet, story: Story) -> bool:
    """Deposits on every daemon (the quote verified first), sheets gossiped until every book is full."""
    console.rule(f"[bold]4. A network on 127.0.0.1: 2 bootstrap nodes, {len(net.nodes)} nodes, one dev ledger"
                 + (" and anvil" if net.evm_url else "") + (" and litecoind" if net.ltc_url else ""))
    real = {a for a, url in (("ETH-DEV", net.evm_url), (LITECOIND_ASSET, net.ltc_url)) if url}
    console.print(f"dev ledger server {net.ledger_url} (a block every 0.5 s) serves "
                  + ", ".join(a for a in ("BTC-REG", "ETH-DEV", LITECOIND_ASSET) if a not in real))
    if net.evm_url:
        console.print(f"[bold]ETH-DEV on anvil (a real EVM node)[/bold] at {net.evm_url} "
                      f"(chain id {ANVIL_CHAIN_ID}; transactions mined as they arrive, an empty block every "
                      f"{ANVIL_BLOCK_TIME:g} s; sweeps pay gas)")
    else:
        console.print("ETH-DEV on the dev ledger: anvil not installed (`make test` installs it)")
    if net.ltc_url:
        console.print(f"[bold]{LITECOIND_ASSET} on litecoind (a real Bitcoin-family node, regtest)[/bold] at "
                      f"{net.ltc_url} (a block every {LITECOIND_BLOCK_TIME:g} s; segwit transactions signed by the "
                      "wallets, never by the node; sweeps pay fees)")
    else:
        console.print(f"{LITECOIND_ASSET} on the dev ledger: litecoind not installed (`make test` installs it)")
    # each daemon says at start which ledger serves which asset
    for url, asset, backend, chain in ((net.evm_url, "ETH-DEV", "EvmLedger", "anvil"),
                                       (net.ltc_url, LITECOIND_ASSET, "BitcoindLedger", "litecoind")):
        if not url:
            continue
        routed = [n.name for n in net.nodes.values()
                  if f"ledger: {asset} on {backend}" in (n.datadir / "out.log").read_text(errors="replace")]
        if len(routed) < len(net.nodes):
            console.print(f"[red]only {', '.join(routed) or 'no daemon'} serve {asset} from {chain}[/red]")
            return False
        console.print(f"every daemon serves {asset} from {chain} ({len(routed)}/{len(net.nodes)} say so at start)")
    console.print("bootstrap nodes:")
    for b in net.bootnodes:
        console.print(f"  {b}")
    for n in net.nodes.values():
        if n.broken:
            banner = next((ln for ln in (n.datadir / "out.log").read_text(errors="replace").splitlines()
                           if "BROKEN SIMULATED TEE" in ln), "(no banner found)")
            console.print(f"[bold red]{n.name} runs a broken TEE, and its node says so at start:[/bold red] "
                          f"{banner.strip()}")
    results = net.parallel([lambda n=n, a=a, c=c: net.post(n, "/v1/deposits", {"asset": a, "chunks": c})
                            for n, (a, c) in story.deposits.items()])
    for (n, _), r in zip(story.deposits.items(), results):
        if isinstance(r, Exception):
            console.print(f"[red]{n}: deposit failed: {r}[/red]")
            return False
    console.print("deposits: " + ", ".join(f"{n} {c} x $50 of {a}" for n, (a, c) in story.deposits.items())
                  + " (each node's enclave keys; its own quote verified before funding)")
    total = sum(c for _, c in story.deposits.values())
    want = {n: total - story.deposits.get(n, ("", 0))[1] for n in net.nodes}
    books = {n: 0 for n in net.nodes}
    deadline = time.monotonic() + net.timeout
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("attested offers reaching every book", total=sum(want.values()))
        while time.monotonic() < deadline:
            for n in net.nodes:
                try:
                    books[n] = net.get(n, "/v1/status")["offers_in_book"]
                except Exception:
                    pass
            progress.update(task, completed=sum(min(books[n], want[n]) for n in net.nodes))
            if all(books[n] >= want[n] for n in net.nodes):
                break
            time.sleep(0.3)
    t = Table(title="offer books")
    for col in ("node", "peer id", "peers", "own deposits", "offers from others"):
        t.add_column(col)
    for n, d in net.nodes.items():
        st = net.get(n, "/v1/status")
        a, c = story.deposits.get(n, ("-", 0))
        t.add_row(n + (" [red](broken TEE)[/red]" if d.broken else ""), d.peer[:20] + "...", str(st["peers"]),
                  f"{c} {a}", f"{books[n]} / {want[n]}")
    console.print(t)
    ok = all(books[n] >= want[n] for n in net.nodes)
    console.print("[green]every node holds every other node's attested offers[/green]" if ok
                  else f"[red]offers did not reach every book within {net.timeout:.0f} s; logs in {net.root}[/red]")
    return ok


def _finished(net: LocalNet, name: str, peer: str) -> dict | None:
    """``name``'s last contract with ``peer`` once it has ended with an outcome."""
    cs = [c for c in net.get(name, "/v1/contracts")["contracts"] if c.get("peer") == net.nodes[peer].peer]
    if cs and cs[-1]["state"] in ("done", "withheld", "failed") and "outcome" in cs[-1]:
        return cs[-1]
    return None


def stage_swap(console: Console, net: LocalNet, story: Story) -> bool:
    """alice's two BTC-REG (LTC-REG) chunks for bob's two ETH-DEV chunks, key by key, enclave to enclave."""
    where = {"ETH-DEV": " on anvil" if net.evm_url else "", LITECOIND_ASSET: " on litecoind" if net.ltc_url else ""}
    console.rule(f"[bold]5. A swap: alice's {story.utxo} chunks{where.get(story.utxo, '')} for bob's ETH-DEV "
                 f"chunks{where['ETH-DEV']}, key by key")
    agreed = net.post("alice", "/v1/contracts", {"peer": net.nodes["bob"].peer, "give": story.utxo,
                                                 "take": "ETH-DEV", "chunks": 2})
    console.print(f"alice proposes, bob's policy agrees ({agreed['rounds']} rounds, "
                  f"{agreed['give']['usd_cents'] / 100:.2f} USD each way); the enclaves exchange keys over "
                  "/keyswitch/contract-run/1, each releasing only what the turns contract allows")
    net.until(lambda: _finished(net, "alice", "bob") and _finished(net, "bob", "alice"), "the swap finishing")
    t = Table(title="the swap, as each side saw it")
    for col in ("node", "released", "received", "lost", "claimed chunks (swept to its own addresses)", "state"):
        t.add_column(col)
    ok = True
    for n, other in (("alice", "bob"), ("bob", "alice")):
        c = _finished(net, n, other)
        o = c["outcome"]
        ok &= c["state"] == "done" and o["lost"] == 0
        t.add_row(n, str(o["released"]), str(o["received"]), str(o["lost"]),
                  ", ".join(f"{ch['asset']} {ch['txid'][:10]}..." for ch in o["chunks"] if ch["status"] == "claimed"),
                  c["state"])
    console.print(t)
    if net.evm_url:
        ok &= evm_claims(console, net.evm_url, _claimed(net, "alice", "bob", "ETH-DEV"))
    if net.ltc_url and story.utxo == LITECOIND_ASSET:
        ok &= litecoind_claims(console, net, _claimed(net, "bob", "alice", LITECOIND_ASSET))
    net.until(lambda: all(net.get(n, "/v1/status")["outcomes"]["accepted"] >= 1 for n in ("alice", "bob")),
              "outcome reports")
    for n, other in (("alice", "bob"), ("bob", "alice")):
        rep = [r for r in net.get(n, "/v1/reputation")["devices"] if r["owner"] == net.nodes[other].peer]
        if rep:
            console.print(f"{n}'s view of {other}'s device: score {rep[0]['score']:+.2f} after the swap")
    console.print("[green]the swap completed: every key released once, each side claimed what it got[/green]"
                  if ok else f"[red]the swap did not complete; logs in {net.root}[/red]")
    return ok


def _claimed(net: LocalNet, name: str, peer: str, asset: str) -> list[dict]:
    """The ``asset`` chunks ``name`` claimed (swept) in its last contract with ``peer``."""
    return [ch for ch in _finished(net, name, peer)["outcome"]["chunks"]
            if ch["status"] == "claimed" and ch["asset"] == asset]


def _run_row(net: LocalNet, name: str, cid: str) -> dict:
    """``name``'s row for the language contract ``cid`` (escrow, option), or {} before it knows it."""
    return next((c for c in net.get(name, "/v1/contracts")["contracts"] if c["contract"] == cid), {})


def _both_done(net: LocalNet, names: tuple[str, str], cid: str) -> bool:
    return all(_run_row(net, n, cid).get("state") == "done" for n in names)


def _run_table(net: LocalNet, title: str, cid: str, names: tuple[str, str]) -> Table:
    t = Table(title=title)
    for col in ("node", "released", "received", "claims (swept to its own addresses)", "state"):
        t.add_column(col)
    for n in names:
        r = _run_row(net, n, cid)
        who = [net.name_of(p) for p in r.get("parties", [])]
        t.add_row(n, ", ".join(f"chunk {i} -> {who[k]}" for i, k in r.get("released", [])) or "nothing",
                  ", ".join(f"{who[k]}'s chunk {i}" for k, i in r.get("received", [])) or "nothing",
                  ", ".join(f"{st} {tx[:10]}..." for _, st, tx in r.get("claims", [])) or "-", r.get("state", "?"))
    return t


def stage_escrow(console: Console, net: LocalNet, story: Story) -> bool:
    """alice pays carol in escrow; nothing moves until dave, the arbiter, signs "release"."""
    console.rule(f"[bold]6. An escrow: alice pays carol one {story.utxo} chunk once dave, the arbiter, approves")
    r = net.post("alice", "/v1/contracts", {"kind": "escrow", "peer": net.nodes["carol"].peer,
                                            "arbiter": net.nodes["dave"].peer, "give": story.utxo, "chunks": 1,
                                            "refund_blocks": 5000})
    cid = r["contract"]
    console.print(f"contract {cid[:10]}...: the stdlib escrow (node/contracts/stdlib/escrow.py), signed by both "
                  f"enclaves; the refund path opens 5000 {story.utxo} blocks on"
                  + (" (litecoind's blocks: its time-lock counts a real chain's height)"
                     if story.utxo == LITECOIND_ASSET and net.ltc_url else ""))
    net.until(lambda: _run_row(net, "carol", cid).get("state") == "running", "carol running the escrow")
    time.sleep(2)
    held = _run_row(net, "alice", cid).get("released") == []
    console.print("two seconds on, alice's enclave has released nothing: its contract allows no release "
                  "without the arbiter's signature" if held else "[red]alice released before the approval[/red]")
    net.post("dave", "/v1/contracts/approve", {"contract": cid, "message": "release"})
    console.print("dave signs \"release\" with his enclave key; carol's and alice's enclaves verify it")
    net.until(lambda: _both_done(net, ("alice", "carol"), cid), "the escrow paying out")
    console.print(_run_table(net, "the escrow", cid, ("alice", "carol")))
    story.runs.append(("escrow", cid, "alice", "carol", "dave (arbiter)"))
    ok = held and bool(_run_row(net, "carol", cid).get("received"))
    console.print("[green]the escrow paid out on the arbiter's approval[/green]" if ok
                  else f"[red]the escrow did not pay out as it should; logs in {net.root}[/red]")
    return ok


def stage_option(console: Console, net: LocalNet, story: Story) -> bool:
    """bob buys a call option on alice's BTC-REG (LTC-REG) chunk: premium now, exercise, strike for the
    underlying."""
    console.rule(f"[bold]7. An option: bob buys a call on alice's {story.utxo} chunk, pays the premium, exercises")
    # bob picks the underlying from his book: wait until alice's sheet without the chunks she released (swap,
    # escrow) has reached it, or he may pick one of those and alice refuses the option
    alice = net.nodes["alice"].peer
    net.until(lambda: sum(1 for o in net.get("bob", f"/v1/offers?asset={story.utxo}&limit=500")["offers"]
                          if o["origin"] == alice) == 1, f"bob's book holding alice's one {story.utxo} chunk left")
    r = net.post("bob", "/v1/contracts", {"kind": "option", "peer": net.nodes["alice"].peer, "give": "ETH-DEV",
                                          "take": story.utxo, "chunks": 1, "premium_chunks": 1,
                                          "premium_blocks": 5000, "expiry_blocks": 10000})
    cid = r["contract"]
    console.print(f"contract {cid[:10]}...: the stdlib option; bob commits 2 ETH-DEV chunks (premium, strike), "
                  f"alice 1 {story.utxo} chunk (the underlying, held for bob)")
    net.until(lambda: _run_row(net, "bob", cid).get("released") == [[0, 1]], "the premium being paid")
    held = _run_row(net, "alice", cid).get("released") == []
    console.print("the premium went to alice; the underlying stays in alice's enclave until bob exercises"
                  if held else "[red]the underlying moved before the exercise[/red]")
    net.post("bob", "/v1/contracts/approve", {"contract": cid, "message": "exercise"})
    console.print("bob signs \"exercise\": his strike chunk goes, then alice's enclave releases the underlying")
    net.until(lambda: _both_done(net, ("alice", "bob"), cid), "the option being exercised")
    console.print(_run_table(net, "the option", cid, ("bob", "alice")))
    story.runs.append(("option", cid, "bob (buyer)", "alice (writer)", ""))
    ok = held and _run_row(net, "bob", cid).get("received") == [[1, 0]]
    console.print("[green]the option was exercised: premium and strike to alice, the underlying to bob[/green]"
                  if ok else f"[red]the option did not settle as it should; logs in {net.root}[/red]")
    return ok
