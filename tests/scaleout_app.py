"""The contract app for scale-out tests, configured from the environment.

``hypercorn tests.scaleout_app:app --workers N`` imports it in every worker process:

* ``TRANSPORTS_TEST_REDIS``: the Redis URL of the backplane;
* ``TRANSPORTS_TEST_PREFIX``: the Redis key prefix (one per test);
* ``TRANSPORTS_SECRET_KEY``: the signing key every process shares.

Besides the contract app's routes it serves ``GET /stats`` (this process's engine counters, its
node id and its pid), so tests can see which process answered what.
"""

from __future__ import annotations

import os
from typing import Any

from quart import jsonify

from transports.backplanes.redis import RedisBackplane

from .apps import make_app

app = make_app(
    backplane=RedisBackplane(
        os.environ["TRANSPORTS_TEST_REDIS"],
        prefix=os.environ.get("TRANSPORTS_TEST_PREFIX", "transports"),
        history_size=10_000,
    ),
    secret_key=os.environ["TRANSPORTS_SECRET_KEY"].encode(),
    # Long-poll requests that land on another process are forwarded: keep the window short so
    # a test that kills a process does not wait 25 s for held polls.
    poll_window=5.0,
)


@app.get("/stats")
async def stats() -> Any:
    engine = app.extensions["transports"].engine
    return jsonify(
        {
            "node": engine.node,
            "pid": os.getpid(),
            "stats": dict(engine.stats),
            "sessions": engine.session_count,
        }
    )
