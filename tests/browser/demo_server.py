"""The demo as a newcomer runs it: ``python -m demo --port P`` in a subprocess.

Started on a free loopback port, ready when the port accepts connections, stopped (SIGTERM,
then SIGKILL) or killed (SIGKILL, a crash) by its own PID, and restartable on the same port.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .harness import _Process, free_port


class DemoServer(_Process):
    """``python -m demo --host 127.0.0.1 --port P`` (the in-memory backplane, its producer)."""

    name = "demo server"

    def __init__(self, log: Path) -> None:
        super().__init__(free_port(), log)

    def start(self, timeout: float = 20.0) -> None:
        """Start (or start again on the same port) and wait until it accepts connections."""
        argv = [sys.executable, "-m", "demo", "--host", "127.0.0.1", "--port", str(self.port)]
        self._spawn(argv, timeout)

    def notify(self, payload: Any, timeout: float = 5.0) -> tuple[int, Any]:
        """``POST /api/notify`` with ``payload`` as JSON: (status, JSON answer)."""
        request = urllib.request.Request(
            self.url + "/api/notify",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@contextlib.contextmanager
def demo_server(log_dir: Path) -> Iterator[DemoServer]:
    """A started :class:`DemoServer`, stopped on exit."""
    server = DemoServer(log_dir / f"demo-{time.monotonic_ns()}.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
