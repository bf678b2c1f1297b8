"""The demonstration behind ``make demo`` (see ``node.cli.demo``).

Stages, each on real parts (only the TEE is simulated, and says so):

1. a node's data directory: config and libp2p identity;
2. enrolment: an enclave process generates deposit keys, produces a quote
   binding its keys and the peer id; the quote is verified, and a tampered
   quote, a foreign binding and a non-allowed build are refused;
3. real attestation evidence: the Intel SGX DCAP sample from
   ``../shared/testdata`` verified as of 2025-07-01 (when that verifier is
   present in this build);
4. a network on 127.0.0.1: one bootstrap node and three nodes, each with two
   $50 deposits (keys from its enclave, its quote verified before funding,
   funded and confirmed on its development ledger) gossiping a signed,
   attested offer sheet; every node's offer book fills with the others' offers;
5. a swap: two daemons on one dev ledger server; alice's BTC-REG chunks for
   bob's ETH-DEV chunks, agreed over /keyswitch/contract/1 and run key by key
   over /keyswitch/release/1; each side sweeps what it received and reports
   the outcome, which raises the other's reputation in its view.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from node.localnet import spawn, stop_all, wait_for

ROOT = Path(__file__).resolve().parents[1]
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
    from node.tee.binding import verify_attestation
    from node.tee.client import SubprocessEnclave
    from node.tee.policy import AttestationPolicy

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
        from node.tee.evidence import verify_evidence
    except ImportError:
        console.print("[dim]skipped: the vendor-evidence verifiers are not part of this build yet[/dim]")
        return
    if not quote_f.exists() or not coll_f.exists():
        console.print(f"[dim]skipped: sample not found at {DCAP_DIR}[/dim]")
        return
    from node.tee.policy import AttestationPolicy

    at = datetime(2025, 7, 1, tzinfo=timezone.utc)
    v = verify_evidence(quote_f.read_bytes(), collateral=coll_f.read_bytes(), at=at, policy=AttestationPolicy.dev())
    console.print(f"{quote_f.name} as of {at.isoformat()}: {v.headline()}")
    console.print(f"  genuine={v.genuine} tcb={v.tcb_status} advisories={', '.join(v.advisories) or '-'} "
                  f"measurement={v.measurement[:16]}... (not a Keyswitch build, so not trusted for deposits)")


def stage_network(console: Console, root: Path, n_nodes: int = 3, keys: int = 2, timeout: float = 90) -> bool:
    console.rule(f"[bold]4. A network on 127.0.0.1: 1 bootstrap node, {n_nodes} nodes gossiping offer sheets")
    console.print(f"each node: {keys} deposits of $50 of BTC-REG (enclave keys, quote verified, funded on its dev "
                  "ledger), offered in one signed sheet")
    procs: list[subprocess.Popen] = []
    try:
        bdir = root / "bootstrap"
        bdir.mkdir(parents=True, exist_ok=True)
        blog = bdir / "out.log"
        b = spawn([sys.executable, "-m", "bootstrap", "--datadir", str(bdir)], blog)
        procs.append(b)
        boot = wait_for(blog, r"LISTEN (\S+)", b)
        console.print(f"bootstrap node: {boot}")
        status: list[Path] = []
        for i in range(n_nodes):
            d = root / f"node{i}"
            d.mkdir(parents=True, exist_ok=True)
            st = d / "status.json"
            status.append(st)
            procs.append(spawn([sys.executable, "-m", "node.runtime", "--datadir", str(d), "--bootnodes", boot,
                                 "--protocol", "node.daemon:offers_factory", "--opt", "republish=1",
                                 "--opt", f"keys={keys}", "--status-file", str(st)], d / "out.log"))
        want = (n_nodes - 1) * keys
        deadline = time.monotonic() + timeout
        books = [0] * n_nodes
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("offers reaching every book", total=n_nodes * want)
            while time.monotonic() < deadline:
                for i, st in enumerate(status):
                    try:
                        data = json.loads(st.read_text())
                        books[i] = next(iter(data.get("protocols", {}).values()), {}).get("offers_in_book", 0)
                    except (OSError, ValueError, StopIteration):
                        pass
                progress.update(task, completed=sum(min(b, want) for b in books))
                if all(b >= want for b in books):
                    break
                time.sleep(0.25)
        t = Table(title="offer books")
        t.add_column("node")
        t.add_column("peer id")
        t.add_column("peers")
        t.add_column("offers from others")
        for i, st in enumerate(status):
            data = json.loads(st.read_text()) if st.exists() else {}
            t.add_row(f"node{i}", str(data.get("peer_id", "?"))[:20] + "...", str(len(data.get("peers", []) or [])),
                      f"{books[i]} / {want}")
        console.print(t)
        ok = all(b >= want for b in books)
        console.print("[green]every node holds every other node's attested offers[/green]" if ok
                      else f"[red]offers did not reach every book within {timeout:.0f} s; logs in {root}[/red]")
        return ok
    finally:
        stop_all(procs, timeout=15)


def stage_swap(console: Console, root: Path, timeout: float = 120) -> bool:
    """Two daemons on one dev ledger swap chunks enclave to enclave, and each claims what it got."""
    import httpx

    console.rule("[bold]5. A swap: alice's BTC-REG chunks for bob's ETH-DEV chunks, key by key")
    procs: list[subprocess.Popen] = []

    def until(pred, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return
            time.sleep(0.3)
        raise RuntimeError(f"timed out: {what}")

    try:
        (root / "ledger").mkdir(parents=True, exist_ok=True)
        led = spawn([sys.executable, "-m", "node.ledger.devnet", "serve", "--db", str(root / "ledger/db.sqlite"),
                     "--block-interval", "0.5"], root / "ledger/out.log")
        procs.append(led)
        lurl = wait_for(root / "ledger/out.log", r"dev ledger listening on (\S+)", led)
        (root / "boot").mkdir(exist_ok=True)
        b = spawn([sys.executable, "-m", "bootstrap", "--datadir", str(root / "boot"), "--net", "demo"],
                  root / "boot/out.log")
        procs.append(b)
        boot = wait_for(root / "boot/out.log", r"LISTEN (\S+)", b)
        console.print(f"a dev ledger server ({lurl}, a block every 0.5 s), a bootstrap node, two daemons")
        apis = {}
        for name in ("alice", "bob"):
            d = root / name
            d.mkdir(exist_ok=True)
            p = spawn([sys.executable, "-m", "node", "--datadir", str(d), "run", "--net", "demo", "--bootnodes", boot,
                       "--republish", "2"], d / "out.log", env={"KEYSWITCH_LEDGER_URL": lurl})
            procs.append(p)
            peer = wait_for(d / "out.log", r"ready (\S+)", p)
            h = {"Authorization": "Bearer " + (d / ".cookie").read_text().strip()}
            apis[name] = (peer, (d / "api.url").read_text().strip(), h)

        def get(n, path):
            return httpx.get(apis[n][1] + path, headers=apis[n][2], timeout=30).json()

        def post(n, path, body):
            r = httpx.post(apis[n][1] + path, json=body, headers=apis[n][2], timeout=90)
            if r.status_code >= 400:
                raise RuntimeError(f"{n} {path}: {r.json().get('error', r.text)}")
            return r.json()

        post("alice", "/v1/deposits", {"asset": "BTC-REG", "chunks": 2})
        post("bob", "/v1/deposits", {"asset": "ETH-DEV", "chunks": 2})
        console.print("alice funds 2 x $50 of BTC-REG, bob 2 x $50 of ETH-DEV (each after verifying its own "
                      "enclave's quote); their sheets cross")
        until(lambda: get("alice", "/v1/status")["offers_in_book"] == 2 and get("bob", "/v1/status")[
            "offers_in_book"] == 2, "each book holding the other's offers")
        agreed = post("alice", "/v1/contracts", {"peer": apis["bob"][0], "give": "BTC-REG", "take": "ETH-DEV",
                                                 "chunks": 2})
        console.print(f"alice proposes, bob's policy agrees ({agreed['rounds']} rounds, "
                      f"{agreed['give']['usd_cents'] / 100:.2f} USD each way); the enclaves exchange keys")

        def done():
            cs = [get(n, "/v1/contracts")["contracts"] for n in apis]
            return all(c and c[-1]["state"] in ("done", "withheld", "failed") and "outcome" in c[-1] for c in cs)

        until(done, "the swap finishing")
        t = Table(title="the swap, as each side saw it")
        for col in ("node", "released", "received", "lost", "claimed chunks (swept to its own addresses)", "state"):
            t.add_column(col)
        ok = True
        for n in apis:
            c = get(n, "/v1/contracts")["contracts"][-1]
            o = c["outcome"]
            ok &= c["state"] == "done" and o["lost"] == 0
            t.add_row(n, str(o["released"]), str(o["received"]), str(o["lost"]),
                      ", ".join(f"{ch['asset']} {ch['txid'][:10]}..." for ch in o["chunks"] if ch["status"] == "claimed"),
                      c["state"])
        console.print(t)
        until(lambda: all(get(n, "/v1/status")["outcomes"]["accepted"] >= 1 for n in apis), "outcome reports")
        for n, other in (("alice", "bob"), ("bob", "alice")):
            rep = [r for r in get(n, "/v1/reputation")["devices"] if r["owner"] == apis[other][0]]
            if rep:
                console.print(f"{n}'s view of {other}'s device: score {rep[0]['score']:+.2f} after the swap")
        console.print("[green]the swap completed: every key released once, each side claimed what it got[/green]"
                      if ok else f"[red]the swap did not complete; logs in {root}[/red]")
        return ok
    except RuntimeError as exc:
        console.print(f"[red]{exc}; logs in {root}[/red]")
        return False
    finally:
        stop_all(procs, timeout=15)


def run_demo(root: Path) -> bool:
    console = Console()
    console.print("[bold red]The TEE in this demo is SIMULATED and INSECURE[/bold red] (no TEE hardware here).")
    alice = root / "alice"
    _, pid = stage_identity(console, alice)
    stage_enrol(console, alice, pid)
    stage_dcap(console)
    ok = stage_network(console, root / "net")
    ok = stage_swap(console, root / "swap") and ok
    console.rule("[bold]done")
    return ok
