"""The frame codec of wire protocol v1 (docs/protocol.md §2). Pure: no I/O, no awaits.

Server side:

* :func:`decode_client_frame` turns one WebSocket message (or one element of a POST batch) into
  a :data:`ClientFrame`; :func:`decode_batch` checks a whole POST body first.
* Server-to-client frames are :class:`OutFrame` objects, built once and shared by every
  recipient: each caches its JSON text, its UTF-8 bytes, its WebSocket message and its SSE body,
  so a publication is encoded once however many clients receive it.

Client side (the Python client): :func:`encode_client_frame` and :func:`decode_server_frame`.

Every decoder raises only :class:`~transports.exceptions.ProtocolError` (or its subclass
:class:`~transports.exceptions.PayloadTooBig`) on bad input.
"""

from __future__ import annotations

import base64
import binascii
import json
import json.encoder
import math
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, TypeAlias

from .errors import PayloadTooBig, ProtocolError
from .types import JSON, Data

__all__ = [
    "BINARY",
    "ClientFrame",
    "Close",
    "Event",
    "FrameType",
    "Hello",
    "Limits",
    "Msg",
    "OutFrame",
    "Ping",
    "Pong",
    "Position",
    "PresenceQuery",
    "Pub",
    "Publish",
    "Reply",
    "ServerFrame",
    "Subscribe",
    "Unsubscribe",
    "MAX_REASON_CHARS",
    "clip_reason",
    "close_frame",
    "decode_batch",
    "decode_client_frame",
    "decode_diagnose_publish",
    "decode_server_frame",
    "decode_server_value",
    "encode_client_frame",
    "encoded_msg_frame",
    "encoded_reply_frame",
    "encode_data",
    "encode_json",
    "hello_frame",
    "loads_strict",
    "msg_frame",
    "PING",
    "PONG",
    "PRESENCE_EVENTS",
    "pub_frame",
    "reply_frame",
    "DIAGNOSE_PREFIX",
    "diagnose_topic",
    "valid_topic",
]


class FrameType(IntEnum):
    """The first element of every frame."""

    HELLO = 0
    PUB = 1
    MSG = 2
    EVENT = 3
    REPLY = 4
    SUB = 5
    UNSUB = 6
    PING = 7
    PONG = 8
    CLOSE = 9
    PUBLISH = 10
    PRESENCE = 11


PRESENCE_EVENTS: Final = "$presence:"
"""Prefix of the reserved topic that carries a topic's joins and leaves (§12)."""

BINARY: Final = 16
"""Added to the type of a frame whose data is binary (docs/protocol.md §2.2)."""

MAX_REF: Final = 2**53 - 1
_MAX_INT_DIGITS: Final = 100
_NAME = re.compile(r"[A-Za-z0-9_\-.:/@=+]+")
_WS_BINARY_SEPARATOR: Final = b"\x00"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds every decoder enforces before it allocates (docs/protocol.md §11)."""

    max_message_size: int = 64 * 1024
    """Largest frame, in bytes."""
    max_body_size: int = 1024 * 1024
    """Largest POST body, in bytes."""
    max_batch: int = 100
    """Most frames in one POST."""
    max_depth: int = 32
    """Deepest nesting of arrays and objects inside ``data``."""
    max_topic_length: int = 200
    """Longest topic name, in bytes."""
    max_event_length: int = 100
    """Longest event name, in bytes."""


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class Position:
    """Where a client is in a topic: the topic's ``epoch`` and the last ``offset`` it processed."""

    epoch: str
    offset: int


# --- client -> server frames ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """EVENT: a client message for the application's handler of ``event``."""

    ref: int | str
    event: str
    data: Data


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUB: subscribe to ``topic``, replaying everything after ``since`` when given."""

    ref: int | str
    topic: str
    since: Position | None
    presence: bool = False
    """The SUB's ``options`` asked to follow the topic's presence (docs/protocol.md §12)."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUB: leave ``topic``."""

    ref: int | str
    topic: str


@dataclass(frozen=True, slots=True)
class Ping:
    """PING, from either side."""


@dataclass(frozen=True, slots=True)
class Pong:
    """PONG; a client may report the last sequence number it received (SSE)."""

    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH: ask the server to publish ``event``/``data`` on ``topic`` (if the app allows)."""

    ref: int | str
    topic: str
    event: str
    data: Data


@dataclass(frozen=True, slots=True)
class PresenceQuery:
    """PRESENCE: who is subscribed to ``topic`` now (docs/protocol.md §12)."""

    ref: int | str
    topic: str


@dataclass(frozen=True, slots=True)
class Close:
    """CLOSE: the session ends (either side)."""

    code: int
    reason: str


ClientFrame: TypeAlias = (
    Event | Subscribe | Unsubscribe | Ping | Pong | Publish | Close | PresenceQuery
)
"""A frame a client sends."""


# --- server -> client frames, decoded (for clients) --------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """HELLO: the first frame of a stream."""

    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Pub:
    """PUB: a publication on a topic, with its position."""

    topic: str
    event: str
    data: Data
    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Msg:
    """MSG: a message for this connection only."""

    event: str
    data: Data


@dataclass(frozen=True, slots=True)
class Reply:
    """REPLY: the answer to a client frame with the same ``ref``."""

    ref: int | str
    status: str
    data: Data


ServerFrame: TypeAlias = Hello | Pub | Msg | Reply | Ping | Pong | Close
"""A frame a server sends."""


class UnknownFrameType(ProtocolError):
    """A well-formed server frame whose type this client does not know (client side).

    A JSON array starting with an integer type code that is not in docs/protocol.md §2 (nor
    that code plus 16): a later protocol version may add frame types, and a client ignores
    them, as the browser client does. Raised by :func:`decode_server_frame` only; a frame with
    a known type and bad fields, or one that is not such an array, raises the plain
    :class:`~transports.exceptions.ProtocolError`.
    """

    def __init__(self, kind: int) -> None:
        super().__init__("bad_frame", "unknown server frame type")
        self.kind = kind


# --- JSON with limits -------------------------------------------------------------------


def _parse_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        raise ValueError("integer too long")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _parse_constant(text: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


_DECODER: Final = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)
# The same decoder's scanner with Python's own integer parsing (C, no call per integer), for a
# text in which no integer can be longer than _MAX_INT_DIGITS, and with no leading or trailing
# whitespace: the common case, decoded to the same value as _DECODER.decode would.
_SCAN: Final = json.JSONDecoder(  # type: ignore[attr-defined]  # set in __init__, untyped
    parse_float=_parse_float, parse_constant=_parse_constant
).scan_once
_LONG_DIGITS: Final = re.compile(f"[0-9]{{{_MAX_INT_DIGITS + 1}}}")


def _decode(text: str) -> Any:
    if _LONG_DIGITS.search(text) is None:
        try:
            value, end = _SCAN(text, 0)
        except Exception:  # whatever it is, the full decoder below says it exactly
            pass
        else:
            if end == len(text):
                return value
    return _DECODER.decode(text)


def _loads(text: str, max_depth: int) -> Any:
    try:
        value = _decode(text)
    except RecursionError:
        raise ProtocolError("bad_json", "JSON nested too deep") from None
    except ValueError:
        raise ProtocolError("bad_json", "body is not valid JSON") from None
    # Cheap bound first: a text with few brackets cannot be deep.
    if text.count("[") + text.count("{") > max_depth and _depth(value) > max_depth:
        raise ProtocolError("bad_json", "JSON nested too deep")
    return value


def loads_strict(text: str, max_depth: int) -> Any:
    """Parse JSON ``text`` as every decoder here does: no NaN or Infinity, no integer of more
    than 100 digits, at most ``max_depth`` levels of arrays and objects.

    Raises:
        ProtocolError: ``bad_json``.
    """
    return _loads(text, max_depth)


def _depth(value: Any) -> int:
    """Nesting depth of arrays/objects in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, list):
            level += 1
            stack.extend((child, level) for child in item)
        elif isinstance(item, dict):
            level += 1
            stack.extend((child, level) for child in item.values())
        else:
            continue
        deepest = max(deepest, level)
    return deepest


# What json.dumps(value, separators=(",", ":"), ensure_ascii=..., allow_nan=False) does, without
# building an encoder for every call (json.dumps does when given any argument).
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_ENCODE: Final = _ENCODER.encode
_ENCODE_ASCII: Final = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=True, allow_nan=False
).encode

# And the C encoder that _ENCODE builds for each call, built once, without the table of the
# containers being encoded that detects a circular reference (a shared table would keep stale
# entries after a failed encoding): a circular value ends in RecursionError instead, and is then
# encoded again by _ENCODE, which raises what json.dumps raises.
_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)  # None without the C module
_C_ENCODE: Final = (
    None
    if _MAKE_ENCODER is None
    else _MAKE_ENCODER(
        None,
        _ENCODER.default,
        json.encoder.encode_basestring,
        None,
        ":",
        ",",
        False,
        False,
        False,
    )
)


def encode_json(value: JSON) -> str:
    """Compact JSON text that is always valid UTF-8 when encoded.

    Non-ASCII text is kept as is; a string holding a lone surrogate (which JSON escapes let a
    client send) falls back to ``\\u`` escapes instead of failing later at ``.encode()``.

    Raises:
        TypeError, ValueError: ``value`` is not JSON-serializable (or holds NaN/Infinity).
    """
    if _C_ENCODE is None:
        text = _ENCODE(value)
    else:
        try:
            text = "".join(_C_ENCODE(value, 0))
        except RecursionError:
            text = _ENCODE(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _ENCODE_ASCII(value)
    return text


def encode_data(data: Data) -> tuple[str, bool]:
    """Encode a payload once: ``(JSON text, False)``, or ``(base64 text, True)`` for bytes."""
    if isinstance(data, bytes | bytearray | memoryview):
        return base64.b64encode(data).decode("ascii"), True
    return encode_json(data), False


def valid_topic(topic: str, limits: Limits = DEFAULT_LIMITS) -> bool:
    """True when ``topic`` follows docs/protocol.md §2.1 and is not reserved (``$...``)."""
    return (
        0 < len(topic) <= limits.max_topic_length
        and _NAME.fullmatch(topic) is not None
        and not topic.startswith("$")
    )


DIAGNOSE_PREFIX: Final = "$diagnose:"
"""Reserved topics of the optional diagnostics (docs/protocol.md §13): this prefix and an id."""
_DIAGNOSE_TOPIC = re.compile(r"\$diagnose:[A-Za-z0-9_-]{8,64}")


def diagnose_topic(topic: str) -> bool:
    """True when ``topic`` is a diagnostics topic: ``$diagnose:`` and 8-64 characters of
    ``A-Z a-z 0-9 _ -``. Such a topic is still reserved (:func:`valid_topic` refuses it); a
    server with diagnostics on lets clients subscribe to it (docs/protocol.md §13)."""
    return _DIAGNOSE_TOPIC.fullmatch(topic) is not None


_KNOWN_NAMES: set[str] = set()
"""Names that matched ``_NAME`` (a few hundred at most: an application's event names), so that
the pattern runs once per name rather than once per frame."""


def valid_event(name: Any, limits: Limits) -> bool:
    if not isinstance(name, str) or not 0 < len(name) <= limits.max_event_length:
        return False
    if name in _KNOWN_NAMES:
        return True
    if _NAME.fullmatch(name) is None:
        return False
    if len(_KNOWN_NAMES) < 512:
        _KNOWN_NAMES.add(name)
    return True


# --- server -> client: OutFrame ---------------------------------------------------------


class OutFrame:
    """A server-to-client frame, encoded once and shared by every recipient.

    ``text`` is the JSON text (binary data as base64). For a binary frame, ``binary_header``
    is the JSON text with ``null`` in the data position and ``payload`` the raw bytes, which is
    what a WebSocket binary message carries. Other forms are computed on first use and cached;
    ``sse`` is a cache the SSE carrier fills with the frame's event-stream block, encoded once
    and shared by every stream. ``closes`` marks a CLOSE frame: its carrier ends after it.
    """

    __slots__ = ("text", "payload", "binary_header", "closes", "sse", "born", "_utf8", "_size")

    def __init__(
        self,
        text: str,
        *,
        payload: bytes | None = None,
        binary_header: str = "",
        closes: bool = False,
    ) -> None:
        self.text = text
        self.payload = payload
        self.binary_header = binary_header
        self.closes = closes
        self.sse: bytes | None = None
        self.born = 0.0
        """For a live publication the hub samples, when this process built the frame
        (``time.monotonic()``); the carrier that writes it observes the delivery time. 0.0 for
        every other frame."""
        self._utf8: bytes | None = None
        self._size = -1

    @property
    def utf8(self) -> bytes:
        """The JSON text as UTF-8 bytes (long-poll bodies)."""
        if self._utf8 is None:
            self._utf8 = self.text.encode("utf-8")
        return self._utf8

    @property
    def size(self) -> int:
        """Bytes on a text transport (``len(utf8)``, without encoding an ASCII text)."""
        size = self._size
        if size < 0:
            text = self.text
            size = self._size = len(text) if text.isascii() else len(self.utf8)
        return size

    @property
    def ws(self) -> str | bytes:
        """The WebSocket message: text, or for binary data ``header + NUL + raw bytes``."""
        if self.payload is None:
            return self.text
        return self.binary_header.encode("utf-8") + _WS_BINARY_SEPARATOR + self.payload

    def __repr__(self) -> str:
        return f"OutFrame({self.text[:80]!r})"


def _quoted(name: str) -> str:
    # Topic and event names are validated to a JSON-safe ASCII alphabet.
    return '"' + name + '"'


def hello_frame(info: dict[str, Any]) -> OutFrame:
    """HELLO ``[0, info]``."""
    return OutFrame("[0," + encode_json(info) + "]")


def pub_frame(
    topic: str, event: str, data_text: str, binary: bool, offset: int, epoch: str
) -> OutFrame:
    """PUB ``[1, topic, event, data, offset, epoch]`` from an already-encoded payload.

    ``data_text`` and ``binary`` come from :func:`encode_data`, computed once at publish time.
    """
    head = "[" + str(FrameType.PUB + (BINARY if binary else 0)) + "," + _quoted(topic) + ","
    head += _quoted(event) + ","
    tail = "," + str(offset) + "," + encode_json(epoch) + "]"
    if not binary:
        return OutFrame(head + data_text + tail)
    return OutFrame(
        head + '"' + data_text + '"' + tail,
        payload=base64.b64decode(data_text),
        binary_header=head + "null" + tail,
    )


def _data_frame(prefix: list[JSON], kind: FrameType, data: Data) -> OutFrame:
    data_text, binary = encode_data(data)
    head = "[" + str(kind + (BINARY if binary else 0))
    for item in prefix:
        head += "," + encode_json(item)
    if not binary:
        return OutFrame(head + "," + data_text + "]")
    return OutFrame(
        head + ',"' + data_text + '"]',
        payload=bytes(data),
        binary_header=head + ",null]",
    )


def msg_frame(event: str, data: Data) -> OutFrame:
    """MSG ``[2, event, data]``."""
    return _data_frame([event], FrameType.MSG, data)


def reply_frame(ref: int | str, status: str, data: Data = None) -> OutFrame:
    """REPLY ``[4, ref, status, data]``."""
    return _data_frame([ref, status], FrameType.REPLY, data)


def encoded_reply_frame(ref: int | str, status: str, data_text: str, binary: bool) -> OutFrame:
    """REPLY ``[4, ref, status, data]`` from an already-encoded payload (the form the reply
    memory keeps for retries): ``data_text`` and ``binary`` as :func:`encode_data` made them.

    ``status`` is ``"ok"`` or an error code: plain ASCII that needs no JSON escaping.
    """
    ref_text = str(ref) if isinstance(ref, int) else encode_json(ref)
    if not binary:
        return OutFrame("[4," + ref_text + ',"' + status + '",' + data_text + "]")
    return _encoded_binary(
        "[" + str(FrameType.REPLY + BINARY) + "," + ref_text + ',"' + status + '",', data_text
    )


def encoded_msg_frame(event: str, data_text: str, binary: bool) -> OutFrame:
    """MSG ``[2, event, data]`` from an already-encoded payload (as :func:`encode_data` made
    it: what a direct message forwarded from another process carries)."""
    if not binary:
        return OutFrame("[2," + encode_json(event) + "," + data_text + "]")
    return _encoded_binary(
        "[" + str(FrameType.MSG + BINARY) + "," + encode_json(event) + ",", data_text
    )


def _encoded_binary(head: str, base64_text: str) -> OutFrame:
    """A binary frame from its header (up to the data) and its base64 payload: JSON text with
    the base64 in place, or a native binary message (header with ``null``, then the bytes)."""
    return OutFrame(
        head + '"' + base64_text + '"]',
        payload=base64.b64decode(base64_text),
        binary_header=head + "null]",
    )


MAX_REASON_CHARS: Final = 120
"""A close reason is cut to this many characters, and to 123 UTF-8 bytes (what a WebSocket
close frame can carry), on every transport."""


def clip_reason(reason: str) -> str:
    """``reason`` cut to at most 120 characters and 123 UTF-8 bytes."""
    reason = reason[:MAX_REASON_CHARS]
    while len(reason.encode("utf-8", "surrogatepass")) > 123:
        reason = reason[:-1]
    return reason


def close_frame(code: int, reason: str = "") -> OutFrame:
    """CLOSE ``[9, code, reason]``."""
    return OutFrame("[9," + str(int(code)) + "," + encode_json(reason) + "]", closes=True)


PING: Final = OutFrame("[7]")
"""The PING frame (shared)."""
PONG: Final = OutFrame("[8]")
"""The PONG frame (shared)."""


# --- server side: decoding client frames ------------------------------------------------


def _check_size(message: str | bytes, limit: int) -> None:
    size = len(message)
    # A str of n characters is between n and 4n bytes of UTF-8.
    if isinstance(message, str) and size * 4 > limit:
        size = len(message.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise PayloadTooBig(f"frame larger than {limit} bytes")


def _bad(message: str) -> ProtocolError:
    return ProtocolError("bad_frame", message)


def _ref(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= MAX_REF:
            return value
    elif isinstance(value, str) and 0 < len(value) <= 64:
        return value
    raise _bad("ref must be an integer 0..2^53-1 or a string of 1-64 characters")


def _topic_field(value: Any, limits: Limits) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= limits.max_topic_length:
        raise _bad("topic must be a string of 1-200 characters")
    return value


def _event_field(value: Any, limits: Limits) -> str:
    if not valid_event(value, limits):
        raise _bad("event must be a name of 1-100 characters from the topic alphabet")
    return str(value)


def _binary(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _bad("binary data must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("binary data is not valid base64") from None


def _parse_client(value: Any, raw: bytes | None, limits: Limits) -> ClientFrame:
    if not isinstance(value, list) or not value:
        raise _bad("a frame is a non-empty JSON array")
    kind = value[0]
    if not isinstance(kind, int) or isinstance(kind, bool):
        raise _bad("the frame type must be an integer")
    binary = kind >= BINARY
    base = kind - BINARY if binary else kind
    n = len(value)
    if base == FrameType.EVENT and n >= 4:
        ref, event = _ref(value[1]), _event_field(value[2], limits)
        return Event(ref, event, _data_field(value[3], binary, raw))
    if base == FrameType.PUBLISH and n >= 5:
        ref, topic = _ref(value[1]), _topic_field(value[2], limits)
        event = _event_field(value[3], limits)
        return Publish(ref, topic, event, _data_field(value[4], binary, raw))
    if binary or raw is not None:
        raise _bad("only EVENT and PUBLISH frames carry binary data")
    if base == FrameType.SUB and n >= 4:
        ref, topic, since = _ref(value[1]), _topic_field(value[2], limits), _since(value[3])
        options = value[4] if n >= 5 else None
        if options is not None and not isinstance(options, dict):
            raise _bad("SUB options must be an object")
        presence = isinstance(options, dict) and options.get("presence") is True
        return Subscribe(ref, topic, since, presence)
    if base == FrameType.PRESENCE and n >= 3:
        return PresenceQuery(_ref(value[1]), _topic_field(value[2], limits))
    if base == FrameType.UNSUB and n >= 3:
        return Unsubscribe(_ref(value[1]), _topic_field(value[2], limits))
    if base == FrameType.PING:
        return Ping()
    if base == FrameType.PONG:
        seq = value[1] if n >= 2 else None
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
            raise _bad("PONG seq must be a non-negative integer")
        return Pong(seq)
    if base == FrameType.CLOSE:
        code = value[1] if n >= 2 else 1000
        reason = value[2] if n >= 3 else ""
        if (
            not isinstance(code, int)
            or isinstance(code, bool)
            or not 1000 <= code <= 4999
            or not isinstance(reason, str)
            or len(reason) > 120
        ):
            raise _bad("CLOSE needs a code 1000-4999 and a reason of at most 120 characters")
        return Close(code, reason)
    raise _bad("unknown frame type or missing fields")


def _data_field(value: Any, binary: bool, raw: bytes | None) -> Data:
    if raw is not None:
        if value is not None or not binary:
            raise _bad("a binary message needs a binary frame type and null data")
        return raw
    if binary:
        return _binary(value)
    return value


def _since(value: Any) -> Position | None:
    if value is None:
        return None
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and 0 < len(value[0]) <= 64
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
        and 0 <= value[1] <= MAX_REF
    ):
        return Position(value[0], value[1])
    raise _bad("since must be null or [epoch, offset]")


def decode_client_frame(message: str | bytes, limits: Limits = DEFAULT_LIMITS) -> ClientFrame:
    """Decode one client frame: a WebSocket message, text or binary.

    A ``bytes`` message is either UTF-8 JSON, or ``header + NUL + raw bytes`` (§2.2).

    Raises:
        PayloadTooBig: the message is larger than ``limits.max_message_size``.
        ProtocolError: anything else wrong (``bad_json`` or ``bad_frame``).
    """
    _check_size(message, limits.max_message_size)
    raw: bytes | None = None
    if isinstance(message, bytes):
        head, sep, tail = message.partition(_WS_BINARY_SEPARATOR)
        if sep:
            raw = tail
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("bad_json", "frame is not valid UTF-8") from None
    else:
        text = message
    return _parse_client(_loads(text, limits.max_depth + 1), raw, limits)


def decode_batch(body: bytes, limits: Limits = DEFAULT_LIMITS) -> list[ClientFrame]:
    """Decode a ``POST /send`` body: a JSON array of 1..``max_batch`` client frames.

    The whole batch is checked before anything is returned, so a caller applies all or none.

    Raises:
        PayloadTooBig: body over ``max_body_size`` (``payload_too_large``), more than
            ``max_batch`` frames (``too_many_frames``), or one frame over ``max_message_size``.
        ProtocolError: ``bad_json`` or ``bad_frame``.
    """
    if len(body) > limits.max_body_size:
        raise PayloadTooBig(f"body larger than {limits.max_body_size} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("bad_json", "body is not valid UTF-8") from None
    value = _loads(text, limits.max_depth + 2)
    if not isinstance(value, list) or not value:
        raise _bad("the body is a non-empty JSON array of frames")
    if len(value) > limits.max_batch:
        raise PayloadTooBig(f"more than {limits.max_batch} frames", code="too_many_frames")
    frames = []
    check_each = len(body) > limits.max_message_size
    for item in value:
        if check_each:
            _check_size(encode_json(item), limits.max_message_size)
        frames.append(_parse_client(item, None, limits))
    return frames


def decode_diagnose_publish(body: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[str, str, Any]:
    """Decode a ``POST /diagnose/publish`` body (docs/protocol.md §13): a JSON object
    ``{"topic", "event", "data"}``; returns them. The topic and event are checked only for
    their type here (the engine checks the names).

    Raises:
        PayloadTooBig: the body is over ``max_message_size`` (the published frame's limit).
        ProtocolError: ``bad_json`` (not JSON, not an object, a field of the wrong type).
    """
    _check_size(body, limits.max_message_size)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("bad_json", "body is not valid UTF-8") from None
    value = _loads(text, limits.max_depth + 1)
    if not isinstance(value, dict):
        raise ProtocolError("bad_json", "the body is a JSON object")
    topic, event = value.get("topic"), value.get("event")
    if not isinstance(topic, str) or not isinstance(event, str):
        raise ProtocolError("bad_json", "topic and event must be strings")
    return topic, event, value.get("data")


# --- client side ------------------------------------------------------------------------


def encode_client_frame(frame: ClientFrame, *, binary_native: bool = False) -> str | bytes:
    """Encode a client frame: JSON text, or with ``binary_native`` a WebSocket binary message."""
    if isinstance(frame, Ping):
        return "[7]"
    if isinstance(frame, Pong):
        return "[8]" if frame.seq is None else "[8," + str(frame.seq) + "]"
    if isinstance(frame, Subscribe):
        since = None if frame.since is None else [frame.since.epoch, frame.since.offset]
        if frame.presence:
            return encode_json([FrameType.SUB, frame.ref, frame.topic, since, {"presence": True}])
        return encode_json([FrameType.SUB, frame.ref, frame.topic, since])
    if isinstance(frame, PresenceQuery):
        return encode_json([FrameType.PRESENCE, frame.ref, frame.topic])
    if isinstance(frame, Unsubscribe):
        return encode_json([FrameType.UNSUB, frame.ref, frame.topic])
    if isinstance(frame, Close):
        return encode_json([FrameType.CLOSE, frame.code, frame.reason])
    if isinstance(frame, Event):
        kind, prefix, data = FrameType.EVENT, [frame.ref, frame.event], frame.data
    else:
        kind, prefix, data = FrameType.PUBLISH, [frame.ref, frame.topic, frame.event], frame.data
    if isinstance(data, bytes | bytearray | memoryview):
        if binary_native:
            header = encode_json([kind + BINARY, *prefix, None])
            return header.encode("utf-8") + _WS_BINARY_SEPARATOR + bytes(data)
        return encode_json([kind + BINARY, *prefix, base64.b64encode(data).decode("ascii")])
    return encode_json([kind, *prefix, data])


_SERVER_KNOWN: Final = frozenset(int(kind) for kind in FrameType)
"""Frame types a v1 client knows (a client-to-server type from the server is malformed)."""


def decode_server_frame(message: str | bytes, max_depth: int = 64) -> ServerFrame:
    """Decode one server frame (for clients).

    Raises:
        UnknownFrameType: a well-formed frame of a type this version does not know (a client
            ignores it).
        ProtocolError: anything else wrong (not JSON, not an array starting with an integer
            type, missing fields).
    """
    raw: bytes | None = None
    if isinstance(message, bytes):
        head, sep, tail = message.partition(_WS_BINARY_SEPARATOR)
        raw = tail if sep else None
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("bad_json", "frame is not valid UTF-8") from None
    else:
        text = message
    return decode_server_value(_loads(text, max_depth), raw)


def decode_server_value(value: Any, raw: bytes | None = None) -> ServerFrame:
    """Decode one server frame already parsed from JSON (strictly, as :func:`_loads` does:
    no NaN, no over-long integers, bounded depth), for a body that holds several frames (a
    poll response, a ``POST /send`` answer): each frame is parsed once, with the body.
    ``raw`` is a binary WebSocket message's bytes after its header.

    Raises:
        UnknownFrameType, ProtocolError: as :func:`decode_server_frame`.
    """
    if (
        not isinstance(value, list)
        or not value
        or not isinstance(value[0], int)
        or isinstance(value[0], bool)
    ):
        raise _bad("a frame is a non-empty JSON array starting with its type")
    kind = value[0]
    binary = kind >= BINARY
    base = kind - BINARY if binary else kind
    if base not in _SERVER_KNOWN:
        raise UnknownFrameType(kind)
    try:
        if base == FrameType.HELLO:
            return Hello(dict(value[1]))
        if base == FrameType.PUB:
            data = _data_field(value[3], binary, raw)
            return Pub(str(value[1]), str(value[2]), data, int(value[4]), str(value[5]))
        if base == FrameType.MSG:
            return Msg(str(value[1]), _data_field(value[2], binary, raw))
        if base == FrameType.REPLY:
            return Reply(value[1], str(value[2]), _data_field(value[3], binary, raw))
        if base == FrameType.PING:
            return Ping()
        if base == FrameType.PONG:
            return Pong()
        if base == FrameType.CLOSE:
            return Close(int(value[1]), str(value[2]))
    except (IndexError, TypeError, ValueError):
        raise _bad("server frame is missing fields") from None
    raise _bad("a client frame type from the server")  # EVENT, SUB, UNSUB, PUBLISH, PRESENCE
