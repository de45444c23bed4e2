"""The Python client: talks to a ``transports`` server the way the browser client does.

.. code-block:: python

    from transports.client import connect

    client = await connect("http://127.0.0.1:8000/realtime", transports=["sse", "longpoll"])
    await client.subscribe("news", lambda message: print(message.data))
    reply = await client.send("chat.send", {"text": "hi"})   # the server's acknowledgement
    await client.close()

It negotiates, tries the transports in order (accepting WebSocket only after a round trip and
SSE only when the server's HELLO arrives within a deadline), reconnects with full-jitter
backoff, resumes every subscription from its last position (``recovered`` events say when that
was impossible), drops duplicates by offset, and re-sends unacknowledged messages with the same
ref so the server applies them once. It speaks only docs/protocol.md, and every retry, close
and backoff decision is the policy's (:mod:`transports.protocol.policy`, shared with the
browser client).

Modules: :mod:`~transports.client.client` (:class:`Client`, :func:`connect`),
:mod:`~transports.client.connection` (the surface of one transport connection),
:mod:`~transports.client.websocket`, :mod:`~transports.client.sse`,
:mod:`~transports.client.longpoll` (one class each, the HTTP ones sharing
:mod:`~transports.client.upstream`), :mod:`~transports.client.registry` (the only list of
transport names), :mod:`~transports.client.negotiate`, and the connectors
(:mod:`~transports.client.connector`, :mod:`~transports.client.aiohttp_connector`).
It imports nothing of the server: only :mod:`transports.protocol`, the standard library and,
in the default connector, aiohttp.
"""

from __future__ import annotations

from .client import Client, connect
from .incoming import Incoming

__all__ = ["Client", "Incoming", "connect"]
