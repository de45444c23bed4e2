"""The network probes: each transport run through the real network path, on aiohttp, writing
down raw observations (:class:`~.observations.Observation`) for the verdict logic.

Per transport: negotiate a session of its own, open the transport (the upgrade, the stream,
the first poll), wait for HELLO, a round trip (PING, PONG; by ``POST /send`` on SSE and
long-poll), then, when the server has diagnose on, subscribe to a fresh ``$diagnose:<id>``
topic and time a few publications sent apart through ``POST /diagnose/publish``, and last
hold the connection idle to see whether something cuts it. The transports run concurrently.

Proxy environment variables are honoured (``trust_env``, and ``HTTP_PROXY``/``HTTPS_PROXY``
for ``ws://``/``wss://`` too, as a browser tunnels them), so a forward proxy on the path is
part of what is diagnosed. Every connection is a new one (no keep-alive reuse), so a proxy's
idle cut on a pooled connection cannot pass for a failure of the transport.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import secrets
import ssl
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..protocol.frames import (
    DIAGNOSE_PREFIX,
    ClientFrame,
    Close,
    Hello,
    Ping,
    Pong,
    Pub,
    Reply,
    ServerFrame,
    Subscribe,
    decode_server_frame,
    encode_client_frame,
)
from ..protocol.longpoll import decode_poll, encode_batch
from ..protocol.sse import SSEParser
from .observations import Failure, Idle, IdleEnd, Observation, Step
from .verdict import REVEALING

__all__ = ["Options", "Run", "classify", "diagnose"]

T = TypeVar("T")

_SUB_REF = "diagnose-sub"
_CLOSE_TIMEOUT = 1.0


@dataclass(frozen=True)
class Options:
    """What to diagnose and how long each part may take."""

    url: str
    """The extension's mount point, e.g. ``https://example.com/realtime``."""
    transports: tuple[str, ...] = ("websocket", "sse", "longpoll")
    timeout: float = 5.0
    """Seconds each step may take."""
    idle: float = 30.0
    """Seconds to hold each connection idle (0: no idle hold). It ends early at the server's
    first heartbeat, which proves that a silence that long passes."""
    origin: str | None = None
    """The ``Origin`` header to send (None: none, as a non-browser client)."""
    token: str | None = None
    """A bearer token for the application's ``on_connect``."""
    publications: int = 3
    spacing: float = 0.3
    """Seconds between publications: far enough apart that a buffer shows as one burst."""


def classify(exc: BaseException) -> tuple[Failure, str]:
    """How a request failed, from the exception aiohttp (or asyncio) raised."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return "connect_refused", f"the proxy answered {exc.status} to CONNECT"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return "tls", str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return "unreachable", f"the proxy is unreachable: {exc}"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout", "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "unreachable", str(exc)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "closed", "the response broke off before its end"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "closed", "the connection was closed before an answer"
    if isinstance(exc, aiohttp.ClientOSError):
        return "closed", str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return "unreachable", str(exc)
    return "error", str(exc) or type(exc).__name__


def _reveal(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers the report shows, under their usual spelling (lookups ignore case)."""
    lower = {name.lower(): value for name, value in headers.items()}
    return {name: lower[name.lower()] for name in REVEALING if name.lower() in lower}


def _error_code(body: bytes) -> str:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    code = value.get("error") if isinstance(value, dict) else None
    return code[:64] if isinstance(code, str) else ""


def _text(frame: ClientFrame) -> str:
    encoded = encode_client_frame(frame)
    return encoded if isinstance(encoded, str) else encoded.decode("utf-8")


class Run:
    """One diagnosis: the options, the HTTP session, the URL pieces."""

    def __init__(self, options: Options, http: aiohttp.ClientSession) -> None:
        self.options = options
        self.http = http
        parts = urlsplit(options.url)
        self.origin_url = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        self.base = options.url.rstrip("/")
        self.client_key = secrets.token_urlsafe(12)
        self.headers: dict[str, str] = {}
        if options.origin:
            self.headers["Origin"] = options.origin
        if options.token:
            self.headers["Authorization"] = f"Bearer {options.token}"

    def url(self, path: str) -> str:
        """A path of the negotiate answer's ``urls`` as a full URL."""
        return self.origin_url + path

    async def negotiate(
        self, transports: Sequence[str] | None, started: float
    ) -> tuple[Step, dict[str, Any] | None]:
        """``POST /negotiate``: what it answered, and the answer when it is a usable one."""
        body: dict[str, Any] = {"v": 1, "client": self.client_key}
        if transports is not None:
            body["transports"] = list(transports)
        headers = {**self.headers, "Content-Type": "application/json"}
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.options.timeout):
                async with self.http.post(
                    self.base + "/negotiate", data=json.dumps(body), headers=headers
                ) as response:
                    data = await response.read()
                    status, received = response.status, response.headers
        except Exception as exc:
            failure, detail = classify(exc)
            return Step((loop.time() - started) * 1000, failure=failure, detail=detail), None
        step = Step(
            (loop.time() - started) * 1000,
            status,
            headers=_reveal(received),
            error=_error_code(data),
        )
        if status != 200:
            return step, None
        try:
            info = json.loads(data)
        except (ValueError, RecursionError):
            return step, None
        return step, info if _usable(info) else None


def _usable(info: Any) -> bool:
    """Whether a negotiate answer has what the probes use (protocol §3): the transports, a
    token and a ticket, and every transport's URL and ``send``'s (always all listed)."""
    if not isinstance(info, dict):
        return False
    urls, transports = info.get("urls"), info.get("transports")
    return (
        isinstance(transports, list)
        and all(isinstance(name, str) for name in transports)
        and isinstance(info.get("token"), str)
        and isinstance(info.get("ticket"), str)
        and isinstance(urls, dict)
        and all(isinstance(urls.get(name), str) for name in (*PROBES, "send"))
    )


class Probe(abc.ABC):
    """One transport's connection, recording every frame it receives with its time."""

    name: ClassVar[str]

    def __init__(self, run: Run, obs: Observation, info: dict[str, Any], started: float) -> None:
        self.run = run
        self.http = run.http
        self.obs = obs
        self.info = info
        self.started = started
        self.received: list[tuple[float, ServerFrame | None]] = []
        """Frames as they arrived; None is an empty poll answer (the long-poll heartbeat)."""
        self.end: Step | None = None
        """How the connection ended (``error == "CLOSE"``: a CLOSE from the server)."""
        self.last_traffic = 0.0
        """When bytes last went either way (ms)."""
        self.silence_at_end = 0.0
        self.beat_silence = 0.0
        self.tasks: list[asyncio.Task[None]] = []
        self._news = asyncio.Event()

    def now(self) -> float:
        """Milliseconds since the probe started."""
        return (asyncio.get_running_loop().time() - self.started) * 1000

    def traffic(self) -> None:
        self.last_traffic = self.now()

    def got(self, frame: ServerFrame | None) -> None:
        now = self.now()
        if frame is None or isinstance(frame, Ping):
            self.beat_silence = now - self.last_traffic
        self.received.append((now, frame))
        self.last_traffic = now
        self._news.set()
        if isinstance(frame, Close):
            self.ended(
                Step(now, detail=f"CLOSE {frame.code} {frame.reason}".strip(), error="CLOSE")
            )

    def ended(self, step: Step) -> None:
        if self.end is None:
            self.silence_at_end = (step.ms or self.now()) - self.last_traffic
            self.end = step
        self._news.set()

    async def wait(self, check: Callable[[], T | None], timeout: float) -> T | None:
        """The first non-None ``check()`` within ``timeout`` seconds; None once it passed or
        the connection ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = check()
            if found is not None or self.end is not None:
                return found
            left = deadline - loop.time()
            if left <= 0:
                return None
            self._news.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), left)

    def first(self, kind: type[Any], after: float = -1.0) -> float | None:
        """When the first frame of ``kind`` arrived after ``after`` ms."""
        for at, frame in self.received:
            if at >= after and isinstance(frame, kind):
                return at
        return None

    @abc.abstractmethod
    async def open(self) -> bool:
        """Open the transport and set ``obs.open``; True when it answered as it should."""

    @abc.abstractmethod
    async def send(self, frame: ClientFrame) -> bool:
        """Send one client frame; False when it could not be sent (``obs.uplink`` says why)."""

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class WebSocketProbe(Probe):
    name = "websocket"
    socket: aiohttp.ClientWebSocketResponse

    async def open(self) -> bool:
        url = self.run.url(str(self.info["urls"]["websocket"])) + "?ticket=" + self.info["ticket"]
        url = "ws" + url[4:] if url.startswith("http") else url
        timeout = self.run.options.timeout
        try:
            async with asyncio.timeout(timeout):
                self.socket = await self.http.ws_connect(
                    url,
                    headers=self.run.headers,
                    proxy=_env_proxy(url),
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_CLOSE_TIMEOUT),
                    autoping=True,
                    max_msg_size=0,
                    compress=0,
                )
        except aiohttp.WSServerHandshakeError as exc:
            headers = _reveal(exc.headers or {})
            # The body is not exposed: the library's refusals are JSON, a proxy's rarely are.
            json_body = headers.get("Content-Type", "").startswith("application/json")
            error = "forbidden_origin" if exc.status == 403 and json_body else ""
            self.obs.open = Step(self.now(), exc.status, headers=headers, error=error)
            return False
        except Exception as exc:
            failure, detail = classify(exc)
            self.obs.open = Step(self.now(), failure=failure, detail=detail)
            return False
        self.traffic()
        self.obs.open = Step(self.now(), 101)
        self.tasks.append(asyncio.create_task(self._read()))
        return True

    async def _read(self) -> None:
        socket = self.socket
        try:
            async for message in socket:
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    with contextlib.suppress(Exception):
                        self.got(decode_server_frame(message.data))
            code = socket.close_code
            if code is not None and code != 1006:
                self.ended(Step(self.now(), detail=f"closed with {code}", error="CLOSE"))
            else:
                self.ended(Step(self.now(), failure="closed", detail="the socket dropped (1006)"))
        except Exception as exc:
            failure, detail = classify(exc)
            self.ended(Step(self.now(), failure=failure, detail=detail))

    async def send(self, frame: ClientFrame) -> bool:
        try:
            await self.socket.send_str(_text(frame))
        except Exception as exc:
            failure, detail = classify(exc)
            self.obs.uplink = Step(self.now(), failure=failure, detail=detail)
            return False
        self.traffic()
        return True

    async def close(self) -> None:
        if hasattr(self, "socket"):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.socket.close(), _CLOSE_TIMEOUT)
        await super().close()


class HTTPProbe(Probe):
    """SSE and long-poll: frames go up by ``POST /send``."""

    def session_headers(self) -> dict[str, str]:
        return {**self.run.headers, "X-Realtime-Session": str(self.info["token"])}

    async def send(self, frame: ClientFrame) -> bool:
        headers = {**self.session_headers(), "Content-Type": "application/json"}
        self.traffic()
        try:
            async with asyncio.timeout(self.run.options.timeout):
                async with self.http.post(
                    self.run.url(str(self.info["urls"]["send"])),
                    data=encode_batch([_text(frame)]),
                    headers=headers,
                ) as response:
                    body = await response.read()
        except Exception as exc:
            failure, detail = classify(exc)
            self.obs.uplink = Step(self.now(), failure=failure, detail=detail)
            return False
        if response.status != 204:
            self.obs.uplink = Step(
                self.now(),
                response.status,
                headers=_reveal(response.headers),
                error=_error_code(body),
            )
            return False
        return True

    async def close(self) -> None:
        if self.end is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send(Close(1000, "")), _CLOSE_TIMEOUT)
        await super().close()


class SSEProbe(HTTPProbe):
    name = "sse"
    response: aiohttp.ClientResponse | None = None

    async def open(self) -> bool:
        url = self.run.url(str(self.info["urls"]["sse"])) + "?ticket=" + self.info["ticket"]
        headers = {**self.run.headers, "Accept": "text/event-stream"}
        timeout = self.run.options.timeout
        try:
            async with asyncio.timeout(timeout):
                response = await self.http.get(
                    url, headers=headers, timeout=aiohttp.ClientTimeout(total=None)
                )
        except Exception as exc:
            failure, detail = classify(exc)
            self.obs.open = Step(self.now(), failure=failure, detail=detail)
            return False
        self.response = response
        self.traffic()
        step = Step(self.now(), response.status, headers=_reveal(response.headers))
        self.obs.open = step
        if response.status != 200:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    step.error = _error_code(await response.content.read(4096))
            return False
        self.tasks.append(asyncio.create_task(self._read(response)))
        return True

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        parser = SSEParser()
        try:
            async for chunk in response.content.iter_any():
                for event in parser.feed(chunk):
                    with contextlib.suppress(Exception):
                        self.got(decode_server_frame(event.data))
            self.ended(Step(self.now(), failure="closed", detail="the stream ended"))
        except Exception as exc:
            failure, detail = classify(exc)
            self.ended(Step(self.now(), failure=failure, detail=detail))

    async def close(self) -> None:
        await super().close()
        if self.response is not None:
            self.response.close()


class LongPollProbe(HTTPProbe):
    name = "longpoll"
    cursor = 0

    async def _poll(self, timeout: float) -> tuple[int, bytes, dict[str, str]]:
        url = self.run.url(str(self.info["urls"]["longpoll"])) + f"?cursor={self.cursor}"
        self.traffic()
        async with asyncio.timeout(timeout):
            async with self.http.get(url, headers=self.session_headers()) as response:
                return response.status, await response.read(), _reveal(response.headers)

    def _frames(self, body: bytes) -> bool:
        """Record the frames of a poll answer; False when it is not one."""
        try:
            answer = decode_poll(body)
        except Exception:
            return False
        self.cursor = answer.cursor
        for frame in answer.frames:
            self.got(frame)
        if not answer.frames:
            self.got(None)
        return True

    async def open(self) -> bool:
        try:
            status, body, headers = await self._poll(self.run.options.timeout)
        except Exception as exc:
            failure, detail = classify(exc)
            self.obs.open = Step(self.now(), failure=failure, detail=detail)
            return False
        step = Step(self.now(), status, headers=headers)
        self.obs.open = step
        if status != 200:
            step.error = _error_code(body)
            return False
        if not self._frames(body):
            return False
        self.tasks.append(asyncio.create_task(self._loop()))
        return True

    async def _loop(self) -> None:
        hold = self.obs.poll_window + self.run.options.timeout
        while self.end is None:
            try:
                status, body, headers = await self._poll(hold)
            except Exception as exc:
                failure, detail = classify(exc)
                self.ended(Step(self.now(), failure=failure, detail=f"a held poll: {detail}"))
                return
            if status != 200 or not self._frames(body):
                # A proxy's 502/504 on a held poll is its idle timeout: a cut.
                detail = f"a held poll answered {status}"
                self.ended(Step(self.now(), failure="closed", detail=detail, headers=headers))
                return


PROBES: dict[str, type[Probe]] = {
    probe.name: probe for probe in (WebSocketProbe, SSEProbe, LongPollProbe)
}
"""The probe of each transport this tool knows."""


def _env_proxy(url: str) -> str | None:
    """The proxy a browser would tunnel a ``ws://``/``wss://`` URL through: the one the
    environment gives for ``http://``/``https://`` (aiohttp looks up ``WS_PROXY`` only)."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(scheme)


async def _publications(probe: Probe, options: Options) -> None:
    """SUB a fresh diagnostics topic, publish a few messages apart, time their arrival."""
    obs = probe.obs
    topic = DIAGNOSE_PREFIX + secrets.token_urlsafe(12)
    asked = probe.now()
    if not await probe.send(Subscribe(_SUB_REF, topic, None)):
        return

    def replied() -> Reply | None:
        for at, frame in probe.received:
            if at >= asked and isinstance(frame, Reply) and frame.ref == _SUB_REF:
                return frame
        return None

    reply = await probe.wait(replied, options.timeout)
    run = probe.run
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(options.publications):
        await asyncio.sleep(max(0.0, start + n * options.spacing - loop.time()))
        sent = probe.now()
        body = json.dumps({"topic": topic, "event": "probe", "data": {"n": n}})
        try:
            async with asyncio.timeout(options.timeout):
                async with run.http.post(
                    run.base + "/diagnose/publish",
                    data=body,
                    headers={**run.headers, "Content-Type": "application/json"},
                ) as response:
                    data = await response.read()
                    status = response.status
        except Exception as exc:
            failure, detail = classify(exc)
            obs.publish = Step(probe.now(), failure=failure, detail=detail)
            return
        obs.publish = Step(probe.now(), status, error=_error_code(data))
        if status != 200:
            return
        if reply is None or reply.status != "ok":
            why = "no answer" if reply is None else reply.status
            obs.publish = Step(probe.now(), failure="error", detail=f"the SUB was refused: {why}")
            return
        obs.sent_ms.append(sent)

    def arrivals() -> list[float | None] | None:
        times = arrivals_so_far(probe, topic, len(obs.sent_ms))
        return times if all(at is not None for at in times) else None

    found = await probe.wait(arrivals, options.timeout)
    obs.arrived_ms = found or arrivals_so_far(probe, topic, len(obs.sent_ms))


def arrivals_so_far(probe: Probe, topic: str, count: int) -> list[float | None]:
    """When each publication on ``topic`` arrived, None for those that did not."""
    times: list[float | None] = [None] * count
    for at, frame in probe.received:
        if isinstance(frame, Pub) and frame.topic == topic and isinstance(frame.data, dict):
            n = frame.data.get("n")
            if isinstance(n, int) and 0 <= n < count and times[n] is None:
                times[n] = at
    return times


async def _idle(probe: Probe, options: Options) -> None:
    """Leave the connection quiet until it is cut, the server's heartbeat comes, or the time
    asked for has passed."""
    mark = len(probe.received)

    def beat() -> bool | None:
        for _, frame in probe.received[mark:]:
            if frame is None or isinstance(frame, Ping):
                return True
        return None

    heard = await probe.wait(beat, options.idle)
    if probe.end is not None:
        end: IdleEnd = "closed" if probe.end.error == "CLOSE" else "cut"
        probe.obs.idle = Idle(options.idle, probe.silence_at_end / 1000, end, probe.end.detail)
    elif heard:
        probe.obs.idle = Idle(options.idle, probe.beat_silence / 1000, "heartbeat")
    else:
        silence = (probe.now() - probe.last_traffic) / 1000
        probe.obs.idle = Idle(options.idle, silence, "held")


async def probe_transport(run: Run, name: str, first: Step, order: Sequence[str]) -> Observation:
    """Everything about one transport (``first``: the first negotiate's answer, ``order``: the
    transports it offered)."""
    options = run.options
    obs = Observation(name, deadline=options.timeout)
    started = asyncio.get_running_loop().time()
    if name not in order:
        obs.negotiate = first
        obs.offered = False
        return obs
    obs.negotiate, info = await run.negotiate([name], started)
    if info is None:
        return obs
    obs.offered = name in info["transports"]
    if not obs.offered:
        return obs
    obs.heartbeat = _seconds(info.get("heartbeat"), obs.heartbeat)
    obs.poll_window = _seconds(info.get("pollWindow"), obs.poll_window)
    probe = PROBES[name](run, obs, info, started)
    try:
        if not await probe.open():
            return obs
        obs.hello_ms = await probe.wait(lambda: probe.first(Hello), options.timeout)
        if obs.hello_ms is None:
            obs.ended = probe.end
            return obs
        obs.ping_ms = probe.now()
        if not await probe.send(Ping()):
            return obs
        ping_ms = obs.ping_ms
        obs.pong_ms = await probe.wait(lambda: probe.first(Pong, ping_ms), options.timeout)
        if obs.pong_ms is None:
            obs.ended = probe.end
            return obs
        await _publications(probe, options)
        if probe.end is not None:
            obs.ended = probe.end
            return obs
        if options.idle > 0:
            await _idle(probe, options)
    finally:
        await probe.close()
    return obs


def _seconds(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value) / 1000
    return default


@dataclass
class Diagnosis:
    """What :func:`diagnose` found: the server's order of preference (empty when the first
    negotiate failed) and one observation per transport."""

    order: list[str]
    observations: dict[str, Observation]


async def diagnose(options: Options) -> Diagnosis:
    """Run every transport of ``options`` through the network path, concurrently."""
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector, trust_env=True) as http:
        # aiohttp sends an idempotent request again, once, when its connection drops: a held
        # poll cut by a proxy would be asked twice, and the cut seen twice as late. The tool
        # must see the first cut (no public switch; the attribute is aiohttp's own).
        if hasattr(http, "_retry_connection"):
            http._retry_connection = False
        run = Run(options, http)
        first, info = await run.negotiate(None, asyncio.get_running_loop().time())
        if info is None:
            observations = {name: Observation(name, first) for name in options.transports}
            for obs in observations.values():
                obs.deadline = options.timeout
            return Diagnosis([], observations)
        order = [str(name) for name in info["transports"]]
        results = await asyncio.gather(
            *(probe_transport(run, name, first, order) for name in options.transports)
        )
    return Diagnosis(order, {obs.transport: obs for obs in results})
