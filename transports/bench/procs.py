"""Processes the harness starts: benchmark servers, nginx, client workers, py-spy.

Everything binds 127.0.0.1; every process is stopped by its own PID (SIGTERM, then SIGKILL
after a bounded wait); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
NGINX_TEMPLATES = ROOT / "tests" / "browser" / "nginx"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PYSPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def stop_pid(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM ``proc`` by its PID, SIGKILL after ``timeout`` s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def _wait_port(proc: subprocess.Popen[bytes], port: int, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            stop_pid(proc)
            raise RuntimeError(f"{what} not listening after {timeout} s")
        time.sleep(0.02)


class Server:
    """``python -m transports.bench.server`` in a subprocess, with CPU and RSS readings."""

    def __init__(
        self,
        app: str,
        server: str = "hypercorn",
        profile: Path | None = None,
        root: str | None = None,
    ) -> None:
        self.app = app
        self.root = root
        """Run the server from this source tree instead of the harness's own."""
        self.server = server
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None
        self.spy: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None

    def start(self, timeout: float = 30.0) -> Server:
        argv = [sys.executable, "-m", "transports.bench.server", "--app", self.app]
        argv += ["--server", self.server, "--port", str(self.port)]
        env = None
        if self.root is not None:
            paths = [self.root, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
            paths = [p for p in paths if p and Path(p).resolve() != ROOT]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        cwd = self.root or ROOT
        self.proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, env=env)
        _wait_port(self.proc, self.port, f"bench server ({self.app}/{self.server})", timeout)
        self.ps = psutil.Process(self.proc.pid)
        if self.profile is not None and os.path.exists(PYSPY):
            self.profile.parent.mkdir(parents=True, exist_ok=True)
            self.spy = subprocess.Popen(
                [
                    PYSPY,
                    "record",
                    "-p",
                    str(self.proc.pid),
                    "-f",
                    "raw",
                    "-r",
                    "200",
                    "-o",
                    str(self.profile),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        """CPU seconds (user + system) the server has used so far."""
        assert self.ps is not None
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> float:
        """Resident memory in MiB."""
        assert self.ps is not None
        return float(self.ps.memory_info().rss) / (1024 * 1024)

    def stop(self) -> None:
        if self.spy is not None and self.spy.poll() is None:
            # py-spy writes its file when it gets SIGINT or when the target exits.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.spy.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.spy.wait(15)
            stop_pid(self.spy, 5)
        if self.proc is not None:
            stop_pid(self.proc)


class Nginx:
    """nginx in the foreground from a temp prefix, one of tests/browser/nginx's profiles."""

    def __init__(self, profile: str, upstream: int) -> None:
        self.profile = profile
        self.upstream = upstream
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @staticmethod
    def available() -> bool:
        return os.path.exists(NGINX) and NGINX_TEMPLATES.is_dir()

    def start(self, timeout: float = 10.0) -> Nginx:
        self._dir = tempfile.TemporaryDirectory(prefix=f"bench-nginx-{self.profile}-")
        prefix = Path(self._dir.name)
        template = (NGINX_TEMPLATES / f"{self.profile}.conf.tmpl").read_text()
        config = template.replace("@LISTEN@", f"127.0.0.1:{self.port}").replace(
            "@UPSTREAM@", f"127.0.0.1:{self.upstream}"
        )
        # The profiles allow 256 connections per worker (enough for the browser tests and for
        # the connect-time measurements, which connect one client at a time).
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        prefix.chmod(0o755)  # the worker runs as nobody when nginx is started as root
        (prefix / "nginx.conf").write_text(config)
        log = (prefix / "nginx.log").open("ab")
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        _wait_port(self.proc, self.port, f"nginx ({self.profile})", timeout)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc, 5)
        if self._dir is not None:
            self._dir.cleanup()


class Worker:
    """``python -m transports.bench.worker`` holding many connections."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.proc: asyncio.subprocess.Process | None = None
        self.ps: psutil.Process | None = None
        self.ready: dict[str, Any] = {}

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "transports.bench.worker",
            json.dumps(self.spec),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,  # python-engineio's clients log every cancel
            limit=64 * 1024 * 1024,
        )
        self.ps = psutil.Process(self.proc.pid)

    async def line(self, prefix: str, timeout: float) -> str:
        """The next stdout line starting with ``prefix`` (its rest)."""
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise RuntimeError(f"worker exited before {prefix!r}")
                text = raw.decode().rstrip("\n")
                if text.startswith(prefix):
                    return text[len(prefix) :].strip()

    async def wait_ready(self, timeout: float) -> dict[str, Any]:
        self.ready = json.loads(await self.line("ready", timeout))
        return self.ready

    def cpu(self) -> float:
        assert self.ps is not None
        try:
            times = self.ps.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    async def finish(self, timeout: float = 60.0) -> dict[str, Any]:
        """Tell the worker to stop; its report."""
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(Exception):
            self.proc.stdin.write(b"stop\n")
            await self.proc.stdin.drain()
        try:
            report: dict[str, Any] = json.loads(await self.line("done", timeout))
        finally:
            await self.kill()
        return report

    async def kill(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 25)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.wait_for(proc.wait(), 10)
