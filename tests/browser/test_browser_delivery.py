"""Delivery through random cuts with the browser client (issue 5, browser half).

The page is served through the seeded fault-injecting proxy (tests/faultproxy.py, here as a
subprocess), so every connection the browser client opens goes through it. With cutting on, the
server publishes numbered messages at a steady rate and the page sends numbered messages; at the
end the page must hold every publication exactly once, in order, and the server must have applied
every page message exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from .harness import (
    ROOT,
    AppServer,
    free_port,
    open_page,
    port_open,
    publish,
    start_client,
    stop_process,
    wait_for,
)

SEED = int(os.environ.get("TRANSPORTS_FAULT_SEED", "20261129"))
MESSAGES = 300
RATE = 100.0
SENDS = 30


class ProxyProcess:
    """``python -m tests.faultproxy`` in front of ``upstream``; cutting starts switched off."""

    def __init__(self, upstream: int, mean_life: float, cut_after_response: float) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.faultproxy",
                "--upstream",
                str(upstream),
                "--port",
                str(self.port),
                "--seed",
                str(SEED),
                "--mean-life",
                str(mean_life),
                "--cut-after-response",
                str(cut_after_response),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                stop_process(self.proc)
                raise RuntimeError("fault proxy did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cutting(self, on: bool) -> None:
        self.proc.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

    def stop(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        result: dict[str, int] = json.loads(out.decode().strip().splitlines()[-1])
        return result


@pytest.fixture
def proxy(own_app: AppServer) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess(own_app.port, mean_life=0.7, cut_after_response=0.02)
    try:
        yield proxy
    finally:
        if proxy.proc.poll() is None:
            stop_process(proxy.proc)


def applied(base: str) -> dict[str, int]:
    with urllib.request.urlopen(base + "/applied", timeout=5) as response:
        result: dict[str, int] = json.loads(response.read())
        return result


SEND_LOOP = """async ([prefix, count]) => {
  window.replies = [];
  for (let i = 0; i < count; i++) {
    window.replies.push(await window.client.send("count", { key: `${prefix}:${i}` }));
    await new Promise((r) => setTimeout(r, 30));
  }
  return window.replies.length;
}"""


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
def test_browser_exactly_once_through_cuts(
    page: Page, own_app: AppServer, proxy: ProxyProcess, transport: str
) -> None:
    """Every publication reaches the page once, in order; every page message is applied once."""
    open_page(page, proxy.url)
    start_client(page, {"transports": [transport], "backoff": {"min": 50, "max": 500}})
    wait_for(page, "() => window.client.state === 'open'", 15_000)
    page.evaluate("() => harness.listen('numbers')")
    proxy.cutting(True)
    sender = page.evaluate_handle(SEND_LOOP, [transport, SENDS])
    start = time.monotonic()
    for n in range(MESSAGES):
        publish(own_app.url, "numbers", "n", n)  # straight to the app: the producer is server-side
        delay = start + (n + 1) / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    wait_for(page, "(n) => window.replies && window.replies.length >= n", 60_000, arg=SENDS)
    proxy.cutting(False)
    wait_for(page, "(n) => window.rec.pubs.numbers.length >= n", 60_000, arg=MESSAGES)
    # A barrier instead of a pause: with cutting off, a last publication arrives after anything
    # still on its way (a topic's publications arrive in order, replays before new ones).
    publish(own_app.url, "numbers", "end", "end")
    wait_for(page, "() => window.rec.pubs.numbers.some((p) => p.event === 'end')", 60_000)
    got: list[Any] = page.evaluate(
        "() => window.rec.pubs.numbers.filter((p) => p.event !== 'end').map((p) => p.data)"
    )
    ends = page.evaluate("() => window.rec.pubs.numbers.filter((p) => p.event === 'end').length")
    replies: list[Any] = page.evaluate("() => window.replies")
    stats = page.evaluate("() => harness.info().stats")
    sender.dispose()
    counts = proxy.stop()
    done = applied(own_app.url)
    print(
        f"\nbrowser {transport}: {MESSAGES} messages at {RATE:.0f}/s, {counts['cuts']} cuts, "
        f"{stats['reconnects']} reconnects, lost {MESSAGES - len(set(got))}, "
        f"duplicated {len(got) - len(set(got))}, page sends {SENDS}, applied twice "
        f"{sum(1 for k, v in done.items() if k.startswith(transport) and v > 1)}"
    )
    assert counts["cuts"] >= 3
    assert got == list(range(MESSAGES))
    assert ends == 1
    assert replies == [1] * SENDS
    for i in range(SENDS):
        assert done.get(f"{transport}:{i}") == 1
