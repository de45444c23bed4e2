"""What the Python client receives: :class:`Incoming` messages and per-topic state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..protocol.errors import ReplyError
from ..protocol.frames import Position, Reply
from ..protocol.types import Data

__all__ = ["Incoming", "Topic", "reply_error"]


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message from the server: a topic publication (``topic`` set) or a direct message."""

    event: str
    data: Data
    topic: str | None = None
    offset: int | None = None
    epoch: str | None = None

    @property
    def id(self) -> str | None:
        """A publication's message id, ``epoch:topic:offset`` (protocol §7); None for MSG."""
        if self.topic is None:
            return None
        return f"{self.epoch}:{self.topic}:{self.offset}"


def reply_error(reply: Reply) -> ReplyError:
    """The error an error REPLY stands for."""
    message = reply.data.get("message", "") if isinstance(reply.data, dict) else ""
    return ReplyError(reply.status, message)


@dataclass
class Topic:
    """A subscribed topic: the last position processed and the handlers."""

    position: Position | None = None
    handlers: list[Callable[[Incoming], Any]] = field(default_factory=list)
    ready: asyncio.Future[Any] | None = None
    """Resolved by the first successful SUB reply (whichever connection carried it)."""
    presence: bool = False
    """Subscribed with ``presence=True``: the SUB asks for the topic's presence."""
    members: dict[str, Any] | None = None
    """Member id -> info, from the last presence snapshot and the events after it."""
    truncated: bool = False
    """The last snapshot listed fewer members than the topic has."""
    presence_position: Position | None = None
    """The position in the topic's presence events (``$presence:<topic>``) applied so far."""

    def confirmed(self, reply: Reply) -> None:
        """A SUB reply: resolve :attr:`ready` (first time), and start from the server's
        position when there is nothing to resume from (protocol §7)."""
        ready = self.ready
        if ready is not None and not ready.done():
            if reply.status == "ok":
                ready.set_result(reply.data)
            else:
                ready.set_exception(reply_error(reply))
                ready.exception()  # retrieved by subscribe(); avoid "never retrieved"
        data = reply.data
        if reply.status != "ok" or not isinstance(data, dict) or "epoch" not in data:
            return
        start = Position(str(data["epoch"]), int(data["offset"]))
        if (
            not data.get("recovered", True)
            or self.position is None
            or self.position.epoch != start.epoch
        ):
            self.position = start
