"""One task for the whole process, about once a second: heartbeats, dead peers, stuck writers,
expiry and revalidation, instead of a timer task per connection."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from ..protocol.codes import CloseCode
from ..protocol.errors import Reject
from ..protocol.frames import PING
from ..protocol.session import Session, State
from .admission import Admission
from .connection import SessionChannel
from .context import Context
from .sessions import Sessions

__all__ = ["Sweeper"]

log = logging.getLogger("transports")

_IDLE: tuple[int, float] = (-1, 0.0)
""":attr:`Session.progress` while nothing is due."""


class Sweeper:
    """Walks every session of the process on a timer (:meth:`sweep` is one pass)."""

    def __init__(self, ctx: Context, *, sessions: Sessions, admission: Admission) -> None:
        self.settings = ctx.settings
        self.sessions = sessions
        self.admission = admission
        self.hooks = ctx.hooks
        self.metrics = ctx.metrics
        self.clock = ctx.clock
        self.spawn = ctx.spawn
        self._revalidating: asyncio.Task[None] | None = None
        self._lags: deque[tuple[float, float]] = deque()
        """(when, seconds late) of the passes that ran late, over the last two heartbeats."""

    async def run(self) -> None:
        """Sweep until cancelled."""
        interval = min(1.0, self.settings.heartbeat / 4)
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()  # the loop's own clock: lateness is the loop's
            await asyncio.sleep(interval)
            now = loop.time()
            self.note_lag(now - started - interval, now)
            try:
                self.sweep()
            except Exception:  # never let the sweeper die
                log.exception("sweeper failed")

    def note_lag(self, late: float, now: float) -> None:
        """Record that this process's event loop ran the sweeper ``late`` seconds after it was
        due, at ``now`` (the loop's time; the run loop measures it before each pass)."""
        lags = self._lags
        if late > 0.05:
            lags.append((now, late))
        horizon = now - 2 * self.settings.heartbeat
        while lags and lags[0][0] < horizon:
            lags.popleft()

    def grace(self) -> float:
        """Seconds added to the heartbeat timeout because the server itself was behind: three
        times the sweeper's worst lateness over the last two heartbeats (a PONG that arrived
        meanwhile waits a few loop turns more than the sweeper to be read), at most two more
        heartbeats. Without it, the first pass after a stall of a few seconds (a burst of
        connections, a long garbage collection) would close every connection whose PONG was
        still unread, as if the clients had gone silent."""
        worst = max((late for _, late in self._lags), default=0.0)
        return min(3 * worst, 2 * self.settings.heartbeat)

    def sweep(self) -> None:
        """One pass: heartbeats, dead peers, stuck writers, expiry, revalidation.

        It visits every session of the process once a pass (about once a second), so the
        common case, an idle connection with nothing due, is kept to a few comparisons.
        """
        settings = self.settings
        sessions = self.sessions
        now = self.clock()
        heartbeat = settings.heartbeat
        timeout = 2 * heartbeat + self.grace()
        revalidate = self.hooks.revalidate is not None
        revalidate_after = now - settings.revalidate_interval
        channel_of = sessions.channels.get
        self.admission.forget_idle(now)
        due: list[SessionChannel] = []
        for session in list(sessions.by_sid.values()):
            state = session.state
            if state is State.CONNECTING:
                if now - session.created_at > settings.ticket_ttl:
                    sessions.finish(session, CloseCode.SESSION_EXPIRED, "never attached")
                continue
            channel = channel_of(session.sid)
            traits = channel.traits if channel is not None else None
            attached = session.attached
            if (
                attached
                and traits is not None
                and traits.watch_writes
                and self._stuck(session, now)
            ):
                assert channel is not None
                # The client stopped reading: its writes block inside the server. Close it as
                # a slow consumer and stop writing to it; it resumes from its positions.
                self.metrics.inc("write_timeouts")
                session.close(CloseCode.SLOW_CONSUMER, "write timeout")
                channel.abort()
                sessions.finish(session, CloseCode.SLOW_CONSUMER, "write timeout")
                continue
            if state is State.CLOSING:
                since = sessions.closing_since.get(session.sid, now)
                if not attached and now - since > min(5.0, settings.idle_ttl):
                    sessions.finish(session, session.close_code or 1000, "")
                elif now - since > settings.idle_ttl:
                    sessions.finish(session, session.close_code or 1000, "")
                continue
            if attached:
                if traits is not None and traits.pings:
                    # A client that cannot answer PINGs (a plain EventSource) is only held to
                    # it once it has answered one.
                    must_answer = traits.must_answer_pings or session.answers_pings
                    last_seen = session.last_seen
                    unheard = now - last_seen
                    if must_answer and unheard > timeout:
                        session.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
                        continue
                    last_ping = session.last_ping
                    quiet = now - max(session.last_sent, last_ping)
                    if (quiet >= heartbeat and not session.pending) or (
                        # A client that only listens, on a connection that is never quiet (a
                        # busy topic), is asked too: nothing heard for a heartbeat and no PING
                        # since then. Its PONG is what keeps it from the timeout above.
                        must_answer and unheard >= heartbeat and last_ping <= last_seen
                    ):
                        session.last_ping = now
                        session.push(PING)
            elif now - session.last_seen > settings.idle_ttl:
                sessions.finish(session, CloseCode.SESSION_EXPIRED, "session expired")
                continue
            if revalidate and channel is not None and session.validated_at < revalidate_after:
                session.validated_at = now
                due.append(channel)
        if due and (self._revalidating is None or self._revalidating.done()):
            self._revalidating = self.spawn(self._revalidate(due), "transports-revalidate")

    async def _revalidate(self, channels: list[SessionChannel]) -> None:
        """Ask the application whether each connection may stay; close those it refuses."""
        hook = self.hooks.revalidate
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
                self.metrics.inc("handler_errors")
                log.exception("revalidate hook failed; keeping the connection")
                continue
            if allowed is False:
                self.metrics.inc("revoked")
                await self.sessions.close(channel, CloseCode.UNAUTHORIZED, message)

    def _stuck(self, session: Session, now: float) -> bool:
        """No write progress for ``write_timeout`` while frames are due (measured from the
        first pass that saw them due, or saw the last progress)."""
        progress = session.progress
        if not session.pending:
            if progress is not _IDLE:
                session.progress = _IDLE  # nothing due: no tuple made per idle pass
            return False
        seq = session.sent_seq
        if progress is _IDLE or progress[0] != seq:
            session.progress = (seq, now)
            return False
        return now - progress[1] > self.settings.write_timeout
