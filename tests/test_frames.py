"""The frame codec against exact bytes (docs/protocol.md §2)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from transports.exceptions import PayloadTooBig, ProtocolError
from transports.protocol.frames import (
    PING,
    Close,
    Event,
    Hello,
    Limits,
    Msg,
    Ping,
    Pong,
    Position,
    Pub,
    Publish,
    Reply,
    Subscribe,
    Unsubscribe,
    close_frame,
    decode_batch,
    decode_client_frame,
    decode_server_frame,
    encode_client_frame,
    encode_data,
    encode_json,
    hello_frame,
    msg_frame,
    pub_frame,
    reply_frame,
    valid_topic,
)


@pytest.mark.parametrize(
    ("text", "frame"),
    [
        ('[3,1,"chat.send",{"text":"hi"}]', Event(1, "chat.send", {"text": "hi"})),
        ('[3,"a-ref","x",null]', Event("a-ref", "x", None)),
        ('[5,2,"news",null]', Subscribe(2, "news", None)),
        ('[5,2,"news",["aZ3f",41]]', Subscribe(2, "news", Position("aZ3f", 41))),
        ('[6,3,"news"]', Unsubscribe(3, "news")),
        ("[7]", Ping()),
        ("[8]", Pong(None)),
        ("[8,12]", Pong(12)),
        ('[10,4,"room:1","say",[1,2]]', Publish(4, "room:1", "say", [1, 2])),
        ('[19,5,"upload","AAEC/w=="]', Event(5, "upload", b"\x00\x01\x02\xff")),
        ('[3,1,"x",1,"extra",true]', Event(1, "x", 1)),
    ],
)
def test_decode_client_frame(text: str, frame: object) -> None:
    """Every client frame type decodes to its value; extra trailing elements are ignored."""
    assert decode_client_frame(text) == frame
    assert decode_client_frame(text.encode()) == frame


def test_decode_binary_websocket_message() -> None:
    """A binary WebSocket message is JSON header, NUL, then raw bytes (which may contain NUL)."""
    message = b'[19,7,"upload",null]\x00\x00\x01\x02\xff'
    assert decode_client_frame(message) == Event(7, "upload", b"\x00\x01\x02\xff")


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("this is not a protocol frame", "bad_json"),
        ("{}", "bad_frame"),
        ("[]", "bad_frame"),
        ('"x"', "bad_frame"),
        ("[99]", "bad_frame"),
        ('["3",1,"x",null]', "bad_frame"),
        ("[true]", "bad_frame"),
        ('[3,-1,"x",null]', "bad_frame"),
        ('[3,9007199254740992,"x",null]', "bad_frame"),
        ('[3,true,"x",null]', "bad_frame"),
        ('[3,1,"",null]', "bad_frame"),
        ('[3,1,"has space",null]', "bad_frame"),
        ('[3,1,"x"]', "bad_frame"),
        ("[3,1,5,null]", "bad_frame"),
        ('[5,1,"t",[1,2]]', "bad_frame"),
        ('[5,1,"t","nope"]', "bad_frame"),
        ('[5,1,"",null]', "bad_frame"),
        ('[19,1,"x","!!notbase64"]', "bad_frame"),
        ('[19,1,"x",12]', "bad_frame"),
        ('[21,1,"t",null]', "bad_frame"),
        ("[8,-1]", "bad_frame"),
        ('[3,1,"x",NaN]', "bad_json"),
        ('[3,1,"x",Infinity]', "bad_json"),
        ('[3,1,"x",1e999]', "bad_json"),
        ('[3,1,"x",' + "1" * 101 + "]", "bad_json"),
        ('[3,1,"x",' + "1" * 5000 + "]", "bad_json"),
        ('[3,1,"x",{"a":1}', "bad_json"),
    ],
)
def test_decode_client_frame_refuses(message: str, code: str) -> None:
    """Malformed frames raise ProtocolError with the documented code, never anything else."""
    with pytest.raises(ProtocolError) as info:
        decode_client_frame(message)
    assert info.value.code == code


def test_binary_message_without_binary_type_refused() -> None:
    """Raw bytes after NUL need a binary frame type and null data."""
    with pytest.raises(ProtocolError):
        decode_client_frame(b'[3,7,"upload",null]\x00abc')
    with pytest.raises(ProtocolError):
        decode_client_frame(b'[19,7,"upload","AA=="]\x00abc')
    with pytest.raises(ProtocolError):
        decode_client_frame(b'[5,7,"t",null]\x00abc')


def test_invalid_utf8_refused() -> None:
    """A binary WebSocket message whose JSON part is not UTF-8 is bad_json."""
    with pytest.raises(ProtocolError) as info:
        decode_client_frame(b'[3,1,"x","\xff\xfe"]')
    assert info.value.code == "bad_json"


def test_depth_limit() -> None:
    """Data nested deeper than max_depth is refused; exactly max_depth is accepted."""
    limits = Limits(max_depth=4)
    ok = '[3,1,"x",' + "[" * 4 + "]" * 4 + "]"
    assert decode_client_frame(ok, limits) == Event(1, "x", [[[[]]]])
    deep = '[3,1,"x",' + "[" * 5 + "]" * 5 + "]"
    with pytest.raises(ProtocolError) as info:
        decode_client_frame(deep, limits)
    assert info.value.code == "bad_json"


def test_deep_nesting_attack_is_fast_and_contained() -> None:
    """10^5 levels of nesting is refused with bad_json, not RecursionError."""
    text = '[3,1,"x",' + "[" * 100_000 + "]" * 100_000 + "]"
    with pytest.raises(ProtocolError) as info:
        decode_client_frame(text, Limits(max_message_size=1 << 20))
    assert info.value.code == "bad_json"


def test_size_limit_boundary() -> None:
    """A frame of exactly the limit passes; one byte more is PayloadTooBig."""
    limits = Limits(max_message_size=64)
    base = '[3,1,"x","' + "a" * 50 + '"]'
    exact = base.replace("a" * 50, "a" * (50 + 64 - len(base)))
    assert len(exact) == 64
    assert isinstance(decode_client_frame(exact, limits), Event)
    over = exact.replace('"]', 'a"]')
    with pytest.raises(PayloadTooBig):
        decode_client_frame(over, limits)
    # Multi-byte characters count as bytes, not characters.
    wide = '[3,1,"x","' + "é" * 30 + '"]'
    assert len(wide) < 64 < len(wide.encode())
    with pytest.raises(PayloadTooBig):
        decode_client_frame(wide, limits)


def test_decode_batch() -> None:
    """A POST body is an array of frames, checked whole before anything is returned."""
    body = b'[[3,7,"chat.send",{"text":"hi"}],[5,8,"news",["aZ3f",41]]]'
    assert decode_batch(body) == [
        Event(7, "chat.send", {"text": "hi"}),
        Subscribe(8, "news", Position("aZ3f", 41)),
    ]


@pytest.mark.parametrize(
    ("body", "error", "code"),
    [
        (b"", ProtocolError, "bad_json"),
        (b"[]", ProtocolError, "bad_frame"),
        (b"{}", ProtocolError, "bad_frame"),
        (b"[[7],[3]]", ProtocolError, "bad_frame"),
        (b'[[7],"x"]', ProtocolError, "bad_frame"),
        (b"\xff[[7]]", ProtocolError, "bad_json"),
        (b"[" + b",".join([b"[7]"] * 101) + b"]", PayloadTooBig, "too_many_frames"),
    ],
)
def test_decode_batch_refuses(body: bytes, error: type[ProtocolError], code: str) -> None:
    """Bad batches fail as a whole with the documented code."""
    with pytest.raises(error) as info:
        decode_batch(body)
    assert info.value.code == code


def test_decode_batch_body_and_frame_limits() -> None:
    """The body limit and the per-frame limit both apply."""
    limits = Limits(max_message_size=40, max_body_size=100)
    with pytest.raises(PayloadTooBig) as info:
        decode_batch(b"[" + b"[7]," * 40 + b"[7]]", limits)
    assert info.value.code == "payload_too_large"
    big_frame = b'[[3,1,"x","' + b"a" * 40 + b'"]]'
    with pytest.raises(PayloadTooBig):
        decode_batch(big_frame, limits)


def test_server_frames_exact_text() -> None:
    """Server frames are compact JSON with the documented layouts."""
    assert hello_frame({"v": 1, "id": "abc"}).text == '[0,{"v":1,"id":"abc"}]'
    data_text, binary = encode_data({"title": "Build passed"})
    frame = pub_frame("news", "new", data_text, binary, 42, "aZ3f")
    assert frame.text == '[1,"news","new",{"title":"Build passed"},42,"aZ3f"]'
    assert frame.ws == frame.text
    assert msg_frame("note", [1, "é"]).text == '[2,"note",[1,"é"]]'
    assert reply_frame(7, "ok", None).text == '[4,7,"ok",null]'
    assert reply_frame("r1", "ok", {"a": 1}).text == '[4,"r1","ok",{"a":1}]'
    assert close_frame(4008, "slow").text == '[9,4008,"slow"]'
    assert PING.text == "[7]"


def test_binary_server_frames() -> None:
    """Binary data: base64 in the text form, header + NUL + raw bytes on WebSocket."""
    data_text, binary = encode_data(b"\x00\xff")
    assert (data_text, binary) == ("AP8=", True)
    frame = pub_frame("files", "blob", data_text, binary, 3, "e1")
    assert frame.text == '[17,"files","blob","AP8=",3,"e1"]'
    assert frame.ws == b'[17,"files","blob",null,3,"e1"]\x00\x00\xff'
    reply = reply_frame(9, "ok", b"\x01")
    assert reply.text == '[20,9,"ok","AQ=="]'
    assert reply.ws == b'[20,9,"ok",null]\x00\x01'
    assert decode_server_frame(reply.ws) == Reply(9, "ok", b"\x01")
    assert decode_server_frame(reply.text) == Reply(9, "ok", b"\x01")


def test_lone_surrogate_is_still_valid_utf8() -> None:
    """A string with a lone surrogate (legal in JSON escapes) encodes to valid UTF-8."""
    frame = decode_client_frame('[3,1,"x","\\ud800"]')
    assert isinstance(frame, Event)
    out = msg_frame("echo", frame.data)
    assert out.utf8 == b'[2,"echo","\\ud800"]'
    assert json.loads(out.utf8)[2] == "\ud800"


@pytest.mark.parametrize(
    ("frame", "text"),
    [
        (Event(1, "chat.send", {"t": 1}), '[3,1,"chat.send",{"t":1}]'),
        (Subscribe(2, "news", None), '[5,2,"news",null]'),
        (Subscribe(2, "news", Position("e", 4)), '[5,2,"news",["e",4]]'),
        (Unsubscribe(3, "news"), '[6,3,"news"]'),
        (Ping(), "[7]"),
        (Pong(5), "[8,5]"),
        (Publish(4, "t", "e", "d"), '[10,4,"t","e","d"]'),
        (Event(5, "up", b"\x01\x02"), '[19,5,"up","AQI="]'),
    ],
)
def test_encode_client_frame_roundtrip(frame: object, text: str) -> None:
    """Client frames encode to the documented text and decode back to the same value."""
    assert encode_client_frame(frame) == text  # type: ignore[arg-type]
    assert decode_client_frame(text) == frame


def test_encode_client_frame_binary_native() -> None:
    """With binary_native, binary EVENTs become WebSocket binary messages."""
    message = encode_client_frame(Event(5, "up", b"\x00\x01"), binary_native=True)
    assert message == b'[19,5,"up",null]\x00\x00\x01'
    assert decode_client_frame(message) == Event(5, "up", b"\x00\x01")


def test_decode_server_frames() -> None:
    """Clients decode every server frame type."""
    assert decode_server_frame('[0,{"v":1}]') == Hello({"v": 1})
    assert decode_server_frame('[1,"t","e",{"a":1},3,"ep"]') == Pub("t", "e", {"a": 1}, 3, "ep")
    assert decode_server_frame('[2,"e",null]') == Msg("e", None)
    assert decode_server_frame('[4,1,"unknown_event",{"message":"m"}]') == Reply(
        1, "unknown_event", {"message": "m"}
    )
    assert decode_server_frame("[7]") == Ping()
    assert decode_server_frame("[8]") == Pong()
    assert decode_server_frame('[9,4008,"slow"]') == Close(4008, "slow")
    for bad in ("[1]", "[42]", '["x"]', "nope"):
        with pytest.raises(ProtocolError):
            decode_server_frame(bad)


def test_valid_topic() -> None:
    """Topic names: the documented alphabet, 1-200 bytes, '$' reserved."""
    assert valid_topic("user:42")
    assert valid_topic("a/b.c-d_e@f=g+h")
    assert not valid_topic("")
    assert not valid_topic("$sys")
    assert not valid_topic("has space")
    assert not valid_topic("x" * 201)
    assert not valid_topic("new\nline")


def test_encode_json_refuses_nan() -> None:
    """NaN cannot be published: the encoder refuses it rather than emit invalid JSON."""
    with pytest.raises(ValueError):
        encode_json(float("nan"))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decode_client_frame_never_raises_foreign_errors(message: bytes) -> None:
    """Arbitrary bytes either decode or raise the library's ProtocolError: nothing else."""
    try:
        decode_client_frame(message)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_decode_text_never_raises_foreign_errors(message: str) -> None:
    """Arbitrary text either decodes or raises ProtocolError."""
    try:
        decode_client_frame(message)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(_json_values, max_size=6))
def test_decode_batch_of_arbitrary_json(items: list[object]) -> None:
    """Arbitrary JSON arrays as POST bodies decode or raise ProtocolError."""
    try:
        decode_batch(json.dumps(items).encode())
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(_json_values, st.integers(0, 2**53 - 1))
def test_event_roundtrip(data: object, ref: int) -> None:
    """Any JSON payload survives encode -> decode unchanged."""
    frame = Event(ref, "evt", data)
    assert decode_client_frame(encode_client_frame(frame)) == frame
