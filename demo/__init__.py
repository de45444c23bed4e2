"""The demo app: ``python -m demo`` serves it on http://127.0.0.1:8000."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
