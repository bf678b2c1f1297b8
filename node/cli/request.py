"""``keyswitch request`` (ask the network for chunks covering X USD of an asset),
``keyswitch swap`` (swap chunks with a peer, enclave to enclave), ``keyswitch escrow`` /
``keyswitch option`` / ``keyswitch ring`` (language contracts the enclaves run) and ``keyswitch approve``.

Through the running daemon's API (``POST /v1/requests``): the daemon gossips a
signed request, peers' risk engines answer with proposals within their caps,
and this node's own engine chooses among them after the deadline
(``risk.request_deadline``).
"""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from node.cli import state
from node.cli.client import DaemonNotRunning, call
from node.cli.ops import _table
from node.protocols.request_run import MAX_EXPIRY_BLOCKS, MAX_PREMIUM_CHUNKS


HOLDERS = typer.Option("", "--key-escrow-holders", help="Key escrow: peer ids (comma-separated) holding Shamir "
                       "shares of this node's chunks' keys (with --k and --recovery)")
K = typer.Option(0, "--k", min=0, max=16, help="Key escrow: how many holders rebuild a key")
RECOVERY = typer.Option("", "--recovery", help="Key escrow: peer id of this node's recovery node, whose enclave "
                        "gets the shares at the time-lock and sweeps the chunks home (keyswitch recover)")


def key_escrow_option(holders: str, k: int, recovery: str) -> dict:
    """The ``key_escrow`` body field of --key-escrow-holders/--k/--recovery (none of them: no key escrow)."""
    if not (holders or k or recovery):
        return {}
    if not (holders and k and recovery):
        typer.echo("error: key escrow needs --key-escrow-holders, --k and --recovery together", err=True)
        raise typer.Exit(2)
    return {"key_escrow": {"holders": [h.strip() for h in holders.split(",") if h.strip()], "k": k,
                           "recovery": recovery}}


def register(app: typer.Typer) -> None:
    @app.command("request")
    def request(
        asset: str = typer.Option(..., "--asset", help="Asset symbol, e.g. BTC-REG"),
        usd: float = typer.Option(..., "--usd", min=0.01, help="USD value wanted"),
        contract: str = typer.Option("swap", "--contract", help="Contract kind or terms hash; with --give: swap, "
                                     "or option (buy from each provider the right to take its chosen chunks, "
                                     "one chunk of --give each, until --expiry-blocks)"),
        give: str = typer.Option("", "--give", help="Also swap the chosen chunks against this node's chunks of "
                                 "this asset: one swap per provider, concurrently, followed to the end (exit 0: "
                                 "all obtained, 5: less, 4: nothing allocated)"),
        premium_chunks: int = typer.Option(1, "--premium-chunks", min=1, max=MAX_PREMIUM_CHUNKS,
                                           help="--contract option: chunks of --give paid per option as its premium"),
        expiry_blocks: int = typer.Option(100, "--expiry-blocks", min=1, max=MAX_EXPIRY_BLOCKS,
                                          help="--contract option: exercisable for this many blocks of --asset"),
        as_json: bool = typer.Option(False, "--json", help="Print the API's JSON answer (with --give: the final "
                                     "report only)"),
    ) -> None:
        """Request chunks worth USD of ASSET from the network's risk engines and show the choice; with
        --give, run the contracts too."""
        if give:
            from node.cli.request_progress import run

            terms = {"premium_chunks": premium_chunks, "expiry_blocks": expiry_blocks} \
                if contract.strip().lower() == "option" else {}
            return run(asset, usd, contract, give, as_json, terms)
        try:
            data = call(state.get_datadir(), "POST", "/v1/requests",
                        body={"asset": asset, "usd": usd, "contract": contract}, timeout=60)
        except DaemonNotRunning as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(3)
        if as_json:  # the same exit code as the table: 4 when nothing was allocated
            typer.echo(json.dumps(data, indent=2, sort_keys=True))
            if not data["ok"]:
                raise typer.Exit(4)
            return
        if not data["ok"]:
            typer.echo(f"no allocation: {data['reason']}", err=True)
            raise typer.Exit(4)
        typer.echo(f"{len(data['offers'])} chunks, {data['total_cents'] / 100:.2f} USD for {data['target_cents'] / 100:.2f} "
                   f"USD requested (overshoot {data['overshoot_cents'] / 100:.2f}); {data['proposals']} proposals, "
                   f"from {len(data['from_proposers'])} peers")
        _table([{"device": o["device"][:16], "owner": o["owner"][-12:], "usd": f"{o['usd_cents'] / 100:.2f}",
                 "address": o["address"]} for o in data["offers"]], "chosen chunks")

    @app.command("swap")
    def swap(
        peer: str = typer.Option(..., "--peer", help="The peer id to swap with (its offers must be in the book)"),
        give: str = typer.Option(..., "--give", help="Asset this node gives (its own offered chunks)"),
        take: str = typer.Option(..., "--take", help="Asset it takes (the peer's offered chunks)"),
        chunks: int = typer.Option(1, "--chunks", min=1, max=100, help="Chunks each way"),
        wait: float = typer.Option(60.0, "--wait", min=0, help="Seconds to wait for the rounds to finish (0: don't)"),
        as_json: bool = typer.Option(False, "--json", help="Print JSON"),
    ) -> None:
        """Swap CHUNKS of GIVE for a peer's TAKE, one chunk at a time, enclave to enclave."""
        import time

        datadir = state.get_datadir()
        try:
            agreed = call(datadir, "POST", "/v1/contracts",
                          body={"peer": peer, "give": give, "take": take, "chunks": chunks}, timeout=90)
        except DaemonNotRunning as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(3)
        if not as_json:
            typer.echo(f"agreed with {peer}: {agreed['rounds']} rounds, give {agreed['give']['usd_cents'] / 100:.2f} "
                       f"USD of {give}, take {agreed['take']['usd_cents'] / 100:.2f} USD of {take}")
        mine: list = []
        end = time.monotonic() + wait
        while wait and time.monotonic() < end:
            mine = [c for c in call(datadir, "GET", "/v1/contracts")["contracts"]
                    if c.get("peer") == peer and c.get("role") == "initiator"]
            if mine and mine[-1]["state"] in ("done", "withheld", "failed") and "outcome" in mine[-1]:
                break
            time.sleep(0.3)
        last = mine[-1] if mine else None
        if as_json:
            typer.echo(json.dumps({"agreed": agreed, "contract": last}, indent=2, sort_keys=True))
        elif last is not None:
            o = last.get("outcome") or {}
            typer.echo(f"{last['state']}: {last['reason']}; released {o.get('released', '?')}, "
                       f"received {o.get('received', '?')}, lost {o.get('lost', '?')}")
        if last is not None and last["state"] in ("withheld", "failed"):
            raise typer.Exit(4)

    def _post(path: str, body: dict) -> None:
        try:
            out = call(state.get_datadir(), "POST", path, body=body, timeout=90)
        except DaemonNotRunning as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(3)
        except typer.BadParameter as exc:  # the daemon or the peer refused it, with the reason
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(4)
        typer.echo(json.dumps(out, indent=2, sort_keys=True))

    @app.command("escrow")
    def escrow(
        payee: str = typer.Option(..., "--payee", help="The peer paid on approval"),
        arbiter: str = typer.Option(..., "--arbiter", help="The peer whose signed \"release\" pays the payee"),
        give: str = typer.Option(..., "--give", help="Asset of this node's chunks held in escrow"),
        chunks: int = typer.Option(1, "--chunks", min=1, max=100),
        refund_blocks: int = typer.Option(100, "--refund-blocks", min=1, max=100_000,
                                          help="Without approval, back to this node after this many blocks"),
        holders: str = HOLDERS, k: int = K, recovery: str = RECOVERY,
    ) -> None:
        """Hold CHUNKS of GIVE for PAYEE until ARBITER approves (each enclave decides every release)."""
        _post("/v1/contracts", {"kind": "escrow", "peer": payee, "arbiter": arbiter, "give": give,
                                "chunks": chunks, "refund_blocks": refund_blocks,
                                **key_escrow_option(holders, k, recovery)})

    @app.command("option")
    def option(
        writer: str = typer.Option(..., "--writer", help="The peer writing the call (its offers must be in the book)"),
        give: str = typer.Option(..., "--give", help="Asset this node pays the premium and strike in"),
        take: str = typer.Option(..., "--take", help="Asset of the writer's chunks (the underlying)"),
        chunks: int = typer.Option(1, "--chunks", min=1, max=100, help="Underlying chunks (= strike chunks)"),
        premium_chunks: int = typer.Option(1, "--premium-chunks", min=0, max=100),
        premium_blocks: int = typer.Option(20, "--premium-blocks", min=1, max=100_000),
        expiry_blocks: int = typer.Option(100, "--expiry-blocks", min=1, max=100_000),
        holders: str = HOLDERS, k: int = K, recovery: str = RECOVERY,
    ) -> None:
        """Buy a call option on the writer's CHUNKS of TAKE: premium now, exercise with: keyswitch approve."""
        _post("/v1/contracts", {"kind": "option", "peer": writer, "give": give, "take": take, "chunks": chunks,
                                "premium_chunks": premium_chunks, "premium_blocks": premium_blocks,
                                "expiry_blocks": expiry_blocks, **key_escrow_option(holders, k, recovery)})

    @app.command("ring")
    def ring(
        give: str = typer.Option(..., "--give", help="Asset of this node's chunks, given to the first leg's peer"),
        leg: List[str] = typer.Option(..., "--leg", help="PEER=ASSET, in ring order (2 or more): the peer gives "
                                                          "chunks of ASSET to the next leg's peer, the last to us"),
        chunks: int = typer.Option(1, "--chunks", min=1, max=100, help="Chunks each party gives"),
        deadline_blocks: int = typer.Option(100, "--deadline-blocks", min=1, max=100_000,
                                            help="Unmoved chunks go home after this many blocks of GIVE"),
    ) -> None:
        """A ring trade (stdlib ring): we give to the first peer, each gives to the next, the last to us."""
        legs = []
        for x in leg:
            peer, sep, asset = x.partition("=")
            if not sep or not peer or not asset:
                typer.echo(f"error: --leg {x!r}: expected PEER=ASSET", err=True)
                raise typer.Exit(2)
            legs.append({"peer": peer, "asset": asset})
        _post("/v1/contracts", {"kind": "ring", "give": give, "legs": legs, "chunks": chunks,
                                "refund_blocks": deadline_blocks})

    @app.command("approve")
    def approve(
        contract: str = typer.Option(..., "--contract", help="The contract id (64 hex digits)"),
        message: str = typer.Option(..., "--message", help="\"release\" (escrow arbiter), \"exercise\" (option buyer)"),
    ) -> None:
        """Sign MESSAGE for a contract this node runs or arbitrates, and deliver it to the runners."""
        _post("/v1/contracts/approve", {"contract": contract, "message": message})

    @app.command("revoke")
    def revoke(
        device_class: Optional[str] = typer.Option(None, "--class", help="Revoke a device class, e.g. sgx or sgx:OutOfDate"),
        device: Optional[str] = typer.Option(None, "--device", help="Revoke one device (64 hex digits)"),
        reason: str = typer.Option(..., "--reason", help="Why (shown to every node that acts on it)"),
    ) -> None:
        """Sign and gossip a revocation notice: applied here at once; other nodes act on it only if they
        list this node in risk.revocation_signers and opted in (risk.accept_signed_revocations)."""
        if (device_class is None) == (device is None):
            typer.echo("error: give exactly one of --class or --device", err=True)
            raise typer.Exit(2)
        kind, target = ("class", device_class) if device_class else ("device", device)
        try:
            out = call(state.get_datadir(), "POST", "/v1/revocations",
                       body={"kind": kind, "target": target, "reason": reason})
        except DaemonNotRunning as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(3)
        except typer.BadParameter as exc:  # the daemon refused it, with the reason
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(4)
        typer.echo(json.dumps(out, indent=2, sort_keys=True))
