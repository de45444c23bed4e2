"""The browser client in real Chromium against real Hypercorn, direct and behind nginx.

Each nginx profile breaks a different transport (see tests/browser/nginx/*.conf.tmpl); the
client must end on the best transport the path lets through, and everything must work on it:
subscribe, a server publish, send with acknowledgement. A killed and restarted server must be
survived without help from the page.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Request, Response

from .conftest import RESTARTS, TIMINGS
from .harness import (
    AppServer,
    Nginx,
    app_server,
    nginx_proxy,
    open_page,
    publish,
    record,
    send_to,
    start_client,
    wait_for,
)

EXPECTED = {
    "direct": "websocket",
    "c-correct": "websocket",
    "a-no-upgrade": "sse",
    "b-buffering": "longpoll",
}
"""The transport the default order (websocket, sse, longpoll) must end on, per setup."""

FALLBACKS = {
    "direct": [],
    "c-correct": [],
    # The upgrade is not forwarded: the handshake fails before `open`.
    "a-no-upgrade": [("websocket", "sse", "closed with 1006")],
    # HTTP/1.0 upstream: no upgrade; buffered SSE: no first event before the deadline.
    "b-buffering": [
        ("websocket", "sse", "closed with 1006"),
        ("sse", "longpoll", "no first event within"),
    ],
}

ORDERED = {"fastStart": False}
"""The ordered start (each transport in turn with its full deadline) these tests check; the fast
start, the default, is test_fast_start.py's."""

_topics = itertools.count(1)


def fresh_topic(prefix: str) -> str:
    """A topic no other test uses (the shared app keeps history)."""
    return f"{prefix}-{next(_topics)}"


WAIT_MS = 30_000
"""Bound on waits for the client to open or deliver: generous, so that a loaded machine fails
nothing an idle one passes (the times are reported, not asserted)."""


def wait_open(page: Page, timeout_ms: float = WAIT_MS) -> dict[str, Any]:
    wait_for(page, "() => window.client && window.client.state === 'open'", timeout_ms)
    return record(page)


def wait_first_tick(page: Page, timeout_ms: float = WAIT_MS) -> dict[str, Any]:
    wait_for(page, "() => window.rec.firstTick !== null", timeout_ms)
    return record(page)


def check_round_trip(page: Page, base: str, topic: str) -> None:
    """Subscribe, receive a publish made on the server side, and send with an ack."""
    reply = page.evaluate("(t) => harness.listen(t)", topic)
    assert isinstance(reply["epoch"], str) and isinstance(reply["offset"], int)
    published = publish(base, topic, "news", {"title": "hello", "n": 1})
    wait_for(page, "(t) => window.rec.pubs[t].length >= 1", 10_000, arg=topic)
    pubs = record(page)["pubs"][topic]
    assert pubs == [
        {
            "event": "news",
            "data": {"title": "hello", "n": 1},
            "offset": published["offset"],
            "epoch": reply["epoch"],
        }
    ]
    echoed = page.evaluate("() => window.client.send('echo', {ping: [1, 'two', null]})")
    assert echoed == {"ping": [1, "two", None]}
    refused = page.evaluate(
        "() => window.client.send('reject', 1).then(() => 'resolved', (e) => e.code)"
    )
    assert refused == "bad_data"


@pytest.mark.parametrize("setup", list(EXPECTED))
def test_default_order_reaches_best_transport(page: Page, base_url: Any, setup: str) -> None:
    base = base_url(setup)
    open_page(page, base)
    start_client(page, ORDERED)
    rec = wait_first_tick(page)
    info = rec["info"]
    TIMINGS.append(
        {
            "setup": setup,
            "transport": info["transport"],
            "open_ms": rec["openAt"],
            "first_ms": rec["firstTick"],
        }
    )
    assert info["transport"] == EXPECTED[setup], info
    assert rec["transports"] == [EXPECTED[setup]]
    fallbacks = info["stats"]["fallbacks"]
    assert [(f["from"], f["to"]) for f in fallbacks] == [(a, b) for a, b, _ in FALLBACKS[setup]]
    for got, (_, _, why) in zip(fallbacks, FALLBACKS[setup], strict=True):
        assert why in got["reason"], fallbacks
    assert rec["states"] == ["open"]
    assert rec["errors"] == []
    check_round_trip(page, base, fresh_topic("news"))
    assert record(page)["tickGaps"] == []


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
def test_forced_transport_end_to_end(page: Page, app: AppServer, transport: str) -> None:
    open_page(page, app.url)
    start_client(page, {"transports": [transport]})
    rec = wait_first_tick(page)
    assert rec["info"]["transport"] == transport
    assert rec["info"]["stats"]["fallbacks"] == []
    TIMINGS.append(
        {
            "setup": f"direct, only {transport}",
            "transport": transport,
            "open_ms": rec["openAt"],
            "first_ms": rec["firstTick"],
        }
    )
    check_round_trip(page, app.url, fresh_topic(f"only-{transport}"))


QUIET_HEARTBEAT_S = 1.0
QUIET_POLL_WINDOW_S = 2.0
QUIET_IDLE_S = 14.0
"""A short heartbeat and poll window, and an idle time past both liveness limits the client
used to apply on long-poll: heartbeat + 10 s (11 s, from the last frame) and
max(heartbeat, pollWindow) + 10 s (12 s) when only frames count."""


@pytest.fixture(scope="module")
def quiet_app(log_dir: Path) -> Iterator[AppServer]:
    """An app server with no ticker (an idle page) and a short heartbeat and poll window."""
    settings = {"heartbeat": QUIET_HEARTBEAT_S, "poll_window": QUIET_POLL_WINDOW_S}
    with app_server(log_dir, tick_ms=0, settings=settings) as server:
        yield server


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
def test_idle_page_keeps_its_connection(page: Page, quiet_app: AppServer, transport: str) -> None:
    """A page on which nothing happens for many heartbeat periods keeps its session: PINGs
    (WebSocket, SSE) and empty poll answers (long-poll, §6.1) are the heartbeat (§9), so the
    client never declares the connection dead, and a publish after the quiet spell arrives."""
    open_page(page, quiet_app.url)
    start_client(page, {"transports": [transport], "failback": False})
    wait_open(page)
    topic = fresh_topic(f"idle-{transport}")
    page.evaluate("(t) => harness.listen(t)", topic)
    session = page.evaluate("() => window.client.id")
    negotiated = page.evaluate("() => window.client.stats.attempts")
    # The quiet spell is timed by the page's own timer queue, not the test's clock: a timer due
    # QUIET_IDLE_S from now runs after every timer due earlier, the client's liveness checks
    # included, however late a loaded machine runs them.
    page.evaluate("(ms) => new Promise((resolve) => setTimeout(resolve, ms))", QUIET_IDLE_S * 1000)
    rec = record(page)
    stats = rec["info"]["stats"]
    assert rec["states"] == ["open"], (rec["states"], stats["lastClose"], rec["errors"])
    assert stats["reconnects"] == 0
    assert stats["lastClose"] is None
    assert stats["attempts"] == negotiated
    assert page.evaluate("() => window.client.id") == session
    assert rec["errors"] == []
    published = publish(quiet_app.url, topic, "after", {"idle": QUIET_IDLE_S})
    wait_for(page, "(t) => window.rec.pubs[t].length >= 1", 10_000, arg=topic)
    pubs = record(page)["pubs"][topic]
    assert [(p["event"], p["offset"]) for p in pubs] == [("after", published["offset"])]
    assert page.evaluate("() => window.client.send('echo', 'awake')") == "awake"
    assert page.evaluate("() => window.client.id") == session
    page.evaluate("() => window.client.close()")


def test_buffering_proxy_stalls_sse(page: Page, proxies: dict[str, Nginx]) -> None:
    """The b profile really holds SSE back (so reaching long-poll there is not an accident)."""
    base = proxies["b-buffering"].url
    open_page(page, base)
    start_client(page, {"transports": ["sse"], "deadlines": {"sse": 1500}})
    wait_for(page, "() => window.client.stats.fallbacks.length >= 1", 10_000)
    rec = record(page)
    assert rec["firstTick"] is None and rec["openAt"] is None
    assert "sse: no first event within 1500 ms" in rec["info"]["stats"]["fallbacks"][0]["reason"]
    page.evaluate("() => window.client.close()")


def test_remembered_transport_after_reload(page: Page, proxies: dict[str, Nginx]) -> None:
    """After a load that fell back to SSE, a reload starts on SSE without trying WebSocket."""
    base = proxies["a-no-upgrade"].url
    open_page(page, base)
    start_client(page, ORDERED)
    first = wait_open(page)
    assert first["info"]["transport"] == "sse"
    assert len(first["info"]["stats"]["fallbacks"]) == 1
    page.reload()
    page.wait_for_function("window.harnessReady === true", timeout=10_000)
    start_client(page, ORDERED)
    again = wait_first_tick(page)
    assert again["info"]["transport"] == "sse"
    assert again["info"]["stats"]["fallbacks"] == []
    assert "remembered" in (again["info"]["fallbackReason"] or "")
    TIMINGS.append(
        {
            "setup": "a-no-upgrade, remembered",
            "transport": "sse",
            "open_ms": again["openAt"],
            "first_ms": again["firstTick"],
        }
    )


def test_switches_up_when_the_proxy_is_fixed(page: Page, app: AppServer) -> None:
    """On SSE behind a proxy without the upgrade, the client re-probes WebSocket in the
    background; once the proxy forwards the upgrade (nginx reloaded with c-correct), it moves
    to WebSocket without a gap, a duplicate or a state change."""
    with nginx_proxy("a-no-upgrade", app.port) as proxy:
        open_page(page, proxy.url)
        start_client(page, {"failback": {"min": 1000, "max": 2000}, **ORDERED})
        first = wait_first_tick(page)
        assert first["info"]["transport"] == "sse"
        topic = fresh_topic("switch")
        page.evaluate("(t) => harness.listen(t)", topic)
        publish(proxy.url, topic, "before", 1)
        wait_for(page, "(t) => window.rec.pubs[t].length === 1", arg=topic)
        proxy.reload("c-correct")
        wait_for(page, "() => window.client.transport === 'websocket'", 20_000)
        rec = record(page)
        switches = rec["info"]["stats"]["switches"]
        assert [(s["from"], s["to"]) for s in switches] == [("sse", "websocket")]
        assert rec["transports"] == ["sse", "websocket"]
        assert rec["states"] == ["open"]
        publish(proxy.url, topic, "after", 2)
        wait_for(page, "(t) => window.rec.pubs[t].length >= 2", arg=topic)
        assert [p["data"] for p in record(page)["pubs"][topic]] == [1, 2]
        # The ticker (every 20 ms) went on across the switch without a loss or a repeat.
        ticks = record(page)["ticks"]
        wait_for(page, "(n) => window.rec.ticks > n + 2", 10_000, arg=ticks)
        assert record(page)["tickGaps"] == []
        assert page.evaluate("() => window.client.send('echo', 'up')") == "up"
        page.evaluate("() => window.client.close()")


def downlink(request: Request) -> bool:
    """Whether ``request`` is the client's SSE stream or a long-poll GET."""
    return urlsplit(request.url).path in ("/realtime/sse", "/realtime/poll")


@pytest.mark.parametrize("transport", ["sse", "longpoll"])
def test_session_survives_a_proxy_restart(page: Page, app: AppServer, transport: str) -> None:
    """nginx restarted under an open page (the app stays up): the HTTP transports pick up their
    own session again (SSE by Last-Event-ID, long-poll by its cursor, §5.3 and §6.1), so even a
    direct message sent to the connection while the proxy was down arrives."""
    with nginx_proxy("c-correct", app.port) as proxy:
        open_page(page, proxy.url)
        start_client(page, {"transports": [transport]})
        wait_first_tick(page)
        page.evaluate("() => harness.listen('news-proxy-restart')")
        session = page.evaluate("() => window.client.id")
        # Send only once the page has seen its stream or poll cut by the stop.
        with page.expect_event("requestfailed", predicate=downlink, timeout=WAIT_MS):
            proxy.stop()
        assert send_to(app.url, session, "direct", {"while": "proxy down"})
        published = publish(app.url, "news-proxy-restart", "n", 1)
        proxy.start()
        wait_for(page, "() => window.rec.messages.length >= 1", 10_000)
        wait_for(page, "() => window.rec.pubs['news-proxy-restart'].length >= 1", 10_000)
        rec = record(page)
        assert rec["messages"] == [{"event": "direct", "data": {"while": "proxy down"}}]
        assert [p["offset"] for p in rec["pubs"]["news-proxy-restart"]] == [published["offset"]]
        assert page.evaluate("() => window.client.id") == session
        assert rec["info"]["stats"]["reconnects"] == 0
        assert rec["states"] == ["open"]
        assert rec["tickGaps"] == []
        assert page.evaluate("() => window.client.send('echo', 'still here')") == "still here"
        page.evaluate("() => window.client.close()")


@pytest.mark.parametrize(
    ("setup", "transports"),
    [
        ("direct", None),
        ("direct", ["sse"]),
        ("direct", ["longpoll"]),
        ("c-correct", None),
    ],
    ids=["direct-websocket", "direct-sse", "direct-longpoll", "c-correct-websocket"],
)
def test_server_killed_and_restarted(
    page: Page, own_app: AppServer, setup: str, transports: list[str] | None
) -> None:
    """SIGKILL the server under an open page, start it again on the same port: the client
    reconnects by itself, resubscribes (recovered: false, the in-memory history is gone) and
    receives what is published after the restart."""
    with contextlib_proxy(setup, own_app) as base:
        open_page(page, base)
        start_client(page, {"transports": transports} if transports else ORDERED)
        before = wait_first_tick(page)
        transport = before["info"]["transport"]
        assert transport == (transports[0] if transports else "websocket")
        reply = page.evaluate("() => harness.listen('news')")
        publish(base, "news", "before", 1)
        wait_for(page, "() => window.rec.pubs.news.length === 1")

        killed = time.monotonic()
        own_app.kill()
        # Noticed well before the liveness limit (heartbeat + 10 s = 35 s): WebSocket and
        # long-poll see the connection fail; SSE gives up reattaching after 2.5 s + retry.
        wait_for(page, "() => window.client.state === 'reconnecting'", WAIT_MS)
        noticed = time.monotonic()
        own_app.start()
        restarted = time.monotonic()
        wait_for(
            page,
            "() => window.client.state === 'open' && window.rec.recovered.length >= 2",
            30_000,
        )
        RESTARTS.append(
            {
                "setup": f"{setup}, {transport}",
                "noticed_ms": round((noticed - killed) * 1000),
                "back_ms": round((time.monotonic() - restarted) * 1000),
            }
        )
        after = record(page)
        assert after["states"] == ["open", "reconnecting", "open"], after["states"]
        assert after["info"]["transport"] == transport
        assert after["info"]["stats"]["reconnects"] == 1
        assert sorted(after["recovered"], key=lambda r: r["topic"]) == [
            {"topic": "news", "recovered": False},
            {"topic": "tick", "recovered": False},
        ]
        # A publish after the restart: a new epoch, offsets start again at 1, and it arrives.
        published = publish(base, "news", "after", 2)
        wait_for(page, "() => window.rec.pubs.news.length === 2")
        news = record(page)["pubs"]["news"]
        assert [p["event"] for p in news] == ["before", "after"]
        assert news[1]["offset"] == published["offset"]
        assert news[1]["epoch"] != reply["epoch"]
        ticks = record(page)["ticks"]
        wait_for(page, "(n) => window.rec.ticks > n + 2", 10_000, arg=ticks)
        assert record(page)["tickGaps"] == []  # a new epoch after the restart is not a gap
        assert page.evaluate("() => window.client.send('echo', 'back')") == "back"


def contextlib_proxy(setup: str, server: AppServer) -> contextlib.AbstractContextManager[str]:
    """The base URL for ``setup`` in front of ``server`` (nginx started for the test)."""
    if setup == "direct":
        return contextlib.nullcontext(server.url)

    @contextlib.contextmanager
    def proxied() -> Iterator[str]:
        with nginx_proxy(setup, server.port) as proxy:
            yield proxy.url

    return proxied()


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
def test_graceful_shutdown_says_going_away(page: Page, own_app: AppServer, transport: str) -> None:
    """SIGTERM (a deploy, not a crash): every client is told 1001 "going away" (§10.1), so it
    reconnects without waiting for a timeout. The code tells: a client that had to find out by
    itself would close with 1006 (connection lost) or 4000 (liveness), never 1001."""
    open_page(page, own_app.url)
    start_client(page, {"transports": [transport]})
    wait_first_tick(page)
    started = time.monotonic()
    own_app.stop()
    assert own_app.proc is not None and own_app.proc.returncode == 0  # drained, not SIGKILLed
    wait_for(page, "() => window.client.state === 'reconnecting'", WAIT_MS)
    print(f"\n{transport}: SIGTERM -> reconnecting {round((time.monotonic() - started) * 1000)} ms")
    last_close = page.evaluate("() => window.client.stats.lastClose")
    assert last_close["code"] == 1001, last_close


def is_send(response: Response) -> bool:
    """Whether ``response`` answers the client's POST /send."""
    return response.request.method == "POST" and urlsplit(response.url).path == "/realtime/send"


def is_poll(request: Request) -> bool:
    """Whether ``request`` is a long-poll GET."""
    return request.method == "GET" and urlsplit(request.url).path == "/realtime/poll"


SENDS = 20
"""Sequential sends of the long-poll count below; one poll per send (two requests per message,
the reply coming down a poll) would make about as many polls."""


@pytest.mark.parametrize("transport", ["sse", "longpoll"])
def test_send_replies_come_in_the_post_answer(
    page: Page, quiet_app: AppServer, transport: str
) -> None:
    """POST /send asks for its replies (Accept: application/json) and the server gives them in
    its answer (§6.2): send() resolves with the handler's answer, which is in the POST's JSON
    body; on long-poll the sends do not each cost a poll (the quiet app: no ticker, and an
    empty poll answer only every 2 s)."""
    answers: list[Response] = []
    polls: list[Request] = []
    page.on("response", lambda response: answers.append(response) if is_send(response) else None)
    page.on("request", lambda request: polls.append(request) if is_poll(request) else None)
    open_page(page, quiet_app.url)
    start_client(page, {"transports": [transport], "failback": False})
    wait_open(page)

    answers.clear()
    assert page.evaluate("() => window.client.send('echo', {in: 'answer'})") == {"in": "answer"}
    refused = page.evaluate(
        "() => window.client.send('reject', 1).then(() => 'resolved', (e) => e.code)"
    )
    assert refused == "bad_data"
    bodies = []
    for response in answers:  # the two sends', and any PONG's (SSE answers PINGs by POST)
        assert response.request.headers.get("accept") == "application/json"
        assert response.status in (200, 204), response.status
        if response.status == 200:
            assert response.headers["content-type"].startswith("application/json")
            bodies.append(response.json())
    replies = [frame for body in bodies for frame in body["frames"]]
    assert [(f[0], f[2], f[3]) for f in replies if f[2] == "ok"] == [(4, "ok", {"in": "answer"})]
    assert [(f[0], f[2]) for f in replies if f[2] != "ok"] == [(4, "bad_data")]

    if transport == "longpoll":
        before = len(polls)
        got = page.evaluate(
            """async (n) => {
              const out = [];
              for (let i = 0; i < n; i++) out.push(await window.client.send('echo', i));
              return out;
            }""",
            SENDS,
        )
        assert got == list(range(SENDS))
        extra = len(polls) - before
        assert extra <= SENDS // 4, f"{extra} polls for {SENDS} sends"
    rec = record(page)
    assert rec["states"] == ["open"]
    assert rec["errors"] == []
    page.evaluate("() => window.client.close()")
