"""The client policy: what both clients do when a connection ends or a request fails.

Defined once, as data, in ``transports/static/policy.json``: beside the browser client's modules,
which import it as a JSON module (``import POLICY from "./policy.json" with {type: "json"}``,
served beside ``client.js`` at ``/realtime/policy.json``), so that the one file works unchanged in
the browser, in Node and from a wheel. The Python client (:mod:`transports.client`) reads it
through this module. ``tests/policy_vectors.json`` holds the cases both clients must decide alike
(``tests/test_policy.py`` and ``tests/js/policy.test.mjs``). Pure: the standard library only, the
file is read once (with :mod:`importlib.resources`, so it works from a wheel), and every random
draw is an argument.

The fields of ``policy.json`` (times in milliseconds there, in seconds on :class:`Policy`; a
*code list* holds numbers and ``[low, high]`` inclusive ranges):

``version``
    The policy format (1).
``reconnectCodes``
    Close codes after which a client reconnects (docs/protocol.md §10.1: 1001, 1005, 1006,
    1011-1015, 4000-4499); every other code stops the client for good. :func:`close_action`.
``backoff.baseMs``, ``backoff.capMs``
    Full-jitter exponential backoff between reconnect attempts: attempt ``n`` (0 for the first)
    waits ``random * min(capMs, baseMs * 2**n)`` (:func:`backoff_delay`). The clients' ``backoff``
    option overrides both.
``backoff.stableAfterMs``
    A connection up this long resets the attempt count to 0 (:func:`is_stable`).
``retryAfterCapMs``
    The longest ``Retry-After`` a client honours; a larger one is cut to this. A ``Retry-After`` is
    a finite number of seconds (an HTTP date, or anything else, counts as none)
    (:func:`retry_after`).
``deadlinesMs``
    How long a new transport gets to prove itself, per transport name (``default`` for a name not
    listed): WebSocket open plus a PING/PONG round trip, SSE until its HELLO event, long-poll
    until its first poll answer (:func:`deadline`). A transport that misses it, or fails while
    opening for any reason, is abandoned for the next one in the client's order.
``fallbackReasons``
    Why a transport was abandoned for the next one, as a client reports it in its next negotiate
    (docs/protocol.md §3, ``fallback.reason``): ``timeout`` (it did not prove itself within its
    deadline: no round trip, no HELLO), ``refused`` (the upgrade or the request was refused before
    the transport opened), ``closed`` (it opened, then closed before it was usable), ``error``
    (it could not be started: a network or programming error), ``flapping`` (it opened and
    worked, then died soon after, ``flapping.times`` times in a row: see ``flapping``).
``reauthenticate.codes``
    Close codes that mean "your credentials are no longer good" (docs/protocol.md §10.1: 4501,
    sent when the application's ``revalidate`` hook refuses a connection, e.g. because its token
    expired). A client whose ``token`` is a function does not stop on them: it asks the function
    for a fresh token, negotiates with it and resumes every topic from its position like any
    reconnect (nothing lost, nothing doubled; unanswered sends go again under their refs). A
    fixed token cannot be renewed: the client stops, as for any code outside
    ``reconnectCodes``. The client also stops, with 4501 and the reason ``credentials
    refused``, when the function gives no token (nothing, an empty string, or it fails) or the
    server refuses the new one (a final negotiate status) (:func:`after_close`).
``reauthenticate.minUpMs``
    The bound on re-authenticating: one re-authentication per close; a connection opened by a
    re-authentication that ends again with one of ``codes`` within ``minUpMs`` of opening stops
    the client (the fresh token was refused at once: asking again would loop).
``flapping``
    A transport that opens (passes its round trip) and then dies within ``upForLessThanMs``
    ``times`` times in a row is *flapping*: something on the path (a proxy, a middlebox)
    accepts it, then cuts it. Only closes with a code in ``flapping.codes`` count (the
    connection died: 1005, 1006, 4000 no data from the server; a close the server chose, such
    as a restart, does not); any other close of the transport starts the count over
    (:func:`flap_count`). The browser client then demotes it: it moves to the next transport,
    remembers the demotion with the transport that works, and tries the demoted one again only
    in its background probe, which switches back once the probe has stayed up ``stayUpMs``.
    Defaults: 10 s is four times the WebSocket deadline and below the 25 s heartbeat (a
    connection that lived through a heartbeat exchange is not counted), 3 in a row tells a
    pattern from a network change or a restart, and 30 s outlasts a heartbeat interval, so the
    probe has carried traffic through the path before it is trusted. The browser client's
    ``flapping`` option overrides the three numbers.
``livenessSlackMs``
    A connection that hears nothing for ``max(heartbeat, pollWindow) + livenessSlackMs`` is dead
    (``pollWindow`` counts on long-poll only; protocol §9) (:func:`liveness_limit`).
``reattach``
    A session request lost on the network (no HTTP answer: a dropped SSE stream, a failed poll or
    POST) is sent again on the same session for ``hint + graceMs`` after the first loss in a row,
    where ``hint`` is the negotiate answer's ``retry`` (``hintDefaultMs`` when it sent none); then
    the connection ends with 1006 and the client reconnects (:func:`reattach_budget`). Each retry
    waits ``min(left, random * min(capMs, baseMs * 2**n))`` for the ``n``-th loss in a row
    (:func:`reattach_delay`).
``defaults``
    What a client assumes when the negotiate answer leaves a value out: ``heartbeatMs``,
    ``pollWindowMs``, and the ``limits`` ``message`` and ``body`` (bytes) and ``batch`` (frames).
``requests.<kind>``
    The HTTP requests a client makes: ``negotiate`` (``POST /negotiate``), ``send``
    (``POST /send``), ``poll`` (``GET /poll``) and ``sse`` (re-opening the event stream of a
    session). For each (:func:`http_action`):

    ``ok``
        Statuses that succeeded.
    ``retry``
        Statuses asked again (the same request), up to ``retries`` times in a row (``null``: no
        limit); once the limit is spent the status is read through ``close`` like any other.
    ``split``
        Statuses that ask for a smaller batch (``send``: 413 halves the batch; a frame refused on
        its own fails its message with ``payload_too_large`` and the connection stays).
    ``delay``
        ``{baseMs, capMs}``: a retry waits ``max(Retry-After, random * min(capMs, baseMs * 2**n))``
        for the ``n``-th retry in a row (:func:`request_delay`); ``null``: the kind is retried by
        the reconnect loop, with the reconnect delay.
    ``network``
        What a network failure (no answer) leads to: ``reconnect`` (the reconnect loop, with its
        backoff) or ``reattach`` (see ``reattach`` above).
    ``timeoutMs``
        How long a client waits for the answer (``null``: the liveness limit).
    ``close``
        Any other status ends the connection with this close code (by status, else ``default``);
        :func:`close_action` of the code then says whether the client reconnects. For ``negotiate``
        the codes are terminal: the client stops with a ``NegotiationError``.

How the server's ``retry`` hint combines with the backoff (:func:`reconnect_delay`): no hint, the
plain backoff; with a hint, ``min(max(capMs, hint), hint + backoff)``: never sooner than the hint,
spread above it, and never later than the larger of the cap and the hint. A ``Retry-After`` that
came with the failure is a lower bound on top of that.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, TypeAlias

__all__ = [
    "POLICY",
    "HTTPAction",
    "Policy",
    "RequestKind",
    "RequestPolicy",
    "backoff_delay",
    "after_close",
    "close_action",
    "deadline",
    "flap_count",
    "http_action",
    "is_stable",
    "liveness_limit",
    "load_policy",
    "parse_policy",
    "reattach_budget",
    "reattach_delay",
    "reconnect_delay",
    "request_delay",
    "retry_after",
]

RequestKind: TypeAlias = Literal["negotiate", "send", "poll", "sse"]
"""The HTTP requests a client makes (``requests`` in ``policy.json``)."""

HTTPAction: TypeAlias = Literal["ok", "retry", "split"] | int
"""What a client does with an HTTP answer: go on, ask again, send a smaller batch, or end the
connection with this close code."""

Random: TypeAlias = Callable[[], float]
CodeList: TypeAlias = tuple[tuple[int, int], ...]
"""Inclusive ``(low, high)`` ranges; a single code is ``(code, code)``."""

_MAX_DOUBLINGS = 30  # 2**30 times any base is past any cap: no overflow for huge attempt counts


def _codes(value: Any) -> CodeList:
    ranges = []
    for item in value:
        low, high = (item, item) if isinstance(item, int) else (item[0], item[1])
        ranges.append((int(low), int(high)))
    return tuple(ranges)


def _has(codes: CodeList, code: int) -> bool:
    return any(low <= code <= high for low, high in codes)


def _window(attempt: int, base: float, cap: float) -> float:
    """The full-jitter window of attempt ``attempt``: ``min(cap, base * 2**attempt)``."""
    return min(cap, base * float(2 ** min(max(attempt, 0), _MAX_DOUBLINGS)))


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """``requests.<kind>`` of ``policy.json``, times in seconds."""

    kind: str
    ok: CodeList
    retry: CodeList
    retries: int | None
    """Retries in a row of a ``retry`` status; None for no limit."""
    split: CodeList
    delay: tuple[float, float] | None
    """``(base, cap)`` of the retry delay; None: retried by the reconnect loop."""
    network: Literal["reconnect", "reattach"]
    timeout: float | None
    close: Mapping[int, int]
    close_default: int

    def action(self, status: int, retried: int = 0) -> HTTPAction:
        """What to do with an answer ``status`` after ``retried`` retries in a row."""
        if _has(self.ok, status):
            return "ok"
        if _has(self.split, status):
            return "split"
        if _has(self.retry, status) and (self.retries is None or retried < self.retries):
            return "retry"
        return self.close.get(status, self.close_default)


@dataclass(frozen=True, slots=True)
class Policy:
    """The whole of ``policy.json``, times in seconds (see the module docstring)."""

    version: int
    reconnect_codes: CodeList
    backoff_base: float
    backoff_cap: float
    stable_after: float
    retry_after_cap: float
    deadlines: Mapping[str, float]
    """Per transport name; ``default`` for others."""
    liveness_slack: float
    fallback_reasons: tuple[str, ...]
    """The reason codes of a reported fallback (``fallbackReasons``)."""
    reauthenticate_codes: CodeList
    reauthenticate_min_up: float
    flapping_codes: CodeList
    flapping_up_for: float
    """A counted close within this many seconds of opening is a flap."""
    flapping_times: int
    flapping_stay_up: float
    reattach_hint_default: float
    reattach_grace: float
    reattach_base: float
    reattach_cap: float
    heartbeat: float
    poll_window: float
    limits: Mapping[str, int]
    """``message``, ``body`` (bytes) and ``batch`` (frames) when negotiate does not say."""
    requests: Mapping[str, RequestPolicy]

    def close_action(self, code: int) -> Literal["reconnect", "stop"]:
        return "reconnect" if _has(self.reconnect_codes, code) else "stop"

    def after_close(
        self,
        code: int,
        up_for: float = math.inf,
        *,
        renewable: bool = True,
        reauthenticated: bool = False,
    ) -> Literal["reconnect", "reauthenticate", "stop"]:
        """What a client does when its connection ended with ``code`` after ``up_for`` seconds
        up: ``reauthenticate`` (a code of ``reauthenticate.codes``, a ``renewable`` token, i.e. a
        function, and not a connection that ``reauthenticated`` less than ``minUpMs`` ago),
        else :meth:`close_action`."""
        if _has(self.reauthenticate_codes, code):
            if not renewable or (reauthenticated and up_for < self.reauthenticate_min_up):
                return "stop"
            return "reauthenticate"
        return self.close_action(code)

    def flap_count(self, count: int, code: int, up_for: float) -> int:
        """The flaps in a row of a transport after its connection ended with ``code`` after
        ``up_for`` seconds up, ``count`` before: one more for a counted code within
        ``upForLessThanMs``, else 0. It is flapping once this reaches ``times``."""
        if _has(self.flapping_codes, code) and up_for < self.flapping_up_for:
            return count + 1
        return 0

    def http_action(self, kind: RequestKind, status: int, retried: int = 0) -> HTTPAction:
        return self.requests[kind].action(status, retried)

    def backoff_delay(
        self,
        attempt: int,
        *,
        base: float | None = None,
        cap: float | None = None,
        floor: float = 0.0,
        rand: Random = random.random,
    ) -> float:
        base = self.backoff_base if base is None else base
        cap = self.backoff_cap if cap is None else cap
        return floor + rand() * _window(attempt, base, cap)

    def reconnect_delay(
        self,
        attempt: int,
        hint: float = 0.0,
        rand: Random = random.random,
        *,
        base: float | None = None,
        cap: float | None = None,
    ) -> float:
        cap = self.backoff_cap if cap is None else cap
        jitter = self.backoff_delay(attempt, base=base, cap=cap, rand=rand)
        if not hint > 0:
            return jitter
        return min(max(cap, hint), hint + jitter)

    def request_delay(
        self,
        kind: RequestKind,
        retried: int,
        retry_after: float = 0.0,
        rand: Random = random.random,
    ) -> float:
        delay = self.requests[kind].delay
        if delay is None:
            return retry_after
        return max(retry_after, rand() * _window(retried, *delay))

    def retry_after(self, value: str | None) -> float:
        if value is None:
            return 0.0
        try:
            seconds = float(value.strip())
        except ValueError:
            return 0.0
        if not math.isfinite(seconds) or seconds <= 0:
            return 0.0
        return min(seconds, self.retry_after_cap)

    def reattach_budget(self, hint: float = 0.0) -> float:
        return (hint if hint > 0 else self.reattach_hint_default) + self.reattach_grace

    def reattach_delay(self, lost: int, left: float, rand: Random = random.random) -> float:
        return max(0.0, min(left, rand() * _window(lost, self.reattach_base, self.reattach_cap)))

    def deadline(self, transport: str) -> float:
        return self.deadlines.get(transport, self.deadlines["default"])

    def liveness_limit(self, heartbeat: float, poll_window: float = 0.0) -> float:
        return max(heartbeat, poll_window) + self.liveness_slack

    def is_stable(self, up_for: float) -> bool:
        return up_for >= self.stable_after


def _seconds(ms: Any) -> float:
    return float(ms) / 1000


def _request(kind: str, data: Mapping[str, Any]) -> RequestPolicy:
    close = {int(k): int(v) for k, v in data["close"].items() if k != "default"}
    delay = data["delay"]
    network = data["network"]
    if network not in ("reconnect", "reattach"):
        raise ValueError(f"requests.{kind}.network: {network!r}")
    return RequestPolicy(
        kind=kind,
        ok=_codes(data["ok"]),
        retry=_codes(data["retry"]),
        retries=None if data["retries"] is None else int(data["retries"]),
        split=_codes(data["split"]),
        delay=None if delay is None else (_seconds(delay["baseMs"]), _seconds(delay["capMs"])),
        network=network,
        timeout=None if data["timeoutMs"] is None else _seconds(data["timeoutMs"]),
        close=close,
        close_default=int(data["close"]["default"]),
    )


def parse_policy(data: Mapping[str, Any]) -> Policy:
    """A :class:`Policy` from the parsed JSON. Raises KeyError/ValueError when a field is wrong."""
    if data["version"] != 1:
        raise ValueError(f"unknown policy version {data['version']!r}")
    backoff, reattach, defaults = data["backoff"], data["reattach"], data["defaults"]
    return Policy(
        version=1,
        reconnect_codes=_codes(data["reconnectCodes"]),
        backoff_base=_seconds(backoff["baseMs"]),
        backoff_cap=_seconds(backoff["capMs"]),
        stable_after=_seconds(backoff["stableAfterMs"]),
        retry_after_cap=_seconds(data["retryAfterCapMs"]),
        deadlines={name: _seconds(ms) for name, ms in data["deadlinesMs"].items()},
        liveness_slack=_seconds(data["livenessSlackMs"]),
        fallback_reasons=tuple(str(reason) for reason in data["fallbackReasons"]),
        reauthenticate_codes=_codes(data["reauthenticate"]["codes"]),
        reauthenticate_min_up=_seconds(data["reauthenticate"]["minUpMs"]),
        flapping_codes=_codes(data["flapping"]["codes"]),
        flapping_up_for=_seconds(data["flapping"]["upForLessThanMs"]),
        flapping_times=int(data["flapping"]["times"]),
        flapping_stay_up=_seconds(data["flapping"]["stayUpMs"]),
        reattach_hint_default=_seconds(reattach["hintDefaultMs"]),
        reattach_grace=_seconds(reattach["graceMs"]),
        reattach_base=_seconds(reattach["baseMs"]),
        reattach_cap=_seconds(reattach["capMs"]),
        heartbeat=_seconds(defaults["heartbeatMs"]),
        poll_window=_seconds(defaults["pollWindowMs"]),
        limits={key: int(defaults[key]) for key in ("message", "body", "batch")},
        requests={kind: _request(kind, value) for kind, value in data["requests"].items()},
    )


_PACKAGE = (__package__ or "transports.protocol").rpartition(".")[0] or "transports"
"""The library's top package: ``policy.json`` is package data of its ``static`` folder."""


def load_policy() -> Policy:
    """Read and parse ``static/policy.json`` of the package (the browser client's folder)."""
    text = resources.files(_PACKAGE).joinpath("static").joinpath("policy.json")
    return parse_policy(json.loads(text.read_text(encoding="utf-8")))


POLICY: Policy = load_policy()
"""The policy, read once at import."""


def close_action(code: int) -> Literal["reconnect", "stop"]:
    """``"reconnect"`` after a close with ``code`` in ``reconnectCodes``, else ``"stop"``."""
    return POLICY.close_action(code)


def after_close(
    code: int, up_for: float = math.inf, *, renewable: bool = True, reauthenticated: bool = False
) -> Literal["reconnect", "reauthenticate", "stop"]:
    """What a client does after a close with ``code`` (see :meth:`Policy.after_close`)."""
    return POLICY.after_close(code, up_for, renewable=renewable, reauthenticated=reauthenticated)


def flap_count(count: int, code: int, up_for: float) -> int:
    """A transport's flaps in a row after a close (see :meth:`Policy.flap_count`)."""
    return POLICY.flap_count(count, code, up_for)


def http_action(kind: RequestKind, status: int, retried: int = 0) -> HTTPAction:
    """What a client does when a ``kind`` request is answered ``status`` after ``retried``
    retries in a row: ``"ok"``, ``"retry"``, ``"split"`` or the close code to end with."""
    return POLICY.http_action(kind, status, retried)


def backoff_delay(
    attempt: int,
    *,
    base: float | None = None,
    cap: float | None = None,
    floor: float = 0.0,
    rand: Random = random.random,
) -> float:
    """Seconds before reconnect attempt ``attempt`` (0 for the first retry), hint aside.

    ``floor + rand() * min(cap, base * 2**attempt)`` (``base`` and ``cap`` default to the
    policy's): spreading reconnects over the whole window keeps a restarted server from being hit
    by every client at once.
    """
    return POLICY.backoff_delay(attempt, base=base, cap=cap, floor=floor, rand=rand)


def reconnect_delay(
    attempt: int,
    hint: float = 0.0,
    rand: Random = random.random,
    *,
    base: float | None = None,
    cap: float | None = None,
) -> float:
    """Seconds before reconnect attempt ``attempt`` with the server's ``retry`` ``hint``
    (seconds, 0 when unknown): ``min(max(cap, hint), hint + backoff)``, the plain backoff
    without a hint."""
    return POLICY.reconnect_delay(attempt, hint, rand, base=base, cap=cap)


def request_delay(
    kind: RequestKind, retried: int, retry_after: float = 0.0, rand: Random = random.random
) -> float:
    """Seconds before retry ``retried`` (0 for the first) of a ``kind`` request answered with a
    ``retry`` status: full jitter over the kind's ``delay``, at least ``retry_after``."""
    return POLICY.request_delay(kind, retried, retry_after, rand)


def retry_after(value: str | None) -> float:
    """Seconds of a ``Retry-After`` header value (0.0 when absent, not a number or not
    positive), at most ``retryAfterCapMs``."""
    return POLICY.retry_after(value)


def reattach_budget(hint: float = 0.0) -> float:
    """Seconds a session request lost on the network is retried on its session, counted from
    the first loss in a row, given the server's ``retry`` ``hint`` (0 when unknown)."""
    return POLICY.reattach_budget(hint)


def reattach_delay(lost: int, left: float, rand: Random = random.random) -> float:
    """Seconds before re-sending after loss ``lost`` in a row (0 for the first), with ``left``
    seconds of the budget remaining."""
    return POLICY.reattach_delay(lost, left, rand)


def deadline(transport: str) -> float:
    """Seconds a new ``transport`` connection gets to prove itself."""
    return POLICY.deadline(transport)


def liveness_limit(heartbeat: float, poll_window: float = 0.0) -> float:
    """Seconds of silence after which a connection is dead (``poll_window`` on long-poll)."""
    return POLICY.liveness_limit(heartbeat, poll_window)


def is_stable(up_for: float) -> bool:
    """Whether a connection up ``up_for`` seconds resets the reconnect attempt count."""
    return POLICY.is_stable(up_for)
