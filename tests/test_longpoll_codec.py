"""Long-poll bodies against exact bytes (docs/protocol.md §6)."""

from __future__ import annotations

import pytest

from transports.exceptions import ProtocolError
from transports.protocol.frames import (
    Hello,
    Pub,
    Reply,
    encode_data,
    hello_frame,
    pub_frame,
    reply_frame,
)
from transports.protocol.longpoll import (
    decode_poll,
    decode_send_answer,
    encode_batch,
    encode_poll,
    encode_send_answer,
    parse_cursor,
)


def test_encode_poll_exact_bytes() -> None:
    """A poll response is the cursor and the frames' own bytes, not re-encoded."""
    frames = [
        hello_frame({"v": 1}),
        reply_frame(1, "ok", None),
        pub_frame("news", "new", *encode_data("é"), 42, "aZ3f"),
    ]
    body = encode_poll(3, frames)
    assert body == (
        b'{"cursor":3,"frames":[[0,{"v":1}],[4,1,"ok",null],'
        + '[1,"news","new","é",42,"aZ3f"]]}'.encode()
    )
    decoded = decode_poll(body)
    assert decoded.cursor == 3
    assert decoded.frames == [
        Hello({"v": 1}),
        Reply(1, "ok", None),
        Pub("news", "new", "é", 42, "aZ3f"),
    ]


def test_encode_poll_empty() -> None:
    """A poll that timed out carries the same cursor and no frames."""
    assert encode_poll(7, []) == b'{"cursor":7,"frames":[]}'


@pytest.mark.parametrize("value", [None, "", "-1", "x", "1.0", "1" * 17])
def test_parse_cursor_refuses(value: str | None) -> None:
    """The cursor must be a short non-negative integer."""
    with pytest.raises(ProtocolError) as info:
        parse_cursor(value)
    assert info.value.code == "bad_request"


def test_parse_cursor() -> None:
    """Valid cursors parse to ints."""
    assert parse_cursor("0") == 0
    assert parse_cursor("123") == 123


def test_encode_batch() -> None:
    """The uplink body is a JSON array of the encoded frames."""
    assert encode_batch(["[7]", '[3,1,"e",null]']) == b'[[7],[3,1,"e",null]]'


@pytest.mark.parametrize("body", [b"nope", b"[]", b'{"cursor":"1","frames":[]}'])
def test_decode_poll_refuses(body: bytes) -> None:
    """Clients refuse malformed poll responses with ProtocolError."""
    with pytest.raises(ProtocolError):
        decode_poll(body)


def test_send_answer_exact_bytes() -> None:
    """A POST /send answer with replies is the frames' own bytes (binary data as base64)."""
    body = encode_send_answer(
        [reply_frame(7, "ok", {"saved": True}), reply_frame("r", "ok", b"\x00\xff")]
    )
    assert body == b'{"frames":[[4,7,"ok",{"saved":true}],[20,"r","ok","AP8="]]}'
    assert decode_send_answer(body) == [
        Reply(7, "ok", {"saved": True}),
        Reply("r", "ok", b"\x00\xff"),
    ]
    assert encode_send_answer([]) == b'{"frames":[]}'
    assert decode_send_answer(b'{"frames":[[99,"future"]]}') == []  # unknown types left out


@pytest.mark.parametrize(
    "body",
    [
        b"nope",
        b"[]",
        b"{}",
        b'{"frames":{}}',
        b'{"frames":[[4]]}',
        b'{"frames":[[4,1,"ok",NaN]]}',  # what no decoder of a single frame accepts either
        b'{"frames":[[4,1,"ok",' + b"1" * 101 + b"]]}",
        b'{"frames":[[4,1,"ok",' + b"[" * 70 + b"]" * 70 + b"]]}",
        b'{"frames":[[4,1,"ok","\xff"]]}',  # not UTF-8
    ],
)
def test_decode_send_answer_refuses(body: bytes) -> None:
    """Clients refuse a malformed answer with ProtocolError (and carry on without it): the
    body is parsed once, as strictly as one frame alone would be."""
    with pytest.raises(ProtocolError):
        decode_send_answer(body)
