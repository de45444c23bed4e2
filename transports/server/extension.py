"""``Realtime``: the Quart extension that mounts everything under one URL prefix."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from quart import Blueprint, Quart, Request, Response, request

from ..backplanes import Backplane, Published
from ..channel import Channel
from ..engine import (
    ChannelHandler,
    DisconnectHandler,
    Engine,
    EventHandler,
    TopicAuthorizer,
)
from ..exceptions import Refused, Reject
from ..protocol.negotiation import parse_negotiate
from ..settings import Settings
from ..typing import Data, Identity
from .common import error_response, origin_ok, read_body, refused_response
from .fastpath import install_fast_path
from .hardening import bound_websocket_inflation, redact_access_logs
from .longpoll import LongPollTransport, register_send
from .sse import SSETransport
from .websocket import WebSocketTransport

log = logging.getLogger("transports")

__all__ = ["ConnectHook", "Realtime", "RevalidateHook"]

RevalidateHook = Callable[[Channel], Awaitable[bool]]
"""``async def revalidate(channel) -> bool``: may this connection stay open?"""

ConnectHook = Callable[[Request], Awaitable[Identity]]
"""``async def on_connect(request) -> identity``: return an identity (any JSON value except
``False``), or return ``False`` / raise :class:`~transports.Reject` to refuse with 401."""

F = TypeVar("F", bound=Callable[..., Any])

_STATIC = Path(__file__).resolve().parent.parent / "static"
_TRANSPORTS: dict[str, type[WebSocketTransport | SSETransport | LongPollTransport]] = {
    "websocket": WebSocketTransport,
    "sse": SSETransport,
    "longpoll": LongPollTransport,
}
_CORS_HEADERS = "Content-Type, X-Realtime-Session, Authorization, Last-Event-ID"


class Realtime:
    """Realtime messaging for a Quart app over WebSocket, SSE and long-polling.

    .. code-block:: python

        app = Quart(__name__)
        rt = Realtime(app)                # or Realtime() then rt.init_app(app)

        @rt.on("chat.send")
        async def chat(channel, data):
            await rt.publish("room:1", "message", data)
            return {"ok": True}           # the client's send() resolves with this

    Every keyword is a :class:`~transports.settings.Settings` field and overrides the
    matching ``TRANSPORTS_*`` config key. ``backplane`` may also be a
    :class:`~transports.backplanes.Backplane` instance.
    """

    def __init__(
        self,
        app: Quart | None = None,
        *,
        backplane: str | Backplane | None = None,
        **settings: Any,
    ) -> None:
        self._overrides = dict(settings)
        self._backplane: Backplane | None = None
        if isinstance(backplane, Backplane):
            self._backplane = backplane
        elif backplane is not None:
            self._overrides["backplane"] = backplane
        Settings.from_config({}, self._overrides)  # fail early on unknown or bad settings
        self._engine: Engine | None = None
        self._on_connect: ConnectHook | None = None
        self._handlers: dict[str, EventHandler] = {}
        self._channel_handler: ChannelHandler | None = None
        self._disconnect: list[DisconnectHandler] = []
        self._authorize_subscribe: TopicAuthorizer | None = None
        self._authorize_publish: TopicAuthorizer | None = None
        self._revalidate: RevalidateHook | None = None
        if app is not None:
            self.init_app(app)

    # --- wiring ------------------------------------------------------------------------

    def init_app(self, app: Quart) -> None:
        """Mount the routes on ``app``, register in ``app.extensions["transports"]`` and
        connect the backplane when the app starts serving."""
        settings = Settings.from_config(app.config, self._overrides)
        if settings.secret_key is None and app.secret_key:
            key = app.secret_key
            settings = settings.replace(
                secret_key=key.encode("utf-8") if isinstance(key, str) else bytes(key)
            )
        self._engine = engine = Engine(settings, self._backplane)
        engine.handlers.update(self._handlers)
        engine.channel_handler = self._channel_handler
        engine.disconnect_handlers.extend(self._disconnect)
        engine.authorize_subscribe = self._authorize_subscribe
        engine.authorize_publish = self._authorize_publish
        engine.revalidate = self._revalidate
        if settings.harden_websocket_deflate:
            bound_websocket_inflation(settings.max_message_size)
        redact_access_logs()

        blueprint = Blueprint("transports", __name__, url_prefix=settings.url_prefix)
        blueprint.add_url_rule("/negotiate", "negotiate", self._negotiate, methods=["POST"])
        blueprint.add_url_rule("/<name>.js", "client_js", self._client_js, methods=["GET"])
        for name in settings.transports:
            _TRANSPORTS[name]().register(app, blueprint, self)
        if "sse" in settings.transports or "longpoll" in settings.transports:
            register_send(blueprint, self)
        _register_refusals(blueprint, settings.transports)
        blueprint.after_request(self._cors)
        install_fast_path(app, self)  # GET /poll and POST /send in front of Quart's routing
        app.register_blueprint(blueprint)
        app.extensions["transports"] = self
        app.before_serving(engine.start)
        app.after_serving(engine.stop)

    @property
    def engine(self) -> Engine:
        """The engine (available after :meth:`init_app`)."""
        if self._engine is None:
            raise RuntimeError("Realtime is not bound to an app: call init_app(app) first")
        return self._engine

    @property
    def settings(self) -> Settings:
        """The effective settings."""
        return self.engine.settings

    # --- hooks (decorators) ------------------------------------------------------------

    def on_connect(self, hook: ConnectHook) -> ConnectHook:
        """Register the authentication hook, run at negotiate with the request."""
        self._on_connect = hook
        return hook

    def on(self, event: str) -> Callable[[F], F]:
        """Register ``async def handler(channel, data)`` for client messages named ``event``.

        What it returns is the data of the client's acknowledgement; raising
        :class:`~transports.Reject` answers a ``bad_data`` error; any other exception is logged
        and answered ``handler_error``. The connection stays usable either way.
        """

        def decorator(handler: F) -> F:
            self._handlers[event] = handler
            if self._engine is not None:
                self._engine.handlers[event] = handler
            return handler

        return decorator

    def channel(self, handler: ChannelHandler) -> ChannelHandler:
        """Register ``async def handler(channel)``, run once per connection when it opens.

        Use it to subscribe a channel server-side, or to loop over ``channel.receive()``
        (messages no ``on()`` handler took). It is cancelled when the connection ends.
        """
        self._channel_handler = handler
        if self._engine is not None:
            self._engine.channel_handler = handler
        return handler

    def on_disconnect(self, handler: DisconnectHandler) -> DisconnectHandler:
        """Register ``async def handler(channel, code, reason)``, run when a connection ends."""
        self._disconnect.append(handler)
        if self._engine is not None:
            self._engine.disconnect_handlers.append(handler)
        return handler

    def revalidate(self, hook: RevalidateHook) -> RevalidateHook:
        """Register ``async def hook(channel) -> bool``, asked every ``revalidate_interval``
        whether each open connection may stay (a token expired, a user logged out...).

        Returning ``False`` or raising :class:`~transports.Reject` closes that connection with
        4501 (unauthorized, terminal: the client does not reconnect by itself).
        """
        self._revalidate = hook
        if self._engine is not None:
            self._engine.revalidate = hook
        return hook

    def authorize_subscribe(self, hook: TopicAuthorizer) -> TopicAuthorizer:
        """Register ``async def hook(channel, topic) -> bool`` deciding client subscriptions.

        Without it every valid topic may be subscribed. Refusals answer ``forbidden``.
        """
        self._authorize_subscribe = hook
        if self._engine is not None:
            self._engine.authorize_subscribe = hook
        return hook

    def authorize_publish(self, hook: TopicAuthorizer) -> TopicAuthorizer:
        """Register ``async def hook(channel, topic) -> bool`` deciding client publishes.

        Without it clients may not publish at all (``forbidden``).
        """
        self._authorize_publish = hook
        if self._engine is not None:
            self._engine.authorize_publish = hook
        return hook

    # --- application API ---------------------------------------------------------------

    async def publish(self, topic: str, event: str, data: Data = None) -> Published:
        """Publish ``data`` as ``event`` on ``topic`` to every subscriber, on every process.

        Returns the stored publication (its ``offset``, ``epoch`` and ``id``). Binary data
        (``bytes``) is delivered as binary on every transport.

        Raises:
            Refused: ``bad_topic`` or ``bad_frame`` (invalid names).
            BackplaneError: the backplane is unavailable.
        """
        return await self.engine.publish(topic, event, data)

    async def send(self, channel_id: str, event: str, data: Data = None) -> bool:
        """Send to the one channel whose public id is ``channel_id``; False if it is not here."""
        return await self.engine.send_to(channel_id, event, data)

    async def drain(self, timeout: float = 5.0) -> None:
        """Tell every connected client "going away" (1001) and wait for that to be written.

        Call it when a deploy begins, before the server stops: clients then reconnect at once
        (to another process) instead of noticing a dead connection later. New negotiations are
        refused with 503 from then on. :func:`transports.server.run.serve` calls it on SIGTERM.
        """
        await self.engine.drain(timeout=timeout)

    @property
    def channels(self) -> list[Channel]:
        """The open channels of this process."""
        return list(self.engine.channels)

    # --- routes ------------------------------------------------------------------------

    async def _negotiate(self) -> Response:
        if not origin_ok(self):
            return error_response("forbidden_origin", "origin not allowed")
        if request.mimetype and request.mimetype.lower() != "application/json":
            return error_response("unsupported_media_type", "Content-Type must be application/json")
        address = request.remote_addr
        try:
            self.engine.admit(address)
            body = await read_body(4096, self.settings.body_timeout)
            asked = parse_negotiate(body)
            identity: Identity = None
            if self._on_connect is not None:
                try:
                    result = self._on_connect(request)
                    identity = await result if inspect.isawaitable(result) else result
                except Reject as exc:
                    return error_response("unauthorized", exc.message)
                except Exception:
                    log.exception("on_connect failed")
                    return error_response("internal_error", "the server could not connect you")
                if identity is False:
                    return error_response("unauthorized", "not allowed to connect")
            payload = await self.engine.negotiate(identity, asked, address)
        except Refused as exc:
            if exc.code == "unavailable":
                return error_response(exc.code, exc.message, headers={"Retry-After": "1"})
            return refused_response(exc)
        response = Response(_json(payload), status=200, content_type="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _client_js(self, name: str) -> Response:
        """``client.js`` and the ES modules it imports, all from ``transports/static/``."""
        if name not in _static_modules():
            return error_response("not_found", "no such endpoint")
        body = (_STATIC / f"{name}.js").read_bytes()
        response = Response(body, status=200, content_type="text/javascript; charset=utf-8")
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def _cors(self, response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin is None or not self.settings.allowed_origins:
            return response
        if not origin_ok(self):
            return response
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        if "*" in self.settings.allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = "*"
        else:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Vary"] = "Origin"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        return response


def _static_modules() -> frozenset[str]:
    """Names (without ``.js``) of the browser client's modules, served at ``<prefix>/<name>.js``."""
    return frozenset(path.stem for path in _STATIC.glob("*.js") if path.is_file())


_ROUTES: dict[str, tuple[str, ...]] = {
    "/negotiate": ("POST",),
    "/<name>.js": ("GET",),
    "/sse": ("GET",),
    "/poll": ("GET",),
    "/send": ("POST",),
}
_OTHER_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT")


def _register_refusals(blueprint: Blueprint, transports: tuple[str, ...]) -> None:
    """JSON answers (never an HTML error page) for wrong methods and unknown paths."""
    enabled = {"/sse": "sse", "/poll": "longpoll"}
    for path, allowed in _ROUTES.items():
        if path in enabled and enabled[path] not in transports:
            continue
        others = [m for m in _OTHER_METHODS if m not in allowed]

        async def wrong_method(allowed: tuple[str, ...] = allowed, **_: str) -> Response:
            return error_response(
                "method_not_allowed", "method not allowed", headers={"Allow": ", ".join(allowed)}
            )

        blueprint.add_url_rule(
            path, "refuse" + path.replace("/", "_").replace(".", "_"), wrong_method, methods=others
        )
    if "websocket" in transports:

        async def upgrade_required() -> Response:
            return error_response(
                "upgrade_required",
                "this URL takes a WebSocket upgrade",
                headers={"Upgrade": "websocket"},
            )

        blueprint.add_url_rule("/ws", "ws_http", upgrade_required, methods=list(_OTHER_METHODS))

    async def not_found(rest: str) -> Response:
        return error_response("not_found", "no such endpoint")

    blueprint.add_url_rule("/<path:rest>", "not_found", not_found, methods=list(_OTHER_METHODS))


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))
