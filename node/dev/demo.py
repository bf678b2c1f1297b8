"""The demonstration behind ``make demo`` (see ``node.cli.demo``).

Stages, each on real parts (only the TEE is simulated, and says so):

1. a node's data directory: config and libp2p identity;
2. enrolment: an enclave process generates deposit keys, produces a quote
   binding its keys and the peer id; the quote is verified, and a tampered
   quote, a foreign binding and a non-allowed build are refused;
3. real attestation evidence: the Intel SGX DCAP sample from
   ``../shared/testdata`` verified as of 2025-07-01 (when that verifier is
   present in this build);
4. a network on 127.0.0.1 (``LocalNet``): a dev ledger server (and anvil,
   a real EVM node, for ETH-DEV when it is installed), two bootstrap nodes and five ``keyswitch run`` daemons (alice, bob, carol,
   dave and mallory, whose node runs the BROKEN simulated TEE,
   ``tee.broken = "double-release"``, and says so at start); each funds $50
   deposits (its own quote verified first) and gossips an attested offer
   sheet until every offer book holds every other node's offers;
   When litecoind is installed (``find_litecoind``) it runs too, with a block every second, and every daemon
   serves LTC-REG from it: alice's chunks are then LTC-REG on litecoind instead of BTC-REG on the dev ledger;
5. a swap: alice's BTC-REG (or LTC-REG) chunks for bob's ETH-DEV chunks, agreed over
   /keyswitch/contract/1 and run key by key over /keyswitch/contract-run/1 (the stdlib turns contract); each
   side sweeps what it received (on anvil and litecoind each sweep is read back from the node, with the
   fee it paid) and reports the outcome, which raises the
   other's reputation in its view;
6. the broken TEE: mallory sells one BTC-REG chunk to carol and to dave
   at once; her enclave releases the key twice (when the second victim's
   funds check comes after the first victim's sweep it refuses the sale,
   nothing is released twice, and mallory tries again with her next chunk); the first victim to sweep
   claims it, the other finds the funds gone and stops before giving
   anything; both outcome reports carry the signed release record each
   received; at every node the two records meet, the proof of cheating is
   assembled and applied at once, one node gossips it, and every node drops
   mallory's device (reputation: cheater, 0 exposure; its offers gone);
7. a summary: who traded what, which chunks moved, every node's view of the
   cheater before and after.

Stages 4 to 6 share one network and are ``stage(console, net, story) -> bool``
functions run in order by ``run_demo``; more contracts join the same way.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from node.dev.demo_chains import evm_claims, litecoind_claims
from node.dev.localnet import (ANVIL_BLOCK_TIME, ANVIL_CHAIN_ID, LITECOIND_ASSET, LITECOIND_BLOCK_TIME, find_anvil,
                           find_litecoind, init_datadir, spawn, start_anvil, start_litecoind_network, stop_all, wait_for)

ROOT = Path(__file__).resolve().parents[2]
DCAP_DIR = ROOT.parent / "shared" / "testdata" / "attestation" / "intel-dcap"


def _verdict_row(table: Table, what: str, v) -> None:
    style = "green" if v.ok else ("yellow" if v.genuine else "red")
    table.add_row(what, f"[{style}]{v.code}[/{style}]", v.reason or v.headline())


def stage_identity(console: Console, datadir: Path):
    from node import config, identity

    datadir.mkdir(parents=True, exist_ok=True)
    (datadir / config.CONFIG_FILE).write_text(config.render_default())
    cfg = config.load(datadir, env={})
    console.rule("[bold]1. A node's data directory")
    console.print(f"datadir {datadir}  (config.toml, identity.key mode 0600)")
    pid = identity.peer_id(datadir)
    console.print(f"network [bold]{cfg['network.net']}[/bold], peer id [bold]{pid}[/bold]")
    return cfg, pid


def stage_enrol(console: Console, datadir: Path, pid: str) -> None:
    from node.attest.binding import verify_attestation
    from node.tee.client import SubprocessEnclave
    from node.attest.policy import AttestationPolicy

    console.rule("[bold]2. Enrolment: deposit keys in the enclave, attested")
    enc = SubprocessEnclave(datadir)
    enc.start()
    try:
        keys = enc.generate_keys(5)
        info = enc.info()
        console.print(f"enclave process pid {enc.pid}: device {info.device_id.hex()[:16]}..., "
                      f"measurement {info.measurement[:16]}..., simulated={info.simulated}")
        console.print(f"5 deposit keys generated inside it, e.g. {keys[0].hex()} (public key; "
                      "the private keys never leave)")
        binding = enc.binding_for("dev", pid)
        quote = enc.quote(binding)
        console.print(f"quote: {len(quote)} bytes binding the enclave keys, peer id and the deposit keys' root")
        now = datetime.now(timezone.utc)
        policy = AttestationPolicy.dev()
        t = Table(title="verifying the quote", show_lines=False)
        t.add_column("evidence")
        t.add_column("verdict")
        t.add_column("reason")
        _verdict_row(t, "the quote, its binding", verify_attestation(quote, binding, policy=policy, at=now))
        flipped = bytearray(quote)
        flipped[len(flipped) // 2] ^= 1
        _verdict_row(t, "one bit flipped", verify_attestation(bytes(flipped), binding, policy=policy, at=now))
        import msgspec

        other = msgspec.structs.replace(binding, peer_id="12D3KooWSomeoneElse")
        _verdict_row(t, "claimed by another peer", verify_attestation(quote, other, policy=policy, at=now))
        strict = dataclasses.replace(policy, allowed_measurements=frozenset())
        _verdict_row(t, "policy without this build", verify_attestation(quote, binding, policy=strict, at=now))
        console.print(t)
    finally:
        enc.close()


def stage_dcap(console: Console) -> None:
    console.rule("[bold]3. Real attestation evidence (Intel SGX DCAP sample)")
    quote_f = DCAP_DIR / "sgx_quote_v3.bin"
    coll_f = DCAP_DIR / "sgx_quote_v3_collateral.json"
    try:
        from node.attest.evidence import verify_evidence
    except ImportError:
        console.print("[dim]skipped: the vendor-evidence verifiers are not part of this build yet[/dim]")
        return
    if not quote_f.exists() or not coll_f.exists():
        console.print(f"[dim]skipped: sample not found at {DCAP_DIR}[/dim]")
        return
    from node.attest.policy import AttestationPolicy

    at = datetime(2025, 7, 1, tzinfo=timezone.utc)
    v = verify_evidence(quote_f.read_bytes(), collateral=coll_f.read_bytes(), at=at, policy=AttestationPolicy.dev())
    console.print(f"{quote_f.name} as of {at.isoformat()}: {v.headline()}")
    console.print(f"  genuine={v.genuine} tcb={v.tcb_status} advisories={', '.join(v.advisories) or '-'} "
                  f"measurement={v.measurement[:16]}... (not a Keyswitch build, so not trusted for deposits)")


# ------------------------------------------------------------------ the network the story runs on
@dataclasses.dataclass
class Daemon:
    name: str
    datadir: Path
    proc: subprocess.Popen
    peer: str = ""
    url: str = ""
    headers: dict = dataclasses.field(default_factory=dict)
    broken: str = ""


class LocalNet:
    """A dev ledger server, two bootstrap nodes and ``keyswitch run`` daemons on 127.0.0.1, all on one
    ledger (a swap needs both sides on it), talking to each daemon through its local API. When anvil is
    installed (``find_anvil``; ``use_anvil``) it runs too and every daemon serves ETH-DEV from it
    (``ledger.evm_url``); when litecoind is (``find_litecoind``; ``use_litecoind``) one litecoind on regtest
    with a block every second serves LTC-REG to every daemon (``ledger.rpc_url``). Both are stopped with the
    rest, on failure too."""

    def __init__(self, console: Console, root: Path, names: list[str], *, broken: dict[str, str],
                 net: str = "demo", timeout: float = 120, use_anvil: bool = True, use_litecoind: bool = True) -> None:
        self.console, self.root, self.names, self.broken, self.net = console, root, names, broken, net
        self.timeout = timeout
        self.procs: list[subprocess.Popen] = []
        self.nodes: dict[str, Daemon] = {}
        self.bootnodes: list[str] = []
        self.evm_url = ""  # anvil's JSON-RPC URL when anvil serves ETH-DEV
        self.anvil = find_anvil() if use_anvil else None
        self.litecoind = find_litecoind() if use_litecoind else None
        self.ltc_url, self.ltc_cookie = "", Path()  # litecoind's JSON-RPC URL and cookie when it serves LTC-REG

    def __enter__(self) -> "LocalNet":
        try:
            self._start()
        except BaseException:
            stop_all(self.procs, timeout=15)
            raise
        return self

    def __exit__(self, *exc) -> None:
        stop_all(self.procs, timeout=15)

    def _start(self) -> None:
        led_dir = self.root / "ledger"
        led_dir.mkdir(parents=True, exist_ok=True)
        led = spawn([sys.executable, "-m", "node.ledger.server", "serve", "--db", str(led_dir / "db.sqlite"),
                     "--block-interval", "0.5"], led_dir / "out.log")
        self.procs.append(led)
        if self.anvil:  # a real EVM node for ETH-DEV: transactions mined at once, an empty block every second
            evm_dir = self.root / "anvil"
            evm_dir.mkdir(exist_ok=True)
            proc, self.evm_url = start_anvil(self.anvil, evm_dir / "out.log", block_time=ANVIL_BLOCK_TIME)
            self.procs.append(proc)
        if self.litecoind:  # a real Bitcoin-family node for LTC-REG: a block every second, as anvil's
            started, self.ltc_url, self.ltc_cookie = start_litecoind_network(self.litecoind, self.root / "litecoind")
            self.procs.extend(started)
        for i in range(2):  # the second bootstrap node starts from the first
            d = self.root / f"boot{i}"
            d.mkdir(exist_ok=True)
            extra = [a for b in self.bootnodes for a in ("--bootnodes", b)]
            b = spawn([sys.executable, "-m", "bootstrap", "--datadir", str(d), "--net", self.net, *extra],
                      d / "out.log")
            self.procs.append(b)
            self.bootnodes.append(wait_for(d / "out.log", r"LISTEN (\S+)", b))
        self.ledger_url = wait_for(led_dir / "out.log", r"dev ledger listening on (\S+)", led)
        for name in self.names:
            d = self.root / name
            init_datadir(d)  # `keyswitch init`: run refuses a data directory never initialised
            env = {"KEYSWITCH_LEDGER_URL": self.ledger_url}
            if self.evm_url:
                env.update(KEYSWITCH_LEDGER_EVM_URL=self.evm_url, KEYSWITCH_LEDGER_EVM_ASSET="ETH-DEV")
            if self.ltc_url:
                env.update(KEYSWITCH_LEDGER_RPC_URL=self.ltc_url, KEYSWITCH_LEDGER_RPC_COOKIE=str(self.ltc_cookie),
                           KEYSWITCH_LEDGER_RPC_ASSET=LITECOIND_ASSET)
            if name in self.broken:
                env["KEYSWITCH_TEE_BROKEN"] = self.broken[name]  # the explicit switch: tee.broken
            boots = [a for b in self.bootnodes for a in ("--bootnodes", b)]
            p = spawn([sys.executable, "-m", "node", "--datadir", str(d), "run", "--net", self.net, *boots,
                       "--republish", "2"], d / "out.log", env=env)
            self.procs.append(p)
            self.nodes[name] = Daemon(name, d, p, broken=self.broken.get(name, ""))
        for n in self.nodes.values():
            n.peer = wait_for(n.datadir / "out.log", r"ready (\S+)", n.proc, timeout=self.timeout)
            n.url = (n.datadir / "api.url").read_text().strip()
            n.headers = {"Authorization": "Bearer " + (n.datadir / ".cookie").read_text().strip()}

    def get(self, name: str, path: str):
        import httpx

        n = self.nodes[name]
        return httpx.get(n.url + path, headers=n.headers, timeout=30).json()

    def post(self, name: str, path: str, body: dict):
        import httpx

        n = self.nodes[name]
        r = httpx.post(n.url + path, json=body, headers=n.headers, timeout=90)
        if r.status_code >= 400:
            raise RuntimeError(f"{name} {path}: {r.json().get('error', r.text)}")
        return r.json()

    def parallel(self, calls: list):
        """Run ``calls`` (zero-argument callables) at once; their results (or exceptions) in order."""
        from concurrent.futures import ThreadPoolExecutor

        def safe(fn):
            try:
                return fn()
            except Exception as exc:  # reported by the caller
                return exc

        with ThreadPoolExecutor(len(calls)) as pool:
            return list(pool.map(safe, calls))

    def until(self, pred, what: str, timeout: float | None = None) -> None:
        end = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < end:
            try:
                if pred():
                    return
            except Exception:  # a daemon busy or restarting its API: ask again
                pass
            time.sleep(0.3)
        raise RuntimeError(f"timed out: {what}")

    def name_of(self, peer: str) -> str:
        return next((n.name for n in self.nodes.values() if n.peer == peer), peer[:12] + "...")


@dataclasses.dataclass
class Story:
    """What the stages did, for the summary at the end."""

    deposits: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)  # name -> (asset, chunks)
    cheater: str = ""
    device: str = ""  # the cheater's device id (hex), as offer books and reputation tables name it
    victims: tuple[str, ...] = ()
    before: dict[str, dict] = dataclasses.field(default_factory=dict)  # node -> its view of the cheater, before
    runs: list[tuple[str, str, str, str, str]] = dataclasses.field(default_factory=list)  # language contracts
    utxo: str = "BTC-REG"  # alice's Bitcoin-like asset (swap, escrow, option): LTC-REG when litecoind serves it


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


# ------------------------------------------------------------------ the whole story
NODES = ["alice", "bob", "carol", "dave", "mallory"]
CHEAT_ATTEMPTS = 3  # double sales tried: each victim's ETH-DEV chunks (one a try), the cheater's twice that
MOVED = ("claimed", "kept", "received", "double-spent")


def run_demo(root: Path) -> bool:
    console = Console()
    console.print("[bold red]The TEE in this demo is SIMULATED and INSECURE[/bold red] (no TEE hardware here).")
    alice = root / "alice"
    _, pid = stage_identity(console, alice)
    stage_enrol(console, alice, pid)
    stage_dcap(console)
    utxo = LITECOIND_ASSET if find_litecoind() else "BTC-REG"  # alice's chunks on litecoind when it is installed
    story = Story(deposits={"alice": (utxo, 4), "bob": ("ETH-DEV", 4), "carol": ("ETH-DEV", CHEAT_ATTEMPTS),
                            "dave": ("ETH-DEV", CHEAT_ATTEMPTS), "mallory": ("BTC-REG", 2 * CHEAT_ATTEMPTS)},
                  cheater="mallory", victims=("carol", "dave"), utxo=utxo)
    # The stages share one network and run in order; each is ``stage(console, net, story) -> bool``.
    # alice's 4 chunks (LTC-REG on litecoind when installed, else BTC-REG): 2 for the swap, 1 in escrow, 1 written as an option; bob's 4 ETH-DEV
    # chunks: 2 for the swap, the option's premium and strike.
    stages = [stage_network, stage_swap, stage_escrow, stage_option, stage_cheat]
    failed: list[str] = []
    try:
        with LocalNet(console, root / "net", NODES, broken={"mallory": "double-release"}) as net:
            for stage in stages:
                try:
                    ok = stage(console, net, story)
                except RuntimeError as exc:  # a wait that timed out: named with its stage, not as the setup
                    console.print(f"[red]{exc}; logs in {net.root}[/red]")
                    ok = False
                if not ok:
                    failed.append(stage.__name__.removeprefix("stage_"))
                    if stage is stage_network:
                        break  # nothing after it works without the offers
            stage_summary(console, net, story)
    except RuntimeError as exc:
        console.print(f"[red]{exc}; logs in {root / 'net'}[/red]")
        failed.append("network setup")
    console.rule("[bold]done")
    if failed:  # said last, so that the tail of the output names what went wrong
        console.print(f"[red]the demo FAILED at: {', '.join(failed)} (see the red lines above)[/red]")
    return not failed
