"""``POST /send`` answering with its replies (docs/protocol.md §6.2, "Replies in the answer").

Spoken by hand against a real Hypercorn (the exact answer, which replies stay downstream, a
repeat answered from the reply memory), then through the library's Python client (a message
costs one request on long-poll, not a POST and a poll); last, a POST the server cancels midway,
with the edge driven by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from transports.client import connect
from transports.server.extension import Realtime
from transports.typing import TransportName

from .apps import make_app
from .secharness import LIVE_DEFAULTS, Wire, live_server

HTTP_TRANSPORTS = pytest.mark.parametrize("transport", ["sse", "longpoll"])

ACCEPT_JSON = {"Accept": "application/json"}


async def answer_of(wire: Wire, *frames: str) -> tuple[int, str, dict[str, str]]:
    """POST ``frames`` asking for the replies: status, body text, headers."""
    async with wire.live.http.post(
        wire.live.url + "/send",
        data=("[" + ",".join(frames) + "]").encode(),
        headers={
            "Content-Type": "application/json",
            "X-Realtime-Session": wire.token,
            **ACCEPT_JSON,
        },
    ) as response:
        return response.status, (await response.read()).decode(), dict(response.headers)


@HTTP_TRANSPORTS
async def test_replies_come_in_the_answer_and_only_there(transport: TransportName) -> None:
    """EVENT and PUBLISH replies are the answer's body, in order, and never also downstream;
    the SUB's reply stays downstream (in order with what it announces)."""
    async with live_server() as live:
        wire = await live.wire(transport)
        status, body, headers = await answer_of(
            wire,
            '[3,1,"echo",{"text":"hi"}]',
            '[5,2,"news",null]',
            '[3,3,"no-such-event",null]',
            '[3,4,"echo","é"]',
        )
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert headers["Cache-Control"] == "no-store"
        assert json.loads(body) == {
            "frames": [
                [4, 1, "ok", {"text": "hi"}],
                [4, 3, "unknown_event", json.loads(body)["frames"][1][3]],
                [4, 4, "ok", "é"],
            ]
        }
        assert body.startswith('{"frames":[[4,1,"ok",{"text":"hi"}],[4,3,"unknown_event",')
        assert (await wire.reply(2))[:3] == [4, 2, "ok"]  # the SUB's reply: downstream
        # A later message without Accept is answered downstream: everything before it was
        # too, so had the answered replies also travelled there they would be in ``seen``.
        assert await wire.send('[3,5,"echo","last"]') == 204
        assert await wire.reply(5) == [4, 5, "ok", "last"]
        downstream = [f[1] for f in wire.seen if isinstance(f, list) and f[0] == 4]
        assert downstream == [2, 5]


@HTTP_TRANSPORTS
async def test_a_repeat_is_answered_from_memory(transport: TransportName) -> None:
    """A POST sent again (its answer lost) gets the same replies, and the handler ran once."""
    async with live_server() as live:
        wire = await live.wire(transport, client="c" * 22)
        frame = '[3,7,"count",{"key":"once"}]'
        first = await answer_of(wire, frame)
        again = await answer_of(wire, frame)
        assert first[0] == again[0] == 200
        assert json.loads(first[1]) == json.loads(again[1]) == {"frames": [[4, 7, "ok", 1]]}
        assert live.applied["once"] == 1


@HTTP_TRANSPORTS
async def test_without_accept_the_answer_is_204_and_replies_go_downstream(
    transport: TransportName,
) -> None:
    """Clients that do not ask keep the old contract."""
    async with live_server() as live:
        wire = await live.wire(transport)
        status, response = await wire.post(b'[[3,1,"echo","x"]]')
        assert status == 204
        assert response.content_length in (None, 0)
        assert await wire.reply(1) == [4, 1, "ok", "x"]


@HTTP_TRANSPORTS
async def test_refused_batch_answers_the_error_not_replies(transport: TransportName) -> None:
    """A bad frame still refuses the whole batch with its JSON error, Accept or not."""
    async with live_server() as live:
        wire = await live.wire(transport)
        status, body, _ = await answer_of(wire, '[3,1,"echo","x"]', "[3]")
        assert status == 400
        assert json.loads(body)["error"] == "bad_frame"
        await wire.echo(2)


def counting(app: Any) -> Counter[str]:
    """Count the HTTP requests ``app`` serves, by method and last path segment."""
    counts: Counter[str] = Counter()
    inner: Callable[..., Awaitable[None]] = app.asgi_app

    async def count(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            counts[scope["method"] + " " + scope["path"].rsplit("/", 1)[-1]] += 1
        await inner(scope, receive, send)

    app.asgi_app = count
    return counts


@HTTP_TRANSPORTS
async def test_an_abandoned_post_sent_again_gets_its_reply(transport: TransportName) -> None:
    """The client gives up on a POST while its handler runs, and sends it again (409 while
    the first is still applied): the repeat's answer has the reply, the handler ran once."""
    async with live_server() as live:
        wire = await live.wire(transport, client="d" * 22)
        frame = '[3,1,"count",{"key":"k","delay":0.5}]'
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answer_of(wire, frame), 0.15)
        statuses = []
        for _ in range(50):
            status, body, _ = await answer_of(wire, frame)
            statuses.append(status)
            if status != 409:
                break
            await asyncio.sleep(0.05)
        assert statuses[-1] == 200, statuses
        assert json.loads(body) == {"frames": [[4, 1, "ok", 1]]}
        assert live.applied["k"] == 1
        await wire.echo(2)


async def test_client_message_costs_one_request() -> None:
    """The Python client's sends resolve from the POST answers: on long-poll, 30 sends cost
    30 POSTs and no poll (each reply used to end the held poll, and the client polled again)."""
    app = make_app(**{**LIVE_DEFAULTS, "poll_window": 20.0, "session_ttl": 30.0})
    counts = counting(app)
    async with live_server(app) as live:
        client = await connect(live.url, transports=["longpoll"], timeout=10)
        try:
            before = counts.copy()
            for n in range(30):
                assert await client.send("echo", n) == n
            posts = counts["POST send"] - before["POST send"]
            polls = counts["GET poll"] - before["GET poll"]
            assert posts == 30
            assert polls <= 2, f"{polls} polls for 30 sends: replies came downstream"
        finally:
            await client.close()


async def _longpoll_session(client: Any) -> tuple[str, dict[str, str], int]:
    """Negotiate a long-poll session with Quart's test ``client`` and make its first poll:
    the token, the header that carries it, and the cursor after HELLO."""
    negotiated = await client.post("/realtime/negotiate", json={"transports": ["longpoll"]})
    token = (await negotiated.get_json())["token"]
    session = {"X-Realtime-Session": token}
    first = await client.get("/realtime/poll?cursor=0", headers=session)
    return token, session, (await first.get_json())["cursor"]


def _one_post(
    body: bytes,
) -> tuple[
    Callable[[], Awaitable[dict[str, Any]]],
    Callable[[dict[str, Any]], Awaitable[None]],
    list[dict[str, Any]],
]:
    """ASGI ``receive`` and ``send`` of one POST with ``body`` (after it the client says
    nothing more), and the list ``send`` fills."""
    events: list[dict[str, Any]] = [{"type": "http.request", "body": body}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if events:
            return events.pop()
        await asyncio.Event().wait()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return receive, send, sent


def _post_scope(token: str) -> dict[str, Any]:
    """The ASGI scope of a ``POST /send`` asking for its replies (the edge driven by hand)."""
    headers = [
        (b"host", b"localhost"),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json"),
        (b"x-realtime-session", token.encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/realtime/send",
        "raw_path": b"/realtime/send",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def test_replies_of_a_cut_off_post_go_downstream() -> None:
    """A server that cancels a request whose client went away (Hypercorn does not, so the
    edge is driven by hand here), in the middle of a batch of two: the POST ends with no
    answer; the first message's REPLY, already gathered for the answer, and the second's, whose
    handler still finishes, are queued downstream instead: the next poll has both, once each,
    in order. Each handler ran once."""
    app = make_app(poll_window=2.0)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        token, session, cursor = await _longpoll_session(client)

        body = b'[[3,1,"count",{"key":"j"}],[3,2,"count",{"key":"k","delay":0.3}]]'
        receive, send, sent = _one_post(body)
        scope = _post_scope(token)
        post = asyncio.create_task(app.asgi_app(scope, receive, send))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)  # the first is answered, the second's handler is running
        post.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await post
        assert sent == [], "the cut-off POST was answered"

        replies: list[Any] = []
        for _ in range(3):  # the first REPLY ends a held poll at once, the second comes later
            polled = await client.get(f"/realtime/poll?cursor={cursor}", headers=session)
            answer = await polled.get_json()
            cursor = answer["cursor"]
            replies += [f for f in answer["frames"] if f[0] != 0]  # a HELLO opens cursor 0
            if len(replies) >= 2:
                break
        assert replies == [[4, 1, "ok", 1], [4, 2, "ok", 1]]
        assert (app.config["APPLIED"]["j"], app.config["APPLIED"]["k"]) == (1, 1)


async def test_a_batch_cancelled_before_it_waits_still_sends_the_replies_it_made() -> None:
    """A handler in the middle of a batch is cancelled at its first await, before anything
    waited (it awaits a task that was cancelled): the POST ends with no answer, and the reply
    of the message before it, already applied, comes downstream. On Python 3.12 and later the
    batch runs in an eagerly started task that is already done (cancelled) when the POST looks
    at it; the replies must not be lost there either."""
    app = make_app(poll_window=0.5)
    rt: Realtime = app.extensions["transports"]
    loop = asyncio.get_running_loop()

    @rt.on("cancelled")
    async def cancelled(channel: Any, data: Any) -> Any:
        gone: asyncio.Future[None] = loop.create_future()
        gone.cancel()
        await gone
        return "never"

    async with app.test_app() as test_app:
        client = test_app.test_client()
        token, session, cursor = await _longpoll_session(client)

        body = b'[[3,1,"echo","a"],[3,2,"cancelled",null],[3,3,"echo","b"]]'
        receive, send, sent = _one_post(body)
        with contextlib.suppress(asyncio.CancelledError):
            await app.asgi_app(_post_scope(token), receive, send)  # type: ignore[arg-type]
        polled = await client.get(f"/realtime/poll?cursor={cursor}", headers=session)
        frames = [f for f in (await polled.get_json())["frames"] if f[0] != 0]
        answered = [f for m in sent if m.get("body") for f in json.loads(m["body"])["frames"]]
        assert [4, 1, "ok", "a"] in frames + answered, (sent, frames)


async def test_an_apps_task_factory_sees_the_task_that_runs_a_batch() -> None:
    """An app that installs a task factory (tracing, monitoring) sees the task that runs a
    POST's handlers on every Python (on 3.12 and later the batch would otherwise start eagerly,
    past the factory)."""
    loop = asyncio.get_running_loop()
    made: list[asyncio.Task[Any]] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    app = make_app(poll_window=0.5)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        token, session, _ = await _longpoll_session(client)
        loop.set_task_factory(factory)
        try:
            answer = await client.post(
                "/realtime/send",
                data=b'[[3,1,"echo","a"]]',
                headers={
                    **session,
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                },
            )
            assert (await answer.get_json())["frames"] == [[4, 1, "ok", "a"]]
        finally:
            loop.set_task_factory(None)
    assert "transports-apply" in [task.get_name() for task in made]
