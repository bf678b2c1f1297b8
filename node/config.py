"""Node configuration: defaults < ``config.toml`` < ``KEYSWITCH_*`` env < flags.

Every setting is declared once in ``SETTINGS`` (name, type, default, help,
check). ``load(datadir, env=..., overrides=...)`` resolves the effective
configuration and refuses bad values with the key, the value and why
(``ConfigError``). ``render_default()`` writes the commented file that
``keyswitch init`` puts in the data directory.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

CONFIG_FILE = "config.toml"


LOG_FILE = "keyswitch.log"  # the default log file, in the data directory


class ConfigError(ValueError):
    def __init__(self, key: str, value: Any, why: str, source: str = ""):
        self.key, self.value, self.why, self.source = key, value, why, source
        where = f" (from {source})" if source else ""
        super().__init__(f"config {key}={value!r}{where}: {why}")


def _multiaddr(v: str) -> str | None:
    if not v.startswith("/"):
        return "a multiaddr starts with '/', e.g. /ip4/127.0.0.1/tcp/4001"
    try:
        import multiaddr

        multiaddr.Multiaddr(v)
    except Exception as exc:  # multiaddr raises several types
        return f"not a valid multiaddr ({exc})"
    return None


def _multiaddrs(vs: list[str]) -> str | None:
    for v in vs:
        bad = _multiaddr(v)
        if bad:
            return f"{v!r}: {bad}"
    return None


def peer_address_problem(v: str, what: str = "bootnode") -> str | None:
    """Why ``v`` is not an address this node can dial (a bootnode, ``keyswitch connect``), or None."""
    bad = _multiaddr(v)
    if bad:
        return bad
    if "/p2p/" not in v:
        return f"a {what} needs /p2p/<peer id> at the end"
    if v.startswith(("/dns/", "/dns4/", "/dns6/", "/dnsaddr/")):  # py-libp2p would never dial it: 0 peers
        plural = what + ("es" if what.endswith("s") else "s")
        return f"DNS {plural} are not dialled; give the address as /ip4/<ip>/... or /ip6/<ip>/..."
    return None


def _bootnodes(vs: list[str]) -> str | None:
    for v in vs:
        bad = peer_address_problem(v)
        if bad:
            return f"{v!r}: {bad}"
    return None


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _decay(v: float) -> str | None:
    return None if 0 < v < 1 else "a factor in (0, 1): 1 would never forgive, 0 forget at once"


def _fraction(v: float) -> str | None:
    return None if 0 < v <= 1 else "a fraction in (0, 1]"


def _hashes(vs: list[str]) -> str | None:
    for v in vs:
        if len(v) != 64 or any(ch not in "0123456789abcdef" for ch in v.lower()):
            return f"{v!r} is not a SHA-256 hash (64 hex characters)"
    return None


def _port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "a TCP port is 0..65535 (0 = pick a free one)"


def _choice(*options: str) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        return None if v in options else f"must be one of {', '.join(options)}"

    return check


def _net(v: str) -> str | None:
    if not v or len(v) > 32 or not all(c.isalnum() or c in "-_" for c in v):
        return "1..32 characters of letters, digits, '-' or '_'"
    return None


def _rpc_asset(v: str) -> str | None:
    from node.assets import ASSETS

    a = ASSETS.get(v)
    if a is None or a.kind != "utxo" or not a.segwit:
        return "a segwit Bitcoin-like asset: " + ", ".join(
            s for s, x in sorted(ASSETS.items()) if x.kind == "utxo" and x.segwit)
    return None


def _rpc_url(v: str) -> str | None:
    if v and not v.startswith(("http://", "https://")):
        return "an http:// URL of a Bitcoin Core-style JSON-RPC server, e.g. http://127.0.0.1:19443"
    if "@" in v:
        return "put credentials in ledger.rpc_cookie or ledger.rpc_user/rpc_password, not in the URL"
    return None


def _evm_asset(v: str) -> str | None:
    from node.assets import ASSETS

    a = ASSETS.get(v)
    if a is None or a.kind != "account":
        return "an Ethereum-like asset: " + ", ".join(s for s, x in sorted(ASSETS.items()) if x.kind == "account")
    return None


def _bounded(lo: float, hi: float) -> Callable[[float], str | None]:
    def check(v: float) -> str | None:
        return None if lo <= v <= hi else f"must be between {lo:g} and {hi:g}"

    return check


def _price_sources(vs: list[str]) -> str | None:
    from node.assets.feed_names import SOURCES

    if not vs:
        return f"name at least one source: {', '.join(SOURCES)}"
    for v in vs:
        if v not in SOURCES:
            return f"unknown source {v!r}: one or more of {', '.join(SOURCES)}"
    if len(set(vs)) != len(vs):
        return "a source is named twice"
    return None


def _price_assets(vs: list[str]) -> str | None:
    from node.assets.feed_names import COINGECKO_IDS

    if not vs:
        return "name at least one coin"
    for v in vs:
        if v not in COINGECKO_IDS:
            return f"unknown coin {v!r}: one or more of {', '.join(sorted(COINGECKO_IDS))}"
    return None


@dataclass(frozen=True)
class Setting:
    key: str  # dotted: section.name
    type: type
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("network.net", str, "dev", "network id: gossip topics are /keyswitch/<net>/...", _net),
    Setting("network.listen", list, ["/ip4/127.0.0.1/tcp/0"], "multiaddrs to listen on", _multiaddrs),
    Setting("network.announce", list, [], "multiaddrs to announce instead of the listen ones", _multiaddrs),
    Setting("network.bootnodes", list, [], "bootstrap multiaddrs ending in /p2p/<peer id>", _bootnodes),
    Setting("network.bootnodes_file", str, "", "file with one bootnode multiaddr per line"),
    Setting("network.target_peers", int, 8, "connections the node keeps open", _positive),
    Setting("network.gossip_rate_limit", int, 40,
            "py-libp2p gossipsub max_messages_per_topic_per_second (see docs/network.md)", _positive),
    Setting("network.gossip_penalty_decay", float, 0.99,
            "factor a peer's REJECTed-message penalty (gossipsub P4) is multiplied by at every 1 s heartbeat: 0.99 "
            "forgives one REJECT in 459 s (docs/network.md, Heartbeat, scores and the mesh)", _decay),
    Setting("network.gossip_prune_backoff", int, 60,
            "seconds a peer pruned from our gossip mesh must wait before it GRAFTs again (sent in the PRUNE; "
            "a peer pruned for a negative score is not grafted by us sooner either)", _positive),
    Setting("network.republish_max", float, 1800.0,
            "longest wait, in seconds, between re-announcements of an unchanged offer sheet: the first comes "
            "`keyswitch run --republish` seconds (60) after a publish, each next one twice as late, up to this "
            "(a changed sheet is published at once; peers that connect pull the sheets: docs/network.md, Offer gossip)",
            _positive),
    Setting("offers.max_origins_per_device", int, 2,
            "origins (peer ids publishing offer sheets) one attested device may have in this node's offer book; "
            "a sheet from a further origin of that device is ignored", _positive),
    Setting("offers.validation_budget", int, 3000,
            "offers of one device this node validates for the first time per minute (a token bucket); a sheet "
            "beyond it is ignored, with the reason counted", _positive),
    Setting("offers.max_offer_lifetime", float, 172800.0,
            "longest an offer may be valid, in seconds from now: a sheet with an offer expiring later is rejected",
            _positive),
    Setting("api.port", int, 0, "local control API port on 127.0.0.1 (0 = pick one)", _port),
    Setting("api.metrics_port", int, 0, "Prometheus metrics port on 127.0.0.1 (0 = off)", _port),
    Setting("tee.backend", str, "simulated", "enclave backend: simulated (INSECURE), gramine, configfs",
            _choice("simulated", "gramine", "configfs")),
    Setting("tee.broken", str, "", "BROKEN simulated TEE for demonstrations of cheating: empty = off (always, "
            "for real use), double-release or sweep-after-release",
            _choice("", "double-release", "sweep-after-release")),
    Setting("ledger.url", str, "", "dev ledger HTTP URL; empty = embedded SQLite dev ledger in the datadir"),
    Setting("ledger.evm_url", str, "", "EVM node JSON-RPC URL (anvil in development) serving ledger.evm_asset; "
            "empty = that asset on the dev ledger too"),
    Setting("ledger.evm_asset", str, "ETH-DEV", "the Ethereum-like asset ledger.evm_url serves", _evm_asset),
    Setting("ledger.rpc_url", str, "", "Bitcoin Core JSON-RPC URL (bitcoind, litecoind) serving ledger.rpc_asset "
            "with real transactions signed on this side (the node needs -txindex=1); empty = that asset on the dev "
            "ledger", _rpc_url),
    Setting("ledger.rpc_asset", str, "LTC-REG", "the Bitcoin-like asset ledger.rpc_url serves", _rpc_asset),
    Setting("ledger.rpc_cookie", str, "", "the node's .cookie file (e.g. ~/.litecoin/regtest/.cookie); empty = "
            "ledger.rpc_user/rpc_password"),
    Setting("ledger.rpc_user", str, "", "rpcuser of the node at ledger.rpc_url (when no cookie)"),
    Setting("ledger.rpc_password", str, "", "rpcpassword of the node at ledger.rpc_url (when no cookie)"),
    Setting("ledger.rpc_fallback_fee", float, 10.0, "sat/vB paid when the node's estimatesmartfee has no estimate",
            _positive),
    Setting("ledger.rpc_max_fee_rate", float, 500.0, "highest fee rate (sat/vB) a spend on ledger.rpc_url may pay, "
            "whatever the node estimates: above it the spend is refused", _positive),
    Setting("deposits.chunk_usd", float, 50.0, "USD value of one deposit chunk", _positive),
    Setting("claims.policy", str, "sweep", "what the node does with a key it receives in a contract: sweep "
            "(at once, to a fresh address of the owner) or keep (in the enclave, offered again as a deposit)",
            _choice("sweep", "keep")),
    Setting("prices.source", list, ["static"],
            "where this node's prices come from, one or more of: static (the embedded development table), file "
            "(prices.file), coinbase, kraken, coingecko (public spot-price APIs); several: the median of the fresh "
            "ones", _price_sources),
    Setting("prices.file", str, "", "JSON table ({\"BTC\": 97000}) or CSV time series (time,asset,usd) for "
            "prices.source = file; relative to the data directory; re-read when it changes"),
    Setting("prices.max_age", float, 300.0,
            "seconds a source's price stays usable; when every source is older (or unreachable) the node prices "
            "nothing and says which sources and how old", _bounded(1.0, 7 * 86400.0)),
    Setting("prices.refresh", float, 60.0, "seconds between two fetches of the price sources (in the background)",
            _bounded(1.0, 86400.0)),
    Setting("prices.http_timeout", float, 10.0, "seconds an HTTP price source may take to answer",
            _bounded(0.1, 120.0)),
    Setting("prices.assets", list, ["BTC", "ETH", "LTC", "DOGE"],
            "the coins the HTTP sources are asked for (test networks price like their main coin)", _price_assets),
    Setting("risk.request_deadline", float, 3.0, "seconds a request collects peers' proposals", _positive),
    Setting("risk.max_per_device", int, 4, "most chunks one allocation takes from one device", _positive),
    Setting("risk.max_share_device", float, 0.25, "most of a request's value from one device", _fraction),
    Setting("risk.max_share_owner", float, 0.5, "most of a request's value from one owner", _fraction),
    Setting("risk.price_tolerance", float, 0.10,
            "how far a peer's declared USD value of a chunk may differ from its amount at this node's own price "
            "(a fraction) before an offer, proposal or contract is refused", _fraction),
    Setting("risk.half_life_days", float, 7.0, "reputation half-life", _positive),
    Setting("risk.revocation_signers", list, [], "peer ids whose revocation notices may be believed"),
    Setting("risk.accept_signed_revocations", bool, False,
            "act on notices from those signers without checkable evidence (opt-in)"),
    Setting("contracts.allowed_hashes", list, [],
            "SHA-256 hashes (64 hex) of contract sources, other than the stdlib's, this node agrees to run when a "
            "peer proposes them (the stdlib contracts are known by their exact hash; empty = no others)", _hashes),
    Setting("contracts.max_lock_blocks", int, 10_000,
            "the most blocks (of the contract's height asset, from its current height) a peer's contract may keep "
            "this node's chunks committed: an option's expiry, an escrow's refund height, a ring's deadline",
            _positive),
    Setting("log.level", str, "info", "log level", _choice("debug", "info", "warning", "error")),
    Setting("log.format", str, "console", "log format", _choice("console", "json")),
    Setting("log.file", str, LOG_FILE, "also write logs to this file (relative: in the data directory; "
            "`keyswitch logs` reads it); empty: stderr only"),
)
BY_KEY = {s.key: s for s in SETTINGS}
#: settings that existed once and were removed: named anywhere (file, environment, command line), the node refuses to
#: start with this one line rather than run differently from what the operator wrote
RETIRED = {
    "contracts.swap_protocol": "retired: every swap runs over /keyswitch/contract-run/1, the only contract protocol "
                               "(/keyswitch/release/1 was removed, issue #19); delete this setting",
}


def env_name(key: str) -> str:
    return "KEYSWITCH_" + key.replace(".", "_").upper()


def _coerce(setting: Setting, value: Any, source: str) -> Any:
    t = setting.type
    try:
        if t is list:
            if isinstance(value, str):
                return [p.strip() for p in value.split(",") if p.strip()]
            if isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value):
                return list(value)
            raise TypeError
        if t is bool and isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise TypeError
        if t is int and isinstance(value, float):
            raise TypeError
        if t in (int, float) and isinstance(value, bool):
            raise TypeError
        return t(value)
    except (TypeError, ValueError):
        raise ConfigError(setting.key, value, f"expected {t.__name__}", source) from None


@dataclass
class Config:
    datadir: Path
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def as_toml_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for key, value in self.values.items():
            section, name = key.split(".", 1)
            out.setdefault(section, {})[name] = value
        return out

    @property
    def log_file(self) -> Path | None:
        """Where the node writes its log besides stderr: ``log.file`` in the data directory when relative (a
        relative ``--log-file`` on the command line: from the current directory); None when empty."""
        f = self.values["log.file"]
        if not f:
            return None
        path = Path(f).expanduser()
        if path.is_absolute():
            return path
        return path.resolve() if self.sources.get("log.file") == "command line" else self.datadir / path

    @property
    def bootnodes(self) -> list[str]:
        nodes = list(self.values["network.bootnodes"])
        f = self.values["network.bootnodes_file"]
        if f:
            path = Path(f).expanduser()
            if not path.is_absolute():
                path = self.datadir / path
            for line in path.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line and line not in nodes:
                    bad = _bootnodes([line])
                    if bad:
                        raise ConfigError("network.bootnodes_file", line, bad, str(path))
                    nodes.append(line)
        return nodes


def load(
    datadir: Path,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Resolve the effective configuration; raise ``ConfigError`` on a bad value."""
    env = os.environ if env is None else env
    cfg = Config(datadir=Path(datadir))
    for s in SETTINGS:
        cfg.values[s.key] = s.default
        cfg.sources[s.key] = "default"
    path = cfg.datadir / CONFIG_FILE
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("<file>", str(path), f"not valid TOML: {exc}") from None
        for section, table in data.items():
            if not isinstance(table, dict):
                raise ConfigError(section, table, "top-level keys must be [sections]", str(path))
            for name, value in table.items():
                key = f"{section}.{name}"
                if key in RETIRED:
                    raise ConfigError(key, value, RETIRED[key], str(path))
                if key not in BY_KEY:
                    raise ConfigError(key, value, "unknown setting", str(path))
                cfg.values[key] = _coerce(BY_KEY[key], value, str(path))
                cfg.sources[key] = str(path)
    for key, why in RETIRED.items():
        if env_name(key) in env:
            raise ConfigError(key, env[env_name(key)], why, env_name(key))
    for s in SETTINGS:
        name = env_name(s.key)
        if name in env:
            cfg.values[s.key] = _coerce(s, env[name], name)
            cfg.sources[s.key] = name
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in RETIRED:
            raise ConfigError(key, value, RETIRED[key], "command line")
        if key not in BY_KEY:
            raise ConfigError(key, value, "unknown setting", "command line")
        cfg.values[key] = _coerce(BY_KEY[key], value, "command line")
        cfg.sources[key] = "command line"
    for s in SETTINGS:
        if s.check is not None:
            why = s.check(cfg.values[s.key])
            if why:
                raise ConfigError(s.key, cfg.values[s.key], why, cfg.sources[s.key])
    if "file" in cfg.values["prices.source"] and not cfg.values["prices.file"]:
        raise ConfigError("prices.file", "", "prices.source names file: give the JSON or CSV file to read",
                          cfg.sources["prices.file"])
    return cfg


def _toml_value(v: Any) -> str:
    import tomli_w

    return tomli_w.dumps({"x": v}).split("=", 1)[1].strip()


def render_default() -> str:
    """The commented ``config.toml`` written by ``keyswitch init``."""
    lines = [
        "# Keyswitch node configuration.",
        "# Precedence: command-line flags > KEYSWITCH_* environment variables > this file > defaults.",
        "# Each key's environment variable is KEYSWITCH_<SECTION>_<NAME>, e.g. KEYSWITCH_NETWORK_NET.",
        "",
    ]
    section = None
    for s in SETTINGS:
        sec, name = s.key.split(".", 1)
        if sec != section:
            if section is not None:
                lines.append("")
            lines.append(f"[{sec}]")
            section = sec
        lines.append(f"# {s.help}")
        lines.append(f"{name} = {_toml_value(s.default)}")
    return "\n".join(lines) + "\n"
