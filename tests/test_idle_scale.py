"""``python -m bench.idle_scale --quick`` (idle WebSocket connections across worker processes,
issue 19): it runs, and the connections it holds stay open through the heartbeats.

The quick run holds 2 workers x 500 connections on the raw route, the library at its default
heartbeat and the library at a 2 s heartbeat, idle for 5 s each. With the short heartbeat the
server closes a WebSocket that sent nothing for twice the heartbeat (docs/protocol.md §9): every
connection is still open at the end only if the client answered every PING with a PONG. The
figures themselves (memory, CPU) are not asserted: a shared machine makes them anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import idle_scale
from tests.benchrun import run_bench

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "bench" / "results" / "issue19" / "idle-scale"

RUN_FIELDS = {
    "config",
    "heartbeat_s",
    "workers",
    "target",
    "opened",
    "failed",
    "open_at_end",
    "established_at_end",
    "closed",
    "kib_per_conn_rss",
    "kib_per_conn_uss",
    "cpu_pct",
    "window_s",
    "window_pings",
    "window_min_pings",
    "us_per_ping",
    "per_worker",
}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_quick_run_keeps_every_connection_open_through_the_heartbeats(tmp_path: Path) -> None:
    data = run_bench("bench.idle_scale", ["--quick"], tmp_path, idle_scale.markdown)
    (layout,) = data["layouts"]
    runs = {run["config"]: run for run in layout["runs"]}
    assert set(runs) == {"raw", "library", "library-short"}
    for name, run in runs.items():
        assert RUN_FIELDS <= set(run), (name, RUN_FIELDS - set(run))
        assert run["opened"] == run["target"] == 1000, (name, run["errors"])
        assert run["failed"] == 0 and run["closed"] == 0, (name, run["close_codes"])
        assert run["open_at_end"] == run["opened"], name
        # Every worker process is measured, and the server side agrees with the client's count.
        assert len(run["per_worker"]) == 2
        assert sum(w["connections"] for w in run["per_worker"]) == run["established_at_end"]
        assert run["established_at_end"] == run["opened"], name
        assert run["kib_per_conn_rss"] > 0 and run["cpu_pct"] >= 0
    assert runs["raw"]["heartbeat_s"] is None and runs["raw"]["window_pings"] == 0
    short = runs["library-short"]
    # The window is longer than the server's patience (2 x heartbeat): a connection whose PONGs
    # did not count would have been closed inside it.
    assert short["window_s"] > 2 * short["heartbeat_s"]
    assert short["window_min_pings"] >= 1
    assert short["us_per_ping"] is not None and short["us_per_ping"] > 0
    assert "kib_ratio_rss" in runs["library"] and "net_us_per_ping" in short


def test_committed_results_are_rendered_from_their_json() -> None:
    data = json.loads((COMMITTED / "results.json").read_text())
    assert (COMMITTED / "results.md").read_text() == idle_scale.markdown(data), (
        "results.md is stale: python -m bench.idle_scale --from-json "
        "bench/results/issue19/idle-scale/results.json"
    )


def test_committed_results_cover_the_issue() -> None:
    """Two workers at the descriptor limit, and 50,000 connections over three workers."""
    data = json.loads((COMMITTED / "results.json").read_text())
    layouts = {layout["workers"]: layout for layout in data["layouts"]}
    assert layouts[3]["workers"] * layouts[3]["per_worker"] >= 50_000
    assert layouts[2]["per_worker"] < data["fd_limit"]
    for layout in layouts.values():
        for run in layout["runs"]:
            assert run["opened"] > 0 and run["open_at_end"] > 0
