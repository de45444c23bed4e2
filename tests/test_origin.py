"""Origin parsing and matching: exact scheme, host and port (docs/protocol.md §3)."""

from __future__ import annotations

import pytest

from transports.protocol.origin import normalize_origin, origin_allowed

OWN = "http://app.example.com"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://App.Example.com", "http://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("ws://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("null", None),
        ("file://", None),
        ("http://app.example.com/path", None),
        ("http://user@app.example.com", None),
        ("http://app.example.com:99999", None),
        ("ftp://app.example.com", None),
        ("", None),
    ],
)
def test_normalize_origin(value: str, expected: str | None) -> None:
    """Origins normalise to scheme://host[:port]; anything odd is invalid."""
    assert normalize_origin(value) == expected


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        "http://app.example.com.evil.com",
        "http://evilapp.example.com",
        "https://app.example.com",
        "http://app.example.com:8080",
    ],
)
def test_foreign_origins_refused(origin: str) -> None:
    """Look-alike, other-scheme and other-port origins are refused by default."""
    assert not origin_allowed(origin, OWN, ())


def test_same_origin_and_allow_list() -> None:
    """Same origin passes; the allow-list admits exact entries; '*' admits all; no header passes."""
    assert origin_allowed("http://app.example.com", OWN, ())
    assert origin_allowed(None, OWN, ())
    assert origin_allowed("https://other.example", OWN, ("https://other.example",))
    assert not origin_allowed("https://other.example:444", OWN, ("https://other.example",))
    assert origin_allowed("https://anything.example", OWN, ("*",))
