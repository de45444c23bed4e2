"""The engine: sessions, the application's hooks, and what every transport shares.

Nothing here imports Quart. The server layer (``transports.server``) turns HTTP and WebSocket
requests into calls on :class:`Engine` and on the channels it creates; the engine turns client
frames into calls of the application's handlers, and the application's calls into frames.

Per connection the engine keeps one :class:`~transports.protocol.session.Session` (pure state)
and one :class:`SessionChannel` (the application's handle). One sweeper task for the whole
process sends heartbeats and expires sessions, instead of a timer task per connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import inspect
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .backplanes import Backplane, Published, create_backplane
from .backplanes.memory import MemoryBackplane
from .channel import Channel, Message
from .channels import LongPollChannel, SessionChannel
from .exceptions import (
    BackplaneError,
    ChannelClosed,
    InvalidState,
    Refused,
    Reject,
    SessionElsewhere,
    TicketError,
)
from .hub import Hub
from .protocol.codes import ERROR_STATUS, CloseCode
from .protocol.frames import (
    PING,
    PONG,
    ClientFrame,
    Close,
    Event,
    OutFrame,
    Ping,
    Pong,
    Publish,
    Subscribe,
    Unsubscribe,
    decode_batch,
    encode_data,
    encode_json,
    valid_topic,
)
from .protocol.longpoll import parse_cursor
from .protocol.negotiation import NegotiateRequest, choose, negotiate_response
from .protocol.ratelimit import TokenBucket
from .protocol.session import OutboxLimits, Session, State
from .protocol.tokens import (
    TokenSigner,
    identity_fingerprint,
    new_public_id,
    new_session_id,
    parse_session_token,
)
from .settings import Settings
from .typing import Data, Identity, TransportName

__all__ = [
    "ChannelHandler",
    "DisconnectHandler",
    "Engine",
    "EventHandler",
    "SessionChannel",
    "TopicAuthorizer",
]


log = logging.getLogger("transports")

EventHandler: TypeAlias = Callable[[Channel, Any], Awaitable[Any]]
"""``async def handler(channel, data) -> reply data``, registered with ``on(event)``."""
ChannelHandler: TypeAlias = Callable[[Channel], Awaitable[None]]
"""``async def handler(channel)``, run once per connection when it opens."""
DisconnectHandler: TypeAlias = Callable[[Channel, int, str], Awaitable[None]]
"""``async def handler(channel, code, reason)``, run once when a connection ends."""
TopicAuthorizer: TypeAlias = Callable[[Channel, str], Awaitable[bool]]
"""``async def allowed(channel, topic) -> bool``; may also raise :class:`Reject`."""


def _ref_text(ref: int | str) -> str:
    # Refs are ints (JSON as is) or short strings (JSON-escaped).
    return str(ref) if isinstance(ref, int) else encode_json(ref)


def _reply_frame(ref: int | str, status: str, data_text: str, binary: bool) -> OutFrame:
    """A REPLY from an already-encoded payload (the form kept for retries).

    ``status`` is ``"ok"`` or an error code: plain ASCII that needs no JSON escaping.
    """
    head = ("[20," if binary else "[4,") + _ref_text(ref) + ',"' + status + '",'
    if not binary:
        return OutFrame(head + data_text + "]")
    return OutFrame(
        head + '"' + data_text + '"]',
        payload=base64.b64decode(data_text),
        binary_header=head + "null]",
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer the server layer sends as it is (poll and POST are answered here so that
    a process can also answer them for a request forwarded from another process)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def refused(cls, exc: Refused) -> Answer:
        """The JSON error answer of ``exc`` (protocol §10.2), with ``Retry-After`` if known."""
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if getattr(exc, "close_connection", False):
            headers["Connection"] = "close"
        body = json.dumps({"error": exc.code, "message": exc.message}).encode()
        return cls(ERROR_STATUS.get(exc.code, 400), body, headers)

    def to_json(self) -> dict[str, Any]:
        return {"s": self.status, "b": base64.b64encode(self.body).decode(), "h": self.headers}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Answer:
        return cls(int(value["s"]), base64.b64decode(value["b"]), dict(value["h"]))


_JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}

_INIT = "init:"
"""Backplane key prefix of a negotiated session's first record (identity, ids)."""
_OWNER = "owner:"
"""Backplane key prefix naming the process that holds a live session."""
_OWNER_TTL = 86_400.0


def _retry_later(code: str, message: str, wait: float) -> Refused:
    refused = Refused(code, message)
    refused.retry_after = max(1, int(wait + 0.999))
    return refused


def _error(ref: int | str, status: str, message: str) -> tuple[str, str, bool]:
    return status, encode_json({"message": message}), False


_UNAVAILABLE = ("unavailable", encode_json({"message": "the backplane is unavailable"}), False)


class Engine:
    """Sessions, hooks and dispatch, shared by the three transports.

    Args:
        settings: every tunable.
        backplane: an instance to use instead of the one ``settings.backplane`` names.
        clock: monotonic time source; ``wallclock`` for ticket expiry (tests fake both).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        backplane: Backplane | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings = settings or Settings()
        self.limits = settings.limits
        self.clock = clock
        self.wallclock = wallclock
        self.node = settings.node_id or secrets.token_hex(4)
        self.backplane = backplane or create_backplane(
            settings.backplane,
            history_size=settings.history_size,
            history_ttl=settings.history_ttl,
        )
        if settings.secret_key is None and not isinstance(self.backplane, MemoryBackplane):
            # Another process would refuse every token this one signs with a random key.
            raise ValueError(
                "a backplane shared by several processes needs a shared signing key: "
                "set TRANSPORTS_SECRET_KEY (or the app's SECRET_KEY) to the same value everywhere"
            )
        self.signer = TokenSigner(settings.secret_key or secrets.token_bytes(32))
        self.hub = Hub(self.backplane, limits=self.limits)
        self.outbox_limits = OutboxLimits(
            max_frames=settings.outbox_max_frames,
            max_bytes=settings.outbox_max_bytes,
            retain_frames=settings.retain_frames,
            retain_bytes=settings.retain_bytes,
        )
        self.handlers: dict[str, EventHandler] = {}
        self.channel_handler: ChannelHandler | None = None
        self.disconnect_handlers: list[DisconnectHandler] = []
        self.authorize_subscribe: TopicAuthorizer | None = None
        self.authorize_publish: TopicAuthorizer | None = None
        self._sessions: dict[str, Session] = {}
        self._channels: dict[str, SessionChannel] = {}
        self._public: dict[str, SessionChannel] = {}
        self._inflight: dict[str, list[asyncio.Future[tuple[str, str, bool]]]] = {}
        self._closing_since: dict[str, float] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._per_address: Counter[str] = Counter()
        self._negotiations: dict[str, TokenBucket] = {}
        self._auth_failures: dict[str, TokenBucket] = {}
        self._revalidating: asyncio.Task[None] | None = None
        self._inbox: asyncio.Task[None] | None = None
        self._calls: dict[str, asyncio.Future[Answer]] = {}
        self._posting: set[str] = set()
        self.revalidate: Callable[[Channel], Awaitable[Any]] | None = None
        self.stats: Counter[str] = Counter()
        """Counters: ``negotiated``, ``opened``, ``closed:<code>``, ``slow_consumers``,
        ``frames_dropped``, ``handler_errors``, ``retries_answered``..."""
        self.running = False
        self.draining = False
        """Set by :meth:`drain`: no new session is accepted."""

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the backplane and start the hub, the sweeper and this process's inbox."""
        await self.hub.start()
        await self.backplane.open_inbox(self.node)
        self._inbox = asyncio.create_task(self._listen_inbox(), name="transports-inbox")
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="transports-sweeper")
        self.running = True

    async def drain(
        self,
        code: int = CloseCode.GOING_AWAY,
        reason: str = "server shutting down",
        timeout: float = 5.0,
    ) -> None:
        """Tell every client to go (``code``), wait up to ``timeout`` for the CLOSE frames to be
        written, then forget every session. Negotiate answers 503 from now on."""
        self.draining = True
        for channel in list(self._channels.values()):
            await self.close(channel, code, reason)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and any(
            s.attached and s.pending for s in self._sessions.values()
        ):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # let the last writes leave
        for session in list(self._sessions.values()):
            self._finish(session, code, reason)

    async def stop(self) -> None:
        """Close every channel with 1001 (going away), then stop everything."""
        self.running = False
        await self.drain(timeout=1.0)
        for task in (self._sweeper, self._inbox):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.hub.stop()

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the engine tracks and cancels at :meth:`stop`."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- introspection -----------------------------------------------------------------

    @property
    def session_count(self) -> int:
        """Sessions alive (negotiated and not yet expired or closed)."""
        return len(self._sessions)

    @property
    def channels(self) -> list[SessionChannel]:
        """Open channels."""
        return list(self._channels.values())

    def channel_of(self, session: Session) -> SessionChannel | None:
        """The channel of ``session`` (None before a transport first attached)."""
        return self._channels.get(session.sid)

    def channel(self, public_id: str) -> SessionChannel | None:
        """The open channel with public id ``public_id``, if any."""
        return self._public.get(public_id)

    # --- negotiate and attach ----------------------------------------------------------

    def admit(self, address: str | None) -> None:
        """Check that a client at ``address`` may negotiate now (before running ``on_connect``).

        Raises:
            Refused: ``unavailable`` (draining), ``rate_limited`` or ``too_many_connections``
                (its ``retry_after`` attribute says when to come back).
        """
        settings = self.settings
        if self.draining:
            raise Refused("unavailable", "the server is shutting down")
        key = address or "?"
        if settings.negotiate_rate is not None:
            bucket = self._negotiations.get(key)
            now = self.clock()
            if bucket is None:
                bucket = self._negotiations[key] = TokenBucket(
                    settings.negotiate_rate, settings.negotiate_burst, now
                )
            wait = bucket.take(now)
            if wait:
                raise _retry_later("rate_limited", "too many negotiations", wait)
        limit = settings.max_sessions_per_address
        if limit is not None and self._per_address[key] >= limit:
            raise _retry_later("too_many_connections", "too many sessions from this address", 5)

    async def negotiate(
        self, identity: Identity, request: NegotiateRequest, address: str | None = None
    ) -> dict[str, Any]:
        """Mint a session for ``identity`` and return the negotiate response body.

        Negotiate keeps no state in this process: it stores the session's first record in the
        backplane (for ``ticket_ttl``), and the session comes to life on whichever process its
        transport first attaches to (:meth:`_materialize`). So a negotiate and the transport
        request that follows may land on different processes. Call :meth:`admit` first.

        Raises:
            ProtocolError: ``no_transport``.
            Refused: ``unavailable`` (draining, or the backplane is down).
            TypeError: ``identity`` is not JSON-serializable.
        """
        settings = self.settings
        if self.draining:
            raise Refused("unavailable", "the server is shutting down")
        transports = choose(request.transports, settings.transports)
        sid = new_session_id()
        public_id = new_public_id()
        record = json.dumps(
            {"p": public_id, "i": identity, "k": request.client_key, "a": address or "?"},
            separators=(",", ":"),
        )
        try:
            await self.backplane.store(_INIT + sid, record, settings.ticket_ttl)
        except BackplaneError:
            raise Refused("unavailable", "the backplane is unavailable") from None
        self.stats["negotiated"] += 1
        return negotiate_response(
            public_id=public_id,
            token=self.signer.session_token(self.node, sid, identity),
            ticket=self.signer.ticket(self.node, sid, self.wallclock(), settings.ticket_ttl),
            transports=transports,
            prefix=settings.url_prefix,
            heartbeat=settings.heartbeat,
            poll_window=settings.poll_window,
            retry=settings.retry,
            ticket_ttl=settings.ticket_ttl,
            limits=self.limits,
            max_subscriptions=settings.max_subscriptions,
            history_size=settings.history_size,
            history_ttl=settings.history_ttl,
        )

    async def _materialize(self, sid: str, token: str | None = None) -> Session | None:
        """Bring session ``sid`` to life in this process from its negotiate record.

        Returns None when the record is gone (the session expired unattached, or it was
        already brought to life somewhere: records are read once). With ``token``, the token
        is verified against the record's identity before anything is created.
        """
        backplane = self.backplane
        try:
            raw = await backplane.load(_INIT + sid)
            if not raw:  # never negotiated, expired, or already brought to life (spent)
                return None
            record = json.loads(raw)
            if token is not None:
                self.signer.verify_session_token(token, record["i"])
            if not await backplane.claim(_OWNER + sid, _OWNER_TTL, self.node):
                return None
            await backplane.store(_INIT + sid, "", 1)  # spent: it never materializes twice
        except BackplaneError:
            raise Refused("unavailable", "the backplane is unavailable") from None
        settings = self.settings
        now = self.clock()
        session = Session(sid, record["p"], record["i"], record["k"], self.outbox_limits, now)
        session.on_close = self._on_closing
        session.address = record["a"]
        self._per_address[session.address] += 1
        if settings.rate_limit is not None:
            session.bucket = TokenBucket(settings.rate_limit, settings.rate_burst, now)
        self._sessions[sid] = session
        return session

    async def _owner(self, sid: str) -> str | None:
        """The process holding session ``sid`` when it is not this one."""
        try:
            owner = await self.backplane.load(_OWNER + sid)
        except BackplaneError:
            return None
        return owner if owner and owner != self.node else None

    def _auth_budget(self, address: str | None) -> TokenBucket | None:
        settings = self.settings
        if settings.auth_failure_rate is None:
            return None
        key = address or "?"
        bucket = self._auth_failures.get(key)
        if bucket is None:
            bucket = self._auth_failures[key] = TokenBucket(
                settings.auth_failure_rate, settings.auth_failure_burst, self.clock()
            )
        return bucket

    def _budget_left(self, address: str | None) -> TokenBucket | None:
        bucket = self._auth_budget(address)
        if bucket is not None and bucket.available(self.clock()) < 1:
            raise _retry_later("rate_limited", "too many refused credentials", 1)
        return bucket

    def _refused(self, bucket: TokenBucket | None, exc: Refused) -> None:
        if bucket is not None and (isinstance(exc, TicketError) or exc.code == "unknown_session"):
            bucket.take(self.clock())
            self.stats["refused_credentials"] += 1

    async def session_for_ticket(
        self,
        ticket: str | None,
        transport: TransportName,
        *,
        reattach: bool = False,
        address: str | None = None,
    ) -> Session:
        """The session a WebSocket or SSE request may attach to with ``ticket``.

        A ticket is spent on first use, which brings the session to life in this process. With
        ``reattach`` (an SSE reconnect that carries ``Last-Event-ID``) a spent ticket may
        reattach a stream to its own live SSE session, if it lives in this process.

        Raises:
            TicketError: ``ticket_invalid``, ``ticket_expired`` or ``ticket_used``.
            Refused: ``unknown_session``, ``wrong_transport``, ``conflict``, ``unavailable``;
                ``rate_limited`` when this address presented too many refused credentials.
        """
        bucket = self._budget_left(address)
        try:
            verified = self.signer.verify_ticket(ticket, self.wallclock(), allow_expired=True)
            session = self._sessions.get(verified.sid)
            if (
                session is not None
                and session.state is not State.CLOSED
                and (reattach and transport == "sse" and session.transport == "sse")
            ):
                self._check_attachable(session, transport)
                return session  # an EventSource reconnect to its own live session (§5.3)
            if self.wallclock() > verified.expires:
                raise TicketError("ticket_expired", "ticket expired")
            if not await self.backplane.claim(
                "ticket:" + verified.nonce, self.settings.ticket_ttl + 60
            ):
                raise TicketError("ticket_used", "ticket already used")
            if session is None:
                session = await self._materialize(verified.sid)
            if session is None or session.state is State.CLOSED:
                raise Refused("unknown_session", "unknown or expired session")
        except Refused as exc:
            self._refused(bucket, exc)
            raise
        self._check_attachable(session, transport)
        return session

    async def session_for_token(
        self, token: str | None, transport: TransportName | None, address: str | None = None
    ) -> Session:
        """The session a long-poll or POST request names with its ``X-Realtime-Session`` token.

        ``transport`` is the transport the request is for (None for ``POST /send``, which
        accepts SSE and long-poll sessions). A long-poll session comes to life in the process
        that receives its first poll.

        Raises:
            TicketError: ``unauthorized`` (missing, malformed or forged token).
            SessionElsewhere: the session lives in another process (forward the request there).
            Refused: ``unknown_session``, ``wrong_transport``, ``unavailable``, ``rate_limited``.
        """
        bucket = self._budget_left(address)
        try:
            _, sid = parse_session_token(token)
            assert token is not None
            session = self._sessions.get(sid)
            if session is None or session.state is State.CLOSED:
                session = None
                if transport == "longpoll":
                    session = await self._materialize(sid, token)
                if session is None:
                    owner = await self._owner(sid)
                    if owner is not None:
                        raise SessionElsewhere(owner)
                    raise Refused("unknown_session", "unknown or expired session")
            verified = session.verified_token
            if verified is None or not hmac.compare_digest(verified, token):
                # First request with this token here: check its signature once, then compare
                # later requests with the verified token (constant time) instead of re-signing.
                self.signer.verify_session_token(token, session.identity)
                session.verified_token = token
        except SessionElsewhere:
            raise
        except Refused as exc:
            self._refused(bucket, exc)
            raise
        if transport is None:
            if session.transport == "websocket":
                raise Refused("wrong_transport", "this session uses WebSocket")
        elif session.transport not in (None, transport):
            raise Refused("wrong_transport", "this session uses another transport")
        return session

    # --- long-poll and POST, answered here or forwarded to the session's process --------

    async def poll(
        self, token: str | None, cursor_text: str | None, address: str | None, *, hop: int = 0
    ) -> Answer:
        """Answer ``GET /poll`` (protocol §6.1), wherever the session lives."""
        try:
            session = await self.session_for_token(token, "longpoll", address)
            cursor = parse_cursor(cursor_text)
            if cursor > session.sent_seq:
                raise Refused("bad_request", "cursor is ahead of the session")
            existing = self._channels.get(session.sid)
            if isinstance(existing, LongPollChannel) and session.attached:
                existing.supersede()
                session.detach(self.clock())
            channel = self.attach(session, "longpoll", lambda s: LongPollChannel(self, s))
        except SessionElsewhere as exc:
            if hop:
                return Answer.refused(Refused("unknown_session", "unknown or expired session"))
            call = {"k": "poll", "t": token, "c": cursor_text, "a": address}
            return await self._forward(exc.node, call, self.settings.poll_window + 10)
        except Refused as exc:
            return Answer.refused(exc)
        assert isinstance(channel, LongPollChannel)
        return Answer(200, await channel.poll(cursor), dict(_JSON_HEADERS))

    async def post(
        self,
        token: str | None,
        read_body: Callable[[], Awaitable[bytes]],
        address: str | None,
        *,
        hop: int = 0,
    ) -> Answer:
        """Answer ``POST /send`` (protocol §6.2), wherever the session lives."""
        try:
            session = await self.session_for_token(token, None, address)
        except SessionElsewhere as exc:
            if hop:
                return Answer.refused(Refused("unknown_session", "unknown or expired session"))
            try:
                body = await read_body()
            except Refused as refused:
                return Answer.refused(refused)
            call = {"k": "post", "t": token, "b": base64.b64encode(body).decode(), "a": address}
            return await self._forward(exc.node, call, self.settings.body_timeout + 30)
        except Refused as exc:
            return Answer.refused(exc)
        channel = self._channels.get(session.sid)
        try:
            if channel is None or session.state is not State.OPEN:
                raise Refused("conflict", "attach a transport to the session first")
            if session.sid in self._posting:
                raise Refused("conflict", "another POST for this session is in progress")
            self._posting.add(session.sid)
            try:
                frames = decode_batch(await read_body(), self.limits)
                wait = self.over_rate(session, len(frames))
                if wait:
                    raise _retry_later("rate_limited", "too many messages", wait)
                await channel.submit_all(frames)
            finally:
                self._posting.discard(session.sid)
        except Refused as exc:
            return Answer.refused(exc)
        session.last_seen = self.clock()
        return Answer(204)

    async def _forward(self, node: str, call: dict[str, Any], timeout: float) -> Answer:
        """Run ``call`` in process ``node`` and return its answer (404 if it does not answer)."""
        call_id = secrets.token_urlsafe(9)
        call.update(id=call_id, **{"from": self.node})
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        self.stats["forwarded"] += 1
        try:
            if not await self.backplane.send_to_node(node, json.dumps(call)):
                raise TimeoutError  # nobody listens there: that process is gone
            async with asyncio.timeout(timeout):
                return await future
        except (TimeoutError, BackplaneError):
            # The process holding the session is gone (or unreachable): the session is lost.
            self.stats["forward_failures"] += 1
            with contextlib.suppress(BackplaneError):
                token = call.get("t")
                if isinstance(token, str) and token.count(".") == 3:
                    await self.backplane.store(_OWNER + token.split(".")[2], "", 1)
            return Answer.refused(Refused("unknown_session", "unknown or expired session"))
        finally:
            self._calls.pop(call_id, None)

    async def _listen_inbox(self) -> None:
        while True:
            try:
                raw = await self.backplane.receive_from_inbox()
                message = json.loads(raw)
                if not isinstance(message, dict):
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("dropped a malformed inbox message")
                continue
            if message.get("k") == "answer":
                future = self._calls.get(str(message.get("id")))
                if future is not None and not future.done():
                    with contextlib.suppress(Exception):
                        future.set_result(Answer.from_json(message))
            else:
                self.spawn(self._answer_call(message), "transports-forwarded")

    async def _answer_call(self, call: dict[str, Any]) -> None:
        """Serve a request another process forwarded here, and send the answer back."""
        try:
            token, address = call.get("t"), call.get("a")
            if call.get("k") == "poll":
                answer = await self.poll(token, call.get("c"), address, hop=1)
            elif call.get("k") == "post":
                body = base64.b64decode(str(call.get("b", "")))

                async def read_body() -> bytes:
                    return body

                answer = await self.post(token, read_body, address, hop=1)
            else:
                return
            reply = {"k": "answer", "id": call.get("id"), **answer.to_json()}
            await self.backplane.send_to_node(str(call.get("from")), json.dumps(reply))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("serving a forwarded request failed")

    def _check_attachable(self, session: Session, transport: TransportName) -> None:
        if session.transport not in (None, transport):
            raise Refused("wrong_transport", "this session uses another transport")
        if session.state is State.CLOSED or (
            session.state is State.CLOSING and not session.pending
        ):
            raise Refused("unknown_session", "unknown or expired session")
        if session.attached:
            raise Refused("conflict", "another connection is attached to this session")

    def attach(
        self,
        session: Session,
        transport: TransportName,
        factory: Callable[[Session], SessionChannel],
    ) -> SessionChannel:
        """Attach a transport connection to ``session``; the first attach opens the channel.

        ``factory`` builds the transport's channel on first attach; later attaches (an SSE
        reconnect, each long-poll) reuse it.
        """
        self._check_attachable(session, transport)
        first = session.transport is None
        try:
            session.attach(transport, self.clock())
        except InvalidState:
            raise Refused("wrong_transport", "this session uses another transport") from None
        channel = self._channels.get(session.sid)
        if channel is None:
            channel = factory(session)
            self._channels[session.sid] = channel
            self._public[session.public_id] = channel
        if first:
            self.stats["opened"] += 1
            self.stats["opened:" + transport] += 1
            if self.channel_handler is not None:
                channel._handler_task = self.spawn(
                    self._run_channel_handler(channel), f"transports-channel-{session.public_id}"
                )
        return channel

    def detach(self, channel: SessionChannel) -> None:
        """A stream ended or a poll returned; the session waits for the next one."""
        channel.session.detach(self.clock())
        if channel.session.state is State.CLOSING and channel.session.pending == 0:
            self._finish(channel.session, channel.session.close_code or 1000, "")

    async def _run_channel_handler(self, channel: SessionChannel) -> None:
        handler = self.channel_handler
        assert handler is not None
        try:
            await handler(channel)
        except ChannelClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("channel handler failed; closing that channel with 1011")
            await self.close(channel, CloseCode.INTERNAL_ERROR, "internal error")

    # --- closing -----------------------------------------------------------------------

    async def close(self, channel: SessionChannel, code: int, reason: str) -> None:
        """Close ``channel``: queue its CLOSE frame; transports deliver it and end."""
        session = channel.session
        if session.close(code, reason):
            await self.hub.release(self.hub.leave_now(session))

    def close_now(self, session: Session, code: int, reason: str) -> None:
        """The connection is gone (a WebSocket ended): forget the session at once."""
        session.close(code, reason)
        self._finish(session, code, reason)

    def _on_closing(self, session: Session) -> None:
        # Every close passes here once, including a session closing itself (outbox overflow,
        # publication gap): count it and start its grace period.
        self._closing_since[session.sid] = self.clock()
        if session.close_code == CloseCode.SLOW_CONSUMER:
            self.stats["slow_consumers"] += 1
        elif session.close_code == CloseCode.RESYNC:
            self.stats["resyncs"] += 1

    def _finish(self, session: Session, code: int, reason: str) -> None:
        if session.state is State.CLOSED:
            return
        if session.state is not State.CLOSING:
            session.close(code, reason)
        code = session.close_code or code
        reason = session.close_reason or reason
        self._closing_since.pop(session.sid, None)
        self.stats["frames_dropped"] += session.frames_dropped
        emptied = self.hub.leave_now(session)
        if emptied:
            self.spawn(self.hub.release(emptied), "transports-release")
        if self._sessions.pop(session.sid, None) is not None and session.address is not None:
            self._per_address[session.address] -= 1
            if self._per_address[session.address] <= 0:
                del self._per_address[session.address]
        channel = self._channels.pop(session.sid, None)
        session.finish()
        if channel is None:
            return
        self._public.pop(session.public_id, None)
        self.stats[f"closed:{code}"] += 1
        channel._shutdown(code, reason)
        task = channel._handler_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        if self.disconnect_handlers:
            self.spawn(self._run_disconnect(channel, code, reason), "transports-disconnect")

    async def _run_disconnect(self, channel: Channel, code: int, reason: str) -> None:
        for handler in self.disconnect_handlers:
            try:
                await handler(channel, code, reason)
            except Exception:
                self.stats["handler_errors"] += 1
                log.exception("disconnect handler failed")

    # --- client frames -----------------------------------------------------------------

    def over_rate(self, session: Session, frames: int = 1) -> float:
        """Spend ``frames`` from the session's budget: 0.0 if allowed, else seconds to wait."""
        bucket = session.bucket
        if bucket is None:
            return 0.0
        return bucket.take(self.clock(), frames)

    async def dispatch(self, channel: SessionChannel, frame: ClientFrame) -> None:
        """Apply one client frame. Errors inside the app become error replies."""
        session = channel.session
        session.last_seen = self.clock()
        if session.state >= State.CLOSING:
            return
        if isinstance(frame, Event):
            await self._once(channel, frame.ref, lambda: self._on_event(channel, frame))
        elif isinstance(frame, Subscribe):
            await self._on_subscribe(channel, frame)
        elif isinstance(frame, Unsubscribe):
            await self.hub.leave(session, [frame.topic])
            session.push(_reply_frame(frame.ref, "ok", "null", False))
        elif isinstance(frame, Ping):
            session.push(PONG)
        elif isinstance(frame, Pong):
            session.answers_pings = True
            if frame.seq is not None and session.transport == "sse":
                session.ack(frame.seq)
        elif isinstance(frame, Publish):
            await self._once(channel, frame.ref, lambda: self._on_publish(channel, frame))
        elif isinstance(frame, Close):
            self._finish(session, frame.code, frame.reason or "closed by the client")

    def _scope(self, session: Session) -> str:
        scope = session.retry_scope
        if scope is None:
            if session.client_key is None:
                scope = "s:" + session.sid
            else:
                scope = identity_fingerprint(session.identity) + ":" + session.client_key
            session.retry_scope = scope
        return scope

    async def _once(
        self,
        channel: SessionChannel,
        ref: int | str,
        work: Callable[[], Awaitable[tuple[str, str, bool]]],
    ) -> None:
        """Run ``work`` once per (client, ref) within the dedup window; reply either way."""
        session = channel.session
        key = "reply:" + self._scope(session) + ":" + _ref_text(ref)
        ttl = self.settings.dedup_ttl
        backplane = self.backplane
        try:
            claimed = await backplane.claim(key, ttl)
        except BackplaneError:
            # Without the reply memory a retry could run the handler twice: refuse this one
            # (the client may send it again, with the same ref, once the backplane is back).
            log.warning("backplane unavailable: a client message was refused")
            session.push(_reply_frame(ref, *_UNAVAILABLE))
            return
        if not claimed:
            try:
                answer = await self._remembered(key)
            except BackplaneError:
                answer = None
            self.stats["retries_answered"] += 1
            if session.state < State.CLOSING:
                # Nothing remembered (the answer could not be stored, or the process that ran
                # it died before storing it): say so rather than leave the retry unanswered.
                session.push(_reply_frame(ref, *(answer or _UNAVAILABLE)))
            return
        waiters = self._inflight[key] = []  # retries that arrive meanwhile wait here
        try:
            answer = await work()
        except BaseException:  # only engine shutdown cancels the task applying frames
            self._inflight.pop(key, None)
            for waiter in waiters:
                waiter.set_result(_error(ref, "internal_error", "the server is stopping"))
            raise
        del self._inflight[key]
        for waiter in waiters:
            waiter.set_result(answer)
        status, text, binary = answer
        try:
            await backplane.store(key, f"{int(binary)}{status}\x00{text}", ttl)
        except BackplaneError:
            log.warning("could not remember a reply; a retry of it will be answered unavailable")
        if session.state < State.CLOSING:
            session.push(_reply_frame(ref, *answer))

    async def _remembered(self, key: str) -> tuple[str, str, bool] | None:
        waiters = self._inflight.get(key)
        if waiters is not None:
            waiter: asyncio.Future[tuple[str, str, bool]] = (
                asyncio.get_running_loop().create_future()
            )
            waiters.append(waiter)
            return await waiter
        for _ in range(50):  # answered by another process, or in flight there
            stored = await self.backplane.load(key)
            if stored is not None and stored != "1":
                status, _, text = stored[1:].partition("\x00")
                return status, text, stored[0] == "1"
            await asyncio.sleep(0.1)
        return None

    async def _on_event(self, channel: SessionChannel, frame: Event) -> tuple[str, str, bool]:
        handler = self.handlers.get(frame.event)
        if handler is None:
            if self.channel_handler is None:
                return _error(frame.ref, "unknown_event", "no handler for this event")
            await channel._inbox.put(Message(frame.event, frame.data, frame.ref))
            return "ok", "null", False
        try:
            result = await handler(channel, frame.data)
            data_text, binary = encode_data(result)
        except Reject as exc:
            return _error(frame.ref, "bad_data", exc.message)
        except ChannelClosed:
            return _error(frame.ref, "internal_error", "channel closed")
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("handler for event %r failed", frame.event)
            return _error(frame.ref, "handler_error", "the handler failed")
        return "ok", data_text, binary

    async def _authorized(
        self, authorizer: TopicAuthorizer | None, channel: Channel, topic: str, default: bool
    ) -> tuple[bool, str]:
        if authorizer is None:
            return default, "not allowed"
        try:
            answer: Any = authorizer(channel, topic)
            if inspect.isawaitable(answer):
                answer = await answer
            return bool(answer), "not allowed"
        except Reject as exc:
            return False, exc.message
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("topic authorizer failed")
            raise

    async def _on_subscribe(self, channel: SessionChannel, frame: Subscribe) -> None:
        session = channel.session
        ref = frame.ref

        def fail(status: str, message: str) -> None:
            session.push(_reply_frame(ref, *_error(ref, status, message)))

        if not valid_topic(frame.topic, self.limits):
            return fail("bad_topic", "invalid or reserved topic name")
        if (
            frame.topic not in session.topics
            and len(session.topics) >= self.settings.max_subscriptions
        ):
            return fail("subscription_limit", "too many subscriptions")
        try:
            allowed, why = await self._authorized(
                self.authorize_subscribe, channel, frame.topic, True
            )
        except Exception:
            return fail("handler_error", "the authorizer failed")
        if not allowed:
            return fail("forbidden", why)
        try:
            await self.hub.join(session, frame.topic, frame.since, ref)
        except BackplaneError:
            log.warning("subscribe failed: backplane unavailable")
            return fail("unavailable", "the backplane is unavailable")

    async def _on_publish(self, channel: SessionChannel, frame: Publish) -> tuple[str, str, bool]:
        ref = frame.ref
        if not valid_topic(frame.topic, self.limits):
            return _error(ref, "bad_topic", "invalid or reserved topic name")
        try:
            allowed, why = await self._authorized(
                self.authorize_publish, channel, frame.topic, False
            )
        except Exception:
            return _error(ref, "handler_error", "the authorizer failed")
        if not allowed:
            return _error(ref, "forbidden", why)
        try:
            record = await self.hub.publish(frame.topic, frame.event, frame.data)
        except BackplaneError:
            return _error(ref, "unavailable", "the backplane is unavailable")
        return "ok", encode_json({"offset": record.offset, "epoch": record.epoch}), False

    # --- application API ---------------------------------------------------------------

    async def publish(self, topic: str, event: str, data: Data = None) -> Published:
        """Publish to every subscriber of ``topic`` on every process; see :meth:`Hub.publish`."""
        return await self.hub.publish(topic, event, data)

    async def send_to(self, public_id: str, event: str, data: Data = None) -> bool:
        """Send a MSG to the channel with ``public_id`` on this process; False if not here."""
        channel = self._public.get(public_id)
        if channel is None or channel.session.state >= State.CLOSING:
            return False
        await channel.send(event, data)
        return True

    # --- the sweeper -------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        interval = min(1.0, self.settings.heartbeat / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep()
            except Exception:  # never let the sweeper die
                log.exception("sweeper failed")

    def sweep(self) -> None:
        """One pass (about once a second): heartbeats, dead peers, stuck writers, expiry."""
        settings = self.settings
        now = self.clock()
        heartbeat = settings.heartbeat
        for buckets in (self._negotiations, self._auth_failures):
            if len(buckets) > 1000:  # forget addresses whose bucket is full again
                for key, bucket in list(buckets.items()):
                    if bucket.available(now) >= bucket.burst:
                        del buckets[key]
        due: list[SessionChannel] = []
        for session in list(self._sessions.values()):
            state = session.state
            if state is State.CONNECTING:
                if now - session.created_at > settings.ticket_ttl:
                    self._finish(session, CloseCode.SESSION_EXPIRED, "never attached")
                continue
            if session.attached and self._stuck(session, now):
                # The client stopped reading: its writes block inside the server. Close it as
                # a slow consumer and stop writing to it; it resumes from its positions.
                self.stats["write_timeouts"] += 1
                session.close(CloseCode.SLOW_CONSUMER, "write timeout")
                channel = self._channels.get(session.sid)
                if channel is not None:
                    channel.abort()
                self._finish(session, CloseCode.SLOW_CONSUMER, "write timeout")
                continue
            if state is State.CLOSING:
                since = self._closing_since.get(session.sid, now)
                if not session.attached and now - since > min(5.0, settings.idle_ttl):
                    self._finish(session, session.close_code or 1000, "")
                elif now - since > settings.idle_ttl:
                    self._finish(session, session.close_code or 1000, "")
                continue
            transport = session.transport
            if session.attached:
                if transport != "longpoll":
                    # A plain EventSource cannot answer PINGs: only clients that do are held
                    # to it (WebSocket clients always must).
                    must_answer = transport == "websocket" or session.answers_pings
                    if must_answer and now - session.last_seen > 2 * heartbeat:
                        session.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
                        continue
                    quiet = now - max(session.last_sent, session.last_ping)
                    if not session.pending and quiet >= heartbeat:
                        session.last_ping = now
                        session.push(PING)
            elif now - session.last_seen > settings.idle_ttl:
                self._finish(session, CloseCode.SESSION_EXPIRED, "session expired")
                continue
            if (
                self.revalidate is not None
                and now - session.validated_at > settings.revalidate_interval
            ):
                channel = self._channels.get(session.sid)
                if channel is not None:
                    session.validated_at = now
                    due.append(channel)
        if due and (self._revalidating is None or self._revalidating.done()):
            self._revalidating = self.spawn(self._revalidate(due), "transports-revalidate")

    async def _revalidate(self, channels: list[SessionChannel]) -> None:
        """Ask the application whether each connection may stay; close those it refuses."""
        hook = self.revalidate
        if hook is None:
            return
        for channel in channels:
            if channel.session.state is not State.OPEN:
                continue
            try:
                allowed = await hook(channel)
                message = "authentication expired"
            except Reject as exc:
                allowed, message = False, exc.message
            except Exception:
                self.stats["handler_errors"] += 1
                log.exception("revalidate hook failed; keeping the connection")
                continue
            if allowed is False:
                self.stats["revoked"] += 1
                await self.close(channel, CloseCode.UNAUTHORIZED, message)

    def _stuck(self, session: Session, now: float) -> bool:
        """No write progress for ``write_timeout`` while frames are due (long-poll excepted:
        a poll hands its frames over at once, and UNTIL_ACK bounds what a slow poller holds)."""
        if session.transport == "longpoll":
            return False
        seq, since = session.progress
        if not session.pending or session.sent_seq != seq:
            session.progress = (session.sent_seq, now)
            return False
        return now - since > self.settings.write_timeout
