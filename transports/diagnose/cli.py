"""``python -m transports.diagnose URL [options]``: run every transport through the network
path to a server and say which work, and why the others do not.

Exit status: 0 when at least one transport works, 1 when none does, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from .probe import PROBES, Options, diagnose
from .report import build, render_json, render_text

__all__ = ["main", "parser"]


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _not_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or a positive number of seconds: {text!r}")
    return value


def _transports(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in PROBES]
    if unknown or not names:
        known = ",".join(PROBES)
        raise argparse.ArgumentTypeError(f"transports are some of {known}, not {text!r}")
    return tuple(dict.fromkeys(names))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m transports.diagnose",
        description=(
            "Run WebSocket, SSE and long-poll through the network path to a transports "
            "server (proxies included) and report which work, and why the others do not."
        ),
        epilog="Exit status: 0 when a transport works, 1 when none does, 2 on bad usage.",
    )
    parser.add_argument("url", help="the extension's mount point, e.g. https://host/realtime")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--timeout", type=_positive, default=5.0, help="seconds each step may take (5)"
    )
    parser.add_argument(
        "--idle",
        type=_not_negative,
        default=30.0,
        help="seconds to hold each connection idle, ended early by the server's heartbeat "
        "(30; 0: skip)",
    )
    parser.add_argument("--origin", help="the Origin header to send, e.g. https://app.example")
    parser.add_argument("--token", help="a bearer token for the application's on_connect")
    parser.add_argument(
        "--transports",
        type=_transports,
        default=tuple(PROBES),
        help="which to run, comma-separated (websocket,sse,longpoll)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; the exit status."""
    args = parser().parse_args(argv)  # exits 2 on bad usage
    parts = urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        parser().error(f"the URL must be http:// or https:// with a host, not {args.url!r}")
    options = Options(
        url=args.url.rstrip("/"),
        transports=args.transports,
        timeout=args.timeout,
        idle=args.idle,
        origin=args.origin,
        token=args.token,
    )
    try:
        diagnosis = asyncio.run(diagnose(options))
    except KeyboardInterrupt:
        return 130
    report = build(options.url, diagnosis.order, diagnosis.observations)
    print(render_json(report) if args.json else render_text(report))
    return 0 if report["best"] is not None else 1


def run() -> None:
    """The console entry point."""
    try:
        status = main()
    except SystemExit:
        raise
    except Exception as exc:  # never a traceback: say what failed
        print(f"diagnose failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        status = 1
    sys.exit(status)
