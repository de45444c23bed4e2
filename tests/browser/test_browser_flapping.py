"""Flapping in Chromium: a proxy lets every WebSocket open and work, then cuts it 1.5 s later.

The browser client (its ``flapping`` option, short thresholds here so the test runs in
seconds) must demote WebSocket after a few such deaths, settle on SSE within a bounded time and
stay there, with WebSocket tried again only by the background probe; once the proxy is "fixed"
(it stops cutting), the probe stays up ``stayUpMs`` and the client returns to WebSocket. The
ticker's publications arrive throughout without a loss or a repeat. Node tests with fakes:
tests/js/flapping.test.mjs.
"""

from __future__ import annotations

import time

from playwright.sync_api import Page

from tests.proxies import FlappingUpgradeProxy, in_thread

from .harness import AppServer, open_page, record, start_client, wait_for

CUT_AFTER_S = 1.5
OPTIONS = {
    "flapping": {"upForLessThanMs": 4000, "times": 3, "stayUpMs": 4000},
    "failback": {"min": 3000, "max": 6000},
}
SETTLE_BOUND_S = 25.0
"""Generous: 3 connections of 1.5 s plus the reconnect waits (a second or two each)."""


def test_a_flapping_websocket_is_demoted_to_sse_and_comes_back_via_the_probe(
    page: Page, app: AppServer
) -> None:
    with in_thread(FlappingUpgradeProxy(app.port, CUT_AFTER_S)) as proxy:
        open_page(page, proxy.url)
        started = time.monotonic()
        start_client(page, OPTIONS)
        wait_for(page, "() => window.client.transport === 'websocket'", 15_000)
        wait_for(page, "() => window.client.transport === 'sse'", SETTLE_BOUND_S * 1000)
        settled = time.monotonic() - started
        info = record(page)["info"]
        print(f"\nsettled on SSE {settled:.1f} s after connect(), {proxy.upgrades} upgrades")
        assert info["fallbackReason"] == (
            "websocket: flapping (closed 3 times within 4 s of opening)"
        )
        assert info["stats"]["demotions"] == 1
        assert proxy.upgrades == 3 and proxy.cuts == 3

        # It stays on SSE: WebSocket only in probes, each cut before it stayed up 4 s.
        upgrades, probes = proxy.upgrades, info["stats"]["probes"]
        time.sleep(10)
        info = record(page)["info"]
        assert info["transport"] == "sse"
        assert info["stats"]["probes"] > probes
        assert proxy.upgrades - upgrades <= info["stats"]["probes"] - probes
        saved = page.evaluate("() => JSON.stringify(Object.values({...localStorage}))")
        assert "demoted" in saved and "websocket" in saved

        # Fixed: the next probe lives, stays up 4 s, and the client switches back.
        proxy.cutting = False
        fixed = time.monotonic()
        wait_for(page, "() => window.client.transport === 'websocket'", 40_000)
        back = time.monotonic() - fixed
        print(f"back on WebSocket {back:.1f} s after the proxy was fixed")
        wait_for(page, "(n) => window.rec.ticks > n", 5_000, arg=record(page)["ticks"] + 20)
        rec = record(page)
        assert rec["tickGaps"] == []  # no loss, no repeat through all the moves
        assert rec["info"]["fallbackReason"] is None
        assert rec["info"]["stats"]["switches"][-1]["to"] == "websocket"
