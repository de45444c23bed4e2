"""The sessions of this process: how they come to life, attach, close and end.

A negotiate stores a session's first record in the backplane; the session comes to life on
whichever process its transport first attaches to (:meth:`Sessions.materialize`), and that
owner is recorded so that requests landing elsewhere can be forwarded. Ending a session has two
verbs: :meth:`Sessions.close` queues the CLOSE frame (the transport delivers it, then ends), and
:meth:`Sessions.finish` forgets the session at once (its connection is gone).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable

from ..backplanes import KeyValueStore
from ..protocol.codes import CloseCode
from ..protocol.errors import (
    BackplaneError,
    ChannelClosed,
    InvalidState,
    Refused,
    SessionElsewhere,
    TicketError,
)
from ..protocol.ratelimit import TokenBucket
from ..protocol.session import OutboxLimits, Session, State
from ..protocol.tokens import TokenSigner, parse_session_token
from .admission import Admission
from .channel import Channel
from .connection import CarrierTraits, SessionChannel
from .context import Context
from .hub import Hub
from .presence import Presence

__all__ = ["INIT", "OWNER", "Sessions"]

log = logging.getLogger("transports")

INIT = "init:"
"""Backplane key prefix of a negotiated session's first record (identity, ids)."""
OWNER = "owner:"
"""Backplane key prefix naming the process that holds a live session."""
_OWNER_TTL = 86_400.0


class Sessions:
    """Every live session of this process, with its channel once a transport attached."""

    def __init__(
        self,
        ctx: Context,
        *,
        store: KeyValueStore,
        signer: TokenSigner,
        admission: Admission,
        hub: Hub,
        presence: Presence,
    ) -> None:
        self.settings = settings = ctx.settings
        self.node = ctx.node
        self.store = store
        self.signer = signer
        self.admission = admission
        self.hub = hub
        self.presence = presence
        self.hooks = ctx.hooks
        self.metrics = ctx.metrics
        self.clock = ctx.clock
        self.wallclock = ctx.wallclock
        self.spawn = ctx.spawn
        self.outbox_limits = OutboxLimits(
            max_frames=settings.outbox_max_frames,
            max_bytes=settings.outbox_max_bytes,
            retain_frames=settings.retain_frames,
            retain_bytes=settings.retain_bytes,
        )
        self.by_sid: dict[str, Session] = {}
        self.channels: dict[str, SessionChannel] = {}
        """Channels by secret session id."""
        self.public: dict[str, SessionChannel] = {}
        """Channels by public id."""
        self.closing_since: dict[str, float] = {}

    # --- coming to life --------------------------------------------------------------------

    async def materialize(self, sid: str, token: str | None = None) -> Session | None:
        """Bring session ``sid`` to life in this process from its negotiate record.

        Returns None when the record is gone (the session expired unattached, or it was
        already brought to life somewhere: records are read once). With ``token``, the token
        is verified against the record's identity before anything is created.
        """
        store = self.store
        try:
            raw = await store.load(INIT + sid)
            if not raw:  # never negotiated, expired, or already brought to life (spent)
                return None
            record = json.loads(raw)
            if token is not None:
                self.signer.verify_session_token(token, record["i"])
            if not await store.claim(OWNER + sid, _OWNER_TTL, self.node):
                return None
            await store.store(INIT + sid, "", 1)  # spent: it never materializes twice
        except BackplaneError:
            self.metrics.inc("backplane_errors")
            raise Refused("unavailable", "the backplane is unavailable") from None
        settings = self.settings
        now = self.clock()
        session = Session(sid, record["p"], record["i"], record["k"], self.outbox_limits, now)
        session.on_close = self._on_closing
        session.address = record["a"]
        self.admission.opened(record["a"])
        if settings.rate_limit is not None:
            session.bucket = TokenBucket(settings.rate_limit, settings.rate_burst, now)
        self.by_sid[sid] = session
        return session

    async def owner(self, sid: str) -> str | None:
        """The process holding session ``sid`` when it is not this one."""
        try:
            owner = await self.store.load(OWNER + sid)
        except BackplaneError:
            self.metrics.inc("backplane_errors")
            return None
        return owner if owner and owner != self.node else None

    async def disown(self, sid: str) -> None:
        """Forget which process holds ``sid`` (that process is gone)."""
        await self.store.store(OWNER + sid, "", 1)

    async def for_ticket(
        self,
        ticket: str | None,
        traits: CarrierTraits,
        *,
        reattach: bool = False,
        address: str | None = None,
    ) -> Session:
        """The session a connection may attach to with connect ticket ``ticket``.

        A ticket is spent on first use, which brings the session to life in this process. With
        ``reattach`` (a stream reconnecting with its last event id) a spent ticket may
        reattach to its own live session, if the carrier allows it and it lives here.

        Raises:
            TicketError: ``ticket_invalid``, ``ticket_expired`` or ``ticket_used``.
            Refused: ``unknown_session``, ``wrong_transport``, ``conflict``, ``unavailable``;
                ``rate_limited`` when this address presented too many refused credentials.
        """
        bucket = self.admission.credentials_budget(address)
        try:
            verified = self.signer.verify_ticket(ticket, self.wallclock(), allow_expired=True)
            session = self.by_sid.get(verified.sid)
            if (
                session is not None
                and session.state is not State.CLOSED
                and reattach
                and traits.reattach_by_ticket
                and session.transport == traits.name
            ):
                self.check_attachable(session, traits)
                return session  # a stream reconnecting to its own live session (§5.3)
            if self.wallclock() > verified.expires:
                raise TicketError("ticket_expired", "ticket expired")
            try:
                claimed = await self.store.claim(
                    "ticket:" + verified.nonce, self.settings.ticket_ttl + 60
                )
            except BackplaneError:
                self.metrics.inc("backplane_errors")
                raise Refused("unavailable", "the backplane is unavailable") from None
            if not claimed:
                raise TicketError("ticket_used", "ticket already used")
            if session is None:
                session = await self.materialize(verified.sid)
            if session is None or session.state is State.CLOSED:
                raise Refused("unknown_session", "unknown or expired session")
        except Refused as exc:
            self.admission.refused(bucket, exc)
            raise
        self.check_attachable(session, traits)
        return session

    async def for_token(
        self, token: str | None, traits: CarrierTraits | None, address: str | None = None
    ) -> Session:
        """The session a request names with its ``X-Realtime-Session`` token.

        ``traits`` is the carrier the request is for; None for ``POST /send``, which serves
        every session whose carrier is not bidirectional. A carrier that attaches by token
        brings its session to life in the process that receives its first request.

        Raises:
            TicketError: ``unauthorized`` (missing, malformed or forged token).
            SessionElsewhere: the session lives in another process (forward the request there).
            Refused: ``unknown_session``, ``wrong_transport``, ``unavailable``, ``rate_limited``.
        """
        bucket = self.admission.credentials_budget(address)
        try:
            _, sid = parse_session_token(token)
            assert token is not None
            session = self.by_sid.get(sid)
            if session is None or session.state is State.CLOSED:
                session = None
                if traits is not None and traits.attach_by_token:
                    session = await self.materialize(sid, token)
                if session is None:
                    owner = await self.owner(sid)
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
            self.admission.refused(bucket, exc)
            raise
        if traits is None:
            channel = self.channels.get(session.sid)
            if channel is not None and channel.traits.bidirectional:
                raise Refused("wrong_transport", "this session carries its own uplink")
        elif session.transport not in (None, traits.name):
            raise Refused("wrong_transport", "this session uses another transport")
        return session

    # --- attaching --------------------------------------------------------------------------

    def check_attachable(self, session: Session, traits: CarrierTraits) -> None:
        """Raise :class:`Refused` unless a connection of ``traits`` may attach now."""
        if session.transport not in (None, traits.name):
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
        traits: CarrierTraits,
        factory: Callable[[Session], SessionChannel],
    ) -> SessionChannel:
        """Attach a connection to ``session``; the first attach opens the channel.

        ``factory`` builds the carrier's channel on first attach; later attaches (a stream
        reconnect, each poll) reuse it.
        """
        self.check_attachable(session, traits)
        first = session.transport is None
        try:
            session.attach(traits.name, self.clock(), traits.retention)
        except InvalidState:
            raise Refused("wrong_transport", "this session uses another transport") from None
        channel = self.channels.get(session.sid)
        if channel is None:
            channel = factory(session)
            self.channels[session.sid] = channel
            self.public[session.public_id] = channel
        if first:
            self.metrics.inc("opened", label=traits.name)
            self.spawn(self._register(session), "transports-directory")
            if self.hooks.channel is not None:
                channel._handler_task = self.spawn(
                    self._run_channel_handler(channel), f"transports-channel-{session.public_id}"
                )
        return channel

    def detach(self, channel: SessionChannel) -> None:
        """A stream ended or a poll returned; the session waits for the next one."""
        session = channel.session
        session.detach(self.clock())
        if session.state is State.CLOSING and session.pending == 0:
            self.finish(session, session.close_code or 1000, "")

    async def _register(self, session: Session) -> None:
        try:
            await self.presence.register(session)
        except BackplaneError:
            self.metrics.inc("backplane_errors")
            log.warning("could not record a connection in the directory: backplane unavailable")

    async def _run_channel_handler(self, channel: SessionChannel) -> None:
        handler = self.hooks.channel
        assert handler is not None
        try:
            await handler(channel)
        except ChannelClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            self.metrics.inc("handler_errors")
            log.exception("channel handler failed; closing that channel with 1011")
            await self.close(channel, CloseCode.INTERNAL_ERROR, "internal error")

    # --- ending -----------------------------------------------------------------------------

    async def close(self, channel: SessionChannel, code: int, reason: str) -> None:
        """Close ``channel``: queue its CLOSE frame; its carrier delivers it and ends."""
        session = channel.session
        if session.close(code, reason):
            await self.hub.release(self.hub.leave_now(session))

    def _on_closing(self, session: Session) -> None:
        # Every close passes here once, including a session closing itself (outbox overflow,
        # publication gap): count it and start its grace period.
        self.closing_since[session.sid] = self.clock()
        if session.close_code == CloseCode.SLOW_CONSUMER:
            self.metrics.inc("slow_consumers")
        elif session.close_code == CloseCode.RESYNC:
            self.metrics.inc("resyncs")

    def finish(self, session: Session, code: int, reason: str, *, goodbye: bool = False) -> None:
        """Forget ``session`` now (its connection is gone, or its time is up).

        ``goodbye``: the client said it leaves for good (its CLOSE frame, or a browser leaving
        the page, WebSocket 1001); its presence ends at once instead of after the grace period.
        """
        if session.state is State.CLOSED:
            return
        goodbye = goodbye and session.state is not State.CLOSING and not self.admission.draining
        if session.state is not State.CLOSING:
            session.close(code, reason)
        code = session.close_code or code
        reason = session.close_reason or reason
        self.closing_since.pop(session.sid, None)
        self.metrics.inc("frames_dropped", session.frames_dropped)
        emptied = self.hub.leave_now(session)
        if emptied:
            self.spawn(self.hub.release(emptied), "transports-release")
        if self.by_sid.pop(session.sid, None) is not None and session.address is not None:
            self.admission.closed(session.address)
        channel = self.channels.pop(session.sid, None)
        session.finish()
        self.presence.ended(session, goodbye)
        if channel is None:
            return
        if self.public.get(session.public_id) is channel:
            # A reconnect of the same client keeps its public id: it may already be the newer.
            del self.public[session.public_id]
        self.metrics.inc("closed", label=code)
        channel.shutdown(code, reason)
        task = channel._handler_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        if self.hooks.disconnect:
            self.spawn(self._run_disconnect(channel, code, reason), "transports-disconnect")

    async def _run_disconnect(self, channel: Channel, code: int, reason: str) -> None:
        for handler in list(self.hooks.disconnect):
            try:
                await handler(channel, code, reason)
            except Exception:
                self.metrics.inc("handler_errors")
                log.exception("disconnect handler failed")
