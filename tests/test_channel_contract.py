"""The contract: the same scenarios over every transport, in-process and over real Hypercorn.

A transport that behaves differently from the others fails here. Each scenario uses the public
API on both sides: ``Realtime``/``Channel`` on the server, ``transports.client`` on the client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from transports import ChannelClosed, ReplyError
from transports.client import Incoming
from transports.typing import TransportName

from .conftest import TRANSPORTS, Server, eventually, library_tasks

pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)


async def test_connect_reports_transport(
    serve: Callable[..., Any], transport: TransportName
) -> None:
    """The client opens the requested transport and the server's channel says the same."""
    server: Server = await serve()
    client = await server.client(transport)
    assert client.transport == transport
    assert client.state == "open"
    who = await client.send("whoami")
    assert who["transport"] == transport
    assert who["bidirectional"] is (transport not in ("sse", "longpoll"))
    assert who["identity"] == {"user": "anonymous"}
    assert who["id"] == client.public_id


async def test_subscribe_and_receive_publish(
    serve: Callable[..., Any], transport: TransportName
) -> None:
    """A server-side publish reaches a subscriber with its topic, offset and epoch."""
    server: Server = await serve()
    client = await server.client(transport)
    await client.subscribe("news")
    record = await server.realtime.publish("news", "new", {"title": "Build passed"})
    message = await client.next_message(5)
    assert message == Incoming(
        "new", {"title": "Build passed"}, "news", record.offset, record.epoch
    )


async def test_send_gets_reply(serve: Callable[..., Any], transport: TransportName) -> None:
    """send() resolves with what the handler returned."""
    server: Server = await serve()
    client = await server.client(transport)
    assert await client.send("echo", {"text": "hi", "n": [1, 2.5, None]}) == {
        "text": "hi",
        "n": [1, 2.5, None],
    }
    assert await client.send("echo", "é ü 字") == "é ü 字"


async def test_binary_both_ways(serve: Callable[..., Any], transport: TransportName) -> None:
    """Binary payloads survive every transport, up and down, on topics too."""
    server: Server = await serve()
    client = await server.client(transport)
    payload = bytes(range(256)) * 4
    assert await client.send("echo", payload) == payload
    await client.subscribe("files")
    await server.realtime.publish("files", "blob", b"\x00\xffbinary\x00")
    message = await client.next_message(5)
    assert message.data == b"\x00\xffbinary\x00"


async def test_broadcast_to_many(serve: Callable[..., Any], transport: TransportName) -> None:
    """One publish reaches every subscriber exactly once, in order."""
    server: Server = await serve()
    clients = [await server.client(transport) for _ in range(8)]
    for client in clients:
        await client.subscribe("room")
    for n in range(20):
        await server.realtime.publish("room", "n", n)
    for client in clients:
        got = [(await client.next_message(5)).data for _ in range(20)]
        assert got == list(range(20))
        assert client.stats["duplicates"] == 0


async def test_client_publish_is_authorized(
    serve: Callable[..., Any], transport: TransportName
) -> None:
    """Client publishes pass the app's authorizer or get 'forbidden'; subscriptions likewise."""
    server: Server = await serve()
    client = await server.client(transport)
    await client.subscribe("open:chat")
    from transports.protocol.frames import Publish, encode_client_frame

    await client._transmit([encode_client_frame(Publish(9001, "open:chat", "say", "hi"))])
    message = await client.next_message(5)
    assert (message.topic, message.data) == ("open:chat", "hi")
    with pytest.raises(ReplyError) as info:
        await client.subscribe("private:admin")
    assert info.value.code == "forbidden"
    assert await client.send("echo", 1) == 1  # still usable


async def test_error_replies_keep_connection_usable(
    serve: Callable[..., Any], transport: TransportName
) -> None:
    """Unknown events, failing and refusing handlers answer errors; the connection stays."""
    server: Server = await serve()
    client = await server.client(transport)
    for event, code in (
        ("nope", "unknown_event"),
        ("fail", "handler_error"),
        ("reject", "bad_data"),
    ):
        with pytest.raises(ReplyError) as info:
            await client.send(event, {})
        assert info.value.code == code
    with pytest.raises(ReplyError) as info:
        await client.subscribe("$reserved")
    assert info.value.code == "bad_topic"
    assert await client.send("echo", "still here") == "still here"
    assert server.engine.stats["handler_errors"] == 1


async def test_direct_message(serve: Callable[..., Any], transport: TransportName) -> None:
    """channel.send() and Realtime.send(id) reach only that client."""
    server: Server = await serve()
    client = await server.client(transport)
    other = await server.client(transport)
    await client.send("direct", {"to": "me"})
    assert await client.next_message(5) == Incoming("direct", {"to": "me"})
    assert client.public_id is not None
    assert await server.realtime.send(client.public_id, "poke", 1)
    assert await client.next_message(5) == Incoming("poke", 1)
    # Nothing of the above reached the other client: the first message it gets is one sent to
    # it afterwards (its messages come in order).
    assert other.public_id is not None
    assert await server.realtime.send(other.public_id, "yours", 2)
    assert await other.next_message(5) == Incoming("yours", 2)


async def test_retried_ref_applied_once(
    serve: Callable[..., Any], transport: TransportName
) -> None:
    """The same ref sent twice is applied once and answered twice with the same reply."""
    server: Server = await serve()
    client = await server.client(transport)
    from transports.protocol.frames import Event, encode_client_frame

    frame = encode_client_frame(Event(777, "count", {"key": "retry"}))
    await client._transmit([frame])
    await client._transmit([frame])
    # Both copies have been dealt with once the second is answered as a retry.
    await eventually(lambda: server.engine.stats["retries_answered"] >= 1)
    assert server.applied["retry"] == 1
    assert server.engine.stats["retries_answered"] == 1


async def test_server_close_terminal_code(
    serve: Callable[..., Any], transport: TransportName
) -> None:
    """A terminal close code (4503) ends the client for good and reaches disconnect hooks."""
    server: Server = await serve()
    client = await server.client(transport)
    states: list[str] = []
    client.on("state", states.append)
    await client._transmit(['[3,1,"close-me",{"code":4503,"reason":"go away"}]'])
    await eventually(lambda: client.state == "closed")
    assert states[-1] == "closed"
    with pytest.raises(ChannelClosed) as info:
        await client.send("echo", 1)
    assert info.value.code == 4503
    await eventually(lambda: len(server.app.config["DISCONNECTS"]) == 1)
    assert server.app.config["DISCONNECTS"][0][1:] == (4503, "go away")


async def test_server_close_reconnect_code(
    serve: Callable[..., Any], transport: TransportName
) -> None:
    """A reconnect-range close (4008) makes the client come back by itself and resubscribe."""
    server: Server = await serve()
    client = await server.client(transport, backoff=(0.05, 0.2))
    await client.subscribe("news")
    first_id = client.public_id
    first_session = len(server.realtime.engine.sessions.by_sid)
    await client._transmit(['[3,1,"close-me",{"code":4008,"reason":"slow"}]'])
    await eventually(lambda: client.stats["reconnects"] == 1 and client.state == "open")
    # A new session (the old one closed), under the same public id: the client's own (§3).
    assert client.public_id == first_id
    assert server.realtime.engine.stats["closed:4008"] == 1 and first_session == 1
    await server.realtime.publish("news", "after", 1)
    message = await client.next_message(5)
    assert (message.event, message.data) == ("after", 1)


async def test_resume_after_reconnect(serve: Callable[..., Any], transport: TransportName) -> None:
    """Messages published while a client was away are replayed in order, exactly once."""
    server: Server = await serve()
    client = await server.client(transport, backoff=(0.5, 0.5))
    recovered: list[tuple[str, bool]] = []
    client.on("recovered", lambda topic, ok: recovered.append((topic, ok)))
    await client.subscribe("feed")
    for n in range(5):
        await server.realtime.publish("feed", "n", n)
    got = [(await client.next_message(5)).data for _ in range(5)]
    await client.force_reconnect()
    for n in range(5, 15):
        await server.realtime.publish("feed", "n", n)
    got += [(await client.next_message(10)).data for _ in range(10)]
    assert got == list(range(15))
    assert recovered == [("feed", True)]
    assert client.stats["gaps"] == 0


async def test_gap_too_old_is_reported(serve: Callable[..., Any], transport: TransportName) -> None:
    """History too short for the gap: the client hears recovered=False; no partial replay."""
    server: Server = await serve(history_size=3)
    client = await server.client(transport, backoff=(0.5, 0.5))
    recovered: list[tuple[str, bool]] = []
    client.on("recovered", lambda topic, ok: recovered.append((topic, ok)))
    await client.subscribe("feed")
    await server.realtime.publish("feed", "n", 0)
    assert (await client.next_message(5)).data == 0
    await client.force_reconnect()
    for n in range(1, 10):  # 9 messages while away; history keeps 3
        await server.realtime.publish("feed", "n", n)
    await eventually(lambda: recovered != [])
    assert recovered == [("feed", False)]
    await server.realtime.publish("feed", "n", 10)
    assert (await client.next_message(5)).data == 10  # live again, nothing replayed partially


async def test_channel_loop_receives_unhandled(
    serve: Callable[..., Any], transport: TransportName
) -> None:
    """A per-connection handler subscribes server-side and iterates over unhandled messages."""
    server: Server = await serve(channel_loop=True)
    client = await server.client(transport)
    await client.subscribe(f"joined:{transport}")
    assert await client.send("note", {"a": 1}) is None
    await eventually(lambda: server.app.config["INBOX"] == [(transport, "note", {"a": 1})])


async def test_no_leaks_after_close(serve: Callable[..., Any], transport: TransportName) -> None:
    """After clients close, sessions, subscriptions and per-connection tasks are released."""
    server: Server = await serve()
    baseline = len(library_tasks())
    clients = [await server.client(transport) for _ in range(5)]
    for client in clients:
        await client.subscribe("news")
        await client.send("echo", 1)
    assert server.engine.session_count == 5
    for client in clients:
        await client.close()
    await eventually(lambda: server.engine.session_count == 0)
    await eventually(lambda: server.engine.hub.topic_count == 0)
    await eventually(lambda: len(library_tasks()) <= baseline)
