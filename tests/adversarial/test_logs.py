"""Attack: a private key in a local variable of a function that raises must never reach the logs.

A traceback renderer that shows frame locals (structlog's ConsoleRenderer with rich / better-exceptions,
``show_locals``) would print it; so would a JSON ``dict_tracebacks`` with locals. Both formats are checked,
through structlog and through the stdlib ``logging`` root (py-libp2p's loggers go that way)."""

from __future__ import annotations

import io
import logging

import coincurve
import pytest

from node import logs


def _sweep(owner_key_hex: str) -> None:
    wif_like = "K" + owner_key_hex  # noqa: F841  (a local holding key material)
    raise RuntimeError("sweep failed: ledger unreachable")


@pytest.mark.parametrize("fmt", ["console", "json"])
@pytest.mark.parametrize("via", ["structlog", "stdlib"])
def test_a_key_in_a_frame_local_is_not_logged_with_the_traceback(fmt, via):
    key_hex = coincurve.PrivateKey().secret.hex()
    buf = io.StringIO()
    logs.configure(level="info", fmt=fmt, stream=buf)
    try:
        try:
            _sweep(key_hex)
        except RuntimeError:
            if via == "structlog":
                logs.get("test").exception("claim failed")
            else:
                logging.getLogger("keyswitch.test").exception("claim failed")
        out = buf.getvalue()
        assert "claim failed" in out and "sweep failed: ledger unreachable" in out  # the traceback is there
        assert "_sweep" in out  # with its frames, only not their locals
        # not the key, nor any 16-hex-digit piece of it (a renderer that truncates long values still leaks most)
        leaked = [key_hex[i:i + 16] for i in range(len(key_hex) - 15) if key_hex[i:i + 16] in out]
        assert not leaked, f"the {fmt} log ({via}) printed a private key held in a frame local: {leaked[0]}..."
    finally:
        logs.configure(level="info", fmt="console", stream=io.StringIO())
