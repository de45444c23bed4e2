"""The demo: a live notification feed on ``transports``.

* ``GET /``: the page (``templates/index.html``, ``static/app.js``, ``static/feed.js``,
  ``static/style.css``; no CDN, no build step).
* ``POST /api/notify`` ``{"title", "body"?, "topic"?, "kind"?, "author"?}``: publish a
  notification from a script; answers ``{"id", "topic", "offset", "epoch", "ts"}``, or ``400``
  with ``{"error", "message"}``.
* ``GET /api/feed?topics=all,deploys&limit=100``: the newest notifications of those topics,
  newest first (what a page loads when it opens, joins a topic, or missed a gap).
* ``GET /api/topics``: the topics and what they carry.
* ``GET /realtime/diagnose``: the library's connection check (the ``diagnose`` setting is on):
  each transport alone from the browser, and the three live side by side (``#live``).
* Realtime (``/realtime``): the page subscribes to topics and posts with ``send("notify", ...)``,
  validated like ``/api/notify`` (a bad one is refused with ``bad_data`` and the reason).
  It follows who is here on each topic it follows (presence): each connection's identity is
  ``{"name": <the guest name in the page's demo_name cookie>}``; there are no accounts.
* A producer publishes a realistic notification every few seconds.

Each notification goes to exactly one topic; ``all`` is the feed a page follows on load and the
others are opt-in (a notification to ``deploys`` is not also published on ``all``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from quart import Quart, Request, Response, render_template, request

from transports import BackplaneError, Channel, Reject
from transports.server.extension import Realtime

from .feed import (
    DEFAULT_TOPIC,
    EVENT,
    KEEP,
    MAX_AUTHOR,
    MAX_BODY,
    MAX_TITLE,
    TOPICS,
    Draft,
    Invalid,
    Producer,
    Store,
    validate,
)

__all__ = ["create_app"]

log = logging.getLogger("demo")

HERE = Path(__file__).resolve().parent
MAX_REQUEST = 16 * 1024
"""Largest ``POST /api/notify`` body read (a valid notification is far smaller)."""

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Everything the page loads comes from the app itself: a CDN link would be refused."""
POSTS_PER_WINDOW = 10
POST_WINDOW = 10.0
"""A visitor's connection may post at most 10 notifications in 10 seconds (scripts: no limit)."""
NAME_COOKIE = "demo_name"
NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9 ._-]{{0,{MAX_AUTHOR - 1}}}")
"""A guest name as the page makes one ("Guest 1A2B"); anything else is shown as "Guest"."""


def create_app(
    backplane: str = "memory://",
    *,
    producer: bool = True,
    interval: tuple[float, float] = (2.0, 4.0),
    first_after: float = 1.0,
    seed: int | None = None,
) -> Quart:
    """The demo app on ``backplane`` (``memory://`` needs no other service).

    ``producer`` publishes a notification on ``all`` every ``interval`` seconds (a random time
    within it; now and then one on an opt-in topic too), the first ``first_after`` seconds
    after start, after a few "earlier" ones so that a new page is not empty. ``seed`` makes
    what it publishes repeatable.
    """
    app = Quart(__name__, static_folder="static", template_folder="templates")
    # Several processes on one backplane must share the key that signs session tokens.
    if os.environ.get("TRANSPORTS_SECRET_KEY"):
        app.config["TRANSPORTS_SECRET_KEY"] = os.environ["TRANSPORTS_SECRET_KEY"]
    # Each process serves its own Prometheus metrics (docs/operations.md), and the connection
    # check at /realtime/diagnose (the page's "Run the connection check" link). Presence on
    # every topic: the page shows who is here (names from on_connect, below).
    rt = Realtime(
        app,
        backplane=backplane,
        metrics_path="/metrics",
        diagnose=True,
        presence=list(TOPICS),
    )
    store = Store()
    app.extensions["demo.store"] = store

    async def publish(draft: Draft, *, ts: float | None = None, **extra: Any) -> dict[str, Any]:
        data = draft.data(ts) | extra
        published = await rt.publish(draft.topic, EVENT, data)
        notification = {
            "id": published.id,
            "topic": published.topic,
            "offset": published.offset,
            "epoch": published.epoch,
            "data": data,
        }
        store.add(notification)
        return notification

    def receipt(notification: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": notification["id"],
            "topic": notification["topic"],
            "offset": notification["offset"],
            "epoch": notification["epoch"],
            "ts": notification["data"]["ts"],
        }

    # --- realtime -----------------------------------------------------------------------------

    @rt.on_connect
    async def guest(negotiate: Request) -> dict[str, str]:
        """Who is connecting: the guest name the page keeps in a cookie (shown to the others on
        the topic, never trusted for anything; a client without one is "Guest")."""
        name = unquote(negotiate.cookies.get(NAME_COOKIE, "")).strip()  # the page encodes it
        return {"name": name if NAME_RE.fullmatch(name) else "Guest"}

    @rt.authorize_subscribe
    async def known_topic(channel: Channel, topic: str) -> bool:
        return topic in TOPICS

    recent_posts: dict[str, deque[float]] = {}

    @rt.on("notify")
    async def notify(channel: Channel, data: Any) -> Any:
        """A visitor's post from the compose box: the ack carries the notification's id."""
        try:
            draft = validate(data, author="guest")
        except Invalid as exc:
            raise Reject(exc.message) from None
        now = time.monotonic()
        posts = recent_posts.setdefault(channel.id, deque())
        while posts and posts[0] < now - POST_WINDOW:
            posts.popleft()
        if len(posts) >= POSTS_PER_WINDOW:
            raise Reject(f"slow down: at most {POSTS_PER_WINDOW} posts in {POST_WINDOW:g} s")
        posts.append(now)
        try:
            return receipt(await publish(draft))
        except BackplaneError:
            raise Reject("the server cannot publish right now, try again") from None

    @rt.on_disconnect
    async def forget(channel: Channel, code: int, reason: str) -> None:
        recent_posts.pop(channel.id, None)

    # --- pages and HTTP API ---------------------------------------------------------------------

    @app.get("/")
    async def index() -> Response:
        config = {
            "realtime": rt.settings.url_prefix,
            "topics": [{"name": name, "about": about} for name, about in TOPICS.items()],
            "defaultTopic": DEFAULT_TOPIC,
            "maxTitle": MAX_TITLE,
            "maxBody": MAX_BODY,
            "keep": KEEP,
        }
        html = await render_template("index.html", config=config)
        response = Response(html, content_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        response = Response(
            (HERE / "static" / "favicon.svg").read_bytes(), content_type="image/svg+xml"
        )
        response.headers["Cache-Control"] = "max-age=86400"
        return response

    @app.get("/api/topics")
    async def topics() -> Response:
        return _json({"topics": [{"name": n, "about": a} for n, a in TOPICS.items()]})

    @app.get("/api/feed")
    async def feed() -> Response:
        names = [t for t in request.args.get("topics", DEFAULT_TOPIC).split(",") if t]
        unknown = [t for t in names if t not in TOPICS]
        if unknown or not names:
            return _error(Invalid("unknown_topic", f"topics must be among: {', '.join(TOPICS)}"))
        try:
            limit = int(request.args.get("limit", "100"))
        except ValueError:
            limit = -1
        if not 1 <= limit <= KEEP:
            return _error(Invalid("bad_value", f"limit must be an integer from 1 to {KEEP}"))
        response = _json({"notifications": store.recent(names, limit)})
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.post("/api/notify")
    async def api_notify() -> Response:
        """Publish from a script: ``{"title", "body"?, "topic"?}`` -> ``{"id", ...}``."""
        mimetype = (request.mimetype or "").lower()
        if mimetype != "application/json" and not mimetype.endswith("+json"):
            return _error(
                Invalid("bad_content_type", "send JSON with Content-Type: application/json")
            )
        if (request.content_length or 0) > MAX_REQUEST:
            return _error(Invalid("too_long", f"the body is larger than {MAX_REQUEST} bytes"))
        raw = await request.get_data(as_text=False)
        if len(raw) > MAX_REQUEST:
            return _error(Invalid("too_long", f"the body is larger than {MAX_REQUEST} bytes"))
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):
            return _error(Invalid("bad_json", "the body is not valid JSON"))
        try:
            draft = validate(payload, author="script")
        except Invalid as exc:
            return _error(exc)
        try:
            notification = await publish(draft)
        except BackplaneError:
            return _json(
                {"error": "unavailable", "message": "the backplane is unavailable"}, status=503
            )
        return _json(receipt(notification))

    @app.errorhandler(404)
    async def not_found(error: Exception) -> Response | tuple[str, int]:
        if request.path.startswith("/api/"):
            return _json({"error": "not_found", "message": "no such endpoint"}, status=404)
        return "Not found", 404

    @app.errorhandler(405)
    async def wrong_method(error: Exception) -> Response | tuple[str, int]:
        if request.path.startswith("/api/"):
            return _json({"error": "method_not_allowed", "message": "wrong method"}, status=405)
        return "Method not allowed", 405

    @app.after_request
    async def security_headers(response: Response) -> Response:
        if not request.path.startswith(rt.settings.url_prefix + "/"):
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    # --- the producer -----------------------------------------------------------------------------

    tasks: list[asyncio.Task[None]] = []

    async def produce() -> None:
        make = Producer(seed)
        pace = random.Random(seed)
        now = asyncio.get_running_loop().time
        try:
            for n, (age, draft) in enumerate(make.seeds()):
                await publish(draft, ts=time.time() - age, seed=f"s{n}")
        except BackplaneError as exc:
            log.warning("demo producer: could not publish the first notifications: %s", exc)
        await asyncio.sleep(first_after)
        while True:
            started = now()
            # Every tick feeds "all" (what every page shows), and now and then an opt-in topic.
            drafts = [make.next()] + ([make.next_opt_in()] if pace.random() < 0.4 else [])
            for draft in drafts:
                try:
                    await publish(draft)
                except BackplaneError as exc:
                    log.warning("demo producer: backplane unavailable (%s); retrying", exc)
                except Exception:  # keep producing whatever happened to one notification
                    log.exception("demo producer: publishing failed")
            await asyncio.sleep(max(0.1, pace.uniform(*interval) - (now() - started)))

    @app.before_serving
    async def start_producer() -> None:
        if producer:
            tasks.append(asyncio.create_task(produce(), name="demo-producer"))

    @app.after_serving
    async def stop_producer() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tasks.clear()

    return app


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, content_type="application/json")


def _error(invalid: Invalid) -> Response:
    return _json(invalid.as_json(), status=400)
