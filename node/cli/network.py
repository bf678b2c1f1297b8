"""The node on the network: ``keyswitch peers``, ``keyswitch id``, ``keyswitch connect <multiaddr>``.

``peers`` shows each connected peer as ``GET /v1/peers`` gives it (``node.runtime.peerinfo``): the connection's
address and direction, the ping round trip, the agent it gave in identify, whether it is in the offers mesh,
the bootstrap node labelled, and its gossipsub score. ``id`` says who this node is and which address to give
others; ``connect`` dials a peer through the daemon's API.
"""

from __future__ import annotations

import json

import typer

from node.cli import state
from node.cli.client import DaemonNotRunning, ask, call
from node.cli.ops import JSON, answer, new_table, short_id

LOCAL_PREFIXES = ("/ip4/127.", "/ip6/::1/", "/ip4/0.0.0.0/", "/ip6/::/")


def peer_row(r: dict) -> dict:
    """One ``keyswitch peers`` row from a ``GET /v1/peers`` entry: its fields, and the gossipsub score (issue
    #23) in two columns that fit 80 columns: the score with its non-zero components (P4 invalid messages, P5
    behaviour, P6 application) and the thresholds it is below; the messages dropped (publish / graylist).
    Every component, zero or not, is in ``--json``."""
    comps = r.get("score_components", {})
    row = {k: v for k, v in r.items() if k not in ("score_components", "below", "score", "publish_dropped",
                                                     "graylist_dropped")}  # addresses, mesh state, ...
    if "score" in r:
        parts = [f"{name} {comps[key]:g}" for name, key in (("P4", "p4_invalid"), ("P5", "p5_behaviour"),
                                                           ("P6", "p6_app"))
                 if isinstance(comps.get(key), (int, float)) and comps[key]]
        below = ",".join(r.get("below", []))
        row["score"] = f"{r['score']:g}" if isinstance(r["score"], (int, float)) else str(r["score"])
        row["score"] += (f" ({', '.join(parts)})" if parts else "") + (f" below {below}" if below else "")
        row["dropped"] = f"{r.get('publish_dropped', 0)}/{r.get('graylist_dropped', 0)}"
    return row


def latency(ms) -> str:
    """A ping round trip for people: ``0.42 ms``, ``37 ms``; ``…`` before the first answer."""
    if not isinstance(ms, (int, float)) or isinstance(ms, bool):
        return "…"
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.0f} ms"


def print_peers(peers: list[dict]) -> None:
    """The peers table (80 columns), then each peer's address and agent whole, one a line, numbered."""
    made = new_table(peers, "peers", "no peers connected")
    if made is None:
        return
    console, t = made
    for name in ("#", "peer", "dir", "ping", "mesh", "score", "dropped"):
        t.add_column(name, no_wrap=name != "score", overflow="fold",
                     justify="right" if name in ("#", "ping", "dropped") else "left")
    for i, r in enumerate(peers, 1):
        row = peer_row(r)
        who = short_id(r.get("peer", "")) + ("\nbootstrap" if r.get("bootstrap") else "")
        t.add_row(str(i), who, str(r.get("direction", "")), latency(r.get("latency_ms")),
                  "yes" if r.get("in_offer_mesh") else "no", row.get("score", ""), row.get("dropped", ""))
    console.print(t)
    for i, r in enumerate(peers, 1):
        addr = r.get("address") or ", ".join(r.get("addrs", []))
        label = "bootstrap node" if r.get("bootstrap") else ""
        agent = r.get("agent") or "(agent not known yet)"
        typer.echo(f"#{i} {addr}  {', '.join(x for x in (label, agent) if x)}")
    typer.echo("(whole peer ids and every score component: keyswitch peers --json)")


def shareable(addrs: list[str]) -> str:
    """The multiaddr to give other nodes: the first one not on loopback or unspecified, else the first."""
    public = [a for a in addrs if not a.startswith(LOCAL_PREFIXES)]
    return (public or addrs or [""])[0]


def local_identity() -> dict:
    """``keyswitch id`` without a daemon: the identity file, the configured addresses, the enclave's device."""
    from node import config, identity

    datadir = state.get_datadir()
    try:
        cfg = config.load(datadir)
    except config.ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    pid = identity.peer_id(datadir)
    addrs = [f"{a}/p2p/{pid}" for a in (cfg["network.announce"] or cfg["network.listen"])]
    device = ""
    from node.tee.client import EnclaveUnavailable, SubprocessEnclave

    try:
        with SubprocessEnclave(datadir) as enc:
            device = enc.info().device_id.hex()
    except EnclaveUnavailable as exc:
        device = f"unknown ({exc})"
    return {"peer_id": pid, "device_id": device, "listen": addrs, "give_others": shareable(addrs),
            "source": f"data directory {datadir} (no daemon running: configured addresses; a /tcp/0 port is "
                      "chosen when the node starts)"}


def register(app: typer.Typer) -> None:
    @app.command("peers")
    def peers(as_json: bool = JSON) -> None:
        """Connected peers: address, direction, ping, agent, offers mesh, bootstrap node, gossipsub score."""
        data = answer("/v1/peers", as_json)
        if data is not None:
            print_peers(data["peers"])

    @app.command("id")
    def id_(as_json: bool = JSON) -> None:
        """This node's peer id, listen addresses, the multiaddr to give others, and its enclave's device id."""
        try:
            st = call(state.get_datadir(), "GET", "/v1/status")
            listen = list(st.get("listen") or [])
            data = {"peer_id": st.get("peer_id", ""), "device_id": (st.get("enclave") or {}).get("device_id", ""),
                    "listen": listen, "give_others": shareable(listen), "source": "the running daemon"}
        except DaemonNotRunning:
            data = local_identity()
        if as_json:
            typer.echo(json.dumps(data, indent=2, sort_keys=True))
            return
        typer.echo(f"peer id    {data['peer_id']}")
        typer.echo(f"device id  {data['device_id']}")
        typer.echo(f"source     {data['source']}")
        typer.echo("listening on:")
        for a in data["listen"]:
            typer.echo(f"  {a}")
        local = data["give_others"].startswith(LOCAL_PREFIXES)
        typer.echo("give others this address (a bootnode, or `keyswitch connect`)"
                   + (" - loopback: reachable from this machine only; set network.announce" if local else "")
                   + ":")
        typer.echo(data["give_others"])

    @app.command("connect")
    def connect(multiaddr: str = typer.Argument(..., help="The peer's /ip4/<ip>/tcp/<port>/p2p/<peer id>")) -> None:
        """Dial a peer now (through the running daemon)."""
        from node.config import peer_address_problem

        why = peer_address_problem(multiaddr, "peer address")
        if why is not None:
            typer.echo(f"error: {multiaddr!r}: {why}", err=True)
            raise typer.Exit(2)
        r = ask(state.get_datadir(), "POST", "/v1/peers", body={"multiaddr": multiaddr}, timeout=60.0)
        how = f"{r.get('direction', '')}, ping {latency(r.get('latency_ms'))}, {r.get('agent') or 'agent not known yet'}"
        typer.echo(f"{'already ' if r.get('already') else ''}connected to {r['peer']} ({how})")
