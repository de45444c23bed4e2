"""Tabs sharing one connection (the browser client's ``share``, on by default), in Chromium.

Eight tabs of the test page in one browser context (so they share the browser's six
connections per host and their storage) reach the app through nginx (``c-correct``, HTTP/1.1
to the browser). On SSE and on long-poll: the server sees one stream for all of them, every tab
gets every publication and its own replies; the leader tab is closed mid-stream and another
takes over, with nothing lost or doubled in any tab and the sends in flight applied once. With
``share: false`` the same eight tabs on SSE stall: the seventh and eighth have no connection
left, which is the problem sharing solves. A leader tab that freezes (its main thread stopped
by the debugger) is taken over too, and follows once it runs again.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from .harness import AppServer, Nginx, app_server, nginx_proxy, open_page, start_client, wait_for

TABS = 8


def get_json(url: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def served(log_dir: Path) -> Iterator[tuple[AppServer, Nginx]]:
    """An app of its own (its connection count is this test's alone) behind nginx c-correct."""
    with app_server(log_dir, tick_ms=50) as app, nginx_proxy("c-correct", app.port) as proxy:
        yield app, proxy


@pytest.fixture
def tabs_context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    try:
        yield context
    finally:
        context.close()


def info(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("() => harness.info()")
    return result


def rec(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        "() => ({gaps: rec.tickGaps, ticks: rec.ticks, first: rec.firstOffset, "
        "last: rec.lastOffset, leaders: rec.leaders, states: rec.states, errors: rec.errors})"
    )
    return result


def open_tabs(context: BrowserContext, base: str, options: dict[str, Any]) -> list[Page]:
    """Load the page in TABS tabs first (a load needs a free connection too), then connect each."""
    pages = []
    for _ in range(TABS):
        page = context.new_page()
        open_page(page, base)
        pages.append(page)
    for page in pages:
        start_client(page, options)
    return pages


@pytest.mark.parametrize("transport", ["sse", "longpoll"])
def test_eight_tabs_share_one_connection_and_survive_the_leader_closing(
    served: tuple[AppServer, Nginx], tabs_context: BrowserContext, transport: str
) -> None:
    app, proxy = served
    pages = open_tabs(tabs_context, proxy.url, {"transports": [transport]})
    protocol = pages[0].evaluate(
        "() => performance.getEntriesByType('navigation')[0].nextHopProtocol"
    )
    assert protocol == "http/1.1", protocol  # the six-connection limit applies
    for page in pages:
        wait_for(page, "() => client.state === 'open' && rec.ticks > 0", 20_000)
    infos = [info(page) for page in pages]
    assert [i["shared"] for i in infos] == [True] * TABS
    assert sum(i["leader"] for i in infos) == 1, infos
    assert {i["transport"] for i in infos} == {transport}
    assert len({i["id"] for i in infos}) == 1  # one connection, one public id

    # The server sees one session, with (at most) one stream or poll at a time.
    seen = get_json(app.url + "/connections")
    assert seen["sessions"] == 1, seen
    assert sum(seen["attached"].values()) <= 1, seen
    # A fetch still finds a free connection: nothing is stalled.
    assert pages[-1].evaluate("async () => (await fetch('/connections')).status") == 200

    # Each tab's send() gets its own reply.
    answers = [
        page.evaluate(f"() => client.send('echo', {{tab: {i}}})") for i, page in enumerate(pages)
    ]
    assert answers == [{"tab": i} for i in range(TABS)]

    # Sends in flight while the leader goes: applied once each, answered in their own tab.
    leader = next(page for page, i in zip(pages, infos, strict=True) if i["leader"])
    followers = [page for page in pages if page is not leader]
    for i, page in enumerate(followers):
        page.evaluate(
            "(key) => { window.inflight = client.send('count', {key, delay: 0.4})"
            ".then((n) => n, (e) => 'error ' + e.code); }",
            f"handover-{transport}-{i}",
        )
    time.sleep(0.1)
    before = [rec(page)["last"] for page in followers]
    closed_at = time.monotonic()
    leader.close()

    # Another tab leads within about a second and every tab is open again.
    wait_for(followers[0], "() => true")
    deadline = time.monotonic() + 10
    while not any(info(page)["leader"] for page in followers):
        assert time.monotonic() < deadline, "no tab took over"
        time.sleep(0.02)
    took_over = time.monotonic() - closed_at
    assert took_over < 2.0, f"took {took_over:.2f} s to elect a new leader"
    for page in followers:
        wait_for(page, "() => client.state === 'open'", 15_000)
    assert [page.evaluate("() => window.inflight") for page in followers] == [1] * len(followers)
    applied = get_json(app.url + "/applied")
    assert all(applied[f"handover-{transport}-{i}"] == 1 for i in range(len(followers))), applied

    # Ticks went on in every tab: lost 0, doubled 0 (each tab checks that offsets follow).
    marks = [rec(page)["last"] for page in followers]
    for page, mark in zip(followers, marks, strict=True):
        wait_for(page, "(mark) => rec.lastOffset >= mark + 20", 15_000, mark)
    for page, start in zip(followers, before, strict=True):
        seen_by = rec(page)
        assert seen_by["gaps"] == [], seen_by
        assert seen_by["ticks"] == seen_by["last"] - seen_by["first"] + 1, seen_by
        assert seen_by["last"] > start + 20
    infos = [info(page) for page in followers]
    assert sum(i["leader"] for i in infos) == 1
    after = get_json(app.url + "/connections")
    assert sum(after["attached"].values()) <= 1, after  # the old stream is gone, one new one
    assert after["sessions"] <= 2, after  # the old session waits for its expiry


def test_without_sharing_eight_sse_tabs_stall_on_the_connection_limit(
    served: tuple[AppServer, Nginx], tabs_context: BrowserContext
) -> None:
    _, proxy = served
    pages = open_tabs(tabs_context, proxy.url, {"transports": ["sse"], "share": False})
    time.sleep(6)
    states = [info(page)["state"] for page in pages]
    opened = states.count("open")
    assert opened <= 6, states
    assert opened < TABS, states
    # And a plain fetch from any tab now waits for a free connection.
    stalled = pages[0].evaluate(
        "() => Promise.race([fetch('/connections').then(() => 'answered'),"
        " new Promise((resolve) => setTimeout(() => resolve('stalled'), 2000))])"
    )
    assert stalled == "stalled"


def test_a_frozen_leader_is_taken_over_and_follows_when_it_runs_again(
    served: tuple[AppServer, Nginx], tabs_context: BrowserContext
) -> None:
    _, proxy = served
    pages = []
    for _ in range(4):
        page = tabs_context.new_page()
        open_page(page, proxy.url)
        start_client(page, {"transports": ["sse"]})
        pages.append(page)
    for page in pages:
        wait_for(page, "() => client.state === 'open' && rec.ticks > 0", 20_000)
    leader = next(page for page in pages if info(page)["leader"])
    others = [page for page in pages if page is not leader]
    # A frozen tab runs nothing while it keeps its lock. Page.setWebLifecycleState does not
    # freeze a visible headless page, so the debugger stops the leader's main thread instead:
    # the same for the other tabs (no answers, no relayed publications, the lock still held).
    cdp = tabs_context.new_cdp_session(leader)
    cdp.send("Debugger.enable")
    cdp.send("Debugger.pause")
    frozen_at = time.monotonic()
    deadline = frozen_at + 10
    while not any(info(page)["leader"] for page in others):
        assert time.monotonic() < deadline, "no tab took over from the frozen leader"
        time.sleep(0.02)
    took_over = time.monotonic() - frozen_at
    assert took_over < 3.0, f"took {took_over:.2f} s to take over from a frozen leader"
    marks = [rec(page)["last"] for page in others]
    for page, mark in zip(others, marks, strict=True):
        wait_for(page, "(mark) => rec.lastOffset >= mark + 20", 15_000, mark)
    cdp.send("Debugger.resume")
    wait_for(leader, "() => !client.leader && client.state === 'open'", 10_000)
    mark = rec(others[0])["last"]
    for page in pages:
        wait_for(page, "(mark) => rec.lastOffset >= mark + 20", 15_000, mark)
    for page in pages:
        seen_by = rec(page)
        assert seen_by["gaps"] == [], seen_by
        assert seen_by["ticks"] == seen_by["last"] - seen_by["first"] + 1, seen_by
    assert rec(leader)["leaders"] == [True, False]
    assert sum(info(page)["leader"] for page in pages) == 1
