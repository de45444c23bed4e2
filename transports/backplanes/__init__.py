"""Backplanes carry publications between processes and keep each topic's history.

A backplane does five jobs, behind four small interfaces that :class:`Backplane` combines
(:class:`Broker` for 1 and 2, :class:`KeyValueStore` for 3, :class:`Mailbox` for 4,
:class:`PresenceStore` for 5); each part of the core depends only on the interface it uses:

1. **Fan-out across processes**: :meth:`Backplane.publish` on any process reaches
   :meth:`Backplane.receive` on every process that :meth:`Backplane.subscribe`\\ d the topic.
2. **Order and history**: it gives every publication its topic's next offset and the topic's
   epoch, and keeps a bounded history so a client can resume (:meth:`Backplane.history`).
3. **A small shared key-value store with expiry** (:meth:`claim`, :meth:`store`, :meth:`load`):
   spent tickets, remembered replies and which process holds a session must be visible to
   every process.
4. **Process inboxes** (:meth:`open_inbox`, :meth:`send_to_node`, :meth:`receive_from_inbox`): a
   long-poll or a POST that reaches a process other than the one holding its session is
   forwarded there, so no load balancer needs sticky sessions.
5. **Shared sets of members** (:meth:`add_member`, :meth:`remove_member`, :meth:`members`):
   who is subscribed to a topic (presence), and where each connection lives (so a direct message
   finds it on any process). A process that dies without removing its members loses them after
   it stops calling :meth:`keep_alive` (:meth:`reap`).

Choose one by URL with :func:`create_backplane`: ``memory://`` (one process, the default) or
``redis://`` (several processes and machines). Implementations are imported lazily, so the
memory backplane needs no extra package.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..protocol.errors import MissingDependency
from ..protocol.frames import Position

__all__ = [
    "Backplane",
    "Broker",
    "History",
    "KeyValueStore",
    "Mailbox",
    "Membership",
    "PresenceStore",
    "Published",
    "Retention",
    "create_backplane",
]


@dataclass(frozen=True, slots=True)
class Published:
    """One publication as the backplane stores and delivers it.

    ``data`` is already encoded once, at publish time: JSON text, or base64 when ``binary``.
    """

    topic: str
    event: str
    data: str
    binary: bool
    offset: int
    epoch: str
    time: float = field(default=0.0, compare=False)
    """When it was published, on the backplane's own clock (monotonic seconds in memory, the
    Redis server's wall clock with Redis); only for age-based history trimming."""

    @property
    def id(self) -> str:
        """A message id unique across topics and epochs: ``epoch:topic:offset``."""
        return f"{self.epoch}:{self.topic}:{self.offset}"


@dataclass(frozen=True, slots=True)
class History:
    """The answer to :meth:`Backplane.history`.

    ``epoch``/``offset`` is the topic's newest position. When ``recovered``, ``messages`` holds
    every publication after the requested position, in order; otherwise it is empty: the gap
    could not be filled completely, and a partial replay is never offered.
    """

    epoch: str
    offset: int
    recovered: bool
    messages: list[Published]


Retention = Callable[[str], tuple[int | None, float | None]]
"""``retention(topic) -> (history size, history lifetime in seconds)`` for one topic; ``None``
in either place keeps the backplane's own value (its ``history_size``/``history_ttl``)."""


class Broker(abc.ABC):
    """Publish/subscribe across processes, with each topic's offsets, epoch and history.

    Used by the hub. Unless a method says otherwise it may be called concurrently, and it raises
    :class:`~transports.exceptions.BackplaneError` when the backplane is unreachable.
    """

    history_size: int = 1000
    """Publications kept per topic, unless :meth:`set_retention` says otherwise for it."""
    history_ttl: float = 300.0
    """Seconds a publication is kept, unless :meth:`set_retention` says otherwise."""
    _retention: Retention | None = None

    def set_retention(self, retention: Retention | None) -> None:
        """Choose each topic's history size and lifetime (the ``topics`` setting); call it
        before the first publication. Every process must choose the same."""
        self._retention = retention

    def retention(self, topic: str) -> tuple[int, float]:
        """``topic``'s history size and lifetime in seconds."""
        size, ttl = (None, None) if self._retention is None else self._retention(topic)
        return (
            self.history_size if size is None else size,
            self.history_ttl if ttl is None else ttl,
        )

    @abc.abstractmethod
    async def subscribe(self, topic: str) -> None:
        """Start receiving ``topic``'s publications here. Effective when this returns, so a
        :meth:`history` read after it misses nothing. Idempotent."""

    @abc.abstractmethod
    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic``'s publications here. Idempotent."""

    @abc.abstractmethod
    async def publish(self, topic: str, event: str, data: str, binary: bool) -> Published:
        """Append a publication to ``topic``: give it the next offset, keep it in history, and
        deliver it to every subscribed process. Returns the stored record.

        A :class:`BackplaneError` leaves the outcome unknown: the publication may have been
        stored (never twice). A topic keeps its epoch while any process is subscribed to it;
        an idle topic whose history expired starts a new epoch."""

    @abc.abstractmethod
    async def receive(self) -> Published:
        """The next publication on a subscribed topic, in offset order per topic.

        Never repeats a record. It may skip ahead, or move to a new epoch, when its history
        cannot cover a gap (after an outage); the hub's sessions then resync (4010). Never
        raises while the backplane is away: it waits. Only one task calls this (the hub's
        listener)."""

    def backlog(self) -> int:
        """How many publications :meth:`receive` would return now without waiting (0 when
        the backplane cannot tell). A hint for the hub's scheduling, never for correctness."""
        return 0

    @abc.abstractmethod
    async def history(self, topic: str, since: Position | None) -> History:
        """The topic's position and, when ``since`` is given, every publication after it.

        With ``since=None`` the answer is the current position, ``recovered=True`` and no
        messages. Recovery fails (``recovered=False``, no messages) when ``since`` is from
        another epoch, ahead of the topic, or older than the history kept. For a topic with no
        publication yet, the epoch reported is the one its next publication will carry."""


class KeyValueStore(abc.ABC):
    """A small key-value store with expiry, shared by every process: spent tickets,
    remembered replies, which process holds a session. Atomic per call; concurrent calls are
    fine; raises :class:`~transports.exceptions.BackplaneError` when unreachable."""

    @abc.abstractmethod
    async def claim(self, key: str, ttl: float, value: str = "1") -> bool:
        """Set ``key`` to ``value`` for ``ttl`` seconds if it is not set; True if this call set
        it (atomic across processes: exactly one of several concurrent claims wins)."""

    @abc.abstractmethod
    async def store(self, key: str, value: str, ttl: float) -> None:
        """Set ``key`` to ``value`` for ``ttl`` seconds, replacing what was there."""

    @abc.abstractmethod
    async def load(self, key: str) -> str | None:
        """The value of ``key``, or None when unset or expired."""

    def claim_now(self, key: str, ttl: float) -> bool | None:
        """:meth:`claim` with the value ``"1"``, done at once when this store can answer
        without waiting (a store in this process): True or False as :meth:`claim` would say.
        None when it cannot: then await :meth:`claim`. Never raises. The default says None; a
        subclass that changes :meth:`claim` must change this too."""
        return None

    def store_now(self, key: str, value: str, ttl: float) -> bool:
        """:meth:`store`, done at once when this store can without waiting: True when it is
        done, False when it is not (then await :meth:`store`). Never raises. The default says
        False; a subclass that changes :meth:`store` must change this too."""
        return False


class Mailbox(abc.ABC):
    """One inbox per process, so a request that reached the wrong process can be forwarded
    to the one holding its session (no sticky sessions needed)."""

    @abc.abstractmethod
    async def open_inbox(self, node: str) -> None:
        """Start receiving the messages other processes send to ``node`` (this process).

        Effective when it returns. Called once, after :meth:`connect`; raises
        :class:`BackplaneError` when the backplane cannot be reached in time (the server then
        fails to start rather than run unable to forward)."""

    @abc.abstractmethod
    async def send_to_node(self, node: str, message: str) -> bool:
        """Deliver ``message`` to process ``node``'s inbox, at most once.

        Returns False when no process ``node`` is listening (the message is dropped), True when
        it was handed to one (which may still die before answering: callers time out). Inbox
        messages come from the backplane, not from this code: receivers must treat them as
        untrusted input. Raises :class:`BackplaneError` when the backplane is unreachable."""

    @abc.abstractmethod
    async def receive_from_inbox(self) -> str:
        """The next message sent to this process. Only one task calls it; it never raises
        while the backplane is away, it waits."""


@dataclass(frozen=True, slots=True)
class Membership:
    """One member of a shared set: ``holder`` is ``"<node>/<tag>"``, the process that added it
    and the tag it chose (a session), so that only that holder removes it; ``info`` is the text
    the holder stored with it (JSON)."""

    member: str
    holder: str
    info: str

    @property
    def node(self) -> str:
        """The process that holds the member."""
        return self.holder.partition("/")[0]


class PresenceStore(abc.ABC):
    """Named sets of members shared by every process, with their holders.

    A key names a set (a topic's presence, a directory entry). Each member is held by one holder
    ``"<node>/<tag>"``: adding a member that exists hands it to the new holder (a client that
    reconnected elsewhere), and a holder removes only a member it still holds. Atomic per call;
    raises :class:`~transports.exceptions.BackplaneError` when unreachable.
    """

    @abc.abstractmethod
    async def add_member(self, key: str, member: str, holder: str, info: str) -> bool:
        """Put ``member`` in set ``key``, held by ``holder`` with ``info``. True when it was not
        a member before (a join); False when it was (it changes holder and info)."""

    @abc.abstractmethod
    async def remove_member(self, key: str, member: str, holder: str) -> bool:
        """Remove ``member`` from ``key`` if ``holder`` still holds it. True when removed (a
        leave); False when absent or held by another holder."""

    @abc.abstractmethod
    async def members(self, key: str, limit: int) -> tuple[list[Membership], int]:
        """At most ``limit`` members of ``key`` (in no particular order) and the exact count."""

    @abc.abstractmethod
    async def member_count(self, key: str) -> int:
        """How many members ``key`` has (cheap, whatever its size)."""

    @abc.abstractmethod
    async def keep_alive(self, node: str, ttl: float) -> bool:
        """Say that process ``node`` is alive for ``ttl`` more seconds. A process calls it more
        often than ``ttl``; once it stops, its members are reaped (:meth:`reap`). Returns False
        when the previous lease had already lapsed (the first call included): the process's
        members may have been reaped, and it should add them again."""

    @abc.abstractmethod
    async def reap(self, node: str) -> list[tuple[str, Membership]]:
        """Remove the members held by processes that stopped calling :meth:`keep_alive`, and
        return them as ``(key, membership)``. Called by process ``node`` (never reaps its own);
        when several processes reap at once, each removal is reported to exactly one of them."""


class Backplane(Broker, KeyValueStore, Mailbox, PresenceStore):
    """The four interfaces over one connection, with its lifecycle: what a deployment
    chooses by URL (:func:`create_backplane`). Implement all three to add a backplane; the
    contract suite (tests/test_backplane_contract.py) runs against every implementation."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections; called once before anything else (``before_serving``). It does not
        fail when the backplane is unreachable (the Redis backplane keeps retrying)."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Close connections; after this, :meth:`receive` raises or never returns."""


def create_backplane(url: str, **options: Any) -> Backplane:
    """Build the backplane named by ``url``'s scheme.

    ``options`` (``history_size``, ``history_ttl``...) go to the implementation.

    Raises:
        ValueError: unknown scheme.
        MissingDependency: ``redis://`` without redis-py (``pip install 'transports[redis]'``).
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        from .memory import MemoryBackplane

        return MemoryBackplane(**options)
    if scheme in ("redis", "rediss"):
        try:
            from .redis import RedisBackplane  # type: ignore[import-not-found,unused-ignore]
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "redis":
                raise
            raise MissingDependency("the Redis backplane", "redis", "redis") from None

        return RedisBackplane(url, **options)  # type: ignore[no-any-return,unused-ignore]
    raise ValueError(f"unknown backplane URL scheme {scheme!r}: use memory:// or redis://")
