"""Server-Sent Events framing (docs/protocol.md §5). Pure: no I/O, no awaits.

The server side encodes with sse-starlette in the SSE carrier (``transports.carriers.sse``), so
the pure core does not load starlette; here are the response headers, the ``Last-Event-ID``
parser and :class:`SSEParser`, an incremental parser that follows the WHATWG "event stream
interpretation" rules, for the Python client and the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "SSE_HEADERS",
    "SSEEvent",
    "SSEParser",
    "parse_last_event_id",
]

SSE_HEADERS: Final[dict[str, str]] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store, no-transform",
    "X-Accel-Buffering": "no",
}
"""Response headers of an SSE stream: no caching, no transformation, no proxy buffering."""

_LINE_END: Final = re.compile(r"\r\n|\r|\n")


def parse_last_event_id(value: str | None) -> int | None:
    """The sequence number in a ``Last-Event-ID`` header or ``lastEventId`` parameter.

    Returns ``None`` when absent or empty. Raises :class:`ValueError` when it is not a
    non-negative decimal integer of at most 16 digits.
    """
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 16:
        raise ValueError("Last-Event-ID must be a sequence number")
    return int(value)


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its ``data``, ``event`` type, the stream's ``last_event_id``."""

    data: str
    event: str
    last_event_id: str
    retry: int | None = None


class SSEParser:
    """Incremental WHATWG event-stream parser.

    Feed bytes with :meth:`feed`; it returns the events completed by those bytes. Lines end with
    CRLF, LF or CR; comments are ignored; ``id`` containing NUL is ignored; ``retry`` must be
    digits. A ``retry:`` field is reported on the next dispatched event.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._decoder_pending = b""
        self._data: list[str] = []
        self._event = ""
        self._retry: int | None = None
        self._cr_pending = False
        self.last_event_id = ""
        self.retry: int | None = None
        self._first = True

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume ``chunk``; return every event it completes."""
        raw = self._decoder_pending + chunk
        try:
            text = raw.decode("utf-8")
            self._decoder_pending = b""
        except UnicodeDecodeError as exc:
            if exc.start >= len(raw) - 3:  # an incomplete character at the end
                text = raw[: exc.start].decode("utf-8", "replace")
                self._decoder_pending = raw[exc.start :]
            else:
                text = raw.decode("utf-8", "replace")
                self._decoder_pending = b""
        if self._first and text:
            self._first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._cr_pending and text.startswith("\n"):
            text = text[1:]
        self._cr_pending = False
        self._buffer += text
        parts = _LINE_END.split(self._buffer)
        self._buffer = parts.pop()  # the unfinished last line
        if parts and self._buffer == "" and text.endswith("\r"):
            self._cr_pending = True  # a CRLF may be split across chunks
        events: list[SSEEvent] = []
        for line in parts:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif field == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
                self._retry = self.retry
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(
            "\n".join(self._data), self._event or "message", self.last_event_id, self._retry
        )
        self._data = []
        self._event = ""
        self._retry = None
        return event
