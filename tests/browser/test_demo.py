"""The demo in real Chromium: ``python -m demo --port P`` in a subprocess, as a newcomer runs it.

What the issue asks the page to show: producer notifications arriving, a post going from
"sending" to "sent" (or "failed" with the reason), two tabs seeing the same feed, each forced
transport working end to end, a fallback explained, topics joined and left, a bounded feed, and
a page that recovers by itself after the server restarts. The last test writes screenshots at
desktop and phone width to ``test-artifacts/`` (not committed) for a person to look at.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from .demo_server import DemoServer, demo_server
from .harness import ROOT, nginx_proxy

ARTIFACTS = ROOT / "test-artifacts"
NOTE = '[data-testid="notification"]'
ID_RE = re.compile(r"^[A-Za-z0-9_-]+:[a-z]+:\d+$")
"""The library's publication id, ``epoch:topic:offset``."""


@pytest.fixture(scope="module")
def demo(log_dir: Path) -> Iterator[DemoServer]:
    """One demo server for the tests that do not stop it."""
    with demo_server(log_dir) as server:
        yield server


@pytest.fixture
def own_demo(log_dir: Path) -> Iterator[DemoServer]:
    """A demo server for one test (which may kill it and start it again)."""
    with demo_server(log_dir) as server:
        yield server


# --- helpers -------------------------------------------------------------------------------------


def text_of(page: Page, name: str) -> str:
    return str(page.locator(f'[data-testid="{name}"]').first.text_content() or "")


def wait_state(page: Page, state: str, timeout_ms: float = 15_000) -> None:
    page.wait_for_function(
        "(s) => document.querySelector('[data-testid=state]')?.textContent === s",
        arg=state,
        timeout=timeout_ms,
    )


def open_demo(page: Page, base: str, query: str = "", timeout_ms: float = 15_000) -> None:
    page.goto(f"{base}/{query}", timeout=timeout_ms)
    wait_state(page, "open", timeout_ms)


def ids(page: Page) -> list[str]:
    """The data-id of every notification on the page, top to bottom."""
    result: list[str] = page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=notification][data-id]')]"
        ".map((el) => el.dataset.id)"
    )
    return result


def item(page: Page, notification_id: str) -> Any:
    return page.locator(f'{NOTE}[data-id="{notification_id}"]')


def wait_item(page: Page, notification_id: str, timeout_ms: float = 10_000) -> None:
    page.wait_for_selector(f'{NOTE}[data-id="{notification_id}"]', timeout=timeout_ms)


def wait_new_producer_item(page: Page, before: list[str], timeout_ms: float = 15_000) -> str:
    """Wait for a notification the page received that is not in ``before``; its id."""
    handle = page.wait_for_function(
        """(before) => {
             const known = new Set(before);
             const el = [...document.querySelectorAll(
               '[data-testid=notification][data-status=received][data-id]')]
               .find((e) => !known.has(e.dataset.id));
             return el ? el.dataset.id : null;
           }""",
        arg=before,
        timeout=timeout_ms,
    )
    return str(handle.json_value())


def watch_posts(page: Page) -> None:
    """Record every status each of this page's own posts goes through, in ``window.seen``."""
    page.evaluate(
        """() => {
             window.seen = [];
             const feed = document.querySelector('[data-testid=feed]');
             const note = (el) => {
               if (el.nodeType === 1 && el.matches('[data-testid=notification][data-mine]')) {
                 window.seen.push([el.dataset.nonce, el.dataset.status, el.dataset.id || null]);
               }
             };
             new MutationObserver((mutations) => {
               for (const m of mutations) {
                 if (m.type === 'childList') m.addedNodes.forEach(note);
                 else note(m.target);
               }
             }).observe(feed, { childList: true, subtree: true, attributes: true,
                                attributeFilter: ['data-status', 'data-id'] });
           }"""
    )


def compose(page: Page, title: str, timeout_ms: float = 10_000) -> str:
    """Post ``title`` from the compose box; wait until it is sent; its id."""
    page.fill('[data-testid="compose-input"]', title)
    page.click('[data-testid="compose-submit"]')
    locator = page.locator(f"{NOTE}[data-mine]", has_text=title)
    locator.and_(page.locator('[data-status="sent"]')).wait_for(timeout=timeout_ms)
    notification_id = str(locator.get_attribute("data-id"))
    assert ID_RE.match(notification_id), notification_id
    assert "Sent" in str(locator.text_content())
    return notification_id


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


# --- tests ---------------------------------------------------------------------------------------


def wait_transport(page: Page, name: str, timeout_ms: float = 15_000) -> None:
    """Wait until the status line shows ``name`` (the final transport after a fast start)."""
    page.wait_for_function(
        "(name) => document.querySelector('[data-testid=transport]')?.textContent === name",
        arg=name,
        timeout=timeout_ms,
    )


def test_producer_notifications_arrive(page: Page, demo: DemoServer) -> None:
    """On load the page shows the recent feed, then the producer's notifications arrive live,
    unread, with a timestamp; everything the page loads comes from the app."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("websocket", lambda ws: requested.append(ws.url))
    open_demo(page, demo.url)
    wait_transport(page, "websocket")  # a fast start opens on long-poll, then moves up
    assert "first choice" in text_of(page, "negotiated")
    page.wait_for_selector(NOTE, timeout=10_000)  # the recent feed, loaded on open
    before = ids(page)
    new_id = wait_new_producer_item(page, before)
    assert ID_RE.match(new_id) and new_id.split(":")[1] == "all"
    new = item(page, new_id)
    assert new.get_attribute("class") == "note unread"
    assert new.locator("time").get_attribute("datetime")
    assert new.locator("time").text_content() in ("just now",) or "ago" in str(
        new.locator("time").text_content()
    )
    assert int(text_of(page, "unread-count")) >= 1
    page.click("#mark-read")
    assert text_of(page, "unread-count") == "0"
    assert page.locator(".note.unread").count() == 0

    hosts = {urlsplit(url).netloc for url in requested}
    assert hosts == {f"127.0.0.1:{demo.port}"}, requested  # no CDN, nothing from elsewhere


def test_api_notify_shows_the_same_id(page: Page, demo: DemoServer) -> None:
    open_demo(page, demo.url)
    title = unique("Build passed")
    status, body = demo.notify({"title": title, "body": "from a script"})
    assert status == 200 and ID_RE.match(body["id"])
    wait_item(page, body["id"])
    assert title in str(item(page, body["id"]).text_content())
    assert item(page, body["id"]).count() == 1

    status, error = demo.notify({"body": "no title"})
    assert status == 400 and error["error"] == "missing_field"


def test_compose_goes_from_sending_to_sent(page: Page, demo: DemoServer) -> None:
    open_demo(page, demo.url)
    watch_posts(page)
    title = unique("Lunch is here")
    notification_id = compose(page, title)
    seen: list[list[Any]] = page.evaluate("() => window.seen")
    statuses = [status for _, status, _ in seen]
    assert statuses[0] == "sending" and statuses[-1] == "sent", seen
    assert seen[0][2] is None  # no id while sending: the server gives it
    assert seen[-1][2] == notification_id
    # Shown once: the ack and the publication were matched, whichever came first.
    assert page.locator(NOTE, has_text=title).count() == 1
    assert ids(page).count(notification_id) == 1
    assert page.locator(f'{NOTE}[data-id="{notification_id}"]').get_attribute("data-status") == (
        "sent"
    )


def test_compose_failure_shows_the_reason(page: Page, demo: DemoServer) -> None:
    """The server refuses an empty or over-long title (Reject -> bad_data): the item says so."""
    open_demo(page, demo.url)
    page.click('[data-testid="compose-submit"]')  # empty title
    failed = page.locator(f'{NOTE}[data-status="failed"]')
    failed.first.wait_for(timeout=10_000)
    assert "Failed: title is required (bad_data)" in str(failed.first.text_content())
    assert failed.first.get_attribute("data-id") is None

    page.fill('[data-testid="compose-input"]', "x" * 121)
    assert "over" in str(page.locator("#compose-count").get_attribute("class"))
    page.click('[data-testid="compose-submit"]')
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=notification][data-status=failed]')"
        ".length === 2"
    )
    assert "longer than 120 characters" in str(failed.first.text_content())

    failed.first.get_by_role("button", name="Dismiss").click()
    assert failed.count() == 1
    compose(page, unique("still works after a refusal"))


def test_two_pages_see_the_same_feed(context: BrowserContext, demo: DemoServer) -> None:
    first, second = context.new_page(), context.new_page()
    open_demo(first, demo.url)
    open_demo(second, demo.url)
    # The two tabs share one connection: the status line says which one holds it.
    assert (text_of(first, "tab-role"), text_of(second, "tab-role")) == ("leads", "follows")
    assert first.locator("#tab-field").is_visible() and second.locator("#tab-field").is_visible()

    posted = compose(first, unique("Posted from tab one"))
    wait_item(second, posted)
    assert item(second, posted).get_attribute("data-status") == "received"

    status, body = demo.notify({"title": unique("From a script")})
    assert status == 200
    wait_item(first, body["id"])
    wait_item(second, body["id"])

    produced = wait_new_producer_item(second, ids(second) + ids(first))
    wait_item(first, produced)
    top_first, top_second = ids(first)[:5], ids(second)[:5]
    assert top_first == top_second

    # The leading tab closes: the other one takes the connection over and says so.
    first.close()
    second.wait_for_function(
        "() => document.querySelector('[data-testid=tab-role]')?.textContent === 'leads'",
        timeout=5_000,
    )
    wait_state(second, "open")
    status, body = demo.notify({"title": unique("After the handover")})
    assert status == 200
    wait_item(second, body["id"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("longpoll", "longpoll"),
        ("sse", "sse"),
        ("sse,longpoll", "sse"),
        ("longpoll,sse", "longpoll"),
    ],
)
def test_forced_transports_work_end_to_end(
    page: Page, demo: DemoServer, query: str, expected: str
) -> None:
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    open_demo(page, demo.url, f"?transports={query}")
    wait_transport(page, expected)
    assert "Order from the URL: " + query.replace(",", " → ") in text_of(page, "order-note")
    assert f"Negotiated {expected}: the first choice" in text_of(page, "negotiated")
    assert page.evaluate("() => window.demo.client.transport") == expected

    # Receive: a script's notification and the producer's.
    page.wait_for_selector(NOTE, timeout=10_000)
    status, body = demo.notify({"title": unique(f"over {expected}")})
    assert status == 200
    wait_item(page, body["id"])
    wait_new_producer_item(page, ids(page))
    # Send with an acknowledgement.
    compose(page, unique(f"posted over {expected}"))
    assert sockets == []  # never tried WebSocket


def test_fallback_is_explained(page: Page, demo: DemoServer) -> None:
    """Behind a proxy that drops the WebSocket upgrade the page ends on SSE and says why."""
    with nginx_proxy("a-no-upgrade", demo.port) as proxy:
        open_demo(page, proxy.url)
        # A fast start opens on long-poll; the probe finds the upgrade refused, moves to SSE.
        page.wait_for_function(
            "() => document.querySelector('[data-testid=transport]')?.textContent === 'sse'",
            timeout=15_000,
        )
        why = text_of(page, "negotiated")
        assert "Negotiated sse, not websocket: websocket: closed with 1006" in why, why
        assert (
            page.locator('#transports li[data-transport="websocket"]').get_attribute("data-status")
            == "fell-back"
        )
        assert (
            page.locator('#transports li[data-transport="sse"]').get_attribute("data-status")
            == "active"
        )
        compose(page, unique("through the proxy"))


def test_topics_can_be_joined_and_left(page: Page, demo: DemoServer) -> None:
    open_demo(page, demo.url)
    chip = page.locator('[data-testid="topic-deploys"]')
    assert chip.get_attribute("aria-pressed") == "false"
    chip.click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=topic-deploys]').textContent"
        ".includes('following')"
    )
    status, deploy = demo.notify({"title": unique("Deploy started"), "topic": "deploys"})
    assert status == 200 and deploy["topic"] == "deploys"
    wait_item(page, deploy["id"])
    assert item(page, deploy["id"]).get_attribute("data-topic") == "deploys"

    page.locator('[data-testid="topic-deploys"]').click()  # leave
    assert page.locator(f'{NOTE}[data-topic="deploys"]').count() == 0
    _, ignored = demo.notify({"title": unique("Deploy finished"), "topic": "deploys"})
    _, general = demo.notify({"title": unique("After leaving")})
    wait_item(page, general["id"])
    assert item(page, ignored["id"]).count() == 0


def test_feed_is_bounded(page: Page, demo: DemoServer) -> None:
    """The page keeps the newest 500 notifications."""
    open_demo(page, demo.url)
    result = page.evaluate(
        """async () => {
             const ids = [];
             for (let batch = 0; batch < 26; batch++) {
               const post = (n) => fetch('/api/notify', {
                 method: 'POST', headers: {'Content-Type': 'application/json'},
                 body: JSON.stringify({title: `bulk ${n}`})}).then((r) => r.json());
               const answers = await Promise.all(
                 Array.from({length: 20}, (_, i) => post(batch * 20 + i)));
               ids.push(...answers.map((a) => a.id));
             }
             return ids;
           }"""
    )
    assert len(result) == 520
    # The last batch was posted after every earlier one was answered, so once all of it is on
    # the page (a topic's publications arrive in order) everything has arrived; with a bounded
    # feed the page then holds 500 (a producer notification may have pushed out one more of
    # ours). Over the bound, the count never comes back down to 500 and the wait fails.
    page.wait_for_function(
        """(last) => {
             const shown = [...document.querySelectorAll('[data-testid=notification][data-id]')];
             const here = new Set(shown.map((e) => e.dataset.id));
             return last.every((id) => here.has(id)) && shown.length === 500;
           }""",
        arg=result[-20:],
        timeout=30_000,
    )
    on_screen = ids(page)
    assert len(on_screen) == 500
    assert result[-1] in on_screen and result[0] not in on_screen


@pytest.mark.parametrize(
    ("how", "transport"), [("kill", "websocket"), ("stop", "websocket"), ("kill", "longpoll")]
)
def test_recovers_after_the_server_restarts(
    page: Page, own_demo: DemoServer, how: str, transport: str
) -> None:
    """Stop the demo under an open page (SIGKILL: a crash; SIGTERM: a deploy, which drains
    first) and start it again on the same port: the page reconnects by itself, says it missed
    notifications, and works on the new server."""
    open_demo(page, own_demo.url, "" if transport == "websocket" else f"?transports={transport}")
    status, before = own_demo.notify({"title": unique("before the restart")})
    wait_item(page, before["id"])

    if how == "kill":
        own_demo.kill()
    else:
        own_demo.stop()  # SIGTERM; SIGKILL only if still there after 5 s (returncode -9)
        assert own_demo.proc is not None and own_demo.proc.returncode == 0  # drained, stopped
    wait_state(page, "reconnecting", 10_000)
    # What the page tells a person (wait_state above already read the state field itself).
    assert page.locator("#status-headline").text_content() == "Reconnecting…"
    own_demo.start()
    wait_state(page, "open", 30_000)
    assert text_of(page, "reconnects") == "1"
    assert text_of(page, "transport") == transport
    page.wait_for_selector('[data-testid="notice"]:not([hidden])', timeout=10_000)
    assert "Missed some notifications in #all" in text_of(page, "notice")

    status, after = own_demo.notify({"title": unique("after the restart")})
    assert status == 200
    wait_item(page, after["id"])
    assert after["epoch"] != before["epoch"]  # a new server, a new epoch
    assert item(page, before["id"]).count() == 1  # what was seen stays on screen
    compose(page, unique("posted after the restart"))


@pytest.mark.parametrize(("name", "width", "height"), [("desktop", 1280, 800), ("phone", 390, 844)])
def test_screenshot(browser: Browser, demo: DemoServer, name: str, width: int, height: int) -> None:
    """Screenshots for a person to look at (test-artifacts/demo-*.png), and layout checks that
    do not need one: nothing wider than the screen, the compose box visible without scrolling."""
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        open_demo(page, demo.url)
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=notification]').length >= 5",
            timeout=15_000,
        )
        compose(page, "Coffee machine on 3rd floor is fixed")
        wait_new_producer_item(page, ids(page))
        # Let the arrival animations finish (a producer notification may start another).
        page.wait_for_function(
            "() => document.getAnimations().every((a) => a.playState !== 'running')",
            timeout=10_000,
        )
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{overflow}px wider than the {width}px screen"
        box = page.locator('[data-testid="compose-submit"]').bounding_box()
        assert box is not None and box["y"] + box["height"] <= height
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"demo-{name}.png"))
        if name == "phone":
            page.click("#details-toggle")
            page.screenshot(path=str(ARTIFACTS / "demo-phone-details.png"), full_page=False)
    finally:
        context.close()


def test_the_connection_check_is_one_click_from_the_demo(page: Page, demo: DemoServer) -> None:
    """The demo turns ``diagnose`` on and links the library's page, which checks all three."""
    open_demo(page, demo.url)
    page.click('[data-testid="diagnose-link"]')
    page.wait_for_url(f"{demo.url}/realtime/diagnose")
    page.wait_for_function(
        "() => window.diagnose && window.diagnose.check.status === 'done'", timeout=60_000
    )
    report = page.evaluate("() => window.diagnose.check.report")
    assert {name: entry["verdict"] for name, entry in report["transports"].items()} == {
        "websocket": "ok",
        "sse": "ok",
        "longpoll": "ok",
    }
