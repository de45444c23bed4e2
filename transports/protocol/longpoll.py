"""Long-poll bodies (docs/protocol.md §6). Pure: no I/O, no awaits.

A poll response is ``{"cursor": N, "frames": [...]}``, assembled from the frames' cached UTF-8
bytes without decoding or re-encoding them, as is the answer of a ``POST /send`` that carries
its replies (``{"frames": [...]}``, §6.2). The uplink body (``POST /send``) is decoded by
:func:`transports.protocol.frames.decode_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ProtocolError
from .frames import OutFrame, ServerFrame, UnknownFrameType, decode_server_value, loads_strict

__all__ = [
    "PollResponse",
    "decode_poll",
    "decode_send_answer",
    "encode_batch",
    "encode_poll",
    "encode_send_answer",
    "parse_cursor",
]


_BODY_DEPTH = 64 + 2
"""Deepest nesting in a poll response or send answer: a frame's (as a client decodes one
alone) inside the body's object and its ``frames`` array."""


def encode_poll(cursor: int, frames: Sequence[OutFrame]) -> bytes:
    """The body of a poll response: every frame after the request's cursor, up to ``cursor``."""
    return b'{"cursor":%d,"frames":[' % cursor + b",".join(f.utf8 for f in frames) + b"]}"


def encode_send_answer(frames: Sequence[OutFrame]) -> bytes:
    """The body of a ``POST /send`` answer that carries the batch's replies (§6.2)."""
    return b'{"frames":[' + b",".join(f.utf8 for f in frames) + b"]}"


def parse_cursor(value: str | None) -> int:
    """The ``cursor`` query parameter: a non-negative integer of at most 16 digits.

    Raises:
        ProtocolError: ``bad_request`` when missing or malformed.
    """
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 16:
        raise ProtocolError("bad_request", "cursor must be a non-negative integer")
    return int(value)


@dataclass(frozen=True, slots=True)
class PollResponse:
    """A decoded poll response (client side)."""

    cursor: int
    frames: list[ServerFrame]
    skipped: int = 0
    """Well-formed frames of a type this client does not know, left out (protocol §2)."""


def decode_poll(body: bytes) -> PollResponse:
    """Decode a poll response (client side), leaving out frames of unknown types.

    Raises:
        ProtocolError: the body or one of its frames is malformed.
    """
    value = _json_object(body, "poll response")
    if (
        not isinstance(value.get("cursor"), int)
        or isinstance(value["cursor"], bool)
        or not isinstance(value.get("frames"), list)
    ):
        raise ProtocolError("bad_frame", "poll response needs cursor and frames")
    frames, skipped = _server_frames(value["frames"], "poll response")
    return PollResponse(value["cursor"], frames, skipped)


def decode_send_answer(body: bytes) -> list[ServerFrame]:
    """The frames of a ``POST /send`` answer that carries replies (client side, §6.2),
    leaving out frames of unknown types.

    Raises:
        ProtocolError: the body or one of its frames is malformed.
    """
    value = _json_object(body, "send answer")
    if not isinstance(value.get("frames"), list):
        raise ProtocolError("bad_frame", "send answer needs frames")
    return _server_frames(value["frames"], "send answer")[0]


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    # Parsed once and strictly (no NaN, bounded integers and depth: what decoding each frame
    # alone would refuse), then each frame decoded from its parsed value.
    try:
        value: Any = loads_strict(body.decode("utf-8"), _BODY_DEPTH)
    except (ProtocolError, UnicodeDecodeError):
        raise ProtocolError("bad_json", what + " is not JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError("bad_frame", what + " must be an object")
    return value


def _server_frames(items: list[Any], what: str) -> tuple[list[ServerFrame], int]:
    """Decoded frames, and how many of an unknown type were left out."""
    frames: list[ServerFrame] = []
    skipped = 0
    for item in items:
        try:
            frames.append(decode_server_value(item))
        except UnknownFrameType:
            skipped += 1
    return frames, skipped


def encode_batch(frames: Sequence[str]) -> bytes:
    """A ``POST /send`` body from encoded text frames (client side)."""
    return ("[" + ",".join(frames) + "]").encode("utf-8")
