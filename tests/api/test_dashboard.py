"""The local dashboard (issue #21): a one-time link from the Bearer cookie, a session cookie (HttpOnly,
SameSite=Strict) that opens the page and the API's reads only, refused without it or from a foreign Host.
The browser test drives Debian's chromium (headless) against a real daemon with a deposit made by the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from node.api.app import build_app, read_cookie, serve, write_cookie
from node.api.dashboard import POLL_SECONDS
from node.metrics import NodeMetrics
from tests.api.recording import Recording
from tests.functional.framework import Process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def dash(tmp_path, nursery):
    cookie = write_cookie(tmp_path)
    metrics = NodeMetrics()
    url = await nursery.start(serve, build_app(Recording(), cookie, metrics=metrics))
    async with httpx.AsyncClient(base_url=url) as anon:
        yield anon, {"Authorization": f"Bearer {read_cookie(tmp_path)}"}, metrics, url


async def login(anon, bearer) -> tuple[str, httpx.Response]:
    link = await anon.post("/v1/dashboard/link", headers=bearer)
    assert link.status_code == 201, link.text
    url = link.json()["url"]
    assert "/dashboard/login?token=" in url
    return url, await anon.get(url)


async def test_page_refused_without_a_session_and_link_needs_the_bearer_cookie(dash):
    anon, bearer, _, _ = dash
    r = await anon.get("/dashboard")
    assert r.status_code == 401 and "Not signed in" in r.text and "keyswitch dashboard" in r.text
    assert (await anon.get("/dashboard/app.js")).status_code == 401
    assert (await anon.post("/v1/dashboard/link")).status_code == 401
    forged = await anon.get("/dashboard", headers={"Cookie": "keyswitch_session=" + "x" * 43})
    assert forged.status_code == 401


async def test_one_time_link_sets_a_strict_httponly_cookie_once(dash):
    anon, bearer, _, _ = dash
    url, r = await login(anon, bearer)
    assert r.status_code == 200 and "Keyswitch node" in r.text
    sc = r.headers["set-cookie"]
    assert sc.startswith("keyswitch_session=") and "HttpOnly" in sc and "SameSite=Strict" in sc, sc
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert (await anon.get("/dashboard")).status_code == 200  # the client kept the cookie
    assert (await anon.get("/dashboard/app.js")).status_code == 200
    async with httpx.AsyncClient() as other:
        again = await other.get(url)  # the same link, a second time
    assert again.status_code == 401 and "already used or has expired" in again.text


async def test_session_cookie_reads_the_api_but_cannot_act(dash):
    anon, bearer, _, _ = dash
    await login(anon, bearer)
    for path in ("/v1/status", "/v1/peers", "/v1/deposits", "/v1/offers", "/v1/contracts", "/v1/reputation",
                 "/v1/gossip"):
        assert (await anon.get(path)).status_code == 200, path
    # a cross-site form or a confused page cannot spend: every action still needs the Bearer cookie
    post = await anon.post("/v1/deposits", json={"asset": "BTC-REG", "chunks": 1})
    assert post.status_code == 401, post.text
    assert (await anon.post("/v1/dashboard/link")).status_code == 401  # a session cannot mint more links


async def test_foreign_host_header_refused_even_with_the_session(dash):
    anon, bearer, _, _ = dash
    await login(anon, bearer)
    rebinding = {"Host": "evil.example:80"}
    assert (await anon.get("/dashboard", headers=rebinding)).status_code == 403
    assert (await anon.get("/v1/deposits", headers=rebinding)).status_code == 401


async def test_gossip_counters_sum_per_topic(dash):
    anon, bearer, metrics, _ = dash
    metrics.gossip_in("offers", "accept")
    metrics.gossip_in("offers", "accept")
    metrics.gossip_in("offers", "reject", "bad signature")
    metrics.gossip_in("offers", "ignore", "stale")
    metrics.gossip_out("offers")
    g = (await anon.get("/v1/gossip", headers=bearer)).json()
    assert g["topics"] == [{"topic": "offers", "accept": 2, "reject": 1, "ignore": 1, "sent": 1}]


# ------------------------------------------------------------------ a real browser against a real daemon
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


def ks(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env=ENV)


#: the page's first poll, answered and drawn: virtual time stands still while a fetch is pending, so a budget under
#: the poll period waits for the first round of answers however slow they are, and no second round is run (6 s ran
#: three rounds of seven requests each)
BUDGET_MS = POLL_SECONDS * 1000 // 2


def chromium(profile: Path, *args) -> str:
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        f"--user-data-dir={profile}", f"--virtual-time-budget={BUDGET_MS}", *map(str, args)],
                       capture_output=True, text=True, timeout=120)
    return r.stdout


@pytest.mark.network
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/sysdeps.sh installs it for make test)")
def test_dashboard_in_headless_chromium_shows_a_cli_deposit(tmp_path):
    d = tmp_path / "n"
    assert ks("--datadir", d, "init").returncode == 0
    p = Process("n", [sys.executable, "-m", "node", "--datadir", str(d), "run"], tmp_path / "run.out").start()
    try:
        p.wait_line("ready ", 90)
        dep = ks("--datadir", d, "deposit", "--asset", "BTC-REG", "--chunks", "1")
        assert dep.returncode == 0, dep.stdout + dep.stderr
        address = next(w for w in dep.stdout.split() if w.startswith("bcrt1q"))
        base = (d / "api.url").read_text().strip()

        # without the session cookie: refused, and no data on the page (a page without scripts, so what a browser
        # shows is what the daemon sent: the browser starts, each seconds of CPU on a loaded machine, are kept for
        # what needs one)
        fresh = httpx.get(base + "/dashboard", timeout=60)
        assert fresh.status_code == 401 and "<script" not in fresh.text, fresh.text[-2000:]
        assert "Not signed in" in fresh.text and address not in fresh.text, fresh.text[-2000:]

        # the one-time link: the page loads, polls the API with the cookie and shows the deposit
        link = ks("--datadir", d, "dashboard")
        assert link.returncode == 0, link.stderr
        url = link.stdout.strip().splitlines()[-1]
        assert url.startswith(base + "/dashboard/login?token="), link.stdout
        prof = tmp_path / "browser"
        dom = chromium(prof, "--dump-dom", url)
        assert address in dom and "0.0005 BTC-REG" in dom and "$50.00" in dom, dom[-3000:]
        assert 'id="error" class="error" hidden' in dom, dom[-3000:]  # every API call answered
        # the same browser, later, on the plain page: the session cookie persisted
        again = chromium(prof, "--window-size=1280,1200", f"--screenshot={tmp_path / 'dashboard.png'}",
                         base + "/dashboard")
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000, again
        # the link was for one use: a second client gets the refusal
        reused = httpx.get(url, timeout=60)
        assert reused.status_code == 401 and "<script" not in reused.text, reused.text[-2000:]
        assert "already used" in reused.text and address not in reused.text, reused.text[-2000:]
    finally:
        ks("--datadir", d, "stop", timeout=60)
        p.stop(timeout=30)


# ------------------------------------------------------------------ contrib/: Grafana dashboard, systemd unit
def exposed_metric_names() -> set[str]:
    """Every series name node/metrics.py exposes (counters as <name>_total and <name>_created)."""
    m = NodeMetrics()
    names = set()
    for fam in m.registry.collect():
        if fam.type == "counter":
            names |= {fam.name + "_total", fam.name + "_created"}
        else:
            names.add(fam.name)
    return names


def test_grafana_dashboard_exprs_name_existing_metrics():
    import json
    import re

    dash = json.loads((ROOT / "contrib" / "grafana" / "keyswitch.json").read_text())
    known = exposed_metric_names()
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"]]
    assert len(dash["panels"]) >= 8 and exprs
    used = set()
    for e in exprs:
        names = set(re.findall(r"\bkeyswitch_[a-z_]+\b", e))
        assert names, f"expr names no keyswitch metric: {e}"
        assert names <= known, f"{e}: {sorted(names - known)} not exposed by node/metrics.py (known: {sorted(known)})"
        used |= names
    # every metric the node exposes has a panel (a metric added later should get one)
    assert {n.removesuffix("_created") for n in known if not n.endswith("_created")} <= used, sorted(known - used)
    assert dash["__inputs"][0]["pluginId"] == "prometheus"  # importable: the data source is asked for at import
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}" and {"h", "w", "x", "y"} <= set(p["gridPos"])


def test_systemd_unit_runs_keyswitch_run():
    import configparser

    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(ROOT / "contrib" / "systemd" / "keyswitch.service")
    svc = cp["Service"]
    assert " run" in svc["ExecStart"] and "--datadir" in svc["ExecStart"]
    assert svc["KillSignal"] == "SIGTERM" and svc["User"] != "root"
    assert cp["Install"]["WantedBy"] == "multi-user.target"
