"""The demo's first stages (``node.dev.demo``), before any network: 1. a node's data directory, 2. enrolment
(deposit keys in an enclave process, its quote verified, and refused when tampered with, claimed by another peer or
built otherwise than the policy allows), 3. real attestation evidence (the Intel SGX DCAP sample)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

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
