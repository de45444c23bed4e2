"""transports: one realtime channel API for Quart over WebSocket, SSE and long-polling.

.. code-block:: python

    from quart import Quart
    from transports import Realtime

    app = Quart(__name__)
    rt = Realtime(app)

The Quart extension (:class:`Realtime`) is imported lazily, so ``transports.protocol`` and
``transports.client`` can be used without loading Quart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backplanes import Backplane, History, Published, create_backplane
from .core.channel import Channel, Message
from .core.presence import Roster
from .core.settings import Settings
from .protocol.codes import CloseCode, is_reconnect_code
from .protocol.errors import (
    BackplaneError,
    ChannelClosed,
    ChannelClosedError,
    ChannelClosedOK,
    InvalidState,
    MissingDependency,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    Refused,
    Reject,
    ReplyError,
    TicketError,
    TransportsError,
)
from .protocol.frames import Position
from .protocol.session import State

if TYPE_CHECKING:
    from .server.extension import Realtime

__version__ = "0.1.0"

__all__ = [
    "Backplane",
    "BackplaneError",
    "Channel",
    "ChannelClosed",
    "ChannelClosedError",
    "ChannelClosedOK",
    "CloseCode",
    "History",
    "InvalidState",
    "MissingDependency",
    "Message",
    "NegotiationError",
    "PayloadTooBig",
    "Position",
    "ProtocolError",
    "Published",
    "Realtime",
    "Refused",
    "Reject",
    "ReplyError",
    "Roster",
    "Settings",
    "State",
    "TicketError",
    "TransportsError",
    "create_backplane",
    "is_reconnect_code",
]


def __getattr__(name: str) -> Any:
    if name == "Realtime":
        from .server.extension import Realtime

        return Realtime
    raise AttributeError(f"module 'transports' has no attribute {name!r}")
