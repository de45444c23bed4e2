"""Presence in real Chromium: two pages see each other, and one sees the other leave.

Two demo processes (``python -m demo --backplane redis://...``) on one Redis, behind an nginx
that balances request by request (no stickiness: negotiate, the transport and each POST may each
land on either process), as a scaled-out deployment runs. Two browser contexts (two guests, two
guest names) open the demo page through it. Each page finds both in ``client.presence("all")``
and in its "Here now" list; when one page closes, the other gets the ``leave`` event for it and
its list shrinks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.redis_server import RedisServer, redis_available
from tests.scaleout import RoundRobinNginx

from .harness import _Process, free_port

SECRET = "presence-browser-test-key-0123456789"


class DemoProcess(_Process):
    """``python -m demo`` on a shared Redis backplane."""

    name = "demo process"

    def __init__(self, log: Path, redis_url: str) -> None:
        super().__init__(free_port(), log)
        self.redis_url = redis_url

    def start(self, timeout: float = 20.0) -> None:
        argv = [sys.executable, "-m", "demo", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--backplane", self.redis_url, "--secret-key", SECRET]
        self._spawn(argv, timeout)


@pytest.fixture(scope="module")
def cluster(log_dir: Path) -> Iterator[str]:
    """The URL of nginx in front of two demo processes on one Redis."""
    if not redis_available():
        pytest.skip("redis-server is not installed")
    redis = RedisServer()
    redis.start()
    demos: list[DemoProcess] = []
    nginx = None
    try:
        for n in range(2):
            demo = DemoProcess(log_dir / f"presence-demo-{n}-{time.monotonic_ns()}.log", redis.url)
            demos.append(demo)
            demo.start()
        nginx = RoundRobinNginx([demo.port for demo in demos])
        yield nginx.url
    finally:
        if nginx is not None:
            nginx.stop()
        for demo in demos:
            demo.stop()
        redis.close()


def open_demo(page: Page, url: str) -> str:
    """Open the page, wait until it is connected and follows #all; its client's id."""
    page.goto(url, timeout=15_000)
    page.wait_for_function(
        "() => window.demo && window.demo.client.state === 'open' && window.demo.client.id"
        " && document.querySelector('[data-testid=here-all]')?.dataset.status === 'live'",
        timeout=20_000,
    )
    return str(page.evaluate("() => window.demo.client.id"))


def asked(page: Page) -> dict[str, Any]:
    """``client.presence("all")``: who is subscribed to #all, by id -> name."""
    listing: dict[str, Any] = page.evaluate(
        "async () => { const l = await window.demo.client.presence('all');"
        " return {count: l.count, members: Object.fromEntries("
        "l.members.map((m) => [m.id, m.info && m.info.name]))}; }"
    )
    return listing


def wait_listing(page: Page, check: Any, timeout: float = 15.0) -> dict[str, Any]:
    """Ask again until ``check(listing)`` holds (presence spreads through Redis)."""
    deadline = time.monotonic() + timeout
    while True:
        listing = asked(page)
        if check(listing) or time.monotonic() > deadline:
            return listing
        time.sleep(0.2)


def shown(page: Page) -> list[str]:
    """The names in the page's "Here now" row for #all."""
    names: list[str] = page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=here-all] [data-testid=member]')]"
        ".map((el) => el.dataset.name)"
    )
    return sorted(names)


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
def test_two_pages_see_each_other_then_the_leave(
    browser: Browser, cluster: str, transport: str
) -> None:
    contexts = [browser.new_context(), browser.new_context()]
    try:
        first, second = (context.new_page() for context in contexts)
        query = "" if transport == "websocket" else f"?transports={transport}"
        a = open_demo(first, f"{cluster}/{query}")
        b = open_demo(second, f"{cluster}/{query}")
        # Without ?transports=, a fast start opens on long-poll and moves up to WebSocket.
        second.wait_for_function(
            "(t) => window.demo.client.transport === t", arg=transport, timeout=15_000
        )
        name_a, name_b = (
            p.evaluate("() => localStorage.getItem('demo:name')") for p in (first, second)
        )
        assert name_a != name_b

        # Both pages, whichever process each talks to, see both members with their names.
        for page in (first, second):
            listing = wait_listing(page, lambda got: {a, b} <= set(got["members"]))
            assert listing["members"][a] == name_a and listing["members"][b] == name_b, listing
            assert listing["count"] >= 2
            page.wait_for_function(
                "(names) => names.every((n) => [...document.querySelectorAll("
                "'[data-testid=here-all] [data-testid=member]')]"
                ".some((el) => el.dataset.name === n))",
                arg=[name_a, name_b],
                timeout=15_000,
            )
        assert first.evaluate(
            "(id) => window.demo.client.members('all').some((m) => m.id === id)", b
        )
        mine = first.locator("[data-testid=here-all] [data-testid=member][data-me]")
        assert mine.get_attribute("data-name") == name_a

        # The second page goes away: the first gets its leave and its list shrinks.
        first.evaluate(
            "() => { window.left = []; window.demo.client.on('leave',"
            " (topic, member) => window.left.push([topic, member.id])); }"
        )
        second.close()
        first.wait_for_function(
            "(id) => window.left.some(([topic, member]) => topic === 'all' && member === id)",
            arg=b,
            timeout=20_000,
        )
        assert name_b not in shown(first)
        assert name_a in shown(first)
        assert b not in asked(first)["members"]
        # One leave for it, not repeated (a page of an earlier case may leave meanwhile too).
        assert first.evaluate("(id) => window.left.filter(([, m]) => m === id).length", b) == 1
    finally:
        for context in contexts:
            context.close()
