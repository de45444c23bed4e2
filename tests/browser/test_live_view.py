"""The diagnose page's live view (``<prefix>/diagnose#live``) in real Chromium.

Three clients, one per transport, on the same ``$diagnose:<id>`` topic while the page publishes
for a few seconds (``?duration=``): every pane connects and receives, the chart is drawn from
the data on ``window.diagnose.live`` (one marker per point, per transport), and the estimated
bytes per message show what long-polling costs. Behind the nginx profile that does not pass the
upgrade, the WebSocket pane gets nothing and counts its failed attempts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from .harness import AppServer, app_server, nginx_proxy, wait_for

DURATION_S = 4
RATE = 4
LIVE_MS = 40_000
"""Bound on a live run: the duration, the grace for the last publications, and slack."""

TRANSPORTS = ["websocket", "sse", "longpoll"]


@pytest.fixture(scope="module")
def diagnosed(log_dir: Path) -> Iterator[AppServer]:
    """The browser suite's app with ``diagnose`` on (no ticker: the page publishes its own)."""
    with app_server(log_dir, tick_ms=0, settings={"diagnose": True}) as server:
        yield server


def run_live(page: Page, base: str) -> dict[str, Any]:
    """Open the page on ``#live`` (it starts at once) and return its data when it is done."""
    page.goto(f"{base}/realtime/diagnose?duration={DURATION_S}&rate={RATE}#live")
    wait_for(page, "() => window.diagnose && window.diagnose.live", 10_000)
    wait_for(page, "() => window.diagnose.live.status === 'done'", LIVE_MS)
    data: dict[str, Any] = page.evaluate("() => window.diagnose.live")
    return data


def drawn(page: Page, chart: str, transport: str) -> dict[str, int]:
    """What the chart's SVG holds for one transport: its declared points and its markers."""
    result: dict[str, int] = page.evaluate(
        """([chart, transport]) => {
            const group = document.querySelector(`#${chart} .series-${transport}`);
            if (!group) return { points: -1, markers: -1, lines: -1 };
            return {
                points: Number(group.getAttribute("data-points")),
                markers: group.querySelectorAll("circle, rect, polygon").length,
                lines: group.querySelectorAll("polyline").length,
            };
        }""",
        [chart, transport],
    )
    return result


def test_three_panes_connect_and_the_chart_has_points_for_each(
    page: Page, diagnosed: AppServer
) -> None:
    data = run_live(page, diagnosed.url)
    assert data["published"] >= DURATION_S * RATE - 2, data["published"]
    assert data["publishErrors"] == 0
    for name in TRANSPORTS:
        pane = data["panes"][name]
        points = pane["points"]
        # Every publication made while the pane was subscribed arrived (the first may precede it).
        assert len(points) >= data["published"] - 2, (name, len(points), data["published"])
        assert all(0 <= p["latency"] < 5_000 for p in points), (name, points)
        assert all(p["bytes"] is not None and p["bytes"] > 20 for p in points), (name, points)
        assert [p["n"] for p in points] == sorted({p["n"] for p in points}), "in order, once"
        assert pane["roundTrips"], name
        assert (pane["reconnects"], pane["fallbacks"]) == (0, 0), name
        for chart in ("latency-chart", "bytes-chart"):
            assert drawn(page, chart, name) == {
                "points": len(points),
                "markers": len(points),
                "lines": 1,
            }, (chart, name)
        pane_text = page.inner_text(f'#panes [data-transport="{name}"]')
        assert f"{pane['received']} of {data['published']}" in pane_text
    # A long-poll publication costs a request and a response; a WebSocket one, a frame.
    bytes_of = {
        name: sorted(p["bytes"] for p in data["panes"][name]["points"]) for name in TRANSPORTS
    }
    assert max(bytes_of["websocket"]) < min(bytes_of["longpoll"]), bytes_of
    assert "Done:" in page.inner_text("#live-status")


def test_behind_a_proxy_without_upgrade_the_websocket_pane_gets_nothing(
    page: Page, diagnosed: AppServer
) -> None:
    with nginx_proxy("a-no-upgrade", diagnosed.port) as proxy:
        data = run_live(page, proxy.url)
    websocket = data["panes"]["websocket"]
    assert websocket["points"] == []
    assert websocket["fallbacks"] >= 1, websocket
    assert drawn(page, "latency-chart", "websocket")["markers"] == 0
    for name in ("sse", "longpoll"):
        assert len(data["panes"][name]["points"]) >= data["published"] - 2, name
        assert drawn(page, "latency-chart", name)["markers"] == len(data["panes"][name]["points"])
