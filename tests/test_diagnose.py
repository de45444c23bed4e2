"""The diagnostics: the server's endpoint and topics (docs/protocol.md §13), the verdict logic
of ``python -m transports.diagnose`` on made-up observations, and the tool itself run in a
subprocess against real servers, directly and through the misbehaving proxies of
tests/proxies.py. The nginx profiles are in tests/browser/test_diagnose_cli.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from transports import Channel
from transports.core.admission import DIAGNOSE_BURST, DIAGNOSE_RATE
from transports.diagnose.catalogue import VERDICTS, catalogue, load
from transports.diagnose.observations import Idle, Observation, Step
from transports.diagnose.report import build, render_text
from transports.diagnose.verdict import best, buffered, judge
from transports.typing import TransportName

from .apps import make_app
from .conftest import TRANSPORTS
from .proxies import (
    ConnectRefusingProxy,
    IdleCutProxy,
    SilentUpgradeProxy,
    StreamBufferingProxy,
)
from .secharness import Live, live_server
from .servers import hypercorn_server

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "$diagnose:test-topic-1"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


# --- the verdict logic, on made-up observations ---------------------------------------------


def healthy(name: str) -> Observation:
    """What a transport that works shows: every step answered in time."""
    return Observation(
        name,
        negotiate=Step(5.0, 200),
        offered=True,
        open=Step(9.0, 101 if name == "websocket" else 200),
        hello_ms=10.0,
        ping_ms=11.0,
        pong_ms=13.0,
        publish=Step(40.0, 200),
        sent_ms=[20.0, 320.0, 620.0],
        arrived_ms=[25.0, 324.0, 627.0],
        idle=Idle(3.0, 3.0, "held"),
    )


def changed(name: str, **changes: Any) -> Observation:
    obs = healthy(name)
    for key, value in changes.items():
        setattr(obs, key, copy.deepcopy(value))
    return obs


@pytest.mark.parametrize("name", TRANSPORTS)
def test_a_healthy_transport_is_ok(name: str) -> None:
    finding = judge(healthy(name))
    assert (finding.verdict, finding.ok, finding.first_message_ms) == ("ok", True, 10.0)
    assert any(line.startswith("publications: 3 sent 300 ms apart") for line in finding.observed)


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("sse", "unreachable", {"negotiate": Step(3.0, failure="unreachable")}),
    ("sse", "tls_error", {"negotiate": Step(3.0, failure="tls")}),
    ("sse", "connect_refused", {"negotiate": Step(3.0, failure="connect_refused")}),
    ("sse", "timeout", {"negotiate": Step(None, failure="timeout")}),
    ("sse", "origin_refused", {"negotiate": Step(3.0, 403, error="forbidden_origin")}),
    ("sse", "negotiate_failed", {"negotiate": Step(3.0, 404, error="not_found")}),
    ("sse", "negotiate_failed", {"negotiate": Step(3.0, 403)}),  # a proxy's 403
    ("sse", "negotiate_failed", {"offered": None}),  # 200, but not a negotiate answer
    ("longpoll", "not_offered", {"offered": False}),
    ("websocket", "not_offered", {"negotiate": Step(3.0, 400, error="no_transport")}),
    ("websocket", "upgrade_refused", {"open": Step(9.0, 426)}),
    ("websocket", "upgrade_refused", {"open": Step(9.0, 400)}),
    ("websocket", "origin_refused", {"open": Step(9.0, 403, error="forbidden_origin")}),
    ("websocket", "timeout", {"open": Step(None, failure="timeout")}),
    ("websocket", "connect_refused", {"open": Step(9.0, failure="connect_refused")}),
    ("websocket", "upgrade_silent", {"hello_ms": None}),
    ("websocket", "upgrade_silent", {"pong_ms": None}),
    ("sse", "sse_buffered", {"open": Step(None, failure="timeout")}),
    ("sse", "sse_buffered", {"hello_ms": None}),
    ("sse", "sse_buffered", {"pong_ms": None}),
    ("sse", "sse_buffered", {"arrived_ms": [900.0, 901.0, 903.0]}),  # held, then one burst
    ("sse", "sse_buffered", {"arrived_ms": [25.0, None, None]}),
    ("sse", "http_error", {"open": Step(9.0, 502)}),
    ("sse", "http_error", {"uplink": Step(15.0, 404, error="unknown_session")}),
    ("sse", "tls_error", {"open": Step(9.0, failure="tls")}),
    ("longpoll", "timeout", {"open": Step(None, failure="timeout")}),
    ("longpoll", "http_error", {"open": Step(9.0, 504)}),
    ("longpoll", "timeout", {"pong_ms": None}),
    ("longpoll", "timeout", {"arrived_ms": [25.0, 330.0, None]}),
    ("websocket", "idle_cut", {"idle": Idle(30.0, 2.0, "cut", "the socket dropped (1006)")}),
    ("sse", "idle_cut", {"idle": Idle(30.0, 2.0, "cut")}),
    ("longpoll", "idle_cut", {"idle": Idle(30.0, 2.0, "cut", "a held poll answered 504")}),
]


@pytest.mark.parametrize(("name", "verdict", "changes"), CASES)
def test_verdicts(name: str, verdict: str, changes: dict[str, Any]) -> None:
    """Each failure leads to its verdict, and the transport does not count as working."""
    finding = judge(changed(name, **changes))
    assert (finding.verdict, finding.ok) == (verdict, False), finding.observed
    assert finding.observed


def test_every_verdict_is_reachable_and_described() -> None:
    """The cases above reach every verdict the catalogue must describe, and the shipped
    catalogue describes each with a title, a cause and a fix."""
    assert {verdict for _, verdict, _ in CASES} | {"ok"} == set(VERDICTS)
    entries = catalogue()
    assert set(entries) == set(VERDICTS)


def test_a_broken_catalogue_is_refused(tmp_path: Path) -> None:
    document = json.loads((ROOT / "transports/static/diagnose.json").read_text())
    del document["verdicts"]["idle_cut"]
    path = tmp_path / "diagnose.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="idle_cut"):
        load(path)
    document["verdicts"]["idle_cut"] = {"title": "t", "cause": "", "fix": "f"}
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="idle_cut"):
        load(path)


def test_what_is_not_a_failure() -> None:
    """Diagnose off (404) skips the publications; a cut after the heartbeat is not an idle
    cut; publications spaced as sent are not a buffer; a burst on long-poll is not a fault."""
    off = judge(changed("sse", publish=Step(30.0, 404), sent_ms=[], arrived_ms=[]))
    assert off.ok and any("publication skipped" in line for line in off.observed)
    late = judge(changed("websocket", idle=Idle(40.0, 30.0, "cut")))
    assert late.ok
    heartbeat = judge(changed("longpoll", idle=Idle(40.0, 25.0, "heartbeat")))
    assert heartbeat.ok and any("poll window" in line for line in heartbeat.observed)
    burst = judge(changed("longpoll", arrived_ms=[900.0, 901.0, 903.0]))
    assert burst.ok


def test_buffered() -> None:
    sent = [0.0, 300.0, 600.0]
    assert buffered(sent, [700.0, 702.0, 705.0])
    assert not buffered(sent, [5.0, 305.0, 606.0])  # as sent
    assert not buffered(sent, [5.0, 6.0, 8.0])  # together but at once: nothing held
    assert not buffered([0.0, 50.0, 100.0], [400.0, 401.0, 402.0])  # sent too close to tell
    assert not buffered(sent, [700.0, None, 705.0])


def test_best_follows_the_server_order() -> None:
    findings = {
        "websocket": judge(changed("websocket", open=Step(9.0, 426))),
        "sse": judge(healthy("sse")),
        "longpoll": judge(healthy("longpoll")),
    }
    assert best(findings, ["websocket", "sse", "longpoll"]) == "sse"
    assert best(findings, ["longpoll", "sse"]) == "longpoll"
    assert best(findings, []) is None


def test_report_shape() -> None:
    observations = {"websocket": changed("websocket", hello_ms=None), "sse": healthy("sse")}
    report = build("http://x/realtime", ["websocket", "sse"], observations)
    assert set(report) == {"url", "best", "transports"} and report["best"] == "sse"
    item = report["transports"]["websocket"]
    keys = {"ok", "first_message_ms", "verdict", "title", "observed", "cause", "fix"}
    assert set(item) == keys
    assert (
        item["verdict"] == "upgrade_silent" and item["title"] == catalogue()["upgrade_silent"].title
    )
    text = render_text(report)
    assert "best: sse" in text and "fix: " in text


# --- the server side ------------------------------------------------------------------------


def diagnose_app(**settings: Any) -> Any:
    """The contract app with diagnose on and an authoriser that refuses every subscription."""
    app = make_app(diagnose=True, **settings)

    async def nobody(channel: Channel, topic: str) -> bool:
        return False

    app.extensions["transports"].authorize_subscribe(nobody)
    return app


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    async with live_server(diagnose_app(session_ttl=0.5, poll_window=1.0, ticket_ttl=2.0)) as s:
        yield s


async def publish(live: Live, body: Any, **headers: str) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    merged = {"Content-Type": "application/json", **headers}
    async with live.http.post(live.url + "/diagnose/publish", data=data, headers=merged) as r:
        return r.status, await r.json(content_type=None)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_diagnostics_publication_reaches_a_subscriber(
    live: Live, transport: TransportName
) -> None:
    """On every transport: SUB to a ``$diagnose:`` topic passes without the authoriser (which
    refuses everything else), and POST /diagnose/publish reaches it."""
    wire = await live.wire(transport)
    await wire.send('[5,1,"news",null]', f'[5,2,"{TOPIC}",null]')
    assert (await wire.reply(1))[:3] == [4, 1, "forbidden"]
    assert (await wire.reply(2))[:3] == [4, 2, "ok"]
    status, answer = await publish(live, {"topic": TOPIC, "event": "probe", "data": {"n": 1}})
    assert status == 200 and set(answer) == {"offset", "epoch"} and answer["offset"] == 1
    pub = await wire.recv()
    assert pub == [1, TOPIC, "probe", {"n": 1}, 1, answer["epoch"]]
    # A client may still not PUBLISH there.
    await wire.send(f'[10,3,"{TOPIC}","probe",1]')
    assert (await wire.reply(3))[:3] == [4, 3, "bad_topic"]


async def test_the_publish_endpoint_refuses(live: Live) -> None:
    """Other topics and bad bodies are 400 with the JSON error shape; the origin check and the
    content type apply; a flood is rate limited."""
    for topic in ("news", "$diagnose:short", "$diagnose:" + "x" * 65, "$other:abcdefgh", 7):
        status, answer = await publish(live, {"topic": topic, "event": "e", "data": 1})
        assert status == 400 and set(answer) == {"error", "message"}, (topic, answer)
    status, answer = await publish(live, {"topic": TOPIC, "event": "bad event", "data": 1})
    assert (status, answer["error"]) == (400, "bad_request")
    assert (await publish(live, b"[1,2]"))[1]["error"] == "bad_json"
    assert (await publish(live, b"{nope"))[1]["error"] == "bad_json"
    status, answer = await publish(
        live, {"topic": TOPIC, "event": "e"}, Origin="https://evil.example"
    )
    assert (status, answer["error"]) == (403, "forbidden_origin")
    async with live.http.post(live.url + "/diagnose/publish", data=b"{}") as response:
        assert response.status == 415
    async with live.http.get(live.url + "/diagnose/publish") as response:
        assert response.status == 405
    statuses = [
        (await publish(live, {"topic": TOPIC, "event": "e", "data": n}))[0]
        for n in range(DIAGNOSE_BURST + 5)
    ]
    assert statuses.count(429) >= 1 and statuses[0] == 200


async def test_the_page_route(live: Live) -> None:
    """``GET /diagnose`` serves the page as HTML when the package has it, else a JSON 404;
    ``/diagnose.json`` (the catalogue) is served beside the browser modules."""
    page = ROOT / "transports/static/diagnose.html"
    async with live.http.get(live.url + "/diagnose") as response:
        if page.exists():
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert await response.read() == page.read_bytes()
        else:
            assert response.status == 404
            assert (await response.json())["error"] == "not_found"
    async with live.http.get(live.url + "/diagnose.json") as response:
        assert response.status == 200 and (await response.json())["version"] == 1


async def test_diagnose_off() -> None:
    """Off (the default): the endpoints answer 404 like unknown paths, and a SUB to a
    ``$diagnose:`` topic is refused as reserved."""
    async with live_server() as live:
        status, answer = await publish(live, {"topic": TOPIC, "event": "e", "data": 1})
        assert (status, answer["error"]) == (404, "not_found")
        async with live.http.get(live.url + "/diagnose") as response:
            assert response.status == 404
        wire = await live.wire("websocket")
        await wire.send(f'[5,1,"{TOPIC}",null]')
        assert (await wire.reply(1))[:3] == [4, 1, "bad_topic"]


# --- the tool against real servers ----------------------------------------------------------


async def run_tool(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``python -m transports.diagnose ARGS`` in a subprocess (no proxy from the environment
    unless ``env`` gives one): exit status, stdout, stderr."""
    environment = {k: v for k, v in os.environ.items() if k.upper() not in PROXY_VARIABLES}
    environment.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "transports.diagnose",
        *args,
        cwd=ROOT,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def run_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    code, out, err = await run_tool(*args, "--json", env=env)
    assert "Traceback" not in err, err
    report: dict[str, Any] = json.loads(out)  # exactly one JSON object
    return code, report


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {name: item["verdict"] for name, item in report["transports"].items()}


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """A real server with diagnose on and the default heartbeat (25 s)."""
    async with hypercorn_server(make_app(diagnose=True)) as base:
        yield base


async def test_tool_direct(server: str) -> None:
    """Direct to a healthy server: everything works, with the publications timed; the JSON
    report has the documented shape."""
    code, report = await run_json(server + "/realtime", "--idle", "0.5", "--timeout", "3")
    assert code == 0
    assert report["url"] == server + "/realtime" and report["best"] == "websocket"
    assert verdicts(report) == {"websocket": "ok", "sse": "ok", "longpoll": "ok"}
    keys = {"ok", "first_message_ms", "verdict", "title", "observed", "cause", "fix"}
    for item in report["transports"].values():
        assert set(item) == keys and item["ok"] is True
        assert isinstance(item["first_message_ms"], float)
        assert any(line.startswith("publications: 3 sent") for line in item["observed"])


async def test_tool_with_diagnose_off() -> None:
    """A server without diagnose: the publications are skipped, the transports still work;
    the text report says so."""
    async with hypercorn_server(make_app()) as base:
        code, out, err = await run_tool(base + "/realtime", "--idle", "0", "--timeout", "3")
    assert code == 0, (out, err)
    assert "publication skipped: the server has diagnose off" in out
    assert "best: websocket" in out


async def test_tool_origin_refused(server: str) -> None:
    code, report = await run_json(
        server + "/realtime", "--origin", "https://evil.example", "--idle", "0"
    )
    assert code == 1 and report["best"] is None
    assert set(verdicts(report).values()) == {"origin_refused"}


async def test_tool_silent_upgrade(server: str) -> None:
    """A proxy that passes the 101 and then drops every byte: upgrade_silent; the HTTP
    transports still work, and best follows the server's order among them."""
    port = int(server.rsplit(":", 1)[1])
    async with SilentUpgradeProxy(port) as proxy:
        code, report = await run_json(proxy.url + "/realtime", "--idle", "0.5", "--timeout", "2")
    assert proxy.upgrades == 1
    assert code == 0 and report["best"] == "sse"
    assert verdicts(report) == {"websocket": "upgrade_silent", "sse": "ok", "longpoll": "ok"}


async def test_tool_stream_held_and_flushed(server: str) -> None:
    """A proxy that passes the stream's headers and then lets its body go every 1.5 s: the
    HELLO and the round trip come through (late), but the three publications sent 300 ms
    apart arrive together after the next flush: sse_buffered, from their timing alone."""
    port = int(server.rsplit(":", 1)[1])
    async with StreamBufferingProxy(port, 1.5) as proxy:
        code, report = await run_json(
            proxy.url + "/realtime", "--idle", "0", "--timeout", "2.5", "--transports", "sse"
        )
    assert proxy.flushes >= 3
    assert code == 1 and verdicts(report) == {"sse": "sse_buffered"}
    observed = report["transports"]["sse"]["observed"]
    assert any("arrived late and together" in line for line in observed), observed
    assert any(line.startswith("round trip") for line in observed), observed


async def test_tool_idle_cut(server: str) -> None:
    """A proxy that cuts after 1.5 s of silence, under the server's 25 s heartbeat: every
    transport is idle_cut, and none counts as working (exit 1)."""
    port = int(server.rsplit(":", 1)[1])
    async with IdleCutProxy(port, 1.5) as proxy:
        code, report = await run_json(proxy.url + "/realtime", "--idle", "4", "--timeout", "3")
    assert code == 1 and report["best"] is None
    assert verdicts(report) == {"websocket": "idle_cut", "sse": "idle_cut", "longpoll": "idle_cut"}
    assert proxy.cuts >= 3
    for item in report["transports"].values():
        assert any("cut after 1.5 s without traffic" in line for line in item["observed"])


async def test_tool_connect_refused() -> None:
    """Through a forward proxy (HTTPS_PROXY) that refuses CONNECT: connect_refused."""
    async with ConnectRefusingProxy() as proxy:
        code, report = await run_json(
            "https://127.0.0.1:9/realtime",
            "--idle",
            "0",
            "--timeout",
            "3",
            env={"HTTPS_PROXY": proxy.url},
        )
    assert proxy.connects >= 1
    assert code == 1
    assert set(verdicts(report).values()) == {"connect_refused"}


async def test_tool_not_offered_and_transports_option() -> None:
    """A server without WebSocket: not_offered for it; ``--transports`` limits the run."""
    async with hypercorn_server(make_app(transports=["sse", "longpoll"])) as base:
        code, report = await run_json(base + "/realtime", "--idle", "0")
        assert code == 0 and report["best"] == "sse"
        assert verdicts(report) == {"websocket": "not_offered", "sse": "ok", "longpoll": "ok"}
        code, report = await run_json(base + "/realtime", "--idle", "0", "--transports", "longpoll")
        assert code == 0 and list(report["transports"]) == ["longpoll"]


class SilentServer:
    """Accepts TCP connections on loopback and never answers (a hung server or proxy), or
    answers every request with ``answer``."""

    def __init__(self, answer: bytes | None = None) -> None:
        self.answer = answer

    async def __aenter__(self) -> str:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                if self.answer is not None:
                    await reader.readuntil(b"\r\n\r\n")
                    writer.write(self.answer)
                    await writer.drain()
                await reader.read()
            writer.close()

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)


async def test_tool_timeout() -> None:
    async with SilentServer() as base:
        code, report = await run_json(base + "/realtime", "--idle", "0", "--timeout", "1")
    assert code == 1
    assert set(verdicts(report).values()) == {"timeout"}


async def test_tool_negotiate_garbage() -> None:
    """A 200 that is not a negotiate answer (some other app on that path): negotiate_failed."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    async with SilentServer(answer + b"Connection: close\r\n\r\n{}") as base:
        code, report = await run_json(base + "/realtime", "--idle", "0", "--timeout", "2")
    assert code == 1
    assert set(verdicts(report).values()) == {"negotiate_failed"}
    observed = report["transports"]["sse"]["observed"]
    assert "the answer is not a negotiate object" in observed


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tool_tls_error(tmp_path: Path) -> None:
    """A TLS server whose certificate the client does not trust: tls_error."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        code, report = await run_json(f"https://127.0.0.1:{port}/realtime", "--idle", "0")
    finally:
        server.close()
    assert code == 1
    assert set(verdicts(report).values()) == {"tls_error"}


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["ftp://example.com/realtime"],
        ["example.com/realtime"],
        ["http://127.0.0.1:9/realtime", "--timeout", "0"],
        ["http://127.0.0.1:9/realtime", "--idle", "-1"],
        ["http://127.0.0.1:9/realtime", "--transports", "carrier-pigeon"],
        ["http://127.0.0.1:9/realtime", "--frobnicate"],
    ],
)
async def test_tool_bad_usage(args: list[str]) -> None:
    code, out, err = await run_tool(*args)
    assert code == 2 and "usage:" in err and "Traceback" not in err
    assert out == ""


async def test_tool_unreachable() -> None:
    code, out, err = await run_tool("http://127.0.0.1:9/realtime", "--idle", "0")
    assert code == 1 and "unreachable" in out and "Traceback" not in err


# --- the docs say what the code does ----------------------------------------------------------


def test_operations_verdict_table_matches_the_catalogue() -> None:
    """docs/operations.md lists every verdict of diagnose.json, in its order, with its title."""
    text = (ROOT / "docs/operations.md").read_text()
    table = text.split("### Verdicts", 1)[1]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, flags=re.MULTILINE)
    assert [(key, title.strip()) for key, title in rows] == [
        (key, entry.title) for key, entry in catalogue().items()
    ]


def test_protocol_states_the_publication_limits() -> None:
    text = " ".join((ROOT / "docs/protocol.md").read_text().split())
    assert f"{DIAGNOSE_RATE:g} per second per address, {DIAGNOSE_BURST} at once" in text
