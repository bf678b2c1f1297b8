"""``keyswitch vault new|show`` and ``keyswitch attest quote``.

All three talk to the node's enclave (the simulated backend: a separate
process, ``node.tee.client.SubprocessEnclave``). No command ever prints a
private key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from node.cli import attest, state


def _enclave():
    from node.tee.client import EnclaveUnavailable, SubprocessEnclave

    try:
        return SubprocessEnclave(state.get_datadir())
    except EnclaveUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


def _net_and_peer(datadir: Path) -> tuple[str, str]:
    from node import config, identity

    try:
        net = config.load(datadir)["network.net"]
    except config.ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    if not (datadir / identity.IDENTITY_FILE).exists():
        typer.echo(f"error: no node identity in {datadir}; run `keyswitch init` first", err=True)
        raise typer.Exit(2)
    return net, identity.peer_id(datadir)


def register(app: typer.Typer) -> None:
    vault_app = typer.Typer(help="The enclave key vault (deposit keys).", no_args_is_help=True)
    app.add_typer(vault_app, name="vault")

    @vault_app.command("new")
    def new(keys: int = typer.Option(..., "--keys", min=1, max=10_000, help="How many deposit keys to generate")) -> None:
        """Generate N secp256k1 deposit keys inside the enclave (sealed in the data directory)."""
        from node.tee.client import EnclaveRefused

        with _enclave() as enc:
            try:
                pubs = enc.generate_keys(keys)
            except EnclaveRefused as exc:
                typer.echo(f"refused: {exc.reason}", err=True)
                raise typer.Exit(1)
            held = len(enc.held_pubkeys())
        typer.echo(f"generated {len(pubs)} deposit keys in {state.get_datadir() / 'enclave'} ({held} held)")
        for pk in pubs[:5]:
            typer.echo(f"  {pk.hex()}")
        if len(pubs) > 5:
            typer.echo(f"  ... and {len(pubs) - 5} more (keyswitch vault show)")

    @vault_app.command("show")
    def show(as_json: bool = typer.Option(False, "--json", help="Machine-readable output")) -> None:
        """Show the enclave's identity and its deposit keys (public keys and states only)."""
        from node.attest.binding import keys_root

        with _enclave() as enc:
            info = enc.info()
            keys = enc.list_keys()
        held = [k.pubkey for k in keys if k.state in ("held", "received")]
        data = {
            "datadir": str(state.get_datadir()),
            "simulated": info.simulated,
            "measurement": info.measurement,
            "device_id": info.device_id.hex(),
            "sign_pub": info.sign_pub.hex(),
            "enc_pub": info.enc_pub.hex(),
            "sealed_counter": info.counter,
            "keys_root": keys_root(held).hex(),
            "counts": {s: sum(k.state == s for k in keys) for s in ("held", "received", "released", "exported")},
            "keys": [
                {"pubkey": k.pubkey.hex(), "state": k.state, "origin": k.origin, "recipient": k.recipient.hex()}
                for k in keys
            ],
        }
        if as_json:
            typer.echo(json.dumps(data, indent=2))
            return
        typer.echo(f"enclave {'SIMULATED (INSECURE)' if info.simulated else 'hardware'}")
        for k in ("measurement", "device_id", "sign_pub", "enc_pub", "sealed_counter", "keys_root"):
            typer.echo(f"  {k:15} {data[k]}")
        typer.echo("  keys            " + ", ".join(f"{n} {s}" for s, n in data["counts"].items()))
        if keys:
            typer.echo(f"{'pubkey':66}  {'state':8}  {'origin':9}  recipient")
        for k in data["keys"]:
            typer.echo(f"{k['pubkey']:66}  {k['state']:8}  {k['origin']:9}  {k['recipient']}")

    attest.register(app)

    @attest.attest_app.command("quote")
    def quote(
        out: Optional[Path] = typer.Option(None, "--out", help="Quote file to write (default: <datadir>/quote.bin)"),
        nonce: str = typer.Option("", "--nonce", help="Verifier's challenge, hex (up to 64 bytes)"),
    ) -> None:
        """Write a quote binding this node's enclave keys, peer id and held deposit keys.

        Also writes <out>.binding.json: the binding the quote's report data commits to.
        """
        from node.tee.client import EnclaveRefused

        datadir = state.get_datadir()
        try:
            nonce_b = bytes.fromhex(nonce)
        except ValueError:
            typer.echo("error: --nonce must be hex", err=True)
            raise typer.Exit(2)
        net, peer = _net_and_peer(datadir)
        with _enclave() as enc:
            binding = enc.binding_for(net, peer)
            try:
                blob = enc.quote(binding, nonce=nonce_b)
            except EnclaveRefused as exc:
                typer.echo(f"refused: {exc.reason}", err=True)
                raise typer.Exit(1)
        path = out or datadir / "quote.bin"
        path.write_bytes(blob)
        bpath = path.with_name(path.name + ".binding.json")
        bpath.write_text(json.dumps(binding_json(binding), indent=2) + "\n")
        typer.echo(f"wrote {path} ({len(blob)} bytes, SIMULATED quote) and {bpath}")
        typer.echo(f"peer id {peer}, net {net}, report data {binding.report_data().hex()[:32]}...")


def binding_json(binding) -> dict:
    return {
        "version": binding.version,
        "net": binding.net,
        "peer_id": binding.peer_id,
        "sign_pub": binding.sign_pub.hex(),
        "enc_pub": binding.enc_pub.hex(),
        "keys_root": binding.keys_root.hex(),
        "report_data": binding.report_data().hex(),
    }


def binding_from_json(data: dict):
    """Inverse of ``binding_json`` (for ``attest verify --binding``)."""
    from node.attest.binding import Binding

    return Binding(
        net=data["net"], peer_id=data["peer_id"], sign_pub=bytes.fromhex(data["sign_pub"]),
        enc_pub=bytes.fromhex(data["enc_pub"]), keys_root=bytes.fromhex(data["keys_root"]),
        version=int(data.get("version", 1)),
    )
