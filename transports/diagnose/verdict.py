"""From observations to verdicts. Pure: no I/O, no clock; tested with made-up observations.

:func:`judge` walks one transport's steps in the order the probe ran them (negotiate, open,
round trip, publications, idle hold) and stops at the first that went wrong: its verdict id
(a key of ``diagnose.json``), whether the transport works, and what was observed, in words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .observations import Failure, Observation, Step

__all__ = ["REVEALING", "Finding", "best", "buffered", "judge"]

_BY_FAILURE: dict[Failure, str] = {
    "unreachable": "unreachable",
    "tls": "tls_error",
    "connect_refused": "connect_refused",
    "timeout": "timeout",
    "closed": "unreachable",
    "error": "negotiate_failed",
}
"""The verdict of a negotiate that got no answer."""

_NETWORK = {"unreachable": "unreachable", "tls": "tls_error", "connect_refused": "connect_refused"}
"""Failures that mean the same on any request."""

REVEALING = ("Server", "Via", "Content-Type", "Content-Encoding", "X-Accel-Buffering")
"""Answer headers worth reporting: who answered, and what buffers a stream."""


@dataclass
class Finding:
    """The verdict on one transport."""

    verdict: str
    ok: bool
    observed: list[str] = field(default_factory=list)
    first_message_ms: float | None = None
    """Milliseconds from the start of negotiate to the first frame (HELLO) on the transport."""


def _ms(value: float) -> str:
    return f"{value:.0f} ms"


def _answer(what: str, step: Step, shown: Sequence[str] = REVEALING) -> str:
    """``"negotiate: 200 after 12 ms"``, or how it failed."""
    if step.status is None:
        why = step.detail or (step.failure or "no answer")
        return f"{what}: no answer ({why})"
    text = f"{what}: {step.status}"
    if step.error:
        text += f" {step.error}"
    if step.ms is not None:
        text += f" after {_ms(step.ms)}"
    headers = [f"{name}: {step.headers[name]}" for name in shown if name in step.headers]
    if headers:
        text += " (" + ", ".join(headers) + ")"
    return text


def buffered(sent: Sequence[float], arrived: Sequence[float | None]) -> bool:
    """True when publications sent apart arrived late and together: held, then let go at once.

    The sends must span at least 200 ms; the arrivals must span less than a third of that, the
    first arriving more than half that span after it was sent.
    """
    if len(sent) < 2 or len(arrived) != len(sent) or any(a is None for a in arrived):
        return False
    times = [a for a in arrived if a is not None]
    span = sent[-1] - sent[0]
    if span < 200:
        return False
    return max(times) - min(times) < span / 3 and times[0] - sent[0] > span / 2


def _negotiate(obs: Observation, seen: list[str]) -> str | None:
    step = obs.negotiate
    seen.append(_answer("negotiate", step, ("Server", "Via")))
    if step.status is None:
        return _BY_FAILURE[step.failure or "error"]
    if step.status == 403 and step.error == "forbidden_origin":
        return "origin_refused"
    if step.status == 400 and step.error == "no_transport":
        seen.append(f"the server does not offer {obs.transport}")
        return "not_offered"
    if step.status != 200:
        return "negotiate_failed"
    if obs.offered is None:
        seen.append("the answer is not a negotiate object")
        return "negotiate_failed"
    if not obs.offered:
        seen.append(f"the server does not offer {obs.transport}")
        return "not_offered"
    return None


def _refusal(step: Step, otherwise: str) -> str:
    """The verdict of an unexpected answer: the origin check's 403, or ``otherwise``."""
    if step.status == 403 and step.error == "forbidden_origin":
        return "origin_refused"
    return otherwise


def _open(obs: Observation, seen: list[str]) -> str | None:
    """The verdict of the open and the round trip; None when both went through."""
    name = obs.transport
    step = obs.open or Step(failure="timeout")
    deadline = f"{obs.deadline:g} s"
    if name == "websocket":
        seen.append(_answer("upgrade", step))
        if step.failure in _NETWORK:
            return _NETWORK[step.failure]
        if step.status is None:
            return "timeout" if step.failure == "timeout" else "upgrade_refused"
        if step.status != 101:
            if step.status == 426:
                seen.append(
                    "426 is the server's answer to a request that reached it without Upgrade"
                )
            return _refusal(step, "upgrade_refused")
        if obs.hello_ms is None:
            seen.append(f"no frame (HELLO) within {deadline} after the 101")
            return "upgrade_silent"
    elif name == "sse":
        seen.append(_answer("stream", step))
        if step.failure in _NETWORK:
            return _NETWORK[step.failure]
        if step.status is None and step.failure == "timeout":
            seen.append(f"no response headers within {deadline}, though negotiate answered")
            return "sse_buffered"
        if step.status != 200:
            return _refusal(step, "http_error")
        if obs.hello_ms is None:
            seen.append(f"no first event (HELLO) within {deadline}")
            return "sse_buffered"
    else:
        seen.append(_answer("first poll", step))
        if step.failure in _NETWORK:
            return _NETWORK[step.failure]
        if step.status is None:
            return "timeout" if step.failure == "timeout" else "http_error"
        if step.status != 200:
            return _refusal(step, "http_error")
        if obs.hello_ms is None:
            seen.append("the first poll did not start with HELLO")
            return "http_error"
    assert obs.hello_ms is not None
    seen.append(f"HELLO at {_ms(obs.hello_ms)}")
    if obs.uplink is not None:
        seen.append(_answer("POST /send", obs.uplink))
        if obs.uplink.failure in _NETWORK:
            return _NETWORK[obs.uplink.failure]
        return _refusal(obs.uplink, "http_error")
    if obs.pong_ms is None or obs.ping_ms is None:
        if obs.ended is not None:
            seen.append(f"the connection ended during the round trip ({obs.ended.detail})")
        seen.append(f"no PONG within {deadline} of the client's PING")
        return {"websocket": "upgrade_silent", "sse": "sse_buffered"}.get(name, "timeout")
    seen.append(f"round trip (PING, PONG): {_ms(obs.pong_ms - obs.ping_ms)}")
    return None


def _publications(obs: Observation, seen: list[str]) -> str | None:
    step = obs.publish
    if step is None:
        seen.append("publication not tried")
        return None
    if step.status == 404:
        seen.append(
            "publication skipped: the server has diagnose off (POST /diagnose/publish answered 404)"
        )
        return None
    if step.status != 200:
        seen.append("publication skipped: " + _answer("POST /diagnose/publish", step))
        return None
    delays = [
        "-" if arrived is None else _ms(arrived - sent)
        for sent, arrived in zip(obs.sent_ms, obs.arrived_ms, strict=True)
    ]
    spacing = ""
    if len(obs.sent_ms) > 1:
        spacing = f" {_ms((obs.sent_ms[-1] - obs.sent_ms[0]) / (len(obs.sent_ms) - 1))} apart"
    seen.append(
        f"publications: {len(obs.sent_ms)} sent{spacing}, arrived after " + ", ".join(delays)
    )
    if any(arrived is None for arrived in obs.arrived_ms):
        if obs.ended is not None:
            seen.append(f"the connection ended ({obs.ended.detail})")
        seen.append(f"a publication did not arrive within {obs.deadline:g} s")
        return "sse_buffered" if obs.transport == "sse" else "timeout"
    if buffered(obs.sent_ms, obs.arrived_ms):
        seen.append("they arrived late and together: held on the way, then let go")
        if obs.transport == "sse":
            return "sse_buffered"
    return None


def _idle(obs: Observation, seen: list[str]) -> str | None:
    idle = obs.idle
    if idle is None:
        return None
    limit = obs.poll_window if obs.transport == "longpoll" else obs.heartbeat
    beat = "poll window" if obs.transport == "longpoll" else "heartbeat"
    if idle.end == "cut" and idle.silence < limit:
        detail = f": {idle.detail}" if idle.detail else ""
        seen.append(
            f"cut after {idle.silence:.1f} s without traffic{detail} "
            f"(the server's {beat} is {limit:g} s)"
        )
        return "idle_cut"
    if idle.end == "heartbeat":
        seen.append(f"idle: kept open {idle.silence:.1f} s, until the server's {beat}")
    elif idle.end == "closed":
        seen.append(f"idle: the server closed the connection after {idle.silence:.1f} s")
    elif idle.end == "cut":
        seen.append(f"idle: cut after {idle.silence:.1f} s, beyond the server's {beat}")
    else:
        seen.append(
            f"idle: kept open {idle.silence:.1f} s (a cut after a longer silence, below the "
            f"{beat} of {limit:g} s, is not ruled out)"
        )
    return None


def judge(obs: Observation) -> Finding:
    """The verdict on one transport from what was observed on it."""
    seen: list[str] = []
    verdict = _negotiate(obs, seen) or _open(obs, seen)
    if verdict is None:
        verdict = _publications(obs, seen) or _idle(obs, seen)
    if verdict == "sse_buffered" and obs.open is not None:
        headers = obs.open.headers
        if "Content-Encoding" in headers:
            seen.append(
                f"the stream is compressed ({headers['Content-Encoding']}): that buffers it"
            )
        if obs.open.status == 200 and "X-Accel-Buffering" not in headers:
            seen.append(
                "the server's X-Accel-Buffering: no did not reach the client (nginx consumes "
                "it and then does not buffer, unless told to ignore it; another proxy dropped it)"
            )
    return Finding(verdict or "ok", verdict is None, seen, obs.hello_ms)


def best(findings: Mapping[str, Finding], order: Sequence[str]) -> str | None:
    """The first transport of ``order`` (the server's preference) that works."""
    for name in order:
        finding = findings.get(name)
        if finding is not None and finding.ok:
            return name
    return None
