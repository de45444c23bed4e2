"""The browser suite's server: ``tests/apps.py``'s app on Hypercorn, in its own process.

``python -m tests.browser.serve_app --port P [--tick-ms N] [--set name=value ...] [--expiry]``

Run as a subprocess so that a test can kill it (SIGKILL) and start it again on the same port
under an open page. Besides the contract app's routes it serves:

* ``GET /page``: a minimal page that imports ``/realtime/client.js`` and exposes a small
  ``window.harness`` the tests drive with ``page.evaluate``;
* ``POST /send-to`` ``{"id", "event", "data"}``: ``rt.send`` to one connection (a MSG frame);
* ``GET /disconnects``: ``[[id, code, reason], ...]``, what ``on_disconnect`` saw so far;
* with ``--expiry``, expiring tokens (tests/reauth_app.py: ``on_connect`` and a
  ``revalidate`` hook) and ``POST /expire`` ``{"token"}``, which marks a token expired;
* ``GET /connections``: ``{"sessions": n, "attached": {transport: n}}``, the sessions alive and
  those with a stream open or a poll held now;
* a ticker that publishes ``{"n": i}`` on topic ``tick`` every ``--tick-ms`` ms, so that
  "connect() to the first delivered message" can be measured from the page alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
from pathlib import Path
from typing import Any

from hypercorn.config import Config
from quart import Quart, Response, jsonify, request

from tests.apps import make_app
from tests.reauth_app import install_expiry
from transports.server.run import serve

TICK_TOPIC = "tick"

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>transports browser tests</title>
<script type="module">
import { connect } from "/realtime/client.js";

// Everything the tests read, as plain JSON. Times are ms since connect() (performance.now()).
const rec = { t0: null, states: [], transports: [], recovered: [], errors: [], pubs: {},
              firstTick: null, ticks: 0, lastTick: null, openAt: null, tickGaps: [],
              messages: [], leaders: [], firstOffset: null, lastOffset: null, openNav: null,
              transportsNav: [] };
window.rec = rec;
const since = () => Math.round((performance.now() - rec.t0) * 10) / 10;

window.harness = {
  /** Connect and subscribe to the ticker at once; the first tick marks "first message". */
  start(options) {
    rec.t0 = performance.now();
    options = options || {};
    // JSON cannot carry a Storage: "session" and "local" name the page's own.
    if (options.storage === "session") options.storage = sessionStorage;
    if (options.storage === "local") options.storage = localStorage;
    const client = connect("/realtime", options);
    window.client = client;
    client.on("state", (s) => {
      rec.states.push(s.state);
      if (s.state === "open" && rec.openAt === null) {
        rec.openAt = since();
        rec.openNav = Math.round(performance.now()); // ms since the navigation started
      }
    });
    client.on("transport", (t) => {
      rec.transports.push(t.transport);
      rec.transportsNav.push([t.transport, Math.round(performance.now())]);
    });
    client.on("recovered", (r) => rec.recovered.push({ topic: r.topic, recovered: r.recovered }));
    client.on("error", (e) => rec.errors.push(`${e.type}: ${e.message}`));
    client.on("message", (m) => rec.messages.push({ event: m.event, data: m.data }));
    client.on("leader", (l) => rec.leaders.push(l.leader));
    let last = null;
    client.subscribe("tick", (pub) => {
      if (rec.firstTick === null) rec.firstTick = since();
      // Within one epoch, offsets must follow each other: a jump is a loss, a step back a repeat.
      if (last && last.epoch === pub.epoch && pub.offset !== last.offset + 1) {
        rec.tickGaps.push([last.offset, pub.offset]);
      }
      last = { epoch: pub.epoch, offset: pub.offset };
      if (rec.firstOffset === null) rec.firstOffset = pub.offset;
      rec.lastOffset = pub.offset;
      rec.ticks++;
      rec.lastTick = pub.data;
    });
  },
  /** Subscribe to a topic; its publications collect in rec.pubs[topic]. Resolves on the reply. */
  async listen(topic) {
    rec.pubs[topic] = [];
    const off = window.client.subscribe(topic, (pub) => rec.pubs[topic].push(
      { event: pub.event, data: pub.data, offset: pub.offset, epoch: pub.epoch }));
    return await off.ready;
  },
  info() {
    const c = window.client;
    return { state: c.state, transport: c.transport, fallbackReason: c.fallbackReason,
             stats: JSON.parse(JSON.stringify(c.stats)),
             leader: c.leader, shared: c.shared, id: c.id };
  },
};
window.harnessReady = true;
// /page?start=<JSON options>: connect as the module runs (times from the navigation, no test
// round trip in between).
const autostart = new URLSearchParams(location.search).get("start");
if (autostart !== null) window.harness.start(JSON.parse(autostart || "{}"));
</script>
"""


def add_expiry(app: Quart) -> None:
    """Expiring tokens (tests/reauth_app.py) and ``POST /expire`` ``{"token"}``."""
    tokens = install_expiry(app.extensions["transports"])

    @app.post("/expire")
    async def expire() -> Any:
        """``{"token"}``: the revalidate hook refuses that token from now on."""
        body = await request.get_json()
        tokens.expired.add(str(body["token"]))
        return jsonify({"expired": sorted(tokens.expired), "refused": tokens.refused})


def build_app(tick_ms: int, settings: dict[str, Any]) -> Quart:
    """The contract app plus the test page and the ticker."""
    app = make_app(**settings)
    rt = app.extensions["transports"]

    @app.get("/page")
    async def page() -> Response:
        response = Response(PAGE, content_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.post("/send-to")
    async def send_to() -> Any:
        """``{"id", "event", "data"}``: a direct message (MSG) to one connection."""
        body = await request.get_json()
        sent = await rt.send(body["id"], body.get("event", "direct"), body.get("data"))
        return jsonify({"sent": sent})

    @app.get("/applied")
    async def applied() -> Any:
        """How many times the ``count`` handler applied each key (for exactly-once checks)."""
        return jsonify(dict(app.config["APPLIED"]))

    @app.get("/connections")
    async def connections() -> Any:
        """The sessions alive and, of them, those with a stream open or a poll held right now
        (what a browser's connection limit counts), by transport."""
        sessions = list(rt.engine.sessions.by_sid.values())
        attached: dict[str, int] = {}
        for session in sessions:
            if session.attached and session.transport:
                attached[session.transport] = attached.get(session.transport, 0) + 1
        return jsonify({"sessions": len(sessions), "attached": attached})

    @app.get("/disconnects")
    async def disconnects() -> Any:
        """``[[id, code, reason], ...]``: every ``on_disconnect`` call so far, in order."""
        return jsonify([list(entry) for entry in app.config["DISCONNECTS"]])

    async def ticker() -> None:
        n = 0
        while True:
            n += 1
            await rt.publish(TICK_TOPIC, "tick", {"n": n})
            await asyncio.sleep(tick_ms / 1000)

    tasks: list[asyncio.Task[None]] = []

    @app.before_serving
    async def start_ticker() -> None:
        if tick_ms > 0:
            tasks.append(asyncio.create_task(ticker()))

    @app.after_serving
    async def stop_ticker() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return app


def parse_setting(text: str) -> tuple[str, Any]:
    """``name=value`` where value is JSON when it parses, else a string."""
    name, _, raw = text.partition("=")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return name, value


async def serve_granian(app: Any, port: int, certfile: str | None, keyfile: str | None) -> None:
    """Serve on granian (its embedded server, HTTP/1.1 and HTTP/2 by ALPN with a certificate)
    until SIGTERM/SIGINT."""
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server as Granian

    server = Granian(
        app,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.auto,
        ssl_cert=Path(certfile) if certfile else None,
        ssl_key=Path(keyfile) if keyfile else None,
        log_enabled=False,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.stop)
    await server.serve()


def main(argv: list[str] | None = None) -> None:
    """Serve on 127.0.0.1:PORT until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m tests.browser.serve_app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tick-ms", type=int, default=20)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--certfile", help="serve HTTPS (and HTTP/2) with this certificate")
    parser.add_argument("--keyfile", help="the certificate's private key")
    parser.add_argument("--expiry", action="store_true", help="expiring tokens, POST /expire")
    parser.add_argument(
        "--server", choices=("hypercorn", "granian"), default="hypercorn", help="the ASGI server"
    )
    args = parser.parse_args(argv)
    settings = dict(parse_setting(item) for item in args.set)
    app = build_app(args.tick_ms, settings)
    if args.expiry:
        add_expiry(app)
    if args.server == "granian":
        asyncio.run(serve_granian(app, args.port, args.certfile, args.keyfile))
        return

    # Bind ourselves with SO_REUSEADDR so a restart can take the same port at once.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    sock.set_inheritable(True)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.graceful_timeout = 1
    if args.certfile:
        config.certfile, config.keyfile = args.certfile, args.keyfile

    # The library's runner: on SIGTERM it drains (1001 to every client) before Hypercorn stops.
    asyncio.run(serve(app, config))


if __name__ == "__main__":
    main()
