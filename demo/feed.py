"""The notification feed: topics, validation, the recent-notification store and the producer.

Nothing here imports Quart: :mod:`demo.app` wires it to HTTP routes and realtime handlers.

Ids: a notification is published on exactly one topic, and its id is the library's
:attr:`transports.Published.id` of that publication (``epoch:topic:offset``). ``POST /api/notify``
returns it, ``GET /api/feed`` lists it, and the page computes the same string from each
publication it receives (``${epoch}:${topic}:${offset}``).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_TOPIC",
    "EVENT",
    "KINDS",
    "MAX_AUTHOR",
    "MAX_BODY",
    "MAX_TITLE",
    "TOPICS",
    "Invalid",
    "Producer",
    "Store",
    "validate",
]

EVENT = "notification"
"""The event name every notification is published with."""

DEFAULT_TOPIC = "all"
"""The feed every page shows on load, and where a notification without a topic goes."""

TOPICS: dict[str, str] = {
    "all": "The main feed: builds, reviews, alerts, releases and what visitors post",
    "deploys": "Deploys started and finished, per environment",
    "mentions": "Comments and reviews that mention you",
}
"""The topics a notification may go to; each notification goes to exactly one of them."""

KINDS = ("info", "build", "build_failed", "deploy", "comment", "review", "alert", "release")
"""What a notification is about (the page picks its icon and colour from it)."""

MAX_TITLE = 120
MAX_BODY = 500
MAX_AUTHOR = 40
MAX_NONCE = 64
KEEP = 500
"""Notifications kept per topic by :class:`Store` (the page keeps at most this many too)."""


class Invalid(ValueError):
    """A notification that breaks the rules: ``code`` for programs, ``message`` for people."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def as_json(self) -> dict[str, str]:
        """``{"error": code, "message": message}`` (plus ``field`` when one is at fault)."""
        body = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


@dataclass(frozen=True, slots=True)
class Draft:
    """A valid notification before it is published."""

    title: str
    body: str
    topic: str
    kind: str
    author: str
    nonce: str | None

    def data(self, ts: float | None = None) -> dict[str, Any]:
        """The publication's data (``ts``: milliseconds since the epoch, now by default)."""
        data: dict[str, Any] = {
            "title": self.title,
            "body": self.body,
            "kind": self.kind,
            "author": self.author,
            "ts": round((time.time() if ts is None else ts) * 1000),
        }
        if self.nonce is not None:
            data["nonce"] = self.nonce
        return data


def _text(value: Any, name: str, limit: int, *, required: bool = False, default: str = "") -> str:
    if value is None:
        if required:
            raise Invalid("missing_field", f"{name} is required", name)
        return default
    if not isinstance(value, str):
        raise Invalid("bad_type", f"{name} must be a string", name)
    text = " ".join(value.split()) if name != "body" else value.strip()
    if required and not text:
        raise Invalid("missing_field", f"{name} is required", name)
    if len(text) > limit:
        raise Invalid("too_long", f"{name} is longer than {limit} characters", name)
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise Invalid("bad_value", f"{name} contains control characters", name)
    return text


def validate(payload: Any, *, author: str = "guest") -> Draft:
    """Check a notification as a client or a script sent it; raise :class:`Invalid` if bad.

    ``title`` (required, at most 120 characters), ``body`` (optional, 500), ``topic`` (optional,
    one of :data:`TOPICS`, default ``all``), ``kind`` (optional, one of :data:`KINDS`),
    ``author`` (optional, 40, default ``author``) and ``nonce`` (optional, 64: an id the sender
    chose, echoed in the published data so a page can match its optimistic copy). Other keys
    are ignored.
    """
    if not isinstance(payload, Mapping):
        raise Invalid("bad_json", "the body must be a JSON object")
    title = _text(payload.get("title"), "title", MAX_TITLE, required=True)
    body = _text(payload.get("body"), "body", MAX_BODY)
    topic = payload.get("topic")
    if topic is None:
        topic = DEFAULT_TOPIC
    elif not isinstance(topic, str):
        raise Invalid("bad_type", "topic must be a string", "topic")
    elif topic not in TOPICS:
        raise Invalid("unknown_topic", f"topic must be one of: {', '.join(TOPICS)}", "topic")
    kind = payload.get("kind")
    if kind is None:
        kind = "info"
    elif not isinstance(kind, str):
        raise Invalid("bad_type", "kind must be a string", "kind")
    elif kind not in KINDS:
        raise Invalid("bad_value", f"kind must be one of: {', '.join(KINDS)}", "kind")
    name = _text(payload.get("author"), "author", MAX_AUTHOR, default=author) or author
    nonce = payload.get("nonce")
    if nonce is not None and (
        not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE or not nonce.isprintable()
    ):
        raise Invalid("bad_value", f"nonce must be a string of 1-{MAX_NONCE} characters", "nonce")
    return Draft(title=title, body=body, topic=topic, kind=kind, author=name, nonce=nonce)


class Store:
    """The last :data:`KEEP` notifications of each topic, for pages that load or reload.

    It lives in this process: with the Redis backplane and several processes, live delivery
    crosses processes but each process lists only what it published itself.
    """

    def __init__(self, keep: int = KEEP) -> None:
        self._topics: dict[str, deque[dict[str, Any]]] = {t: deque(maxlen=keep) for t in TOPICS}

    def add(self, notification: dict[str, Any]) -> None:
        """Remember a published notification (a dict with at least ``id`` and ``topic``)."""
        self._topics[notification["topic"]].append(notification)

    def recent(self, topics: Iterable[str], limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` notifications of ``topics``, newest first."""
        found = [n for t in topics for n in self._topics.get(t, ())]
        found.sort(key=lambda n: (n["data"]["ts"], n["offset"]), reverse=True)
        return found[:limit]


# --- the producer: realistic notifications every few seconds ---------------------------------

_PEOPLE = ("Maya Chen", "Jonas Berg", "Priya Raman", "Tom Okafor", "Lea Novak", "Sam Rivera")
_SERVICES = ("payments-api", "web-checkout", "search-indexer", "auth-gateway", "mobile-bff")
_BRANCHES = ("main", "main", "release/2.14", "feat/faster-search", "fix/session-timeout")
_ENVS = ("staging", "production", "eu-west canary")
_FILES = ("billing/invoice.py", "web/src/cart.tsx", "indexer/tokenize.rs", "auth/session.go")


class Producer:
    """Makes realistic notifications. Deterministic given a seed."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._build = self._random.randint(1200, 4800)
        self._pr = self._random.randint(300, 900)

    def next(self) -> Draft:
        """One notification for the ``all`` feed (a build, a review, an alert, a release)."""
        r = self._random
        maker = r.choices(
            (self._build_done, self._review, self._alert, self._release), weights=(50, 15, 20, 15)
        )[0]
        return maker(r)

    def next_opt_in(self) -> Draft:
        """One notification for an opt-in topic (``deploys`` or ``mentions``)."""
        r = self._random
        return r.choice((self._deploy, self._mention))(r)

    def _draft(self, topic: str, kind: str, author: str, title: str, body: str) -> Draft:
        return Draft(title=title, body=body, topic=topic, kind=kind, author=author, nonce=None)

    def _build_done(self, r: random.Random) -> Draft:
        self._build += r.randint(1, 3)
        service, branch = r.choice(_SERVICES), r.choice(_BRANCHES)
        minutes, seconds = r.randint(1, 9), r.randint(0, 59)
        if r.random() < 0.8:
            tests = r.randint(180, 2400)
            return self._draft(
                "all",
                "build",
                "CI",
                f"Build #{self._build} passed on {branch}",
                f"{service} · {tests} tests in {minutes}m {seconds:02d}s",
            )
        failing = r.randint(1, 4)
        return self._draft(
            "all",
            "build_failed",
            "CI",
            f"Build #{self._build} failed on {branch}",
            f"{service} · {failing} failing test{'s' if failing > 1 else ''} in {r.choice(_FILES)}",
        )

    def _deploy(self, r: random.Random) -> Draft:
        service, env, who = r.choice(_SERVICES), r.choice(_ENVS), r.choice(_PEOPLE)
        version = f"v2.{r.randint(10, 18)}.{r.randint(0, 9)}"
        if r.random() < 0.5:
            return self._draft(
                "deploys",
                "deploy",
                "Deploy bot",
                f"Deploy of {service} {version} to {env} started",
                f"Triggered by {who} · rolling out to {r.randint(3, 24)} instances",
            )
        return self._draft(
            "deploys",
            "release",
            "Deploy bot",
            f"{service} {version} is live on {env}",
            f"Rolled out in {r.randint(1, 7)}m {r.randint(0, 59):02d}s · error rate unchanged",
        )

    def _mention(self, r: random.Random) -> Draft:
        who = r.choice(_PEOPLE)
        self._pr += r.randint(1, 2)
        remark = r.choice(
            (
                "can you double-check the retry logic here?",
                "this looks good to me, just one nit on naming.",
                "I think this fixes the flaky test you saw yesterday.",
                "could we ship this behind a flag first?",
            )
        )
        return self._draft(
            "mentions",
            "comment",
            who,
            f"{who} mentioned you on PR #{self._pr}",
            f"“@you {remark}”",
        )

    def _review(self, r: random.Random) -> Draft:
        who = r.choice(_PEOPLE)
        self._pr += r.randint(1, 2)
        return self._draft(
            "all",
            "review",
            who,
            f"{who} requested your review on PR #{self._pr}",
            f"{r.choice(_SERVICES)} · {r.randint(2, 14)} files changed",
        )

    def _alert(self, r: random.Random) -> Draft:
        service = r.choice(_SERVICES)
        if r.random() < 0.6:
            return self._draft(
                "all",
                "alert",
                "Monitoring",
                f"p95 latency of {service} above {r.choice((250, 400, 800))} ms",
                f"{r.randint(5, 15)} minutes over the threshold · on call: {r.choice(_PEOPLE)}",
            )
        return self._draft(
            "all",
            "info",
            "Monitoring",
            f"Latency of {service} back to normal",
            f"Resolved after {r.randint(4, 40)} minutes",
        )

    def _release(self, r: random.Random) -> Draft:
        return self._draft(
            "all",
            "release",
            r.choice(_PEOPLE),
            f"Release notes for 2.{r.randint(10, 18)} published",
            f"{r.randint(6, 30)} changes, {r.randint(1, 5)} of them breaking",
        )

    def seeds(self) -> list[tuple[float, Draft]]:
        """A few notifications "from earlier" (seconds ago, draft) so a new page is not empty."""
        ages = (3 * 3600 + 420, 2 * 3600, 47 * 60, 12 * 60, 95)
        seeds: list[tuple[float, Draft]] = [(age, self.next()) for age in ages]
        seeds += [(age, self.next_opt_in()) for age in (5400, 25 * 60, 6 * 60)]
        return seeds
