"""One contract for every backplane: the memory one and the Redis one (a real redis-server).

The first part runs against both (``make`` is parametrized); the second part is about Redis only:
several instances ("processes") on one server, outages, a restart that empties it, a killed
pub/sub connection, and foreign payloads on our channels. Every wait has a timeout, a generous
one: tests wait for the event itself, never for a fixed time, and assert no upper bound on how
long something took (a loaded machine only makes things slower). Lower bounds (an expiry never
comes before its lifetime) are asserted.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import pickle
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any
from unittest.mock import ANY

import pytest

from transports.backplanes import Backplane, Published
from transports.backplanes.memory import MemoryBackplane
from transports.backplanes.redis import RedisBackplane
from transports.exceptions import BackplaneError
from transports.protocol.frames import Position

from .redis_server import RedisServer, redis_available, redis_server

needs_redis = pytest.mark.skipif(not redis_available(), reason="redis-server is not installed")

FAST: dict[str, Any] = {
    "socket_timeout": 1.0,
    "socket_connect_timeout": 1.0,
    "reconnect_max": 0.3,
    "health_interval": 2.0,
}
"""Redis options that keep failure tests short."""


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    """One redis-server for the module; tests stay apart by key prefix."""
    if not redis_available():
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


class Maker:
    """Builds connected backplanes of one kind, and disconnects them after the test."""

    def __init__(self, kind: str, url: str = "") -> None:
        self.kind = kind
        self.url = url
        self.prefix = "t" + secrets.token_hex(4)
        self.created: list[Backplane] = []

    async def __call__(self, **options: Any) -> Backplane:
        backplane: Backplane
        if self.kind == "memory":
            backplane = MemoryBackplane(**options)
        else:
            backplane = RedisBackplane(self.url, prefix=self.prefix, **{**FAST, **options})
        await backplane.connect()
        self.created.append(backplane)
        return backplane

    async def peer(self, backplane: Backplane, **options: Any) -> Backplane:
        """Another "process" on the same backplane (the same instance for memory)."""
        if self.kind == "memory":
            return backplane
        return await self(**options)

    async def close(self) -> None:
        for backplane in self.created:
            await backplane.disconnect()


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Maker]:
    url = request.getfixturevalue("shared_redis").url if request.param == "redis" else ""
    maker = Maker(request.param, url)
    try:
        yield maker
    finally:
        await maker.close()


@pytest.fixture
async def make_redis(shared_redis: RedisServer) -> AsyncIterator[Maker]:
    maker = Maker("redis", shared_redis.url)
    try:
        yield maker
    finally:
        await maker.close()


async def recv(backplane: Backplane, timeout: float = 10.0) -> Published:
    return await asyncio.wait_for(backplane.receive(), timeout)


async def recv_many(backplane: Backplane, count: int, timeout: float = 20.0) -> list[Published]:
    async def collect() -> list[Published]:
        return [await backplane.receive() for _ in range(count)]

    return await asyncio.wait_for(collect(), timeout)


async def until_expired(backplane: Backplane, key: str, within: float = 10.0) -> None:
    """Wait until ``key`` is gone from the key-value store; fail after ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while await backplane.load(key) is not None:
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"{key!r} has not expired after {within} s")


async def fails_in_time(operation: Awaitable[Any], what: str, within: float = 15.0) -> None:
    """``operation`` raises BackplaneError instead of hanging (``within``: a generous bound)."""
    try:
        async with asyncio.timeout(within):
            with pytest.raises(BackplaneError):
                await operation
    except TimeoutError:
        pytest.fail(f"{what} still waiting after {within} s instead of failing")


async def until_logged(caplog: pytest.LogCaptureFixture, text: str, within: float = 15.0) -> None:
    """Wait until a log record containing ``text`` was captured."""
    try:
        async with asyncio.timeout(within):
            while not any(text in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"nothing logged {text!r} within {within} s")


# --- the contract, for every backplane ------------------------------------------------------


async def test_publish_gives_consecutive_offsets_and_one_epoch(make: Maker) -> None:
    bp = await make()
    records = [await bp.publish("room", "said", f'"{i}"', False) for i in range(5)]
    assert [r.offset for r in records] == [1, 2, 3, 4, 5]
    assert len({r.epoch for r in records}) == 1 and records[0].epoch
    assert records[2].topic == "room" and records[2].event == "said"
    assert records[2].data == '"2"' and records[2].binary is False
    assert records[0].id == f"{records[0].epoch}:room:1"
    other = await bp.publish("other", "said", "1", False)
    assert other.offset == 1


async def test_receive_delivers_subscribed_topics_only_in_order(make: Maker) -> None:
    bp = await make()
    await bp.subscribe("a")
    sent = []
    for i in range(10):
        sent.append(await bp.publish("a", "e", str(i), False))
        await bp.publish("b", "e", str(i), False)
    got = await recv_many(bp, 10)
    assert got == sent
    assert [r.offset for r in got] == list(range(1, 11))
    end = await bp.publish("a", "e", "end", False)
    assert await recv(bp) == end  # nothing from "b" was queued in between


async def test_subscribe_is_effective_when_it_returns(make: Maker) -> None:
    bp = await make()
    publisher = await make.peer(bp)
    for i in range(20):
        topic = f"fresh-{i}"
        await bp.subscribe(topic)
        sent = await publisher.publish(topic, "e", str(i), False)
        assert await recv(bp) == sent


async def test_subscribe_and_unsubscribe_are_idempotent(make: Maker) -> None:
    bp = await make()
    await bp.subscribe("a")
    await bp.subscribe("a")
    await bp.subscribe("b")
    first = await bp.publish("a", "e", "1", False)
    assert await recv(bp) == first
    await bp.unsubscribe("a")
    await bp.unsubscribe("a")
    await bp.unsubscribe("never")
    await bp.publish("a", "e", "2", False)
    sentinel = await bp.publish("b", "e", "3", False)
    assert await recv(bp) == sentinel  # "a" stopped, and "a"/1 came once only
    await bp.subscribe("a")
    again = await bp.publish("a", "e", "4", False)
    assert await recv(bp) == again


async def test_history_without_since_gives_the_position(make: Maker) -> None:
    bp = await make()
    fresh = await bp.history("h", None)
    assert fresh.recovered and fresh.offset == 0 and fresh.messages == [] and fresh.epoch
    records = [await bp.publish("h", "e", str(i), False) for i in range(3)]
    after = await bp.history("h", None)
    # The epoch announced for an empty topic is the one its publications get.
    assert (after.epoch, after.offset, after.recovered) == (fresh.epoch, 3, True)
    assert records[0].epoch == fresh.epoch and after.messages == []


async def test_history_replays_a_gap_inside_the_history(make: Maker) -> None:
    bp = await make()
    records = [await bp.publish("h", "e", str(i), False) for i in range(5)]
    epoch = records[0].epoch
    same = await bp.history("h", Position(epoch, 5))
    assert same.recovered and same.messages == [] and same.offset == 5
    gap = await bp.history("h", Position(epoch, 2))
    assert gap.recovered and gap.offset == 5 and gap.messages == records[2:]
    everything = await bp.history("h", Position(epoch, 0))
    assert everything.recovered and everything.messages == records


async def test_history_refuses_a_gap_older_than_the_history(make: Maker) -> None:
    bp = await make(history_size=3)
    records = [await bp.publish("h", "e", str(i), False) for i in range(6)]
    epoch = records[0].epoch
    old = await bp.history("h", Position(epoch, 2))
    assert (old.recovered, old.messages, old.offset, old.epoch) == (False, [], 6, epoch)
    edge = await bp.history("h", Position(epoch, 3))
    assert edge.recovered and edge.messages == records[3:]


async def test_history_refuses_another_epoch_or_a_position_ahead(make: Maker) -> None:
    bp = await make()
    records = [await bp.publish("h", "e", str(i), False) for i in range(3)]
    epoch = records[0].epoch
    other = await bp.history("h", Position("other-epoch", 1))
    assert (other.recovered, other.messages, other.epoch, other.offset) == (False, [], epoch, 3)
    ahead = await bp.history("h", Position(epoch, 4))
    assert (ahead.recovered, ahead.messages, ahead.offset) == (False, [], 3)
    negative = await bp.history("h", Position(epoch, -1))
    assert not negative.recovered and negative.messages == []


async def test_history_refuses_publications_older_than_the_ttl(make: Maker) -> None:
    bp = await make(history_ttl=0.3)
    records = [await bp.publish("h", "e", str(i), False) for i in range(2)]
    await asyncio.sleep(0.45)  # the publications' age, not a synchronisation: longer is as good
    epoch = records[0].epoch
    aged = await bp.history("h", Position(epoch, 0))
    assert not aged.recovered and aged.messages == []
    current = await bp.history("h", Position(epoch, 2))
    assert current.recovered and current.offset == 2


async def test_concurrent_publishes_have_no_gap(make: Maker) -> None:
    bp = await make()
    peer = await make.peer(bp)
    await bp.subscribe("busy")

    async def one(i: int) -> Published:
        return await (bp if i % 2 else peer).publish("busy", "e", str(i), False)

    records = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), 10)
    assert sorted(r.offset for r in records) == list(range(1, 201))
    assert len({r.epoch for r in records}) == 1
    got = await recv_many(bp, 200)
    assert [r.offset for r in got] == list(range(1, 201))
    by_offset = {r.offset: r for r in records}
    assert all(r == by_offset[r.offset] for r in got)


async def test_claim_store_load_with_expiry(make: Maker) -> None:
    bp = await make()
    # Long lifetimes where a value must still be there: a stalled machine cannot expire them.
    assert await bp.claim("ticket", 60) is True
    assert await bp.claim("ticket", 60) is False
    assert await bp.load("nothing") is None
    await bp.store("reply", "first é\x00", 60)
    assert await bp.load("reply") == "first é\x00"
    await bp.store("reply", "second", 60)
    assert await bp.load("reply") == "second"
    # Short lifetimes: gone once they have passed, and never before.
    started = time.monotonic()
    assert await bp.claim("short", 0.3) is True
    await bp.store("brief", "v", 0.3)
    await until_expired(bp, "brief")
    assert time.monotonic() - started >= 0.3
    assert await bp.claim("short", 5) is True  # claimed before "brief" was stored: gone too


async def test_claim_keeps_the_winner_value(make: Maker) -> None:
    bp = await make()
    peer = await make.peer(bp)
    results = await asyncio.gather(
        *(backplane.claim("owner", 5, f"node-{i}") for i, backplane in enumerate([bp, peer] * 5))
    )
    assert results.count(True) == 1
    assert await bp.load("owner") == f"node-{results.index(True)}"


async def test_inbox_delivers_messages_to_this_process(make: Maker) -> None:
    bp = await make()
    await bp.open_inbox("node-a")
    await bp.send_to_node("node-a", '{"call": "é"}')
    await bp.send_to_node("node-a", "second")
    assert await asyncio.wait_for(bp.receive_from_inbox(), 10) == '{"call": "é"}'
    assert await asyncio.wait_for(bp.receive_from_inbox(), 10) == "second"


async def test_binary_flag_and_payload_round_trip(make: Maker) -> None:
    bp = await make()
    await bp.subscribe("bin")
    blob = await bp.publish("bin", "blob", "AAEC/w==", True)
    text = '{"s":"é/\\u0000\\"x\\"","n":[1,2.5,null]}'
    doc = await bp.publish("bin", "doc", text, False)
    got = await recv_many(bp, 2)
    assert got == [blob, doc]
    assert got[0].binary is True and got[0].data == "AAEC/w=="
    assert got[1].binary is False and got[1].data == text
    replay = await bp.history("bin", Position(blob.epoch, 0))
    assert replay.recovered and replay.messages == [blob, doc]
    assert replay.messages[0].binary is True


# --- Redis only -----------------------------------------------------------------------------


async def test_shared_sets_add_remove_and_hand_over(make: Maker) -> None:
    """A member joins once; a second holder takes it over (a reconnect elsewhere), and then
    only the new holder's remove takes it out: the old holder's late leave does nothing."""
    bp = await make()
    other = await make.peer(bp)
    assert await bp.add_member("room:1", "m1", "a/s1", '{"n":1}') is True
    assert await bp.add_member("room:1", "m1", "a/s1", '{"n":1}') is False
    assert await other.add_member("room:1", "m1", "b/s2", '{"n":2}') is False  # handed over
    assert await bp.remove_member("room:1", "m1", "a/s1") is False  # no longer held by a/s1
    members, count = await other.members("room:1", 10)
    assert count == 1 and [(m.member, m.holder, m.info, m.node) for m in members] == [
        ("m1", "b/s2", '{"n":2}', "b")
    ]
    assert await other.remove_member("room:1", "m1", "b/s2") is True
    assert await other.remove_member("room:1", "m1", "b/s2") is False
    assert await bp.members("room:1", 10) == ([], 0)
    assert await bp.member_count("room:1") == 0


async def test_shared_set_listing_is_capped_and_the_count_exact(make: Maker) -> None:
    bp = await make()
    for i in range(250):
        await bp.add_member("big", f"m{i}", "a/s", "null")
    members, count = await bp.members("big", 100)
    assert count == 250 and await bp.member_count("big") == 250
    assert len(members) == 100 and len({m.member for m in members}) == 100
    everyone, _ = await bp.members("big", 1000)
    assert {m.member for m in everyone} == {f"m{i}" for i in range(250)}


async def test_reap_removes_the_members_of_a_process_whose_lease_lapsed(make: Maker) -> None:
    """Process "dead" stops renewing its lease: "live" reaps its members (each reported once,
    even with two reapers), and leaves alone the members "dead" no longer holds."""
    bp = await make()
    peer = await make.peer(bp)
    assert await bp.keep_alive("live", 30) is False  # the first lease
    assert await bp.keep_alive("live", 30) is True
    await peer.keep_alive("dead", 0.3)
    await peer.add_member("room:1", "x", "dead/s1", '"x"')
    await peer.add_member("room:2", "y", "dead/s2", '"y"')
    await peer.add_member("room:1", "moved", "dead/s3", "null")
    await bp.add_member("room:1", "moved", "live/s9", "null")  # reconnected to "live"
    await bp.add_member("room:1", "mine", "live/s4", "null")
    assert await bp.reap("live") == []  # "dead" is still within its lease
    await asyncio.sleep(0.5)
    first, second = await asyncio.gather(bp.reap("live"), peer.reap("other"))
    reaped = sorted((key, m.member, m.info) for key, m in [*first, *second])
    assert reaped == [("room:1", "x", '"x"'), ("room:2", "y", '"y"')]
    members, count = await bp.members("room:1", 10)
    assert count == 2 and {m.member for m in members} == {"moved", "mine"}
    assert await bp.reap("live") == []
    assert await peer.keep_alive("dead", 30) is False  # it comes back: told to add again


async def test_two_instances_share_offsets_and_fan_out(make_redis: Maker) -> None:
    a = await make_redis()
    b = await make_redis()
    await a.subscribe("shared")
    await b.subscribe("shared")
    one = await a.publish("shared", "e", "1", False)
    two = await b.publish("shared", "e", "2", False)
    assert (one.offset, two.offset) == (1, 2) and one.epoch == two.epoch
    assert await recv_many(a, 2) == [one, two]
    assert await recv_many(b, 2) == [one, two]
    assert await a.history("shared", Position(one.epoch, 0)) == await b.history(
        "shared", Position(one.epoch, 0)
    )


async def test_inboxes_across_processes(make_redis: Maker, shared_redis: RedisServer) -> None:
    a = await make_redis()
    b = await make_redis()
    await a.open_inbox("a")
    await b.open_inbox("b")
    await a.send_to_node("b", "for b")
    await a.send_to_node("gone", "lost")  # nobody listens: lost, not an error
    await b.send_to_node("a", "for a")
    assert await asyncio.wait_for(b.receive_from_inbox(), 10) == "for b"
    assert await asyncio.wait_for(a.receive_from_inbox(), 10) == "for a"
    # Survives a reconnection; junk on the channel is dropped.
    await shared_redis.acommand("PUBLISH", f"{make_redis.prefix}:node:b", b"\xff\xfe")
    await shared_redis.acommand("CLIENT", "KILL", "TYPE", "pubsub")

    async def send_until_received() -> str:
        while True:
            await a.send_to_node("b", "again")
            try:
                return await asyncio.wait_for(b.receive_from_inbox(), 0.2)
            except TimeoutError:
                continue

    assert await asyncio.wait_for(send_until_received(), 20) == "again"


async def test_redis_keys_follow_the_documented_layout(
    make_redis: Maker, shared_redis: RedisServer
) -> None:
    bp = await make_redis(history_ttl=10, expiry_margin=5)
    started = time.monotonic()
    record = await bp.publish("room:1", "e", "1", False)
    prefix = make_redis.prefix
    meta = f"{prefix}:{{room:1}}:meta"
    log = f"{prefix}:{{room:1}}:log"
    # Both lifetimes read in one script, at one instant.
    ttls = shared_redis.command(
        "EVAL", "return {redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2])}", 2, meta, log
    )
    elapsed_ms = (time.monotonic() - started) * 1000
    assert isinstance(ttls, list)
    ttl, log_ttl = ttls
    assert isinstance(ttl, int) and 15_000 - elapsed_ms - 2 <= ttl <= 15_000
    assert ttl == log_ttl  # one expiry for both keys
    assert shared_redis.command("HMGET", meta, "epoch", "last") == [record.epoch.encode(), b"1"]
    assert shared_redis.command("TYPE", log) == "stream"
    entries = shared_redis.command("XRANGE", log, "-", "+")
    assert entries == [[b"1-1", [b"e", b"e", b"d", b"1", b"b", b"0", b"t", ANY]]]
    await bp.store("k", "v", 5)
    assert shared_redis.command("GET", f"{prefix}:kv:k") == b"v"


async def test_idle_topic_starts_a_new_epoch_unless_subscribed(
    make_redis: Maker, shared_redis: RedisServer
) -> None:
    # A 1.5 s lifetime, re-armed every 0.5 s for subscribed topics: only a stall of a second
    # could let "kept" lapse.
    bp = await make_redis(history_ttl=0.5, expiry_margin=1.0)
    await bp.subscribe("kept")
    kept = await bp.publish("kept", "e", "1", False)
    assert await recv(bp) == kept
    idle = [await bp.publish("idle", "e", str(i), False) for i in range(2)]
    # Wait for the idle topic's state to expire in Redis; "kept" was published before, so without
    # its re-arming it would be gone by then too.
    meta = f"{make_redis.prefix}:{{idle}}:meta"
    try:
        async with asyncio.timeout(15):
            while await shared_redis.acommand("EXISTS", meta):
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail("the idle topic never expired")
    reborn = await bp.publish("idle", "e", "again", False)
    assert reborn.offset == 1 and reborn.epoch != idle[0].epoch
    lost = await bp.history("idle", Position(idle[0].epoch, 2))
    assert not lost.recovered and lost.epoch == reborn.epoch
    # A subscribed topic keeps its epoch: its listeners need no resync.
    still = await bp.publish("kept", "e", "2", False)
    assert (still.epoch, still.offset) == (kept.epoch, 2)
    assert await recv(bp) == still


async def test_foreign_payloads_are_ignored(
    make_redis: Maker, shared_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    bp = await make_redis()
    await bp.subscribe("t")
    channel = f"{make_redis.prefix}:{{t}}:pub"
    forged = (
        b'{"v":1,"topic":"t","event":"e","data":"1","binary":false,'
        b'"offset":99,"epoch":"forged","time":0}'
    )
    payloads = [
        b"not json",
        pickle.dumps({"pickled": True}),
        b"\xff\xfe\x00",
        b"[]",
        b'{"v":2}',
        b'{"v":true,"topic":"t"}',
        b'{"v":1,"topic":"other","event":"e","data":"1","binary":false,"offset":1,'
        b'"epoch":"x","time":0}',
        b'{"v":1,"topic":"t","event":"e","data":"1","binary":false,"offset":"1",'
        b'"epoch":"x","time":0}',
        b"[" * 100_000,
        forged,
    ]
    with caplog.at_level(logging.WARNING, logger="transports.backplanes.redis"):
        for payload in payloads:
            await shared_redis.acommand("PUBLISH", channel, payload)
        real = await bp.publish("t", "e", "real", False)
        assert await recv(bp) == real
        assert real.offset == 1
    malformed = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(malformed) == 1  # rate-limited: one line for the burst


async def test_killed_pubsub_connection_catches_up(
    make_redis: Maker, shared_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = await make_redis()
    publisher = await make_redis()
    await receiver.subscribe("feed")
    total = 300
    got: list[Published] = []

    async def receive_all() -> None:
        while len(got) < total:
            got.append(await receiver.receive())

    async def publish_all() -> None:
        """Publish, killing the pub/sub connections at three points of the stream; each kill
        waits until the receiver is back and has everything so far, so each one hits a live
        connection with publications still to come."""
        for i in range(total):
            if i in (total // 4, total // 2, 3 * total // 4):
                while len(got) < i:
                    await asyncio.sleep(0.01)
                await shared_redis.acommand("CLIENT", "KILL", "TYPE", "pubsub")
            await publisher.publish("feed", "e", str(i), False)

    with caplog.at_level(logging.WARNING, logger="transports.backplanes.redis"):
        try:
            await asyncio.wait_for(asyncio.gather(receive_all(), publish_all()), 60)
        except TimeoutError:
            pytest.fail(f"received {len(got)} of {total} publications in 60 s")
    assert [r.offset for r in got] == list(range(1, total + 1))
    assert [r.data for r in got] == [str(i) for i in range(total)]
    assert len({r.epoch for r in got}) == 1
    assert any("connection lost" in r.getMessage() for r in caplog.records)
    # Nothing more: each offset came exactly once.
    tail = await publisher.publish("feed", "e", "tail", False)
    assert await recv(receiver) == tail


async def test_redis_down_then_back_empty(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="transports.backplanes.redis")
    async with redis_server() as server:
        bp = RedisBackplane(server.url, **FAST, subscribe_timeout=1.0)
        await bp.connect()
        try:
            await bp.subscribe("t")
            before = await bp.publish("t", "e", "1", False)
            assert await recv(bp) == before
            # Several key-value pipelines at once: each keeps a connection of its own.
            assert (
                await asyncio.gather(*(bp.claim(f"a{n}", 60) for n in range(1000))) == [True] * 1000
            )
            await server.astop()
            receiving = asyncio.ensure_future(bp.receive())
            for what, operation in (
                ("publish", bp.publish("t", "e", "2", False)),
                ("history", bp.history("t", None)),
                ("claim", bp.claim("k", 1)),
                ("store", bp.store("k", "v", 1)),
                ("load", bp.load("k")),
                ("subscribe", bp.subscribe("another")),
            ):
                await fails_in_time(operation, what)
            # The reader has seen the outage, and receive() still waits: it does not raise.
            await until_logged(caplog, "pub/sub connection lost")
            assert not receiving.done()
            await server.astart()  # same port, empty: no persistence
            after = await asyncio.wait_for(_publish_when_up(bp), 20)
            # The key-value pipelines' own connections died with Redis: each is checked before
            # it is used again, so the first burst after Redis is back is answered whole.
            burst = await asyncio.gather(*(bp.claim(f"b{n}", 60) for n in range(1000)))
            assert burst == [True] * 1000
            assert after.epoch != before.epoch and after.offset == 1
            lost = await bp.history("t", Position(before.epoch, before.offset))
            assert not lost.recovered and lost.messages == [] and lost.epoch == after.epoch
            delivered = await asyncio.wait_for(receiving, 20)
            assert (delivered.epoch, delivered.offset) == (after.epoch, 1)
        finally:
            await bp.disconnect()


async def test_redis_frozen_times_out_then_catches_up(caplog: pytest.LogCaptureFixture) -> None:
    """A Redis that stops answering (SIGSTOP: a black hole) makes calls fail instead of hanging;
    the reader notices by PING, and catches up once Redis answers again."""
    caplog.set_level(logging.WARNING, logger="transports.backplanes.redis")
    async with redis_server() as server:
        options = {**FAST, "socket_timeout": 0.4, "health_interval": 0.3}
        receiver = RedisBackplane(server.url, **options)
        publisher = RedisBackplane(server.url, **options)
        await receiver.connect()
        await publisher.connect()
        try:
            await receiver.subscribe("t")
            first = await publisher.publish("t", "e", "1", False)
            assert await recv(receiver) == first
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)
            try:
                await fails_in_time(publisher.publish("t", "e", "2", False), "publish")
                # Many claims at once (more than fit one pipeline): every caller hears within
                # about a command's deadline (connect + 2 x socket timeout), none waits behind
                # the others' deadlines one pipeline after another. (The bound is loose, two
                # deadlines and a second: this takes about one; pipelines one after another
                # took more than three.)
                deadline = options["socket_connect_timeout"] + 2 * options["socket_timeout"]
                started = asyncio.get_running_loop().time()
                claims = [publisher.claim(f"c{n}", 60) for n in range(4000)]
                outcomes = await asyncio.wait_for(
                    asyncio.gather(*claims, return_exceptions=True), 15
                )
                waited = asyncio.get_running_loop().time() - started
                assert all(isinstance(o, BackplaneError) for o in outcomes)
                assert waited < 2 * deadline + 1, f"the last claim failed after {waited:.1f} s"
                receiving = asyncio.ensure_future(recv_many(receiver, 1, timeout=60))
                # The reader's PING went unanswered: it gave that connection up.
                await until_logged(caplog, "did not answer PING")
                assert not receiving.done()
            finally:
                os.kill(server.pid, signal.SIGCONT)
            last = await asyncio.wait_for(_publish_when_up(publisher), 20)
            got = [*await receiving]
            while got[-1].offset < last.offset:
                got.append(await recv(receiver))
            # The timed-out publish may have been applied once Redis resumed: never twice,
            # and never leaving a gap.
            assert [r.offset for r in got] == list(range(2, last.offset + 1))
            assert got[-1] == last
        finally:
            await receiver.disconnect()
            await publisher.disconnect()


async def _publish_when_up(bp: Backplane) -> Published:
    while True:
        try:
            return await bp.publish("t", "e", "after", False)
        except BackplaneError:
            await asyncio.sleep(0.05)


async def test_disconnect_leaves_no_task(make_redis: Maker) -> None:
    before = set(asyncio.all_tasks())
    bp = RedisBackplane(make_redis.url, prefix=make_redis.prefix, **FAST)
    await bp.connect()
    await bp.subscribe("t")
    await bp.publish("t", "e", "1", False)
    await recv(bp)
    await bp.disconnect()
    await bp.disconnect()  # idempotent
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert [t.get_name() for t in left if "redis" in t.get_name()] == []
    with pytest.raises(BackplaneError):
        await bp.publish("t", "e", "2", False)


async def test_key_value_commands_of_one_turn_are_answered_each(
    make_redis: Maker, shared_redis: RedisServer
) -> None:
    """Claims, stores and loads asked for at once go to Redis in pipelines; each caller gets
    its own answer, a command Redis refuses fails only its caller, and a caller cancelled
    while waiting costs the others nothing."""
    bp = await make_redis()
    shared_redis.command("HSET", f"{make_redis.prefix}:kv:a-hash", "f", "v")
    await bp.store("kept", "old", 60)
    calls: list[Awaitable[Any]] = [bp.claim(f"k{n}", 60) for n in range(600)]
    calls += [bp.claim("k7", 60), bp.load("a-hash"), bp.load("kept"), bp.store("new", "v", 60)]
    calls += [bp.load(f"missing{n}") for n in range(10)]
    tasks = [asyncio.ensure_future(call) for call in calls]
    cancelled = asyncio.ensure_future(bp.claim("cancelled", 60))
    await asyncio.sleep(0)  # every call is queued (one turn), none sent yet
    assert not any(task.done() for task in tasks)
    cancelled.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[:600] == [True] * 600  # more than one pipeline's worth
    assert results[600] is False  # k7 again, after its first claim in the same turn
    assert isinstance(results[601], BackplaneError)
    assert "WRONGTYPE" in str(results[601])
    assert results[602:] == ["old", None] + [None] * 10
    assert await bp.load("new") == "v"
    assert cancelled.cancelled()
    assert await bp.load("cancelled") is None  # dropped from its pipeline, never sent


async def test_a_pipeline_cancelled_before_it_starts_holds_nothing_back(
    make_redis: Maker,
) -> None:
    """A pipeline task cancelled before its first step (the loop shutting down, say) leaves the
    command it would have sent to the next one: its caller is answered, not left waiting."""
    bp = await make_redis()
    assert isinstance(bp, RedisBackplane)
    first = asyncio.ensure_future(bp.claim("first", 60))
    await asyncio.sleep(0)  # the claim is queued, the pipeline's start is scheduled
    await asyncio.sleep(0)  # the pipeline's task exists and has not run
    pipelines = list(bp._flushers)  # white box: no public handle on a pipeline
    assert pipelines
    for task in pipelines:
        task.cancel()
    assert await asyncio.wait_for(first, 10) is True
    assert await asyncio.wait_for(bp.claim("second", 60), 10) is True


async def test_publish_after_redis_forgot_the_script(
    make_redis: Maker, shared_redis: RedisServer
) -> None:
    """A publication runs the script by its SHA in the pipeline; when Redis no longer knows it
    (SCRIPT FLUSH, or a restart), it is loaded and run: the publication goes on, in order."""
    bp = await make_redis()
    first = await bp.publish("t", "e", "1", False)
    shared_redis.command("SCRIPT", "FLUSH")
    second, third = await asyncio.gather(
        bp.publish("t", "e", "2", False), bp.publish("t", "e", "3", False)
    )
    assert second.epoch == third.epoch == first.epoch
    assert sorted([second.offset, third.offset]) == [first.offset + 1, first.offset + 2]
    history = await bp.history("t", Position(first.epoch, first.offset))
    assert [m.data for m in history.messages] == [
        m.data for m in sorted([second, third], key=lambda m: m.offset)
    ]


async def test_disconnect_closes_the_pipelines_connections(
    make_redis: Maker, shared_redis: RedisServer
) -> None:
    """The connections kept for the key-value pipelines are closed by disconnect(): Redis sees
    them go, even when a garbage collection runs before the pool closes (the pool tracks
    connections in use only weakly; disconnect closes the kept ones itself)."""

    def clients() -> int:
        listing = shared_redis.command("CLIENT", "LIST")
        assert isinstance(listing, bytes)
        return len(listing.splitlines())

    before = clients()
    bp = await make_redis()
    assert await asyncio.gather(*(bp.claim(f"k{n}", 60) for n in range(1000))) == [True] * 1000
    assert clients() > before
    # The pool tracks connections in use weakly: let a garbage collection run at the worst
    # moment, just before the pool closes what it still knows of.
    assert isinstance(bp, RedisBackplane) and bp._pool is not None
    pool = bp._pool
    close_pool = pool.aclose

    async def aclose_after_a_collection() -> None:
        gc.collect()
        await close_pool()

    pool.aclose = aclose_after_a_collection  # type: ignore[method-assign]
    await bp.disconnect()
    deadline = asyncio.get_running_loop().time() + 5
    while clients() > before and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert clients() == before


def test_redis_needs_a_connection_beside_the_pipelines() -> None:
    """The key-value pipelines keep up to half the pool: one connection would leave publish
    waiting for ever, so it is refused at once, with the option named."""
    with pytest.raises(ValueError, match="max_connections"):
        RedisBackplane("redis://127.0.0.1:1/0", max_connections=1)


async def test_memory_key_store_is_bounded() -> None:
    """The in-memory key-value store keeps at most max_keys; the soonest to expire go first."""
    from transports.backplanes.memory import MemoryBackplane

    backplane = MemoryBackplane(max_keys=100)
    await backplane.connect()
    for n in range(150):
        await backplane.store(f"reply:{n}", str(n), ttl=60)
    await backplane.store("ticket:x", "1", ttl=600)
    assert backplane.key_count <= 100
    assert await backplane.load("reply:0") is None  # evicted
    assert await backplane.load("reply:149") == "149"
    assert await backplane.load("ticket:x") == "1"
    await backplane.disconnect()
