"""An HTTP answer as data, so that a process can answer a request forwarded from another one.

Every JSON error body of the library is built here (:meth:`Answer.refused`); the server's edge
writes answers as they are.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from ..protocol.codes import ERROR_STATUS
from ..protocol.errors import Refused

__all__ = ["JSON_HEADERS", "Answer"]

JSON_HEADERS: dict[str, str] = {"Content-Type": "application/json", "Cache-Control": "no-store"}
"""Headers of every JSON answer."""


@dataclass(frozen=True, slots=True)
class Answer:
    """Status, body and headers of one HTTP answer."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, code: str, message: str, headers: dict[str, str] | None = None) -> Answer:
        """``{"error": code, "message": message}`` with the status of ``code`` (protocol §10.2)."""
        body = json.dumps({"error": code, "message": message}).encode()
        return cls(ERROR_STATUS.get(code, 400), body, {**JSON_HEADERS, **(headers or {})})

    @classmethod
    def refused(cls, exc: Refused) -> Answer:
        """The JSON error answer of ``exc``, with ``Retry-After`` and ``Connection: close``
        when it asks for them."""
        headers: dict[str, str] = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        if exc.close_connection:
            headers["Connection"] = "close"
        return cls.error(exc.code, exc.message, headers)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Answer:
        """A JSON body (compact)."""
        return cls(status, json.dumps(value, separators=(",", ":")).encode(), dict(JSON_HEADERS))

    def to_json(self) -> dict[str, Any]:
        """The answer as JSON, to send back to the process that forwarded its request."""
        return {"s": self.status, "b": base64.b64encode(self.body).decode(), "h": self.headers}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Answer:
        """The answer :meth:`to_json` sent."""
        return cls(int(value["s"]), base64.b64decode(value["b"]), dict(value["h"]))
