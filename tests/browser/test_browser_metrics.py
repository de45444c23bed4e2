"""Why clients fell back, counted on the server (issue 16), through a real proxy: the browser
client behind the nginx profile that does not pass the WebSocket upgrade falls back to SSE,
reports it in its next negotiate, and the server's ``/metrics`` counts it."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from playwright.sync_api import Page
from prometheus_client.parser import text_string_to_metric_families

from .harness import app_server, nginx_proxy, open_page, record, start_client, wait_for


def fallbacks(base: str) -> dict[tuple[str, str, str], float]:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as answer:
        text = answer.read().decode()
    counts = {}
    for family in text_string_to_metric_families(text):
        if family.name == "transports_fallbacks":
            for sample in family.samples:
                labels = sample.labels
                counts[labels["from"], labels["to"], labels["reason"]] = sample.value
    return counts


def test_a_fallback_through_nginx_without_upgrade_is_counted(page: Page, log_dir: Path) -> None:
    with (
        app_server(log_dir, settings={"metrics_path": "/metrics"}) as app,
        nginx_proxy("a-no-upgrade", app.port) as proxy,
    ):
        assert fallbacks(app.url) == {}
        open_page(page, proxy.url)
        start_client(page)
        # A fast start opens on long-poll; its probe finds the upgrade refused and moves to SSE.
        wait_for(page, "() => window.client && window.client.transport === 'sse'", 30_000)
        info = record(page)["info"]
        assert info["transport"] == "sse"
        assert [f["from"] for f in info["stats"]["fallbacks"]] == ["websocket"]
        # The upgrade is refused before the socket opens: reason "refused".
        assert fallbacks(app.url) == {("websocket", "sse", "refused"): 1.0}
