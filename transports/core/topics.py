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

__all__ = [
    "PresenceRule",
    "TopicRule",
    "match_rule",
    "parse_presence",
    "parse_topics",
    "presence_rules",
    "retention_of",
]

_PATTERN = re.compile(r"[A-Za-z0-9_\-.:/@=+*]{1,200}")


@dataclass(frozen=True, slots=True)
class PresenceRule:
    """Presence for the topics matching ``pattern`` (docs/presence.md)."""

    pattern: str
    events: bool = True
    """Send join and leave events to subscribers that follow the topic's presence; a large
    topic may turn them off and keep the exact count and the listing."""
    enabled: bool = True
    """False: the matching topics have no presence (a ``topics`` entry with ``"presence":
    false`` shadowing a broader pattern)."""

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


def _check_pattern(pattern: Any, setting: str = "presence") -> str:
    if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
        raise ValueError(
            f"{setting}: {pattern!r} is not a topic pattern (a topic name of 1-200 characters "
            "A-Z a-z 0-9 _ - . : / @ = + in which * stands for any run of characters)"
        )
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


@dataclass(frozen=True, slots=True)
class TopicRule:
    """Settings for the topics matching ``pattern`` (the ``topics`` setting); ``None`` keeps the
    general setting."""

    pattern: str
    history_size: int | None = None
    """Publications kept for resuming clients (``history_size`` for these topics)."""
    history_ttl: float | None = None
    """Seconds a publication is kept (``history_ttl`` for these topics)."""
    presence: PresenceRule | None = None
    """Presence for these topics (ahead of the ``presence`` setting's patterns)."""
    no_presence: bool = False
    """``"presence": false``: these topics have no presence, whatever ``presence`` says."""

    def matches(self, topic: str) -> bool:
        """True when ``topic`` matches the pattern."""
        return _compile(self.pattern).fullmatch(topic) is not None


_TOPIC_OPTIONS = ("history_size", "history_ttl", "presence")


def parse_topics(value: Any) -> tuple[TopicRule, ...]:
    """The ``topics`` setting as rules: a mapping of pattern to options
    ``{"history_size": int >= 0, "history_ttl": seconds > 0, "presence": bool or {"events":
    bool}}``, in order (first match wins), or rules already built; a JSON object in a string.

    Raises:
        ValueError: a bad pattern, an unknown option, or a value out of range; the message
            names the pattern and the option.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            raise ValueError(
                "topics: not valid JSON (a JSON object of pattern to options)"
            ) from None
    if value is None:
        return ()
    if isinstance(value, Sequence) and all(isinstance(rule, TopicRule) for rule in value):
        return tuple(value)
    if not isinstance(value, Mapping):
        raise ValueError("topics must be a mapping of topic pattern to options")
    rules = []
    for pattern, options in value.items():
        _check_pattern(pattern, "topics")
        if not isinstance(options, Mapping):
            raise ValueError(f"topics: the options of {pattern!r} must be an object")
        unknown = set(options) - set(_TOPIC_OPTIONS)
        if unknown:
            raise ValueError(
                f"topics: unknown option(s) {', '.join(sorted(map(str, unknown)))} for "
                f"{pattern!r} (known: {', '.join(_TOPIC_OPTIONS)})"
            )
        size = options.get("history_size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise ValueError(f"topics: history_size of {pattern!r} must be a whole number >= 0")
        ttl = options.get("history_ttl")
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < 1e9
        ):
            raise ValueError(f"topics: history_ttl of {pattern!r} must be seconds > 0")
        presence = options.get("presence")
        rule: PresenceRule | None = None
        if presence is True:
            rule = PresenceRule(pattern)
        elif isinstance(presence, Mapping):
            rule = parse_presence({pattern: presence})[0]
        elif presence not in (None, False):
            raise ValueError(
                f'topics: presence of {pattern!r} must be true, false or {{"events": bool}}'
            )
        rules.append(
            TopicRule(
                pattern,
                size,
                None if ttl is None else float(ttl),
                rule,
                presence is False,
            )
        )
    return tuple(rules)


def retention_of(rules: Sequence[TopicRule], topic: str) -> tuple[int | None, float | None]:
    """``topic``'s history size and lifetime from the first rule that sets each."""
    size: int | None = None
    ttl: float | None = None
    for rule in rules:
        if rule.matches(topic):
            if size is None:
                size = rule.history_size
            if ttl is None:
                ttl = rule.history_ttl
            if size is not None and ttl is not None:
                break
    return size, ttl


def presence_rules(
    topics: Sequence[TopicRule], presence: Sequence[PresenceRule]
) -> tuple[PresenceRule, ...]:
    """The presence rules in force: those of ``topics`` first (``"presence": false`` shadows
    later patterns), then the ``presence`` setting's."""
    rules: list[PresenceRule] = []
    for rule in topics:
        if rule.presence is not None:
            rules.append(rule.presence)
        elif rule.no_presence:
            rules.append(PresenceRule(rule.pattern, enabled=False))
    return (*rules, *presence)
