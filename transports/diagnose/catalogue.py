"""The verdict catalogue, ``transports/static/diagnose.json``: one title, cause and fix per
verdict id, shared by this tool and the diagnose page (which fetches it from
``<prefix>/diagnose.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["CATALOGUE", "VERDICTS", "Entry", "catalogue", "load"]

CATALOGUE = Path(__file__).resolve().parent.parent / "static" / "diagnose.json"
"""Where the catalogue is shipped."""

VERDICTS = (
    "ok",
    "upgrade_refused",
    "upgrade_silent",
    "sse_buffered",
    "idle_cut",
    "connect_refused",
    "tls_error",
    "origin_refused",
    "not_offered",
    "unreachable",
    "negotiate_failed",
    "http_error",
    "timeout",
)
"""Every verdict the logic can reach; the catalogue must describe each."""


@dataclass(frozen=True)
class Entry:
    """What one verdict means."""

    title: str
    cause: str
    fix: str


_FIELDS = ("title", "cause", "fix")


def load(path: Path = CATALOGUE) -> dict[str, Entry]:
    """Read and check a catalogue file.

    Raises:
        ValueError: not version 1, a verdict missing, or an entry without its three texts.
    """
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or document.get("version") != 1:
        raise ValueError(f"{path}: not a version 1 verdict catalogue")
    verdicts = document.get("verdicts")
    if not isinstance(verdicts, dict):
        raise ValueError(f"{path}: no verdicts object")
    entries: dict[str, Entry] = {}
    for key, value in verdicts.items():
        texts = [value.get(name) if isinstance(value, dict) else None for name in _FIELDS]
        title, cause, fix = (text if isinstance(text, str) else "" for text in texts)
        if not (title and cause and fix):
            raise ValueError(f"{path}: verdict {key!r} needs a title, a cause and a fix")
        entries[key] = Entry(title, cause, fix)
    missing = [key for key in VERDICTS if key not in entries]
    if missing:
        raise ValueError(f"{path}: verdicts missing: {', '.join(missing)}")
    return entries


@cache
def catalogue() -> dict[str, Entry]:
    """The shipped catalogue (read once)."""
    return load()
