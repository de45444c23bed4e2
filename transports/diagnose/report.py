"""The report: findings with the catalogue's words, as one JSON object or a readable table.
Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .catalogue import Entry, catalogue
from .observations import Observation
from .verdict import Finding, best, judge

__all__ = ["build", "render_json", "render_text"]


def build(
    url: str,
    order: Sequence[str],
    observations: Mapping[str, Observation],
    entries: Mapping[str, Entry] | None = None,
) -> dict[str, Any]:
    """The report object (the ``--json`` output): ``{"url", "best", "transports": {...}}``."""
    entries = entries if entries is not None else catalogue()
    findings: dict[str, Finding] = {name: judge(obs) for name, obs in observations.items()}
    transports: dict[str, Any] = {}
    for name, finding in findings.items():
        entry = entries[finding.verdict]
        first = finding.first_message_ms
        transports[name] = {
            "ok": finding.ok,
            "first_message_ms": None if first is None else round(first, 1),
            "verdict": finding.verdict,
            "title": entry.title,
            "observed": finding.observed,
            "cause": entry.cause,
            "fix": entry.fix,
        }
    return {"url": url, "best": best(findings, order), "transports": transports}


def render_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2)


def render_text(report: Mapping[str, Any]) -> str:
    """A table of the transports, then what was observed and, for each failure, its cause
    and fix."""
    rows = [("transport", "works", "first message", "verdict")]
    for name, item in report["transports"].items():
        first = item["first_message_ms"]
        rows.append(
            (
                name,
                "yes" if item["ok"] else "no",
                "-" if first is None else f"{first:.0f} ms",
                f"{item['verdict']}: {item['title']}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"transports diagnose {report['url']}", ""]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        lines.append("  ".join([*cells, row[3]]))
    lines.append("")
    lines.append(f"best: {report['best'] or 'none works'}")
    for name, item in report["transports"].items():
        lines.append("")
        lines.append(f"{name}: {item['title']}")
        lines.extend(f"  - {line}" for line in item["observed"])
        if not item["ok"]:
            lines.append(f"  cause: {item['cause']}")
            lines.append(f"  fix: {item['fix']}")
    return "\n".join(lines)
