"""Settings that apply to some topics only, chosen by topic pattern. Pure.

A pattern is a topic name in which ``*`` stands for any run of characters (``room:*`` matches
``room:1`` and ``room:a/b``; ``*`` alone matches every topic). Rules are tried in the order they
were given and the first match wins, so a specific pattern goes before a general one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PresenceRule", "match_rule", "parse_presence"]

_PATTERN = re.compile(r"[A-Za-z0-9_\-.:/@=+*]{1,200}")


@dataclass(frozen=True, slots=True)
class PresenceRule:
    """Presence for the topics matching ``pattern`` (docs/presence.md)."""

    pattern: str
    events: bool = True
    """Send join and leave events to subscribers that follow the topic's presence; a large
    topic may turn them off and keep the exact count and the listing."""

    def matches(self, topic: str) -> bool:
        """True when ``topic`` matches the pattern."""
        return _compile(self.pattern).fullmatch(topic) is not None


_COMPILED: dict[str, re.Pattern[str]] = {}


def _compile(pattern: str) -> re.Pattern[str]:
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        compiled = _COMPILED[pattern] = re.compile(
            ".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL
        )
    return compiled


def _check_pattern(pattern: Any) -> str:
    if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
        raise ValueError(
            f"presence: {pattern!r} is not a topic pattern (a topic name of 1-200 characters "
            "A-Z a-z 0-9 _ - . : / @ = + in which * stands for any run of characters)"
        )
    if pattern.startswith("$"):
        raise ValueError(f"presence: {pattern!r} names reserved topics")
    return pattern


def parse_presence(value: Any) -> tuple[PresenceRule, ...]:
    """The ``presence`` setting as rules.

    Accepts a sequence of patterns (``["room:*", "lobby"]``), a mapping of pattern to options
    (``{"room:*": {}, "stadium:*": {"events": false}}``), rules already built, or a string: a
    JSON object or array, or patterns separated by commas (what an environment variable holds).

    Raises:
        ValueError: a bad pattern, an unknown option or a value of the wrong type.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("{", "[")):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError("presence: not valid JSON") from None
        else:
            value = [part.strip() for part in text.split(",") if part.strip()]
    if value is None:
        return ()
    rules: list[PresenceRule] = []
    if isinstance(value, Mapping):
        for pattern, options in value.items():
            if options is None or options is True:
                options = {}
            if not isinstance(options, Mapping):
                raise ValueError(f"presence: the options of {pattern!r} must be an object")
            unknown = set(options) - {"events"}
            if unknown:
                raise ValueError(
                    f"presence: unknown option(s) {', '.join(sorted(map(str, unknown)))} "
                    f"for {pattern!r} (known: events)"
                )
            events = options.get("events", True)
            if not isinstance(events, bool):
                raise ValueError(f"presence: 'events' of {pattern!r} must be true or false")
            rules.append(PresenceRule(_check_pattern(pattern), events))
    elif isinstance(value, Sequence):
        for item in value:
            if isinstance(item, PresenceRule):
                rules.append(PresenceRule(_check_pattern(item.pattern), item.events))
            else:
                rules.append(PresenceRule(_check_pattern(item)))
    else:
        raise ValueError(
            "presence must be a list of topic patterns or a mapping of pattern to options"
        )
    return tuple(rules)


def match_rule(rules: Sequence[PresenceRule], topic: str) -> PresenceRule | None:
    """The first rule whose pattern matches ``topic``, or None."""
    for rule in rules:
        if rule.matches(topic):
            return rule
    return None
