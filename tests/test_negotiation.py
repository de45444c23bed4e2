"""Negotiation logic (docs/protocol.md §3)."""

from __future__ import annotations

import pytest

from transports.exceptions import PayloadTooBig, ProtocolError
from transports.protocol.frames import Limits
from transports.protocol.negotiation import (
    NegotiateRequest,
    choose,
    negotiate_response,
    parse_negotiate,
)
from transports.typing import TransportName


def test_parse_negotiate_defaults() -> None:
    """An empty body asks for everything with defaults."""
    assert parse_negotiate(b"") == NegotiateRequest(1, None, None)
    assert parse_negotiate(b"{}") == NegotiateRequest(1, None, None)


def test_parse_negotiate_fields() -> None:
    """Version, client key and transports are read."""
    body = b'{"v":1,"client":"abcdefgh12","transports":["sse","longpoll"]}'
    assert parse_negotiate(body) == NegotiateRequest(1, "abcdefgh12", ("sse", "longpoll"))


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "bad_json"),
        (b"[]", "bad_json"),
        (b'{"v":2}', "unsupported_version"),
        (b'{"v":"1"}', "bad_json"),
        (b'{"client":"short"}', "bad_json"),
        (b'{"client":"has spaces here"}', "bad_json"),
        (b'{"transports":"websocket"}', "bad_json"),
        (b'{"transports":[1]}', "bad_json"),
    ],
)
def test_parse_negotiate_refuses(body: bytes, code: str) -> None:
    """Malformed negotiate bodies get documented codes."""
    with pytest.raises(ProtocolError) as info:
        parse_negotiate(body)
    assert info.value.code == code


def test_parse_negotiate_size_limit() -> None:
    """Negotiate bodies are small; a big one is refused before parsing."""
    with pytest.raises(PayloadTooBig):
        parse_negotiate(b" " * 5000)


def test_choose_orders() -> None:
    """The client's order wins; unknown names are ignored; no overlap is an error."""
    enabled: tuple[TransportName, ...] = ("websocket", "sse", "longpoll")
    assert choose(None, enabled) == ["websocket", "sse", "longpoll"]
    assert choose(["longpoll", "sse"], enabled) == ["longpoll", "sse"]
    assert choose(["webtransport", "sse", "sse"], enabled) == ["sse"]
    assert choose(["sse", "websocket"], ("websocket",)) == ["websocket"]
    with pytest.raises(ProtocolError) as info:
        choose(["websocket"], ("sse",))
    assert info.value.code == "no_transport"


def test_negotiate_response_shape() -> None:
    """The response carries everything a client needs, times in milliseconds."""
    body = negotiate_response(
        public_id="pub",
        token="tok",
        ticket="tic",
        transports=["sse"],
        urls={
            "websocket": "/realtime/ws",
            "sse": "/realtime/sse",
            "longpoll": "/realtime/poll",
            "send": "/realtime/send",
        },
        heartbeat=25,
        poll_window=25,
        retry=1,
        ticket_ttl=30,
        limits=Limits(),
        max_subscriptions=128,
        history_size=1000,
        history_ttl=300,
    )
    assert body == {
        "v": 1,
        "id": "pub",
        "token": "tok",
        "ticket": "tic",
        "transports": ["sse"],
        "urls": {
            "websocket": "/realtime/ws",
            "sse": "/realtime/sse",
            "longpoll": "/realtime/poll",
            "send": "/realtime/send",
        },
        "heartbeat": 25000,
        "pollWindow": 25000,
        "retry": 1000,
        "ticketTtl": 30000,
        "limits": {
            "message": 65536,
            "body": 1048576,
            "batch": 100,
            "subscriptions": 128,
            "topic": 200,
            "depth": 32,
        },
        "history": {"size": 1000, "ttl": 300000},
    }
