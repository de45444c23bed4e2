"""Presence and direct messages, through a real server: in-process, on Hypercorn with the memory
backplane, and on Hypercorn with a real Redis, on every transport (docs/presence.md).

Several processes on one Redis are tested at the end: a member on one process is seen from the
other, a killed process's members leave within ``presence_timeout``, and ``send``/``send_to``
reach connections on the other process.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from transports.client import Client, connect
from transports.exceptions import ReplyError
from transports.protocol.types import TransportName

from .conftest import Server, eventually
from .redis_server import RedisServer
from .scaleout import AppProcess, stop

TRANSPORTS: list[TransportName] = ["websocket", "sse", "longpoll"]

PRESENCE: dict[str, Any] = {
    "presence": {"room:*": {}, "stadium:*": {"events": False}},
    "presence_grace": 3.0,  # above the reconnect delay the server suggests (retry, 1 s)
}


def recorder(client: Client) -> list[tuple[str, str, str]]:
    """Every join and leave ``client`` reports, as ``(event, topic, member id)``."""
    seen: list[tuple[str, str, str]] = []
    client.on("join", lambda topic, member: seen.append(("join", topic, member["id"])))
    client.on("leave", lambda topic, member: seen.append(("leave", topic, member["id"])))
    return seen


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_members_join_and_leave_live(
    serve: Callable[..., Any], transport: TransportName
) -> None:
    server: Server = await serve(**PRESENCE)
    alice = await server.client(transport, token="alice")
    seen = recorder(alice)
    await alice.subscribe("room:1", presence=True)
    assert alice.members("room:1") == [{"id": alice.public_id, "info": {"name": "alice"}}]
    bob = await server.client(transport, token="bob")
    await bob.subscribe("room:1", presence=True)
    await eventually(lambda: ("join", "room:1", bob.public_id) in seen)
    assert {m["id"] for m in bob.members("room:1")} == {alice.public_id, bob.public_id}
    answer = await alice.presence("room:1")
    assert answer["count"] == 2 and answer["truncated"] is False
    assert {m["info"]["name"] for m in answer["members"]} == {"alice", "bob"}
    assert await server.realtime.presence_count("room:1") == 2
    assert len(await server.realtime.presence("room:1")) == 2
    bob_id = bob.public_id or ""
    await bob.close()  # a goodbye: the leave is not held back by the grace period
    await eventually(lambda: ("leave", "room:1", bob_id) in seen)
    assert alice.members("room:1") == [{"id": alice.public_id, "info": {"name": "alice"}}]
    assert seen.count(("join", "room:1", bob_id)) == 1
    assert seen.count(("leave", "room:1", bob_id)) == 1
    assert await server.realtime.presence_count("room:1") == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unsubscribe_leaves_and_a_reconnect_is_not_a_leave(
    serve: Callable[..., Any], transport: TransportName
) -> None:
    server: Server = await serve(**PRESENCE)
    watcher = await server.client("websocket", token="watcher")
    seen = recorder(watcher)
    await watcher.subscribe("room:2", presence=True)
    mover = await server.client(transport, token="mover", backoff=(0.05, 0.1))
    await mover.subscribe("room:2", presence=True)
    await eventually(lambda: ("join", "room:2", mover.public_id) in seen)
    first_id = mover.public_id
    # The connection drops (no goodbye) and the client comes back on a new session.
    await mover.force_reconnect()
    await eventually(lambda: mover.stats["reconnects"] >= 1 and mover.state == "open")
    assert mover.public_id == first_id
    await asyncio.sleep(PRESENCE["presence_grace"] + 0.5)  # past the grace period
    assert [e for e in seen if e[2] == first_id] == [("join", "room:2", first_id)]
    assert await server.realtime.presence_count("room:2") == 2
    await mover.unsubscribe("room:2")
    await eventually(lambda: ("leave", "room:2", first_id) in seen)
    assert await server.realtime.presence_count("room:2") == 1


async def test_a_dropped_connection_leaves_after_the_grace_period(
    serve: Callable[..., Any],
) -> None:
    server: Server = await serve(**PRESENCE)
    watcher = await server.client("websocket", token="watcher")
    seen = recorder(watcher)
    await watcher.subscribe("room:3", presence=True)
    lost = await server.client("websocket", token="lost")
    lost._reconnect_delay = lambda attempt, retry_after=0.0: 60.0  # type: ignore[method-assign]
    await lost.subscribe("room:3", presence=True)
    await eventually(lambda: ("join", "room:3", lost.public_id) in seen)
    lost_id = lost.public_id
    dropped = time.monotonic()
    await lost.force_reconnect()  # and it stays away (a minute before it tries again)
    await eventually(lambda: ("leave", "room:3", lost_id) in seen, timeout=10)
    assert time.monotonic() - dropped >= PRESENCE["presence_grace"] * 0.9


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_presence_refusals(serve: Callable[..., Any], transport: TransportName) -> None:
    server: Server = await serve(**PRESENCE)
    client = await server.client(transport, token="carol")
    errors: list[BaseException] = []
    client.on("error", errors.append)
    with pytest.raises(ReplyError) as disabled:
        await client.presence("news")
    assert disabled.value.code == "presence_disabled"
    with pytest.raises(ReplyError) as hidden:
        await client.presence("room:hidden")
    assert hidden.value.code == "forbidden"
    # Subscribing with presence to a topic without it: messages still flow, the error is told.
    await client.subscribe("news", presence=True)
    await eventually(lambda: any(getattr(e, "code", "") == "presence_disabled" for e in errors))
    assert client.members("news") == []
    await server.realtime.publish("news", "n", 1)
    message = await client.next_message(5)
    assert (message.topic, message.data) == ("news", 1)
    with pytest.raises(ValueError, match="no presence"):
        await server.realtime.presence("news")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_large_topic_counts_without_events_and_lists_capped(
    serve: Callable[..., Any], transport: TransportName
) -> None:
    server: Server = await serve(**PRESENCE, presence_max_members=2)
    watcher = await server.client(transport, token="w")
    seen = recorder(watcher)
    await watcher.subscribe("stadium:1", presence=True)
    others = [await server.client("websocket", token=f"fan{i}") for i in range(3)]
    for other in others:
        await other.subscribe("stadium:1")
    assert [m["id"] for m in watcher.members("stadium:1")] == [watcher.public_id]
    answer = await watcher.presence("stadium:1")
    assert answer["count"] == 4 and len(answer["members"]) == 2 and answer["truncated"] is True
    assert await server.realtime.presence_count("stadium:1") == 4
    await others[0].close()
    for _ in range(50):
        if await server.realtime.presence_count("stadium:1") == 3:
            break
        await asyncio.sleep(0.1)
    assert await server.realtime.presence_count("stadium:1") == 3
    assert seen == []  # events are off for stadium:*


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_send_and_send_to_on_one_process(
    serve: Callable[..., Any], transport: TransportName
) -> None:
    server: Server = await serve(**PRESENCE)
    one = await server.client(transport, token="dana")
    two = await server.client("websocket", token="dana")
    other = await server.client("websocket", token="erin")
    assert await server.realtime.send(one.public_id, "hi", {"n": 1}) is True
    message = await one.next_message(5)
    assert (message.event, message.data, message.topic) == ("hi", {"n": 1}, None)
    assert await server.realtime.send("no-such-connection", "hi") is False
    reached = 0
    for _ in range(50):  # the directory is written when a connection opens
        reached = await server.realtime.send_to({"user": "dana"}, "all", 2)
        if reached == 2:
            break
        await one.next_message(5)
        await two.next_message(5)
        await asyncio.sleep(0.05)
    assert reached == 2
    assert (await one.next_message(5)).data == 2 and (await two.next_message(5)).data == 2
    assert await server.realtime.send_to({"user": "nobody"}, "all", 3) == 0
    with pytest.raises(asyncio.TimeoutError):
        await other.next_message(0.3)


# --- several processes on one Redis ---------------------------------------------------------


@pytest.fixture
def processes(session_redis: RedisServer) -> Any:
    prefix = "p" + secrets.token_hex(4)
    secret = secrets.token_hex(16)
    env = {
        "TRANSPORTS_PRESENCE": "room:*",
        "TRANSPORTS_PRESENCE_TIMEOUT": "2",
        "TRANSPORTS_PRESENCE_GRACE": "1",
    }
    started = [AppProcess(session_redis.url, prefix, secret, env=env) for _ in range(2)]
    try:
        yield started
    finally:
        for process in started:
            process.stop()


async def post(url: str, body: Any) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body) as answer:
            assert answer.status == 200, await answer.text()
            return await answer.json()


async def get(url: str) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as answer:
            assert answer.status == 200, await answer.text()
            return await answer.json()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_presence_and_direct_messages_across_processes(
    processes: list[AppProcess], transport: TransportName
) -> None:
    a, b = processes
    here = await connect(a.url + "/realtime", transports=[transport], token="ann")
    there = await connect(b.url + "/realtime", transports=[transport], token="ben")
    also = await connect(b.url + "/realtime", transports=["websocket"], token="ann")
    try:
        seen = recorder(here)
        await here.subscribe("room:x", presence=True)
        joined = time.monotonic()
        await there.subscribe("room:x", presence=True)
        await eventually(lambda: ("join", "room:x", there.public_id) in seen)
        assert time.monotonic() - joined < 5  # within a second, give or take a loaded machine
        roster = await get(a.url + "/presence/room:x")
        assert roster["count"] == 2 and roster["counted"] == 2
        assert {m["info"]["name"] for m in roster["members"]} == {"ann", "ben"}
        # A direct message from process A to a connection on process B, and to an identity.
        assert (await post(a.url + "/direct", {"id": there.public_id, "data": 7}))["sent"]
        assert (await there.next_message(5)).data == 7
        reached = await post(b.url + "/direct-to", {"identity": {"user": "ann"}, "data": 8})
        assert reached["reached"] == 2
        assert (await here.next_message(5)).data == 8 and (await also.next_message(5)).data == 8
        assert not (await post(a.url + "/direct", {"id": "gone", "data": 9}))["sent"]
        there_id = there.public_id
        await there.close()
        await eventually(lambda: ("leave", "room:x", there_id) in seen)
    finally:
        for client in (here, there, also):
            await client.close()


async def test_a_killed_process_members_leave_in_bounded_time(
    processes: list[AppProcess],
) -> None:
    a, b = processes
    here = await connect(a.url + "/realtime", transports=["websocket"], token="ann")
    doomed = await connect(b.url + "/realtime", transports=["websocket"], token="ben")
    doomed._reconnect_delay = lambda attempt, retry_after=0.0: 60.0  # type: ignore[method-assign]
    try:
        seen = recorder(here)
        await here.subscribe("room:k", presence=True)
        await doomed.subscribe("room:k", presence=True)
        await eventually(lambda: ("join", "room:k", doomed.public_id) in seen)
        killed = time.monotonic()
        stop(b.proc, signal.SIGKILL)
        await eventually(lambda: ("leave", "room:k", doomed.public_id) in seen, timeout=15)
        took = time.monotonic() - killed
        # presence_timeout (2 s) plus one check (a third of it), and slack for a loaded machine.
        assert took < 2 + 2 / 3 + 5, took
        roster = await get(a.url + "/presence/room:k")
        assert roster["count"] == 1
        assert json.dumps(roster["members"][0]["info"]) == '{"name": "ann"}'
    finally:
        await here.close()
        await doomed.close()


async def test_a_truncated_listing_still_reports_every_leave(serve: Callable[..., Any]) -> None:
    server: Server = await serve(**PRESENCE, presence_max_members=2)
    fans = [await server.client("websocket", token=f"fan{i}") for i in range(3)]
    for fan in fans:
        await fan.subscribe("room:big")
    watcher = await server.client("websocket", token="w")
    seen = recorder(watcher)
    await watcher.subscribe("room:big", presence=True)
    assert len(watcher.members("room:big")) == 2  # 4 members, 2 listed
    ids = [fan.public_id or "" for fan in fans]
    for fan in fans:
        await fan.close()
    await eventually(lambda: sum(1 for e in seen if e[0] == "leave") == 3)
    assert sorted(e[2] for e in seen if e[0] == "leave") == sorted(ids)
