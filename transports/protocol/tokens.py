"""Session tokens and connect tickets (docs/protocol.md §3). Pure: the clock is an argument.

* A **session token** is ``v1.<node>.<sid>.<mac>``: ``sid`` is 128 random bits, ``node`` names the
  process that holds the session, and ``mac`` (HMAC-SHA256, 128 bits) covers the node, the sid and
  a fingerprint of the identity ``on_connect`` returned. Any process can read where the session
  lives without a lookup; the process that holds it verifies the MAC against the session's
  identity, in constant time.
* A **connect ticket** is ``<node>.<sid>.<expiry>.<nonce>.<mac>``: it names the session, expires
  after a few seconds, and is spent on first use (the caller records the nonce). It is what goes
  in a WebSocket or EventSource URL instead of the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Final

from .errors import TicketError
from .types import Identity

__all__ = [
    "Ticket",
    "TokenSigner",
    "identity_fingerprint",
    "new_public_id",
    "new_session_id",
    "parse_session_token",
]

_B64 = re.compile(r"[A-Za-z0-9_-]+")
_NODE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_TOKEN_VERSION: Final = "v1"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def new_session_id() -> str:
    """128 bits from the operating system's CSPRNG, base64url (22 characters)."""
    return secrets.token_urlsafe(16)


def new_public_id() -> str:
    """A public connection id (96 random bits); it authorises nothing."""
    return secrets.token_urlsafe(12)


def identity_fingerprint(identity: Identity) -> str:
    """A stable digest of an identity (canonical JSON, SHA-256), for binding tokens to it."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def parse_session_token(token: str | None) -> tuple[str, str]:
    """Split a session token into ``(node, sid)`` without verifying it.

    Raises:
        TicketError: ``unauthorized`` when the token is missing or malformed.
    """
    if not token or len(token) > 200:
        raise TicketError("unauthorized", "missing or malformed session token")
    parts = token.split(".")
    if (
        len(parts) != 4
        or parts[0] != _TOKEN_VERSION
        or not _NODE.fullmatch(parts[1])
        or len(parts[2]) != 22
        or not _B64.fullmatch(parts[2])
        or not _B64.fullmatch(parts[3])
    ):
        raise TicketError("unauthorized", "missing or malformed session token")
    return parts[1], parts[2]


@dataclass(frozen=True, slots=True)
class Ticket:
    """A verified connect ticket."""

    node: str
    sid: str
    nonce: str
    expires: int


class TokenSigner:
    """Mints and verifies tokens and tickets with one secret key (and older keys for rotation).

    Args:
        key: the signing key (at least 16 bytes).
        fallback_keys: older keys still accepted when verifying, so a key can be rotated
            without refusing sessions minted just before.
    """

    def __init__(self, key: bytes, fallback_keys: tuple[bytes, ...] = ()) -> None:
        if len(key) < 16:
            raise ValueError("the signing key must be at least 16 bytes")
        self._keys = (key, *fallback_keys)

    def _mac(self, message: str, key: bytes | None = None) -> str:
        digest = hmac.new(key or self._keys[0], message.encode("utf-8"), hashlib.sha256).digest()
        return _b64(digest[:16])

    def _verify(self, message: str, mac: str) -> bool:
        # Check every key so the time taken does not depend on which one matched.
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(self._mac(message, key), mac)
        return ok

    def public_id(self, identity: Identity, client_key: str) -> str:
        """The public connection id of client ``client_key`` of ``identity``: the same for
        every session of that client (across reconnects, on any process sharing the key), and
        telling nothing about either without the key (docs/protocol.md §3)."""
        message = "pid." + identity_fingerprint(identity) + "." + client_key
        digest = hmac.new(self._keys[0], message.encode("utf-8"), hashlib.sha256).digest()
        return _b64(digest[:12])

    def session_token(self, node: str, sid: str, identity: Identity) -> str:
        """Mint the secret session token for session ``sid`` held by ``node``."""
        fingerprint = identity_fingerprint(identity)
        mac = self._mac(f"session|{_TOKEN_VERSION}|{node}|{sid}|{fingerprint}")
        return f"{_TOKEN_VERSION}.{node}.{sid}.{mac}"

    def verify_session_token(self, token: str, identity: Identity) -> tuple[str, str]:
        """Verify ``token`` against the session's ``identity``; return ``(node, sid)``.

        Raises:
            TicketError: ``unauthorized`` when malformed, forged or minted for another identity.
        """
        node, sid = parse_session_token(token)
        fingerprint = identity_fingerprint(identity)
        message = f"session|{_TOKEN_VERSION}|{node}|{sid}|{fingerprint}"
        if not self._verify(message, token.rsplit(".", 1)[1]):
            raise TicketError("unauthorized", "session token refused")
        return node, sid

    def ticket(self, node: str, sid: str, now: float, ttl: float) -> str:
        """Mint a connect ticket for session ``sid`` valid for ``ttl`` seconds from ``now``."""
        expires = int(now + ttl)
        nonce = secrets.token_urlsafe(12)
        mac = self._mac(f"ticket|{node}|{sid}|{expires}|{nonce}")
        return f"{node}.{sid}.{expires}.{nonce}.{mac}"

    def verify_ticket(
        self, ticket: str | None, now: float, *, allow_expired: bool = False
    ) -> Ticket:
        """Verify a ticket's signature and expiry (the caller checks single use by its nonce).

        Raises:
            TicketError: ``ticket_invalid`` (malformed or forged) or ``ticket_expired``.
        """
        if not ticket or len(ticket) > 200:
            raise TicketError("ticket_invalid", "missing or malformed ticket")
        parts = ticket.split(".")
        if (
            len(parts) != 5
            or not _NODE.fullmatch(parts[0])
            or len(parts[1]) != 22
            or not _B64.fullmatch(parts[1])
            or not parts[2].isascii()
            or not parts[2].isdigit()
            or len(parts[2]) > 12
            or not _B64.fullmatch(parts[3])
            or not _B64.fullmatch(parts[4])
        ):
            raise TicketError("ticket_invalid", "missing or malformed ticket")
        node, sid, expires_text, nonce, mac = parts
        if not self._verify(f"ticket|{node}|{sid}|{expires_text}|{nonce}", mac):
            raise TicketError("ticket_invalid", "ticket refused")
        expires = int(expires_text)
        if not allow_expired and now > expires:
            raise TicketError("ticket_expired", "ticket expired")
        return Ticket(node, sid, nonce, expires)
