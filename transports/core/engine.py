"""The engine: a short facade over the core's parts, and the interface carriers use.

Nothing here imports Quart or names a transport. :class:`Engine` wires the parts together
(:class:`~.sessions.Sessions`, :class:`~.admission.Admission`, :class:`~.dispatch.Dispatcher`,
:class:`~.sweeper.Sweeper`, :class:`~.forwarding.Forwarder`, the :class:`~.hub.Hub` and the
:class:`~.metrics.Metrics`), runs their tasks, and implements
:class:`~.connection.Core`, the small interface through which carriers reach the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..backplanes import Backplane, History, Published, create_backplane
from ..backplanes.memory import MemoryBackplane
from ..protocol.codes import CloseCode
from ..protocol.errors import BackplaneError, Refused
from ..protocol.frames import (
    ClientFrame,
    OutFrame,
    Position,
    diagnose_topic,
    encode_data,
    encoded_msg_frame,
    msg_frame,
    valid_event,
)
from ..protocol.negotiation import NegotiateRequest, choose, negotiate_response
from ..protocol.session import Session, State
from ..protocol.tokens import TokenSigner, new_public_id, new_session_id
from ..protocol.types import Data, Identity
from .admission import Admission
from .answer import Answer
from .connection import CarrierTraits, Forwarded, SessionChannel
from .context import Context
from .dispatch import Dispatcher
from .forwarding import Forwarder
from .hooks import Hooks
from .hub import Hub
from .metrics import Metrics
from .presence import Presence, Roster
from .sessions import INIT, Sessions
from .settings import Settings
from .sweeper import Sweeper
from .topics import retention_of

__all__ = ["Engine"]

log = logging.getLogger("transports")


class Engine:
    """Sessions, hooks and dispatch, shared by every carrier.

    Args:
        settings: every tunable.
        backplane: an instance to use instead of the one ``settings.backplane`` names.
        hooks: the application's hooks (``Realtime`` passes its own; shared, not copied).
        clock: monotonic time source; ``wallclock`` for ticket expiry (tests fake both).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        backplane: Backplane | None = None,
        *,
        hooks: Hooks | None = None,
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
        if any(r.history_size is not None or r.history_ttl is not None for r in settings.topics):
            rules = settings.topics
            self.backplane.set_retention(lambda topic: retention_of(rules, topic))
        self.hooks = hooks or Hooks()
        self.metrics = Metrics()
        """The declared metrics (see :mod:`transports.core.metrics`)."""
        # The parts read the time through the engine, so that tests can move ``engine.clock``.
        ctx = Context(
            settings, self.hooks, self.metrics, self.node, self._now, self._wall, self.spawn
        )
        self.hub = Hub(self.backplane, limits=self.limits, metrics=self.metrics)
        metrics = self.metrics
        metrics.observe("deliveries", lambda: self.hub.deliveries)
        self.frames_in: Counter[str] = Counter()
        """Client frames received, by transport (a hot path's plain integers)."""
        self.frames_out: Counter[str] = Counter()
        """Frames written to connections, by transport."""
        metrics.observe_labelled("messages_in", lambda: self.frames_in)
        metrics.observe_labelled("messages_out", lambda: self.frames_out)
        metrics.observe_labelled("connections", self._open_by_transport)
        self._delivery = metrics.delivery
        self.admission = Admission(ctx)
        self.presence = Presence(ctx, store=self.backplane, broker=self.backplane)
        """Presence and the directory of connections (see :mod:`transports.core.presence`)."""
        self.sessions = Sessions(
            ctx,
            store=self.backplane,
            signer=self.signer,
            admission=self.admission,
            hub=self.hub,
            presence=self.presence,
        )
        self.dispatcher = Dispatcher(
            ctx,
            store=self.backplane,
            hub=self.hub,
            presence=self.presence,
            finish=self.sessions.finish,
        )
        self.sweeper = Sweeper(ctx, sessions=self.sessions, admission=self.admission)
        self.forwarder = Forwarder(ctx, mailbox=self.backplane, disown=self.sessions.disown)
        self.forwarder.serve("msg", self._deliver_forwarded)
        self.urls: dict[str, str] = {}
        """Each transport's path (and ``send``'s) for negotiate answers; set by the server."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[None]] = []
        self.running = False

    def _now(self) -> float:
        return self.clock()

    def _wall(self) -> float:
        return self.wallclock()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the backplane; start the hub, the sweeper and this process's mailbox."""
        await self.backplane.connect()
        await self.hub.start()
        await self.backplane.open_inbox(self.node)
        self._background = [
            asyncio.create_task(self.forwarder.listen(), name="transports-inbox"),
            asyncio.create_task(self.sweeper.run(), name="transports-sweeper"),
            asyncio.create_task(self.presence.run(), name="transports-presence"),
        ]
        self.running = True

    @property
    def draining(self) -> bool:
        """Set by :meth:`drain`: no new session is accepted."""
        return self.admission.draining

    async def drain(
        self,
        code: int = CloseCode.GOING_AWAY,
        reason: str = "server shutting down",
        timeout: float | None = None,
        *,
        window: float | None = None,
    ) -> None:
        """Move every client to another process without a herd, then forget every session.

        Negotiate answers 503 (``Retry-After: 1``) from now on. The open channels are told to
        go (``code``, a reconnect code, so each client comes back at once and resumes its
        topics from its position on another process) one after another, in random order,
        spread evenly over ``window`` seconds (default ``drain_window``: the first at once, the
        last at its end); a client keeps
        receiving until its turn. Returns when every session has gone, or ``timeout`` seconds
        after the window ended (default ``drain_grace``): the rest are forgotten then.
        """
        self.admission.draining = True
        settings = self.settings
        window = settings.drain_window if window is None else max(0.0, window)
        grace = settings.drain_grace if timeout is None else max(0.0, timeout)
        sessions = self.sessions
        loop = asyncio.get_running_loop()
        start = loop.time()
        channels = list(sessions.channels.values())
        random.shuffle(channels)
        count = len(channels)
        if count:
            log.info("draining %d connection(s) over %.1f s", count, window)
        for index, channel in enumerate(channels):
            due = start + (window * index / (count - 1) if count > 1 else 0.0)
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if channel.session.state < State.CLOSING:
                await sessions.close(channel, code, reason)
        for session in list(sessions.by_sid.values()):
            if sessions.channels.get(session.sid) is None:
                sessions.finish(session, code, reason)  # negotiated, never opened
        deadline = max(loop.time(), start + window) + grace
        while loop.time() < deadline and sessions.by_sid:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # let the last writes leave
        left = list(sessions.by_sid.values())
        if left:
            log.info("drain: forgetting %d session(s) that did not leave in time", len(left))
        for session in left:
            sessions.finish(session, code, reason)

    async def stop(self) -> None:
        """Close every channel with 1001 (going away), then stop everything."""
        self.running = False
        await self.drain(timeout=1.0, window=0.0)
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.dispatcher.settle(2.0)
        await self.hub.stop()
        await self.backplane.disconnect()

    def spawn(self, coro: Awaitable[Any], name: str, eager: bool = False) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the engine tracks and cancels at :meth:`stop`.

        With ``eager``, on Python 3.12 and later, the task starts in this call and runs until
        it first waits (``eager_start``): one that never waits is done when this returns, and
        costs no turn of the event loop. It is still a task of its own (its own
        ``current_task()``, cancelled only with it), so nothing but the timing differs. Earlier
        Pythons, and a loop with a task factory of the app's (which must see every task), start
        it on the loop's next turn, as without ``eager``.
        """
        task: asyncio.Task[Any] | None = None
        if eager and sys.version_info >= (3, 12) and asyncio.iscoroutine(coro):
            loop = asyncio.get_running_loop()
            if loop.get_task_factory() is None:  # an app's factory (tracing) sees every task
                task = asyncio.Task(coro, loop=loop, name=name, eager_start=True)
                if task.done():
                    return task
        if task is None:
            task = asyncio.ensure_future(coro)
            task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def sweep(self) -> None:
        """One sweeper pass now (tests call it with a moved clock)."""
        self.sweeper.sweep()

    # --- introspection -----------------------------------------------------------------------

    @property
    def stats(self) -> Counter[str]:
        """Every counter (see :mod:`transports.core.metrics`), as a flat mapping."""
        return self.metrics.stats

    def _open_by_transport(self) -> Counter[str]:
        return Counter(channel.transport for channel in self.sessions.channels.values())

    @property
    def session_count(self) -> int:
        """Sessions alive (negotiated and not yet expired or closed)."""
        return len(self.sessions.by_sid)

    @property
    def channels(self) -> list[SessionChannel]:
        """Open channels."""
        return list(self.sessions.channels.values())

    def channel_of(self, session: Session) -> SessionChannel | None:
        """The channel of ``session`` (None before a transport first attached)."""
        return self.sessions.channels.get(session.sid)

    def channel(self, public_id: str) -> SessionChannel | None:
        """The open channel with public id ``public_id``, if any."""
        return self.sessions.public.get(public_id)

    # --- negotiate ---------------------------------------------------------------------------

    def admit(self, address: str | None) -> None:
        """Check that a client at ``address`` may negotiate now (see :class:`Admission`)."""
        self.admission.admit(address)

    async def negotiate(
        self, identity: Identity, request: NegotiateRequest, address: str | None = None
    ) -> dict[str, Any]:
        """Mint a session for ``identity`` and return the negotiate response body.

        Negotiate keeps no state in this process: it stores the session's first record in the
        backplane (for ``ticket_ttl``), and the session comes to life on whichever process its
        transport first attaches to. Call :meth:`admit` first.

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
        # With a client key the public id is the client's own across its reconnects (§3).
        public_id = (
            self.signer.public_id(identity, request.client_key)
            if request.client_key is not None
            else new_public_id()
        )
        record = json.dumps(
            {"p": public_id, "i": identity, "k": request.client_key, "a": address or "?"},
            separators=(",", ":"),
        )
        try:
            await self.backplane.store(INIT + sid, record, settings.ticket_ttl)
        except BackplaneError:
            self.metrics.inc("backplane_errors")
            raise Refused("unavailable", "the backplane is unavailable") from None
        self.metrics.inc("negotiated")
        fallback = request.fallback
        if fallback is not None:
            self.metrics.inc("fallbacks", label=fallback)
        return negotiate_response(
            public_id=public_id,
            token=self.signer.session_token(self.node, sid, identity),
            ticket=self.signer.ticket(self.node, sid, self.wallclock(), settings.ticket_ttl),
            transports=transports,
            urls=self.urls,
            heartbeat=settings.heartbeat,
            poll_window=settings.poll_window,
            retry=settings.retry,
            ticket_ttl=settings.ticket_ttl,
            limits=self.limits,
            max_subscriptions=settings.max_subscriptions,
            history_size=settings.history_size,
            history_ttl=settings.history_ttl,
        )

    # --- the Core interface (what carriers call) ---------------------------------------------

    def hello_info(self, session: Session) -> dict[str, Any]:
        """The HELLO frame's data for ``session``."""
        return {
            "v": 1,
            "id": session.public_id,
            "transport": session.transport,
            "heartbeat": int(self.settings.heartbeat * 1000),
        }

    async def session_for_ticket(
        self,
        ticket: str | None,
        traits: CarrierTraits,
        *,
        reattach: bool = False,
        address: str | None = None,
    ) -> Session:
        """See :meth:`Sessions.for_ticket`."""
        return await self.sessions.for_ticket(ticket, traits, reattach=reattach, address=address)

    async def session_for_token(
        self, token: str | None, traits: CarrierTraits | None, address: str | None = None
    ) -> Session:
        """See :meth:`Sessions.for_token`."""
        return await self.sessions.for_token(token, traits, address)

    def attach(
        self,
        session: Session,
        traits: CarrierTraits,
        factory: Callable[[Session], SessionChannel],
    ) -> SessionChannel:
        """See :meth:`Sessions.attach`."""
        return self.sessions.attach(session, traits, factory)

    def detach(self, channel: SessionChannel) -> None:
        """See :meth:`Sessions.detach`."""
        self.sessions.detach(channel)

    async def join(
        self, session: Session, topic: str, since: Position | None, ref: int | str | None
    ) -> History:
        """Subscribe ``session`` to ``topic`` (see :meth:`Hub.join`)."""
        return await self.hub.join(session, topic, since, ref)

    async def leave(self, session: Session, topics: Iterable[str]) -> None:
        """Unsubscribe ``session`` from ``topics``."""
        await self.hub.leave(session, topics)

    def dispatch(self, channel: SessionChannel, frame: ClientFrame) -> Awaitable[None]:
        """Apply one client frame (await the result; see :meth:`Dispatcher.dispatch`)."""
        self.frames_in[channel.traits.name] += 1
        return self.dispatcher.dispatch(channel, frame)

    def wrote(self, transport: str, frames: list[tuple[int, OutFrame]]) -> None:
        """Count ``frames`` written to a ``transport`` connection, and the delivery time of the
        publications among them (see :attr:`OutFrame.born`)."""
        self.frames_out[transport] += len(frames)
        now = 0.0
        for _, frame in frames:
            if frame.born:
                now = now or time.monotonic()
                self._delivery.observe(now - frame.born)

    def over_rate(self, session: Session, frames: int = 1) -> float:
        """Spend ``frames`` of the session's rate budget: 0.0 if allowed, else seconds."""
        return self.dispatcher.over_rate(session, frames)

    async def close(self, channel: SessionChannel, code: int, reason: str) -> None:
        """Close ``channel``: queue its CLOSE frame; its carrier delivers it and ends."""
        await self.sessions.close(channel, code, reason)

    def finish(self, session: Session, code: int, reason: str, *, goodbye: bool = False) -> None:
        """Forget ``session`` now: its connection is gone (see :meth:`Sessions.finish`)."""
        self.sessions.finish(session, code, reason, goodbye=goodbye)

    async def forward(self, node: str, call: dict[str, Any], timeout: float) -> Answer:
        """Run ``call`` in process ``node`` (see :class:`Forwarder`)."""
        return await self.forwarder.forward(node, call, timeout)

    def serve_forwarded(self, kind: str, handler: Forwarded) -> None:
        """Answer calls of ``kind`` forwarded from other processes with ``handler``."""
        self.forwarder.serve(kind, handler)

    # --- application API ---------------------------------------------------------------------

    async def publish(self, topic: str, event: str, data: Data = None) -> Published:
        """Publish to every subscriber of ``topic`` on every process; see :meth:`Hub.publish`."""
        return await self.hub.publish(topic, event, data)

    async def publish_diagnostic(
        self, topic: str, event: str, data: Data, address: str | None
    ) -> Published:
        """Publish a diagnostics message (docs/protocol.md §13) for a client at ``address``.

        Raises:
            Refused: ``not_found`` (diagnostics are off), ``rate_limited`` (this address
                published too many), ``bad_request`` (not a ``$diagnose:<id>`` topic, or an
                invalid event name).
            BackplaneError: the backplane is unavailable.
        """
        if not self.settings.diagnose:
            raise Refused("not_found", "no such endpoint")
        if not diagnose_topic(topic):
            raise Refused("bad_request", "the topic must be $diagnose:<8-64 of A-Z a-z 0-9 _ ->")
        if not valid_event(event, self.limits):
            raise Refused("bad_request", "the event must be a name of 1-100 characters")
        self.admission.admit_diagnostic(address)
        return await self.hub.publish(topic, event, data, diagnostic=True)

    def _push_local(self, public_id: str, frame: OutFrame) -> bool:
        channel = self.sessions.public.get(public_id)
        if channel is None or channel.session.state >= State.CLOSING:
            return False
        return channel.session.push(frame)

    async def send(self, public_id: str, event: str, data: Data = None) -> bool:
        """Send a MSG to the connection ``public_id``, on whichever process holds it.

        Returns True when it was queued on the connection (here, or on the process that holds
        it: that process answered); False when no open connection has that id.

        Raises:
            TypeError, ValueError: ``data`` is not JSON-serializable (and not bytes).
        """
        frame = msg_frame(event, data)
        if self._push_local(public_id, frame):
            self.metrics.inc("direct_messages", label="here")
            return True
        try:
            node = await self.presence.locate(public_id)
        except BackplaneError:
            self.metrics.inc("backplane_errors")
            return False
        if node is None or node == self.node:
            return False
        return await self._send_remote(node, [public_id], event, data) > 0

    async def send_to(self, identity: Identity, event: str, data: Data = None) -> int:
        """Send a MSG to every open connection of ``identity`` (what ``on_connect`` returned),
        on every process; returns how many received it (0: none)."""
        frame = msg_frame(event, data)
        try:
            connections = await self.presence.connections_of(identity)
        except BackplaneError:
            self.metrics.inc("backplane_errors")
            connections = []
        by_node: dict[str, list[str]] = {}
        reached = 0
        for member in connections:
            if member.node == self.node:
                if self._push_local(member.member, frame):
                    reached += 1
                    self.metrics.inc("direct_messages", label="here")
            else:
                by_node.setdefault(member.node, []).append(member.member)
        if by_node:
            counts = await asyncio.gather(
                *(self._send_remote(node, ids, event, data) for node, ids in by_node.items())
            )
            reached += sum(counts)
        return reached

    async def _send_remote(self, node: str, ids: list[str], event: str, data: Data) -> int:
        text, binary = encode_data(data)
        call = {"k": "msg", "p": ids, "e": event, "d": text, "b": binary}
        answer = await self.forwarder.forward(node, call, timeout=5.0)
        if answer.status != 200:
            return 0
        try:
            reached = int(json.loads(answer.body)["reached"])
        except (ValueError, KeyError, TypeError):
            return 0
        self.metrics.inc("direct_messages", reached, label="forwarded")
        return reached

    async def _deliver_forwarded(self, call: dict[str, Any]) -> Answer:
        """Serve a direct message another process sent to connections held here."""
        ids, event, text, binary = call.get("p"), call.get("e"), call.get("d"), call.get("b")
        if (
            not isinstance(ids, list)
            or not isinstance(event, str)
            or not isinstance(text, str)
            or not isinstance(binary, bool)
        ):
            return Answer.error("bad_request", "malformed forwarded message")
        frame = encoded_msg_frame(event, text, binary)
        reached = sum(
            1
            for public_id in ids
            if isinstance(public_id, str) and self._push_local(public_id, frame)
        )
        return Answer.json({"reached": reached})

    async def presence_of(self, topic: str) -> Roster:
        """``topic``'s presence on every process (at most ``presence_max_members`` listed).

        Raises:
            ValueError: ``topic`` has no presence (the ``presence`` setting).
            BackplaneError: the backplane is unreachable.
        """
        self._check_presence(topic)
        return await self.presence.roster(topic)

    async def presence_count(self, topic: str) -> int:
        """How many members ``topic`` has on every process (cheap)."""
        self._check_presence(topic)
        return await self.presence.count(topic)

    def _check_presence(self, topic: str) -> None:
        if self.presence.rule(topic) is None:
            raise ValueError(f"the topic {topic!r} has no presence: add a pattern to 'presence'")
