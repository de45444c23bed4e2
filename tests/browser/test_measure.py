"""Connect() -> first delivered message, 5 runs per setup (see measure.py).

The medians are reported (the terminal summary prints the table) beside the issue's targets,
under 300 ms direct and under 3 s in the worst proxy profile, but not asserted: a speed depends
on how loaded the machine is, and a green run must mean the same on a busy machine as on an idle
one. What is asserted is what does not depend on it: every run delivers a first message (within
measure_once's generous bound) over the transport its setup must end on.
"""

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
def test_connect_to_first_message(browser: Browser, app: AppServer, base_url: Any) -> None:
    bases = {setup: base_url(setup) for setup in SETUPS}
    measure_once(browser, "warm-up", app.url)
    results = measure_all(browser, bases, runs=5)
    summaries = {setup: summarize(runs) for setup, runs in results.items()}
    MEDIANS.extend(summaries.values())
    for setup, runs in results.items():
        assert [run.transport for run in runs] == [EXPECTED[setup]] * len(runs), runs
    worst = max(summaries.values(), key=lambda s: s.median_ms)
    print(
        f"\nmedian direct {summaries['direct'].median_ms} ms (target < {TARGET_DIRECT_MS:.0f}), "
        f"worst {worst.setup} {worst.median_ms} ms (target < {TARGET_WORST_MS:.0f}); "
        "reported, not asserted"
    )
