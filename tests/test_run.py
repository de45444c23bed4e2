"""``python -m transports.server.run APP --workers N``: SIGTERM drains every worker without a
herd, and a worker that dies stops the service with exit 1 (docs/scaling.md)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import psutil
import pytest

from transports.client import Client, connect

from .redis_server import RedisServer
from .scaleout import ROOT, free_port, stop, wait_port

WINDOW = 2.0
BACKLOG = 333


class Runner:
    """The command line with two workers, on a real Redis, in its own process group."""

    def __init__(self, redis_url: str) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "TRANSPORTS_TEST_REDIS": redis_url,
            "TRANSPORTS_TEST_PREFIX": "r" + secrets.token_hex(4),
            "TRANSPORTS_SECRET_KEY": secrets.token_hex(16),
            "TRANSPORTS_DRAIN_WINDOW": str(WINDOW),
            "TRANSPORTS_DRAIN_GRACE": "2",
        }
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "transports.server.run",
                "tests.scaleout_app:app",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--backlog",
                str(BACKLOG),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_port(self.port, proc=self.proc, timeout=30)

    def workers(self) -> list[psutil.Process]:
        """The worker processes (not multiprocessing's resource tracker)."""
        children = psutil.Process(self.proc.pid).children()
        return [c for c in children if "spawn_main" in " ".join(c.cmdline())]

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        stop(self.proc)
        self.log.close()


@pytest.fixture
def runner(session_redis: RedisServer) -> Iterator[Runner]:
    started = Runner(session_redis.url)
    try:
        yield started
    finally:
        started.close()


async def test_sigterm_drains_every_worker_over_the_window(runner: Runner) -> None:
    assert len(runner.workers()) == 2
    clients: list[Client] = []
    told: list[float] = []
    try:
        for _ in range(8):
            client = await connect(
                f"http://127.0.0.1:{runner.port}/realtime", transports=["websocket"]
            )
            client.on("state", lambda s: told.append(time.monotonic()) if s != "open" else None)
            clients.append(client)
        holders = {(await c.send("whoami"))["id"] for c in clients}
        assert len(holders) == 8
        sent = time.monotonic()
        runner.proc.send_signal(signal.SIGTERM)
        deadline = sent + WINDOW + 10
        while len(told) < len(clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(told) >= len(clients), runner.output()
        first = sorted(told)[: len(clients)]
        assert first[0] - sent < 1.5, "the first client is told at once"
        assert first[-1] - first[0] >= 0.8 * WINDOW, f"told over {first[-1] - first[0]:.2f} s"
        assert first[-1] - sent < WINDOW + 2, "and the last within the window"
        assert runner.proc.wait(WINDOW + 15) == 0, runner.output()
    finally:
        for client in clients:
            await client.close()


async def test_a_worker_that_dies_stops_the_service_with_exit_1(runner: Runner) -> None:
    workers = runner.workers()
    assert len(workers) == 2
    workers[0].kill()
    assert runner.proc.wait(20) == 1, runner.output()
    assert not workers[1].is_running() or workers[1].status() == psutil.STATUS_ZOMBIE
    assert "exited with" in runner.output()


def test_workers_on_the_memory_backplane_are_warned_about() -> None:
    """Several workers on memory:// cannot share sessions: the command says so at start (and
    on Redis it does not, checked on the runner of the other tests)."""
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "transports.server.run", "bench.idle_scale_app:app"]
        + ["--workers", "2", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env={**os.environ, "TRANSPORTS_SECRET_KEY": secrets.token_hex(16)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_port(port, proc=proc, timeout=30)
    finally:
        stop(proc)
    log.seek(0)
    output = log.read().decode(errors="replace")
    log.close()
    assert "2 workers on the in-memory backplane (memory://)" in output, output


def test_no_memory_warning_on_redis(runner: Runner) -> None:
    assert "in-memory backplane" not in runner.output()


def test_backlog_reaches_the_listening_socket(runner: Runner) -> None:
    """``--backlog`` is the listening socket's accept queue (what ``ss`` shows as its Send-Q),
    not Hypercorn's default of 100."""
    listing = subprocess.run(
        ["ss", "-ltnH", f"sport = :{runner.port}"], capture_output=True, text=True, check=True
    ).stdout
    queues = {int(line.split()[2]) for line in listing.splitlines() if line.strip()}
    assert queues == {BACKLOG}, listing
