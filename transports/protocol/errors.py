"""Every error the library raises, in one tree.

.. code-block:: text

    TransportsError
     +-- ChannelClosed (code, reason)
     |    +-- ChannelClosedOK        closed with 1000 (normal)
     |    +-- ChannelClosedError     closed with any other code
     +-- Refused (code, message)     a request refused with a documented error code
     |    +-- SessionElsewhere       the session lives in another process (forward it)
     |    +-- ProtocolError          a frame or body breaks docs/protocol.md
     |    |    +-- PayloadTooBig     larger than a configured limit
     |    +-- TicketError            a connect ticket or session token was refused
     +-- NegotiationError            negotiate failed (client side)
     +-- BackplaneError              the backplane could not do what was asked
     +-- Reject (message)            raised by application hooks to refuse politely
     +-- ReplyError (code, message)  the server answered a client message with an error
     +-- InvalidState                a method was called in the wrong state (a bug)
 +-- MissingDependency (extra)   an optional feature's package is not installed
"""

from __future__ import annotations

from .codes import CloseCode, close_code_name

__all__ = [
    "BackplaneError",
    "ChannelClosed",
    "ChannelClosedError",
    "ChannelClosedOK",
    "InvalidState",
    "MissingDependency",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "Refused",
    "Reject",
    "SessionElsewhere",
    "ReplyError",
    "TicketError",
    "TransportsError",
]


class TransportsError(Exception):
    """Base class of every error raised by ``transports``."""


class ChannelClosed(TransportsError):
    """The channel is closed; ``code`` and ``reason`` say how.

    ``str()`` reads well in logs: ``"closed 4008 (slow consumer): outbox overflow"``.
    """

    def __init__(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        text = f"closed {self.code} ({close_code_name(self.code)})"
        return f"{text}: {self.reason}" if self.reason else text


class ChannelClosedOK(ChannelClosed):
    """The channel closed normally (code 1000)."""


class ChannelClosedError(ChannelClosed):
    """The channel closed with a code other than 1000."""


def channel_closed(code: int, reason: str = "") -> ChannelClosed:
    """Build the right :class:`ChannelClosed` subclass for ``code``."""
    if code == CloseCode.NORMAL:
        return ChannelClosedOK(code, reason)
    return ChannelClosedError(code, reason)


class Refused(TransportsError):
    """A request the server refuses with a documented error code.

    ``code`` is an error code of docs/protocol.md §10.2 (``unknown_session``, ``conflict``...);
    :data:`transports.protocol.codes.ERROR_STATUS` gives its HTTP status. The message is fixed
    text: it never echoes the offending input. ``retry_after`` (seconds) says when the client
    may try again (the ``Retry-After`` header); ``close_connection`` asks the server to close the
    HTTP connection after answering (a request whose framing cannot be trusted).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        close_connection: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.close_connection = close_connection

    @classmethod
    def retry_later(cls, code: str, message: str, wait: float) -> Refused:
        """A refusal the client may retry after ``wait`` seconds (rounded up, at least 1)."""
        return cls(code, message, retry_after=max(1, int(wait + 0.999)))


class SessionElsewhere(Refused):
    """The session lives in another process (``node``); the request must be forwarded there.

    Its code is ``unknown_session``, so where forwarding is not possible it reads as a 404.
    """

    def __init__(self, node: str) -> None:
        super().__init__("unknown_session", "the session lives in another process")
        self.node = node


class ProtocolError(Refused):
    """Input that breaks the wire protocol (``bad_json``, ``bad_frame``...)."""


class PayloadTooBig(ProtocolError):
    """A frame, body or batch is larger than the configured limit."""

    def __init__(self, message: str, code: str = "payload_too_large") -> None:
        super().__init__(code, message)


class NegotiationError(TransportsError):
    """The client could not negotiate or open any transport."""


class TicketError(Refused):
    """A connect ticket or session token was refused.

    ``code`` is one of ``unauthorized``, ``ticket_invalid``, ``ticket_expired``, ``ticket_used``.
    """


class BackplaneError(TransportsError):
    """The backplane is unreachable or refused an operation."""


class Reject(TransportsError):
    """Raise from an application hook to refuse a request with a message the client sees.

    From ``on_connect`` it becomes ``401 unauthorized``; from an event handler it becomes a
    ``bad_data`` error reply; from an authoriser, a ``forbidden`` error reply.
    """

    def __init__(self, message: str = "rejected") -> None:
        super().__init__(message)
        self.message = message


class ReplyError(TransportsError):
    """The server answered a client message with an error status (client side)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class InvalidState(TransportsError, AssertionError):
    """A method was called in a state that does not allow it; this is a bug in the caller."""


class MissingDependency(TransportsError, ImportError):
    """An optional feature needs a package that is not installed; the message names the extra.

    Example: ``redis://`` without redis-py says ``pip install 'transports[redis]'``.
    """

    def __init__(self, feature: str, extra: str, package: str) -> None:
        super().__init__(
            f"{feature} needs the {package!r} package, which is not installed: "
            f"pip install 'transports[{extra}]'"
        )
        self.feature = feature
        self.extra = extra
        self.package = package
