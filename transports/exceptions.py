"""Every error the library raises, in one tree: see :mod:`transports.protocol.errors`.

This public module re-exports them; the library's own modules import the pure definitions.
"""

from __future__ import annotations

from .protocol.errors import *  # noqa: F403
from .protocol.errors import __all__ as __all__, channel_closed as channel_closed
