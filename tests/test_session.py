"""The session state machine: outbox, retention, rewind, topic positions (pure)."""

from __future__ import annotations

import pytest

from transports.exceptions import InvalidState
from transports.protocol.codes import CloseCode
from transports.protocol.frames import OutFrame, encode_data, pub_frame, reply_frame
from transports.protocol.session import OutboxLimits, Retention, Session, State, SyncResult

# What each transport's carrier asks the session to keep after a write.
RETENTION = {"websocket": Retention.NONE, "sse": Retention.RING, "longpoll": Retention.UNTIL_ACK}


def make(transport: str = "websocket", **limits: int) -> Session:
    session = Session("sid", "pub", None, None, OutboxLimits(**limits), now=0.0)
    session.attach(transport, now=0.0, retention=RETENTION[transport])
    return session


def frame(n: int) -> OutFrame:
    return OutFrame(f'[2,"e",{n}]')


def texts(taken: list[tuple[int, OutFrame]]) -> list[tuple[int, str]]:
    return [(seq, f.text) for seq, f in taken]


def test_sequence_numbers_and_take() -> None:
    """Frames get consecutive numbers from 1 and come out in order, once."""
    session = make()
    for n in range(3):
        assert session.push(frame(n))
    assert session.pending == 3
    assert texts(session.take()) == [(1, '[2,"e",0]'), (2, '[2,"e",1]'), (3, '[2,"e",2]')]
    assert session.take() == []
    assert session.outbox_size == 0  # WebSocket keeps nothing once written


def test_take_respects_byte_budget() -> None:
    """take(max_bytes) stops before the budget but always makes progress."""
    session = make()
    for n in range(5):
        session.push(frame(n))
    first = session.take(max_bytes=20)
    assert [seq for seq, _ in first] == [1, 2]
    assert [seq for seq, _ in session.take(max_bytes=1)] == [3]
    assert [seq for seq, _ in session.take()] == [4, 5]


def test_waker_called_on_push() -> None:
    """The I/O shell is told whenever frames become due."""
    session = make()
    calls: list[int] = []
    session.waker = lambda: calls.append(session.pending)
    session.push(frame(1))
    session.push(frame(2))
    assert calls == [1, 2]


def test_slow_consumer_closes_with_4008() -> None:
    """Overflowing the unsent outbox closes the session instead of growing it."""
    session = make(max_frames=3)
    assert all(session.push(frame(n)) for n in range(3))
    assert not session.push(frame(3))
    assert session.state is State.CLOSING
    assert session.close_code == CloseCode.SLOW_CONSUMER
    assert session.frames_dropped == 1
    taken = texts(session.take())
    assert taken[-1] == (4, '[9,4008,"outbox overflow"]')
    assert not session.push(frame(9))  # closing: refused and counted
    assert session.frames_dropped == 2


def test_slow_consumer_by_bytes() -> None:
    """The byte bound applies too."""
    session = make(max_bytes=25)
    assert session.push(frame(1))  # 10 bytes
    assert session.push(frame(2))
    assert not session.push(frame(3))
    assert session.close_code == CloseCode.SLOW_CONSUMER


def test_longpoll_keeps_frames_until_acknowledged() -> None:
    """A poll response lost in transit is sent again: frames stay until a cursor passes them."""
    session = make("longpoll")
    for n in range(3):
        session.push(frame(n))
    assert [s for s, _ in session.take()] == [1, 2, 3]  # response 1, lost on the way
    assert session.rewind(0) is SyncResult.OK  # next poll still says cursor=0
    assert [s for s, _ in session.take()] == [1, 2, 3]
    assert session.rewind(3) is SyncResult.OK  # this one arrived
    assert session.outbox_size == 0
    assert session.rewind(5) is SyncResult.AHEAD


def test_longpoll_unacknowledged_frames_count_toward_limit() -> None:
    """A long-poll client that stops acknowledging is a slow consumer."""
    session = make("longpoll", max_frames=3)
    for n in range(3):
        session.push(frame(n))
    session.take()
    assert not session.push(frame(4))
    assert session.close_code == CloseCode.SLOW_CONSUMER


def test_sse_ring_replays_after_last_event_id() -> None:
    """SSE keeps written frames: a reconnect with Last-Event-ID replays exactly what is missing."""
    session = make("sse", retain_frames=3)
    for n in range(5):
        session.push(frame(n))
    session.take()
    assert session.outbox_size == 3  # frames 3, 4, 5 retained
    assert session.rewind(3) is SyncResult.OK
    assert [s for s, _ in session.take()] == [4, 5]
    assert session.rewind(1) is SyncResult.TOO_OLD  # frames 2 and 3 are gone


def test_attach_binds_transport() -> None:
    """A session is bound to the first transport that attaches; others are refused."""
    session = Session("sid", "pub", None, None, OutboxLimits(), now=0.0)
    assert session.state is State.CONNECTING
    session.attach("sse", now=1.0)
    assert session.state is State.OPEN  # type: ignore[comparison-overlap]  # attach() changed it
    session.detach(now=2.0)
    session.attach("sse", now=3.0)
    with pytest.raises(InvalidState, match="bound to sse"):
        session.attach("longpoll", now=4.0)
    session.close()
    session.attach("sse", now=5.0)  # allowed while the CLOSE frame waits to be delivered
    session.take()
    with pytest.raises(InvalidState, match="CLOSING"):
        session.attach("sse", now=6.0)


def test_close_once() -> None:
    """The first close wins; a second is a no-op."""
    session = make()
    assert session.close(4010, "resync")
    assert not session.close(1000, "bye")
    assert (session.close_code, session.close_reason) == (4010, "resync")


def pub(n: int, epoch: str = "e1") -> OutFrame:
    return pub_frame("t", "ev", *encode_data(n), n, epoch)


def test_subscription_replay_then_live_without_gaps_or_duplicates() -> None:
    """Live publications that race the history read are buffered, deduplicated and ordered."""
    session = make()
    session.begin_sync("t")
    # Live publications 5 and 6 arrive while history is being read.
    assert not session.deliver_pub("t", 5, "e1", pub(5))
    assert not session.deliver_pub("t", 6, "e1", pub(6))
    reply = reply_frame(1, "ok", {"recovered": True, "epoch": "e1", "offset": 3})
    # History after offset 3 holds 4 and 5 (5 overlaps the live buffer).
    session.finish_sync("t", "e1", 3, reply, [(4, pub(4)), (5, pub(5))])
    session.deliver_pub("t", 7, "e1", pub(7))
    session.deliver_pub("t", 7, "e1", pub(7))  # duplicate
    sent = [f.text for _, f in session.take()]
    assert sent[0] == reply.text
    assert [int(t.split(",")[3]) for t in sent[1:]] == [4, 5, 6, 7]
    assert session.topics["t"].offset == 7


def test_publication_gap_forces_resync() -> None:
    """A skipped offset means something was lost upstream: close with 4010, never a silent hole."""
    session = make()
    session.begin_sync("t")
    session.finish_sync("t", "e1", 0, reply_frame(1, "ok"), [])
    assert session.deliver_pub("t", 1, "e1", pub(1))
    assert not session.deliver_pub("t", 3, "e1", pub(3))
    assert session.close_code == CloseCode.RESYNC


def test_epoch_change_forces_resync() -> None:
    """A publication from another epoch (history lost) closes with 4010."""
    session = make()
    session.begin_sync("t")
    session.finish_sync("t", "e1", 5, reply_frame(1, "ok"), [])
    assert not session.deliver_pub("t", 1, "e2", pub(1, "e2"))
    assert session.close_code == CloseCode.RESYNC


def test_unsubscribed_topics_are_ignored() -> None:
    """A publication for a topic the session left is not delivered."""
    session = make()
    session.begin_sync("t")
    session.finish_sync("t", "e1", 0, reply_frame(1, "ok"), [])
    assert session.unsubscribe("t")
    assert not session.unsubscribe("t")
    assert not session.deliver_pub("t", 1, "e1", pub(1))
    assert session.pending == 1  # just the reply


def test_finished_session_has_nothing_due() -> None:
    """Once finished, a session reports nothing pending and take() returns nothing."""
    session = make("longpoll")
    session.push(frame(1))
    session.close()
    session.finish()
    assert session.pending == 0
    assert session.take() == []
