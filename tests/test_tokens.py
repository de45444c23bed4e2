"""Session tokens and connect tickets (docs/protocol.md §3)."""

from __future__ import annotations

import pytest

from transports.exceptions import TicketError
from transports.protocol.tokens import (
    TokenSigner,
    new_public_id,
    new_session_id,
    parse_session_token,
)

KEY = b"k" * 32


def test_session_ids_are_128_bits_and_unique() -> None:
    """Session ids carry 128 random bits (22 base64url characters) and never repeat."""
    ids = {new_session_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 for i in ids)
    assert new_public_id() != new_public_id()


def test_session_token_roundtrip_and_identity_binding() -> None:
    """A token verifies for its identity only; any other identity or key is refused."""
    signer = TokenSigner(KEY)
    sid = new_session_id()
    token = signer.session_token("n1", sid, {"user": 1})
    assert signer.verify_session_token(token, {"user": 1}) == ("n1", sid)
    assert parse_session_token(token) == ("n1", sid)
    with pytest.raises(TicketError):
        signer.verify_session_token(token, {"user": 2})
    with pytest.raises(TicketError):
        TokenSigner(b"o" * 32).verify_session_token(token, {"user": 1})


def test_forged_tokens_refused() -> None:
    """Tampering with any part of a token makes it fail."""
    signer = TokenSigner(KEY)
    sid = new_session_id()
    token = signer.session_token("n1", sid, None)
    parts = token.split(".")
    other_sid = new_session_id()
    for forged in (
        ".".join([parts[0], "n2", parts[2], parts[3]]),
        ".".join([parts[0], parts[1], other_sid, parts[3]]),
        ".".join([parts[0], parts[1], parts[2], "A" * 22]),
        "",
        "v1.n1",
        token + "x" * 300,
        "v2." + token[3:],
    ):
        with pytest.raises(TicketError) as info:
            signer.verify_session_token(forged, None)
        assert info.value.code == "unauthorized"


def test_key_rotation() -> None:
    """A token minted with an old key still verifies while that key is a fallback."""
    old = TokenSigner(b"o" * 32)
    token = old.session_token("n1", new_session_id(), "u")
    rotated = TokenSigner(KEY, fallback_keys=(b"o" * 32,))
    assert rotated.verify_session_token(token, "u")[0] == "n1"


def test_ticket_expiry_and_forgery() -> None:
    """Tickets verify before expiry, fail after, and any tampering is ticket_invalid."""
    signer = TokenSigner(KEY)
    sid = new_session_id()
    ticket = signer.ticket("n1", sid, now=1000.0, ttl=30)
    verified = signer.verify_ticket(ticket, now=1010.0)
    assert (verified.node, verified.sid, verified.expires) == ("n1", sid, 1030)
    with pytest.raises(TicketError) as info:
        signer.verify_ticket(ticket, now=1031.0)
    assert info.value.code == "ticket_expired"
    assert signer.verify_ticket(ticket, now=1031.0, allow_expired=True).sid == sid
    parts = ticket.split(".")
    parts[2] = str(int(parts[2]) + 1000)
    for forged in (".".join(parts), ticket[:-2], "x", None, "a.b.c.d.e"):
        with pytest.raises(TicketError) as info:
            signer.verify_ticket(forged, now=1000.0)
        assert info.value.code == "ticket_invalid"


def test_short_key_refused() -> None:
    """A signing key under 16 bytes is refused outright."""
    with pytest.raises(ValueError):
        TokenSigner(b"short")
