"""Origin checks (docs/protocol.md §3): parse, then compare scheme, host and port exactly. Pure."""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

__all__ = ["normalize_origin", "origin_allowed"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_WS_SCHEMES = {"ws": "http", "wss": "https"}


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port, or None when invalid.

    ``null`` (sandboxed frames, ``file:``) and anything with a path, query, user or fragment is
    invalid. ``ws``/``wss`` count as ``http``/``https``.
    """
    if not value or len(value) > 300 or not value.isascii():
        return None
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = _WS_SCHEMES.get(parts.scheme.lower(), parts.scheme.lower())
    host = (parts.hostname or "").lower()
    if (
        scheme not in _DEFAULT_PORTS
        or not host
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_allowed(origin: str | None, own: str, allowed: Collection[str]) -> bool:
    """Whether a request with ``Origin: origin`` may use a server whose origin is ``own``.

    No ``Origin`` header passes: browsers send one on every cross-origin request and on every
    WebSocket handshake, so its absence means a same-origin GET or a non-browser client.
    ``"*"`` in ``allowed`` admits every origin; otherwise an origin must equal ``own`` or an
    entry of ``allowed`` exactly (no suffix or substring matching).
    """
    if origin is None:
        return True
    if "*" in allowed:
        return True
    normalized = normalize_origin(origin)
    if normalized is None:
        return False
    if normalized == normalize_origin(own):
        return True
    return any(normalized == normalize_origin(entry) for entry in allowed)
