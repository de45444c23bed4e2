"""How the edge reads a POST body from ASGI events (``read_asgi_body``): whole at once, in
pieces, late, too slowly, too big, or cut off by the client, with a ``receive`` that is a
coroutine (Hypercorn's queue, uvicorn) and one that is a plain awaitable (granian's)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest

from transports.protocol.errors import PayloadTooBig, Refused
from transports.server.edge import ClientGone, read_asgi_body

Event = MutableMapping[str, Any]
HEADERS = {"content-type": "application/json"}


def queue_receive(queue: asyncio.Queue[Event]) -> Callable[[], Awaitable[Event]]:
    return queue.get  # Hypercorn hands the app exactly this


def future_receive(queue: asyncio.Queue[Event]) -> Callable[[], Awaitable[Event]]:
    """A receive that returns a future, not a coroutine (as a server written in Rust does)."""

    def receive() -> Awaitable[Event]:
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(queue.get())
        task.add_done_callback(lambda done: future.set_result(done.result()))
        return future

    return receive


RECEIVES = [queue_receive, future_receive]


def piece(body: bytes, more: bool = False) -> Event:
    return {"type": "http.request", "body": body, "more_body": more}


@pytest.mark.parametrize("make", RECEIVES)
async def test_a_body_already_there_is_read_whole(make: Any) -> None:
    queue: asyncio.Queue[Event] = asyncio.Queue()
    queue.put_nowait(piece(b'[[3,1,"echo",1]]'))
    assert await read_asgi_body(make(queue), HEADERS, 1000, 5) == b'[[3,1,"echo",1]]'


@pytest.mark.parametrize("make", RECEIVES)
async def test_a_body_that_arrives_later_and_in_pieces_is_read_whole(make: Any) -> None:
    queue: asyncio.Queue[Event] = asyncio.Queue()
    reading = asyncio.ensure_future(read_asgi_body(make(queue), HEADERS, 1000, 5))
    await asyncio.sleep(0.05)
    assert not reading.done()
    queue.put_nowait(piece(b"[[3,1,", more=True))
    await asyncio.sleep(0.05)
    queue.put_nowait(piece(b'"echo",1]]'))
    assert await asyncio.wait_for(reading, 5) == b'[[3,1,"echo",1]]'


@pytest.mark.parametrize("make", RECEIVES)
async def test_a_first_piece_already_there_then_the_rest_later(make: Any) -> None:
    queue: asyncio.Queue[Event] = asyncio.Queue()
    queue.put_nowait(piece(b"[[3,1,", more=True))
    reading = asyncio.ensure_future(read_asgi_body(make(queue), HEADERS, 1000, 5))
    await asyncio.sleep(0.05)
    queue.put_nowait(piece(b'"echo",1]]'))
    assert await asyncio.wait_for(reading, 5) == b'[[3,1,"echo",1]]'


@pytest.mark.parametrize("make", RECEIVES)
@pytest.mark.parametrize("first_there", [False, True])
async def test_a_body_that_trickles_in_too_slowly_is_refused_in_time(
    make: Any, first_there: bool
) -> None:
    queue: asyncio.Queue[Event] = asyncio.Queue()
    if first_there:
        queue.put_nowait(piece(b"[[3,", more=True))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Refused) as refused:
        await asyncio.wait_for(read_asgi_body(make(queue), HEADERS, 1000, 0.3), 5)
    assert refused.value.code == "request_timeout"
    assert 0.25 <= loop.time() - started < 3


@pytest.mark.parametrize("make", RECEIVES)
@pytest.mark.parametrize("late", [False, True])
async def test_a_body_too_big_is_refused_whole_or_in_pieces(make: Any, late: bool) -> None:
    queue: asyncio.Queue[Event] = asyncio.Queue()
    events = [piece(b"x" * 600, more=True), piece(b"x" * 600)] if late else [piece(b"x" * 1200)]
    for event in events:
        queue.put_nowait(event)
    with pytest.raises(PayloadTooBig):
        await read_asgi_body(make(queue), HEADERS, 1000, 5)
    with pytest.raises(PayloadTooBig):  # said by Content-Length, before any byte is read
        await read_asgi_body(make(asyncio.Queue()), {"content-length": "1001"}, 1000, 5)


@pytest.mark.parametrize("make", RECEIVES)
@pytest.mark.parametrize("first_there", [False, True])
async def test_a_client_that_leaves_midway_ends_the_read(make: Any, first_there: bool) -> None:
    queue: asyncio.Queue[Event] = asyncio.Queue()
    if first_there:
        queue.put_nowait(piece(b"[[3,", more=True))
    reading = asyncio.ensure_future(read_asgi_body(make(queue), HEADERS, 1000, 5))
    await asyncio.sleep(0.05)
    queue.put_nowait({"type": "http.disconnect"})
    with pytest.raises(ClientGone):
        await asyncio.wait_for(reading, 5)


async def test_a_read_cancelled_while_it_waits_is_cancelled_inside_the_servers_receive() -> None:
    """The request's task is cancelled while the body has not come (a server stopping): the
    cancellation is raised inside the server's own ``receive``, as a plain ``await`` of it
    would, so the server's clean-up there runs at once; the next event stays in its queue."""
    queue: asyncio.Queue[Event] = asyncio.Queue()
    seen: list[str] = []

    async def receive() -> Event:
        try:
            return await queue.get()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    reading = asyncio.ensure_future(read_asgi_body(receive, HEADERS, 1000, 5))
    await asyncio.sleep(0.05)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert seen == ["cancelled"]
    queue.put_nowait(piece(b"after"))
    assert (await asyncio.wait_for(queue.get(), 1))["body"] == b"after"


async def test_both_framing_headers_are_refused() -> None:
    queue: asyncio.Queue[Event] = asyncio.Queue()
    headers = {"content-length": "5", "transfer-encoding": "chunked"}
    with pytest.raises(Refused) as refused:
        await read_asgi_body(queue.get, headers, 1000, 5)
    assert refused.value.code == "bad_request"


async def test_a_receive_that_yields_to_the_loop_before_it_answers() -> None:
    """A server's receive that lets the loop run a few turns first (``asyncio.sleep(0)``
    yields nothing to wait on) still delivers the body, read on from where it paused."""
    queue: asyncio.Queue[Event] = asyncio.Queue()

    async def receive() -> Event:
        while queue.empty():
            await asyncio.sleep(0)
        return queue.get_nowait()

    reading = asyncio.ensure_future(read_asgi_body(receive, HEADERS, 1000, 5))
    for _ in range(5):
        await asyncio.sleep(0)
    queue.put_nowait(piece(b'[[3,1,"echo",1]]'))
    assert await asyncio.wait_for(reading, 5) == b'[[3,1,"echo",1]]'


@pytest.mark.parametrize("wait_first", [False, True])
async def test_an_error_in_the_servers_receive_reaches_the_reader(wait_first: bool) -> None:
    class Broken(Exception):
        pass

    async def receive() -> Event:
        if wait_first:
            await asyncio.sleep(0.01)
        raise Broken

    with pytest.raises(Broken):
        await read_asgi_body(receive, HEADERS, 1000, 5)
