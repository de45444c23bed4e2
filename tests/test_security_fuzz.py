"""Security fuzzing: the decoders, and the HTTP endpoints with arbitrary bodies, headers and
query strings (catalogue G7 and the fuzz half of ISSUE 8).

Decoders (pure): every parser of client input either returns or raises the library's documented
error, nothing else; the frame decoders' own properties are in tests/test_frames.py.

Endpoints (a real Hypercorn on loopback, one server per test, examples in a row): whatever the
body, headers and query string, the answer is never a 5xx, an error answer has the JSON body
``{"error", "message"}``, and when the examples are done the server still serves: the control
client echoes and sessions, topics and library tasks are back to their baseline.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from yarl import URL

from transports.exceptions import ProtocolError, TicketError
from transports.protocol.frames import decode_server_frame
from transports.protocol.longpoll import decode_poll, parse_cursor
from transports.protocol.negotiation import parse_negotiate
from transports.protocol.origin import normalize_origin, origin_allowed
from transports.protocol.sse import SSEParser, parse_last_event_id
from transports.protocol.tokens import TokenSigner, identity_fingerprint, parse_session_token

from .secharness import Live, Wire, live_server

DECODER = settings(max_examples=200, deadline=None)
ENDPOINT = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SIGNER = TokenSigner(b"fuzzing-secret-key-0123456789")

# --- decoders ------------------------------------------------------------------------------

ascii_junk = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=80)
token_like = st.builds(
    ".".join,
    st.lists(
        st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=30),
        min_size=1,
        max_size=6,
    ),
)


@DECODER
@given(st.binary(max_size=5000))
def test_fuzz_parse_negotiate(body: bytes) -> None:
    """Negotiate bodies: a request, or ``ProtocolError``/``PayloadTooBig`` (its subclass)."""
    try:
        parse_negotiate(body)
    except ProtocolError:
        pass


@DECODER
@given(
    st.dictionaries(
        st.sampled_from(["v", "client", "transports", "x"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=70),
            lambda c: st.lists(c, max_size=10),
            max_leaves=12,
        ),
    )
)
def test_fuzz_parse_negotiate_shapes(value: dict[str, Any]) -> None:
    """Negotiate objects of every shape: a request or ``ProtocolError``."""
    try:
        request = parse_negotiate(json.dumps(value).encode())
    except ProtocolError:
        return
    assert request.version == 1


@DECODER
@given(st.one_of(st.none(), st.text(max_size=40), ascii_junk))
def test_fuzz_cursor_and_last_event_id(value: str | None) -> None:
    """``cursor`` and ``Last-Event-ID``: a non-negative integer of at most 16 digits, or the
    documented error (``ProtocolError``; ``ValueError`` for the header)."""
    try:
        cursor = parse_cursor(value)
        assert 0 <= cursor < 10**16
    except ProtocolError as exc:
        assert exc.code == "bad_request"
    try:
        last = parse_last_event_id(value)
        assert last is None or 0 <= last < 10**16
    except ValueError:
        pass


B64URL = string.ascii_letters + string.digits + "-_"
b64url = st.text(alphabet=B64URL, min_size=1, max_size=40)
well_formed_token = st.builds(
    "v1.{}.{}.{}".format,
    st.text(alphabet=B64URL, min_size=1, max_size=32),
    st.text(alphabet=B64URL, min_size=22, max_size=22),
    b64url,
)
"""Shaped like a session token (``parse_session_token`` accepts it), so verifying it reaches
the MAC check."""
well_formed_ticket = st.builds(
    "{}.{}.{}.{}.{}".format,
    st.text(alphabet=B64URL, min_size=1, max_size=32),
    st.text(alphabet=B64URL, min_size=22, max_size=22),
    st.integers(0, 10**12 - 1),
    b64url,
    b64url,
)
"""Shaped like a connect ticket, so verifying it reaches the MAC check."""
identities = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.dictionaries(st.sampled_from(["user", "role", "x"]), st.text(max_size=10), max_size=3),
)


def test_fuzz_session_tokens_and_tickets() -> None:
    """Session tokens and tickets: only ``TicketError`` for anything not minted by the key;
    a token shaped right (so ``verify_session_token`` gets past the parse to the MAC) is
    fuzzed often, and counted, so the MAC check itself is what gets fuzzed."""
    reached: Counter[str] = Counter()

    @DECODER
    @given(
        st.one_of(st.none(), st.text(max_size=250), token_like, well_formed_token),
        st.one_of(st.none(), st.text(max_size=250), token_like, well_formed_ticket),
        identities,
    )
    def run(token: str | None, ticket: str | None, identity: Any) -> None:
        try:
            node, sid = parse_session_token(token)
        except TicketError as exc:
            assert exc.code == "unauthorized"
        else:
            assert token is not None and token.startswith(f"v1.{node}.{sid}.")
            reached["token parsed"] += 1
        with pytest.raises(TicketError):
            SIGNER.verify_session_token(token or "", identity)
        with pytest.raises(TicketError) as refused:
            SIGNER.verify_ticket(ticket, 0.0)
        reached[refused.value.message] += 1  # "ticket refused": the MAC was checked

    run()
    assert reached["token parsed"] >= 20, reached
    assert reached["ticket refused"] >= 20, reached


@DECODER
@given(
    node=st.text(alphabet=B64URL, min_size=1, max_size=32),
    sid=st.text(alphabet=B64URL, min_size=22, max_size=22),
    identity=identities,
    other=identities,
    position=st.integers(min_value=0),
    replacement=st.sampled_from(B64URL + "."),
)
def test_fuzz_session_token_tampered(
    node: str, sid: str, identity: Any, other: Any, position: int, replacement: str
) -> None:
    """A token the key minted verifies, for its own identity only; the same token with any one
    character changed is refused (``TicketError``), whatever the character and the place."""
    token = SIGNER.session_token(node, sid, identity)
    assert SIGNER.verify_session_token(token, identity) == (node, sid)
    if identity_fingerprint(other) != identity_fingerprint(identity):
        with pytest.raises(TicketError):
            SIGNER.verify_session_token(token, other)
    index = position % len(token)
    assume(token[index] != replacement)
    tampered = token[:index] + replacement + token[index + 1 :]
    with pytest.raises(TicketError):
        SIGNER.verify_session_token(tampered, identity)


OWN_ORIGIN = "http://app.example:8000"
ALLOWED_ORIGINS = ("https://app.example", "http://localhost:3000")
ADMITTED = {normalize_origin(o) for o in (OWN_ORIGIN, *ALLOWED_ORIGINS)}
ADMITTED_PARTS = [("http", "app.example", 8000), ("https", "app.example", 443)]
ADMITTED_PARTS += [("http", "localhost", 3000)]


def spell(parts: tuple[str, str, int], case: int, ws: bool, port: bool, slash: bool) -> str:
    """An admitted origin as a browser or proxy may spell it: any letter case (bits of
    ``case``), ``ws``/``wss`` for ``http``/``https``, an explicit default port, a final ``/``."""
    scheme, host, number = parts
    if ws:
        scheme = {"http": "ws", "https": "wss"}[scheme]
    default = number in (80, 443)
    text = f"{scheme}://{host}" + (f":{number}" if port or not default else "") + "/" * slash
    return "".join(c.upper() if case >> i & 1 else c for i, c in enumerate(text))


def near_miss(parts: tuple[str, str, int], how: int) -> str:
    """An admitted origin changed in one place (port, scheme, host suffix or prefix, a path,
    a user, a query)."""
    scheme, host, number = parts
    other = "https" if scheme == "http" else "http"
    return [
        f"{scheme}://{host}:{number + 1}",
        f"{other}://{host}:{number}",
        f"{scheme}://{host}.evil.com:{number}",
        f"{scheme}://evil-{host}:{number}",
        f"{scheme}://{host}:{number}/path",
        f"{scheme}://user@{host}:{number}",
        f"{scheme}://{host}:{number}?q",
        f"{scheme}://{host}:{number}#f",
        f"{scheme}:{host}:{number}",
        f"{scheme}://{host[:-1]}:{number}",
        "null",
    ][how]


origins = st.one_of(
    st.text(max_size=120),
    st.builds(
        spell,
        st.sampled_from(ADMITTED_PARTS),
        st.integers(0, 2**40),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    st.builds(near_miss, st.sampled_from(ADMITTED_PARTS), st.integers(0, 10)),
)


def test_fuzz_origins() -> None:
    """Origins: normalised or None, never an exception; allowed exactly when the origin names
    the server's own origin or an entry of the allow-list (scheme, host and port, after
    normalising), never by suffix or substring. Both outcomes are generated often and
    counted."""
    outcomes: Counter[bool] = Counter()

    @DECODER
    @given(origins)
    def run(value: str) -> None:
        normalized = normalize_origin(value)
        allowed = origin_allowed(value, OWN_ORIGIN, ALLOWED_ORIGINS)
        outcomes[allowed] += 1
        assert allowed == (normalized is not None and normalized in ADMITTED), normalized
        assert origin_allowed(value, OWN_ORIGIN, ("*",))
        if allowed:
            assert normalize_origin(normalized or "") == normalized  # a fixed point

    run()
    assert outcomes[True] >= 20 and outcomes[False] >= 20, outcomes


@DECODER
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_fuzz_sse_parser(chunks: list[bytes]) -> None:
    """The client's event-stream parser takes any bytes in any chunking without raising."""
    parser = SSEParser()
    for chunk in chunks:
        for event in parser.feed(chunk):
            assert isinstance(event.data, str)


@DECODER
@given(st.binary(max_size=500))
def test_fuzz_poll_and_server_frames(body: bytes) -> None:
    """The client's poll and server-frame decoders: a value or ``ProtocolError``."""
    try:
        decode_poll(body)
    except ProtocolError:
        pass
    try:
        decode_server_frame(body)
    except ProtocolError:
        pass


# --- endpoints -----------------------------------------------------------------------------

FUZZ_SETTINGS = {
    "negotiate_rate": None,
    "auth_failure_rate": None,
    "max_sessions_per_address": None,
    "rate_limit": None,
}

header_name = st.text(
    alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=20
).filter(
    lambda n: (
        n.lower()
        not in (
            "content-length",
            "transfer-encoding",
            "host",
            "connection",
            "upgrade",
            "expect",
            "te",
            "trailer",
            "keep-alive",
        )
    )
)
header_value = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=60,
)
headers_st = st.dictionaries(header_name, header_value, max_size=6)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
        "*/*",
        "application/json, text/plain",
        "application/jsonx",
    ]
)
bodies = st.one_of(
    st.binary(max_size=600),
    st.builds(
        lambda v: json.dumps(v).encode(),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(-(2**70), 2**70)
            | st.floats()
            | st.text(max_size=20),
            lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(max_size=6), c, max_size=4),
            max_leaves=25,
        ),
    ),
    st.builds(
        lambda frames: ("[" + ",".join(frames) + "]").encode(),
        st.lists(
            st.sampled_from(
                [
                    "[7]",
                    "[8]",
                    "[8,1]",
                    '[3,1,"echo",1]',
                    '[3,2,"nope",null]',
                    '[5,3,"t",null]',
                    '[6,4,"t"]',
                    '[10,5,"open:x","e",1]',
                    '[19,6,"echo","AAE="]',
                    '[5,7,"$bad",null]',
                    '[5,8,"t",["e",1]]',
                    "[99]",
                    '["x"]',
                    "{}",
                ]
            ),
            max_size=8,
        ),
    ),
)
query_part = st.text(max_size=30).map(lambda t: quote(t, safe=""))
query_st = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "cursor",
                "ticket",
                "lastEventId",
                "transport",
                "cursor[]",
                "__proto__",
                "v",
                "",
                "ticket[]",
            ]
        )
        | query_part,
        query_part,
    ),
    max_size=5,
).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))


async def check_answer(response: aiohttp.ClientResponse) -> None:
    """Never a 5xx; an error answer is the JSON ``{"error", "message"}``."""
    body = await response.read()
    assert response.status < 500, (response.status, body[:300])
    if response.status >= 400:
        parsed = json.loads(body)
        assert set(parsed) >= {"error", "message"} and isinstance(parsed["error"], str)


@pytest.fixture
async def fuzzed() -> AsyncIterator[Live]:
    async with live_server(**FUZZ_SETTINGS) as server:
        yield server


@ENDPOINT
@given(body=bodies, content_type=content_types, headers=headers_st)
async def test_fuzz_negotiate(
    fuzzed: Live, body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    """``POST /negotiate`` with arbitrary bodies, content types and headers."""
    sent = {**headers, "Content-Type": content_type}
    async with fuzzed.http.post(fuzzed.url + "/negotiate", data=body, headers=sent) as r:
        await check_answer(r)
        if r.status == 200:
            assert set(await r.json()) >= {"token", "ticket", "transports"}


class Sessions:
    """A valid long-poll and SSE session to fuzz ``POST /send`` with, renewed when a fuzzed
    batch closed one."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.wires: dict[str, Wire] = {}

    async def token(self, transport: str) -> str:
        wire = self.wires.get(transport)
        if wire is None or wire.code is not None:
            wire = self.wires[transport] = await self.live.wire(transport)
        return wire.token


@pytest.fixture
async def sessions(fuzzed: Live) -> Sessions:
    return Sessions(fuzzed)


@ENDPOINT
@given(
    body=bodies,
    content_type=content_types,
    headers=headers_st,
    who=st.sampled_from(["none", "garbage", "longpoll", "sse"]),
)
async def test_fuzz_send(
    fuzzed: Live,
    sessions: Sessions,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    who: str,
) -> None:
    """``POST /send`` with arbitrary bodies and headers, without a session header, with a
    garbage one, and with a valid long-poll or SSE session."""
    sent = {**headers, "Content-Type": content_type}
    sent = {k: v for k, v in sent.items() if k.lower() != "x-realtime-session"}
    if who == "garbage":
        sent["X-Realtime-Session"] = "v1.abc.def.ghi"
    elif who != "none":
        sent["X-Realtime-Session"] = await sessions.token(who)
    async with fuzzed.http.post(fuzzed.url + "/send", data=body, headers=sent) as r:
        await check_answer(r)


@ENDPOINT
@given(query=query_st, headers=headers_st, valid=st.booleans())
async def test_fuzz_poll_query(
    fuzzed: Live, sessions: Sessions, query: str, headers: dict[str, str], valid: bool
) -> None:
    """``GET /poll`` with arbitrary query strings and headers, with and without a valid
    session (a held poll ends at once: a later poll supersedes it, or the window is short)."""
    sent = {k: v for k, v in headers.items() if k.lower() != "x-realtime-session"}
    if valid:
        sent["X-Realtime-Session"] = await sessions.token("longpoll")
    url = URL(fuzzed.url + "/poll?" + query, encoded=True)
    timeout = aiohttp.ClientTimeout(total=5)
    async with fuzzed.http.get(url, headers=sent, timeout=timeout) as r:
        await check_answer(r)


@ENDPOINT
@given(
    path=st.sampled_from(
        ["/negotiate", "/ws", "/sse", "/poll", "/send", "/client.js", "/nothing", "/ws/"]
    ),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    query=query_st,
)
async def test_g7_query_fuzz_every_endpoint(
    fuzzed: Live, path: str, method: str, query: str
) -> None:
    """G7: arbitrary query strings (``transport[]=x``, ``__proto__``, empty keys, huge and
    unicode values, percent-encoded bytes) on every endpoint and method: never a 5xx (the
    engine.io CVE-2023-31125 class)."""
    url = URL(fuzzed.url + path + "?" + query, encoded=True)
    timeout = aiohttp.ClientTimeout(total=5)
    async with fuzzed.http.request(
        method, url, timeout=timeout, data=b"[[7]]", headers={"Content-Type": "application/json"}
    ) as r:
        await check_answer(r)
