"""All tunables in one place, with their ``TRANSPORTS_*`` config keys: see
:mod:`transports.core.settings`. This public module re-exports :class:`Settings`."""

from __future__ import annotations

from .core.settings import Settings

__all__ = ["Settings"]
