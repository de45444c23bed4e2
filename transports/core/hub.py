"""The hub: which local sessions listen to which topic, fed by one listener over the backplane.

Publishing encodes the payload once (:func:`~transports.protocol.frames.encode_data`); the
listener builds each publication's frame once per process and hands that same object to every
local subscriber with a synchronous, non-blocking :meth:`Session.deliver_pub`. No task is
created per recipient or per message, and nothing waits on a slow client: a session that falls
behind closes itself (4008) and resumes from its position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from time import monotonic
from typing import Any

from ..backplanes import Broker, History, Published
from ..protocol.errors import BackplaneError, ProtocolError
from ..protocol.frames import (
    DEFAULT_LIMITS,
    Limits,
    OutFrame,
    Position,
    diagnose_topic,
    encode_data,
    pub_frame,
    reply_frame,
    valid_event,
    valid_topic,
)
from ..protocol.session import Session
from ..protocol.types import Data
from .metrics import DELIVERY_SAMPLE, Metrics

__all__ = ["Follow", "Hub", "frame_of"]

log = logging.getLogger("transports.hub")

_GATHER_TURNS = 16
"""Turns of the event loop the listener waits for more publications after one that arrived
alone (see :meth:`Hub._gather`)."""
_GATHER_MAX = 16
"""Most publications delivered together."""
_STREAMING = 1.0
"""Seconds since the last delivery under which publications count as a stream (gathered). A
generous bound: gathering costs a publication that turns out to be alone one turn of the loop
(the first turn that brings nothing ends it), while a bound shorter than one round of the
subscribers' writes (1,000 writers take tens of milliseconds) would never gather."""
_GATHER_MIN_SUBSCRIBERS = 2
"""A topic with fewer local subscribers is delivered at once: little to save."""


def frame_of(record: Published) -> OutFrame:
    """The PUB frame of a stored publication."""
    return pub_frame(
        record.topic, record.event, record.data, record.binary, record.offset, record.epoch
    )


@dataclass(frozen=True, slots=True)
class Follow:
    """A second, internal topic joined in the same step as a subscription (a topic's presence
    events): its live publications after the position read are queued after the subscription's
    reply, and ``describe`` (given that position) adds the field ``name`` to the reply."""

    topic: str
    name: str
    describe: Callable[[History], Awaitable[Any]]


class Hub:
    """Topics to local sessions, and the listener that feeds them.

    Args:
        broker: where publications go and come from.
        limits: name limits for topics and events.
        metrics: where backplane errors are counted.
    """

    def __init__(
        self, broker: Broker, *, limits: Limits = DEFAULT_LIMITS, metrics: Metrics | None = None
    ) -> None:
        self.broker = broker
        self.limits = limits
        self._topics: dict[str, set[Session]] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._listener: asyncio.Task[None] | None = None
        self.deliveries = 0
        """Frames handed to sessions (for metrics and benchmarks)."""
        self.metrics = metrics or Metrics()
        """Where the hub counts backplane errors (the engine's metrics)."""
        self._unsampled = DELIVERY_SAMPLE - 1  # the first publication is timed
        self._delivered_at = 0.0
        """When the listener last handed a publication to local subscribers (monotonic)."""

    async def start(self) -> None:
        """Start the listener (after the backplane connected)."""
        self._listener = asyncio.create_task(self._listen(), name="transports-hub-listener")

    async def stop(self) -> None:
        """Stop the listener (before the backplane disconnects)."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    @property
    def topic_count(self) -> int:
        """Topics with at least one local subscriber."""
        return len(self._topics)

    def subscribers(self, topic: str) -> int:
        """Local sessions subscribed to ``topic``."""
        return len(self._topics.get(topic, ()))

    async def publish(
        self, topic: str, event: str, data: Data = None, *, diagnostic: bool = False
    ) -> Published:
        """Publish ``data`` as ``event`` on ``topic``, to every subscriber on every process.

        ``diagnostic`` allows a reserved ``$diagnose:<id>`` topic (and only those besides the
        valid ones): the diagnostics' own publications (docs/protocol.md §13).

        Raises:
            ProtocolError: ``bad_topic`` or ``bad_frame`` (an invalid event name).
            TypeError, ValueError: ``data`` is not JSON-serializable (and not bytes).
            BackplaneError: the backplane refused.
        """
        if not valid_topic(topic, self.limits) and not (diagnostic and diagnose_topic(topic)):
            raise ProtocolError("bad_topic", "invalid topic name")
        if not valid_event(event, self.limits):
            raise ProtocolError("bad_frame", "invalid event name")
        text, binary = encode_data(data)
        return await self.broker.publish(topic, event, text, binary)

    def _enter(self, session: Session, topic: str) -> None:
        session.begin_sync(topic)
        members = self._topics.get(topic)
        if members is None:
            members = self._topics[topic] = set()
        members.add(session)

    def _undo(self, session: Session, topic: str) -> None:
        self._discard(session, topic)
        session.unsubscribe(topic)

    async def join(
        self,
        session: Session,
        topic: str,
        since: Position | None,
        ref: int | str | None,
        follow: Follow | None = None,
        extra: dict[str, Any] | None = None,
    ) -> History:
        """Subscribe ``session`` to ``topic``: reply, replay what it missed, then live.

        The backplane subscription is effective before history is read, and live publications
        that arrive meanwhile are buffered by the session, so the handover has no gap and no
        duplicate. ``ref`` is the client's SUB ref (None for server-side subscriptions, which
        get no reply frame). With ``follow``, its topic is joined from its current position in
        the same step (see :class:`Follow`); when that part fails, the reply's field says
        ``{"error": "unavailable"}`` and the subscription to ``topic`` stands. ``extra`` adds
        fields to the reply.
        """
        self._enter(session, topic)
        try:
            await self._ensure_subscribed(topic)
            history = await self.broker.history(topic, since)
        except BaseException:
            self._undo(session, topic)
            raise
        extra = dict(extra or {})
        followed: History | None = None
        if follow is not None:
            self._enter(session, follow.topic)
            try:
                await self._ensure_subscribed(follow.topic)
                followed = await self.broker.history(follow.topic, None)
                extra[follow.name] = await follow.describe(followed)
            except BackplaneError:
                self.metrics.inc("backplane_errors")
                self._undo(session, follow.topic)
                followed = None
                extra[follow.name] = {
                    "error": "unavailable",
                    "message": "the backplane is unavailable",
                }
            except BaseException:
                self._undo(session, follow.topic)
                self._undo(session, topic)
                raise
        if since is not None and history.recovered:
            start = since.offset
            replay = [(m.offset, frame_of(m)) for m in history.messages]
        else:
            start = history.offset
            replay = []
        result = {"recovered": history.recovered, "epoch": history.epoch, "offset": start, **extra}
        reply = reply_frame(ref, "ok", result) if ref is not None else None
        session.finish_sync(topic, history.epoch, start, reply, replay)
        if follow is not None and followed is not None:
            session.finish_sync(follow.topic, followed.epoch, followed.offset, None, [])
        return history

    async def _ensure_subscribed(self, topic: str) -> None:
        ready = self._ready.get(topic)
        if ready is None:
            ready = self._ready[topic] = asyncio.get_running_loop().create_future()
            try:
                await self.broker.subscribe(topic)
            except BaseException as exc:
                del self._ready[topic]
                ready.set_exception(exc)
                ready.exception()  # mark retrieved: the caller below re-raises it
                raise
            ready.set_result(None)
        else:
            await asyncio.shield(ready)

    def _discard(self, session: Session, topic: str) -> bool:
        members = self._topics.get(topic)
        if members is None or session not in members:
            return False
        members.discard(session)
        if not members:
            del self._topics[topic]
            return True
        return False

    async def leave(self, session: Session, topics: Iterable[str] | None = None) -> None:
        """Unsubscribe ``session`` from ``topics`` (all of its topics when None)."""
        names = list(session.topics) if topics is None else list(topics)
        emptied = []
        for topic in names:
            session.unsubscribe(topic)
            if self._discard(session, topic):
                emptied.append(topic)
        for topic in emptied:
            ready = self._ready.pop(topic, None)
            if ready is not None and topic not in self._topics:
                try:
                    await self.broker.unsubscribe(topic)
                except BackplaneError:
                    self.metrics.inc("backplane_errors")
                    log.warning("backplane unsubscribe failed for a topic", exc_info=True)

    def leave_now(self, session: Session) -> list[str]:
        """Synchronous part of :meth:`leave` for every topic of a closing session.

        Returns the topics left without local subscribers; pass them to :meth:`release`.
        """
        emptied = []
        for topic in list(session.topics):
            if self._discard(session, topic):
                emptied.append(topic)
        session.topics.clear()
        return emptied

    async def release(self, topics: Iterable[str]) -> None:
        """Unsubscribe the backplane from topics that have no local subscriber any more."""
        for topic in topics:
            if topic not in self._topics and self._ready.pop(topic, None) is not None:
                try:
                    await self.broker.unsubscribe(topic)
                except BackplaneError:
                    self.metrics.inc("backplane_errors")
                    log.warning("backplane unsubscribe failed for a topic", exc_info=True)

    async def _listen(self) -> None:
        broker = self.broker
        while True:
            quiet = not broker.backlog()
            try:
                record = await broker.receive()
            except asyncio.CancelledError:
                raise
            except BackplaneError:
                self.metrics.inc("backplane_errors")
                log.warning("backplane receive failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if not quiet:  # the rest of a burst: all of it in this turn
                self._deliver(record)
            elif broker.backlog():
                # The first publication of a burst goes out alone, so that the writers start
                # at once; the rest follows in one turn, so that each subscriber's writer then
                # takes all of it in one go.
                if self._deliver(record):
                    await asyncio.sleep(0)
            elif monotonic() - self._delivered_at > _STREAMING:
                self._deliver(record)  # the first in a while: at once
            else:
                for item in await self._gather(record):
                    self._deliver(item)

    async def _gather(self, record: Published) -> list[Published]:
        """``record`` and the publications that follow it within a few turns of the loop.

        A publisher that yields between publications (it awaits anything: a database, a
        backplane, ``asyncio.sleep(0)``) hands them over one per turn; delivering each alone
        would wake every subscriber's writer once per publication. While publications keep
        coming (the previous delivery was under ``_STREAMING`` ago), waiting a few turns (not
        time: a turn is as long as the work the loop has) lets each writer take several. The
        first publication after a pause is delivered at once.
        """
        batch = [record]
        broker = self.broker
        members = self._topics.get(record.topic)
        if not members or len(members) < _GATHER_MIN_SUBSCRIBERS:
            return batch
        try:
            for _ in range(_GATHER_TURNS):
                await asyncio.sleep(0)
                if not broker.backlog():
                    break
                while broker.backlog() and len(batch) < _GATHER_MAX:
                    batch.append(await broker.receive())
                if len(batch) >= _GATHER_MAX:
                    break
        except BackplaneError:  # delivered as far as received; the loop retries
            self.metrics.inc("backplane_errors")
        return batch

    def _deliver(self, record: Published) -> int:
        """Hand ``record``'s frame to every local subscriber; how many took it."""
        members = self._topics.get(record.topic)
        if not members:
            return 0
        frame = frame_of(record)
        self._unsampled += 1
        if self._unsampled >= DELIVERY_SAMPLE:  # timed from here to each write
            self._unsampled = 0
            frame.born = monotonic()
        delivered = 0
        for session in tuple(members):
            if session.deliver_pub(record.topic, record.offset, record.epoch, frame):
                delivered += 1
        self.deliveries += delivered
        self._delivered_at = monotonic()
        return delivered
