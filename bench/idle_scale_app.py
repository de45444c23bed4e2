"""The app ``bench.idle_scale`` serves with ``python -m transports.server.run --workers N``.

``BENCH_IDLE_APP`` picks it: ``realtime`` (the default) is the benchmark's library app
(:func:`transports.bench.server.realtime_app`: in-memory backplane, per-client rate limits
lifted, every other setting the library's default, so ``TRANSPORTS_HEARTBEAT`` sets the
heartbeat); ``raw`` is its bare Quart routes (:func:`transports.bench.server.raw_app`, whose
``websocket /raw/ws`` is the baseline: no heartbeat). Every worker process builds the same app.
"""

from __future__ import annotations

import os

from transports.bench.server import APPS

app = APPS[os.environ.get("BENCH_IDLE_APP", "realtime")]()
