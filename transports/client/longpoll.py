"""Long-polling (protocol §6): ``GET /poll?cursor=N`` down, ``POST /send`` up.

A poll lost on the network is sent again with the same cursor (the server answers the same
frames again, §6.1) within the policy's ``reattach`` budget; what an HTTP answer leads to is the
policy's ``requests.poll``. Every answer, an empty one included, is news from the server.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from ..protocol.codes import CloseCode
from ..protocol.frames import Close, Hello, ServerFrame
from ..protocol.longpoll import decode_poll
from ..protocol.policy import POLICY, liveness_limit
from ..protocol.types import TransportName
from .connection import Attempts, Link, positive, retry_after
from .connector import HTTPResponse
from .upstream import HTTPConnection

__all__ = ["LongPoll"]

log = logging.getLogger("transports.client")


class LongPoll(HTTPConnection):
    name: ClassVar[TransportName] = "longpoll"

    def __init__(self, link: Link, info: dict[str, Any]) -> None:
        super().__init__(link, info)
        self.cursor = 0
        """The sequence number of the last frame processed (protocol §6.1)."""
        self.window = positive(info.get("pollWindow"), POLICY.poll_window * 1000) / 1000
        """How long the server holds a poll (``pollWindow``)."""

    @property
    def silence_limit(self) -> float:
        # A held poll ends empty after the poll window: that is the long-poll heartbeat.
        return liveness_limit(self.heartbeat, self.window)

    async def open(self, deadline: float) -> None:
        response = await self._get(deadline)
        if response.status != 200:
            raise OSError(f"the first poll answered {response.status}")
        frames = self._frames(response)
        if not frames or not isinstance(frames[0], Hello):
            raise OSError("the first poll did not start with HELLO")
        self.heard()
        self.early.extend(frames[1:])
        self.start_upstream()
        self.tasks.append(asyncio.create_task(self._loop()))

    async def _get(self, timeout: float) -> HTTPResponse:
        return await self.connector.request(
            "GET",
            f"{self.url('longpoll')}?cursor={self.cursor}",
            headers=self.session_headers(),
            timeout=timeout,
        )

    def _frames(self, response: HTTPResponse) -> list[ServerFrame]:
        """The frames of a poll answer; moves the cursor on."""
        result = decode_poll(response.body)
        if result.skipped:
            log.debug("ignored %d server frames of unknown types", result.skipped)
        self.cursor = result.cursor
        return list(result.frames)

    async def _loop(self) -> None:
        attempts = self.attempts("poll")
        try:
            while not await self._poll(attempts):
                pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.end(CloseCode.ABNORMAL, f"poll failed: {exc}")

    async def _poll(self, attempts: Attempts) -> bool:
        """One poll and what follows from it; True once the connection has ended."""
        try:
            response = await self._get(self.silence_limit)
        except TimeoutError:
            self.end(CloseCode.ABNORMAL, "server silent")
            return True
        except OSError as exc:
            wait = attempts.failed()
            if wait is None:
                self.end(CloseCode.ABNORMAL, f"poll failed: {exc}")
                return True
            await self.sleep(wait)
            return False
        attempts.recovered()
        action, wait = attempts.answered(response)
        if action == "retry":  # a proxy timeout or overload: ask again, same cursor
            await self.sleep(wait)
            return False
        if action != "ok":
            code = action if isinstance(action, int) else CloseCode.ABNORMAL
            self.end(code, f"poll answered {response.status}", retry_after(response))
            return True
        frames = self._frames(response)
        self.heard()
        for frame in frames:
            self.received(frame)
            if isinstance(frame, Close):
                return True
        return False
