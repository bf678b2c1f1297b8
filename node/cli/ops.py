"""Operator commands that talk to a running daemon through its local API.

``keyswitch status|peers|offers|deposits|contracts|reputation`` read
``<datadir>/api.url`` and ``<datadir>/.cookie`` (both written by
``keyswitch run``), print a table (rich) or, with ``--json``, the raw answer.
``deposits`` also works without a daemon: it then reads the data directory's
deposit store, ledger and enclave itself, and says which source it used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from node.cli import state
from node.cli.client import API_URL_FILE, DaemonNotRunning, call


# ------------------------------------------------------------------ values for people
#: fields holding a peer id, device id, contract id or key: shortened in tables (whole with --json)
ID_KEYS = {"peer", "peer_id", "origin", "device", "device_id", "owner", "offer_id", "contract", "pubkey", "txid",
           "by", "parties", "kept_from"}
#: fields holding a Unix time: shown as a UTC date and an age
TIME_KEYS = {"created_at", "price_at", "keys_in_at", "expiry", "at", "since", "last_seen", "first_seen"}
#: fields left out of tables (internal detail; all of them are in --json)
TABLE_HIDDEN = {"spent_ms", "summary_error", "price", "price_at", "pubkey", "txid", "confirmed", "measurement"}


def short_id(v: str) -> str:
    v = str(v)
    return v if len(v) <= 16 else f"{v[:8]}…{v[-6:]}"


def coin(asset: str, base) -> str:
    """Base units as coin units of ``asset`` (0.0005 BTC-REG), or the number as it is for an unknown asset."""
    from node.assets import ASSETS

    a = ASSETS.get(asset)
    if a is None or not isinstance(base, int):
        return str(base)
    whole, frac = divmod(abs(base), a.unit)
    text = f"{whole:,}" + (("." + f"{frac:0{a.decimals}d}".rstrip("0")) if frac else "")
    return f"{'-' if base < 0 else ''}{text} {asset}"


def usd(cents) -> str:
    try:
        return f"${float(cents) / 100:,.2f}"
    except (TypeError, ValueError):
        return str(cents)


def age(seconds) -> str:
    s = max(0.0, float(seconds))
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def when(epoch, now: float | None = None) -> str:
    """A Unix time as ``2026-12-06 20:30 UTC (2.0 h ago)`` (or ``in 5 min``)."""
    import time
    from datetime import datetime, timezone

    now = time.time() if now is None else now
    try:
        t = float(epoch)
    except (TypeError, ValueError):
        return str(epoch)
    if not 0 < t < 1e11:
        return str(epoch)
    date = datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{date} ({age(now - t)} ago)" if t <= now else f"{date} (in {age(t - now)})"


def plain(v) -> str:
    """Any JSON value as one line of text for a person: no braces, no quotes."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={plain(x)}" for k, x in v.items()) or "none"
    if isinstance(v, (list, tuple)):
        return ", ".join(plain(x) for x in v) or "none"
    return str(v)


def value(key: str, v, row: dict | None = None) -> str:
    """One field for a person: ids shortened, amounts in coin units, cents in USD, times as dates and ages."""
    row = row or {}
    if key in ID_KEYS:
        return ", ".join(map(short_id, v)) if isinstance(v, list) else short_id(v) if v else ""
    if key.endswith("_cents"):
        return usd(v)
    if key == "amount" and "asset" in row:
        return coin(row["asset"], v)
    if key in TIME_KEYS:
        return when(v)
    if key == "uptime":
        return age(v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={value(k, x, v)}" for k, x in v.items()) or "none"
    return plain(v)


def cell(key: str, v, row: dict) -> str:
    """``value`` for a table cell: a time as its age only (the date is in --json)."""
    if key in TIME_KEYS:
        return when(v).split("(")[-1].rstrip(")")
    return value(key, v, row)


def header(key: str) -> str:
    if key == "usd_cents":
        return "USD"
    if key == "first_seen":
        return "seen"
    return (key[:-6] if key.endswith("_cents") else key).replace("_", " ")  # (the cells say $)


def _is_addr(key: str) -> bool:
    return "addr" in key or key in ("listen", "multiaddr", "multiaddrs")


def _table(rows: list[dict], title: str, first: tuple[str, ...] = (), only: tuple[str, ...] = ()) -> None:
    """A table of ``rows`` (the union of their fields, ``first`` first), every cell plain text. Addresses
    (multiaddrs) go below the table, whole, one a line, to copy."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not rows:
        console.print(f"[dim]no {title}[/dim]")
        return
    cols = [c for c in first if any(c in r for r in rows)]
    for r in rows:
        cols += [k for k in r if k not in cols and k not in TABLE_HIDDEN and (not only or k in only)]
    addr_cols = [c for c in cols if _is_addr(c)]
    cols = [c for c in cols if c not in addr_cols]
    numeric = {c for c in cols if all(isinstance(r.get(c, 0), (int, float)) and not isinstance(r.get(c), bool)
                                      for r in rows)}
    t = Table(title=title)
    if addr_cols:
        t.add_column("#", justify="right", no_wrap=True)
    for c in cols:
        t.add_column(header(c), overflow="fold", no_wrap=c not in ("reason", "refused", "score"),
                     justify="right" if c.endswith("_cents") or c == "amount" or c in numeric else "left")
    for i, r in enumerate(rows, 1):
        t.add_row(*([str(i)] if addr_cols else []), *[cell(c, r[c], r) if c in r else "" for c in cols])
    console.print(t)
    for i, r in enumerate(rows, 1):
        for c in addr_cols:
            vals = r.get(c) or []
            for a in vals if isinstance(vals, list) else [vals]:
                typer.echo(f"#{i} {a}")


def _offers(rows: list[dict]) -> None:
    """The offer book for people: amount in coin and USD, device (short) and class, origin, expiry as an age;
    the deposit addresses whole below."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not rows:
        console.print("[dim]no offers[/dim]")
        return
    t = Table(title="offers")
    for name in ("#", "amount", "USD", "device", "class", "expires"):
        t.add_column(name, no_wrap=True, justify="right" if name in ("#", "amount", "USD") else "left")
    for i, r in enumerate(rows, 1):
        exp = when(r["expiry"]).split("(")[-1].rstrip(")") if r.get("expiry") else ""
        t.add_row(str(i), coin(r.get("asset", ""), r.get("amount")), usd(r.get("usd_cents")),
                  short_id(r.get("device_id", "")), str(r.get("device_class", "")), exp)
    console.print(t)
    for i, r in enumerate(rows, 1):
        typer.echo(f"#{i} {r.get('address', '')}")


def answer(path: str, as_json: bool) -> dict | None:
    """``GET path`` of the running daemon (one line and exit 3 without one); with ``as_json`` printed as it is
    and None returned (the caller prints nothing more)."""
    from node.cli.client import ask

    data = ask(state.get_datadir(), "GET", path)
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return None
    return data


def new_table(rows: list, title: str, empty: str):
    """(console, an empty rich table titled ``title``), or None after printing ``empty`` when there are no rows."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not rows:
        console.print(f"[dim]{empty}[/dim]")
        return None
    return console, Table(title=title)


def _contracts(rows: list[dict]) -> None:
    """Contracts for people: id, kind, our role, the other party (or parties), state, rounds, reason."""
    made = new_table(rows, "contracts", "no contracts")
    if made is None:
        return
    console, t = made
    for name in ("contract", "kind", "role", "with", "state", "rounds"):
        t.add_column(name, no_wrap=name != "state", overflow="fold", justify="right" if name == "rounds" else "left")
    notes = []
    for r in rows:
        cid = str(r.get("contract", ""))[:8]
        other = r.get("peer") or ""
        if not other and r.get("parties"):
            ps = list(r["parties"])
            other = short_id(ps[0]) + (f" +{len(ps) - 1}" if len(ps) > 1 else "")
        else:
            other = short_id(other)
        outcome = r.get("outcome") or {}
        state = str(r.get("state", "")) + (f" ({outcome['kind']})" if isinstance(outcome, dict)
                                           and outcome.get("kind") else "")
        role = r.get("role", "")
        t.add_row(cid, str(r.get("kind", "swap")), f"party {role}" if isinstance(role, int) else plain(role), other, state, plain(r.get("rounds", "")))
        why = r.get("reason") or r.get("summary_error") or ""
        if why:
            notes.append(f"{cid}: {plain(why)}")
        if r.get("keys_in_at"):
            notes.append(f"{cid}: last key in {when(r['keys_in_at'])}")
    console.print(t)
    for n in notes:
        typer.echo(n)
    typer.echo("(whole ids and every field: keyswitch contracts --json)")


def _status(data: dict) -> None:
    """``status`` for people: one fact a line, nested facts as k=v, the multiaddrs whole on their own lines."""
    facts = [("peer id", short_id(data.get("peer_id", "")) + "   (whole: keyswitch status --json)"),
             ("network", data.get("net", "")), ("ready", plain(data.get("ready"))),
             ("uptime", age(data.get("uptime", 0))), ("peers", plain(data.get("peers"))),
             ("offers", f"{data.get('offers_in_book', 0)} in the book, {data.get('own_offers', 0)} of our own")]
    enc = data.get("enclave") or {}
    if enc:
        kind = "SIMULATED (development only)" if enc.get("simulated") else "hardware"
        broken = f", BROKEN mode {enc['broken']}" if enc.get("broken") else ""
        facts.append(("enclave", f"{kind}{broken}, device {short_id(enc.get('device_id', ''))}"))
    shown = {"peer_id", "net", "ready", "uptime", "peers", "offers_in_book", "own_offers", "enclave", "listen"}
    def nonzero(v):  # counters that are all 0 say nothing: keep what happened
        if isinstance(v, dict):
            kept = {k: nonzero(x) for k, x in v.items()}
            return {k: x for k, x in kept.items() if x not in (0, 0.0, {}, [], None, "")}
        return v

    for k, v in data.items():
        if k not in shown:
            v = nonzero(v)
            facts.append((k.replace("_", " "), value(k, v) if v not in ({}, [], None, "") else "nothing yet"))
    width = max(len(k) for k, _ in facts)
    for k, v in facts:
        typer.echo(f"{k:<{width}}  {v}")
    listen = data.get("listen") or []
    if listen:
        typer.echo("listening on (give this address to other nodes as a bootnode):")
        for a in listen:
            typer.echo(a)


def _run(path: str, key: str | None, as_json: bool, title: str, params=None, first: tuple[str, ...] = (),
         only: tuple[str, ...] = ()) -> None:
    try:
        data = call(state.get_datadir(), "GET", path, params=params)
    except DaemonNotRunning as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3)
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    elif key is None:
        _status(data)
    elif key == "contracts":
        _contracts(data[key])
    elif key == "offers":
        _offers(data[key])
    elif key == "devices":  # reputation: a cheater's score says CHEATER; the reports count is in --json
        rows = [{**{k: v for k, v in r.items() if k not in ("cheater", "reports")},
                 "score": "CHEATER" if r.get("cheater") else round(float(r.get("score", 0)), 2)}
                for r in data[key]]
        _table(rows, title, first, only)
    else:
        _table(data[key], title, first, only)


JSON = typer.Option(False, "--json", help="Print the API's JSON answer")
WAIT_DEFAULT = 60.0  # s `status --wait` waits without a number


def wait_ready(datadir: Path, seconds: float) -> None:
    """Until the daemon of ``datadir`` answers ``GET /v1/status`` with ready (it may not be started yet: its
    api.url and cookie appear once its API listens); exit 3 with one line after ``seconds``. A CLI waiting
    for another process has nothing to be woken by: it asks again every 0.2 s, as ``bitcoin-cli -rpcwait``."""
    import time

    deadline = time.monotonic() + seconds
    last = "no answer"
    while True:
        left = deadline - time.monotonic()
        try:
            if call(datadir, "GET", "/v1/status", timeout=max(0.5, min(5.0, left))).get("ready"):
                return
            last = "it answered, not ready yet"
        except (DaemonNotRunning, typer.BadParameter) as exc:  # not started, or a cookie of the last run
            last = str(getattr(exc, "message", exc))
        if left <= 0:
            typer.echo(f"error: the daemon of {datadir} was not ready within {seconds:g} s ({last}); its log: "
                       f"keyswitch --datadir {datadir} logs", err=True)
            raise typer.Exit(3)
        time.sleep(min(0.2, max(0.0, left)))


def local_deposits(datadir: Path) -> tuple[dict, str]:
    """``GET /v1/deposits`` without a daemon: the deposit store, the ledger, and the enclave for key states
    (if the enclave cannot start, key states are "unknown" and the source says so)."""
    from node.cli.deposit import watch_ledger
    from node.app.deposits import DepositStore, deposit_status

    path = datadir / "deposits.sqlite"
    source = f"local deposit store {path} (no daemon running)"
    if not path.exists():
        return {"deposits": []}, source
    store = DepositStore(path)
    try:
        deps = store.all()
    finally:
        store.close()
    states: dict[bytes, str] = {}
    if deps:
        from node.tee.client import EnclaveUnavailable, SubprocessEnclave

        enc = SubprocessEnclave(datadir)
        try:
            enc.start()
            states = {k.pubkey: k.state for k in enc.list_keys()}
        except EnclaveUnavailable as exc:
            source += f"; key states unknown: {exc}"
        finally:
            enc.close()
    ledger, label = watch_ledger(datadir)
    try:
        rows = [deposit_status(d, ledger, states.get(d.pubkey, "unknown")) for d in deps]
    finally:
        if hasattr(ledger, "close"):
            ledger.close()
    return {"deposits": rows}, f"{source}, {label}"


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status(
        as_json: bool = JSON,
        wait: bool = typer.Option(False, "--wait", help="First wait until the daemon answers and is ready (SECONDS, "
                                                        f"default {WAIT_DEFAULT:g}); exit 3 with one line if not"),
        seconds: Optional[float] = typer.Argument(None, metavar="[SECONDS]", min=0.0, max=86400.0,
                                                  help="With --wait: how long to wait"),
    ) -> None:
        """Status of the running daemon (`status --wait [SECONDS]`: once it is up and ready)."""
        if seconds is not None and not wait:
            typer.echo(f"error: {seconds:g} is for --wait (keyswitch status --wait {seconds:g})", err=True)
            raise typer.Exit(2)
        if wait:
            wait_ready(state.get_datadir(), WAIT_DEFAULT if seconds is None else seconds)
        _run("/v1/status", None, as_json, "status")

    @app.command("offers")
    def offers(
        asset: Optional[str] = typer.Option(None, help="Only this asset"),
        limit: int = typer.Option(100, help="At most this many"),
        as_json: bool = JSON,
    ) -> None:
        """The offer book."""
        params = {"limit": limit} | ({"asset": asset} if asset else {})
        _run("/v1/offers", "offers", as_json, "offers", params, first=("asset", "amount", "usd_cents"))

    @app.command("deposits")
    def deposits(as_json: bool = JSON) -> None:
        """This node's deposits with their status (funded, confirmed(n), released, swept): from the running
        daemon, or without one from the data directory's deposit store, ledger and enclave."""
        datadir = state.get_datadir()
        try:
            data = call(datadir, "GET", "/v1/deposits")
            source = f"daemon API ({(datadir / API_URL_FILE).read_text().strip()})"
        except DaemonNotRunning:
            data, source = local_deposits(datadir)
        data["source"] = source
        if as_json:
            typer.echo(json.dumps(data, indent=2, sort_keys=True))
            return
        from rich.console import Console
        from rich.table import Table

        console = Console()
        console.print(f"source: {source}", soft_wrap=True, highlight=False)
        if not data["deposits"]:
            console.print("[dim]no deposits[/dim]")
            return
        t = Table(title="deposits")
        for name, right in (("#", True), ("status", False), ("asset", False), ("amount", True), ("USD", True),
                            ("key", False), ("made", False)):
            t.add_column(name, no_wrap=True, justify="right" if right else "left")
        for i, r in enumerate(data["deposits"], 1):
            made = when(r["created_at"]) if "created_at" in r else ""
            t.add_row(str(i), str(r.get("status", "")), r["asset"], coin(r["asset"], r["amount"]),
                      usd(r["usd_cents"]), str(r.get("key_state", "")), made.split("(")[-1].rstrip(")"))
        console.print(t)
        typer.echo("addresses:")
        for i, r in enumerate(data["deposits"], 1):
            typer.echo(f"  #{i} {r['address']}")

    @app.command("contracts")
    def contracts(as_json: bool = JSON) -> None:
        """Contracts and their state."""
        _run("/v1/contracts", "contracts", as_json, "contracts")

    @app.command("reputation")
    def reputation(as_json: bool = JSON) -> None:
        """Local reputation of known devices."""
        _run("/v1/reputation", "devices", as_json, "reputation",
             first=("device", "class", "score", "cheater", "reports", "exposure_cents", "headroom_cents"),
             only=("device", "class", "score", "cheater", "reports", "exposure_cents", "headroom_cents",
                   "first_seen", "refused"))
