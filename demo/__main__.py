"""``python -m demo [--host H] [--port P] [--backplane URL]``: serve the demo with Hypercorn."""

from __future__ import annotations

import argparse
import asyncio

from hypercorn.config import Config

from transports.server.run import serve

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backplane", default="memory://")
    args = parser.parse_args(argv)
    config = Config()
    config.bind = [f"{args.host}:{args.port}"]
    config.accesslog = None
    app = create_app(backplane=args.backplane)
    print(f"transports demo on http://{args.host}:{args.port}/  (backplane {args.backplane})")

    # transports.server.run.serve tells realtime clients "going away" before Hypercorn stops.
    asyncio.run(serve(app, config))


if __name__ == "__main__":
    main()
