"""The transport comparison: ``python -m transports.bench [--quick]``.

Every transport of the library goes through the same workloads through the public Python
client, beside two baselines measured in the same run on the same server setup: raw Quart
routes (a bare WebSocket echo and a bare SSE stream: the ceiling) and python-socketio (the peer,
WebSocket and polling, with its own ``AsyncClient``). Workloads: connect time (direct and
through the nginx profiles of the browser suite), round trip p50/p99, echo throughput (one
pipelined client, 50 clients), client-to-server and server-to-client throughput, broadcast
fan-out to 1,000 subscribers, bytes on the wire per message, server memory per idle connection,
idle connections with heartbeats, and server CPU time per message beside every rate.

A fresh server process per measurement (``transports.bench.server``), configurations
interleaved inside each repetition, ratios computed inside each repetition, median and spread
over repetitions. Output: ``results.json``, ``results.md`` and PNG charts (``bench/results/``
by default).

Modules: :mod:`.server` (the server process), :mod:`.clients` (one connection of each
configuration), :mod:`.worker` (a client process holding many connections),
:mod:`.workloads`, :mod:`.proxy` (a counting, recording TCP proxy), :mod:`.capture` (the wire
captures of the docs), :mod:`.report` (tables, goals, charts), :mod:`.procs` (processes).
"""
