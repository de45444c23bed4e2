"""Negotiation (docs/protocol.md §3). Pure: request body in, transport list and response out."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .errors import PayloadTooBig, ProtocolError
from .frames import Limits
from .policy import POLICY
from .types import TransportName

__all__ = [
    "PROTOCOL_VERSION",
    "NegotiateRequest",
    "choose",
    "negotiate_response",
    "parse_fallback",
    "parse_negotiate",
]

PROTOCOL_VERSION: Final = 1
"""The protocol version this library speaks."""

SUPPORTED_VERSIONS: Final = (1,)
_CLIENT_KEY = re.compile(r"[A-Za-z0-9_-]{8,64}")
_MAX_NEGOTIATE_BODY: Final = 4096
KNOWN_TRANSPORTS: Final = ("websocket", "sse", "longpoll")
"""The transports a reported fallback may name (the carriers this library has)."""


@dataclass(frozen=True, slots=True)
class NegotiateRequest:
    """What a client asked for at negotiate."""

    version: int = PROTOCOL_VERSION
    client_key: str | None = None
    transports: tuple[str, ...] | None = None
    fallback: tuple[str, str, str] | None = None
    """The client's last fallback, ``(from, to, reason)``, when it reported a valid one."""


def parse_negotiate(body: bytes, known: Collection[str] = KNOWN_TRANSPORTS) -> NegotiateRequest:
    """Decode a negotiate body (empty means all defaults). ``known`` are the transport names a
    ``fallback`` report may use (the server's); an invalid report is ignored, not refused.

    Raises:
        PayloadTooBig: the body is over 4 KiB.
        ProtocolError: ``bad_json`` (not a JSON object, wrong field types) or
            ``unsupported_version``.
    """
    if len(body) > _MAX_NEGOTIATE_BODY:
        raise PayloadTooBig("negotiate body larger than 4096 bytes")
    if not body.strip():
        return NegotiateRequest()
    try:
        value: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_json", "negotiate body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError("bad_json", "negotiate body must be a JSON object")
    version = value.get("v", PROTOCOL_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProtocolError("bad_json", "v must be an integer")
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError("unsupported_version", "protocol version not supported")
    client_key = value.get("client")
    if client_key is not None and (
        not isinstance(client_key, str) or not _CLIENT_KEY.fullmatch(client_key)
    ):
        raise ProtocolError("bad_json", "client must be 8-64 characters of A-Z a-z 0-9 _ -")
    offered = value.get("transports")
    transports: tuple[str, ...] | None = None
    if offered is not None:
        if (
            not isinstance(offered, list)
            or len(offered) > 8
            or not all(isinstance(name, str) and len(name) <= 32 for name in offered)
        ):
            raise ProtocolError("bad_json", "transports must be a list of transport names")
        transports = tuple(offered)
    fallback = parse_fallback(value.get("fallback"), known)
    return NegotiateRequest(version, client_key, transports, fallback)


def parse_fallback(
    value: object, known: Collection[str] = KNOWN_TRANSPORTS
) -> tuple[str, str, str] | None:
    """A client's ``fallback`` report as ``(from, to, reason)``, or None when it is absent or
    not valid: it is untrusted input, so anything but an object of two different transport
    names in ``known`` and a reason of the policy's ``fallbackReasons`` is ignored."""
    if not isinstance(value, dict) or len(value) > 3:
        return None
    source, target, reason = value.get("from"), value.get("to"), value.get("reason")
    if not (isinstance(source, str) and isinstance(target, str) and isinstance(reason, str)):
        return None
    if source == target or source not in known or target not in known:
        return None
    if reason not in POLICY.fallback_reasons:
        return None
    return source, target, reason


def choose(offered: Sequence[str] | None, enabled: Sequence[TransportName]) -> list[TransportName]:
    """The transports both sides allow: the client's order, or the server's when it gave none.

    Unknown names in ``offered`` are ignored (a newer client may know more transports).

    Raises:
        ProtocolError: ``no_transport`` when nothing is left.
    """
    if offered is None:
        chosen = list(enabled)
    else:
        chosen = []
        for name in offered:
            if name in enabled and name not in chosen:
                chosen.append(name)
    if not chosen:
        raise ProtocolError("no_transport", "no transport in common")
    return chosen


def negotiate_response(
    *,
    public_id: str,
    token: str,
    ticket: str,
    transports: Sequence[TransportName],
    urls: Mapping[str, str],
    heartbeat: float,
    poll_window: float,
    retry: float,
    ticket_ttl: float,
    limits: Limits,
    max_subscriptions: int,
    history_size: int,
    history_ttl: float,
) -> dict[str, Any]:
    """The JSON object of a successful negotiate (times in seconds in, milliseconds out).

    ``urls`` maps each transport the server knows (and ``send``, the upstream) to its path.
    """
    return {
        "v": PROTOCOL_VERSION,
        "id": public_id,
        "token": token,
        "ticket": ticket,
        "transports": list(transports),
        "urls": dict(urls),
        "heartbeat": int(heartbeat * 1000),
        "pollWindow": int(poll_window * 1000),
        "retry": int(retry * 1000),
        "ticketTtl": int(ticket_ttl * 1000),
        "limits": {
            "message": limits.max_message_size,
            "body": limits.max_body_size,
            "batch": limits.max_batch,
            "subscriptions": max_subscriptions,
            "topic": limits.max_topic_length,
            "depth": limits.max_depth,
        },
        "history": {"size": history_size, "ttl": int(history_ttl * 1000)},
    }
