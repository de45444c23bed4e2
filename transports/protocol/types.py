"""Documented type aliases shared by every layer.

Nothing here imports Quart or asyncio; these names appear in the public API.
"""

from __future__ import annotations

from typing import Any, NewType, TypeAlias

__all__ = ["JSON", "Data", "Identity", "SessionId", "Topic", "TransportName"]

JSON: TypeAlias = Any
"""A value that :func:`json.dumps` accepts: ``None``, bool, int, float, str, list, dict."""

Data: TypeAlias = Any
"""A message payload: a JSON value, or ``bytes`` for a binary message."""

Identity: TypeAlias = Any
"""What the application's ``on_connect`` hook returned for a client (JSON-serializable)."""

SessionId = NewType("SessionId", str)
"""The secret part of a session, never shown to application code or other clients."""

Topic = NewType("Topic", str)
"""A publish/subscribe topic name (see docs/protocol.md §2.1)."""

TransportName: TypeAlias = str
"""A transport's name on the wire (``"websocket"``, ``"sse"``, ``"longpoll"``...): the server's
carrier registry and each client's transport registry are the lists of names."""
