"""What a probe saw, as plain data. The verdict logic (:mod:`.verdict`) reads only this, so it
can be tested with made-up observations; the network probes (:mod:`.probe`) fill it in.

Times are milliseconds since the transport's probe started (just before its negotiate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Failure", "IdleEnd", "Idle", "Observation", "Step"]

Failure = Literal["unreachable", "tls", "connect_refused", "timeout", "closed", "error"]
"""How a request failed without an HTTP answer: DNS or TCP (``unreachable``), the TLS
handshake (``tls``), a forward proxy refusing CONNECT (``connect_refused``), no answer within the
deadline (``timeout``), the connection dropped (``closed``), anything else (``error``)."""

IdleEnd = Literal["held", "heartbeat", "cut", "closed"]
"""How the idle hold ended: held for the whole time asked, the server's heartbeat arrived
(a PING, or an empty poll answer), the connection was cut without a CLOSE, or the server
closed it (a CLOSE frame)."""


@dataclass
class Step:
    """One request (or wait): when it ended, its HTTP status, or how it failed."""

    ms: float | None = None
    """When it ended (None: it did not)."""
    status: int | None = None
    """The HTTP status, when an answer came (101 for an accepted upgrade)."""
    failure: Failure | None = None
    """How it failed without an answer."""
    detail: str = ""
    """Words for the failure or the answer (the exception's text, a proxy's status...)."""
    headers: dict[str, str] = field(default_factory=dict)
    """The answer's headers, as received (the proxy-revealing ones are reported)."""
    error: str = ""
    """The ``error`` code of a JSON error body (``forbidden_origin``...), when there was one."""


@dataclass
class Idle:
    """The idle hold: the connection left quiet to see whether something cuts it."""

    planned: float
    """Seconds asked (``--idle``)."""
    silence: float
    """Seconds without traffic when it ended."""
    end: IdleEnd
    detail: str = ""


@dataclass
class Observation:
    """Everything observed on one transport."""

    transport: str
    negotiate: Step = field(default_factory=Step)
    """The negotiate of this transport's session (or the first negotiate, when it failed)."""
    offered: bool | None = None
    """Whether the server offers this transport (None: negotiate did not say)."""
    heartbeat: float = 25.0
    """The server's heartbeat, seconds (negotiate's ``heartbeat``)."""
    poll_window: float = 25.0
    """The server's poll window, seconds (negotiate's ``pollWindow``)."""
    deadline: float = 5.0
    """The deadline of each step, seconds (``--timeout``)."""
    open: Step | None = None
    """The upgrade (101), the stream's answer or the first poll's answer."""
    hello_ms: float | None = None
    """When HELLO arrived."""
    ping_ms: float | None = None
    """When the client sent its PING."""
    pong_ms: float | None = None
    """When the server's PONG arrived."""
    uplink: Step | None = None
    """A ``POST /send`` that failed (SSE, long-poll); None while they all succeeded."""
    ended: Step | None = None
    """The connection ended before the idle hold (during the round trip or publications)."""
    publish: Step | None = None
    """The first failed ``POST /diagnose/publish``, or the last answer (None: not tried)."""
    sent_ms: list[float] = field(default_factory=list)
    """When each publication was asked for."""
    arrived_ms: list[float | None] = field(default_factory=list)
    """When each publication arrived (None: it did not within the deadline)."""
    idle: Idle | None = None
    """The idle hold (None: not run)."""
