"""Re-authentication in Chromium against the real app: the server's ``revalidate`` hook refuses
an expired token (close 4501), the page's token function gives a fresh one, and the client
resumes on a new session: the ticker's publications keep coming without a loss or a repeat, and
a send in flight at that moment is applied once. A token function with nothing to give closes
the client with 4501 "credentials refused". The app: serve_app.py ``--expiry``
(tests/reauth_app.py); Node tests with fakes: tests/js/reauth.test.mjs.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.reauth_app import SETTINGS

from .harness import AppServer, app_server, open_page, post_json, record, wait_for

START = """(args) => {
  window.issued = [];
  window.stateTimes = [];
  const token = async () => {
    const n = window.issued.length + 1;
    const fresh = n > 1 && args.renewal === "none" ? null : `${args.user}.${n}`;
    window.issued.push(fresh);
    return fresh;
  };
  harness.start({ transports: [args.transport], failback: false, token });
  window.client.on("state", (s) => window.stateTimes.push([s.state, performance.now()]));
}"""


@pytest.fixture(scope="module")
def expiring(log_dir: Path) -> Iterator[AppServer]:
    """The app with expiring tokens, its revalidate hook run about every 0.2 s."""
    with app_server(log_dir, settings=SETTINGS, flags=("--expiry",)) as server:
        yield server


def applied(base: str) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base + "/applied", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
def test_an_expired_token_is_renewed_without_loss(
    page: Page, expiring: AppServer, transport: str
) -> None:
    user = f"renew-{transport}"
    open_page(page, expiring.url)
    page.evaluate(START, {"user": user, "transport": transport, "renewal": "fresh"})
    wait_for(page, "() => window.client.state === 'open' && window.rec.ticks > 10", 15_000)
    page.evaluate(
        """(key) => { window.client.send("count", {key, delay: 0.6}).then(
             (v) => { window.sentResult = v; }, (e) => { window.sentError = String(e); }); }""",
        user,
    )
    page.wait_for_timeout(100)  # the send reaches the server: its handler runs for 0.6 s
    post_json(expiring.url + "/expire", {"token": f"{user}.1"})
    wait_for(page, "() => window.client.stats.reauthentications === 1", 10_000)
    wait_for(page, "() => window.client.state === 'open'", 10_000)
    wait_for(page, "(n) => window.rec.ticks > n", 10_000, arg=record(page)["ticks"] + 30)
    wait_for(page, "() => window.sentResult !== undefined || window.sentError", 10_000)
    rec = record(page)
    assert rec["tickGaps"] == []  # nothing lost, nothing doubled
    assert page.evaluate("() => window.sentResult") == 1
    assert applied(expiring.url)[user] == 1  # the send in flight applied once
    assert page.evaluate("() => window.issued") == [f"{user}.1", f"{user}.2"]
    assert rec["info"]["stats"]["lastClose"]["code"] == 4501
    assert rec["errors"] == []
    times = page.evaluate("() => window.stateTimes")
    states = [state for state, _ in times]
    assert states[-2:] == ["reconnecting", "open"]
    gap = times[-1][1] - times[-2][1]
    print(f"\n{transport}: reconnecting -> open with a fresh token in {gap:.0f} ms")
    assert gap < 3000


def test_no_fresh_token_closes_with_credentials_refused(page: Page, expiring: AppServer) -> None:
    user = "refused"
    open_page(page, expiring.url)
    page.evaluate(START, {"user": user, "transport": "websocket", "renewal": "none"})
    wait_for(page, "() => window.client.state === 'open'", 15_000)
    post_json(expiring.url + "/expire", {"token": f"{user}.1"})
    wait_for(page, "() => window.client.state === 'closed'", 10_000)
    rec = record(page)
    assert rec["info"]["stats"]["lastClose"] == {"code": 4501, "reason": "credentials refused"}
    assert rec["errors"] == [
        "reauth: credentials refused: the token function gave no token",
    ]
    assert page.evaluate("() => window.issued") == [f"{user}.1", None]
