"""``keyswitch attest verify FILE``: verify any supported evidence, as of a given time.

Exit status: 0 trusted; 3 genuine but not trusted (e.g. not an allowed
Keyswitch build, debug, refused TCB status); 4 refused (forged, tampered,
expired, malformed); 2 bad usage.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional

import typer

from node.cli.attest import attest_app


def _parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.now(timezone.utc)
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO-8601 time, e.g. 2025-07-01T00:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _collateral(paths: List[Path]) -> bytes | None:
    """One file as it is; several (SNP's VCEK and chain) as one PEM bundle, DER certificates converted."""
    if not paths:
        return None
    if len(paths) == 1:
        return paths[0].read_bytes()
    import warnings

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    out = b""
    for p in paths:
        data = p.read_bytes()
        if b"-----BEGIN" in data:
            out += data if data.endswith(b"\n") else data + b"\n"
            continue
        try:
            with warnings.catch_warnings():  # AMD's VCEK has serial number 0
                warnings.simplefilter("ignore")
                out += x509.load_der_x509_certificate(data).public_bytes(Encoding.PEM)
        except ValueError:
            typer.echo(f"error: {p} is neither PEM nor a DER certificate", err=True)
            raise typer.Exit(2)
    return out


@attest_app.command("verify")
def verify(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="Evidence file"),
    collateral: Optional[List[Path]] = typer.Option(
        None, "--collateral", exists=True, dir_okay=False,
        help="DCAP: collateral JSON (dcap-qvl QuoteCollateralV3). SEV-SNP: the VCEK, then AMD's ASK/ARK chain "
             "(PEM or DER; repeat the option or give one PEM bundle)"),
    signature: Optional[Path] = typer.Option(None, "--signature", exists=True, dir_okay=False,
                                             help="IAS: the report signature (base64), FILE being the report body"),
    chain: Optional[Path] = typer.Option(None, "--chain", exists=True, dir_okay=False,
                                         help="IAS: the signing certificate chain (PEM, URL-encoded as IAS sends it)"),
    at: Optional[str] = typer.Option(None, "--at", help="Verify as of this time (ISO-8601); default now"),
    fmt: Optional[str] = typer.Option(None, "--format", help="Evidence format (default: detected)"),
    binding: Optional[Path] = typer.Option(None, "--binding",
                                           help="Binding JSON to check the report data against "
                                                "(default: FILE.binding.json when present)"),
    allow_measurement: Optional[List[str]] = typer.Option(None, "--allow-measurement",
                                                          help="Also trust this measurement (hex; repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON"),
) -> None:
    """Verify attestation evidence and print the verdict."""
    from node.attest.evidence import FORMATS, verify_evidence
    from node.attest.policy import AttestationPolicy

    if fmt is not None and fmt not in FORMATS:
        typer.echo(f"error: --format {fmt[:40]!r} is not an evidence format (known: {', '.join(FORMATS)})", err=True)
        raise typer.Exit(2)
    when = _parse_time(at)
    policy = AttestationPolicy.dev()
    if allow_measurement:
        policy = policy.with_measurements(*allow_measurement)
    blob = file.read_bytes()
    if signature is not None or chain is not None:
        if signature is None or chain is None:
            typer.echo("error: an IAS report needs both --signature and --chain", err=True)
            raise typer.Exit(2)
        from node.attest.evidence.ias import pack_ias

        # a signature file may end in a newline; the header value itself is canonical base64, checked as such
        blob = pack_ias(blob, signature.read_bytes().strip(), chain.read_bytes())
    coll = _collateral(collateral or [])
    side = binding or (file.with_name(file.name + ".binding.json"))
    checked = binding is not None or side.exists()
    if checked:
        from node.cli.vault import binding_from_json
        from node.attest.binding import verify_attestation

        try:
            b = binding_from_json(json.loads(side.read_text()))
        except (OSError, ValueError, KeyError) as exc:
            typer.echo(f"error: binding file {side}: {exc}", err=True)
            raise typer.Exit(2)
        verdict = verify_attestation(blob, b, policy=policy, at=when, collateral=coll)
    else:
        verdict = verify_evidence(blob, policy=policy, at=when, collateral=coll, format=fmt)
    # an expired certificate / CRL / TCB info as of now: the evidence may have been fine when it was made
    at_hint = (at is None and not verdict.ok and (verdict.code == "expired" or "Expired" in verdict.reason))
    if as_json:
        out = dict(verdict.to_json(), binding_checked=checked)
        if checked:
            out["binding_file"] = str(side)
        typer.echo(json.dumps(out, indent=2, sort_keys=True))
    else:
        typer.echo(verdict.headline() + ("" if checked or not verdict.ok else "; binding not checked"))
        if checked:
            typer.echo(f"  binding: checked against {side}")
        else:
            typer.echo(f"  binding: NOT CHECKED (no {side.name}; pass --binding FILE): the report data was not "
                       "matched to any keys, peer id or network")
        if at_hint:
            typer.echo("  hint: verified as of now; to verify as of when the evidence was made, pass "
                       "--at <ISO-8601 time>, e.g. --at 2025-01-01T00:00:00Z")
        for k in ("code", "vendor", "verified_at", "measurement", "debug", "tcb_status", "report_data"):
            v = getattr(verdict, k)
            if v not in ("", None):
                typer.echo(f"  {k}: {v}")
        if verdict.advisories:
            typer.echo(f"  advisories: {', '.join(verdict.advisories)}")
        if verdict.simulated:
            typer.echo("  SIMULATED TEE: INSECURE (development only)")
    raise typer.Exit(0 if verdict.ok else 3 if verdict.genuine else 4)


def register(app: typer.Typer) -> None:
    """``attest verify`` lives on the shared ``attest`` group (mounted by node.cli.attest)."""
