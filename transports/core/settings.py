"""All tunables in one place, with their ``TRANSPORTS_*`` config keys. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ..protocol.frames import Limits
from ..protocol.types import TransportName
from .topics import PresenceRule, TopicRule, parse_presence, parse_topics

__all__ = ["PREFIX", "Settings"]

PREFIX = "TRANSPORTS_"
"""Every setting's config key and environment variable is this plus its name in capitals."""


@dataclass(frozen=True)
class Settings:
    """Every setting of the extension; times are in seconds, sizes in bytes.

    Each field can be set as a keyword of :class:`transports.Realtime`, in the Quart config as
    ``TRANSPORTS_<FIELD NAME IN CAPITALS>``, or as the environment variable of the same name;
    keywords win over the config, which wins over the environment (docs/configuration.md).
    """

    backplane: str = "memory://"
    """Backplane URL: ``memory://`` (one process) or ``redis://host:port/db``."""
    url_prefix: str = "/realtime"
    """Where the extension mounts its routes."""
    transports: tuple[TransportName, ...] = ()
    """The transports this server enables, in order of preference (empty: every registered
    transport, in the registry's order; ``Realtime`` fills it in)."""
    allowed_origins: tuple[str, ...] = ()
    """Origins (``scheme://host[:port]``) allowed besides the server's own; ``*`` allows any."""
    secret_key: bytes | None = None
    """Signs tokens and tickets; defaults to the app's ``SECRET_KEY``, else random per process."""
    heartbeat: float = 25.0
    """Seconds of quiet after which the server sends a PING on a WebSocket or SSE connection (a
    held long-poll is its own heartbeat), and seconds without a word from a client that answers
    pings after which it is asked; such a client that stays silent for twice this long is
    closed with 4000. Keep it under every proxy's and load balancer's idle timeout."""
    poll_window: float = 25.0
    """Longest a long-poll request is held open with nothing to send; keep it under every
    proxy's idle timeout. An SSE or long-poll session with no stream and no poll is forgotten
    after twice this (``session_ttl``)."""
    retry: float = 1.0
    """The reconnect delay the server suggests (the negotiate answer's ``retry`` and SSE's
    ``retry:`` field): a lower bound clients add their backoff's jitter on top of."""
    ticket_ttl: float = 30.0
    """Life of a connect ticket, and of a negotiated session that no transport attached."""
    session_ttl: float | None = None
    """Life of an SSE/long-poll session with no stream or poll (default 2 x poll_window)."""
    max_message_size: int = 64 * 1024
    """Largest frame a client may send, in bytes (after WebSocket decompression): beyond it a
    WebSocket closes with 1009 and a POST is answered 413."""
    max_body_size: int = 1024 * 1024
    """Largest POST body (``/send``), in bytes (413 beyond it)."""
    max_batch: int = 100
    """Most frames in one POST (413 ``too_many_frames`` beyond it)."""
    max_depth: int = 32
    """Deepest JSON nesting a client frame may have."""
    max_subscriptions: int = 128
    """Most topics one session may subscribe to (``subscription_limit`` beyond it)."""
    outbox_max_frames: int = 1000
    """Unsent frames a connection may fall behind by before it is closed as a slow consumer
    (4008); it then resumes from its position."""
    outbox_max_bytes: int = 1024 * 1024
    """Unsent bytes a connection may fall behind by before it is closed with 4008."""
    retain_frames: int = 1000
    """Frames an SSE/long-poll session keeps after sending, to replay after a dropped request."""
    retain_bytes: int = 1024 * 1024
    """Bytes an SSE/long-poll session keeps after sending (with ``retain_frames``)."""
    poll_max_bytes: int = 1024 * 1024
    """Most bytes in one poll response or one SSE write."""
    write_timeout: float = 10.0
    """A WebSocket or SSE connection whose writes make no progress for this long while frames
    are due is closed as a slow consumer (4008)."""
    rate_limit: float | None = 200.0
    """Frames per second a client may send on one session (None: no limit). Beyond it a
    WebSocket closes with 4029 and a POST is answered 429 with ``Retry-After``."""
    rate_burst: int = 400
    """Frames a client may send at once before the rate applies."""
    max_sessions_per_address: int | None = 1000
    """Sessions one client address may hold at once (None: no limit); beyond it negotiate
    answers 429 ``too_many_connections``. Behind a proxy every client shares its address:
    make the proxy pass the client's (Hypercorn's ``ProxyFixMiddleware``) or raise this."""
    negotiate_rate: float | None = 50.0
    """Negotiations per second per client address (None: no limit); beyond it 429."""
    negotiate_burst: int = 200
    """Negotiations one address may make at once before ``negotiate_rate`` applies."""
    auth_failure_rate: float | None = 10.0
    """Refused tickets and tokens per second per client address before that address gets 429
    for every ticket or token it presents (None: no limit). Guessing ids is slow and loud."""
    auth_failure_burst: int = 50
    """Refused tickets and tokens one address may present at once before
    ``auth_failure_rate`` applies."""
    revalidate_interval: float = 300.0
    """How often the ``revalidate`` hook re-checks each open connection, in seconds."""
    harden_websocket_deflate: bool = True
    """Bound permessage-deflate inflation to ``max_message_size`` inside wsproto (Hypercorn and
    wsproto inflate a whole read before any size check: a 64 KiB read of compressed zeros
    becomes 64 MiB)."""
    body_timeout: float = 10.0
    """Longest a POST body may take to arrive (slow-body clients get 408)."""
    history_size: int = 1000
    """Publications each topic keeps for resuming clients (the backplane trims the rest)."""
    history_ttl: float = 300.0
    """Seconds a topic's history is kept: a client away longer is told ``recovered: false``."""
    dedup_ttl: float = 60.0
    """Seconds the answer to a client message is remembered, so that a message sent again
    after a reconnect is answered without being applied twice."""
    node_id: str | None = None
    """Name of this process among several (default: random)."""
    metrics_path: str | None = None
    """Where this process serves its metrics in the Prometheus text format (e.g. ``/metrics``;
    needs ``pip install 'transports[metrics]'``); None, the default, serves none. Independent
    of ``url_prefix`` and not subject to the origin check (docs/operations.md)."""
    presence: tuple[PresenceRule, ...] = ()
    """Topics with presence (who is subscribed, on every process), by pattern: a list such as
    ``["room:*", "lobby"]``, or a mapping of pattern to options (``{"stadium:*": {"events":
    false}}`` keeps the count and the listing but sends no join/leave events). In an
    environment variable: patterns separated by commas, or JSON. Off for every topic by
    default, since it shows who is there (docs/presence.md)."""
    presence_max_members: int = 1000
    """Most members one presence listing returns (the count stays exact; the listing says
    ``truncated``)."""
    presence_timeout: float = 10.0
    """Seconds after which the members held by a process that stopped answering (killed, cut
    off) are removed, with their leave events."""
    presence_grace: float = 5.0
    """Seconds a member whose connection dropped stays present, so that a client that
    reconnects within it is not a leave followed by a join."""
    drain_window: float = 5.0
    """Seconds over which a draining process (SIGTERM under :func:`transports.server.run.serve`,
    or ``Realtime.drain()``) tells its clients to move, one after another, so a deploy does not
    make every client reconnect in the same second."""
    drain_grace: float = 5.0
    """Seconds a draining process waits, after the window, for its last clients to leave."""
    topics: tuple[TopicRule, ...] = ()
    """Settings per topic pattern, first match first: ``{"ticker:*": {"history_size": 10,
    "history_ttl": 30}, "chat:*": {"history_size": 5000, "presence": true}}``. Options:
    ``history_size``, ``history_ttl`` (they replace the general ones for those topics) and
    ``presence`` (``true``, ``false`` or ``{"events": false}``; ahead of ``presence``). Checked
    at start-up: a bad pattern, an unknown option or a value out of range is an error naming
    it. In an environment variable: the same, as JSON (docs/configuration.md)."""
    diagnose: bool = False
    """Serve the diagnostics (docs/protocol.md §13): ``POST <prefix>/diagnose/publish``
    publishes on a ``$diagnose:<id>`` topic, clients may subscribe to such topics without
    ``authorize_subscribe``, and ``GET <prefix>/diagnose`` serves the diagnose page. Off by
    default: it lets any client that passes the origin check publish on those topics (rate
    limited per address)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Free-form values for plug-ins (a carrier of your own); the library reads none of them.
    Not read from the environment."""

    def __post_init__(self) -> None:
        # Settings built directly (not through from_config) get the same parsing.
        if not all(isinstance(rule, PresenceRule) for rule in self.presence):
            object.__setattr__(self, "presence", parse_presence(self.presence))
        if not all(isinstance(rule, TopicRule) for rule in self.topics):
            object.__setattr__(self, "topics", parse_topics(self.topics))

    @property
    def limits(self) -> Limits:
        """The decoder limits derived from these settings."""
        return Limits(
            max_message_size=self.max_message_size,
            max_body_size=self.max_body_size,
            max_batch=self.max_batch,
            max_depth=self.max_depth,
        )

    @property
    def idle_ttl(self) -> float:
        """Lifetime of an SSE/long-poll session with no stream and no poll."""
        return self.session_ttl if self.session_ttl is not None else 2 * self.poll_window

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        overrides: Mapping[str, Any],
        known_transports: Sequence[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Build settings from ``TRANSPORTS_*`` variables in ``environ``, then ``TRANSPORTS_*``
        keys in ``config``, then ``overrides``: each source wins over the ones before it.

        ``environ`` is the process environment when the server layer passes it in (this module
        never reads it). Strings, the only thing an environment holds, are read the same way
        from either mapping: numbers and booleans parsed, ``transports`` and ``allowed_origins``
        split at commas, ``secret_key`` encoded as UTF-8, ``none`` for a numeric setting that
        may be ``None``. Unknown ``TRANSPORTS_*`` names in ``environ`` or ``config`` are ignored.

        With ``known_transports`` (the registered carriers), an empty ``transports`` becomes
        all of them and every name must be one of them.

        Raises:
            TypeError: an unknown override name.
            ValueError: a value of the wrong kind; the message names the environment variable
                or config key it came from.
        """
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        chosen: dict[str, tuple[Any, str]] = {}
        for mapping, source in ((environ or {}, "environment variable"), (config, "config key")):
            for name in names:
                key = PREFIX + name.upper()
                if key in mapping and not (name == "extra" and mapping is not config):
                    chosen[name] = (mapping[key], f"{source} {key}: ")
        for name, value in overrides.items():
            chosen[name] = (value, "")
        values: dict[str, Any] = {}
        for name, (value, source) in chosen.items():
            try:
                values[name] = _coerce(name, _split(name, value))
                if name != "transports" or values[name]:
                    _check(name, values[name], known_transports)
            except ValueError as exc:
                raise ValueError(f"{source}{exc}") from None
        if known_transports is not None and not values.get("transports"):
            values["transports"] = tuple(known_transports)
        settings = cls(**values)
        settings.validate(known_transports)
        return settings

    def validate(self, known_transports: Sequence[str] | None = None) -> None:
        """Raise :class:`ValueError` when settings contradict each other."""
        for name in _CHECKED:
            _check(name, getattr(self, name), known_transports)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


_NUMBERS: dict[str, tuple[type, bool]] = {}
"""Numeric and boolean settings: name -> (type, whether ``None`` is allowed)."""
for _field in fields(Settings):
    _hint = str(_field.type).replace(" ", "")
    for _kind in (bool, int, float):
        if _hint in (_kind.__name__, _kind.__name__ + "|None"):
            _NUMBERS[_field.name] = (_kind, _hint.endswith("|None"))


def _split(name: str, value: Any) -> Any:
    """``value`` with the setting's container shape: lists and comma-separated strings as
    tuples for ``transports`` and ``allowed_origins``, a ``str`` key as UTF-8 bytes."""
    if name == "transports" and isinstance(value, str):
        return tuple(t.strip() for t in value.split(","))
    if name == "allowed_origins" and isinstance(value, str):
        return tuple(o.strip() for o in value.split(",") if o.strip())
    if name in ("transports", "allowed_origins") and isinstance(value, Sequence):
        return tuple(value)
    if name == "metrics_path" and isinstance(value, str) and not value.strip():
        return None
    if name == "presence":
        return parse_presence(value)
    if name == "topics":
        return parse_topics(value)
    if name == "secret_key" and value is not None:
        key = value.encode("utf-8") if isinstance(value, str) else value
        if not isinstance(key, bytes | bytearray):
            raise ValueError(f"secret_key must be bytes or str, not {type(value).__name__}")
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"secret_key must be at least {MIN_KEY_BYTES} bytes, not {len(key)}")
        return bytes(key)
    return value


_POSITIVE = (
    "heartbeat",
    "poll_window",
    "ticket_ttl",
    "history_ttl",
    "dedup_ttl",
    "presence_max_members",
    "presence_timeout",
)
_CHECKED = ("transports", "url_prefix", "metrics_path", "presence_grace", *_POSITIVE)


def _check(name: str, value: Any, known_transports: Sequence[str] | None) -> None:
    """Raise :class:`ValueError` when ``value`` is not allowed for the setting ``name``."""
    if name == "transports" and known_transports is not None:
        if not value or any(t not in known_transports for t in value):
            raise ValueError(f"transports must be a non-empty subset of {tuple(known_transports)}")
    elif name == "url_prefix":
        if not isinstance(value, str) or not value.startswith("/") or value.endswith("/"):
            raise ValueError("url_prefix must start with '/' and not end with it")
    elif name == "metrics_path" and value is not None:
        if not isinstance(value, str) or not value.startswith("/") or len(value) < 2:
            raise ValueError("metrics_path must be a path starting with '/'")
    elif name in _POSITIVE and value <= 0:
        raise ValueError(f"{name} must be positive")
    elif name == "presence_grace" and value < 0:
        raise ValueError("presence_grace must not be negative")


MIN_KEY_BYTES = 16
"""The shortest signing key accepted (the token signer's own minimum)."""


def _coerce(name: str, value: Any) -> Any:
    """``value`` as the setting's type: numbers from strings (config often comes from the
    environment); anything else of the wrong kind raises :class:`ValueError` at start-up, not
    at the first request."""
    kind_and_none = _NUMBERS.get(name)
    if kind_and_none is None:
        return value
    kind, nullable = kind_and_none
    if nullable and (value is None or (isinstance(value, str) and value.strip().lower() == "none")):
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name} must be a boolean, not {value!r}")
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not {value!r}")
    try:
        if isinstance(value, str):
            number: float = float(value.strip())
        elif isinstance(value, int | float):
            number = value
        else:
            raise TypeError
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    if kind is int:
        if number != int(number):
            raise ValueError(f"{name} must be a whole number, not {value!r}")
        return int(number)
    return float(number)
