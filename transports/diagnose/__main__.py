"""``python -m transports.diagnose``: see :mod:`transports.diagnose.cli`."""

from __future__ import annotations

from .cli import run

if __name__ == "__main__":
    run()
