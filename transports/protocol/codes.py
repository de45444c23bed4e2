"""Close codes, HTTP error codes and the reconnect/terminal contract (docs/protocol.md §10)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode", "ERROR_STATUS", "close_code_name", "is_reconnect_code"]


class CloseCode(IntEnum):
    """Codes used as WebSocket close codes and in CLOSE frames on SSE and long-poll."""

    NORMAL = 1000
    GOING_AWAY = 1001
    ABNORMAL = 1006
    TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    HEARTBEAT_TIMEOUT = 4000
    SESSION_EXPIRED = 4004
    SLOW_CONSUMER = 4008
    RESYNC = 4010
    RATE_LIMITED = 4029
    BAD_REQUEST = 4500
    UNAUTHORIZED = 4501
    FORBIDDEN = 4503
    TOO_MANY_CONNECTIONS = 4504
    REPLACED = 4509


_NAMES = {
    CloseCode.NORMAL: "normal",
    CloseCode.GOING_AWAY: "going away",
    CloseCode.ABNORMAL: "abnormal closure",
    CloseCode.TOO_BIG: "message too big",
    CloseCode.INTERNAL_ERROR: "internal error",
    CloseCode.SERVICE_RESTART: "service restart",
    CloseCode.TRY_AGAIN_LATER: "try again later",
    CloseCode.HEARTBEAT_TIMEOUT: "heartbeat timeout",
    CloseCode.SESSION_EXPIRED: "session expired",
    CloseCode.SLOW_CONSUMER: "slow consumer",
    CloseCode.RESYNC: "resync",
    CloseCode.RATE_LIMITED: "rate limited",
    CloseCode.BAD_REQUEST: "bad request",
    CloseCode.UNAUTHORIZED: "unauthorized",
    CloseCode.FORBIDDEN: "forbidden",
    CloseCode.TOO_MANY_CONNECTIONS: "too many connections",
    CloseCode.REPLACED: "replaced",
}


def close_code_name(code: int) -> str:
    """A short human name for ``code`` (``"unknown"`` for codes outside the table)."""
    try:
        return _NAMES[CloseCode(code)]
    except ValueError:
        return "unknown"


def is_reconnect_code(code: int) -> bool:
    """True when a client should reconnect after a close with ``code``.

    1001, 1005, 1006, 1011-1015 and the range 4000-4499 reconnect; every other code is terminal.
    """
    return code in (1001, 1005, 1006, 1011, 1012, 1013, 1014, 1015) or 4000 <= code <= 4499


ERROR_STATUS: dict[str, int] = {
    "bad_request": 400,
    "bad_json": 400,
    "bad_frame": 400,
    "unsupported_version": 400,
    "no_transport": 400,
    "wrong_transport": 400,
    "unauthorized": 401,
    "ticket_invalid": 401,
    "ticket_expired": 401,
    "ticket_used": 401,
    "forbidden_origin": 403,
    "unknown_session": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "conflict": 409,
    "payload_too_large": 413,
    "too_many_frames": 413,
    "unsupported_media_type": 415,
    "upgrade_required": 426,
    "rate_limited": 429,
    "too_many_connections": 429,
    "internal_error": 500,
    "unavailable": 503,
}
"""HTTP status of every error code (docs/protocol.md §10.2)."""
