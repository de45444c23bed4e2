"""The client policy (transports/static/policy.json) against tests/policy_vectors.json.

Every vector runs through the code the Python client runs, not only through policy.py: the
close code through the function its reconnect loop calls, an HTTP answer through the real
negotiate request, POST /send loop, poll loop and SSE reattach (with a scripted connector, and
their waits recorded instead of slept), delays through ``Client._reconnect_delay`` and
:class:`~transports.client.connection.Attempts`, deadlines, liveness and defaults through the
client and its connection classes. The JS client runs the same vectors.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

import transports.protocol.policy as policy_module
from transports.client import Client
from transports.client.connection import Attempts, Connection, Link, retry_after
from transports.client.connector import (
    Connector,
    HTTPResponse,
    StreamResponse,
    WebSocketConnection,
)
from transports.client.longpoll import LongPoll
from transports.client.negotiate import NegotiateRefused, negotiate
from transports.client.registry import CONNECTIONS
from transports.client.sse import SSE
from transports.protocol.codes import is_reconnect_code
from transports.protocol.frames import Close, ServerFrame
from transports.protocol.policy import POLICY, RequestKind
from transports.protocol.types import TransportName

from .conftest import eventually

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "policy_vectors.json").read_text(encoding="utf-8")
)
POLICY_JSON: dict[str, Any] = json.loads(
    (Path(policy_module.__file__).parents[1] / "static" / "policy.json").read_text(encoding="utf-8")
)
CLOSE_BODY = b'{"cursor": 1, "frames": [[9, 1000, "bye"]]}'
FRAME = '[3,1,"e",null]'


def cases(section: str) -> list[Any]:
    return list(VECTORS[section]["cases"])


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def case_id(case: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in case.items() if not isinstance(v, list | dict))


# --- a scripted server ---------------------------------------------------------------------------


class Stream(StreamResponse):
    def __init__(self, status: int) -> None:
        self.status = status
        self.headers: Mapping[str, str] = {}
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover

    async def read_all(self) -> bytes:
        return b""

    async def close(self) -> None:
        self.closed = True


class Scripted(Connector):
    """Answers the first requests with ``statuses``, then every request with ``then``."""

    def __init__(self, statuses: list[int], then: int, body: bytes = CLOSE_BODY) -> None:
        self.statuses = statuses
        self.then = then
        self.body = body
        self.requests: list[tuple[str, str]] = []

    def _next(self) -> int:
        return self.statuses.pop(0) if self.statuses else self.then

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> HTTPResponse:
        self.requests.append((method, url))
        status = self._next()
        answer = self.body if status == 200 else b'{"error": "x", "message": "scripted"}'
        return HTTPResponse(status, {}, answer)

    async def stream(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> StreamResponse:
        self.requests.append(("GET", url))
        return Stream(self._next())

    async def websocket(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> WebSocketConnection:
        raise OSError("no websocket here")

    async def close(self) -> None:
        pass


class Recorder:
    """What a connection handed to its client; ends it on a CLOSE frame, as the client does."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    def deliver(self, connection: Connection, frame: ServerFrame) -> None:
        if isinstance(frame, Close):
            connection.end(frame.code, frame.reason)

    def refuse(self, text: str, size: int, limit: int) -> None:
        self.refused.append(text)


INFO: dict[str, Any] = {
    "token": "secret",
    "ticket": "ticket",
    "urls": {"send": "/rt/send", "longpoll": "/rt/poll", "sse": "/rt/sse"},
}


def make(cls: type[Connection], connector: Connector, recorder: Recorder, **info: Any) -> Any:
    connection = cls(
        Link(connector, "http://test", recorder.deliver, recorder.refuse), {**INFO, **info}
    )
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    connection.sleep = sleep
    return connection


def http_cases(kind: str) -> list[Any]:
    return [pytest.param(c, id=case_id(c)) for c in cases("http") if c["kind"] == kind]


def answers(case: Mapping[str, Any]) -> list[int]:
    """The answers of a case: ``status``, for the first time and ``retried`` times again."""
    return [case["status"]] * (case["retried"] + 1)


# --- close codes ---------------------------------------------------------------------------------


class Toy(Connection):
    """A transport that opens at once and ends with ``code`` right after."""

    name: ClassVar[TransportName] = "toy"
    code = 1000

    async def open(self, deadline: float) -> None:
        asyncio.get_running_loop().call_soon(self.end, self.code, "toy")

    async def send(self, frames: list[str | bytes]) -> None:
        pass

    async def leave(self) -> None:
        pass


NEGOTIATED = json.dumps({"token": "t", "ticket": "t", "transports": ["toy"], "urls": {}})


@pytest.mark.parametrize("case", cases("closeCodes"), ids=case_id)
async def test_close_codes(case: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """What the client's reconnect loop does after a connection ends with the code (a toy
    transport added to the registry ends each connection with it)."""
    monkeypatch.setitem(CONNECTIONS, "toy", type("Ended", (Toy,), {"code": case["code"]}))
    connector = Scripted([], 200, body=NEGOTIATED.encode())
    client = Client("http://test/rt", connector, transports=[Toy.name], backoff=(0.0, 0.0))
    client.start()
    try:
        if case["action"] == "stop":
            await eventually(lambda: client.state == "closed")
            assert client._closed is not None and client._closed.code == case["code"]
            assert client.stats["reconnects"] == 0
        else:
            await eventually(lambda: client.stats["reconnects"] >= 2)
            assert client.state != "closed"
    finally:
        await client.close()
    # The same set as codes.py (what the server documents, and the JS tests compare against).
    assert is_reconnect_code(case["code"]) == (case["action"] == "reconnect")


def test_close_codes_agree_with_codes_py_everywhere() -> None:
    for code in range(0, 5000):
        expected = "reconnect" if is_reconnect_code(code) else "stop"
        assert policy_module.close_action(code) == expected, code


# --- HTTP answers, through the requests the client makes ----------------------------------------


@pytest.mark.parametrize("case", http_cases("negotiate"))
async def test_http_negotiate(case: dict[str, Any]) -> None:
    connector = Scripted([case["status"]], 500)
    action = case["action"]
    call = negotiate(connector, "http://test/rt", token=None, client_key="k" * 16, transports=[])
    if action == "ok":
        assert await call == {"cursor": 1, "frames": [[9, 1000, "bye"]]}
    elif action == "retry":
        with pytest.raises(OSError) as retried:
            await call
        assert not isinstance(retried.value, NegotiateRefused)
    else:
        with pytest.raises(NegotiateRefused) as refused:
            await call
        assert refused.value.close_code == action
        assert POLICY.close_action(action) == "stop"


@pytest.mark.parametrize("case", http_cases("send"))
async def test_http_send(case: dict[str, Any]) -> None:
    """One frame sent over ``POST /send`` answered as the case says, then 204."""
    connector, recorder = Scripted(answers(case), 204), Recorder()
    connection = make(SSE, connector, recorder)
    await connection.send([FRAME])
    connection.start_upstream()
    action = case["action"]
    posts = len(answers(case)) + (action == "retry")
    try:
        await eventually(lambda: len(connector.requests) >= posts or connection.closed.done())
        if isinstance(action, int):
            # The post loop returns in the same step as it ends the connection: nothing follows.
            assert connection.closed.done() and connection.closed.result().code == action
        else:
            # Nothing more follows: a frame sent now is posted next, after anything still due.
            await connection.send(['[3,2,"later",null]'])
            await eventually(lambda: len(connector.requests) > posts)
            posts += 1
            assert not connection.closed.done()
        assert len(connector.requests) == posts, connector.requests
        assert recorder.refused == ([FRAME] if action == "split" else [])
    finally:
        await connection.shutdown()


@pytest.mark.parametrize("case", http_cases("poll"))
async def test_http_poll(case: dict[str, Any]) -> None:
    """Polls answered as the case says, then 200 with a CLOSE 1000."""
    connector, recorder = Scripted(answers(case), 200), Recorder()
    connection = make(LongPoll, connector, recorder)
    task = asyncio.create_task(connection._loop())
    try:
        ended = await asyncio.wait_for(connection.closed, 5)
    finally:
        task.cancel()
    action = case["action"]
    if isinstance(action, int):
        assert ended.code == action
        assert len(connector.requests) == len(answers(case))
    else:
        assert ended.code == 1000
        assert len(connector.requests) == len(answers(case)) + (action == "retry")


@pytest.mark.parametrize("case", http_cases("sse"))
async def test_http_sse(case: dict[str, Any]) -> None:
    """A dropped stream reattached, answered as the case says."""
    connector, recorder = Scripted(answers(case), 200), Recorder()
    connection = make(SSE, connector, recorder)
    connection.response = Stream(200)
    connection.last_seq = 7
    reattached = await connection._reattach(connection.attempts("sse"))
    action = case["action"]
    assert reattached == (action == "ok")
    if isinstance(action, int):
        assert connection.closed.result().code == action
    assert len(connector.requests) == len(answers(case)) + (action == "retry")


# --- delays --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases("requestDelay"), ids=case_id)
async def test_request_delay(case: dict[str, Any]) -> None:
    attempts = Attempts(case["kind"], rand=lambda: case["random"])
    attempts.retried = case["retried"]
    headers = {} if case["retryAfter"] is None else {"Retry-After": case["retryAfter"]}
    action, delay = attempts.answered(HTTPResponse(503, headers, b""))
    assert action == "retry"
    assert ms(delay) == pytest.approx(case["delayMs"], abs=1e-6)


@pytest.mark.parametrize("case", cases("retryAfter"), ids=case_id)
def test_retry_after(case: dict[str, Any]) -> None:
    headers = {} if case["header"] is None else {"retry-AFTER": case["header"]}
    assert ms(retry_after(HTTPResponse(429, headers, b""))) == pytest.approx(case["ms"])


@pytest.mark.parametrize("case", cases("reconnectDelay"), ids=case_id)
async def test_reconnect_delay(case: dict[str, Any]) -> None:
    options: dict[str, Any] = {}
    if "backoffMs" in case:
        options["backoff"] = (case["backoffMs"]["base"] / 1000, case["backoffMs"]["cap"] / 1000)
    client = Client("http://test/rt", Scripted([], 500), **options)
    client._retry_hint = case["hintMs"] / 1000
    client._random = lambda: case["random"]
    delay = client._reconnect_delay(case["attempt"], case.get("retryAfterMs", 0) / 1000)
    assert ms(delay) == pytest.approx(case["delayMs"], abs=1e-6)


@pytest.mark.parametrize("kind", ["send", "poll", "sse"])
@pytest.mark.parametrize("case", cases("reattach"), ids=lambda c: f"hint={c['hintMs']}")
def test_reattach(case: dict[str, Any], kind: RequestKind) -> None:
    now = [0.0]
    draw = [0.0]
    assert POLICY.requests[kind].network == "reattach"
    attempts = Attempts(kind, case["hintMs"] / 1000, clock=lambda: now[0], rand=lambda: draw[0])
    for loss in case["losses"]:
        now[0], draw[0] = loss["atMs"] / 1000, loss["random"]
        expected = loss["delayMs"]
        delay = ms(attempts.failed())
        assert delay == (None if expected is None else pytest.approx(expected, abs=1e-6)), loss


# --- deadlines, liveness, stability, defaults ----------------------------------------------------


@pytest.mark.parametrize("case", cases("deadlines"), ids=case_id)
async def test_deadlines(case: dict[str, Any]) -> None:
    client = Client("http://test/rt", Scripted([], 500))
    assert ms(client.deadlines[case["transport"]]) == case["ms"]


@pytest.mark.parametrize("case", cases("liveness"), ids=case_id)
async def test_liveness(case: dict[str, Any]) -> None:
    info = {"heartbeat": case["heartbeatMs"], "pollWindow": case["pollWindowMs"]}
    connection = make(CONNECTIONS[case["transport"]], Scripted([], 500), Recorder(), **info)
    assert ms(connection.silence_limit) == case["limitMs"]


@pytest.mark.parametrize("case", cases("stable"), ids=case_id)
def test_stable(case: dict[str, Any]) -> None:
    # The client's reconnect loop calls policy.is_stable with how long the connection was up.
    assert policy_module.is_stable(case["upMs"] / 1000) == case["resetsBackoff"]


@pytest.mark.parametrize("case", cases("afterClose"), ids=case_id)
def test_after_close(case: dict[str, Any]) -> None:
    # The client's reconnect loop calls policy.after_close with how long the connection was
    # up, whether its token is a function and whether the connection re-authenticated
    # (tests/test_reauth.py runs the same paths against a real server).
    action = policy_module.after_close(
        case["code"],
        case["upMs"] / 1000,
        renewable=case["token"] == "function",
        reauthenticated=case["reauthenticated"],
    )
    assert action == case["action"]


QUICK_CLOSES = [
    pytest.param(case, id=case_id(case))
    for case in cases("afterClose")
    if case["upMs"] < 1000 and not case["reauthenticated"]
]


@pytest.mark.parametrize("case", QUICK_CLOSES)
async def test_after_close_through_the_client(
    case: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reconnect loop, with a toy transport that ends each connection at once with the
    code: a renewal negotiates again with a fresh token (and, as that connection ends with the
    code again at once, stops with "credentials refused"); a stop stops; a reconnect goes on."""
    monkeypatch.setitem(CONNECTIONS, "toy", type("Ended", (Toy,), {"code": case["code"]}))
    connector = Scripted([], 200, body=NEGOTIATED.encode())
    calls: list[int] = []

    def fresh() -> str:
        calls.append(1)
        return f"t{len(calls)}"

    token: Any = fresh if case["token"] == "function" else "fixed"
    client = Client("http://test/rt", connector, transports=[Toy.name], token=token)
    client.backoff = (0.0, 0.0)
    client.start()
    try:
        if case["action"] == "reconnect":
            await eventually(lambda: client.stats["reconnects"] >= 2)
            assert client.state != "closed"
        else:
            await eventually(lambda: client.state == "closed")
            closed = client.closed
            assert closed is not None and closed.code == case["code"]
            renewed = case["action"] == "reauthenticate"
            assert client.stats["reauthentications"] == (1 if renewed else 0)
            assert len(calls) == (2 if renewed else 1 if callable(token) else 0)
            assert closed.reason == ("credentials refused" if renewed else "toy")
    finally:
        await client.close()


@pytest.mark.parametrize("case", cases("flapping"), ids=lambda c: json.dumps(c["closes"]))
def test_flapping(case: dict[str, Any]) -> None:
    count = 0
    for code, up_ms in case["closes"]:
        count = policy_module.flap_count(count, code, up_ms / 1000)
    assert count == case["flaps"]
    assert (count >= POLICY.flapping_times) == case["flapping"]


@pytest.mark.parametrize("case", cases("defaults"), ids=lambda c: json.dumps(c["answer"]))
async def test_defaults(case: dict[str, Any]) -> None:
    connection = make(LongPoll, Scripted([], 500), Recorder(), **case["answer"])
    assert ms(connection.heartbeat) == case["heartbeatMs"]
    assert ms(connection.window) == case["pollWindowMs"]
    limits = case["limits"]
    assert (connection.max_message, connection.max_body, connection.batch) == (
        limits["message"],
        limits["body"],
        limits["batch"],
    )


# --- the files themselves ------------------------------------------------------------------------


def test_vectors_cover_every_request_kind_and_transport() -> None:
    kinds = {case["kind"] for case in cases("http")}
    assert kinds == set(POLICY_JSON["requests"]) == set(POLICY.requests)
    assert {case["transport"] for case in cases("deadlines")} == set(CONNECTIONS)
    for kind in kinds:
        statuses = {case["status"] for case in cases("http") if case["kind"] == kind}
        assert {200, 400, 401, 403, 404, 408, 409, 413, 429, 500, 503} <= statuses, kind


def test_every_policy_field_is_documented() -> None:
    """Each key of policy.json is named in policy.py's docstring (the field reference)."""
    doc = policy_module.__doc__ or ""
    keys = {key for key in POLICY_JSON if not key.startswith("$")}
    for section in ("backoff", "reattach", "defaults", "reauthenticate", "flapping"):
        keys |= set(POLICY_JSON[section])
    for request in POLICY_JSON["requests"].values():
        keys |= set(request)
    quoted = " ".join(re.findall(r"``[^`]+``", doc))
    missing = {key for key in keys if not re.search(rf"\b{re.escape(key)}\b", quoted)}
    assert not missing, missing


def test_policy_json_is_plain_data_the_browser_can_import() -> None:
    """Numbers, strings, lists, objects and null only; times in ms; code lists of numbers and
    [low, high] pairs."""
    for kind, request in POLICY_JSON["requests"].items():
        for key in ("ok", "retry", "split"):
            for item in request[key]:
                assert isinstance(item, int) or (
                    isinstance(item, list) and len(item) == 2 and item[0] <= item[1]
                ), (kind, key, item)
        assert "default" in request["close"], kind
        assert all(key == "default" or key.isdigit() for key in request["close"]), kind
