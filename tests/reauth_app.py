"""Expiring tokens for tests/test_reauth.py, on the contract app of the ``serve`` fixture.

:func:`install_expiry` replaces the app's ``on_connect`` and adds a ``revalidate`` hook, as an
app with expiring bearer tokens would have them. A token is ``<user>.<n>``; the identity is
``{"user": <user>}``: who the client is, the same for every token of that user, so that a
message sent again after a renewal is still recognised (the server's at-most-once scope is the
identity and the client key). The hook refuses a connection (close 4501) when the last token
its user connected with was marked expired. ``on_connect`` refuses ``nope``, and takes an
expired token (the hook finds it). Run with :data:`SETTINGS` (a short ``revalidate_interval``
and ``heartbeat``, which sets how often the sweeper runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quart import Request

from transports import Channel, Reject
from transports.server.extension import Realtime


@dataclass
class Expiry:
    """The tokens the hook refuses from now on, the last token of each user, and what the
    hook refused."""

    expired: set[str] = field(default_factory=set)
    latest: dict[str, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


def install_expiry(realtime: Realtime) -> Expiry:
    """Install the hooks on ``realtime`` (the app's :class:`~transports.server.Realtime`)."""
    expiry = Expiry()

    @realtime.on_connect
    async def who(request: Request) -> Any:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token or token == "nope":
            raise Reject("bad token")
        user = token.split(".")[0]
        expiry.latest[user] = token
        return {"user": user}

    @realtime.revalidate
    async def still_valid(channel: Channel) -> bool:
        identity = channel.identity
        user = identity.get("user") if isinstance(identity, dict) else None
        token = expiry.latest.get(str(user), "")
        if token in expiry.expired:
            expiry.refused.append(token)
            return False
        return True

    return expiry


SETTINGS: dict[str, Any] = {"revalidate_interval": 0.2, "heartbeat": 1.0}
"""The hook runs about every 0.2 s (on a sweeper that runs every 0.25 s with this heartbeat)."""
