"""The uplink of the HTTP transports: client frames by ``POST /send`` (protocol §6.2).

SSE and long-poll share it. One request is in flight at a time; frames wait in an outbox and
leave in batches of at most ``limits.batch`` frames and ``limits.body`` bytes, the browser
client's rule. Each POST asks for its replies in the answer (``Accept: application/json``): a
message costs one request, not a POST and a poll. What a failed POST leads to is the policy's
``requests.send``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from ..protocol.codes import CloseCode
from ..protocol.errors import ProtocolError
from ..protocol.frames import ClientFrame, Close, encode_client_frame
from ..protocol.longpoll import decode_send_answer, encode_batch
from ..protocol.policy import POLICY
from .connection import Attempts, Connection, Link, retry_after, wire_size

__all__ = ["HTTPConnection", "text_frame"]

_LEAVE_TIMEOUT = 2.0
log = logging.getLogger(__name__)


def text_frame(frame: ClientFrame) -> str:
    """A client frame as JSON text (what HTTP transports carry)."""
    encoded = encode_client_frame(frame)
    return encoded if isinstance(encoded, str) else encoded.decode("utf-8")


class HTTPConnection(Connection):
    """A transport whose uplink is ``POST /send`` (SSE, long-poll)."""

    def __init__(self, link: Link, info: dict[str, Any]) -> None:
        super().__init__(link, info)
        self._outbox: deque[tuple[str, int]] = deque()
        """Encoded frames waiting for a POST, with their size in bytes."""
        self._wake = asyncio.Event()
        self._cap = self.batch
        """Frames per POST now: halved after a 413 (or a repeated 429), grows back after."""

    @property
    def max_frame(self) -> int:
        # A frame travels alone at worst: ``[frame]`` must fit in the body limit too.
        return min(self.max_message, self.max_body - 2)

    def session_headers(self, content: bool = False) -> dict[str, str]:
        """The headers of a request on this session (``content``: with a JSON body)."""
        headers = {"X-Realtime-Session": self.token}
        if content:
            headers["Content-Type"] = "application/json"
            headers["Accept"] = "application/json"
        return headers

    def start_upstream(self) -> None:
        self.tasks.append(asyncio.create_task(self._post_loop()))

    async def send(self, frames: list[str | bytes]) -> None:
        for frame in frames:
            text = frame if isinstance(frame, str) else frame.decode("utf-8")
            self._outbox.append((text, wire_size(text)))
        self._wake.set()

    async def leave(self) -> None:
        body = encode_batch([text_frame(Close(CloseCode.NORMAL, ""))])
        with contextlib.suppress(Exception):
            await self.connector.request(
                "POST",
                self.url("send"),
                headers=self.session_headers(content=True),
                body=body,
                timeout=_LEAVE_TIMEOUT,
            )

    def _take_batch(self) -> list[tuple[str, int]]:
        """The next batch off the outbox: at least one frame, then as many as fit."""
        batch: list[tuple[str, int]] = []
        size = 2  # the brackets
        while self._outbox and len(batch) < self._cap:
            text, length = self._outbox[0]
            extra = length + (1 if batch else 0)  # the comma
            if batch and size + extra > self.max_body:
                break
            self._outbox.popleft()
            batch.append((text, length))
            size += extra
        return batch

    def _put_back(self, batch: list[tuple[str, int]]) -> None:
        """Return ``batch`` to the front of the outbox, in order."""
        self._outbox.extendleft(reversed(batch))

    def _split(self, batch: list[tuple[str, int]]) -> None:
        """413: the body (or too many frames) over the server's limit. Smaller batches; a
        single frame the server refuses is dropped and its message fails, instead of the same
        frames being sent again after every reconnect."""
        if len(batch) > 1:
            self._put_back(batch)
            self._cap = max(1, len(batch) // 2)
            return
        text, size = batch[0]
        self.link.refuse(text, size, self.max_frame)

    def _replies(self, status: int, body: bytes) -> None:
        """Hand on the replies a ``200`` answer carries (§6.2; a ``204`` from a server that
        does not answer with replies carries none: they come downstream)."""
        if status != 200 or not body:
            return
        try:
            frames = decode_send_answer(body)
        except ProtocolError as exc:
            # Not the connection's fault to end over: unanswered sends are sent again with
            # their refs after a reconnect, and the reply memory answers them.
            log.warning("ignored a POST /send answer that is not a list of frames: %s", exc)
            return
        for frame in frames:
            self.received(frame)

    async def _post_loop(self) -> None:
        attempts = self.attempts("send")
        try:
            while True:
                while not self._outbox:
                    self._wake.clear()
                    await self._wake.wait()
                if not await self._post(self._take_batch(), attempts):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.end(CloseCode.ABNORMAL, f"POST /send failed: {exc}")

    async def _post(self, batch: list[tuple[str, int]], attempts: Attempts) -> bool:
        """POST one batch and act on the answer; False once the connection has ended."""
        try:
            response = await self.connector.request(
                "POST",
                self.url("send"),
                headers=self.session_headers(content=True),
                body=encode_batch([text for text, _ in batch]),
                timeout=POLICY.requests["send"].timeout,
            )
        except OSError as exc:  # TimeoutError included
            # Lost on the way; the same frames again are safe (refs are deduplicated).
            wait = attempts.failed()
            if wait is None:
                self.end(CloseCode.ABNORMAL, f"POST /send failed: {exc}")
                return False
            self._put_back(batch)
            await self.sleep(wait)
            return True
        attempts.recovered()
        action, wait = attempts.answered(response)
        if action == "ok":
            self._cap = min(self.batch, self._cap * 2)
            self._replies(response.status, response.body)
        elif action == "split":
            self._split(batch)
        elif action == "retry":
            # 408, 409 (another POST finishing), 429 (the session's rate limit: nothing
            # applied, protocol §6.2), 5xx: the same frames again, after Retry-After at least.
            self._put_back(batch)
            if response.status == 429 and attempts.retried > 1 and len(batch) > 1:
                # A batch may cost more than the session's burst: send less at once.
                self._cap = max(1, len(batch) // 2)
            await self.sleep(wait)
        else:
            self.end(action, f"POST /send answered {response.status}", retry_after(response))
            return False
        return True
