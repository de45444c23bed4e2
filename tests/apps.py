"""The application the contract suite runs against, the same for every transport."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from quart import Quart, Request, jsonify, request

from transports import Channel, Reject
from transports.server.extension import Realtime


def make_app(*, channel_loop: bool = False, **settings: Any) -> Quart:
    """A Quart app with the handlers every contract scenario uses.

    With ``channel_loop``, a per-connection handler takes the messages no ``on()`` handler
    takes (so unknown events are acknowledged instead of refused).
    """
    app = Quart(__name__)
    app.config["TESTING"] = True
    settings.setdefault("secret_key", b"contract-tests-secret-key")
    rt = Realtime(app, **settings)
    applied: Counter[str] = Counter()
    app.config["APPLIED"] = applied
    disconnects: list[tuple[str, int, str]] = []
    app.config["DISCONNECTS"] = disconnects
    inbox: list[Any] = []
    app.config["INBOX"] = inbox

    @rt.on_connect
    async def who(req: Request) -> Any:
        auth = req.headers.get("Authorization", "")
        if auth == "Bearer nope":
            raise Reject("bad token")
        return {"user": auth.removeprefix("Bearer ") or "anonymous"}

    @rt.on("echo")
    async def echo(channel: Channel, data: Any) -> Any:
        return data

    @rt.on("whoami")
    async def whoami(channel: Channel, data: Any) -> Any:
        return {
            "identity": channel.identity,
            "transport": channel.transport,
            "bidirectional": channel.bidirectional,
            "id": channel.id,
        }

    @rt.on("publish")
    async def publish(channel: Channel, data: Any) -> Any:
        record = await rt.publish(data["topic"], data.get("event", "msg"), data.get("data"))
        return {"id": record.id, "offset": record.offset}

    @rt.on("count")
    async def count(channel: Channel, data: Any) -> Any:
        await asyncio.sleep(data.get("delay", 0) if isinstance(data, dict) else 0)
        applied[str(data.get("key") if isinstance(data, dict) else data)] += 1
        return applied[str(data.get("key") if isinstance(data, dict) else data)]

    @rt.on("fail")
    async def fail(channel: Channel, data: Any) -> Any:
        raise RuntimeError("boom")

    @rt.on("reject")
    async def reject(channel: Channel, data: Any) -> Any:
        raise Reject("data refused")

    @rt.on("close-me")
    async def close_me(channel: Channel, data: Any) -> Any:
        await channel.close(data["code"], data.get("reason", ""))
        return None

    @rt.on("direct")
    async def direct(channel: Channel, data: Any) -> Any:
        await channel.send("direct", data)
        return None

    if channel_loop:

        @rt.channel
        async def per_connection(channel: Channel) -> None:
            await channel.subscribe("joined:" + channel.transport)
            async for message in channel:
                inbox.append((channel.transport, message.event, message.data))

    @rt.on_disconnect
    async def gone(channel: Channel, code: int, reason: str) -> None:
        disconnects.append((channel.id, code, reason))

    @rt.authorize_subscribe
    async def may_subscribe(channel: Channel, topic: str) -> bool:
        return not topic.startswith("private:")

    @rt.authorize_publish
    async def may_publish(channel: Channel, topic: str) -> bool:
        return topic.startswith("open:")

    @rt.authorize_presence
    async def may_see_presence(channel: Channel, topic: str) -> bool:
        return not topic.startswith("room:hidden")

    @rt.presence_info
    async def shown(channel: Channel) -> Any:
        identity = channel.identity
        return {"name": identity.get("user") if isinstance(identity, dict) else None}

    @app.post("/direct")
    async def direct_route() -> Any:
        body = await request.get_json()
        sent = await rt.send(body["id"], body.get("event", "msg"), body.get("data"))
        return jsonify({"sent": sent})

    @app.post("/direct-to")
    async def direct_to_route() -> Any:
        body = await request.get_json()
        reached = await rt.send_to(body["identity"], body.get("event", "msg"), body.get("data"))
        return jsonify({"reached": reached})

    @app.get("/presence/<topic>")
    async def presence_route(topic: str) -> Any:
        roster = await rt.presence_roster(topic)
        return jsonify({**roster.to_json(), "counted": await rt.presence_count(topic)})

    @app.post("/publish")
    async def publish_route() -> Any:
        body = await request.get_json()
        record = await rt.publish(body["topic"], body.get("event", "msg"), body.get("data"))
        return jsonify({"id": record.id, "offset": record.offset})

    return app
