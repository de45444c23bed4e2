"""Process-wide hardening of the server stack under the extension (Hypercorn and wsproto).

Three gaps are closed here, all outside this library's own code:

* **Decompression bombs.** Hypercorn offers permessage-deflate to every client that asks, and
  wsproto inflates each read of compressed data without a size bound; Hypercorn checks the
  message size only afterwards. A 64 KiB read of compressed zeros therefore becomes 64 MiB in
  memory before anything refuses it. :func:`bound_websocket_inflation` makes wsproto's inflater
  stop one byte past the message size limit and discard the rest of that message, so the
  application receives a message one byte too long and refuses it the documented way (close
  1009, which tells the client not to retry); a message cut before its last frame is refused
  at once by :func:`close_oversized_websockets`. Failing the frame inside wsproto instead would
  make Hypercorn drop the connection without a close frame: a client would see 1006, reconnect
  and send the same message again.
* **Oversized messages pinning sockets.** When a message passes Hypercorn's own size limit
  (``websocket_max_message_size``, which :func:`transports.server.run.serve` lowers to the
  frame limit) Hypercorn sends close 1009 itself, without telling the application, and then
  breaks off handling that read's events: the client's close reply, when it came in the same
  read as the end of the oversized message, is never parsed, the assembly buffer keeps growing
  with the rest of the message, and nothing bounds the wait for a client that never answers.
  The TCP connection then stays open until the client goes away (issue 12).
  :func:`close_oversized_websockets` fixes that path.
* **Secrets in access logs.** WebSocket and EventSource URLs carry a connect ticket, and access
  logs print URLs. :func:`redact_access_logs` rewrites ``ticket=``/``token=`` values in
  Hypercorn's access log records.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import re
import textwrap
import zlib
from collections.abc import Callable
from typing import Any

log = logging.getLogger("transports")

__all__ = [
    "CLOSE_TIMEOUT",
    "KNOWN",
    "ORIGINALS",
    "PATCHED",
    "RedactSecrets",
    "bound_websocket_inflation",
    "close_oversized_websockets",
    "fingerprint",
    "redact_access_logs",
]

_limit = 0

CLOSE_TIMEOUT = 5.0
"""Seconds a refused WebSocket waits for the client's close reply before the server closes the
TCP connection anyway (the same bound as a close the application starts)."""


# --- the adapter: every patch of a private method goes through here --------------------------

PATCHED: dict[str, bool] = {}
"""``"Owner.method"`` -> whether the replacement is in place (False: skipped, see below)."""
ORIGINALS: dict[str, Callable[..., Any]] = {}
"""``"Owner.method"`` -> the method a replacement took the place of."""

KNOWN: dict[str, frozenset[str]] = {
    # wsproto 1.2 - 1.3.2
    "PerMessageDeflate.frame_inbound_payload_data": frozenset({"15ec722286f6bbcd"}),
    "PerMessageDeflate.frame_inbound_complete": frozenset({"060e5d35ad72a2f7"}),
    # Hypercorn 0.17 - 0.18
    "WSStream._handle_events": frozenset({"3a32ba6592e09f19"}),
}
"""Fingerprints of the private methods the patches were written against. A release that
changes one of them makes :func:`fingerprint` differ: the patch is then skipped with a warning
(rather than replace code it was not written for), and tests/test_hardening.py fails until
this module is reviewed against the new release."""


def fingerprint(function: Callable[..., Any]) -> str:
    """A short hash of ``function``'s source (what a patch was written against)."""
    source = textwrap.dedent(inspect.getsource(function))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _known(owner: type, name: str) -> bool:
    """Whether ``owner.name`` is the code a patch was written against (or already patched)."""
    key = f"{owner.__name__}.{name}"
    return bool(PATCHED.get(key)) or fingerprint(getattr(owner, name)) in KNOWN.get(
        key, frozenset()
    )


def _replace(owner: type, name: str, replacement: Callable[..., Any] | None) -> bool:
    """Replace ``owner.name`` with ``replacement`` if it is the code the patch knows (None:
    only record that it is not).

    Returns whether the replacement is in place. Idempotent."""
    key = f"{owner.__name__}.{name}"
    if PATCHED.get(key):
        return True
    found = fingerprint(getattr(owner, name))
    if replacement is None or found not in KNOWN.get(key, frozenset()):
        log.warning(
            "hardening of %s skipped: this release changed it (fingerprint %s); the protection "
            "is off until transports/server/hardening.py is reviewed for it",
            key,
            found,
        )
        PATCHED[key] = False
        return False
    ORIGINALS[key] = getattr(owner, name)
    setattr(owner, name, replacement)
    PATCHED[key] = True
    return True


def bound_websocket_inflation(limit: int) -> None:
    """Bound wsproto's permessage-deflate inflation to ``limit`` bytes per message.

    Idempotent; with several apps in one process the largest limit wins. Affects every wsproto
    connection in the process, which only ever makes it stricter than unbounded.
    """
    global _limit
    try:
        from wsproto.extensions import PerMessageDeflate
        from wsproto.frame_protocol import CloseReason
    except ImportError:  # pragma: no cover - wsproto comes with Hypercorn
        return
    _limit = max(_limit, limit)
    if PATCHED.get("PerMessageDeflate.frame_inbound_complete") is not None:
        return  # already applied (or skipped) in this process
    original_complete = PerMessageDeflate.frame_inbound_complete

    def frame_inbound_payload_data(self: Any, proto: Any, data: bytes) -> Any:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        if getattr(self, "_transports_over", False):
            return b""  # past the limit: the rest of this message is dropped unread
        used = getattr(self, "_transports_inflated", 0)
        try:
            out = self._decompressor.decompress(bytes(data), _limit - used + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        used += len(out)
        self._transports_inflated = used
        if used > _limit or self._decompressor.unconsumed_tail:
            # One byte past the limit is enough for the application to refuse the message
            # (1009); the connection closes right after, so the inflater's state no longer
            # matters.
            self._transports_over = True
        return out

    def frame_inbound_complete(self: Any, proto: Any, fin: bool) -> Any:
        if getattr(self, "_transports_over", False):
            if fin:
                self._transports_over = False
                self._transports_inflated = 0
                self._inbound_compressed = None
            return None
        if fin:
            self._transports_inflated = 0
        return original_complete(self, proto, fin)

    # Both or neither: the two replacements work together.
    if _known(PerMessageDeflate, "frame_inbound_payload_data") and _known(
        PerMessageDeflate, "frame_inbound_complete"
    ):
        _replace(PerMessageDeflate, "frame_inbound_payload_data", frame_inbound_payload_data)
        _replace(PerMessageDeflate, "frame_inbound_complete", frame_inbound_complete)
    else:
        _replace(PerMessageDeflate, "frame_inbound_payload_data", None)
        _replace(PerMessageDeflate, "frame_inbound_complete", None)


def _inflated_past_limit(connection: Any) -> bool:
    """Whether :func:`bound_websocket_inflation` cut the message ``connection`` is receiving."""
    proto = getattr(connection, "_proto", None)  # wsproto's FrameProtocol
    return any(getattr(ext, "_transports_over", False) for ext in getattr(proto, "extensions", ()))


def close_oversized_websockets() -> None:
    """Make Hypercorn's refusal of an oversized WebSocket message end the connection.

    Replaces ``WSStream._handle_events`` (Hypercorn 0.17/0.18) with the same loop, changed only
    where a message passes ``websocket_max_message_size``: Hypercorn still sends close 1009
    (at once, while the message is still arriving), then

    * frees the assembly buffer and drops the rest of that message and every later one unread
      (the connection is closing; before, the buffer kept growing with the whole message);
    * keeps handling the read's other events instead of ``break``-ing out of them, so the
      client's close reply is seen and Hypercorn closes the TCP connection as it does for any
      completed closing handshake (before, a reply in the same read as the message's tail was
      never parsed and the socket stayed open until the client went away);
    * closes the TCP connection after :data:`CLOSE_TIMEOUT` seconds if the client never replies.

    Either way the application learns of it as of a dropped connection (Hypercorn's
    ``websocket.disconnect`` with 1006), when the connection ends.

    A deflated message that :func:`bound_websocket_inflation` cut before its last frame is
    refused the same way, at once (before, the rest was dropped unread for as long as the client
    kept sending, so a message that never ends held the socket); one whose last frame crosses
    the limit still reaches the application one byte too long, which refuses it.

    Idempotent; a no-op without Hypercorn (or a ``WSStream._handle_events`` to replace).
    Affects every Hypercorn WebSocket in the process (only its oversized-message path).
    """
    try:
        from hypercorn.protocol.ws_stream import WSStream
    except ImportError:  # pragma: no cover - Hypercorn is a dependency
        return
    if not hasattr(WSStream, "_handle_events"):
        log.warning("hardening of WSStream._handle_events skipped: this Hypercorn has none")
        PATCHED["WSStream._handle_events"] = False
        return
    _replace(WSStream, "_handle_events", _closing_handle_events())


def _closing_handle_events() -> Callable[..., Any]:
    """Hypercorn's ``WSStream._handle_events``, with the oversized-message path changed (see
    :func:`close_oversized_websockets`)."""
    from hypercorn.protocol.events import StreamClosed
    from hypercorn.protocol.ws_stream import FrameTooLargeError
    from wsproto.connection import ConnectionState
    from wsproto.events import CloseConnection, Message, Ping
    from wsproto.frame_protocol import CloseReason

    async def close_after_timeout(self: Any) -> None:
        # Polls rather than sleeping the whole timeout: the task lives in the connection's task
        # group, which waits for it, so it ends soon after the connection does.
        for _ in range(int(CLOSE_TIMEOUT * 10)):
            if self.closed:
                return
            await self.context.sleep(0.1)
        if not self.closed:
            await self.send(StreamClosed(stream_id=self.stream_id))  # Hypercorn closes TCP

    async def _handle_events(self: Any) -> None:
        for event in self.connection.events():
            if isinstance(event, Message):
                if getattr(self, "_transports_refused", False):
                    continue  # the rest of the refused message, or a later one: dropped
                try:
                    self.buffer.extend(event)
                    if not event.message_finished and _inflated_past_limit(self.connection):
                        # A deflated message the bounded inflater found over the limit: refuse
                        # it now, as a plain one, rather than read it for as long as it lasts.
                        raise FrameTooLargeError
                except FrameTooLargeError:
                    self.buffer.clear()
                    self._transports_refused = True
                    await self._send_wsproto_event(
                        CloseConnection(code=CloseReason.MESSAGE_TOO_BIG)
                    )
                    self.task_group.spawn(close_after_timeout, self)
                    continue  # Hypercorn breaks here, leaving the close reply unparsed
                if event.message_finished:
                    await self.app_put(self.buffer.to_message())
                    self.buffer.clear()
            elif isinstance(event, Ping):
                await self._send_wsproto_event(event.response())
            elif isinstance(event, CloseConnection):
                if self.connection.state == ConnectionState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                await self.send(StreamClosed(stream_id=self.stream_id))

    return _handle_events


_SECRET = re.compile(r"\b(ticket|token|access_token|session)=[^&\s\"']+")


class RedactSecrets(logging.Filter):
    """Replaces ``ticket=...``/``token=...`` in log messages with ``[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "=" in message and _SECRET.search(message):
            record.msg = _SECRET.sub(r"\1=[redacted]", message)
            record.args = None
        return True


def redact_access_logs() -> None:
    """Install :class:`RedactSecrets` on Hypercorn's access and error loggers (idempotent)."""
    for name in ("hypercorn.access", "hypercorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
