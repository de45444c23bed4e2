"""The session state machine: outbox, sequence numbers, retention and topic positions.

Pure: no I/O, no awaits; time is an argument. The I/O shell drives it like this:

1. Frames for the client go in with :meth:`Session.push` (or :meth:`Session.deliver_pub` for a
   topic publication, which also drops duplicates and detects gaps). Each gets the next sequence
   number. After a push the session calls :attr:`Session.waker`, so the shell knows to write.
2. The shell takes what is due with :meth:`Session.take` and writes it.
3. A long-poll request or an SSE reconnect tells where the client is: :meth:`Session.rewind`
   acknowledges everything up to that number and makes everything after it due again.
4. :meth:`Session.close` queues a CLOSE frame; the shell writes it and ends the transport.

The outbox is bounded. What happens to frames after they are written depends on the
:class:`Retention` mode of the transport:

* ``NONE`` (WebSocket): dropped once written; the socket itself is the reliable pipe.
* ``RING`` (SSE): kept, up to the retention limits, so an ``EventSource`` reconnect with
  ``Last-Event-ID`` can replay them; the oldest are dropped first.
* ``UNTIL_ACK`` (long-poll): kept until a later poll's cursor acknowledges them, because a
  response can be lost in transit. Unacknowledged frames count toward the outbox limits.

When the client falls behind by more than the limits, the session closes itself with 4008 (slow
consumer) instead of growing, and the client resumes by topic positions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from .codes import CloseCode
from .errors import InvalidState
from .frames import OutFrame, clip_reason, close_frame
from .ratelimit import TokenBucket
from .types import Identity, TransportName

__all__ = ["OutboxLimits", "Retention", "Session", "State", "SyncResult", "TopicState"]


class State(IntEnum):
    """Where a session is in its life."""

    CONNECTING = 0
    """Negotiated; no transport attached yet."""
    OPEN = 1
    """A transport is attached (or, for SSE/long-poll, may reattach)."""
    CLOSING = 2
    """Closed by either side; the CLOSE frame may still be on its way."""
    CLOSED = 3
    """Gone: forgotten by the server."""


class Retention(IntEnum):
    """What the outbox keeps after a frame is written (see the module docstring)."""

    NONE = 0
    RING = 1
    UNTIL_ACK = 2


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    """Bounds of one session's outbox."""

    max_frames: int = 1000
    """Frames not yet written (or, for long-poll, not yet acknowledged)."""
    max_bytes: int = 1024 * 1024
    """Bytes of those frames."""
    retain_frames: int = 1000
    """Written frames an SSE session keeps for replay."""
    retain_bytes: int = 1024 * 1024
    """Bytes of those frames."""


class TopicState:
    """A session's position in one topic."""

    __slots__ = ("epoch", "offset", "syncing", "buffer")

    def __init__(self) -> None:
        self.epoch = ""
        self.offset = 0
        self.syncing = True
        self.buffer: list[tuple[int, str, OutFrame]] = []

    def __repr__(self) -> str:
        return f"TopicState({self.epoch!r}, {self.offset}, syncing={self.syncing})"


class SyncResult(IntEnum):
    """What :meth:`Session.rewind` found."""

    OK = 0
    """Everything after the given number is due again."""
    TOO_OLD = 1
    """Frames after that number were already dropped; the client must resync by topic."""
    AHEAD = 2
    """The number is beyond anything sent: the client is confused or lying."""


class Session:
    """One client's session, independent of the transport that carries it.

    Args:
        sid: the secret session id.
        public_id: the public connection id.
        identity: what ``on_connect`` returned.
        client_key: the client's retry key from negotiate, if any.
        limits: outbox bounds.
        now: creation time (monotonic seconds).
    """

    __slots__ = (
        "sid",
        "public_id",
        "identity",
        "client_key",
        "limits",
        "transport",
        "retention",
        "state",
        "close_code",
        "close_reason",
        "topics",
        "created_at",
        "last_seen",
        "last_sent",
        "last_ping",
        "progress",
        "attached",
        "waker",
        "on_close",
        "frames_dropped",
        "answers_pings",
        "retry_scope",
        "verified_token",
        "address",
        "bucket",
        "validated_at",
        "reply_sink",
        "_entries",
        "_next_seq",
        "_sent",
        "_pending_bytes",
        "_total_bytes",
        "__weakref__",
    )

    def __init__(
        self,
        sid: str,
        public_id: str,
        identity: Identity,
        client_key: str | None,
        limits: OutboxLimits,
        now: float,
    ) -> None:
        self.sid = sid
        self.public_id = public_id
        self.identity = identity
        self.client_key = client_key
        self.limits = limits
        self.transport: TransportName | None = None
        self.retention = Retention.NONE
        self.state = State.CONNECTING
        self.close_code: int | None = None
        self.close_reason = ""
        self.topics: dict[str, TopicState] = {}
        self.created_at = now
        self.last_seen = now
        """Last time the client showed it is alive (a frame, a poll, a POST)."""
        self.last_sent = now
        """Last time the server finished writing something to the client."""
        self.last_ping = now
        """Last time a PING was queued."""
        self.progress: tuple[int, float] = (0, now)
        """``(sent_seq, time)`` when writes last progressed, kept by the engine's sweeper."""
        self.attached = False
        """A stream is open, or a poll is held, right now."""
        self.waker: Callable[[], None] | None = None
        """Called after frames become due; set by the I/O shell."""
        self.on_close: Callable[[Session], None] | None = None
        """Called once when the session starts closing, whoever closed it (the overflow of
        :meth:`push` included); set by the I/O shell, for accounting."""
        self.frames_dropped = 0
        """Frames refused because the session was closing (counted, never silent)."""
        self.address: str | None = None
        """The client's network address at negotiate (for per-address limits)."""
        self.bucket: TokenBucket | None = None
        """The client's frame-rate budget (set by the engine when limits apply)."""
        self.validated_at = now
        """Last time the application confirmed the client may stay connected."""
        self.verified_token: str | None = None
        """The session token once its signature was checked (later requests compare to it)."""
        self.retry_scope: str | None = None
        """Where this client's retried refs are recognised (set by the engine on first use)."""
        self.answers_pings = False
        """The client has answered a PING; from then on a missing answer means it is dead."""
        self.reply_sink: list[OutFrame] | None = None
        """While set, :meth:`reply` gathers REPLY frames here instead of queueing them: the
        answer of the POST /send being applied carries them (protocol §6.2)."""
        self._entries: deque[tuple[int, OutFrame]] = deque()
        self._next_seq = 1
        self._sent = 0
        self._pending_bytes = 0
        self._total_bytes = 0

    def __repr__(self) -> str:
        return f"Session({self.public_id!r}, {self.transport}, {self.state.name})"

    # --- lifecycle ---------------------------------------------------------------------

    def attach(
        self, transport: TransportName, now: float, retention: Retention = Retention.NONE
    ) -> None:
        """Bind the session to ``transport`` (first attach) and mark it attached.

        ``retention`` is what that transport needs kept after a write (used on first attach).

        Raises:
            InvalidState: the session is bound to another transport, or closing.
        """
        if self.state is State.CLOSED or (self.state is State.CLOSING and not self.pending):
            raise InvalidState(f"cannot attach: session is {self.state.name}, expected OPEN")
        if self.transport is None:
            if self.state is not State.CONNECTING:
                raise InvalidState(f"cannot attach: session is {self.state.name}")
            self.transport = transport
            self.retention = retention
            self.state = State.OPEN
        elif self.transport != transport:
            raise InvalidState(f"cannot attach {transport}: session is bound to {self.transport}")
        self.attached = True
        self.last_seen = now

    def detach(self, now: float) -> None:
        """The stream ended or the poll returned; the session may still be reattached."""
        self.attached = False
        self.last_seen = now

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> bool:
        """Close the session: queue a CLOSE frame, refuse further frames.

        Returns False if it was already closing (the first code and reason stand).
        """
        if self.state >= State.CLOSING:
            return False
        self.state = State.CLOSING
        self.close_code = int(code)
        self.close_reason = reason = clip_reason(reason)
        for topic in self.topics.values():
            topic.buffer.clear()
        self._append(close_frame(code, reason))
        if self.on_close is not None:
            self.on_close(self)
        return True

    def finish(self) -> None:
        """The session is gone for good."""
        self.state = State.CLOSED
        self.topics.clear()
        self._entries.clear()
        self._sent = self._next_seq - 1
        self._pending_bytes = self._total_bytes = 0
        self.waker = None

    # --- outbox ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Frames due to be written."""
        return self._next_seq - 1 - self._sent

    @property
    def pending_bytes(self) -> int:
        """Bytes of the frames due to be written."""
        return self._pending_bytes

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest frame."""
        return self._next_seq - 1

    @property
    def sent_seq(self) -> int:
        """The sequence number of the newest frame handed to the transport."""
        return self._sent

    @property
    def outbox_size(self) -> int:
        """Frames held (due and retained)."""
        return len(self._entries)

    def push(self, frame: OutFrame) -> bool:
        """Queue ``frame`` for the client. Returns False when it was refused.

        A closing session refuses (and counts) frames. A push that would exceed the outbox
        limits closes the session with 4008 instead; that frame is refused too.
        """
        if self.state >= State.CLOSING:
            self.frames_dropped += 1
            return False
        limits = self.limits
        if self.retention is Retention.UNTIL_ACK:
            frames, held = len(self._entries), self._total_bytes
        else:
            frames, held = self._next_seq - 1 - self._sent, self._pending_bytes
        size = frame.size
        if frames >= limits.max_frames or held + size > limits.max_bytes:
            self.frames_dropped += 1
            self.close(CloseCode.SLOW_CONSUMER, "outbox overflow")
            return False
        self._append(frame, size)
        return True

    def reply(self, frame: OutFrame) -> bool:
        """Queue the REPLY to an EVENT or PUBLISH, or gather it into :attr:`reply_sink` when
        the POST that carried the message answers with its replies. Returns False when it was
        refused (as :meth:`push`)."""
        sink = self.reply_sink
        if sink is None:
            return self.push(frame)
        if self.state >= State.CLOSING:
            self.frames_dropped += 1
            return False
        sink.append(frame)
        return True

    def _append(self, frame: OutFrame, size: int = -1) -> None:
        if size < 0:
            size = frame.size
        self._entries.append((self._next_seq, frame))
        self._next_seq += 1
        self._pending_bytes += size
        self._total_bytes += size
        waker = self.waker
        if waker is not None:
            waker()

    def take(self, max_bytes: int | None = None) -> list[tuple[int, OutFrame]]:
        """The frames due now, oldest first, marked as written.

        With ``max_bytes``, stop before the total passes it (but always take at least one).
        """
        if self._sent >= self._next_seq - 1:
            return []
        entries = self._entries
        if (
            max_bytes is None
            and self.retention is Retention.NONE
            and len(entries) == self._next_seq - 1 - self._sent
        ):
            # Nothing is kept after a write: the outbox holds exactly the frames due.
            everything = list(entries)
            entries.clear()
            self._sent = everything[-1][0]
            self._total_bytes -= self._pending_bytes
            self._pending_bytes = 0
            return everything
        start = len(entries) - self.pending
        taken: list[tuple[int, OutFrame]] = []
        total = 0
        for index in range(start, len(entries)):
            seq, frame = entries[index]
            size = frame.size
            if max_bytes is not None and taken and total + size > max_bytes:
                break
            taken.append((seq, frame))
            total += size
        self._sent = taken[-1][0]
        self._pending_bytes -= total
        if self.retention is Retention.NONE:
            for _ in taken:
                entries.popleft()
            self._total_bytes -= total
        elif self.retention is Retention.RING:
            self._trim_ring()
        return taken

    def _trim_ring(self) -> None:
        entries, limits = self._entries, self.limits
        retained = len(entries) - self.pending
        while retained > 0 and (
            retained > limits.retain_frames
            or self._total_bytes - self._pending_bytes > limits.retain_bytes
        ):
            _, frame = entries.popleft()
            self._total_bytes -= frame.size
            retained -= 1

    def ack(self, seq: int) -> None:
        """The client has every frame up to ``seq``: forget them."""
        entries = self._entries
        while entries and entries[0][0] <= seq and entries[0][0] <= self._sent:
            _, frame = entries.popleft()
            self._total_bytes -= frame.size

    def rewind(self, seq: int) -> SyncResult:
        """The client has processed up to ``seq``: acknowledge those, make the rest due again."""
        if seq > self._sent:
            return SyncResult.AHEAD
        self.ack(seq)
        first = self._entries[0][0] if self._entries else self._next_seq
        if seq + 1 < first:
            return SyncResult.TOO_OLD
        self._sent = seq
        self._pending_bytes = sum(frame.size for number, frame in self._entries if number > seq)
        if self.pending:
            waker = self.waker
            if waker is not None:
                waker()
        return SyncResult.OK

    # --- topics ------------------------------------------------------------------------

    def begin_sync(self, topic: str) -> TopicState:
        """Start a subscription: live publications are buffered until :meth:`finish_sync`."""
        state = self.topics.get(topic)
        if state is None:
            state = self.topics[topic] = TopicState()
        else:
            state.syncing = True
            state.buffer.clear()
        return state

    def finish_sync(
        self,
        topic: str,
        epoch: str,
        offset: int,
        reply: OutFrame | None,
        replay: list[tuple[int, OutFrame]],
    ) -> None:
        """End a subscription's start: queue ``reply``, then ``replay``, then buffered live ones.

        ``epoch``/``offset`` is where the subscription starts (the client's position when
        recovered, else the topic's newest offset); ``replay`` lists ``(offset, frame)`` in
        order after it.
        """
        state = self.topics.get(topic)
        if state is None or self.state >= State.CLOSING:
            return
        state.epoch, state.offset, state.syncing = epoch, offset, False
        buffered, state.buffer = state.buffer, []
        if reply is not None and not self.push(reply):
            return
        for number, frame in replay:
            if number > state.offset:
                if not self.push(frame):
                    return
                state.offset = number
        for number, pub_epoch, frame in buffered:
            self.deliver_pub(topic, number, pub_epoch, frame)

    def deliver_pub(self, topic: str, offset: int, epoch: str, frame: OutFrame) -> bool:
        """Queue a live publication, keeping the topic's offsets gap-free and duplicate-free.

        A publication at or below the session's offset is a duplicate and is dropped. One that
        skips offsets, or comes from another epoch, means something was lost on the way: the
        session closes with 4010 (resync) so the client resumes by position. Returns True when
        the frame was queued.
        """
        state = self.topics.get(topic)
        if state is None or self.state >= State.CLOSING:
            return False
        if state.syncing:
            if len(state.buffer) >= self.limits.max_frames:
                self.close(CloseCode.SLOW_CONSUMER, "outbox overflow")
                return False
            state.buffer.append((offset, epoch, frame))
            return False
        if epoch == state.epoch:
            if offset <= state.offset:
                return False
            if offset == state.offset + 1:
                if self.push(frame):
                    state.offset = offset
                    return True
                return False
        self.close(CloseCode.RESYNC, "publication gap")
        return False

    def unsubscribe(self, topic: str) -> bool:
        """Forget ``topic``; returns whether it was subscribed."""
        return self.topics.pop(topic, None) is not None
