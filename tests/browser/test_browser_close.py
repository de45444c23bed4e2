"""The browser client's ``close()`` reaches the real server: ``on_disconnect`` runs with 1000.

The Node tests (tests/js/leave.test.mjs) check that ``close()`` sends CLOSE 1000 to a fake
server; here Chromium talks to the real Hypercorn app (tests/browser/serve_app.py), whose
``on_disconnect`` handler records ``(id, code, reason)`` behind ``GET /disconnects``. The page
stays open while the test waits, so nothing but the client's CLOSE (and, on WebSocket, its
closing handshake) can end the session: without them the server would only notice much later,
when the session expires, and with another code.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import Page

from .harness import AppServer, open_page, send_to, start_client, wait_for

DISCONNECT_WAIT_S = 20.0
"""Generous: the CLOSE frame is handled within milliseconds on an idle machine."""


def disconnects_of(base: str, channel_id: str) -> list[list[Any]]:
    """``[[id, code, reason], ...]`` the server's ``on_disconnect`` saw for ``channel_id``."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base + "/disconnects", timeout=5) as response:
        entries: list[list[Any]] = json.loads(response.read())
    return [entry for entry in entries if entry[0] == channel_id]


def wait_disconnects(base: str, channel_id: str, timeout_s: float) -> list[list[Any]]:
    """Poll ``/disconnects`` until ``channel_id`` is there; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (seen := disconnects_of(base, channel_id)):
        if time.monotonic() > deadline:
            pytest.fail(f"on_disconnect did not run for {channel_id} within {timeout_s} s")
        time.sleep(0.05)
    return seen


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
def test_close_runs_on_disconnect_with_1000(page: Page, app: AppServer, transport: str) -> None:
    open_page(page, app.url)
    start_client(page, {"transports": [transport], "failback": False})
    wait_for(page, "() => window.client.state === 'open'", 15_000)
    assert page.evaluate("() => window.client.transport") == transport
    channel_id = page.evaluate("() => window.client.id")
    # The page's id is the server's channel id: a direct message to it gets there.
    assert send_to(app.url, channel_id, "direct", {"to": transport})
    wait_for(page, "() => window.rec.messages.length >= 1", 10_000)
    assert disconnects_of(app.url, channel_id) == []

    page.evaluate("() => window.client.close()")
    assert page.evaluate("() => window.client.state") == "closed"
    started = time.monotonic()
    seen = wait_disconnects(app.url, channel_id, DISCONNECT_WAIT_S)
    waited_ms = round((time.monotonic() - started) * 1000)
    print(f"\n{transport}: on_disconnect {waited_ms} ms after close()")
    assert seen == [[channel_id, 1000, "closed by the client"]]
    # The session is gone: the server no longer reaches it.
    assert not send_to(app.url, channel_id, "direct", "after close")
