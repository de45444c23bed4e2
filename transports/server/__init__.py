"""The I/O shell over Quart: the only package that imports ``quart``.

Each wire transport is a :class:`Transport` that registers its routes on the extension's
blueprint and carries frames between Quart and the engine's sessions.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar

from ..typing import TransportName

if TYPE_CHECKING:
    from quart import Blueprint, Quart

    from .extension import Realtime

__all__ = ["Transport"]


class Transport(abc.ABC):
    """One wire transport."""

    name: ClassVar[TransportName]
    """The transport's name in negotiate and in :attr:`Channel.transport`."""
    bidirectional: ClassVar[bool]
    """Whether one connection carries both directions."""

    @abc.abstractmethod
    def register(self, app: Quart, blueprint: Blueprint, realtime: Realtime) -> None:
        """Add this transport's routes to ``blueprint`` (or in front of ``app``'s routing)."""
