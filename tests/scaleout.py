"""Processes for scale-out tests: Hypercorn app processes on Redis, and a round-robin nginx.

Every process binds 127.0.0.1, is stopped by its own PID, and every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HYPERCORN = str(Path(sys.executable).with_name("hypercorn"))
NGINX = "/usr/sbin/nginx"

NGINX_ROUND_ROBIN = """
daemon off;
master_process on;
worker_processes 1;
pid nginx.pid;
error_log stderr warn;
events { worker_connections 2048; }
http {
    access_log off;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    # Plain round-robin, request by request: no ip_hash, no sticky cookie.
    upstream app {
@SERVERS@
    }
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
        }
    }
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop ``proc`` (and, for Hypercorn with workers, its process group) by PID."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


class AppProcess:
    """``hypercorn tests.scaleout_app:app`` on a free port, on the given Redis and prefix."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        secret: str,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            **(env or {}),
            "TRANSPORTS_TEST_REDIS": redis_url,
            "TRANSPORTS_TEST_PREFIX": prefix,
            "TRANSPORTS_SECRET_KEY": secret,
        }
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [
                HYPERCORN,
                "tests.scaleout_app:app",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--graceful-timeout",
                "1",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: workers stop with it
        )
        wait_port(self.port, proc=self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        stop(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        stop(self.proc)
        self.log.close()


class RoundRobinNginx:
    """nginx in front of ``ports``, round-robin request by request, from a temp prefix."""

    def __init__(self, ports: list[int]) -> None:
        self.port = free_port()
        self.prefix = tempfile.TemporaryDirectory()
        prefix = Path(self.prefix.name)
        (prefix / "tmp").mkdir()
        servers = "\n".join(
            f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=3s;" for p in ports
        )
        conf = NGINX_ROUND_ROBIN.replace("@SERVERS@", servers).replace("@PORT@", str(self.port))
        (prefix / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port(self.port, proc=self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.proc)
        self.prefix.cleanup()
