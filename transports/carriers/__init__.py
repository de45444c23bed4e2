"""Carriers: one module per transport, and the registry, which is the only list of their names.

Adding a transport is one module here (a :class:`~.base.Carrier` with its traits, routes and
channel) plus one :func:`register` call; the core, the protocol and the server do not change.
The order of registration is the default order of preference.
"""

from __future__ import annotations

from .base import Carrier, Endpoint, Reply, Request, Socket, SocketGone, Stream, Upgrade
from .longpoll import LongPollCarrier
from .sse import SSECarrier
from .upstream import Upstream
from .websocket import WebSocketCarrier

__all__ = [
    "REGISTRY",
    "Carrier",
    "Endpoint",
    "Reply",
    "Request",
    "Socket",
    "SocketGone",
    "Stream",
    "Upgrade",
    "Upstream",
    "names",
    "register",
    "unregister",
]

REGISTRY: dict[str, type[Carrier]] = {}
"""Every carrier by transport name, in the default order of preference."""


def register(carrier: type[Carrier]) -> type[Carrier]:
    """Add ``carrier`` under its traits' name (usable as a class decorator).

    Raises:
        ValueError: another carrier already has that name.
    """
    name = carrier.traits.name
    if REGISTRY.get(name, carrier) is not carrier:
        raise ValueError(f"a carrier named {name!r} is already registered")
    REGISTRY[name] = carrier
    return carrier


def unregister(name: str) -> None:
    """Remove the carrier named ``name`` (tests that add a toy transport clean up with this)."""
    REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """Every registered transport name, in the default order of preference."""
    return tuple(REGISTRY)


register(WebSocketCarrier)
register(SSECarrier)
register(LongPollCarrier)
