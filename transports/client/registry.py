"""The Python client's only list of transport names: each name and its connection class.

Adding a transport to the client means one :class:`~transports.client.connection.Connection`
subclass and one line here; :class:`~transports.client.Client` never names a transport.
"""

from __future__ import annotations

from ..protocol.types import TransportName
from .connection import Connection
from .longpoll import LongPoll
from .sse import SSE
from .websocket import WebSocket

__all__ = ["CONNECTIONS", "DEFAULT_ORDER"]

CONNECTIONS: dict[str, type[Connection]] = {
    cls.name: cls
    for cls in (
        WebSocket,
        SSE,
        LongPoll,
    )
}
"""Connection class by transport name, in the default order of preference."""

DEFAULT_ORDER: tuple[TransportName, ...] = tuple(cls.name for cls in CONNECTIONS.values())
"""The transports a client tries when it is not told otherwise, best first."""
