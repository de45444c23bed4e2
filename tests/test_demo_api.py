"""The demo's HTTP API in-process (Quart's test client): ``POST /api/notify`` and friends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as HttpClient

from demo import create_app
from demo.app import POSTS_PER_WINDOW
from demo.feed import KEEP, MAX_TITLE, Producer, validate
from transports import ReplyError
from transports.client import connect
from transports.server.testing import QuartTestConnector


@pytest.fixture
async def app() -> AsyncIterator[Quart]:
    application = create_app(producer=False)
    async with application.test_app():  # runs before_serving: the backplane is connected
        yield application


@pytest.fixture
def client(app: Quart) -> HttpClient:
    return app.test_client()


async def notify(client: HttpClient, payload: Any) -> tuple[int, Any]:
    response = await client.post("/api/notify", json=payload)
    return response.status_code, await response.get_json()


async def test_notify_returns_the_publication_id(client: HttpClient) -> None:
    status, body = await notify(client, {"title": "Build #1 passed", "body": "all green"})
    assert status == 200
    assert body["topic"] == "all"  # the default topic
    assert body["id"] == f"{body['epoch']}:all:{body['offset']}"  # Published.id
    assert isinstance(body["ts"], int)

    status, other = await notify(client, {"title": "Deploy started", "topic": "deploys"})
    assert status == 200 and other["topic"] == "deploys" and other["id"] != body["id"]

    feed = await (await client.get("/api/feed?topics=all,deploys")).get_json()
    listed = {n["id"]: n for n in feed["notifications"]}
    assert listed[body["id"]]["data"]["title"] == "Build #1 passed"
    assert listed[body["id"]]["data"]["author"] == "script"
    assert listed[other["id"]]["topic"] == "deploys"


async def test_notify_reaches_a_subscriber_with_the_same_id(app: Quart, client: HttpClient) -> None:
    """What a realtime subscriber receives is the notification /api/notify answered for."""
    received: list[Any] = []
    rt_client = await connect(
        "http://localhost/realtime",
        transports=["longpoll"],
        connector=QuartTestConnector(app.test_client()),
    )
    try:
        await rt_client.subscribe("all", received.append)
        status, body = await notify(client, {"title": "hello", "topic": "all"})
        assert status == 200
        for _ in range(250):
            if received:
                break
            await asyncio.sleep(0.02)
        [message] = received
        assert f"{message.epoch}:{message.topic}:{message.offset}" == body["id"]
        assert message.event == "notification" and message.data["title"] == "hello"
    finally:
        await rt_client.close()


async def test_title_is_normalised(client: HttpClient) -> None:
    status, body = await notify(client, {"title": "  spaced \t out  ", "topic": "mentions"})
    assert status == 200
    feed = await (await client.get("/api/feed?topics=mentions")).get_json()
    assert feed["notifications"][0]["data"]["title"] == "spaced out"


@pytest.mark.parametrize(
    ("payload", "error", "field"),
    [
        ({}, "missing_field", "title"),
        ({"body": "no title"}, "missing_field", "title"),
        ({"title": ""}, "missing_field", "title"),
        ({"title": "   "}, "missing_field", "title"),
        ({"title": None}, "missing_field", "title"),
        ({"title": 42}, "bad_type", "title"),
        ({"title": ["a"]}, "bad_type", "title"),
        ({"title": "x" * (MAX_TITLE + 1)}, "too_long", "title"),
        ({"title": "ok", "body": 3}, "bad_type", "body"),
        ({"title": "ok", "body": "b" * 501}, "too_long", "body"),
        ({"title": "ok", "topic": "nope"}, "unknown_topic", "topic"),
        ({"title": "ok", "topic": 1}, "bad_type", "topic"),
        ({"title": "ok", "topic": ""}, "unknown_topic", "topic"),
        ({"title": "ok", "kind": "weird"}, "bad_value", "kind"),
        ({"title": "bell\x07"}, "bad_value", "title"),
        ({"title": "ok", "author": "a" * 41}, "too_long", "author"),
        ({"title": "ok", "nonce": ""}, "bad_value", "nonce"),
    ],
)
async def test_bad_fields_get_400(client: HttpClient, payload: Any, error: str, field: str) -> None:
    status, body = await notify(client, payload)
    assert status == 400
    assert body["error"] == error
    assert body["field"] == field
    assert isinstance(body["message"], str) and body["message"]


async def test_title_at_the_limit_is_fine(client: HttpClient) -> None:
    status, _ = await notify(client, {"title": "é" * MAX_TITLE})
    assert status == 200


@pytest.mark.parametrize("payload", [[], "title", 3, None, True])
async def test_json_that_is_not_an_object_gets_400(client: HttpClient, payload: Any) -> None:
    status, body = await notify(client, payload)
    assert status == 400
    assert body["error"] == "bad_json"


@pytest.mark.parametrize(
    ("data", "content_type", "error"),
    [
        (b"not json", "application/json", "bad_json"),
        (b'{"title": "unterminated', "application/json", "bad_json"),
        (b"\xff\xfe", "application/json", "bad_json"),
        (b"", "application/json", "bad_json"),
        (b'{"title": "hi"}', "text/plain", "bad_content_type"),
        (b"title=hi", "application/x-www-form-urlencoded", "bad_content_type"),
        (b'{"title": "hi"}', None, "bad_content_type"),
        (b"[" * 5000 + b"]" * 5000, "application/json", "bad_json"),
        (json.dumps({"title": "x" * 20000}).encode(), "application/json", "too_long"),
    ],
)
async def test_bodies_that_are_not_json_get_400(
    client: HttpClient, data: bytes, content_type: str | None, error: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/api/notify", data=data, headers=headers)
    assert response.status_code == 400
    assert response.content_type == "application/json"
    body = await response.get_json()
    assert body["error"] == error and body["message"]


async def test_other_api_errors_are_json(client: HttpClient) -> None:
    response = await client.get("/api/notify")
    assert response.status_code == 405
    assert (await response.get_json())["error"] == "method_not_allowed"
    response = await client.get("/api/nothing-here")
    assert response.status_code == 404
    assert (await response.get_json())["error"] == "not_found"
    response = await client.get("/api/feed?topics=nope")
    assert response.status_code == 400
    assert (await response.get_json())["error"] == "unknown_topic"
    response = await client.get("/api/feed?limit=0")
    assert response.status_code == 400
    response = await client.get(f"/api/feed?limit={KEEP + 1}")
    assert response.status_code == 400


async def test_page_and_assets_are_served_by_the_app(client: HttpClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    html = await page.get_data(as_text=True)
    for hook in (
        'data-testid="transport"',
        'data-testid="state"',
        'data-testid="compose-input"',
        'data-testid="compose-submit"',
        'data-testid="notification"',
    ):
        assert hook in html
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere
    for asset in (
        "/static/app.js",
        "/static/feed.js",
        "/static/style.css",
        "/static/favicon.svg",
        "/realtime/client.js",
        "/favicon.ico",
    ):
        response = await client.get(asset)
        assert response.status_code == 200, asset
        if asset.startswith("/static/"):  # the demo's own: nothing loaded from elsewhere
            text = await response.get_data(as_text=True)
            outside = text.replace("http://www.w3.org/2000/svg", "")  # the SVG namespace
            assert "https://" not in outside and "http://" not in outside, asset


async def test_the_page_links_the_connection_check_the_demo_serves(client: HttpClient) -> None:
    html = await (await client.get("/")).get_data(as_text=True)
    assert 'href="/realtime/diagnose" data-testid="diagnose-link"' in html
    assert 'href="/realtime/diagnose#live"' in html
    page = await client.get("/realtime/diagnose")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert '<script type="module" src="diagnose.js"></script>' in await page.get_data(as_text=True)
    for module in ("diagnose.js", "diagnose-probe.js", "diagnose.json"):
        assert (await client.get(f"/realtime/{module}")).status_code == 200, module
    published = await client.post(
        "/realtime/diagnose/publish",
        json={"topic": "$diagnose:demo-test-1", "event": "probe", "data": {"seq": 0}},
    )
    assert published.status_code == 200 and (await published.get_json())["offset"] == 1


def test_producer_makes_valid_notifications() -> None:
    producer = Producer(seed=7)
    general = [producer.next() for _ in range(200)]
    assert {d.topic for d in general} == {"all"}
    opt_in = [producer.next_opt_in() for _ in range(100)]
    assert {d.topic for d in opt_in} == {"deploys", "mentions"}
    drafts = general + opt_in + [d for _, d in producer.seeds()]
    assert len({d.kind for d in drafts}) >= 6
    for draft in drafts:
        again = validate(
            {
                "title": draft.title,
                "body": draft.body,
                "topic": draft.topic,
                "kind": draft.kind,
                "author": draft.author,
            }
        )
        assert again == draft


async def test_realtime_notify_acks_with_the_id_or_refuses(app: Quart) -> None:
    """The compose box's path: send("notify") -> the ack has the id; bad input -> bad_data."""
    rt_client = await connect(
        "http://localhost/realtime",
        transports=["longpoll"],
        connector=QuartTestConnector(app.test_client()),
    )
    try:
        ack = await rt_client.send("notify", {"title": "Lunch", "topic": "all", "nonce": "n1"})
        assert ack["id"] == f"{ack['epoch']}:all:{ack['offset']}"
        for bad, reason in (
            ({"title": ""}, "title is required"),
            ({"title": "x" * (MAX_TITLE + 1)}, "longer than 120"),
            ({"title": "ok", "topic": "nope"}, "topic must be one of"),
            ("just a string", "JSON object"),
        ):
            with pytest.raises(ReplyError) as refused:
                await rt_client.send("notify", bad)
            assert refused.value.code == "bad_data" and reason in refused.value.message
        # A visitor's connection may post 10 in 10 s (the one above counted).
        for n in range(POSTS_PER_WINDOW - 1):
            await rt_client.send("notify", {"title": f"post {n}"})
        with pytest.raises(ReplyError) as limited:
            await rt_client.send("notify", {"title": "one too many"})
        assert limited.value.code == "bad_data" and "slow down" in limited.value.message
    finally:
        await rt_client.close()
