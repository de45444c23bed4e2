"""The application's hooks, stored once: the server's decorators write here, the core reads.

Each alias documents the signature an application writes; :class:`Hooks` holds what was
registered. ``Realtime`` owns one :class:`Hooks` and hands the same object to its engine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .channel import Channel

__all__ = [
    "ChannelHandler",
    "DisconnectHandler",
    "EventHandler",
    "Hooks",
    "PresenceInfoHook",
    "RevalidateHook",
    "TopicAuthorizer",
]

EventHandler: TypeAlias = Callable[[Channel, Any], Awaitable[Any]]
"""``async def handler(channel, data) -> reply data``, registered with ``on(event)``."""
ChannelHandler: TypeAlias = Callable[[Channel], Awaitable[None]]
"""``async def handler(channel)``, run once per connection when it opens."""
DisconnectHandler: TypeAlias = Callable[[Channel, int, str], Awaitable[None]]
"""``async def handler(channel, code, reason)``, run once when a connection ends."""
TopicAuthorizer: TypeAlias = Callable[[Channel, str], Awaitable[bool]]
"""``async def allowed(channel, topic) -> bool``; may also raise :class:`Reject`."""
RevalidateHook: TypeAlias = Callable[[Channel], Awaitable[bool]]
"""``async def revalidate(channel) -> bool``: may this connection stay open?"""
PresenceInfoHook: TypeAlias = Callable[[Channel], Awaitable[Any]]
"""``async def info(channel) -> JSON``: what other subscribers see of this connection in a
topic's presence (default: the identity ``on_connect`` returned)."""


@dataclass
class Hooks:
    """Everything the application registered (``None``: not registered)."""

    handlers: dict[str, EventHandler] = field(default_factory=dict)
    channel: ChannelHandler | None = None
    disconnect: list[DisconnectHandler] = field(default_factory=list)
    authorize_subscribe: TopicAuthorizer | None = None
    authorize_publish: TopicAuthorizer | None = None
    revalidate: RevalidateHook | None = None
    presence_info: PresenceInfoHook | None = None
    authorize_presence: TopicAuthorizer | None = None
    """Who may read a topic's presence (default: whoever may subscribe to the topic)."""
