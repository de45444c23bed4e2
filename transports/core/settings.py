"""All tunables in one place, with their ``TRANSPORTS_*`` config keys. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ..protocol.frames import Limits
from ..protocol.types import TransportName

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """Every setting of the extension; times are in seconds, sizes in bytes.

    Each field can be set as a keyword of :class:`transports.Realtime` or in the Quart config as
    ``TRANSPORTS_<FIELD NAME IN CAPITALS>`` (keywords win). docs/protocol.md §11 lists defaults.
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
    poll_window: float = 25.0
    retry: float = 1.0
    ticket_ttl: float = 30.0
    session_ttl: float | None = None
    """Life of an SSE/long-poll session with no stream or poll (default 2 x poll_window)."""
    max_message_size: int = 64 * 1024
    max_body_size: int = 1024 * 1024
    max_batch: int = 100
    max_depth: int = 32
    max_subscriptions: int = 128
    outbox_max_frames: int = 1000
    outbox_max_bytes: int = 1024 * 1024
    retain_frames: int = 1000
    """Frames an SSE/long-poll session keeps after sending, to replay after a dropped request."""
    retain_bytes: int = 1024 * 1024
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
    auth_failure_rate: float | None = 10.0
    """Refused tickets and tokens per second per client address before that address gets 429
    for every ticket or token it presents (None: no limit). Guessing ids is slow and loud."""
    auth_failure_burst: int = 50
    revalidate_interval: float = 300.0
    """How often the ``revalidate`` hook re-checks each open connection, in seconds."""
    harden_websocket_deflate: bool = True
    """Bound permessage-deflate inflation to ``max_message_size`` inside wsproto (Hypercorn and
    wsproto inflate a whole read before any size check: a 64 KiB read of compressed zeros
    becomes 64 MiB)."""
    body_timeout: float = 10.0
    """Longest a POST body may take to arrive (slow-body clients get 408)."""
    history_size: int = 1000
    history_ttl: float = 300.0
    dedup_ttl: float = 60.0
    node_id: str | None = None
    """Name of this process among several (default: random)."""
    extra: Mapping[str, Any] = field(default_factory=dict)

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
    ) -> Settings:
        """Build settings from ``TRANSPORTS_*`` keys in ``config``, then ``overrides``.

        With ``known_transports`` (the registered carriers), an empty ``transports`` becomes
        all of them and every name must be one of them.

        Raises:
            TypeError: an unknown override name.
            ValueError: a value of the wrong kind.
        """
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name in names:
            key = "TRANSPORTS_" + name.upper()
            if key in config:
                values[name] = config[key]
        values.update(overrides)
        if isinstance(values.get("transports"), str):
            values["transports"] = tuple(t.strip() for t in values["transports"].split(","))
        if isinstance(values.get("allowed_origins"), str):
            values["allowed_origins"] = tuple(
                o.strip() for o in values["allowed_origins"].split(",") if o.strip()
            )
        for key in ("transports", "allowed_origins"):
            if key in values and isinstance(values[key], Sequence):
                values[key] = tuple(values[key])
        if isinstance(values.get("secret_key"), str):
            values["secret_key"] = values["secret_key"].encode("utf-8")
        for name, value in values.items():
            values[name] = _coerce(name, value)
        if known_transports is not None and not values.get("transports"):
            values["transports"] = tuple(known_transports)
        settings = cls(**values)
        settings.validate(known_transports)
        return settings

    def validate(self, known_transports: Sequence[str] | None = None) -> None:
        """Raise :class:`ValueError` when settings contradict each other."""
        if known_transports is not None and (
            not self.transports or any(t not in known_transports for t in self.transports)
        ):
            raise ValueError(f"transports must be a non-empty subset of {tuple(known_transports)}")
        if not self.url_prefix.startswith("/") or self.url_prefix.endswith("/"):
            raise ValueError("url_prefix must start with '/' and not end with it")
        for name in ("heartbeat", "poll_window", "ticket_ttl", "history_ttl", "dedup_ttl"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

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


def _coerce(name: str, value: Any) -> Any:
    """``value`` as the setting's type: numbers from strings (config often comes from the
    environment); anything else of the wrong kind raises :class:`ValueError` at start-up, not
    at the first request."""
    kind_and_none = _NUMBERS.get(name)
    if kind_and_none is None:
        return value
    kind, nullable = kind_and_none
    if value is None and nullable:
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
