"""Re-authentication without loss (policy ``reauthenticate``): the Python client, on every
transport and server mode, against a ``revalidate`` hook that refuses expired tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from transports.client import Client
from transports.client.negotiate import CredentialsRefused
from transports.typing import TransportName

from .conftest import TRANSPORTS, Server, eventually
from .reauth_app import SETTINGS, install_expiry


class Tokens:
    """A token function: ``alice.1``, ``alice.2``... or, once ``then`` is set, what it says."""

    def __init__(self) -> None:
        self.issued: list[Any] = []
        self.calls = 0
        self.then: Callable[[], Any] | None = None

    async def __call__(self) -> Any:
        self.calls += 1
        if self.then is not None and self.issued:
            token = self.then()
        else:
            token = f"alice.{len(self.issued) + 1}"
        self.issued.append(token)
        return token


def record(client: Client) -> list[tuple[float, str]]:
    states: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()
    client.on("state", lambda state: states.append((loop.time(), state)))
    return states


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_expired_token_is_renewed_without_loss(
    serve: Callable[..., Any], transport: TransportName
) -> None:
    server: Server = await serve(**SETTINGS)
    expiry = install_expiry(server.realtime)
    tokens = Tokens()
    client = await server.client(transport, token=tokens)
    states = record(client)
    got: list[int] = []
    await client.subscribe("feed", lambda message: got.append(message.data))
    total = 60

    async def publish() -> None:
        for n in range(total):
            await server.realtime.publish("feed", "n", n)
            await asyncio.sleep(0.02)

    publisher = asyncio.create_task(publish())
    await eventually(lambda: len(got) >= 10)
    expiry.expired.add("alice.1")  # the app's revalidate hook now refuses the first token
    # A send in flight when the session ends: the handler takes 0.6 s, the hook runs sooner.
    sent = asyncio.create_task(client.send("count", {"key": "reauth", "delay": 0.6}, timeout=10))
    await publisher
    assert await sent == 1
    await eventually(lambda: len(got) >= total, timeout=10)
    await asyncio.sleep(0.3)
    assert got == list(range(total))  # nothing lost, nothing doubled
    assert server.applied["reauth"] == 1  # the send in flight applied once
    assert expiry.refused == ["alice.1"]
    assert tokens.issued == ["alice.1", "alice.2"]
    assert client.stats["reauthentications"] == 1
    assert client.state == "open" and client.closed is None
    assert (await client.send("whoami"))["identity"] == {"user": "alice"}
    assert [state for _, state in states] == ["reconnecting", "open"]
    gap = states[1][0] - states[0][0]
    print(f"\n{server.mode} {transport}: renewed, reconnecting -> open in {gap * 1000:.0f} ms")
    assert gap < 2.0, gap  # at once, no backoff


@pytest.mark.parametrize(
    ("then", "why"),
    [
        (lambda: None, "the token function gave no token"),
        (lambda: "", "the token function gave no token"),
        (lambda: "nope", "the server refused the new token (401)"),
        (lambda: 1 / 0, "the token function failed"),
        (lambda: "alice.1", "again at once"),
    ],
    ids=["none", "empty", "refused", "raises", "same-expired"],
)
async def test_a_renewal_that_fails_closes_with_credentials_refused(
    serve: Callable[..., Any], then: Callable[[], Any], why: str
) -> None:
    server: Server = await serve(**SETTINGS)
    expiry = install_expiry(server.realtime)
    tokens = Tokens()
    tokens.then = then
    client = await server.client("websocket", token=tokens)
    errors: list[Exception] = []
    client.on("error", errors.append)
    await client.subscribe("feed")
    expiry.expired.add("alice.1")
    await eventually(lambda: client.state == "closed", timeout=10)
    assert client.closed is not None
    assert (client.closed.code, client.closed.reason) == (4501, "credentials refused")
    assert isinstance(errors[-1], CredentialsRefused) and why in str(errors[-1])
    assert client.stats["reauthentications"] == (1 if why == "again at once" else 0)
    with pytest.raises(Exception, match="4501"):
        await client.send("echo", 1)
    await asyncio.sleep(0.5)
    assert tokens.calls == 2  # one renewal per 4501: no loop


async def test_a_fixed_token_cannot_be_renewed(serve: Callable[..., Any]) -> None:
    server: Server = await serve(**SETTINGS)
    expiry = install_expiry(server.realtime)
    client = await server.client("websocket", token="alice.1")
    expiry.expired.add("alice.1")
    await eventually(lambda: client.state == "closed", timeout=10)
    assert client.closed is not None
    # The server's own close (the in-process test connector drops close reasons).
    assert client.closed.code == 4501
    assert client.closed.reason in ("authentication expired", "")
    assert client.stats["reauthentications"] == 0
