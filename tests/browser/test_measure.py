"""Connect() -> first delivered message, >= 5 runs per setup, against the issue's targets:
median under 300 ms direct and under 3 s in the worst proxy profile (see measure.py)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser

from .conftest import MEDIANS
from .harness import AppServer
from .measure import SETUPS, TARGET_DIRECT_MS, TARGET_WORST_MS, measure_all, measure_once, summarize

EXPECTED = {
    "direct": "websocket",
    "c-correct": "websocket",
    "a-no-upgrade": "sse",
    "b-buffering": "longpoll",
}


@pytest.mark.slow
def test_connect_to_first_message_targets(browser: Browser, app: AppServer, base_url: Any) -> None:
    bases = {setup: base_url(setup) for setup in SETUPS}
    measure_once(browser, "warm-up", app.url)
    results = measure_all(browser, bases, runs=5)
    summaries = {setup: summarize(runs) for setup, runs in results.items()}
    MEDIANS.extend(summaries.values())
    for setup, runs in results.items():
        assert [run.transport for run in runs] == [EXPECTED[setup]] * len(runs), runs
    assert summaries["direct"].median_ms < TARGET_DIRECT_MS, summaries["direct"]
    worst = max(summaries.values(), key=lambda s: s.median_ms)
    assert worst.median_ms < TARGET_WORST_MS, worst
