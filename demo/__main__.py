"""``python -m demo [--host H] [--port P] [--backplane URL]``: serve the demo with Hypercorn.

The page is a live notification feed at http://H:P/ (127.0.0.1:8000 by default) on the
in-memory backplane; ``--backplane redis://...`` shares it between processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from hypercorn.config import Config

from transports import MissingDependency
from transports.server.run import serve

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Serve the transports demo: a live notification feed.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (8000)")
    parser.add_argument(
        "--backplane", default="memory://", help="memory:// (default) or redis://host:port/db"
    )
    parser.add_argument(
        "--secret-key",
        default=os.environ.get("TRANSPORTS_SECRET_KEY"),
        help="key signing session tokens; the same for every process on a shared backplane "
        "(default: $TRANSPORTS_SECRET_KEY, else random, which is fine for memory://)",
    )
    args = parser.parse_args(argv)
    if args.secret_key:
        os.environ["TRANSPORTS_SECRET_KEY"] = args.secret_key
    elif not args.backplane.startswith("memory"):
        parser.error("a shared backplane needs --secret-key (or $TRANSPORTS_SECRET_KEY)")
    config = Config()
    config.bind = [f"{args.host}:{args.port}"]
    config.accesslog = None
    config.graceful_timeout = 2
    try:
        app = create_app(backplane=args.backplane)
    except (MissingDependency, ValueError) as exc:
        parser.exit(2, f"python -m demo: error: {exc}\n")
    url = f"http://{args.host}:{args.port}/"
    print(f"transports demo on {url}  (backplane {args.backplane})")
    print(f"  try {url}?transports=sse,longpoll  or  ?transports=longpoll")
    print(
        f"  curl -X POST {url}api/notify -H 'Content-Type: application/json' "
        """-d '{"title": "Hello"}'""",
        flush=True,
    )

    # transports.server.run.serve tells realtime clients "going away" before Hypercorn stops.
    asyncio.run(serve(app, config))


if __name__ == "__main__":
    main()
