"""Requests that reached the wrong process, forwarded to the one holding their session.

A carrier registers a handler per kind of request (:meth:`Forwarder.serve`); when a request
reaches a process that does not hold its session, the carrier calls :meth:`Forwarder.forward`
with the request as a small JSON object. The owner's handler answers it (with ``hop`` set, so it
is never forwarded twice) and the :class:`~transports.core.answer.Answer` comes back through the
backplane's mailbox. No load balancer needs sticky sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from ..backplanes import Mailbox
from ..protocol.errors import BackplaneError, Refused, TicketError
from ..protocol.tokens import parse_session_token
from .answer import Answer
from .connection import Forwarded
from .context import Context

__all__ = ["Forwarder"]

log = logging.getLogger("transports")


class Forwarder:
    """This process's side of forwarding: sending calls, serving them, matching answers."""

    def __init__(
        self, ctx: Context, *, mailbox: Mailbox, disown: Callable[[str], Awaitable[None]]
    ) -> None:
        self.node = ctx.node
        self.mailbox = mailbox
        self.metrics = ctx.metrics
        self.disown = disown
        self.spawn = ctx.spawn
        self._handlers: dict[str, Forwarded] = {}
        self._calls: dict[str, asyncio.Future[Answer]] = {}

    def serve(self, kind: str, handler: Forwarded) -> None:
        """Answer forwarded calls of ``kind`` with ``handler``."""
        self._handlers[kind] = handler

    async def forward(self, node: str, call: dict[str, Any], timeout: float) -> Answer:
        """Run ``call`` (``{"k": kind, ...}``) in process ``node`` and return its answer.

        When that process does not answer in ``timeout`` seconds it is taken as gone: the
        session named by the call's token (``"t"``) is disowned and the answer is a 404.
        """
        call_id = secrets.token_urlsafe(9)
        call.update(id=call_id, **{"from": self.node})
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        self.metrics.inc("forwarded")
        try:
            if not await self.mailbox.send_to_node(node, json.dumps(call)):
                raise TimeoutError  # nobody listens there: that process is gone
            async with asyncio.timeout(timeout):
                return await future
        except (TimeoutError, BackplaneError):
            # The process holding the session is gone (or unreachable): the session is lost.
            self.metrics.inc("forward_failures")
            with contextlib.suppress(BackplaneError, TicketError):
                _, sid = parse_session_token(call.get("t"))
                await self.disown(sid)
            return Answer.refused(Refused("unknown_session", "unknown or expired session"))
        finally:
            self._calls.pop(call_id, None)

    async def listen(self) -> None:
        """Read this process's mailbox until cancelled: answers and calls."""
        while True:
            try:
                raw = await self.mailbox.receive_from_inbox()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Not a bad message: the mailbox itself fails (e.g. an app started in another
                # event loop). Say so, and do not spin.
                log.exception("reading this process's mailbox failed; trying again in 1 s")
                await asyncio.sleep(1.0)
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                message = None
            if not isinstance(message, dict):
                log.warning("dropped a malformed inbox message")
                continue
            if message.get("k") == "answer":
                future = self._calls.get(str(message.get("id")))
                if future is not None and not future.done():
                    with contextlib.suppress(Exception):
                        future.set_result(Answer.from_json(message))
            else:
                self.spawn(self._answer(message), "transports-forwarded")

    async def _answer(self, call: dict[str, Any]) -> None:
        """Serve a request another process forwarded here, and send the answer back."""
        try:
            handler = self._handlers.get(str(call.get("k")))
            if handler is None:
                return
            answer = await handler(call)
            reply = {"k": "answer", "id": call.get("id"), **answer.to_json()}
            await self.mailbox.send_to_node(str(call.get("from")), json.dumps(reply))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("serving a forwarded request failed")
