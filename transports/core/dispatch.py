"""Client frames in, application hooks called, replies out.

Every client message that carries a ref is applied at most once per client within the dedup
window, on any process: the first arrival claims ``reply:<client>:<ref>`` in the backplane's
key-value store, runs, replies, and stores its reply; a retry is answered from that reply memory.
The store does not hold up the reply: with a shared backplane it runs after the reply is queued.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..backplanes import KeyValueStore
from ..protocol.errors import BackplaneError, ChannelClosed, Reject
from ..protocol.frames import (
    PONG,
    ClientFrame,
    Close,
    Event,
    Ping,
    Pong,
    PresenceQuery,
    Publish,
    Subscribe,
    Unsubscribe,
    diagnose_topic,
    encode_data,
    encode_json,
    encoded_reply_frame,
    valid_topic,
)
from ..protocol.session import Session, State
from ..protocol.tokens import identity_fingerprint
from .channel import Channel, Message
from .connection import SessionChannel
from .context import Context
from .hooks import TopicAuthorizer
from .hub import Follow, Hub
from .presence import EVENTS, Presence

__all__ = ["Dispatcher", "Outcome"]

log = logging.getLogger("transports")

Outcome = tuple[str, str, bool]
"""A reply as the reply memory keeps it: status, encoded data, whether the data is binary."""

_OK: Outcome = ("ok", "null", False)

_F = TypeVar("_F", Event, Publish)


def _error(status: str, message: str) -> Outcome:
    return status, encode_json({"message": message}), False


_UNAVAILABLE: Outcome = (
    "unavailable",
    encode_json({"message": "the backplane is unavailable"}),
    False,
)


async def _nothing() -> None:
    """What :meth:`Dispatcher.dispatch` gives for a frame it ignores."""


class Dispatcher:
    """Applies client frames to the application's hooks."""

    def __init__(
        self,
        ctx: Context,
        *,
        store: KeyValueStore,
        hub: Hub,
        presence: Presence,
        finish: Callable[..., None],
    ) -> None:
        self.settings = ctx.settings
        self.limits = ctx.settings.limits
        self.store = store
        self.hub = hub
        self.presence = presence
        self.hooks = ctx.hooks
        self.metrics = ctx.metrics
        self.clock = ctx.clock
        self.finish = finish
        self._inflight: dict[str, list[asyncio.Future[Outcome]] | None] = {}
        """Keys of the messages being applied, with the retries waiting for their answer."""
        self._storing: dict[str, Outcome] = {}
        """Answers already sent whose store in the reply memory has not finished."""
        self._stores: set[asyncio.Task[None]] = set()

    def over_rate(self, session: Session, frames: int = 1) -> float:
        """Spend ``frames`` from the session's budget: 0.0 if allowed, else seconds to wait."""
        bucket = session.bucket
        if bucket is None:
            return 0.0
        return bucket.take(self.clock(), frames)

    def dispatch(self, channel: SessionChannel, frame: ClientFrame) -> Awaitable[None]:
        """Apply one client frame (await the result). Errors inside the app become error
        replies.

        Not a coroutine itself: an EVENT (the frame of every message) goes straight to
        :meth:`_once`, one coroutine fewer per message.
        """
        session = channel.session
        session.last_seen = self.clock()
        if session.state >= State.CLOSING:
            return _nothing()
        if isinstance(frame, Event):
            return self._once(channel, frame.ref, self._on_event, frame)
        if isinstance(frame, Publish):
            return self._once(channel, frame.ref, self._on_publish, frame)
        return self._other(channel, frame)

    async def _other(self, channel: SessionChannel, frame: ClientFrame) -> None:
        session = channel.session
        if isinstance(frame, Subscribe):
            await self._on_subscribe(channel, frame)
        elif isinstance(frame, Unsubscribe):
            await self.hub.leave(session, [frame.topic, EVENTS + frame.topic])
            session.push(encoded_reply_frame(frame.ref, *_OK))
            try:
                await self.presence.leave(session, frame.topic)
            except BackplaneError:
                self.metrics.inc("backplane_errors")
        elif isinstance(frame, PresenceQuery):
            session.push(encoded_reply_frame(frame.ref, *await self._on_presence(channel, frame)))
        elif isinstance(frame, Ping):
            session.push(PONG)
        elif isinstance(frame, Pong):
            session.answers_pings = True
            if frame.seq is not None and channel.traits.pong_acknowledges:
                session.ack(frame.seq)
        elif isinstance(frame, Close):
            self.finish(session, frame.code, frame.reason or "closed by the client", goodbye=True)

    # --- at most once ----------------------------------------------------------------------

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
        work: Callable[[SessionChannel, _F], Awaitable[Outcome]],
        frame: _F,
    ) -> None:
        """Run ``work(channel, frame)`` once per (client, ref) within the dedup window; reply
        either way."""
        session = channel.session
        key = (
            "reply:"
            + (session.retry_scope or self._scope(session))
            + ":"
            + (str(ref) if type(ref) is int else encode_json(ref))
        )
        ttl = self.settings.dedup_ttl
        store = self.store
        claimed = store.claim_now(key, ttl)
        if claimed is None:
            try:
                claimed = await store.claim(key, ttl)
            except BackplaneError:
                self.metrics.inc("backplane_errors")
                # Without the reply memory a retry could run the handler twice: refuse this
                # one (the client may send it again, with the same ref, once the backplane is
                # back).
                log.warning("backplane unavailable: a client message was refused")
                session.reply(encoded_reply_frame(ref, *_UNAVAILABLE))
                return
        if not claimed:
            try:
                answer = await self._remembered(key)
            except BackplaneError:
                self.metrics.inc("backplane_errors")
                answer = None
            self.metrics.inc("retries_answered")
            if session.state < State.CLOSING:
                # Nothing remembered (the answer could not be stored, or the process that ran
                # it died before storing it): say so rather than leave the retry unanswered.
                session.reply(encoded_reply_frame(ref, *(answer or _UNAVAILABLE)))
            return
        inflight = self._inflight
        inflight[key] = None  # a retry that arrives meanwhile waits here (see _remembered)
        try:
            answer = await work(channel, frame)
        except BaseException:  # only engine shutdown cancels the task applying frames
            for waiter in inflight.pop(key, None) or ():
                waiter.set_result(_error("internal_error", "the server is stopping"))
            raise
        waiters = inflight.pop(key)
        if waiters is not None:
            for waiter in waiters:
                waiter.set_result(answer)
        status, text, binary = answer
        # The reply leaves before the reply memory has it: a store that must wait for a
        # shared backplane costs the reply no round trip. A retry that comes meanwhile is
        # answered from _storing here, and waits for the stored answer on other processes.
        if session.state < State.CLOSING:
            session.reply(encoded_reply_frame(ref, status, text, binary))
        value = ("1" if binary else "0") + status + "\x00" + text
        if not store.store_now(key, value, ttl):
            self._storing[key] = answer
            task = asyncio.create_task(
                self._store(key, answer, value, ttl), name="transports-reply-memory"
            )
            self._stores.add(task)
            task.add_done_callback(self._stores.discard)

    async def _store(self, key: str, answer: Outcome, value: str, ttl: float) -> None:
        try:
            await self.store.store(key, value, ttl)
        except BackplaneError:
            self.metrics.inc("backplane_errors")
            log.warning("could not remember a reply; a retry of it will be answered unavailable")
        except Exception:
            log.exception("could not remember a reply")
        finally:
            if self._storing.get(key) is answer:
                del self._storing[key]

    async def settle(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, until the replies already sent are in the reply
        memory (the engine stops the backplane after this)."""
        if self._stores:
            await asyncio.wait(set(self._stores), timeout=timeout)

    async def _remembered(self, key: str) -> Outcome | None:
        storing = self._storing.get(key)
        if storing is not None:
            return storing
        inflight = self._inflight
        if key in inflight:
            waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            waiters = inflight[key]
            if waiters is None:
                waiters = inflight[key] = []
            waiters.append(waiter)
            return await waiter
        for _ in range(50):  # answered by another process, or in flight there
            stored = await self.store.load(key)
            if stored is not None and stored != "1":
                status, _, text = stored[1:].partition("\x00")
                return status, text, stored[0] == "1"
            await asyncio.sleep(0.1)
        return None

    # --- the frames ------------------------------------------------------------------------

    async def _on_event(self, channel: SessionChannel, frame: Event) -> Outcome:
        handler = self.hooks.handlers.get(frame.event)
        if handler is None:
            if self.hooks.channel is None:
                return _error("unknown_event", "no handler for this event")
            await channel._inbox.put(Message(frame.event, frame.data, frame.ref))
            return _OK
        try:
            result = await handler(channel, frame.data)
            data_text, binary = encode_data(result)
        except Reject as exc:
            return _error("bad_data", exc.message)
        except ChannelClosed:
            return _error("internal_error", "channel closed")
        except Exception:
            self.metrics.inc("handler_errors")
            log.exception("handler for event %r failed", frame.event)
            return _error("handler_error", "the handler failed")
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
            self.metrics.inc("handler_errors")
            log.exception("topic authorizer failed")
            raise

    async def _on_subscribe(self, channel: SessionChannel, frame: Subscribe) -> None:
        session = channel.session
        ref = frame.ref

        def fail(status: str, message: str) -> None:
            session.push(encoded_reply_frame(ref, *_error(status, message)))

        # A diagnostics topic (reserved, docs/protocol.md §13) may be subscribed when the
        # server has them on, without the application's authoriser: it carries only what
        # POST /diagnose/publish put there.
        diagnostic = self.settings.diagnose and diagnose_topic(frame.topic)
        if not diagnostic and not valid_topic(frame.topic, self.limits):
            return fail("bad_topic", "invalid or reserved topic name")
        if (
            frame.topic not in session.topics
            and len(session.topics) >= self.settings.max_subscriptions
        ):
            return fail("subscription_limit", "too many subscriptions")
        if not diagnostic:
            try:
                allowed, why = await self._authorized(
                    self.hooks.authorize_subscribe, channel, frame.topic, True
                )
            except Exception:
                return fail("handler_error", "the authorizer failed")
            if not allowed:
                return fail("forbidden", why)
        topic = frame.topic
        follow: Follow | None = None
        extra: dict[str, Any] | None = None
        rule = self.presence.rule(topic)
        if rule is not None:
            # A member before the snapshot is read: a subscriber is in its own snapshot.
            try:
                await self.presence.join(channel, session, topic)
            except BackplaneError:
                self.metrics.inc("backplane_errors")
                log.warning("could not add a presence member yet: the upkeep will add it")
            except Exception:
                self.metrics.inc("handler_errors")
                log.exception("presence info hook failed; the member is not shown")
        if frame.presence:
            refusal = await self._presence_refusal(channel, topic)
            if refusal is not None:
                extra = {"presence": {"error": refusal[0], "message": refusal[1]}}
            elif rule is not None and rule.events:
                follow = Follow(EVENTS + topic, "presence", self._snapshot(topic, True))
            else:
                try:
                    roster = await self.presence.roster(topic)
                    extra = {"presence": {**roster.to_json(), "events": False}}
                except BackplaneError:
                    self.metrics.inc("backplane_errors")
                    extra = {"presence": {"error": "unavailable", "message": "try again later"}}
        try:
            history = await self.hub.join(session, topic, frame.since, ref, follow, extra)
        except BackplaneError:
            self.metrics.inc("backplane_errors")
            log.warning("subscribe failed: backplane unavailable")
            if rule is not None:
                await self.presence.leave(session, topic)
            return fail("unavailable", "the backplane is unavailable")
        if frame.since is not None:
            recovered = "true" if history.recovered else "false"
            self.metrics.inc("reconnects", label=(session.transport, recovered))
        return None

    def _snapshot(self, topic: str, events: bool) -> Callable[[Any], Awaitable[Any]]:
        async def describe(position: Any) -> Any:
            roster = await self.presence.roster(topic)
            return {
                **roster.to_json(),
                "events": events,
                "epoch": position.epoch,
                "offset": position.offset,
            }

        return describe

    async def _presence_refusal(
        self, channel: SessionChannel, topic: str
    ) -> tuple[str, str] | None:
        """Why ``channel`` may not read ``topic``'s presence, or None when it may."""
        if self.presence.rule(topic) is None:
            return "presence_disabled", "this topic has no presence"
        hooks = self.hooks
        authorizer = hooks.authorize_presence or hooks.authorize_subscribe
        try:
            allowed, why = await self._authorized(authorizer, channel, topic, True)
        except Exception:
            return "handler_error", "the authorizer failed"
        return None if allowed else ("forbidden", why)

    async def _on_presence(self, channel: SessionChannel, frame: PresenceQuery) -> Outcome:
        if not valid_topic(frame.topic, self.limits):
            return _error("bad_topic", "invalid or reserved topic name")
        refusal = await self._presence_refusal(channel, frame.topic)
        if refusal is not None:
            return _error(*refusal)
        try:
            roster = await self.presence.roster(frame.topic)
        except BackplaneError:
            self.metrics.inc("backplane_errors")
            return _UNAVAILABLE
        return "ok", encode_json(roster.to_json()), False

    async def _on_publish(self, channel: SessionChannel, frame: Publish) -> Outcome:
        if not valid_topic(frame.topic, self.limits):
            return _error("bad_topic", "invalid or reserved topic name")
        try:
            allowed, why = await self._authorized(
                self.hooks.authorize_publish, channel, frame.topic, False
            )
        except Exception:
            return _error("handler_error", "the authorizer failed")
        if not allowed:
            return _error("forbidden", why)
        try:
            record = await self.hub.publish(frame.topic, frame.event, frame.data)
        except BackplaneError:
            self.metrics.inc("backplane_errors")
            return _error("unavailable", "the backplane is unavailable")
        return "ok", encode_json({"offset": record.offset, "epoch": record.epoch}), False
