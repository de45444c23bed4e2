"""Fixtures of the browser suite: the app in a subprocess, nginx profiles, headless Chromium.

Run this suite in its own pytest process (``python -m pytest tests/browser``): sync Playwright
and pytest-asyncio cannot share one process once an ``async def`` test runs after a browser
test (docs: test-infra.md pitfall 1). As a safety net, ``pytest_collection_modifyitems`` below
moves the browser tests after every other test when a single run collects both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from .harness import PROFILES, AppServer, Nginx, app_server, launch_browser, nginx_proxy

HERE = Path(__file__).resolve().parent

TIMINGS: list[dict[str, Any]] = []
"""Measurements the tests report (profile, transport, ms to open, ms to first message)."""


MEDIANS: list[Any] = []
"""measure.Summary rows from test_measure.py."""

RESTARTS: list[dict[str, Any]] = []
"""Kill/restart measurements: ms from SIGKILL to "reconnecting", from restart to "open"."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run browser tests last, and mark them ``browser``."""
    mine = [item for item in items if HERE in Path(str(item.path)).parents]
    others = [item for item in items if HERE not in Path(str(item.path)).parents]
    for item in mine:
        item.add_marker(pytest.mark.browser)
    items[:] = others + mine


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the connect() -> first message times the tests measured."""
    if not TIMINGS and not RESTARTS and not MEDIANS:
        return
    terminalreporter.section("browser: connect() -> first delivered message")
    for row in TIMINGS:
        terminalreporter.write_line(
            f"{row['setup']:<24} {row['transport'] or '-':<10} "
            f"open {row['open_ms']:>8} ms   first message {row['first_ms']:>8} ms"
        )
    if MEDIANS:
        from .measure import table

        terminalreporter.write_line("median over 5 runs per setup:")
        for line in table(MEDIANS).splitlines():
            terminalreporter.write_line(line)
    for row in RESTARTS:
        terminalreporter.write_line(
            f"restart {row['setup']:<28} SIGKILL -> reconnecting {row['noticed_ms']:>6} ms   "
            f"restart -> open {row['back_ms']:>6} ms"
        )


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-logs")


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    instance = launch_browser(playwright)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser context per test: own sessionStorage, cookies and connections."""
    ctx = browser.new_context()
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture(scope="session")
def app(log_dir: Path) -> Iterator[AppServer]:
    """The app server shared by the tests that do not stop it."""
    with app_server(log_dir) as server:
        yield server


@pytest.fixture
def own_app(log_dir: Path) -> Iterator[AppServer]:
    """An app server for one test (which may kill and restart it)."""
    with app_server(log_dir) as server:
        yield server


@pytest.fixture(scope="session")
def proxies(app: AppServer) -> Iterator[dict[str, Nginx]]:
    """One nginx per profile in front of the shared app, started on first use."""
    with contextlib.ExitStack() as stack:
        started: dict[str, Nginx] = {}

        class Lazy(dict[str, Nginx]):
            def __missing__(self, profile: str) -> Nginx:
                if profile not in PROFILES:
                    raise KeyError(profile)
                started[profile] = stack.enter_context(nginx_proxy(profile, app.port))
                self[profile] = started[profile]
                return started[profile]

        yield Lazy()


@pytest.fixture
def base_url(app: AppServer, proxies: dict[str, Nginx]) -> Any:
    """``base_url(setup)``: the app's URL for "direct", else the URL of that nginx profile."""

    def resolve(setup: str) -> str:
        return app.url if setup == "direct" else proxies[setup].url

    return resolve
