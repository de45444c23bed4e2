"""Process-wide hardening of the server stack under the extension (Hypercorn and wsproto).

Two gaps are closed here, both outside this library's own code:

* **Decompression bombs.** Hypercorn offers permessage-deflate to every client that asks, and
  wsproto inflates each read of compressed data without a size bound; Hypercorn checks the
  message size only afterwards. A 64 KiB read of compressed zeros therefore becomes 64 MiB in
  memory before anything refuses it. :func:`bound_websocket_inflation` makes wsproto's inflater
  stop one byte past the message size limit and discard the rest of that message, so the
  application receives a message one byte too long and refuses it the documented way (close
  1009, which tells the client not to retry). Failing the frame inside wsproto instead would
  make Hypercorn drop the connection without a close frame: a client would see 1006, reconnect
  and send the same message again.
* **Secrets in access logs.** WebSocket and EventSource URLs carry a connect ticket, and access
  logs print URLs. :func:`redact_access_logs` rewrites ``ticket=``/``token=`` values in
  Hypercorn's access log records.
"""

from __future__ import annotations

import logging
import re
import zlib
from typing import Any

__all__ = ["RedactSecrets", "bound_websocket_inflation", "redact_access_logs"]

_limit = 0


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
    if getattr(PerMessageDeflate, "_transports_bounded", False):
        return
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

    PerMessageDeflate.frame_inbound_payload_data = frame_inbound_payload_data  # type: ignore[method-assign]
    PerMessageDeflate.frame_inbound_complete = frame_inbound_complete  # type: ignore[method-assign]
    PerMessageDeflate._transports_bounded = True  # type: ignore[attr-defined]


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
