"""The app ``bench.presence`` serves: the library on a Redis backplane with presence.

Configured from the environment, so every process of a run is the same app:

* ``BENCH_REDIS``: the backplane URL;
* ``TRANSPORTS_SECRET_KEY``: the signing key the processes share;
* ``TRANSPORTS_PRESENCE`` (e.g. ``room:*``) and ``TRANSPORTS_PRESENCE_TIMEOUT``: read by the
  library itself from the environment.

A client's identity is its bearer token (``Authorization: Bearer u123``), kept small on purpose:
it is the member's presence info. ``GET /count/<topic>`` answers ``rt.presence_count(topic)``;
``GET /stats`` this process's pid, node, sessions and presence members.
"""

from __future__ import annotations

import os
from typing import Any

from quart import Quart, Request, jsonify

from transports.server.extension import Realtime

app = Quart(__name__)
rt = Realtime(
    app,
    backplane=os.environ.get("BENCH_REDIS", "memory://"),
    max_sessions_per_address=None,
    negotiate_rate=None,
    auth_failure_rate=None,
)


@rt.on_connect
async def who(req: Request) -> Any:
    return req.headers.get("Authorization", "").removeprefix("Bearer ") or None


@app.get("/count/<topic>")
async def count(topic: str) -> Any:
    return jsonify({"count": await rt.presence_count(topic)})


@app.get("/stats")
async def stats() -> Any:
    engine = app.extensions["transports"].engine
    return jsonify(
        {
            "pid": os.getpid(),
            "node": engine.node,
            "sessions": engine.session_count,
            "members_here": engine.presence.members_here,
        }
    )
