"""The local dashboard: one static page (``index.html``, ``app.js``, ``style.css``) served on the API port,
polling the JSON API every few seconds.

Access is the data directory's cookie, handed over once: ``keyswitch dashboard`` (Bearer cookie) asks
``POST /v1/dashboard/link`` for a one-time login link (``LINK_TTL`` seconds, one use). Opening it sets a
session cookie (``HttpOnly; SameSite=Strict; Path=/``, ``SESSION_TTL`` seconds) and shows the page. The
session cookie opens the page and the API's GET routes only: every action (POST) still needs the Bearer
cookie, so a page the browser opens elsewhere can neither read (SameSite, same-origin) nor act.
Everything is refused unless the Host header names the loopback address the daemon binds (a DNS-rebinding
page carries its own host name).
"""

from __future__ import annotations

import hmac
import secrets
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "keyswitch_session"
LINK_TTL = 120.0  # seconds a one-time link stays valid
SESSION_TTL = 12 * 3600.0  # seconds a browser session lasts
MAX_LINKS = 16  # links outstanding at once (the oldest is dropped)
MAX_SESSIONS = 32  # sessions at once (the oldest is dropped)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
POLL_SECONDS = 3


class Sessions:
    """One-time links and browser sessions, in memory (a restart ends them all)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.links: dict[str, float] = {}  # token -> expiry
        self.sessions: dict[str, float] = {}  # session id -> expiry

    def _prune(self) -> None:
        now = self.clock()
        self.links = {k: v for k, v in self.links.items() if v > now}
        self.sessions = {k: v for k, v in self.sessions.items() if v > now}

    def new_link(self) -> str:
        self._prune()
        while len(self.links) >= MAX_LINKS:
            self.links.pop(min(self.links, key=self.links.__getitem__))
        token = secrets.token_urlsafe(32)
        self.links[token] = self.clock() + LINK_TTL
        return token

    def redeem(self, token: str) -> str | None:
        """A new session id for a valid unused link (which is then spent), else None."""
        self._prune()
        found = next((k for k in self.links if hmac.compare_digest(k.encode(), token.encode())), None)
        if found is None:
            return None
        del self.links[found]
        while len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(min(self.sessions, key=self.sessions.__getitem__))
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = self.clock() + SESSION_TTL
        return sid

    def valid(self, sid: str | None) -> bool:
        if not sid:
            return False
        self._prune()
        return any(hmac.compare_digest(k.encode(), sid.encode()) for k in self.sessions)


def host_ok(host: str | None) -> bool:
    """The Host header names loopback (with any port): refuses DNS-rebinding pages."""
    if not host:
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in LOOPBACK_HOSTS


def static(name: str) -> bytes:
    return (HERE / name).read_bytes()


def page(assets_json: str) -> str:
    """The page, with the assets' decimals (for coin units) in a meta tag (no inline script: CSP)."""
    import html

    return static("index.html").decode().replace("{{ASSETS}}", html.escape(assets_json, quote=True)).replace(
        "{{POLL}}", str(POLL_SECONDS))


def refusal_page(reason: str) -> str:
    import html

    return ("<!doctype html><html><head><meta charset='utf-8'><title>Keyswitch: not signed in</title></head>"
            "<body style='font-family:sans-serif;margin:3em'><h1>Not signed in</h1>"
            f"<p id='refused'>{html.escape(reason)}</p>"
            "<p>Run <code>keyswitch dashboard</code> on this machine and open the link it prints.</p>"
            "</body></html>")
