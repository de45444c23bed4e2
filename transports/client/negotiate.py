"""``POST /negotiate`` (protocol §3) for the Python client.

What an answer leads to is the policy's ``requests.negotiate``: ``ok``, a status asked again
by the reconnect loop (:class:`RetryLater`, with its ``Retry-After``), or a final refusal
(:class:`NegotiateRefused`, with the close code the client stops with).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..protocol.errors import NegotiationError
from ..protocol.negotiation import PROTOCOL_VERSION
from ..protocol.policy import POLICY, http_action
from .connection import RetryLater, retry_after
from .connector import Connector

__all__ = ["CREDENTIALS_REFUSED", "CredentialsRefused", "NegotiateRefused", "Token", "negotiate"]

CREDENTIALS_REFUSED = "credentials refused"
"""The reason a client stops with (code 4501) when re-authenticating failed."""

Token = str | Callable[[], Any] | None
"""A bearer token, or a function (sync or async) that returns one."""


class NegotiateRefused(NegotiationError):
    """Negotiate answered with a final status (protocol §3): asking again would not help.

    ``close_code`` is the policy's code for ``status``: the client stops with it.
    """

    def __init__(self, status: int, error: str, close_code: int) -> None:
        super().__init__(f"negotiate refused: {status} {error}".strip())
        self.status = status
        self.close_code = close_code


class CredentialsRefused(NegotiationError):
    """Re-authenticating failed (policy ``reauthenticate``): the token function gave no token
    or failed, or the server refused the new one. The client stops with 4501."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"{CREDENTIALS_REFUSED}: {detail}")
        self.close_code = 4501


async def _authorization(token: Token, *, fresh: bool = False) -> dict[str, str]:
    """The Authorization header; with ``fresh`` (re-authenticating), a token function that
    fails or gives nothing raises :class:`CredentialsRefused`."""
    if callable(token):
        try:
            token = token()
            if inspect.isawaitable(token):
                token = await token
        except Exception as exc:
            if not fresh:
                raise
            raise CredentialsRefused(f"the token function failed: {exc!r}") from exc
    if fresh and not token:
        raise CredentialsRefused("the token function gave no token")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _error_code(body: bytes) -> str:
    """The ``error`` of a JSON error body, cut short; empty when there is none."""
    try:
        return str(json.loads(body).get("error", ""))[:64]
    except (ValueError, AttributeError, RecursionError):
        return ""


async def negotiate(
    connector: Connector,
    url: str,
    *,
    token: Token,
    client_key: str,
    transports: Sequence[str],
    fallback: Mapping[str, str] | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Negotiate a session at ``url`` (the mount point); the answer as a dict. ``fallback``
    is the client's last fallback (``from``, ``to``, ``reason``), reported to the server.
    ``fresh``: the client is re-authenticating (policy ``reauthenticate``): the token must be
    new, and a refusal of it is :class:`CredentialsRefused`.

    Raises:
        RetryLater: a status the policy retries (408, 429, 5xx).
        NegotiateRefused: a final status (400, 401, 403, 404...).
        CredentialsRefused: ``fresh``, and no token, or the server refused it (401, 403).
        ValueError: a malformed answer (retried with backoff, like a network failure).
        OSError: a network failure.
    """
    headers = {"Content-Type": "application/json", **await _authorization(token, fresh=fresh)}
    request: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "client": client_key,
        "transports": list(transports),
    }
    if fallback is not None:
        request["fallback"] = dict(fallback)
    body = json.dumps(request)
    response = await connector.request(
        "POST",
        url + "/negotiate",
        headers=headers,
        body=body.encode(),
        timeout=POLICY.requests["negotiate"].timeout,
    )
    action = http_action("negotiate", response.status)
    if action != "ok":
        error = _error_code(response.body)
        if fresh and response.status in (401, 403):
            raise CredentialsRefused(f"the server refused the new token ({response.status})")
        if isinstance(action, int):
            raise NegotiateRefused(response.status, error, action)
        message = f"negotiate answered {response.status} {error}".strip()
        raise RetryLater(message, retry_after(response))
    # A malformed answer (too deep for the parser, or not an object) is a failed attempt
    # (ValueError: retried with backoff), never an exception that kills the client's task.
    try:
        info: Any = json.loads(response.body)
    except RecursionError:
        raise ValueError("negotiate answer is nested too deep") from None
    if not isinstance(info, dict):
        raise ValueError("negotiate answer is not a JSON object")
    return info
