"""The in-process backplane: the embedded default, for one server process."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable

from ..protocol.errors import BackplaneError
from ..protocol.frames import Position
from . import Backplane, History, Membership, Published

__all__ = ["MemoryBackplane"]


class _Log:
    __slots__ = ("epoch", "last", "entries", "touched", "ttl")

    def __init__(self, size: int, ttl: float, now: float) -> None:
        self.epoch = secrets.token_urlsafe(6)
        self.last = 0
        self.entries: deque[Published] = deque(maxlen=size)
        self.touched = now
        self.ttl = ttl


class MemoryBackplane(Backplane):
    """Fan-out, history and key-value store inside one process.

    A topic's epoch is chosen when its history is created, so a restarted process starts new
    epochs and clients with positions from before get ``recovered: false``. A topic with no
    local subscriber, no history left and no publication for ``history_ttl`` is forgotten (and
    will start a new epoch), so an unbounded number of short-lived topics does not leak memory.

    Args:
        history_size: publications kept per topic.
        history_ttl: seconds a publication is kept.
        queue_size: publications buffered for :meth:`receive` before :meth:`publish` waits.
        max_keys: most keys the key-value store holds; past it the keys closest to expiring
            go first (remembered replies are the bulk: a busy client would otherwise keep one
            per message for the whole retry window).
        clock: the time source (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        history_size: int = 1000,
        history_ttl: float = 300.0,
        queue_size: int = 10_000,
        max_keys: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.max_keys = max_keys
        self._clock = clock
        self._logs: dict[str, _Log] = {}
        self._wanted: set[str] = set()
        self._queue: asyncio.Queue[Published] = asyncio.Queue(maxsize=queue_size)
        self._kv: dict[str, tuple[str, float]] = {}
        # One queue per TTL: keys set with the same TTL expire in the order they were set.
        self._expiry: dict[float, deque[tuple[float, str]]] = {}
        self._connected = False
        self._last_sweep = 0.0
        self._node = ""
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        self._sets: dict[str, dict[str, tuple[str, str]]] = {}
        """Shared sets: key -> member -> (holder, info)."""
        self._held: dict[str, dict[str, int]] = {}
        """Per node, how many members it holds in each key (for reaping)."""
        self._alive: dict[str, float] = {}

    async def connect(self) -> None:
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False

    async def subscribe(self, topic: str) -> None:
        self._wanted.add(topic)

    async def unsubscribe(self, topic: str) -> None:
        self._wanted.discard(topic)

    def _log(self, topic: str, now: float) -> _Log:
        log = self._logs.get(topic)
        if log is None:
            log = self._logs[topic] = _Log(*self.retention(topic), now)
        self._trim(log, now)
        return log

    def _trim(self, log: _Log, now: float) -> None:
        horizon = now - log.ttl
        entries = log.entries
        while entries and entries[0].time < horizon:
            entries.popleft()

    def _sweep(self, now: float) -> None:
        # At most once per second: forget idle topics, expire keys.
        if now - self._last_sweep < 1.0:
            return
        self._last_sweep = now
        for topic in [t for t, log in self._logs.items() if log.touched < now - log.ttl]:
            log = self._logs[topic]
            self._trim(log, now)
            if not log.entries and topic not in self._wanted:
                del self._logs[topic]
        for queue in self._expiry.values():
            while queue and queue[0][0] <= now:
                _, key = queue.popleft()
                item = self._kv.get(key)
                if item is not None and item[1] <= now:
                    del self._kv[key]

    async def publish(self, topic: str, event: str, data: str, binary: bool) -> Published:
        if not self._connected:
            raise BackplaneError("backplane is not connected")
        now = self._clock()
        self._sweep(now)
        log = self._log(topic, now)
        log.last += 1
        log.touched = now
        record = Published(topic, event, data, binary, log.last, log.epoch, now)
        log.entries.append(record)
        if topic in self._wanted:
            await self._queue.put(record)
        return record

    async def receive(self) -> Published:
        return await self._queue.get()

    def backlog(self) -> int:
        return self._queue.qsize()

    async def history(self, topic: str, since: Position | None) -> History:
        now = self._clock()
        log = self._log(topic, now)
        log.touched = now
        if since is None:
            return History(log.epoch, log.last, True, [])
        if since.epoch != log.epoch or since.offset > log.last:
            return History(log.epoch, log.last, False, [])
        if since.offset == log.last:
            return History(log.epoch, log.last, True, [])
        entries = log.entries
        oldest = entries[0].offset if entries else log.last + 1
        if since.offset + 1 < oldest:
            return History(log.epoch, log.last, False, [])
        skip = since.offset + 1 - oldest
        return History(log.epoch, log.last, True, [entries[i] for i in range(skip, len(entries))])

    def _get(self, key: str, now: float) -> str | None:
        item = self._kv.get(key)
        if item is None:
            return None
        if item[1] <= now:
            del self._kv[key]
            return None
        return item[0]

    async def claim(self, key: str, ttl: float, value: str = "1") -> bool:
        return self._claim(key, value, ttl)

    def _claim(self, key: str, value: str, ttl: float) -> bool:
        # Once per client message (the reply memory): kept to a dict lookup and _set.
        now = self._clock()
        item = self._kv.get(key)
        if item is not None and item[1] > now:
            return False
        self._set(key, value, ttl, now)
        return True

    def claim_now(self, key: str, ttl: float) -> bool | None:
        return self._claim(key, "1", ttl)

    def store_now(self, key: str, value: str, ttl: float) -> bool:
        self._set(key, value, ttl, self._clock())
        return True

    def _set(self, key: str, value: str, ttl: float, now: float) -> None:
        expires = now + ttl
        kv = self._kv
        kv[key] = (value, expires)
        queue = self._expiry.get(ttl)
        if queue is None:
            queue = self._expiry[ttl] = deque()
        queue.append((expires, key))
        if now - self._last_sweep >= 1.0:
            self._sweep(now)
        if len(kv) > self.max_keys:
            self._evict()

    def _evict(self) -> None:
        """Drop the keys that expire soonest until the store is back under ``max_keys``."""
        while len(self._kv) > self.max_keys:
            queue = min((q for q in self._expiry.values() if q), key=lambda q: q[0][0])
            _, key = queue.popleft()
            item = self._kv.get(key)
            if item is not None:
                del self._kv[key]

    async def store(self, key: str, value: str, ttl: float) -> None:
        self._set(key, value, ttl, self._clock())

    async def load(self, key: str) -> str | None:
        return self._get(key, self._clock())

    async def open_inbox(self, node: str) -> None:
        self._node = node

    async def send_to_node(self, node: str, message: str) -> bool:
        # One process: the only inbox is our own.
        if node != self._node:
            return False
        await self._inbox.put(message)
        return True

    async def receive_from_inbox(self) -> str:
        return await self._inbox.get()

    # --- shared sets ----------------------------------------------------------------------

    def _count_held(self, holder: str, key: str, delta: int) -> None:
        node = holder.partition("/")[0]
        keys = self._held.setdefault(node, {})
        left = keys.get(key, 0) + delta
        if left > 0:
            keys[key] = left
        else:
            keys.pop(key, None)
            if not keys:
                del self._held[node]

    async def add_member(self, key: str, member: str, holder: str, info: str) -> bool:
        members = self._sets.setdefault(key, {})
        old = members.get(member)
        members[member] = (holder, info)
        if old is not None:
            self._count_held(old[0], key, -1)
        self._count_held(holder, key, 1)
        return old is None

    async def remove_member(self, key: str, member: str, holder: str) -> bool:
        members = self._sets.get(key)
        if members is None:
            return False
        old = members.get(member)
        if old is None or old[0] != holder:
            return False
        del members[member]
        if not members:
            del self._sets[key]
        self._count_held(holder, key, -1)
        return True

    async def members(self, key: str, limit: int) -> tuple[list[Membership], int]:
        members = self._sets.get(key, {})
        listed: list[Membership] = []
        for member, (holder, info) in members.items():
            if len(listed) >= limit:
                break
            listed.append(Membership(member, holder, info))
        return listed, len(members)

    async def member_count(self, key: str) -> int:
        return len(self._sets.get(key, ()))

    async def keep_alive(self, node: str, ttl: float) -> bool:
        now = self._clock()
        alive = self._alive.get(node, 0.0) > now
        self._alive[node] = now + ttl
        return alive

    async def reap(self, node: str) -> list[tuple[str, Membership]]:
        now = self._clock()
        reaped: list[tuple[str, Membership]] = []
        for dead in [n for n in self._held if n != node and self._alive.get(n, 0.0) <= now]:
            prefix = dead + "/"
            for key in list(self._held.get(dead, {})):
                for member, (holder, info) in list(self._sets.get(key, {}).items()):
                    if holder.startswith(prefix) and await self.remove_member(key, member, holder):
                        reaped.append((key, Membership(member, holder, info)))
            self._alive.pop(dead, None)
        return reaped

    # For tests and metrics.
    @property
    def topic_count(self) -> int:
        """Topics with a history log."""
        return len(self._logs)

    @property
    def key_count(self) -> int:
        """Keys in the key-value store (some may have expired and not been swept yet)."""
        return len(self._kv)
