"""Security catalogue, flow control (groups H5, L and O).

Out-of-order acknowledgements (H5), slow consumers and floods (L1-L5), ping/pong floods and
unsolicited pongs (O1, O2), on every transport where the case applies, against a real Hypercorn
with a control client connected throughout; afterwards sessions, topics and library tasks must
be back to their baseline (:func:`tests.secharness.live_server`). The lost negotiation (O3) is
in tests/test_security_access.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from transports.typing import TransportName

from .conftest import TRANSPORTS, eventually, library_tasks
from .rawws import PING, build_frame
from .secharness import Live, live_server
from .test_delivery import stalled_consumer


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    async with live_server() as server:
        yield server


# --- H5: acknowledgements out of order -------------------------------------------------------


async def test_h5_sse_acks_out_of_order(live: Live) -> None:
    """H5 (acks arriving out of order), SSE: PONG acknowledgements that go backwards, repeat,
    or name a sequence number never sent are harmless: the stream goes on with every frame
    once, in order, with consecutive ids."""
    wire = await live.wire("sse")
    await wire.send('[5,1,"h5",null]')
    await wire.reply(1)
    for n in range(5):
        await live.realtime.publish("h5", "n", n)
    assert [(await wire.recv())[3] for _ in range(5)] == list(range(5))
    last = wire.sse_ids[-1]
    for ack in (last, 2, last, 99_999, 0):
        assert await wire.send(json.dumps([8, ack])) == 204
    for n in range(5, 10):
        await live.realtime.publish("h5", "n", n)
    assert [(await wire.recv())[3] for _ in range(5)] == list(range(5, 10))
    assert wire.sse_ids == list(range(1, len(wire.sse_ids) + 1))
    await wire.echo(2)


async def test_h5_longpoll_cursor_going_back(live: Live) -> None:
    """H5, long-poll: a cursor behind what the client already acknowledged asks for frames the
    server has released: it answers ``[9,4010,"resync"]`` (resume by topic positions), never a
    silent gap or a partial replay; the session is then gone."""
    info = await live.negotiate(["longpoll"])
    headers = {"X-Realtime-Session": info["token"], "Content-Type": "application/json"}

    async def poll(cursor: int) -> tuple[int, Any]:
        async with live.http.get(live.url + f"/poll?cursor={cursor}", headers=headers) as r:
            return r.status, await r.json()

    _, first = await poll(0)
    async with live.http.post(live.url + "/send", data=b'[[5,1,"h5lp",null]]', headers=headers):
        pass
    _, second = await poll(first["cursor"])
    for n in range(5):
        await live.realtime.publish("h5lp", "n", n)
    _, third = await poll(second["cursor"])
    assert [f[3] for f in third["frames"]] == list(range(5))
    session = live.engine.sessions.by_sid[info["token"].split(".")[2]]
    held = asyncio.create_task(poll(third["cursor"]))  # acknowledges everything so far
    await eventually(lambda: session.attached)  # the poll is held
    await live.realtime.publish("h5lp", "n", 5)
    status, fourth = await asyncio.wait_for(held, 10)
    assert [f[3] for f in fourth["frames"]] == [5]
    status, back = await poll(third["cursor"] - 3)
    assert status == 200
    assert back["frames"] == [[9, 4010, "resync"]]
    # The session is then gone, at once: not by expiry (the clock is held still).
    await live.baseline.freed_now()
    status, _ = await poll(0)
    assert status == 404


# --- L: slow consumers and floods ------------------------------------------------------------


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_l1_l2_stalled_reader_closed_4008(transport: TransportName) -> None:
    """L1 (a WebSocket client stops reading) and L2 (an SSE client stops reading): once its
    outbox passes the limit, it is closed as a slow consumer (4008) and released from its
    topics; the publisher never waits for it and the control client is unaffected. (L4, other
    subscribers' latency beside a stalled one, is measured in tests/test_delivery.py; the
    ``write_timeout`` path, too.)

    ``write_timeout`` is set far beyond the bound each publication gets: a publisher that
    waited for the stalled reader would wait until that timeout released it, and so miss the
    bound however fast or slow the machine is."""
    async with live_server(outbox_max_bytes=256 * 1024, write_timeout=120.0) as live:
        stalled = await stalled_consumer(live.base, transport, "l1")
        try:
            await eventually(lambda: live.engine.hub.subscribers("l1") == 1)
            for _ in range(3000):
                if live.engine.stats["slow_consumers"] >= 1:
                    break
                publication = live.realtime.publish("l1", "tick", "x" * 8000)
                try:
                    await asyncio.wait_for(publication, 30)
                except TimeoutError:
                    raise AssertionError("the publisher waited for the slow reader") from None
                await asyncio.sleep(0.002)
            assert live.engine.stats["slow_consumers"] == 1
            await eventually(lambda: any(code == 4008 for _, code, _ in live.disconnects))
            await eventually(lambda: live.engine.hub.subscribers("l1") == 0)
            await live.check_alive()
        finally:
            stalled.close()


async def test_l3_rare_poller_closed_4008() -> None:
    """L3: a long-poll client that polls rarely while much is published is closed with 4008
    when its unacknowledged frames pass the outbox bound; its next poll gets what was kept,
    ending with ``[9,4008,...]``, and the session is then gone; what it holds meanwhile stays
    bounded."""
    async with live_server(outbox_max_frames=50, session_ttl=3.0) as live:
        info = await live.negotiate(["longpoll"])
        headers = {"X-Realtime-Session": info["token"], "Content-Type": "application/json"}

        async def poll(cursor: int) -> tuple[int, Any]:
            async with live.http.get(live.url + f"/poll?cursor={cursor}", headers=headers) as r:
                return r.status, await r.json()

        _, body = await poll(0)
        async with live.http.post(live.url + "/send", data=b'[[5,1,"l3",null]]', headers=headers):
            pass
        _, body = await poll(body["cursor"])
        witness = await live.wire("websocket")
        await witness.send('[5,1,"l3-done",null]')
        await witness.reply(1)
        session = live.engine.sessions.by_sid[info["token"].split(".")[2]]
        for n in range(500):  # nobody polls meanwhile
            await live.realtime.publish("l3", "n", n)
            assert session.outbox_size <= 51
        # Publications fan out in order: once the witness has this one, all 500 went out.
        await live.realtime.publish("l3-done", "done", None)
        assert (await witness.recv())[:3] == [1, "l3-done", "done"]
        await witness.close()
        assert session.outbox_size <= 51
        assert session.close_code == 4008
        status, body = await poll(body["cursor"])
        assert status == 200
        frames = body["frames"]
        assert frames[-1][:2] == [9, 4008]
        assert [f[3] for f in frames[:-1]] == list(range(len(frames) - 1))
        assert len(frames) <= 51
        assert live.engine.hub.subscribers("l3") == 0
        # The session is then gone, at once: not by expiry (the clock is held still).
        await live.baseline.freed_now()
        status, _ = await poll(0)
        assert status == 404


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_l5_flood_rate_limited(transport: TransportName) -> None:
    """L5: a client sending faster than its rate (here 50/s, burst 20) is closed with 4029 on
    WebSocket; on POST the batch that passes the budget is refused with ``429 rate_limited`` and
    a ``Retry-After``, nothing of it applied, and the session works again after the wait."""
    async with live_server(rate_limit=50, rate_burst=20) as live:
        wire = await live.wire(transport)
        if transport == "websocket":
            loop = asyncio.get_running_loop()
            started = loop.time()
            for n in range(100):
                if wire.code is not None:
                    break
                await wire.send(f'[3,{n + 10},"count",{{"key":"l5"}}]')
            assert await wire.closed(timeout=10) == 4029
            # The burst, plus what the budget refilled (50/s) while the frames went in.
            assert live.applied["l5"] <= 20 + 50 * (loop.time() - started) + 1
            assert live.applied["l5"] < 100
        else:
            body = ",".join(f'[3,{n + 10},"count",{{"key":"l5"}}]' for n in range(50))
            status, response = await wire.post(("[" + body + "]").encode())
            assert status == 429
            assert (await response.json())["error"] == "rate_limited"
            wait = int(response.headers["Retry-After"])
            assert wait >= 1
            assert live.applied["l5"] == 0
            await asyncio.sleep(wait)
            await wire.echo(1, "after the wait")
        await live.check_alive()


async def test_l5_unread_websocket_input_pushes_back() -> None:
    """L5 (WebSocket backlog): a client whose messages pile up faster than its handlers run is
    not buffered without bound: the library reads a message only when it is ready to apply
    it, and the ASGI server's receive queue is bounded, so TCP pushes back on the client.
    Every message is still applied once, in order, and the process stays alive."""
    async with live_server(rate_limit=None) as live:
        wire = await live.wire("websocket")
        frames = [f'[3,{n + 10},"count",{{"key":"l5b{n}","delay":0.005}}]' for n in range(200)]
        await wire.send(*frames)
        replies = [await wire.recv() for _ in range(200)]
        assert [reply[1] for reply in replies] == list(range(10, 210))
        assert all(live.applied[f"l5b{n}"] == 1 for n in range(200))
        await live.check_alive()


# --- O: protocol sanity ----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_o1_ping_pong_flood_tasks_constant(transport: TransportName) -> None:
    """O1: 3000 PINGs and 3000 PONGs from one client (and 2000 WebSocket-level pings) create
    no task: the library's tasks stay at the baseline plus the connection's own (WebSocket:
    reader and writer; SSE/long-poll: none while idle, one while a POST's frames are applied),
    the python-engineio CVE-2026-48802 class; every PING is answered."""
    async with live_server(rate_limit=None, outbox_max_frames=20_000) as live:
        wire = await live.wire(transport)
        own = len(library_tasks()) - live.baseline.tasks
        assert own <= 2
        most = 0

        async def count_pongs(expected: int) -> None:
            nonlocal most
            pongs = 0
            while pongs < expected:
                frame = await wire.recv(pings=True)
                pongs += frame == [8]
                most = max(most, len(library_tasks()))

        counting = asyncio.create_task(count_pongs(3000))
        for _ in range(60):  # batches of 100: the most one POST may carry
            await wire.send(*(["[7]", "[8]"] * 50))
            most = max(most, len(library_tasks()))
        await asyncio.wait_for(counting, 30)
        busy = own if transport == "websocket" else 1  # HTTP: the task applying one POST
        assert most <= live.baseline.tasks + busy
        if transport == "websocket":
            ws = await live.raw_ws()
            await ws.read_text()
            await ws.send(b"".join(build_frame(PING, b"p") for _ in range(2000)))
            answered = 0
            while answered < 2000:
                frame = await ws.read_frame()
                answered += frame.opcode == 0xA
                most = max(most, len(library_tasks()))
            assert most <= live.baseline.tasks + 2 * own
            await ws.aclose()
        await wire.echo(1)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_o2_unsolicited_pong_ignored(live: Live, transport: TransportName) -> None:
    """O2: PONG frames before any PING (``[8]``, and ``[8, seq]``) are ignored: no reply, no
    close; the connection keeps working."""
    wire = await live.wire(transport)
    await wire.send("[8]", "[8,0]", "[8,3]")
    await wire.send('[3,1,"echo","after pong"]')
    frame = await wire.recv(pings=True)
    assert frame == [4, 1, "ok", "after pong"]
    assert wire.code is None
