"""The diagnose page (``<prefix>/diagnose``) in real Chromium, direct and behind the nginx profiles.

Each profile breaks a different transport (tests/browser/nginx/*.conf.tmpl); the page must say
which, with the verdict the browser can honestly infer: through ``a-no-upgrade`` the WebSocket
upgrade is refused while SSE and long-poll work, through ``b-buffering`` the event stream is
held back, and direct everything works. The report the "Copy report" button puts on the
clipboard has the shape of ``python -m transports.diagnose URL --json`` (run here on the same
server), plus ``userAgent`` and ``when``. Two small proxies of Python's show what nginx does not:
a WebSocket accepted and then silent (``upgrade_silent``), and an event stream let go in bursts,
which the page can only tell from the publications' timing (``sse_buffered``). The page holds
each connection idle after its publications (``?idle=S``, a second here): through a proxy that
cuts idle connections (tests/proxies.py's ``IdleCutProxy``) every transport is ``idle_cut``, as
the CLI says through the same proxy.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.proxies import IdleCutProxy, SilentUpgradeProxy, _Proxy, in_thread

from .harness import ROOT, AppServer, Nginx, app_server, nginx_proxy, wait_for

CHECK_MS = 60_000
"""Bound on one run of the check (three transports, each bounded by its deadline plus 5 s, then
the idle holds, at once)."""

IDLE = 1
"""Seconds the page holds each connection idle (``?idle=``): short, the app's heartbeat is 25 s."""

TRANSPORT_KEYS = ["ok", "first_message_ms", "verdict", "title", "observed", "cause", "fix"]
CATALOGUE = json.loads((ROOT / "transports" / "static" / "diagnose.json").read_text())["verdicts"]


@pytest.fixture(scope="module")
def diagnosed(log_dir: Path) -> Iterator[AppServer]:
    """The browser suite's app with ``diagnose`` on (no ticker: the page publishes its own)."""
    with app_server(log_dir, tick_ms=0, settings={"diagnose": True}) as server:
        yield server


@pytest.fixture(scope="module")
def proxied(diagnosed: AppServer) -> Iterator[dict[str, Nginx]]:
    """nginx in front of that app, one per profile the tests use."""
    with (
        nginx_proxy("a-no-upgrade", diagnosed.port) as a,
        nginx_proxy("b-buffering", diagnosed.port) as b,
    ):
        yield {"a-no-upgrade": a, "b-buffering": b}


def run_check(page: Page, base: str, idle: float = IDLE) -> dict[str, Any]:
    """Open the page (it runs the check at once, holding each connection idle ``idle`` s) and
    return its report when done."""
    page.goto(f"{base}/realtime/diagnose?idle={idle:g}")
    wait_for(page, "() => window.diagnose && window.diagnose.check.status === 'done'", CHECK_MS)
    report: dict[str, Any] = page.evaluate("() => window.diagnose.check.report")
    return report


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {name: entry["verdict"] for name, entry in report["transports"].items()}


def shown(page: Page) -> dict[str, tuple[str, str]]:
    """What the page shows per transport: (verdict, the card's text)."""
    cards = page.locator("#results article")
    result = {}
    for i in range(cards.count()):
        card = cards.nth(i)
        name = card.get_attribute("data-transport") or ""
        result[name] = (card.get_attribute("data-verdict") or "", card.inner_text())
    return result


def check_shape(report: dict[str, Any]) -> None:
    """The CLI's report shape (plus userAgent and when), with values of the CLI's types."""
    assert list(report) == ["url", "best", "transports", "userAgent", "when"]
    assert list(report["transports"]) == ["websocket", "sse", "longpoll"]
    for name, entry in report["transports"].items():
        assert list(entry) == TRANSPORT_KEYS, name
        assert isinstance(entry["ok"], bool)
        first = entry["first_message_ms"]
        assert first is None or isinstance(first, float | int)
        assert entry["verdict"] in CATALOGUE, entry["verdict"]
        assert entry["title"] == CATALOGUE[entry["verdict"]]["title"]
        assert entry["cause"] == CATALOGUE[entry["verdict"]]["cause"]
        assert entry["fix"] == CATALOGUE[entry["verdict"]]["fix"]
        assert entry["observed"] and all(isinstance(line, str) for line in entry["observed"])
    assert report["best"] in (None, *report["transports"])
    assert "Chrome" in report["userAgent"]


def test_direct_everything_works_and_the_copied_report_has_the_cli_shape(
    browser: Browser, diagnosed: AppServer
) -> None:
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        report = run_check(page, diagnosed.url)
        assert verdicts(report) == {"websocket": "ok", "sse": "ok", "longpoll": "ok"}, report
        assert report["best"] == "websocket"
        assert report["url"] == diagnosed.url + "/realtime"
        for entry in report["transports"].values():
            assert entry["ok"]
            assert entry["first_message_ms"] is not None and entry["first_message_ms"] > 0
            # Held idle for the second asked, quiet but not cut (the heartbeat is 25 s), and the
            # page's own close at the end is no cut.
            assert any(line.startswith("idle: kept open") for line in entry["observed"]), entry
        assert {name: v for name, (v, _) in shown(page).items()} == verdicts(report)
        assert "Best transport from here: WebSocket." in page.inner_text("#summary")

        page.click("#copy")
        wait_for(page, "() => document.querySelector('#copy-status').textContent !== ''", 5_000)
        copied = json.loads(page.evaluate("() => navigator.clipboard.readText()"))
        assert copied == report
        assert json.loads(page.inner_text("#report")) == report
        check_shape(copied)
    finally:
        context.close()

    # The CLI on the same server: the same keys, and it agrees that everything works.
    cli = subprocess.run(
        [sys.executable, "-m", "transports.diagnose", diagnosed.url + "/realtime", "--json"]
        + ["--idle", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    tool = json.loads(cli.stdout)
    assert list(tool) == list(copied)[:3]
    for name, entry in tool["transports"].items():
        assert list(entry) == list(copied["transports"][name]), name
        assert isinstance(entry["observed"], list)
    assert verdicts(tool) == verdicts(copied)


def test_through_a_proxy_without_upgrade_websocket_is_refused(
    page: Page, proxied: dict[str, Nginx]
) -> None:
    report = run_check(page, proxied["a-no-upgrade"].url)
    assert verdicts(report) == {"websocket": "upgrade_refused", "sse": "ok", "longpoll": "ok"}
    assert report["best"] == "sse"
    check_shape(report)
    cards = shown(page)
    assert cards["websocket"][0] == "upgrade_refused"
    assert CATALOGUE["upgrade_refused"]["title"] in cards["websocket"][1]
    assert "does not work" in cards["websocket"][1]
    assert "works" in cards["sse"][1] and "does not work" not in cards["sse"][1]


def test_through_a_buffering_proxy_the_event_stream_is_held_back(
    page: Page, proxied: dict[str, Nginx]
) -> None:
    report = run_check(page, proxied["b-buffering"].url)
    found = verdicts(report)
    assert found["sse"] == "sse_buffered", report["transports"]["sse"]
    assert found["longpoll"] == "ok"
    # HTTP/1.0 to the upstream cannot carry an upgrade either.
    assert found["websocket"] == "upgrade_refused"
    assert report["best"] == "longpoll"
    check_shape(report)
    assert CATALOGUE["sse_buffered"]["title"] in shown(page)["sse"][1]


class QuietFlushProxy(_Proxy):
    """Forwards to ``127.0.0.1:upstream`` and holds an event stream's body until it has been
    quiet for ``quiet`` seconds, then lets it go in one write (a proxy that flushes when the
    upstream pauses). It asks the app to close every connection after its answer
    (``Connection: close``, WebSocket upgrades aside), so that the browser opens a connection per
    request and the proxy sees each answer's head."""

    def __init__(self, upstream: int, quiet: float) -> None:
        super().__init__()
        self.upstream = upstream
        self.quiet = quiet
        self.flushes = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"\r\nupgrade: websocket" not in head.lower():
            lines = head[:-4].split(b"\r\n")
            kept = [line for line in lines if not line.lower().startswith(b"connection:")]
            head = b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n"
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        up_writer.write(head)
        uplink = asyncio.ensure_future(self._copy(reader, up_writer))
        try:
            answer = await up_reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            if b"text/event-stream" in answer.lower():
                await self._hold(up_reader, writer)
            else:
                await self._copy(up_reader, writer)
        finally:
            uplink.cancel()
            await asyncio.gather(uplink, return_exceptions=True)
            up_writer.close()

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held = bytearray()
        while True:
            try:
                data = await asyncio.wait_for(reader.read(65536), self.quiet if held else None)
            except TimeoutError:
                self.flushes += 1
                writer.write(bytes(held))
                held.clear()
                await writer.drain()
                continue
            if not data:
                return
            held.extend(data)


def test_a_websocket_accepted_then_silent_is_upgrade_silent(
    page: Page, diagnosed: AppServer
) -> None:
    with in_thread(SilentUpgradeProxy(diagnosed.port)) as proxy:
        report = run_check(page, proxy.url)
        assert proxy.upgrades >= 1
    assert verdicts(report) == {"websocket": "upgrade_silent", "sse": "ok", "longpoll": "ok"}
    observed = report["transports"]["websocket"]["observed"]
    assert "then nothing came through it" in observed, observed


def test_an_event_stream_let_go_in_bursts_is_sse_buffered_from_the_timing_alone(
    page: Page, diagnosed: AppServer
) -> None:
    with in_thread(QuietFlushProxy(diagnosed.port, quiet=0.8)) as proxy:
        report = run_check(page, proxy.url)
        assert proxy.flushes >= 3  # the HELLO, the subscribe's reply, the publications
    sse = report["transports"]["sse"]
    assert sse["verdict"] == "sse_buffered", sse
    # The stream opened and answered: only the publications' timing shows the buffer.
    assert "round trip (subscribe)" in " ".join(sse["observed"])
    assert any("late and together" in line for line in sse["observed"]), sse["observed"]
    assert report["transports"]["longpoll"]["verdict"] == "ok"


def test_a_proxy_that_cuts_idle_connections_is_idle_cut_as_the_cli_says(
    page: Page, diagnosed: AppServer
) -> None:
    """A proxy that cuts a connection after 1.5 s without traffic, under the app's 25 s
    heartbeat: each transport's connection, held idle (up to 8 s) after its publications, is
    cut, so idle_cut on all three, with the silence and the heartbeat in what the page saw; the
    CLI through the same proxy says the same. A held poll cut on a connection Chromium reused is
    asked again, unseen (up to twice here): the page sees its cut later, as an upper bound."""
    with in_thread(IdleCutProxy(diagnosed.port, 1.5)) as proxy:
        report = run_check(page, proxy.url, idle=8)
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        cli = subprocess.run(
            [sys.executable, "-m", "transports.diagnose", proxy.url + "/realtime", "--json"]
            + ["--idle", "4", "--timeout", "3"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proxy.cuts >= 3
    cut = {"websocket": "idle_cut", "sse": "idle_cut", "longpoll": "idle_cut"}
    assert verdicts(report) == cut, report
    assert report["best"] is None
    check_shape(report)
    for name, entry in report["transports"].items():
        lines = [line for line in entry["observed"] if line.startswith("cut after")]
        assert lines, (name, entry["observed"])
        found = re.match(r"cut after (at most )?(\d+\.\d) s idle \(heartbeat is 25 s", lines[0])
        assert found, lines[0]
        if name == "longpoll":
            assert found[1] and 1.3 <= float(found[2]) < 8, lines[0]
        else:
            assert not found[1] and 1.3 <= float(found[2]) < 2.5, lines[0]
    cards = shown(page)
    for name in cut:
        assert cards[name][0] == "idle_cut"
        assert CATALOGUE["idle_cut"]["title"] in cards[name][1]
    assert verdicts(json.loads(cli.stdout)) == verdicts(report), cli.stdout
