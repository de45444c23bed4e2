"""Documented type aliases shared by every layer: see :mod:`transports.protocol.types`.

This public module re-exports them; the library's own modules import the pure definitions.
"""

from __future__ import annotations

from .protocol.types import *  # noqa: F403
from .protocol.types import __all__ as __all__
