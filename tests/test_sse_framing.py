"""SSE framing against exact bytes, and the WHATWG parser the clients use (docs/protocol.md §5)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from sse_starlette.event import ServerSentEvent

from transports.carriers.sse import encode_frame, encode_hello
from transports.protocol.frames import PING, encode_data, hello_frame, msg_frame, pub_frame
from transports.protocol.sse import SSEEvent, SSEParser, parse_last_event_id


def test_encode_frame_exact_bytes() -> None:
    """A frame is one event: an id line with its sequence number, one data line, a blank line."""
    frame = pub_frame("news", "new", *encode_data({"title": "x"}), 42, "aZ3f")
    assert encode_frame(frame, 2) == (
        b'id: 2\r\ndata: [1,"news","new",{"title":"x"},42,"aZ3f"]\r\n\r\n'
    )
    assert encode_frame(PING) == b"data: [7]\r\n\r\n"


@pytest.mark.parametrize("seq", [0, 1, 7, 10**15])
def test_encode_frame_equals_sse_starlette(seq: int) -> None:
    """The cached data block plus the id line is exactly sse-starlette's own encoding."""
    frame = msg_frame("note", {"text": "line1\nline2", "u": "\u2028é"})
    assert encode_frame(frame, seq) == ServerSentEvent(id=str(seq), data=frame.text).encode()


def test_encode_hello_has_retry() -> None:
    """The first event carries HELLO and the reconnect hint, with no id."""
    frame = hello_frame({"v": 1, "id": "c1", "transport": "sse", "heartbeat": 25000})
    assert encode_hello(frame, 1000) == (
        b'data: [0,{"v":1,"id":"c1","transport":"sse","heartbeat":25000}]\r\nretry: 1000\r\n\r\n'
    )


def test_injection_attempt_stays_one_event() -> None:
    """Data with newlines and fake fields cannot forge events: JSON escapes them."""
    evil = "a\n\ndata: forged\nid: 999\r\revent: x"
    frame = msg_frame("note", evil)
    events = SSEParser().feed(encode_frame(frame, 5))
    assert len(events) == 1
    assert events[0].last_event_id == "5"
    assert events[0].data == frame.text


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("0", 0), ("42", 42)])
def test_parse_last_event_id(value: str | None, expected: int | None) -> None:
    """Last-Event-ID is a sequence number, or absent."""
    assert parse_last_event_id(value) == expected


@pytest.mark.parametrize("value", ["-1", "1.5", "abc", "1" * 17, "١٢"])
def test_parse_last_event_id_refuses(value: str) -> None:
    """Anything but a short decimal number is refused."""
    with pytest.raises(ValueError):
        parse_last_event_id(value)


def test_parser_line_endings_and_fields() -> None:
    """CRLF, LF and CR all end lines; comments are skipped; multi-line data joins with LF."""
    parser = SSEParser()
    stream = b": comment\r\nretry: 1500\nid: 3\revent: hi\r\ndata: a\ndata: b\n\n"
    assert parser.feed(stream) == [SSEEvent("a\nb", "hi", "3", 1500)]
    assert parser.retry == 1500


def test_parser_chunk_boundaries() -> None:
    """Events split anywhere, including inside CRLF and a UTF-8 character, parse the same."""
    body = 'id: 9\r\ndata: [2,"é",1]\r\n\r\n'.encode()
    for cut in range(1, len(body)):
        parser = SSEParser()
        events = parser.feed(body[:cut]) + parser.feed(body[cut:])
        assert events == [SSEEvent('[2,"é",1]', "message", "9")], cut


def test_parser_ignores_events_without_data() -> None:
    """An event with no data lines dispatches nothing but still sets the last event id."""
    parser = SSEParser()
    assert parser.feed(b"id: 4\r\n\r\n") == []
    assert parser.last_event_id == "4"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.integers(0, 10**9), st.integers(1, 30))
def test_roundtrip_through_parser(text: str, seq: int, chunk: int) -> None:
    """Any payload framed by the server comes out of the parser intact, however it is chunked."""
    frame = msg_frame("e", text)
    body = encode_frame(frame, seq)
    parser = SSEParser()
    events = []
    for start in range(0, len(body), chunk):
        events += parser.feed(body[start : start + chunk])
    assert [(e.data, e.last_event_id) for e in events] == [(frame.text, str(seq))]
