"""Fast start (issue 18): from navigation to open, and to the final transport, per setup.

    .venv/bin/python -m tests.browser.measure_fast [--runs 5] [--strategies a,b] [--out DIR]
    .venv/bin/python -m tests.browser.measure_fast --from-json DIR/fast-start.json --out DIR

``--out bench/results`` writes ``fast-start.json`` (every visit) and ``fast-start.md`` (the
tables docs/choosing-a-transport.md includes); ``--from-json`` renders them again from the JSON.

Starts the app (tests/browser/serve_app.py), one nginx per profile and the silent-WebSocket
proxy (tests/proxies.py: it accepts the upgrade, then drops every byte) in front of it, and
Debian's Chromium. For every setup and connect strategy (``STRATEGIES``: the options given to
``connect()``), each run takes a fresh browser context and loads the test page twice:

* ``first``: the first visit (nothing remembered);
* ``new tab``: a second page of the same context once the first reached its final transport and
  was closed (what the first page stored in localStorage is there; sessionStorage is not).

The page connects as its module runs (``/page?start=<options>``) and records, with
``performance.now()`` (ms since the navigation started), when the client opened and when each
``"transport"`` event came. ``open`` is navigation to state "open"; ``final`` is navigation to the
switch to the transport the setup must end on (``FINAL``), equal to ``open`` when it opened there.
The figures depend on how loaded the machine is: compare medians of several runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.proxies import SilentUpgradeProxy, in_thread

from .harness import PROFILES, app_server, launch_browser, nginx_proxy

SETUPS = ("direct", "a-no-upgrade", "b-buffering", "c-correct", "silent-ws")
FINAL = {
    "direct": "websocket",
    "a-no-upgrade": "sse",
    "b-buffering": "longpoll",
    "c-correct": "websocket",
    "silent-ws": "sse",
}
"""The best transport each setup lets through: where the client must end."""

STRATEGIES: dict[str, dict[str, Any]] = {
    # The client before the fast start: ordered, full deadlines, memory per tab for 10 minutes.
    "before": {"fastStart": False, "storage": "session", "rememberMs": 600_000},
    # Only the memory shared by the tabs (localStorage, 24 h), ordered start.
    "memory": {"fastStart": False},
    # The defaults: memory shared by the tabs and the fast start on long-poll, probe at once.
    "fast": {},
    # The fast start with the first probe 1 s after opening.
    "fast-probe-1s": {"fastStart": {"probeAfterMs": 1000}},
}
VISITS = ("first", "new tab")


@dataclass
class Visit:
    setup: str
    strategy: str
    visit: str
    start_ms: float
    """navigation to connect(): the page and its modules loading"""
    open_ms: float | None
    final_ms: float | None
    transports: list[str]


def page_url(base: str, options: dict[str, Any]) -> str:
    return f"{base}/page?start={quote(json.dumps(options))}"


def load(
    context: BrowserContext,
    base: str,
    options: dict[str, Any],
    final: str,
    timeout_ms: float = 30_000,
) -> tuple[Page, dict[str, Any]]:
    """A new page of ``context`` that connects at once; returned once on ``final``."""
    page = context.new_page()
    page.goto(page_url(base, options), timeout=timeout_ms)
    page.wait_for_function(
        "(t) => window.client && window.client.transport === t", arg=final, timeout=timeout_ms
    )
    rec: dict[str, Any] = page.evaluate("() => ({...window.rec, info: harness.info()})")
    return page, rec


def final_at(rec: dict[str, Any], final: str) -> float | None:
    """ms from navigation to the (last) switch to ``final``."""
    times = [at for name, at in rec["transportsNav"] if name == final]
    return float(times[-1]) if times else None


def measure_pair(browser: Browser, setup: str, base: str, strategy: str) -> list[Visit]:
    """One first visit and one new tab in a fresh context."""
    options = STRATEGIES[strategy]
    final = FINAL[setup]
    context = browser.new_context()
    visits = []
    try:
        for visit in VISITS:
            page, rec = load(context, base, options, final)
            visits.append(
                Visit(
                    setup,
                    strategy,
                    visit,
                    round(rec["t0"]),
                    rec["openNav"],
                    final_at(rec, final),
                    rec["transports"],
                )
            )
            page.evaluate("() => window.client.close()")
            page.close()
    finally:
        context.close()
    return visits


def measure_all(
    browser: Browser, bases: dict[str, str], strategies: list[str], runs: int
) -> list[Visit]:
    """``runs`` pairs per setup and strategy, interleaved so that drift hits all alike."""
    visits: list[Visit] = []
    for _ in range(runs):
        for strategy in strategies:
            for setup, base in bases.items():
                visits += measure_pair(browser, setup, base, strategy)
    return visits


def median(values: list[float]) -> float | None:
    return round(statistics.median(values)) if values else None


def cell(visits: list[Visit], origin: str) -> str:
    """Median "open / final" (ms) of some visits, from the navigation or from connect()."""

    def since(at: float | None, visit: Visit) -> float | None:
        return None if at is None else at - (visit.start_ms if origin == "connect" else 0)

    opened = median([t for v in visits if (t := since(v.open_ms, v)) is not None])
    final = median([t for v in visits if (t := since(v.final_ms, v)) is not None])
    return f"{opened} / {final}"


def table(visits: list[Visit], strategies: list[str], origin: str = "connect") -> str:
    """Medians per setup, one column per strategy and visit: "open / final" in ms from
    ``origin`` ("connect": connect(), "navigation": the page's navigation)."""
    head = (
        "| setup (final transport) | "
        + " | ".join(f"{s}: {v}" for s in strategies for v in VISITS)
        + " |"
    )
    lines = [head, "|---|" + "---:|" * (len(strategies) * len(VISITS))]
    for setup in dict.fromkeys(v.setup for v in visits):
        cells = [
            cell(
                [v for v in visits if (v.setup, v.strategy, v.visit) == (setup, strategy, visit)],
                origin,
            )
            for strategy in strategies
            for visit in VISITS
        ]
        lines.append(f"| {setup} ({FINAL[setup]}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(visits: list[Visit], strategies: list[str]) -> str:
    load = median([v.start_ms for v in visits])
    runs = max(
        sum(
            1
            for v in visits
            if (v.setup, v.strategy, v.visit) == (visits[0].setup, visits[0].strategy, "first")
        ),
        1,
    )
    return "\n".join(
        [
            f"median of {runs} runs; ms open / on the final transport, from connect():",
            table(visits, strategies, "connect"),
            "",
            "from the navigation (the page and its modules loading included):",
            table(visits, strategies, "navigation"),
            "",
            f"navigation -> connect(), median of every visit: {load} ms",
        ]
    )


BEFORE_AFTER = {"before": "before", "fast": "after"}
"""The strategies the comparison page sets side by side, and their names there."""


def section(name: str, body: str) -> str:
    return f"<!-- --8<-- [start:{name}] -->\n{body.strip()}\n<!-- --8<-- [end:{name}] -->\n"


def render(visits: list[Visit]) -> str:
    """bench/results/fast-start.md: the sections docs/choosing-a-transport.md includes."""
    runs = sum(
        1
        for v in visits
        if (v.setup, v.strategy, v.visit) == (visits[0].setup, visits[0].strategy, "first")
    )
    strategies = list(dict.fromkeys(v.strategy for v in visits))
    pairs = [s for s in BEFORE_AFTER if s in strategies]
    head = (
        "| setup (final transport) | "
        + " | ".join(
            f"{BEFORE_AFTER[s]}: {'first visit' if v == 'first' else v}"
            for s in pairs
            for v in VISITS
        )
        + " |"
    )

    def rows(origin: str) -> list[str]:
        lines = [head, "|---|" + "---:|" * (len(pairs) * len(VISITS))]
        for setup in SETUPS:
            cells = [
                cell(
                    [v for v in visits if (v.setup, v.strategy, v.visit) == (setup, s, visit)],
                    origin,
                )
                for s in pairs
                for visit in VISITS
            ]
            lines.append(f"| {setup} ({FINAL[setup]}) | " + " | ".join(cells) + " |")
        return lines

    load = median([v.start_ms for v in visits])
    parts = [
        "<!-- Rendered by python -m tests.browser.measure_fast --from-json "
        "bench/results/fast-start.json --out bench/results; do not edit. -->\n",
        section(
            "method", f"Medians of {runs} runs per cell (a fresh browser context each), in ms."
        ),
        section("before-after", "\n".join(rows("connect"))),
        section(
            "navigation",
            "\n".join(rows("navigation"))
            + f"\n\nThe page and its modules took {load} ms (median) from the navigation to "
            "`connect()` on this shared machine; no connect strategy can shorten that part.",
        ),
        section("strategies", table(visits, strategies, "connect")),
    ]
    return "\n".join(parts)


@contextlib.contextmanager
def setups(log_dir: Path) -> Any:
    """The app and every setup's base URL."""
    with contextlib.ExitStack() as stack:
        app = stack.enter_context(app_server(log_dir))
        bases = {"direct": app.url}
        for profile in PROFILES:
            bases[profile] = stack.enter_context(nginx_proxy(profile, app.port)).url
        bases["silent-ws"] = stack.enter_context(in_thread(SilentUpgradeProxy(app.port))).url
        yield app, {setup: bases[setup] for setup in SETUPS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.browser.measure_fast", description=__doc__
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--json", type=Path, help="also write every visit here")
    parser.add_argument("--from-json", type=Path, help="only print the tables of an earlier --json")
    parser.add_argument("--out", type=Path, help="write fast-start.json and fast-start.md here")
    args = parser.parse_args(argv)
    strategies = args.strategies.split(",")
    if args.from_json:
        visits = [Visit(**v) for v in json.loads(args.from_json.read_text())]
        print(report(visits, [s for s in strategies if any(v.strategy == s for v in visits)]))
        if args.out:
            (args.out / "fast-start.md").write_text(render(visits))
        return 0
    with contextlib.ExitStack() as stack:
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="measure-fast-")))
        app, bases = stack.enter_context(setups(log_dir))
        playwright = stack.enter_context(sync_playwright())
        browser = launch_browser(playwright)
        stack.callback(browser.close)
        measure_pair(browser, "direct", app.url, "fast")  # warm-up: compiles client.js etc.
        visits = measure_all(browser, bases, strategies, args.runs)
    print(report(visits, strategies))
    if args.json:
        args.json.write_text(json.dumps([asdict(v) for v in visits], indent=2))
    if args.out:
        (args.out / "fast-start.json").write_text(
            json.dumps([asdict(v) for v in visits], indent=1) + "\n"
        )
        (args.out / "fast-start.md").write_text(render(visits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
