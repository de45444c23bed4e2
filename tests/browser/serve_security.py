"""The app the cross-site browser test attacks: serve_app's app, plus ``GET /counters``.

``python -m tests.browser.serve_security --port P [--set name=value ...]``

``GET /counters`` answers what the server did, as JSON: the contract app's ``count`` handler
counters (``applied``) and the engine's counters (``stats``: negotiated, opened...), so a
test can prove that a refused cross-site request applied nothing.
"""

from __future__ import annotations

from typing import Any

from quart import Quart, jsonify

from tests.browser import serve_app

_build_app = serve_app.build_app


def build_app(tick_ms: int, settings: dict[str, Any]) -> Quart:
    """serve_app's app plus ``GET /counters``."""
    app = _build_app(tick_ms, settings)

    @app.get("/counters")
    async def counters() -> Any:
        engine = app.extensions["transports"].engine
        return jsonify({"applied": dict(app.config["APPLIED"]), "stats": dict(engine.stats)})

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve like ``tests.browser.serve_app`` (same options), with ``/counters``."""
    serve_app.build_app = build_app
    serve_app.main(argv)


if __name__ == "__main__":
    main()
