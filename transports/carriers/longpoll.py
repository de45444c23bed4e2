"""Long-polling: server to client in held ``GET /poll`` requests, client to server by POST (§6.1).

A poll names its session with the session token, so the session comes to life on whichever
process receives the first poll, and a poll that lands on another process is forwarded to the
one holding the session. Sent frames are kept until a later poll's cursor acknowledges them,
because a response can be lost on its way.
"""

from __future__ import annotations

from typing import Any

from ..core.answer import JSON_HEADERS, Answer
from ..core.connection import CarrierTraits, Core, SessionChannel
from ..protocol.codes import CloseCode
from ..protocol.errors import Refused, SessionElsewhere
from ..protocol.frames import OutFrame
from ..protocol.longpoll import encode_poll, parse_cursor
from ..protocol.session import Retention, Session, SyncResult
from .base import Carrier, Reply, Request

__all__ = ["SESSION_HEADER", "LongPollCarrier", "LongPollChannel"]

SESSION_HEADER = "x-realtime-session"
"""The request header carrying the session token (lower case, as the edge stores names)."""

TRAITS = CarrierTraits(
    name="longpoll",
    bidirectional=False,
    retention=Retention.UNTIL_ACK,
    pings=False,  # a held poll answered empty is the heartbeat
    attach_by_token=True,
    watch_writes=False,  # a poll hands its frames over at once; UNTIL_ACK bounds the rest
)


class LongPollChannel(SessionChannel):
    """A channel whose downstream is a series of held GET requests."""

    traits = TRAITS

    def __init__(self, core: Core, session: Session) -> None:
        super().__init__(core, session)
        self._generation = 0
        self._greeted = False

    async def poll(self, cursor: int) -> bytes:
        """Answer one poll: frames after ``cursor`` now, or after waiting up to the window."""
        core, session = self.core, self.session
        settings = core.settings
        self._generation += 1
        generation = self._generation
        try:
            # HELLO has no sequence number, so a cursor of 0 is the only sign that the client
            # may not have it (the first response was lost, or superseded): it opens every
            # response to such a poll. Only the first poll is answered without waiting.
            head: list[OutFrame] = [self.hello()] if cursor == 0 else []
            first = not self._greeted
            self._greeted = True
            result = session.rewind(cursor)
            if result is SyncResult.TOO_OLD:
                await core.close(self, CloseCode.RESYNC, "resync")
            if not session.pending and not first:
                await self.wait_due(settings.poll_window)
            if generation != self._generation or self.finished:  # superseded, or gone
                return encode_poll(cursor, [])
            taken = session.take(settings.poll_max_bytes)
            session.last_sent = core.clock()
            core.wrote(TRAITS.name, taken)
            last = taken[-1][0] if taken else cursor
            return encode_poll(last, head + [frame for _, frame in taken])
        finally:
            if generation == self._generation:
                core.detach(self)

    def supersede(self) -> None:
        """End the poll in flight (a newer one arrived)."""
        self._generation += 1
        self.wake()


class LongPollCarrier(Carrier):
    """``GET /poll?cursor=N`` with ``X-Realtime-Session``."""

    traits = TRAITS
    routes = (("GET", "/poll"),)

    def install(self) -> None:
        self.core.serve_forwarded("poll", self._forwarded)

    async def handle(self, request: Request) -> Reply:
        return await self.poll(
            request.headers.get(SESSION_HEADER), request.query.get("cursor"), request.address
        )

    async def _forwarded(self, call: dict[str, Any]) -> Answer:
        return await self.poll(call.get("t"), call.get("c"), call.get("a"), hop=True)

    async def poll(
        self, token: str | None, cursor_text: str | None, address: str | None, hop: bool = False
    ) -> Answer:
        """Answer ``GET /poll`` (protocol §6.1), wherever the session lives."""
        core = self.core
        try:
            session = await core.session_for_token(token, TRAITS, address)
            cursor = parse_cursor(cursor_text)
            if cursor > session.sent_seq:
                raise Refused("bad_request", "cursor is ahead of the session")
            existing = core.channel_of(session)
            if isinstance(existing, LongPollChannel) and session.attached:
                existing.supersede()
                session.detach(core.clock())
            channel = core.attach(session, TRAITS, lambda s: LongPollChannel(core, s))
        except SessionElsewhere as exc:
            if hop:
                return Answer.refused(Refused("unknown_session", "unknown or expired session"))
            call = {"k": "poll", "t": token, "c": cursor_text, "a": address}
            return await core.forward(exc.node, call, core.settings.poll_window + 10)
        except Refused as exc:
            return Answer.refused(exc)
        assert isinstance(channel, LongPollChannel)
        return Answer(200, await channel.poll(cursor), dict(JSON_HEADERS))
