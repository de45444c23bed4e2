"""``Realtime``: the Quart extension that mounts everything under one URL prefix."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from quart import Blueprint, Quart, Request, Response, request

from ..backplanes import Backplane, Published
from ..backplanes.memory import MemoryBackplane
from ..carriers import REGISTRY, Carrier, Endpoint, Upstream, names
from ..core.answer import Answer
from ..core.channel import Channel
from ..core.engine import Engine
from ..core.hooks import (
    ChannelHandler,
    DisconnectHandler,
    Hooks,
    PresenceInfoHook,
    RevalidateHook,
    TopicAuthorizer,
)
from ..core.presence import Roster
from ..core.settings import Settings
from ..protocol.errors import Refused, Reject
from ..protocol.negotiation import parse_negotiate
from ..protocol.types import Data, Identity
from .diagnose import DiagnoseEndpoint
from .edge import Edge, read_limited
from .hardening import (
    bound_websocket_inflation,
    close_oversized_websockets,
    redact_access_logs,
)

log = logging.getLogger("transports")

__all__ = ["ConnectHook", "Realtime", "RevalidateHook"]

ConnectHook = Callable[[Request], Awaitable[Identity]]
"""``async def on_connect(request) -> identity``: return an identity (any JSON value except
``False``), or return ``False`` / raise :class:`~transports.Reject` to refuse with 401."""

F = TypeVar("F", bound=Callable[..., Any])

_PACKAGE = Path(__file__).resolve().parent.parent
_STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".ts": "text/plain; charset=utf-8",
}
_OTHER_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT")


def _static_files() -> dict[str, Path]:
    """What the extension serves beside client.js: the browser client's modules, their type
    declarations, and the client policy both clients read (``policy.json``, which the modules
    import from beside them)."""
    return {
        "/" + path.name: path
        for path in sorted((_PACKAGE / "static").iterdir())
        if "".join(path.suffixes[-2:]) in (".d.ts",) or path.suffix in (".js", ".json")
    }


def to_response(answer: Answer) -> Response:
    """The Quart response for an :class:`Answer`."""
    response = Response(answer.body, status=answer.status)
    if answer.status == 204 or "Content-Type" in answer.headers:
        del response.headers["Content-Type"]
    for name, value in answer.headers.items():
        response.headers[name] = value
    return response


class Realtime:
    """Realtime messaging for a Quart app over WebSocket, SSE and long-polling.

    .. code-block:: python

        app = Quart(__name__)
        rt = Realtime(app)                # or Realtime() then rt.init_app(app)

        @rt.on("chat.send")
        async def chat(channel, data):
            await rt.publish("room:1", "message", data)
            return {"ok": True}           # the client's send() resolves with this

    Every keyword is a :class:`~transports.settings.Settings` field. A setting not given as
    a keyword is read from the app's config key ``TRANSPORTS_<NAME>``, else from the
    environment variable of the same name, else its default (docs/configuration.md), so
    ``TRANSPORTS_SECRET_KEY`` and ``TRANSPORTS_BACKPLANE`` exported in the shell reach every
    worker of ``hypercorn --workers N``. ``backplane`` may also be a
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
        # Fail early on unknown or bad settings.
        Settings.from_config({}, self._overrides, names())
        self._engine: Engine | None = None
        self._on_connect: ConnectHook | None = None
        self.hooks = Hooks()
        """What the application registered; the engine reads this same object."""
        if app is not None:
            self.init_app(app)

    # --- wiring ------------------------------------------------------------------------------

    def init_app(self, app: Quart) -> None:
        """Mount the routes on ``app``, register in ``app.extensions["transports"]`` and
        connect the backplane when the app starts serving.

        Settings come from the keywords given to :class:`Realtime`, then ``app.config``'s
        ``TRANSPORTS_*`` keys, then the process's ``TRANSPORTS_*`` environment variables (read
        now), then the defaults; the signing key falls back to the app's ``SECRET_KEY`` last.

        Raises:
            ValueError: a setting of the wrong kind, naming the config key or environment
                variable it came from.
        """
        settings = Settings.from_config(app.config, self._overrides, names(), environ=os.environ)
        if settings.secret_key is None and app.secret_key:
            key = app.secret_key
            settings = settings.replace(
                secret_key=key.encode("utf-8") if isinstance(key, str) else bytes(key)
            )
        self._engine = engine = Engine(settings, self._backplane, hooks=self.hooks)
        if settings.metrics_path is not None:
            # Imported only when asked for: without prometheus-client this raises
            # MissingDependency naming the ``metrics`` extra.
            from .metrics import CONTENT_TYPE, PrometheusExporter

            exporter = PrometheusExporter(engine.metrics)

            async def scrape() -> Response:
                return Response(exporter.render(), status=200, content_type=CONTENT_TYPE)

            # A plain route of the app, outside the URL prefix's origin check (Prometheus
            # sends no Origin); the operator restricts it where the network allows.
            app.add_url_rule(settings.metrics_path, "transports_metrics", scrape, methods=["GET"])
        if settings.harden_websocket_deflate:
            bound_websocket_inflation(settings.max_message_size)
        redact_access_logs()

        enabled: list[Carrier] = [REGISTRY[name](engine) for name in settings.transports]
        endpoints: list[Endpoint] = list(enabled)
        if any(not carrier.traits.bidirectional for carrier in enabled):
            endpoints.append(Upstream(engine))
        if settings.diagnose:
            endpoints.append(DiagnoseEndpoint(engine))
        prefix = settings.url_prefix
        engine.urls = {name: prefix + carrier.routes[0][1] for name, carrier in REGISTRY.items()}
        engine.urls["send"] = prefix + Upstream.routes[0][1]
        routes: dict[tuple[str, str], Endpoint] = {}
        for endpoint in endpoints:
            endpoint.install()
            for route in endpoint.routes:
                routes[route] = endpoint

        if any(method == "WEBSOCKET" for method, _ in routes):
            # A message over Hypercorn's own size limit is refused by Hypercorn, not by a
            # carrier: make that refusal close the connection (hardening.py, issue 12).
            close_oversized_websockets()

        blueprint = Blueprint("transports", __name__, url_prefix=settings.url_prefix)
        blueprint.add_url_rule("/negotiate", "negotiate", self._negotiate, methods=["POST"])
        static = _static_files()
        for path in static:
            blueprint.add_url_rule(
                path, "static" + path.replace("/", "_").replace(".", "_"), self._static
            )
        _register_refusals(blueprint, routes, [*static, "/negotiate"])
        app.register_blueprint(blueprint)
        self._static_paths = {settings.url_prefix + path: file for path, file in static.items()}
        app.asgi_app = Edge(app, settings, routes)  # type: ignore[method-assign,assignment]
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

    @property
    def single_process(self) -> bool:
        """Whether the backplane lives in this process only (``memory://``): sessions,
        history and presence are not shared with other processes or workers."""
        if self._backplane is not None:
            return isinstance(self._backplane, MemoryBackplane)
        return self.settings.backplane.startswith("memory:")

    # --- hooks (decorators) ------------------------------------------------------------------

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
            self.hooks.handlers[event] = handler
            return handler

        return decorator

    def channel(self, handler: ChannelHandler) -> ChannelHandler:
        """Register ``async def handler(channel)``, run once per connection when it opens.

        Use it to subscribe a channel server-side, or to loop over ``channel.receive()``
        (messages no ``on()`` handler took). It is cancelled when the connection ends.
        """
        self.hooks.channel = handler
        return handler

    def on_disconnect(self, handler: DisconnectHandler) -> DisconnectHandler:
        """Register ``async def handler(channel, code, reason)``, run when a connection ends."""
        self.hooks.disconnect.append(handler)
        return handler

    def revalidate(self, hook: RevalidateHook) -> RevalidateHook:
        """Register ``async def hook(channel) -> bool``, asked every ``revalidate_interval``
        whether each open connection may stay (a token expired, a user logged out...).

        Returning ``False`` or raising :class:`~transports.Reject` closes that connection with
        4501 (unauthorized, terminal: the client does not reconnect by itself).
        """
        self.hooks.revalidate = hook
        return hook

    def authorize_subscribe(self, hook: TopicAuthorizer) -> TopicAuthorizer:
        """Register ``async def hook(channel, topic) -> bool`` deciding client subscriptions.

        Without it every valid topic may be subscribed. Refusals answer ``forbidden``.
        """
        self.hooks.authorize_subscribe = hook
        return hook

    def authorize_publish(self, hook: TopicAuthorizer) -> TopicAuthorizer:
        """Register ``async def hook(channel, topic) -> bool`` deciding client publishes.

        Without it clients may not publish at all (``forbidden``).
        """
        self.hooks.authorize_publish = hook
        return hook

    def presence_info(self, hook: PresenceInfoHook) -> PresenceInfoHook:
        """Register ``async def info(channel) -> JSON``: what other subscribers see of a
        connection in a topic's presence (default: the identity ``on_connect`` returned). Asked
        once per connection, when it first joins a topic with presence."""
        self.hooks.presence_info = hook
        return hook

    def authorize_presence(self, hook: TopicAuthorizer) -> TopicAuthorizer:
        """Register ``async def hook(channel, topic) -> bool`` deciding who may read a topic's
        presence (``client.presence()`` and joins/leaves). Without it, whoever may subscribe to
        the topic may read its presence."""
        self.hooks.authorize_presence = hook
        return hook

    # --- application API ---------------------------------------------------------------------

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
        """Send ``event``/``data`` to the one connection whose public id is ``channel_id``, on
        whichever process holds it (through the backplane).

        Returns True when the connection received it (it is queued on the connection), False
        when no open connection has that id. A client keeps its public id across reconnects.
        """
        return await self.engine.send(channel_id, event, data)

    async def send_to(self, identity: Identity, event: str, data: Data = None) -> int:
        """Send ``event``/``data`` to every open connection of ``identity`` (the value
        ``on_connect`` returned: a user's tabs and devices), on every process.

        Returns how many connections received it (0: the identity has none open).
        """
        return await self.engine.send_to(identity, event, data)

    async def presence(self, topic: str) -> list[dict[str, Any]]:
        """The members of ``topic``'s presence, on every process: ``[{"id", "info"}, ...]``, at
        most ``presence_max_members`` of them (:meth:`presence_roster` says whether the list
        was truncated).

        Raises:
            ValueError: ``topic`` has no presence (the ``presence`` setting).
            BackplaneError: the backplane is unavailable.
        """
        return (await self.engine.presence_of(topic)).members

    async def presence_roster(self, topic: str) -> Roster:
        """``topic``'s presence with its exact ``count`` and ``truncated`` (see
        :meth:`presence`)."""
        return await self.engine.presence_of(topic)

    async def presence_count(self, topic: str) -> int:
        """How many members ``topic``'s presence has, on every process; cheap at any size.

        Raises:
            ValueError: ``topic`` has no presence.
            BackplaneError: the backplane is unavailable.
        """
        return await self.engine.presence_count(topic)

    async def drain(self, timeout: float | None = None, *, window: float | None = None) -> None:
        """Move every client to another process, without a herd, before this one stops.

        New negotiations are refused with 503 (``Retry-After: 1``) from now on; the open
        connections are told "going away" (1001) one after another, in random order, over
        ``window`` seconds (default: the ``drain_window`` setting), and each client comes back
        on another process and resumes its topics from its position. Returns when every
        session has left, or ``timeout`` seconds after the window (default: ``drain_grace``).
        :func:`transports.server.run.serve` calls it on SIGTERM.
        """
        await self.engine.drain(timeout=timeout, window=window)

    @property
    def channels(self) -> list[Channel]:
        """The open channels of this process."""
        return list(self.engine.channels)

    def metrics(self) -> dict[str, dict[str, int]]:
        """Every counter of this process: ``{name: {"": total, label: count, ...}}``; the names
        and their meaning are declared in :mod:`transports.core.metrics`."""
        return self.engine.metrics.snapshot()

    def prometheus(self) -> bytes:
        """This process's metrics in the Prometheus text format, as served at ``metrics_path``
        (docs/operations.md).

        Raises:
            MissingDependency: prometheus-client is not installed (``transports[metrics]``).
        """
        from .metrics import PrometheusExporter

        return PrometheusExporter(self.engine.metrics).render()

    # --- routes ------------------------------------------------------------------------------

    async def _negotiate(self) -> Response:
        return to_response(await self._negotiate_answer())

    async def _negotiate_answer(self) -> Answer:
        if request.mimetype and request.mimetype.lower() != "application/json":
            return Answer.error("unsupported_media_type", "Content-Type must be application/json")
        address = request.remote_addr
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            self.engine.admit(address)
            body = await read_limited(request.body, headers, 4096, self.settings.body_timeout)
            asked = parse_negotiate(body, REGISTRY)
            identity: Identity = None
            if self._on_connect is not None:
                try:
                    result = self._on_connect(request)
                    identity = await result if inspect.isawaitable(result) else result
                except Reject as exc:
                    return Answer.error("unauthorized", exc.message)
                except Exception:
                    log.exception("on_connect failed")
                    return Answer.error("internal_error", "the server could not connect you")
                if identity is False:
                    return Answer.error("unauthorized", "not allowed to connect")
            payload = await self.engine.negotiate(identity, asked, address)
        except Refused as exc:
            if exc.code == "unavailable" and exc.retry_after is None:
                exc.retry_after = 1
            return Answer.refused(exc)
        return Answer.json(payload)

    async def _static(self) -> Response:
        path = self._static_paths[request.path]
        content_type = _STATIC_TYPES[".ts" if path.name.endswith(".d.ts") else path.suffix]
        response = Response(path.read_bytes(), status=200, content_type=content_type)
        response.headers["Cache-Control"] = "no-cache"
        return response


def _register_refusals(
    blueprint: Blueprint, routes: dict[tuple[str, str], Endpoint], quart_paths: list[str]
) -> None:
    """JSON answers (never an HTML error page) for wrong methods and unknown paths."""
    allowed: dict[str, set[str]] = {path: {"GET"} for path in quart_paths}
    allowed["/negotiate"] = {"POST"}
    upgrades: set[str] = set()
    for method, path in routes:
        if method == "WEBSOCKET":
            upgrades.add(path)
        else:
            allowed.setdefault(path, set()).add(method)
    for path, methods in allowed.items():
        others = [m for m in _OTHER_METHODS if m not in methods]
        allow = ", ".join(sorted(methods))

        async def wrong_method(allow: str = allow) -> Response:
            return to_response(
                Answer.error("method_not_allowed", "method not allowed", {"Allow": allow})
            )

        blueprint.add_url_rule(
            path, "refuse" + path.replace("/", "_").replace(".", "_"), wrong_method, methods=others
        )
    for path in upgrades:

        async def upgrade_required() -> Response:
            return to_response(
                Answer.error(
                    "upgrade_required",
                    "this URL takes a WebSocket upgrade",
                    {"Upgrade": "websocket"},
                )
            )

        blueprint.add_url_rule(
            path, "upgrade" + path.replace("/", "_"), upgrade_required, methods=list(_OTHER_METHODS)
        )

    async def not_found(rest: str) -> Response:
        return to_response(Answer.error("not_found", "no such endpoint"))

    blueprint.add_url_rule("/<path:rest>", "not_found", not_found, methods=list(_OTHER_METHODS))
