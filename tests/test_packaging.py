"""The package a user installs: the built wheel and sdist, installed into a fresh venv.

Not editable and not from the source tree: the wheel is built with PyPA's ``build`` (the
locked setuptools, no network for the build itself), installed with ``--no-deps`` into a new
venv whose dependencies come from ``scripts/requirements-demo.lock``, and every check runs with
the working directory outside the repository, so ``import transports`` can only find the
installed copy. Also here: an optional dependency that is missing names the extra to install.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Files a user's install cannot work without: the browser client the server serves, the
# demo's page and assets, and the PEP 561 marker that makes the type hints count.
NEEDED = [
    "transports/py.typed",
    "transports/static/client.js",
    "transports/static/client-core.js",
    "transports/static/client.d.ts",
    "transports/static/policy.json",
    "transports/static/diagnose.html",
    "transports/static/diagnose.js",
    "transports/static/diagnose.json",
    "transports/diagnose/__main__.py",
    "demo/templates/index.html",
    "demo/static/app.js",
    "demo/static/feed.js",
    "demo/static/style.css",
]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and the sdist, built from a copy of the tracked files (no stale build/)."""
    out = tmp_path_factory.mktemp("dist")
    src = tmp_path_factory.mktemp("src") / "transports"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        path = Path(name.decode())
        if not (ROOT / path).is_file():
            continue  # deleted in the work tree but not yet in git
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, src / path)
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    return out


def _one(dist: Path, pattern: str) -> Path:
    (found,) = dist.glob(pattern)
    return found


@pytest.mark.slow
def test_wheel_holds_the_client_the_demo_and_the_type_marker(dist: Path) -> None:
    """The wheel carries client.js, the demo's templates and static files, and py.typed."""
    names = set(zipfile.ZipFile(_one(dist, "*.whl")).namelist())
    missing = [name for name in NEEDED if name not in names]
    assert not missing, f"the wheel lacks {missing}"


@pytest.mark.slow
def test_sdist_holds_the_same_files(dist: Path) -> None:
    """The sdist (what a from-source install builds) carries the same files."""
    with tarfile.open(_one(dist, "*.tar.gz")) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    missing = [name for name in NEEDED if name not in names]
    assert not missing, f"the sdist lacks {missing}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def wheel_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the locked runtime dependencies and the built wheel (not editable)."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q"]
    lock = ROOT / "scripts" / "requirements-demo.lock"
    subprocess.run([*pip, "--require-hashes", "--no-deps", "-r", str(lock)], check=True)
    subprocess.run([*pip, "--no-deps", str(_one(dist, "*.whl"))], check=True)
    return python


@pytest.fixture
def demo_from_wheel(wheel_venv: Path, tmp_path: Path) -> Iterator[str]:
    """``python -m demo`` run from the wheel's venv, outside the repository."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.Popen(
        [str(wheel_venv), "-m", "demo", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"the demo from the wheel did not start:\n{output}")
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


ROUND_TRIP = textwrap.dedent(
    """
    import asyncio, json, sys, urllib.request
    import transports
    from transports.client import connect

    async def main(base, transport):
        client = await connect(base + "/realtime", transports=[transport])
        got = asyncio.get_running_loop().create_future()
        await client.subscribe("all", lambda m: got.done() or got.set_result(m.data))
        ack = await client.send("notify", {"title": "from the wheel", "topic": "all"})
        data = await asyncio.wait_for(got, 30)
        await client.close()
        print(json.dumps({"file": transports.__file__, "transport": client.transport,
                          "ack": ack, "data": data}))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
def test_demo_and_python_client_from_the_wheel(
    wheel_venv: Path, demo_from_wheel: str, tmp_path: Path, transport: str
) -> None:
    """The installed wheel serves the demo page and client.js, and its Python client does a
    round trip: an acked send whose notification comes back on the subscribed topic."""
    with urllib.request.urlopen(demo_from_wheel + "/", timeout=10) as page:
        assert "text/html" in page.headers["Content-Type"]
        assert b"/realtime" in page.read()
    with urllib.request.urlopen(demo_from_wheel + "/realtime/client.js", timeout=10) as js:
        assert b"export function connect" in js.read()
    result = subprocess.run(
        [str(wheel_venv), "-c", ROUND_TRIP, demo_from_wheel, transport],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert str(wheel_venv.parent.parent) in out["file"], "imported the source tree, not the wheel"
    assert out["transport"] == transport
    assert out["data"]["title"] == "from the wheel"
    assert out["ack"]["topic"] == "all" and out["ack"]["id"], out["ack"]


def test_missing_redis_extra_names_the_extra() -> None:
    """``python -m demo --backplane redis://`` without redis-py: a one-line error naming the
    extra, exit status 2, no traceback."""
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from demo.__main__ import main\n"
        "main(['--backplane', 'redis://127.0.0.1:9/0', '--secret-key', 'k' * 32])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 2
    assert "pip install 'transports[redis]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_diagnose_tool_from_the_wheel(
    wheel_venv: Path, demo_from_wheel: str, tmp_path: Path
) -> None:
    """The installed wheel's ``transports-diagnose`` (its catalogue read from the package)
    finds every transport of the demo working."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env = {k: v for k, v in env.items() if k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY")}
    done = subprocess.run(
        [str(wheel_venv.parent / "transports-diagnose"), demo_from_wheel + "/realtime"]
        + ["--json", "--idle", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["best"] == "websocket"
    assert {item["verdict"] for item in report["transports"].values()} == {"ok"}
