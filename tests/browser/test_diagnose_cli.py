"""``python -m transports.diagnose`` through the nginx profiles of this suite.

The app runs with diagnose on (tests/browser/serve_app.py, the default 25 s heartbeat); each
test runs the tool in a subprocess through one nginx profile and checks its verdicts:
(a) WebSocket refused, SSE and long-poll fine; (b) WebSocket refused, SSE buffered, long-poll
the one left; (c) everything works. The other proxies (silent upgrade, idle cut, CONNECT
refused) are in tests/test_diagnose.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import ROOT, AppServer, app_server, nginx_proxy

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(scope="module")
def diagnose_app(log_dir: Path) -> Iterator[AppServer]:
    with app_server(log_dir, tick_ms=0, settings={"diagnose": True}) as server:
        yield server


def diagnose(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Run the tool with ``--json``; its exit status and report."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in PROXY_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-m", "transports.diagnose", url, "--json", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {name: item["verdict"] for name, item in report["transports"].items()}


def test_a_no_upgrade(diagnose_app: AppServer) -> None:
    """The proxy drops Upgrade: the app answers the plain GET 426, so upgrade_refused."""
    with nginx_proxy("a-no-upgrade", diagnose_app.port) as proxy:
        code, report = diagnose(proxy.url + "/realtime", "--idle", "1", "--timeout", "3")
    assert code == 0 and report["best"] == "sse"
    assert verdicts(report) == {"websocket": "upgrade_refused", "sse": "ok", "longpoll": "ok"}
    observed = report["transports"]["websocket"]["observed"]
    assert any(line.startswith("upgrade: 426") for line in observed), observed
    assert "proxy_set_header Upgrade" in report["transports"]["websocket"]["fix"]


def test_b_buffering(diagnose_app: AppServer) -> None:
    """HTTP/1.0 to the app with buffering on: no upgrade, and the stream held back (not even
    its headers arrive), so long-poll is the one that works."""
    with nginx_proxy("b-buffering", diagnose_app.port) as proxy:
        code, report = diagnose(proxy.url + "/realtime", "--idle", "1", "--timeout", "3")
    assert code == 0 and report["best"] == "longpoll"
    assert verdicts(report) == {
        "websocket": "upgrade_refused",
        "sse": "sse_buffered",
        "longpoll": "ok",
    }
    sse = report["transports"]["sse"]
    assert sse["ok"] is False and sse["first_message_ms"] is None
    assert "proxy_buffering off" in sse["fix"]


def test_c_correct(diagnose_app: AppServer) -> None:
    """The control: a correct proxy, every transport works and publications are timed."""
    with nginx_proxy("c-correct", diagnose_app.port) as proxy:
        code, report = diagnose(proxy.url + "/realtime", "--idle", "1", "--timeout", "3")
    assert code == 0 and report["best"] == "websocket"
    assert verdicts(report) == {"websocket": "ok", "sse": "ok", "longpoll": "ok"}
    for item in report["transports"].values():
        assert any(line.startswith("publications: 3 sent") for line in item["observed"])
