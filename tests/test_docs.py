"""Every fenced code block of README.md and docs/**/*.md is checked, so the docs cannot rot.

A block's treatment is chosen by an HTML comment on the line directly above its opening fence:

* ``<!-- docs: file NAME -->``: the block is the whole content of file NAME in the page's scratch
  folder (written when the page reaches it, so later blocks use it). A ``.py`` file must
  compile and a ``.json`` file must parse.
* ``<!-- docs: part-of NAME -->``: a fragment; every non-blank line of it (leading and trailing
  spaces aside) must appear, in order, in a block marked ``file NAME`` on the same page.
* ``<!-- docs: run -->``: a shell block (bash, sh, shell, console) run with ``bash -e -o
  pipefail`` in the page's scratch folder, the project's venv first on ``PATH``; it must exit 0
  within 120 s. Whatever it leaves running is stopped with its process group.
* ``<!-- docs: serve NAME -->``: a Python block (or a shell block) run while the page's app (the
  ``.py`` file NAME, marked ``file NAME`` above it on the page, a module exposing ``app``) is
  served by plain ``hypercorn`` on a free loopback port; ``127.0.0.1:8000`` and
  ``localhost:8000`` in the block become that port. Top-level ``await`` is allowed (the block
  then runs in ``asyncio.run``). 60 s, exit 0.
* ``<!-- docs: skip REASON -->``: not run; the REASON is required.

A ``python`` block with no marker is run as a standalone script in the page's scratch folder
(60 s, exit 0, no top-level ``await``). Any other block with no marker (``bash``, ``text``,
``json``, ``html``, no language at all...) fails: it must say how it is checked or why not. A
marker that is not directly above a fence, or that names an unknown kind, fails too.

HTML and JavaScript run in Chromium in ``tests/browser/test_docs_browser.py``, which reads the
pages with the parser below. ``test_scaling_recipe`` runs docs/scaling.md's recipe (two Hypercorn
workers on a real Redis, the key only in the environment).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import aiohttp
import psutil
import pytest

from transports.client import Client, connect

from .redis_server import RedisServer, redis_available

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
"""The venv running the tests: first on ``PATH`` for every block."""

KINDS = ("file", "part-of", "run", "serve", "skip")
PYTHON = frozenset({"python", "py", "python3"})
SHELL = frozenset({"bash", "sh", "shell", "console"})
SCRIPT_TIMEOUT = 60.0
RUN_TIMEOUT = 120.0
SERVER_START_TIMEOUT = 30.0

MARKER = re.compile(r"^\s*<!--\s*docs:\s*(?P<kind>\S+)(?:\s+(?P<arg>.*?))?\s*-->\s*$")
ANY_MARKER = re.compile(r"<!--\s*docs:")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
PORT_IN_BLOCK = re.compile(r"\b(?:127\.0\.0\.1|localhost):8000\b")


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced code block of a page, with the marker above it."""

    page: Path
    line: int
    """1-based line of the opening fence."""
    lang: str
    text: str
    kind: str | None
    arg: str

    @property
    def where(self) -> str:
        try:
            name = self.page.relative_to(ROOT)
        except ValueError:
            name = self.page
        return f"{name}:{self.line}"


def doc_pages() -> list[Path]:
    """README.md and every page of the documentation site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def parse(page: Path, text: str | None = None) -> tuple[list[Block], list[str]]:
    """The fenced blocks of ``page`` and the problems found while reading it (a marker that is
    not directly above a fence, a fence never closed)."""
    lines = (page.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    used_markers: set[int] = set()
    index = 0
    name = _display(page)
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence = opening["fence"]
        indent = len(opening["indent"].expandtabs())
        info = opening["info"].strip()
        lang = info.split()[0].strip("{}.").lower() if info else ""
        end = index + 1
        while end < len(lines):
            stripped = lines[end].strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                break
            end += 1
        if end == len(lines):
            problems.append(f"{name}:{index + 1}: a code fence that is never closed")
        body = [_dedent(line, indent) for line in lines[index + 1 : end]]
        kind: str | None = None
        arg = ""
        if index > 0:
            marker = MARKER.match(lines[index - 1])
            if marker is not None:
                kind, arg = marker["kind"], (marker["arg"] or "").strip()
                used_markers.add(index - 1)
        blocks.append(
            Block(page, index + 1, lang, "\n".join(body) + ("\n" if body else ""), kind, arg)
        )
        for inside in range(index + 1, end):
            used_markers.add(inside)  # a marker shown inside a code block is an example
        index = end + 1
    for number, line in enumerate(lines):
        if ANY_MARKER.search(line) and number not in used_markers:
            problems.append(
                f"{name}:{number + 1}: a docs marker must be on the line directly above a "
                f"code fence: {line.strip()}"
            )
    return blocks, problems


def _display(page: Path) -> str:
    try:
        return str(page.relative_to(ROOT))
    except ValueError:
        return str(page)


def _dedent(line: str, indent: int) -> str:
    expanded = line.expandtabs()
    spaces = len(expanded) - len(expanded.lstrip(" "))
    return expanded[min(indent, spaces) :]


# --- checks that need no process -----------------------------------------------------------


def check(blocks: list[Block]) -> list[str]:
    """Problems with the markers of one page's blocks."""
    problems: list[str] = []
    files: dict[str, list[Block]] = {}
    for block in blocks:
        if block.kind == "file":
            files.setdefault(block.arg, []).append(block)
    for block in blocks:
        where = block.where
        if block.kind is None:
            if block.lang not in PYTHON:
                problems.append(
                    f"{where}: a ```{block.lang or '(no language)'} block needs a marker on the "
                    "line above it: <!-- docs: file NAME | part-of NAME | run | serve NAME | "
                    "skip REASON -->"
                )
            continue
        if block.kind not in KINDS:
            problems.append(f"{where}: unknown docs marker {block.kind!r} (one of {KINDS})")
            continue
        if block.kind == "skip":
            if not block.arg:
                problems.append(
                    f"{where}: a skipped block must say why: <!-- docs: skip REASON -->"
                )
            continue
        if block.kind == "run":
            if block.arg:
                problems.append(f"{where}: <!-- docs: run --> takes no argument ({block.arg!r})")
            if block.lang not in SHELL:
                problems.append(f"{where}: run is for shell blocks, not ```{block.lang}")
            continue
        # file, part-of and serve name one file of the page's scratch folder.
        if not block.arg or len(block.arg.split()) != 1:
            problems.append(f"{where}: <!-- docs: {block.kind} NAME --> needs one file name")
            continue
        name = block.arg
        if name.startswith("/") or ".." in Path(name).parts:
            problems.append(f"{where}: {name!r} must be a relative path inside the scratch folder")
            continue
        if block.kind == "file":
            continue
        if name not in files:
            problems.append(f"{where}: no block of this page is marked <!-- docs: file {name} -->")
            continue
        if block.kind == "part-of":
            missing = _first_missing(block.text, [f.text for f in files[name]])
            if missing is not None:
                problems.append(
                    f"{where}: this fragment is not part of the file {name} on this page: "
                    f"{missing!r} is missing or out of order there"
                )
        elif block.kind == "serve":
            if block.lang not in PYTHON | SHELL:
                problems.append(f"{where}: serve is for Python or shell blocks, not {block.lang}")
            if not name.endswith(".py"):
                problems.append(f"{where}: serve needs a Python module exposing app, not {name}")
            if not any(f.line < block.line for f in files[name]):
                problems.append(f"{where}: the file {name} must be marked above this block")
    return problems


def _first_missing(fragment: str, candidates: list[str]) -> str | None:
    """The first fragment line no candidate file has (in order), or None when one has all."""
    wanted = [line.strip() for line in fragment.splitlines() if line.strip()]
    worst: str | None = None
    for candidate in candidates:
        have = [line.strip() for line in candidate.splitlines()]
        position = 0
        missing = None
        for line in wanted:
            try:
                position = have.index(line, position) + 1
            except ValueError:
                missing = line
                break
        if missing is None:
            return None
        worst = worst or missing
    return worst


# --- running blocks --------------------------------------------------------------------------


def environment() -> dict[str, str]:
    """What every block runs with: the venv first on PATH, no inherited ``TRANSPORTS_*``
    settings and no HTTP proxy (everything is on loopback)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TRANSPORTS_") and key.lower() not in _PROXIES
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(BIN.parent)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


_PROXIES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}

_AWAIT_RUNNER = """\
import ast, asyncio, sys
path = sys.argv[1]
sys.argv = [path]
with open(path, encoding="utf-8") as source_file:
    source = source_file.read()
code = compile(source, path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__})
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""
"""Runs a ``serve`` block: top-level ``await`` becomes the body of an ``asyncio.run``."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """End ``proc`` and whatever it started in its process group (its own session), by its
    PID: SIGTERM, a bounded wait, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def run_process(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> tuple[int | None, str]:
    """Run ``argv`` in its own session; its exit status (None on timeout) and its output.
    Anything it leaves running in its process group is stopped afterwards."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        code: int | None
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        stop_group(proc)
        out.seek(0)
        return code, out.read().decode("utf-8", "replace")


def _tail(output: str, lines: int = 40) -> str:
    return "\n".join("    | " + line for line in output.rstrip().splitlines()[-lines:])


def wait_http(port: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Wait until the server on ``port`` answers an HTTP request (any status), failing early
    when ``proc`` (the server) exits."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            with opener.open(f"http://127.0.0.1:{port}/", timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port} within {timeout} s")


@contextlib.contextmanager
def hypercorn(
    folder: Path, module_file: str, env: dict[str, str], extra: tuple[str, ...] = ()
) -> Iterator[tuple[int, IO[bytes]]]:
    """Plain ``hypercorn MODULE:app --bind 127.0.0.1:PORT`` in ``folder``: the port and its
    log. Stopped with its process group when done."""
    port = free_port()
    module = module_file.removesuffix(".py").replace("/", ".")
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [str(BIN / "hypercorn"), f"{module}:app", "--bind", f"127.0.0.1:{port}", *extra],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            try:
                wait_http(port, proc, SERVER_START_TIMEOUT)
            except RuntimeError as exc:
                log.seek(0)
                raise RuntimeError(
                    f"{exc}\n{_tail(log.read().decode('utf-8', 'replace'))}"
                ) from None
            yield port, log
        finally:
            stop_group(proc)


def write_file(folder: Path, block: Block) -> str | None:
    """Write a ``file`` block; a problem when a .py file does not compile or .json not parse."""
    path = folder / block.arg
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block.text, encoding="utf-8")
    if block.arg.endswith(".py"):
        try:
            compile(block.text, str(path), "exec")
        except SyntaxError as exc:
            return f"{block.where}: {block.arg} does not compile: {exc}"
    if block.arg.endswith(".json"):
        try:
            json.loads(block.text)
        except ValueError as exc:
            return f"{block.where}: {block.arg} is not JSON: {exc}"
    return None


def run_block(block: Block, folder: Path, env: dict[str, str]) -> str | None:
    """Run one block that needs running; a problem (with the output) when it fails."""
    if block.kind == "file":
        return write_file(folder, block)
    if block.kind is None and block.lang in PYTHON:
        script = folder / f"_docs_block_{block.line}.py"
        script.write_text(block.text, encoding="utf-8")
        code, output = run_process([str(BIN / "python"), script.name], folder, env, SCRIPT_TIMEOUT)
        return _outcome(block, "python script", code, output, SCRIPT_TIMEOUT)
    if block.kind == "run":
        code, output = run_process(
            ["bash", "-e", "-o", "pipefail", "-c", block.text], folder, env, RUN_TIMEOUT
        )
        return _outcome(block, "shell block", code, output, RUN_TIMEOUT)
    if block.kind == "serve":
        try:
            with hypercorn(folder, block.arg, env) as (port, log):
                text = PORT_IN_BLOCK.sub(f"127.0.0.1:{port}", block.text)
                if block.lang in SHELL:
                    argv = ["bash", "-e", "-o", "pipefail", "-c", text]
                else:
                    script = folder / f"_docs_block_{block.line}.py"
                    script.write_text(text, encoding="utf-8")
                    argv = [str(BIN / "python"), "-c", _AWAIT_RUNNER, script.name]
                code, output = run_process(argv, folder, env, SCRIPT_TIMEOUT)
                if code != 0:
                    log.seek(0)
                    server = log.read().decode("utf-8", "replace")
                    output += f"\n--- the server ({block.arg}) said:\n{server}"
                return _outcome(block, f"block served by {block.arg}", code, output, SCRIPT_TIMEOUT)
        except RuntimeError as exc:
            return f"{block.where}: hypercorn could not serve {block.arg}: {exc}"
    return None


def _outcome(block: Block, what: str, code: int | None, output: str, timeout: float) -> str | None:
    if code == 0:
        return None
    why = f"did not finish within {timeout:.0f} s" if code is None else f"exited with {code}"
    return f"{block.where}: the {what} {why}:\n{_tail(output)}"


def run_page(blocks: list[Block], folder: Path) -> list[str]:
    """Run a page's blocks in order in ``folder``; the problems."""
    env = environment()
    problems: list[str] = []
    for block in blocks:
        problem = run_block(block, folder, env)
        if problem is not None:
            problems.append(problem)
    return problems


def needs_running(blocks: list[Block]) -> bool:
    return any(
        b.kind in ("file", "run", "serve") or (b.kind is None and b.lang in PYTHON) for b in blocks
    )


def _params() -> list[Any]:
    params = []
    for page in doc_pages():
        blocks, _ = parse(page)
        slow = any(b.kind in ("run", "serve") for b in blocks)
        params.append(
            pytest.param(page, id=_display(page), marks=[pytest.mark.slow] if slow else [])
        )
    return params


# --- the pages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("page", [pytest.param(p, id=_display(p)) for p in doc_pages()])
def test_every_block_says_how_it_is_checked(page: Path) -> None:
    """Markers are well formed and consistent; fragments are part of their page's file."""
    blocks, problems = parse(page)
    problems += check(blocks)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", _params())
def test_every_block_runs(page: Path, tmp_path: Path) -> None:
    """Files are written, Python scripts and shell blocks run, served blocks run against the
    page's app on plain Hypercorn: in order, in one scratch folder per page."""
    blocks, problems = parse(page)
    problems += check(blocks)
    assert not problems, "\n".join(problems)
    if not needs_running(blocks):
        pytest.skip("no block of this page runs")
    problems = run_page(blocks, tmp_path)
    assert not problems, "\n\n".join(problems)


# --- the runner itself: a broken block of each kind fails ---------------------------------


def _problems_of(markdown: str, tmp_path: Path, *, run: bool = True) -> list[str]:
    page = tmp_path / "page.md"
    page.write_text(markdown, encoding="utf-8")
    blocks, problems = parse(page)
    problems += check(blocks)
    if run and not problems:
        folder = tmp_path / "scratch"
        folder.mkdir()
        problems += run_page(blocks, folder)
    return problems


FENCE3 = "`" * 3


def md(*parts: str) -> str:
    """Markdown from ``(marker or "", lang, body)`` triples flattened in ``parts``."""
    out = []
    for i in range(0, len(parts), 3):
        marker, lang, body = parts[i : i + 3]
        if marker:
            out.append(f"<!-- docs: {marker} -->")
        body = body if body.endswith("\n") else body + "\n"
        out.append(f"{FENCE3}{lang}\n{body}{FENCE3}\n")
    return "\n".join(out)


GOOD_APP = """from quart import Quart
app = Quart(__name__)

@app.get("/")
async def hi():
    return "hi"
"""


@pytest.mark.parametrize(
    ("markdown", "says"),
    [
        (md("", "bash", "echo hi\n"), "needs a marker"),
        (md("", "", "plain text\n"), "needs a marker"),
        (md("skip", "text", "output\n"), "must say why"),
        (md("fiel app.py", "python", "x = 1\n"), "unknown docs marker"),
        (md("file app.py", "python", "x = 1\n", "part-of app.py", "python", "y = 2\n"), "'y = 2'"),
        (
            md("file a.py", "python", "x = 1\ny = 2\n", "part-of a.py", "python", "y = 2\nx = 1\n"),
            "out of order",
        ),
        (md("part-of other.py", "python", "x = 1\n"), "no block of this page"),
        (
            md("serve app.py", "python", "print(1)\n", "file app.py", "python", GOOD_APP),
            "must be marked above",
        ),
        (md("run app.py", "bash", "true\n"), "takes no argument"),
        (md("run", "python", "print(1)\n"), "run is for shell blocks"),
        ("<!-- docs: skip far away -->\n\n" + md("", "python", "x = 1\n"), "directly above"),
        (md("file ../escape.py", "python", "x = 1\n"), "relative path"),
    ],
)
def test_runner_refuses_badly_marked_blocks(markdown: str, says: str, tmp_path: Path) -> None:
    problems = _problems_of(markdown, tmp_path, run=False)
    assert any(says in p for p in problems), problems


@pytest.mark.parametrize(
    ("markdown", "says"),
    [
        (md("", "python", "raise SystemExit('broken on purpose')\n"), "broken on purpose"),
        (md("", "python", "await something()\n"), "SyntaxError"),
        (md("run", "bash", "false\necho never\n"), "exited with 1"),
        (md("file app.py", "python", "def broken(:\n"), "does not compile"),
        (md("file data.json", "json", "{'a': 1}\n"), "is not JSON"),
    ],
)
def test_runner_fails_broken_blocks(markdown: str, says: str, tmp_path: Path) -> None:
    problems = _problems_of(markdown, tmp_path)
    assert any(says in p for p in problems), problems


def test_runner_runs_good_blocks_in_order(tmp_path: Path) -> None:
    markdown = md(
        "file notes.txt", "text", "hello\n",
        "run", "bash", 'test "$(cat notes.txt)" = hello\nwhich python | grep -q "$VIRTUAL_ENV"\n',
        "skip output sample", "text", "anything\n",
        "", "python", "import pathlib\nassert pathlib.Path('notes.txt').read_text() == 'hello\\n'",
    )  # fmt: skip
    assert _problems_of(markdown, tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize(("expected", "fails"), [("hi", False), ("bye", True)])
def test_runner_serves_the_page_app(expected: str, fails: bool, tmp_path: Path) -> None:
    """A served block reaches the page's app on the rewritten port (top-level await allowed);
    a failing one is reported with the server's log."""
    client = (
        "import asyncio, urllib.request\n"
        "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
        "await asyncio.sleep(0)\n"
        f"assert opener.open('http://localhost:8000/').read() == b'{expected}'\n"
    )
    markdown = md("file app.py", "python", GOOD_APP, "serve app.py", "python", client)
    problems = _problems_of(markdown, tmp_path)
    if fails:
        assert any("AssertionError" in p and "the server (app.py) said" in p for p in problems)
    else:
        assert problems == []


# --- docs/scaling.md: the recipe as written ---------------------------------------------------


def _scaling_blocks() -> tuple[dict[str, Block], Block, Block]:
    """docs/scaling.md's files, its recipe (the bash block test_scaling_recipe runs as written)
    and its drain block (the two serve.py processes)."""
    blocks, _ = parse(ROOT / "docs" / "scaling.md")
    files = {b.arg: b for b in blocks if b.kind == "file"}
    recipe = [b for b in blocks if b.kind == "skip" and "test_scaling_recipe runs it" in b.arg]
    drain = [b for b in blocks if b.kind == "skip" and "runs serve.py" in b.arg]
    assert len(recipe) == 1 and len(drain) == 1, "the recipe's skip reasons name this test"
    return files, recipe[0], drain[0]


def _group_members(leader: int, word: str) -> list[int]:
    """PIDs in the process group ``leader`` whose command line contains ``word``."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == leader and word in " ".join(proc.info["cmdline"] or []):
                found.append(proc.pid)
    return sorted(found)


async def _reconnecting_after(clients: list[Client], started: float, timeout: float) -> list[float]:
    """Seconds from ``started`` until each client left "open" (bounded by ``timeout``)."""
    seen: dict[int, float] = {}
    for index, client in enumerate(clients):
        client.on(
            "state",
            lambda state, index=index: (
                seen.setdefault(index, time.monotonic() - started) if state != "open" else None
            ),
        )
    deadline = time.monotonic() + timeout
    while len(seen) < len(clients) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return [seen.get(i, float("inf")) for i in range(len(clients))]


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_scaling_recipe(tmp_path: Path) -> None:
    """docs/scaling.md as written: ``hypercorn app:app --workers 2`` on a real Redis with the
    key and the backplane only in the environment; a client of each transport receives a
    publication made through the other worker. Then what the page says about stopping: the
    workers cut clients only after the graceful timeout, while ``serve.py`` tells them at once.
    """
    if not redis_available():
        pytest.skip("redis-server is not installed")
    files, recipe, drain = _scaling_blocks()
    for block in files.values():
        assert write_file(tmp_path, block) is None
    redis = RedisServer()
    redis.start()
    try:
        port = free_port()
        script = PORT_IN_BLOCK.sub(f"127.0.0.1:{port}", recipe.text)
        assert "redis://127.0.0.1:6379/0" in script and "--workers 2" in script
        script = script.replace("redis://127.0.0.1:6379/0", redis.url)
        env = environment()
        log = tempfile.TemporaryFile()
        shell = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        clients: list[Client] = []
        try:
            try:
                wait_http(port, shell, SERVER_START_TIMEOUT)
            except RuntimeError as exc:
                log.seek(0)
                pytest.fail(f"the recipe did not serve: {exc}\n{_tail(log.read().decode())}")
            base = f"http://127.0.0.1:{port}"
            for transport in ("websocket", "sse", "longpoll"):
                client = await connect(f"{base}/realtime", transports=[transport], timeout=30)
                clients.append(client)
                await client.subscribe("news")
            holders = [(await c.send("whoami"))["worker"] for c in clients]
            takers: list[int] = []
            for n in range(100):
                async with aiohttp.ClientSession() as http:  # a new connection: any worker
                    async with http.post(f"{base}/publish", json={"n": n}) as response:
                        assert response.status == 200
                        takers.append((await response.json())["worker"])
                if all(any(t != h for t in takers) for h in holders):
                    break
            else:
                pytest.fail(f"every publication went through one worker: {set(takers)}")
            assert len(set(takers) | set(holders)) == 2, "two workers, as the recipe says"
            for client, holder in zip(clients, holders, strict=True):
                got = [(await client.next_message(15)).data for _ in takers]
                assert got == [{"n": n} for n in range(len(takers))], client.transport
                other = [n for n, taker in enumerate(takers) if taker != holder]
                assert other, f"{client.transport}: no publication from the other worker"

            # SIGTERM to the parent only: the workers stop within the graceful timeout (3 s by
            # default), cutting every connection without a close code: some at once, the rest when
            # the timeout cancels them. Nobody is told 1001 first.
            parents = _group_members(shell.pid, "hypercorn")
            assert parents, "the hypercorn parent process"
            sigterm_at = time.monotonic()
            os.kill(parents[0], signal.SIGTERM)
            cut = await _reconnecting_after(clients, sigterm_at, 15)
            assert all(seconds < 15 for seconds in cut), cut
            assert max(cut) > 2.0, f"some connections last the graceful timeout: {cut}"
            shell.wait(20)
        finally:
            for client in clients:
                await client.close()
            stop_group(shell)
            log.close()

        # serve.py, one process per port: SIGTERM drains, clients are told at once (1001).
        ports = [free_port(), free_port()]
        script = drain.text.replace("127.0.0.1:8001", f"127.0.0.1:{ports[0]}")
        script = script.replace("127.0.0.1:8002", f"127.0.0.1:{ports[1]}")
        drained_env = {
            **env,
            "TRANSPORTS_SECRET_KEY": secrets.token_urlsafe(32),
            "TRANSPORTS_BACKPLANE": redis.url,
        }
        starter = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=tmp_path,
            env=drained_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        clients = []
        try:
            assert starter.wait(10) == 0
            for served_port in ports:
                wait_http(served_port, None, SERVER_START_TIMEOUT)
            for served_port in ports:
                url = f"http://127.0.0.1:{served_port}/realtime"
                clients.append(await connect(url, transports=["websocket"]))
            first = _group_members(starter.pid, f"127.0.0.1:{ports[0]}")
            assert len(first) == 1, first
            sigterm_at = time.monotonic()
            os.kill(first[0], signal.SIGTERM)
            told = await _reconnecting_after(clients[:1], sigterm_at, 10)
            assert told[0] < 2.0, told
            assert clients[1].state == "open", "the other process keeps its clients"
        finally:
            for client in clients:
                await client.close()
            stop_group(starter)
            for pid in _group_members(starter.pid, "serve.py"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    finally:
        redis.close()


def test_configuration_page_lists_every_setting_with_its_default() -> None:
    """docs/configuration.md's table: one row per Settings field, its variable, its default."""
    import ast

    from transports.core.settings import Settings

    row = re.compile(r"^\| `(?P<name>\w+)` \| `(?P<var>\w+)`[^|]* \| `(?P<default>[^`]*)` \|")
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = {m["name"]: m for m in map(row.match, text.splitlines()) if m is not None}
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    assert list(rows) == list(fields), "one row per setting, in the order of Settings"
    for name, match in rows.items():
        field = fields[name]
        default = field.default_factory() if callable(field.default_factory) else field.default
        assert match["var"] == "TRANSPORTS_" + name.upper()
        assert ast.literal_eval(match["default"]) == default, name
