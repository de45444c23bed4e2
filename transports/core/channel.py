"""The Channel: one connected client, whatever transport carries it.

Application code written against :class:`Channel` runs unchanged over WebSocket, SSE and
long-polling; :attr:`Channel.transport` and :attr:`Channel.bidirectional` say what the network
allowed, for code that wants to know.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..protocol.codes import CloseCode
from ..protocol.errors import ChannelClosedOK
from ..protocol.frames import Position
from ..protocol.session import State
from ..protocol.types import Data, Identity, TransportName

__all__ = ["Channel", "Message"]


@dataclass(frozen=True, slots=True)
class Message:
    """A message a client sent: its ``event`` name, its ``data`` and the client's ``ref``."""

    event: str
    data: Data
    ref: int | str


class Channel(abc.ABC):
    """One connected client.

    Every method that talks to the client raises
    :class:`~transports.exceptions.ChannelClosed` once the channel is closed.
    """

    @property
    @abc.abstractmethod
    def transport(self) -> TransportName:
        """The transport carrying this channel: ``"websocket"``, ``"sse"``, ``"longpoll"``."""

    @property
    @abc.abstractmethod
    def bidirectional(self) -> bool:
        """True when one connection carries both directions (WebSocket); SSE and long-poll send
        client messages by separate POST requests, which the channel hides."""

    @property
    @abc.abstractmethod
    def id(self) -> str:
        """The public connection id (safe to show to other clients; it authorises nothing)."""

    @property
    @abc.abstractmethod
    def identity(self) -> Identity:
        """What the ``on_connect`` hook returned for this client."""

    @property
    @abc.abstractmethod
    def state(self) -> State:
        """``CONNECTING``, ``OPEN``, ``CLOSING`` or ``CLOSED``."""

    @property
    @abc.abstractmethod
    def topics(self) -> frozenset[str]:
        """The topics this channel is subscribed to."""

    @abc.abstractmethod
    async def send(self, event: str, data: Data = None) -> None:
        """Send a message to this client only (a MSG frame).

        Does not wait for the network: the frame joins the channel's bounded outbox. A client
        too slow to keep up is closed with 4008 rather than slowing the sender.

        Raises:
            ChannelClosed: the channel is closed.
            TypeError, ValueError: ``data`` is neither JSON-serializable nor bytes.
        """

    @abc.abstractmethod
    async def receive(self) -> Message:
        """The next client message that no ``on(event)`` handler took.

        Raises:
            ChannelClosed: the channel closed (``ChannelClosedOK`` for code 1000).
        """

    @abc.abstractmethod
    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the channel with ``code`` and ``reason`` (docs/protocol.md §10.1).

        Frames already queued are delivered first. Closing twice is harmless.
        """

    @abc.abstractmethod
    async def subscribe(self, topic: str, since: Position | None = None) -> bool:
        """Subscribe this client to ``topic`` from the server side.

        With ``since``, replay what the client missed after that position. Returns whether the
        replay was complete (``recovered``; always True without ``since``).
        """

    @abc.abstractmethod
    async def unsubscribe(self, topic: str) -> None:
        """Unsubscribe this client from ``topic``."""

    async def __aiter__(self) -> AsyncIterator[Message]:
        """Iterate over :meth:`receive` until the channel closes normally.

        A normal close (1000) ends the iteration; any other close raises
        :class:`~transports.exceptions.ChannelClosedError`.
        """
        while True:
            try:
                yield await self.receive()
            except ChannelClosedOK:
                return
