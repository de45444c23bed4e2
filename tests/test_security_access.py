"""Security catalogue, who may do what (groups D, E, F and G).

Authorisation of subscriptions and publications (D1-D8), credentials (E3, E4, E6-E9), origins and
CORS (F2, F5), path tricks (G4) and lost negotiations (O3), on every transport where the case
applies, against a real Hypercorn with a control client connected throughout; afterwards
sessions, topics and library tasks must be back to their baseline
(:func:`tests.secharness.live_server`).

E1, E2, E5, E6 (spent ticket, wrong transport), F1, F3, F4, G1, G2 and G5 live in
tests/test_security.py; the cross-site browser page (F6) in
tests/browser/test_browser_security.py; query-string fuzzing (G7) in
tests/test_security_fuzz.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from transports import Channel, Reject
from transports.typing import TransportName

from .apps import make_app
from .conftest import TRANSPORTS, eventually
from .rawws import TEXT, build_frame
from .secharness import LIVE_DEFAULTS, Live, expect, live_server


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    async with live_server() as server:
        yield server


async def publish_marker(live: Live, wire: Any, topic: str) -> list[Any]:
    """Publish a marker on ``topic`` (which ``wire`` is subscribed to) and return every PUB
    ``wire`` received up to and including it: what arrived before the marker arrived first."""
    await live.realtime.publish(topic, "marker", "end")
    pubs: list[Any] = []
    while True:
        frame = await wire.recv()
        if isinstance(frame, tuple):
            frame = frame[0]
        if frame[0] in (1, 17):
            pubs.append(frame)
            if frame[1] == topic and frame[2] == "marker":
                return pubs


# --- D: authorisation -----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_d1_any_valid_topic_may_be_subscribed(live: Live, transport: TransportName) -> None:
    """D1 (subscribe to a channel no pattern matches -> ``unknown_channel``). Not applicable by
    design: topics are not declared; without an authoriser refusing it, any valid topic may be
    subscribed (docs/security.md, Authorisation). Proven: a topic nobody ever used is
    subscribed (``ok``, offset 0, recovered) and receives what is published there next."""
    wire = await live.wire(transport)
    await wire.send('[5,1,"never-seen:d1",null]')
    reply = await wire.reply(1)
    assert reply[:3] == [4, 1, "ok"]
    assert reply[3]["offset"] == 0 and reply[3]["recovered"] is True
    await live.realtime.publish("never-seen:d1", "hello", 1)
    assert (await wire.recv())[:4] == [1, "never-seen:d1", "hello", 1]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_d2_denied_subscribe_never_delivers(live: Live, transport: TransportName) -> None:
    """D2: a subscription the authoriser denies answers ``forbidden``, the connection stays
    usable, and later publications on that topic never reach this client."""
    wire = await live.wire(transport)
    await wire.send('[5,1,"private:d2",null]', '[5,2,"public:d2",null]')
    denied = await wire.reply(1)
    assert denied[:3] == [4, 1, "forbidden"] and set(denied[3]) == {"message"}
    assert (await wire.reply(2))[:3] == [4, 2, "ok"]
    for n in range(3):
        await live.realtime.publish("private:d2", "secret", n)
    pubs = await publish_marker(live, wire, "public:d2")
    assert [p[1] for p in pubs] == ["public:d2"]
    assert live.engine.hub.subscribers("private:d2") == 0
    await wire.echo(3)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_d3_denied_publish_reaches_nobody(live: Live, transport: TransportName) -> None:
    """D3: a client PUBLISH the authoriser denies answers ``forbidden`` and reaches no
    subscriber; an allowed one (``open:*``) does, so the check is not vacuous."""
    wire = await live.wire(transport)
    listener = await live.wire("websocket")
    await listener.send('[5,1,"closed:d3",null]', '[5,2,"open:d3",null]')
    await listener.reply(1)
    await listener.reply(2)
    await wire.send('[10,1,"closed:d3","e",{"forged":true}]')
    denied = await wire.reply(1)
    assert denied[:3] == [4, 1, "forbidden"]
    await wire.send('[10,2,"open:d3","e",{"fine":true}]')
    assert (await wire.reply(2))[:3] == [4, 2, "ok"]
    first = await listener.recv()
    assert first[:4] == [1, "open:d3", "e", {"fine": True}]
    pubs = await publish_marker(live, listener, "closed:d3")
    assert [p[2] for p in pubs] == ["marker"]


def revalidating_app(**settings: Any) -> Any:
    """The contract app with a revalidate hook: the identity ``revoked`` may not stay."""
    # heartbeat 2 s: the sweeper (which runs revalidation) passes every 0.5 s.
    app = make_app(**{**LIVE_DEFAULTS, "revalidate_interval": 0.3, "heartbeat": 2.0, **settings})
    checked: list[Any] = []

    async def still_allowed(channel: Channel) -> bool:
        checked.append(channel.identity)
        return bool(channel.identity != {"user": "revoked"})

    app.extensions["transports"].revalidate(still_allowed)
    app.config["CHECKED"] = checked
    return app


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_d4_revoked_connection_closed_4501(transport: TransportName) -> None:
    """D4 (authentication expires while subscribed): the revalidate hook answering False closes
    that connection with 4501 (terminal) within the revalidation interval plus one sweep;
    nothing is delivered afterwards; a connection still allowed (the control) stays."""
    async with live_server(revalidating_app()) as live:
        wire = await live.wire(transport, headers={"Authorization": "Bearer revoked"})
        witness = await live.wire("websocket")  # still allowed, subscribed to the same topic
        await wire.send('[5,1,"d4",null]')
        await wire.reply(1)
        await witness.send('[5,1,"d4",null]')
        await witness.reply(1)
        session = live.engine.sessions.by_sid[wire.token.split(".")[2]]
        assert await wire.closed(timeout=10) == 4501
        # The server side of "nothing delivered afterwards": the revoked session left the
        # topic and its outbox takes no frame after its CLOSE (the client side cannot tell:
        # its connection is over).
        assert session.close_code == 4501
        assert live.engine.hub.subscribers("d4") == 1  # the witness only
        last = session.last_seq
        await live.realtime.publish("d4", "after", 1)
        assert (await witness.recv())[:4] == [1, "d4", "after", 1]  # the fan-out is done
        assert session.last_seq == last, "a frame was queued on the revoked session"
        if transport == "longpoll":  # the token asks again: nothing, the session is gone
            async with live.http.get(
                live.url + f"/poll?cursor={wire.cursor}",
                headers={"X-Realtime-Session": wire.token},
            ) as response:
                assert response.status == 404, (response.status, await response.read())
        assert not any(isinstance(f, list) and f[:2] == [1, "d4"] for f in wire.seen)
        assert {"user": "revoked"} in live.app.config["CHECKED"]
        assert live.engine.stats["revoked"] == 1
        await live.check_alive()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_d5_subscription_limit(transport: TransportName) -> None:
    """D5: with ``max_subscriptions`` 3, a fourth topic answers ``subscription_limit``; the
    three existing subscriptions keep delivering, and subscribing again to one of them is not a
    new subscription."""
    async with live_server(max_subscriptions=3) as live:
        wire = await live.wire(transport)
        for ref, topic in enumerate(["d5a", "d5b", "d5c"], start=1):
            await wire.send(json.dumps([5, ref, topic, None]))
            assert (await wire.reply(ref))[:3] == [4, ref, "ok"]
        await wire.send('[5,4,"d5d",null]')
        limited = await wire.reply(4)
        assert limited[:3] == [4, 4, "subscription_limit"]
        await wire.send('[5,5,"d5a",null]')
        assert (await wire.reply(5))[:3] == [4, 5, "ok"]
        for topic in ("d5a", "d5b", "d5c", "d5d"):
            await live.realtime.publish(topic, "n", topic)
        got = [(await wire.recv())[3] for _ in range(3)]
        assert sorted(got) == ["d5a", "d5b", "d5c"]
        assert live.engine.hub.subscribers("d5d") == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_d6_duplicate_subscribe_and_stray_unsubscribe(
    live: Live, transport: TransportName
) -> None:
    """D6: subscribing twice to a topic is ``ok`` (it restarts the subscription) and a
    publication afterwards arrives once; unsubscribing a topic never subscribed is ``ok``
    (a no-op) (protocol §2)."""
    wire = await live.wire(transport)
    await wire.send('[5,1,"d6",null]', '[5,2,"d6",null]', '[6,3,"never-d6"]')
    assert (await wire.reply(1))[:3] == [4, 1, "ok"]
    assert (await wire.reply(2))[:3] == [4, 2, "ok"]
    assert await wire.reply(3) == [4, 3, "ok", None]
    assert live.engine.hub.subscribers("d6") == 1
    pubs = await publish_marker(live, wire, "d6")
    assert len(pubs) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_d7_subscribe_unsubscribe_race_then_vanish(transport: TransportName) -> None:
    """D7: 2000 interleaved SUB/UNSUB frames over 20 topics, then a disconnect in the middle of
    a burst of subscriptions: no wedge (an echo right after the storm is answered), the hub
    agrees with the last operation on each topic, and when the client vanishes every topic
    and the session are released (the baseline check)."""
    async with live_server(rate_limit=None) as live:
        wire = await live.wire(transport)
        frames = []
        for i in range(2000):
            topic = f"d7-{i % 20}"
            if (i // 20) % 2 == 0:
                frames.append(json.dumps([5, 10 + i, topic, None]))
            else:
                frames.append(json.dumps([6, 10 + i, topic]))
        for start in range(0, len(frames), 100):
            await wire.send(*frames[start : start + 100])
        await wire.echo(1, "after the storm")
        # The last round of 20 (i // 20 == 99) unsubscribed every topic.
        assert all(live.engine.hub.subscribers(f"d7-{n}") == 0 for n in range(20))
        await wire.send(*[json.dumps([5, 5000 + n, f"d7-{n}", None]) for n in range(20)])
        await wire.reply(5019)
        assert all(live.engine.hub.subscribers(f"d7-{n}") == 1 for n in range(20))
        # Vanish in the middle of a burst of subscriptions: no CLOSE, the connection just goes.
        burst = [json.dumps([5, 6000 + n, f"d7-late-{n}", None]) for n in range(100)]
        if transport == "websocket":
            ws = await live.raw_ws()
            await ws.read_text()
            await ws.send(b"".join(build_frame(TEXT, frame.encode()) for frame in burst))
            await ws.aclose()  # TCP closed without a close handshake
        else:
            other = await live.wire(transport)
            await other.send(*burst)
            other._closed = True  # stop reading or polling; the session expires (session_ttl)
            assert other._reader is not None
            other._reader.cancel()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_d8_authorizer_raising(
    transport: TransportName, caplog: pytest.LogCaptureFixture
) -> None:
    """D8: an authoriser that raises answers ``handler_error``; the connection stays usable;
    the failure is logged once per failing call (with its traceback, and no client data)."""
    app = make_app(**LIVE_DEFAULTS)
    rt = app.extensions["transports"]

    async def flaky_subscribe(channel: Channel, topic: str) -> bool:
        if topic.startswith("boom:"):
            raise RuntimeError("authoriser bug")
        return True

    async def flaky_publish(channel: Channel, topic: str) -> bool:
        if topic.startswith("boom:"):
            raise LookupError("authoriser bug")
        if topic.startswith("reject:"):
            raise Reject("no publishing here")
        return True

    rt.authorize_subscribe(flaky_subscribe)
    rt.authorize_publish(flaky_publish)
    caplog.set_level(logging.ERROR, logger="transports")
    async with live_server(app) as live:
        wire = await live.wire(transport)
        await wire.send('[5,1,"boom:sub",null]')
        failed = await wire.reply(1)
        assert failed[:3] == [4, 1, "handler_error"]
        assert failed[3] == {"message": "the authorizer failed"}
        await wire.send('[10,2,"boom:pub","e",1]', '[10,3,"reject:pub","e",1]')
        assert (await wire.reply(2))[:3] == [4, 2, "handler_error"]
        assert await wire.reply(3) == [4, 3, "forbidden", {"message": "no publishing here"}]
        await wire.echo(4)
        assert live.engine.hub.subscribers("boom:sub") == 0
    records = [r for r in caplog.records if "authorizer failed" in r.getMessage()]
    assert len(records) == 2, [r.getMessage() for r in caplog.records]
    assert all(r.exc_info is not None for r in records)
    assert not any("boom:" in r.getMessage() for r in records)


# --- E: credentials -------------------------------------------------------------------------


async def test_e2_token_of_an_ended_session(live: Live) -> None:
    """E2 (a session that just ended, rather than expired): once a long-poll session has
    ended (here the client sent CLOSE), its token answers ``404 unknown_session`` at once, on
    POST and on poll: never a 5xx, never a session brought back to life."""
    info = await live.negotiate(["longpoll"])
    headers = {"X-Realtime-Session": info["token"], "Content-Type": "application/json"}
    async with live.http.get(live.url + "/poll?cursor=0", headers=headers) as response:
        assert response.status == 200
    async with live.http.post(live.url + "/send", data=b'[[9,1000,"bye"]]', headers=headers) as r:
        assert r.status == 204
    await live.baseline.freed_now()  # freed by the CLOSE itself, not by expiry
    async with live.http.post(
        live.url + "/send", data=b'[[3,1,"count",{"key":"e2"}]]', headers=headers
    ) as response:
        assert response.status == 404
        assert (await response.json())["error"] == "unknown_session"
    async with live.http.get(live.url + "/poll?cursor=0", headers=headers) as response:
        status, body = response.status, await response.read()
    assert status != 200, "the ended session came back to life"
    assert live.engine.session_count == live.baseline.sessions
    assert live.applied["e2"] == 0
    expect(status == 404 and b"unknown_session" in body, f"poll answered {status}: {body[:80]!r}")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_e3_session_bound_to_its_identity(live: Live, transport: TransportName) -> None:
    """E3 (valid session used with another user's credentials). By design the session token
    (or ticket) is the credential, bound to the identity ``on_connect`` returned: later
    ``Authorization`` headers are not consulted, so another user's header neither takes over
    the session nor changes who it is. Proven: a request with user B's header on user A's
    session acts as A; a token spliced from A's MAC and B's session id is refused (401)."""
    alice = await live.wire(transport, headers={"Authorization": "Bearer alice"})
    bob = await live.wire("longpoll", headers={"Authorization": "Bearer bob"})
    if transport == "websocket":
        await alice.send('[3,1,"whoami",null]')
    else:
        status, _ = await alice.post(
            b'[[3,1,"whoami",null]]', headers={"Authorization": "Bearer bob"}
        )
        assert status == 204
    assert (await alice.reply(1))[3]["identity"] == {"user": "alice"}
    _, node, _, alice_mac = alice.token.split(".")
    bob_sid = bob.token.split(".")[2]
    spliced = f"v1.{node}.{bob_sid}.{alice_mac}"
    async with live.http.post(
        live.url + "/send",
        data=b'[[3,1,"count",{"key":"e3"}]]',
        headers={"Content-Type": "application/json", "X-Realtime-Session": spliced},
    ) as response:
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"
    assert live.applied["e3"] == 0
    await bob.echo(2)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_e4_replayed_message_applied_once(live: Live, transport: TransportName) -> None:
    """E4: an EVENT sent again with the same ref (a replayed POST, a resent WebSocket frame,
    or a retry on a new session with the same client key) is acknowledged with the same reply
    and applied once (protocol §8)."""
    key = "e4-client-key-" + transport
    wire = await live.wire(transport, client=key)
    frame = '[3,5,"count",{"key":"e4"}]'
    await wire.send(frame)
    assert await wire.reply(5) == [4, 5, "ok", 1]
    await wire.send(frame)  # the same bytes again (a replayed POST on SSE/long-poll)
    assert await wire.reply(5) == [4, 5, "ok", 1]
    await wire.close()
    again = await live.wire(transport, client=key)  # a new session, the same client
    await again.send(frame)
    assert await again.reply(5) == [4, 5, "ok", 1]
    assert live.applied["e4"] == 1
    assert live.engine.stats["retries_answered"] >= 2


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_e6_expired_ticket(live: Live, transport: TransportName) -> None:
    """E6 (expired ticket): a ticket used after ``ticket_ttl`` is refused with
    ``401 ticket_expired`` and opens nothing (the server's wall clock is moved past expiry)."""
    info = await live.negotiate([transport])
    real = live.engine.wallclock
    live.engine.wallclock = lambda: real() + 3600
    try:
        if transport == "websocket":
            ws = await live.raw_ws(info["ticket"])
            assert ws.reply.status == 401
            body = json.loads(await ws.refusal())
            await ws.aclose()
        else:
            async with live.http.get(live.url + "/sse?ticket=" + info["ticket"]) as response:
                assert response.status == 401
                body = await response.json()
    finally:
        live.engine.wallclock = real
    assert body == {"error": "ticket_expired", "message": "ticket expired"}
    assert live.engine.stats["opened"] == 1  # the control client only


MALFORMED = ["undefined", "null", "0", "v1.", "v1...", "a" * 300, "v1.\u00fc.x.y", "../../x"]


async def test_e7_malformed_ids_refused_before_lookup(live: Live) -> None:
    """E7: malformed session tokens and tickets (``undefined``, empty parts, 300 characters,
    non-ASCII, path characters) are refused with 401 on poll, send, SSE and WebSocket, before
    any lookup: no session comes to life and nothing is applied."""
    before = live.engine.stats["negotiated"], live.engine.stats["opened"]
    headers_for: dict[str, str] = {"Content-Type": "application/json"}
    for value in MALFORMED:
        token_headers = {**headers_for, "X-Realtime-Session": value.encode().decode("latin-1")}
        async with live.http.get(live.url + "/poll?cursor=0", headers=token_headers) as r:
            assert (r.status, (await r.json())["error"]) == (401, "unauthorized")
        async with live.http.post(
            live.url + "/send", data=b'[[3,1,"count",{"key":"e7"}]]', headers=token_headers
        ) as r:
            assert (r.status, (await r.json())["error"]) == (401, "unauthorized")
        async with live.http.get(live.url + "/sse", params={"ticket": value}) as r:
            assert (r.status, (await r.json())["error"]) == (401, "ticket_invalid")
    ws = await live.raw_ws("undefined")
    assert ws.reply.status == 401
    await ws.aclose()
    assert (live.engine.stats["negotiated"], live.engine.stats["opened"]) == before
    assert live.applied["e7"] == 0


async def test_e8_guessing_flood_throttled_others_unaffected(live: Live) -> None:
    """E8: one address presenting 300 wrong session tokens as fast as it can gets 401/404 until
    its budget of refused credentials is spent (burst 50), then ``429 rate_limited`` with
    ``Retry-After``, before any lookup, except what the budget's refill (10/s) lets through; a
    valid session of another address keeps working throughout, and nothing is created."""
    honest = await live.wire("longpoll")
    node = honest.token.split(".")[1]
    rate = live.engine.settings.auth_failure_rate
    burst = live.engine.settings.auth_failure_burst
    assert rate is not None
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    statuses: list[int] = []
    retry_after: set[str] = set()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession(connector=connector) as attacker:
        for n in range(300):
            guess = f"v1.{node}.{n:022d}.{'A' * 22}"
            async with attacker.get(
                live.url + "/poll?cursor=0", headers={"X-Realtime-Session": guess}
            ) as r:
                statuses.append(r.status)
                if r.status == 429:
                    retry_after.add(r.headers.get("Retry-After", ""))
            if n == 150:
                await honest.echo(1, "during the flood")
    elapsed = loop.time() - started
    assert set(statuses) <= {401, 404, 429}
    first = statuses.index(429)
    refill = rate * elapsed + 1  # the budget refills at `rate` per second
    assert burst <= first <= burst + refill, (first, elapsed)
    assert sum(1 for s in statuses[first:] if s != 429) <= refill
    assert retry_after and all(v.isdigit() and int(v) >= 1 for v in retry_after)
    assert live.engine.stats["refused_credentials"] >= burst
    assert live.engine.session_count == live.baseline.sessions + 1  # the honest one only
    await honest.echo(2, "after the flood")


async def test_e9_no_secrets_in_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """E9: with Hypercorn's access log written to a file (in a format that includes query
    strings) and every app log captured, a run of negotiate (with a bearer token), WebSocket,
    SSE, long-poll and POST leaves neither a ticket, a session token (nor its id or MAC) nor
    the bearer token in any log; the access log does show the requests, with
    ``ticket=[redacted]``."""
    access = tmp_path / "access.log"
    errors = tmp_path / "error.log"
    bearer = "bearer-e9-" + "s3cr3t" * 4
    caplog.set_level(logging.DEBUG)
    config = {
        "accesslog": str(access),
        "errorlog": str(errors),
        "loglevel": "DEBUG",
        # The default format leaves query strings out; this one logs them (%(R)s).
        "access_log_format": '%(h)s "%(R)s" %(s)s "%(f)s" "%(a)s"',
    }
    secrets: list[str] = [bearer]
    try:
        written, captured = await run_and_read_logs(config, bearer, secrets, access, errors, caplog)
    finally:
        for name in ("hypercorn.access", "hypercorn.error"):
            logger = logging.getLogger(name)
            for handler in logger.handlers:
                handler.close()
            logger.handlers = []
            logger.setLevel(logging.NOTSET)
    assert "GET /realtime/ws?ticket=[redacted]" in written
    assert "GET /realtime/sse?ticket=[redacted]" in written
    assert "POST /realtime/send" in written and "GET /realtime/poll?cursor=" in written
    leaks = [s for s in secrets if s in written or s in captured]
    expect(not leaks, f"secrets in the logs: {leaks}")


async def run_and_read_logs(
    config: dict[str, Any],
    bearer: str,
    secrets: list[str],
    access: Path,
    errors: Path,
    caplog: pytest.LogCaptureFixture,
) -> tuple[str, str]:
    """E9's run: every transport, an error or two; the logs written and captured."""
    async with live_server(hypercorn=config) as live:
        auth = {"Authorization": "Bearer " + bearer}
        for transport in TRANSPORTS:
            wire = await live.wire(transport, headers=auth)
            secrets += [wire.info["ticket"], wire.token, *wire.token.split(".")[2:]]
            await wire.send('[3,1,"fail",null]', '[5,2,"e9",null]')
            await wire.reply(1)
            await wire.reply(2)
            await wire.echo(3)
        poll = await live.negotiate(["longpoll"], headers=auth)
        secrets += [poll["ticket"], poll["token"]]
        async with live.http.get(
            live.url + "/poll?cursor=abc", headers={"X-Realtime-Session": poll["token"]}
        ) as r:
            assert r.status == 400
        async with live.http.get(live.url + "/sse?ticket=" + poll["ticket"] + "x") as r:
            assert r.status == 401
    written = access.read_text() + errors.read_text()
    captured = "\n".join(
        record.getMessage()
        + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        for record in caplog.records
    )
    return written, captured


# --- F: origins and CORS --------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_f2_missing_origin_allowed(transport: TransportName) -> None:
    """F2: a request without ``Origin`` (a non-browser client, or a same-origin GET) is
    allowed on negotiate and every transport: authentication is the ticket or token the
    client got from negotiate (never a cookie), so an absent ``Origin`` grants nothing a
    foreign page could use (docs/security.md, Origin). Proven on a server with an allow-list
    (so CORS headers are in play): the requests are served, and their answers carry no
    ``Access-Control-*`` header, while the same negotiate from the allowed origin does."""

    def cors(headers: Any) -> list[str]:
        return [name for name in headers if name.lower().startswith("access-control-")]

    async with live_server(allowed_origins=("https://app.example",)) as live:
        wire = await live.wire(transport)  # aiohttp sends no Origin header
        await wire.echo(1)
        for origin, granted in ((None, False), ("https://app.example", True)):
            headers = {} if origin is None else {"Origin": origin}
            async with live.http.post(
                live.url + "/negotiate", json={"transports": [transport]}, headers=headers
            ) as response:
                assert response.status == 200
                assert bool(cors(response.headers)) is granted, (origin, response.headers)
                ticket = (await response.json())["ticket"]
            if transport == "longpoll":
                continue
            if transport == "websocket":
                ws = await live.raw_ws(ticket, headers=headers)
                assert ws.accepted
                assert not cors(ws.reply.headers), ws.reply.headers
                await ws.aclose()
            else:
                async with live.http.get(
                    live.url + "/sse?ticket=" + ticket,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    assert response.status == 200
                    assert bool(cors(response.headers)) is granted, (origin, response.headers)
        if transport != "websocket":
            send = {"Content-Type": "application/json", "X-Realtime-Session": wire.token}
            async with live.http.post(live.url + "/send", data=b"[[7]]", headers=send) as r:
                assert r.status == 204
                assert not cors(r.headers), r.headers


@pytest.mark.parametrize(
    "path",
    ["/realtime/send", "/realtime/negotiate", "/realtime/poll?cursor=0", "/realtime/sse"],
)
async def test_f5_preflight(path: str) -> None:
    """F5: a preflight from an allowed origin gets that exact origin back with ``Vary:
    Origin``, credentials, only ``GET, POST`` and the protocol's headers; from a foreign origin
    (or with no allow-list) no CORS header at all; ``*`` never comes with credentials."""

    async def preflight(live: Live, origin: str) -> dict[str, str]:
        request = (
            f"OPTIONS {path} HTTP/1.1\r\nHost: {live.host}:{live.port}\r\nOrigin: {origin}\r\n"
            "Access-Control-Request-Method: POST\r\n"
            "Access-Control-Request-Headers: content-type, x-realtime-session\r\n\r\n"
        ).encode()
        answer = await live.raw(request, wait=10)
        assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 204"))
        head = answer.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head)}

    async with live_server(allowed_origins=("https://app.example",)) as live:
        allowed = await preflight(live, "https://app.example")
        assert allowed["access-control-allow-origin"] == "https://app.example"
        assert allowed["access-control-allow-credentials"] == "true"
        assert "Origin" in allowed["vary"]
        assert allowed["access-control-allow-methods"] == "GET, POST"
        assert "X-Realtime-Session" in allowed["access-control-allow-headers"]
        foreign = await preflight(live, "https://evil.example")
        assert not any(k.startswith("access-control-") for k in foreign)
        suffix = await preflight(live, "https://app.example.evil.com")
        assert not any(k.startswith("access-control-") for k in suffix)
    async with live_server() as live:
        default = await preflight(live, "https://app.example")
        assert not any(k.startswith("access-control-") for k in default)
    async with live_server(allowed_origins=("*",)) as live:
        anyone = await preflight(live, "https://anyone.example")
        assert anyone["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in anyone


# --- G4: path tricks ------------------------------------------------------------------------


G4_PATHS = [
    "//realtime/poll?cursor=0",
    "/realtime//poll?cursor=0",
    "/realtime/poll/?cursor=0",
    "/REALTIME/poll?cursor=0",
    "/realtime/POLL?cursor=0",
    "/realtime/%70oll?cursor=0",
    "/realtime/%2fpoll",
    "/realtime/%2f%2fevil.example/poll",
    "/realtime/%252e%252e/poll",
    "/realtime/./poll?cursor=0",
    "/realtime/../realtime/poll?cursor=0",
    "/x/../realtime/send",
    "/realtime/poll;jsessionid=1?cursor=0",
    "/realtime/send%00",
    "/realtime/send%2f",
    "/realtime/%73end",
]


@pytest.mark.parametrize("path", G4_PATHS)
async def test_g4_path_tricks_never_bypass_auth(live: Live, path: str) -> None:
    """G4: double slashes, trailing slashes, case changes, percent-encoded and double-encoded
    segments, dot segments, path parameters, NUL: each lands on the canonical route (whose
    authentication still refuses: 401), a JSON 404 or 405, or a 308 redirect to a path on the
    same origin; never a 2xx, never a 5xx, never an open redirect."""
    for method in ("GET", "POST"):
        request = (
            f"{method} {path} HTTP/1.1\r\nHost: {live.host}:{live.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 28\r\n\r\n"
            '[[3,1,"count",{"key":"g4"}]]'
        ).encode()
        answer = await live.raw(request, wait=10)
        status = int(answer[9:12])
        assert status in (308, 401, 404, 405), (method, answer[:200])
        if status == 308:
            location = re.search(rb"\r\nlocation: ([^\r]*)", answer, re.IGNORECASE)
            assert location is not None
            assert location.group(1).decode().startswith(live.url + "/")
    assert live.applied["g4"] == 0


# --- O3: a negotiate whose response is lost --------------------------------------------------


async def test_o3_lost_negotiate_leaves_no_orphan() -> None:
    """O3: negotiations whose response never reaches the client (the client resets the
    connection) leave no session in the process and use none of the address's session budget;
    an unused negotiation expires after ``ticket_ttl``: its ticket answers
    ``401 ticket_expired`` and its token ``404 unknown_session``."""
    async with live_server(ticket_ttl=1.0, max_sessions_per_address=3) as live:
        request = (
            f"POST /realtime/negotiate HTTP/1.1\r\nHost: {live.host}:{live.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        ).encode()
        for _ in range(5):
            _, writer = await asyncio.open_connection(live.host, live.port)
            writer.write(request)
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()  # RST: the response is lost
        # the control client's and the 5 lost
        await eventually(lambda: live.engine.stats["negotiated"] == 6)
        assert live.engine.session_count == live.baseline.sessions
        # The lost ones took none of the budget of 3 (the control client holds 1).
        first, second = await live.wire("longpoll"), await live.wire("sse")
        async with live.http.post(live.url + "/negotiate", json={}) as response:
            assert response.status == 429
            assert (await response.json())["error"] == "too_many_connections"
        await first.close()
        await second.close()
        await live.baseline.freed_now()  # left with CLOSE: freed at once, budget back
        unused = await live.negotiate(["longpoll", "sse"])
        started = time.monotonic()
        await asyncio.sleep(max(0.0, 1.6 - (time.monotonic() - started)))
        async with live.http.get(live.url + "/sse?ticket=" + unused["ticket"]) as response:
            assert response.status == 401
            assert (await response.json())["error"] == "ticket_expired"
        async with live.http.get(
            live.url + "/poll?cursor=0", headers={"X-Realtime-Session": unused["token"]}
        ) as response:
            status = response.status
        if status == 200:  # it came to life: leave properly so the baseline holds
            async with live.http.post(
                live.url + "/send",
                data=b'[[9,1000,""]]',
                headers={"Content-Type": "application/json", "X-Realtime-Session": unused["token"]},
            ):
                pass
        expect(status == 404, f"a first poll after ticket_ttl answered {status}, not 404")
