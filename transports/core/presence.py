"""Presence (who is subscribed to a topic, on every process) and the directory of connections.

Both are shared sets in the backplane (:class:`~transports.backplanes.PresenceStore`):

* a topic with presence (settings ``presence``) has one set, whose members are the public ids of
  the connections subscribed to it, each stored with the ``info`` the application chose. A join
  that adds a member and a leave that removes one are published on the reserved topic
  ``$presence:<topic>`` (event ``join``/``leave``, data ``{"id", "info"}``), which subscribers
  that follow the topic's presence receive as ordinary publications (docs/protocol.md §12).
* the directory: ``$conn:<public id>`` names the process holding a connection, and
  ``$who:<identity fingerprint>`` lists the connections of one identity, so that
  ``Realtime.send`` and ``Realtime.send_to`` reach them on any process.

Every member is held by ``"<node>/<tag>"`` (this process, and a random tag per session), so a
reconnect that re-adds a member elsewhere takes it over, and the old session's late leave does
nothing: that, and the grace period before a dropped connection leaves, make a reconnect within
``presence_grace`` not a leave followed by a join. A process renews its lease every third of
``presence_timeout``; the others reap the members of a process whose lease lapsed and publish
their leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..backplanes import Broker, Membership, PresenceStore
from ..protocol.errors import BackplaneError
from ..protocol.frames import PRESENCE_EVENTS, encode_json
from ..protocol.session import Session
from ..protocol.tokens import identity_fingerprint
from ..protocol.types import Identity
from .channel import Channel
from .context import Context
from .topics import PresenceRule, match_rule, presence_rules

__all__ = ["CONN", "EVENTS", "WHO", "Presence", "Roster"]

log = logging.getLogger("transports.presence")

EVENTS = PRESENCE_EVENTS
"""Prefix of the reserved topic carrying a topic's joins and leaves."""
WHO = "$who:"
"""Prefix of the directory set of one identity's connections."""
CONN = "$conn:"
"""Prefix of the directory entry naming the process that holds a connection."""


@dataclass(slots=True)
class _Held:
    """What one local session holds: its public id, tag, presence info, and the keys it is in."""

    member: str
    tag: str
    info: str | None = None
    topics: set[str] = field(default_factory=set)
    unsaved: set[str] = field(default_factory=set)
    """Topics whose member could not be stored yet (the backplane failed): the upkeep adds
    them again."""
    directory: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Roster:
    """A topic's presence now: at most ``presence_max_members`` members and the exact count."""

    members: list[dict[str, Any]]
    count: int

    @property
    def truncated(self) -> bool:
        """True when ``members`` lists fewer than ``count``."""
        return len(self.members) < self.count

    def to_json(self) -> dict[str, Any]:
        """The PRESENCE reply's data (docs/protocol.md §12)."""
        return {"members": self.members, "count": self.count, "truncated": self.truncated}


def _member_json(member: Membership) -> dict[str, Any]:
    try:
        info = json.loads(member.info) if member.info else None
    except ValueError:
        info = None
    return {"id": member.member, "info": info}


class Presence:
    """This process's side of presence and of the directory of connections."""

    def __init__(self, ctx: Context, *, store: PresenceStore, broker: Broker) -> None:
        self.settings = ctx.settings
        self.rules = presence_rules(ctx.settings.topics, ctx.settings.presence)
        self.node = ctx.node
        self.hooks = ctx.hooks
        self.metrics = ctx.metrics
        self.spawn = ctx.spawn
        self.store = store
        self.broker = broker
        self._held: dict[str, _Held] = {}
        """Local sessions holding members, by secret session id."""
        self._removals: list[tuple[str, str, str, str]] = []
        """Removals the backplane refused, tried again by the upkeep: (key, member, holder,
        info)."""
        self.members_here = 0
        """Presence members (of topics with presence) held by this process."""
        ctx.metrics.observe("presence_members", lambda: self.members_here)

    # --- rules ------------------------------------------------------------------------------

    def rule(self, topic: str) -> PresenceRule | None:
        """The presence rule of ``topic`` (None: no presence there)."""
        if not self.rules or topic.startswith("$"):  # reserved topics have none
            return None
        rule = match_rule(self.rules, topic)
        return rule if rule is not None and rule.enabled else None

    # --- members ----------------------------------------------------------------------------

    def _record(self, session: Session) -> _Held:
        held = self._held.get(session.sid)
        if held is None:
            held = self._held[session.sid] = _Held(session.public_id, secrets.token_hex(6))
        return held

    def _holder(self, held: _Held) -> str:
        return f"{self.node}/{held.tag}"

    async def _info(self, channel: Channel, held: _Held) -> str:
        if held.info is None:
            hook = self.hooks.presence_info
            value: Any = channel.identity if hook is None else await hook(channel)
            held.info = encode_json(value)
        return held.info

    async def join(self, channel: Channel, session: Session, topic: str) -> None:
        """Make ``session`` a member of ``topic``'s presence (a topic with a rule).

        Raises:
            BackplaneError: the backplane is unreachable.
            TypeError, ValueError: the presence info hook returned something not JSON.
        """
        rule = self.rule(topic)
        if rule is None:
            return
        held = self._record(session)
        info = await self._info(channel, held)
        if topic not in held.topics:
            held.topics.add(topic)
            self.members_here += 1
        try:
            added = await self.store.add_member(topic, session.public_id, self._holder(held), info)
        except BackplaneError:
            # The subscription stands; the upkeep adds the member as soon as the backplane
            # answers (and announces the join then), so it is never silently missing.
            held.unsaved.add(topic)
            raise
        held.unsaved.discard(topic)
        if added:
            await self._announce(topic, "join", session.public_id, info)

    async def leave(self, session: Session, topic: str) -> None:
        """Remove ``session`` from ``topic``'s presence now (it unsubscribed)."""
        held = self._held.get(session.sid)
        if held is None or topic not in held.topics:
            return
        held.topics.discard(topic)
        held.unsaved.discard(topic)
        self.members_here -= 1
        await self._remove(topic, session.public_id, self._holder(held), held.info or "null")

    async def _remove(self, topic: str, member: str, holder: str, info: str) -> None:
        try:
            removed = await self.store.remove_member(topic, member, holder)
        except BackplaneError:
            self.metrics.inc("backplane_errors")
            log.warning("could not remove a presence member; trying again shortly")
            self._removals.append((topic, member, holder, info))
            return
        if removed:
            await self._announce(topic, "leave", member, info)

    async def _announce(self, topic: str, event: str, member: str, info: str) -> None:
        """Publish a join or leave of ``topic``, unless its rule has no events (or it has
        no presence: a directory key)."""
        rule = self.rule(topic)
        if rule is None or not rule.events:
            return
        data = '{"id":' + encode_json(member) + ',"info":' + info + "}"
        try:
            await self.broker.publish(EVENTS + topic, event, data, False)
        except BackplaneError:
            self.metrics.inc("backplane_errors")
            log.warning("could not publish a presence %s", event)

    def ended(self, session: Session, goodbye: bool) -> None:
        """``session`` is over: its members leave now when the client said goodbye, else after
        ``presence_grace`` (unless a reconnect took them over meanwhile)."""
        held = self._held.pop(session.sid, None)
        if held is None:
            return
        self.members_here -= len(held.topics)
        work = self._release(held)
        grace = self.settings.presence_grace
        if goodbye or grace <= 0 or not held.topics:
            self.spawn(work, "transports-presence-leave")
        else:
            self.spawn(self._later(grace, work), "transports-presence-grace")

    @staticmethod
    async def _later(delay: float, work: Any) -> None:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            work.close()
            raise
        await work

    async def _release(self, held: _Held) -> None:
        holder, member = self._holder(held), held.member
        for topic in held.topics:
            await self._remove(topic, member, holder, held.info or "null")
        for key, name in held.directory:
            try:
                await self.store.remove_member(key, name, holder)
            except BackplaneError:
                self._removals.append((key, name, holder, ""))

    # --- reading ----------------------------------------------------------------------------

    async def roster(self, topic: str) -> Roster:
        """``topic``'s members (at most ``presence_max_members``) and their exact count."""
        members, count = await self.store.members(topic, self.settings.presence_max_members)
        return Roster([_member_json(m) for m in members], count)

    async def count(self, topic: str) -> int:
        """How many members ``topic`` has, on every process."""
        return await self.store.member_count(topic)

    # --- the directory ----------------------------------------------------------------------

    async def register(self, session: Session) -> None:
        """Record where ``session``'s connection lives, and under its identity."""
        held = self._record(session)
        holder = self._holder(held)
        entries = [(CONN + session.public_id, "c")]
        if session.identity is not None:
            entries.append((WHO + identity_fingerprint(session.identity), session.public_id))
        for key, name in entries:
            await self.store.add_member(key, name, holder, "")
            held.directory.append((key, name))

    async def locate(self, public_id: str) -> str | None:
        """The process holding connection ``public_id`` (None: no such connection)."""
        members, _ = await self.store.members(CONN + public_id, 1)
        return members[0].node if members else None

    async def connections_of(self, identity: Identity) -> list[Membership]:
        """Every connection of ``identity``, on every process (its public id and holder)."""
        members, _ = await self.store.members(WHO + identity_fingerprint(identity), 100_000)
        return members

    # --- liveness ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Renew this process's lease, and (in a task of its own, so that a long reap never
        delays a renewal) reap the members of processes that lost theirs and retry what the
        backplane refused."""
        upkeep = asyncio.ensure_future(self._upkeep())
        try:
            await self._lease()
        finally:
            upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upkeep

    async def _lease(self) -> None:
        interval = self.settings.presence_timeout / 3
        first = True
        while True:
            try:
                alive = await self.store.keep_alive(self.node, self.settings.presence_timeout)
                if not alive and not first:
                    log.warning("this process's presence lease lapsed; adding its members again")
                    self.spawn(self._readd(), "transports-presence-readd")
                first = False
            except asyncio.CancelledError:
                raise
            except BackplaneError:
                self.metrics.inc("backplane_errors")
                log.warning("presence lease renewal failed; trying again")
            except Exception:
                log.exception("presence lease renewal failed; trying again")
            await asyncio.sleep(interval)

    async def _upkeep(self) -> None:
        interval = self.settings.presence_timeout / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._retry()
                reaped = await self.store.reap(self.node)
                for start in range(0, len(reaped), 100):  # leaves 100 at a time
                    chunk = reaped[start : start + 100]
                    await asyncio.gather(*(self._reaped(key, member) for key, member in chunk))
            except asyncio.CancelledError:
                raise
            except BackplaneError:
                self.metrics.inc("backplane_errors")
                log.warning("presence upkeep failed; trying again")
            except Exception:
                log.exception("presence upkeep failed; trying again")

    async def _retry(self) -> None:
        """Add the members the backplane refused to store, and remove the ones it refused to
        remove (announcing their joins and leaves then)."""
        removals, self._removals = self._removals, []
        for index, (key, member, holder, info) in enumerate(removals):
            try:
                removed = await self.store.remove_member(key, member, holder)
            except BackplaneError:
                self._removals.extend(removals[index:])
                raise
            if removed:
                await self._announce(key, "leave", member, info)
        for held in list(self._held.values()):
            for topic in list(held.unsaved):
                added = await self.store.add_member(
                    topic, held.member, self._holder(held), held.info or "null"
                )
                held.unsaved.discard(topic)
                if added:
                    await self._announce(topic, "join", held.member, held.info or "null")

    async def _reaped(self, key: str, member: Membership) -> None:
        await self._announce(key, "leave", member.member, member.info or "null")

    async def _readd(self) -> None:
        """This process's lease lapsed (another may have reaped its members): add them all
        again; what fails now, the upkeep adds later."""
        for held in list(self._held.values()):
            holder, public_id = self._holder(held), held.member
            try:
                for topic in held.topics:
                    if await self.store.add_member(topic, public_id, holder, held.info or "null"):
                        await self._announce(topic, "join", public_id, held.info or "null")
                for key, name in held.directory:
                    await self.store.add_member(key, name, holder, "")
            except BackplaneError:
                self.metrics.inc("backplane_errors")
                held.unsaved.update(held.topics)

    def topics_of(self, session: Session) -> Iterable[str]:
        """The presence topics ``session`` is a member of here."""
        held = self._held.get(session.sid)
        return () if held is None else tuple(held.topics)
