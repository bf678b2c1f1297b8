"""Structured logs: console or JSON lines, UTC timestamps, the peer id on every line.

``configure(level=..., fmt=..., file=...)`` sets up structlog *and* the stdlib
``logging`` root (so py-libp2p's own loggers go through the same formatter).
The peer id is a context variable: ``bind_peer(peer_id)`` inside a node's
task tree stamps every line that tree logs; several nodes in one process
(tests, simulations) each get their own, because trio tasks inherit context
variables from the task that spawned them.

Never log private keys: nothing in ``node.enclave`` logs key material,
``redact`` below masks any field whose name says it holds a secret, and
tracebacks are rendered without frame locals (``plain_exc_info``), in both
formats.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import structlog

SECRET_FIELDS = ("privkey", "private_key", "secret", "seed", "sealing_key", "cookie", "wif")


def redact(_logger, _name, event_dict):
    for k in list(event_dict):
        if any(s in k.lower() for s in SECRET_FIELDS):
            event_dict[k] = "[redacted]"
    return event_dict


def plain_exc_info(logger, name, event_dict):
    """``exc_info`` -> ``exception``: the plain traceback text (frames and source lines, no frame locals), for
    every format; the renderers then never see the traceback object, so none can show what its frames held."""
    return structlog.processors.format_exc_info(logger, name, event_dict)


def _add_peer(_logger, _name, event_dict):
    event_dict.setdefault("peer", structlog.contextvars.get_contextvars().get("peer", "-"))
    return event_dict


def bind_peer(peer_id: str) -> None:
    structlog.contextvars.bind_contextvars(peer=peer_id)


def configure(level: str = "info", fmt: str = "console", file: str | Path | None = None,
              stream=None) -> None:
    """Configure structlog and stdlib logging. Idempotent; call once at start."""
    lvl = getattr(logging, level.upper())
    shared = [
        structlog.contextvars.merge_contextvars,
        _add_peer,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    # Tracebacks are rendered as plain text (``traceback.format_exception``): never with frame locals, which may
    # hold keys. structlog's ConsoleRenderer would otherwise use rich (installed) with show_locals=True.
    renderer = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, plain_exc_info, renderer],
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_keyswitch", False):
            root.removeHandler(h)
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if file:
        from logging.handlers import WatchedFileHandler

        Path(file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(WatchedFileHandler(file))  # reopened when logrotate moves it away
    for h in handlers:
        h.setFormatter(formatter)
        h._keyswitch = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(lvl)
    # py-libp2p's own setup_logging() (run when libp2p is imported) cuts its loggers off from the
    # root (propagate=False, its own queue handler): route them back through ours.
    lp = logging.getLogger("libp2p")
    for h in list(lp.handlers):
        lp.removeHandler(h)
    lp.propagate = True
    # py-libp2p is chatty at debug; keep it one notch quieter than ours unless asked
    lp.setLevel(lvl if lvl <= logging.DEBUG else max(lvl, logging.WARNING))
    # httpx logs every request at INFO ("HTTP Request: POST .../rpc"): a dev node's ledger polling made
    # ~90 % of its log. Warnings and errors still show; --log-level debug shows them all.
    # this configuration owns the process's logging: a library's dictConfig (disable_existing_loggers, its
    # default) must not leave ours, or anyone's warnings, switched off
    for existing in list(logging.root.manager.loggerDict.values()):
        if isinstance(existing, logging.Logger):
            existing.disabled = False
    for name in QUIET_BELOW_WARNING:
        parent = logging.getLogger(name)
        parent.setLevel(lvl if lvl <= logging.DEBUG else max(lvl, logging.WARNING))
        # its children inherit: a level left on one (httpcore.connection, by a library or an earlier
        # configuration) would let its INFO lines through
        for child in [n for n in logging.root.manager.loggerDict if n.startswith(name + ".")]:
            logging.getLogger(child).setLevel(logging.NOTSET)


#: third-party loggers kept at WARNING unless the node runs at DEBUG
QUIET_BELOW_WARNING = ("httpx", "httpcore")


def get(name: str = "keyswitch"):
    return structlog.get_logger(name)
