"""Processes the browser suite runs: the app (a Hypercorn subprocess), nginx, Chromium.

Plain classes with ``start``/``stop`` so that both the pytest fixtures (conftest.py) and the
measurement script (measure.py) use them. Everything binds 127.0.0.1; every process is stopped
by its own PID; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Playwright

ROOT = Path(__file__).resolve().parents[2]
NGINX_DIR = Path(__file__).resolve().parent / "nginx"
NGINX = "/usr/sbin/nginx"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROFILES = ("a-no-upgrade", "b-buffering", "c-correct")
"""nginx profiles: what each lets through is in the header of its template."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM the process by its PID, SIGKILL it if it is still there after ``timeout``."""
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


class ServerError(RuntimeError):
    """A server process did not come up."""


class _Process:
    """A child process writing to a log file, ready when its port accepts connections."""

    name = "process"

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], timeout: float) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise ServerError(f"{self.name} already running")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"{self.name} not listening after {timeout} s:\n{self.logs()}")
            time.sleep(0.02)

    def logs(self) -> str:
        """The process's output so far (last 4000 characters)."""
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; by PID."""
        if self.proc is not None:
            stop_process(self.proc)

    def kill(self) -> None:
        """SIGKILL at once (a crash): no close frames, no graceful shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class AppServer(_Process):
    """``tests/browser/serve_app.py`` in a subprocess on 127.0.0.1:port."""

    name = "app server"

    def __init__(
        self,
        log: Path,
        *,
        tick_ms: int = 20,
        settings: dict[str, Any] | None = None,
        flags: tuple[str, ...] = (),
    ):
        super().__init__(free_port(), log)
        self.tick_ms = tick_ms
        self.settings = settings or {}
        self.flags = flags
        """More arguments of serve_app.py, e.g. ``("--expiry",)``."""

    def start(self, timeout: float = 20.0) -> None:
        """Start (or restart on the same port) and wait until it accepts connections."""
        argv = [sys.executable, "-m", "tests.browser.serve_app", "--port", str(self.port)]
        argv += ["--tick-ms", str(self.tick_ms)]
        for name, value in self.settings.items():
            argv += ["--set", f"{name}={json.dumps(value)}"]
        self._spawn(argv + list(self.flags), timeout)


class Nginx(_Process):
    """nginx in the foreground from a temp prefix, proxying to ``upstream_port``."""

    name = "nginx"

    def __init__(self, profile: str, upstream_port: int, prefix: Path) -> None:
        super().__init__(free_port(), prefix / "nginx.log")
        self.profile = profile
        self.prefix = prefix
        self.upstream_port = upstream_port

    def render(self) -> None:
        """Write the profile's template, for this port and upstream, as PREFIX/nginx.conf."""
        template = (NGINX_DIR / f"{self.profile}.conf.tmpl").read_text()
        config = template.replace("@LISTEN@", f"127.0.0.1:{self.port}").replace(
            "@UPSTREAM@", f"127.0.0.1:{self.upstream_port}"
        )
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.prefix.chmod(0o755)  # the worker runs as nobody when nginx is started as root
        (self.prefix / "nginx.conf").write_text(config)

    def reload(self, profile: str) -> None:
        """Switch to another profile in place (SIGHUP to the master): new connections get the
        new config at once, open ones stay with the old workers until they close."""
        assert self.proc is not None and self.proc.poll() is None, "nginx is not running"
        self.profile = profile
        self.render()
        os.kill(self.proc.pid, signal.SIGHUP)

    def start(self, timeout: float = 10.0) -> None:
        """Render the profile's template into the prefix and run nginx on it."""
        self.render()
        argv = [
            NGINX,
            "-p",
            str(self.prefix),
            "-c",
            str(self.prefix / "nginx.conf"),
            "-e",
            "stderr",
        ]
        self._spawn(argv, timeout)


@contextlib.contextmanager
def app_server(log_dir: Path, **kwargs: Any) -> Iterator[AppServer]:
    """A started :class:`AppServer`, stopped on exit."""
    server = AppServer(log_dir / f"app-{time.monotonic_ns()}.log", **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def nginx_proxy(profile: str, upstream_port: int) -> Iterator[Nginx]:
    """A started :class:`Nginx` in a temp prefix, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix=f"nginx-{profile}-") as prefix:
        proxy = Nginx(profile, upstream_port, Path(prefix))
        proxy.start()
        try:
            yield proxy
        finally:
            proxy.stop()


def launch_browser(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless (test-infra.md: never ``playwright install``)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def post_json(url: str, payload: Any, timeout: float = 5.0) -> Any:
    """POST ``payload`` as JSON (no proxy from the environment); the JSON answer."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read())


def publish(base: str, topic: str, event: str, data: Any) -> Any:
    """POST /publish on ``base`` (the app or the proxy in front of it): ``{id, offset}``."""
    return post_json(base + "/publish", {"topic": topic, "event": event, "data": data})


def send_to(base: str, channel_id: str, event: str, data: Any) -> bool:
    """POST /send-to on ``base``: a direct message to one connection; whether it was there."""
    return bool(
        post_json(base + "/send-to", {"id": channel_id, "event": event, "data": data})["sent"]
    )


def open_page(page: Page, base: str, timeout_ms: float = 10_000) -> None:
    """Load the test page from ``base`` and wait until its module has run."""
    page.goto(base + "/page", timeout=timeout_ms)
    page.wait_for_function("window.harnessReady === true", timeout=timeout_ms)


def start_client(page: Page, options: dict[str, Any] | None = None) -> None:
    """``connect("/realtime", options)`` in the page, subscribed to the ticker at once."""
    page.evaluate("(options) => harness.start(options)", options or {})


def record(page: Page) -> dict[str, Any]:
    """The page's record (states, transports, first tick...) and the client's info."""
    result: dict[str, Any] = page.evaluate("() => ({...window.rec, info: harness.info()})")
    return result


def wait_for(page: Page, expression: str, timeout_ms: float = 10_000, arg: Any = None) -> None:
    """Wait until ``expression`` (a JS function of ``arg``) is truthy in the page."""
    page.wait_for_function(expression, arg=arg, timeout=timeout_ms)
