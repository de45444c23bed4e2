"""Settings from the environment: ``TRANSPORTS_*`` variables reach ``Realtime.init_app``.

Precedence: keyword arguments > ``app.config`` > environment > defaults (the app's
``SECRET_KEY`` is the signing key's last fallback). Environment strings are read the way config
strings are; a bad value is a ``ValueError`` at start-up that names the variable.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from quart import Quart

from transports import Realtime
from transports.backplanes.memory import MemoryBackplane
from transports.carriers import names
from transports.core.settings import Settings

KEY = "an-environment-key-of-32-bytes!!"


def make(app_config: dict[str, Any] | None = None, **keywords: Any) -> Realtime:
    app = Quart(__name__)
    app.config.update(app_config or {})
    realtime = Realtime(app, **keywords)
    APPS[id(realtime)] = app
    return realtime


APPS: dict[int, Quart] = {}
"""The app of each Realtime that make() built."""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``TRANSPORTS_*`` setting from the shell running the tests leaks in."""
    for name in list(os.environ):
        if name.startswith("TRANSPORTS_") and name[11:].lower() in Settings.__dataclass_fields__:
            monkeypatch.delenv(name)


# --- each kind of setting -----------------------------------------------------------------


def test_str_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSPORTS_URL_PREFIX", "/live")
    monkeypatch.setenv("TRANSPORTS_NODE_ID", "web-1")
    settings = make().settings
    assert settings.url_prefix == "/live"
    assert settings.node_id == "web-1"


def test_float_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSPORTS_HEARTBEAT", "5.5")
    monkeypatch.setenv("TRANSPORTS_POLL_WINDOW", " 12 ")
    settings = make().settings
    assert settings.heartbeat == 5.5
    assert settings.poll_window == 12.0 and isinstance(settings.poll_window, float)


def test_int_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSPORTS_MAX_BATCH", "7")
    monkeypatch.setenv("TRANSPORTS_HISTORY_SIZE", "5000")
    settings = make().settings
    assert settings.max_batch == 7 and isinstance(settings.max_batch, int)
    assert settings.history_size == 5000


def test_nullable_number_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """``none`` turns a limit off, as ``None`` does in code."""
    monkeypatch.setenv("TRANSPORTS_RATE_LIMIT", "none")
    monkeypatch.setenv("TRANSPORTS_MAX_SESSIONS_PER_ADDRESS", "None")
    monkeypatch.setenv("TRANSPORTS_SESSION_TTL", "90")
    settings = make().settings
    assert settings.rate_limit is None
    assert settings.max_sessions_per_address is None
    assert settings.session_ttl == 90.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("false", False), ("0", False), ("off", False), ("no", False), ("TRUE", True), ("1", True)],
)
def test_bool_settings(monkeypatch: pytest.MonkeyPatch, text: str, expected: bool) -> None:
    monkeypatch.setenv("TRANSPORTS_HARDEN_WEBSOCKET_DEFLATE", text)
    assert make().settings.harden_websocket_deflate is expected


def test_tuple_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSPORTS_TRANSPORTS", "sse, longpoll")
    monkeypatch.setenv("TRANSPORTS_ALLOWED_ORIGINS", "https://a.example, https://b.example:8443,")
    settings = make().settings
    assert settings.transports == ("sse", "longpoll")
    assert settings.allowed_origins == ("https://a.example", "https://b.example:8443")


def test_secret_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSPORTS_SECRET_KEY", KEY)
    realtime = make()
    assert realtime.settings.secret_key == KEY.encode()
    # The engine signs with it: a token one process mints verifies in another process.
    other = make()
    sid = "A" * 22
    token = realtime.engine.signer.session_token("n1", sid, {"user": 1})
    assert other.engine.signer.verify_session_token(token, {"user": 1}) == ("n1", sid)


def test_environment_key_and_backplane_make_a_shared_backplane_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scaling recipe: both from the environment, nothing in the code. Without the key the
    extension refuses a shared backplane, as before."""
    monkeypatch.setenv("TRANSPORTS_BACKPLANE", "redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="shared signing key"):
        make()
    monkeypatch.setenv("TRANSPORTS_SECRET_KEY", KEY)
    realtime = make()  # the Redis client connects only when the app starts serving
    assert realtime.settings.backplane == "redis://127.0.0.1:1/0"
    assert not isinstance(realtime.engine.backplane, MemoryBackplane)


def test_unknown_transports_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other programs' variables with the prefix (the tests' own TRANSPORTS_TEST_REDIS) and
    ``extra`` (a mapping, not a string) are not read."""
    monkeypatch.setenv("TRANSPORTS_TEST_REDIS", "whatever")
    monkeypatch.setenv("TRANSPORTS_HEARTBEET", "oops")
    monkeypatch.setenv("TRANSPORTS_EXTRA", "{}")
    settings = make().settings
    assert settings == Settings.from_config({}, {}, names())


# --- precedence ---------------------------------------------------------------------------


def test_precedence_keyword_config_environment_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSPORTS_HEARTBEAT", "5")
    monkeypatch.setenv("TRANSPORTS_POLL_WINDOW", "6")
    monkeypatch.setenv("TRANSPORTS_MAX_BATCH", "7")
    config = {"TRANSPORTS_POLL_WINDOW": 16, "TRANSPORTS_MAX_BATCH": 17}
    settings = make(config, max_batch=27).settings
    assert settings.heartbeat == 5.0  # environment over default
    assert settings.poll_window == 16.0  # config over environment
    assert settings.max_batch == 27  # keyword over config and environment
    assert settings.ticket_ttl == Settings().ticket_ttl  # default


def test_a_bad_environment_value_under_a_config_key_is_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A value another source overrides is never used, so it is never an error."""
    monkeypatch.setenv("TRANSPORTS_HEARTBEAT", "soon")
    assert make({"TRANSPORTS_HEARTBEAT": 9}).settings.heartbeat == 9.0
    assert make(heartbeat=8).settings.heartbeat == 8.0


def test_secret_key_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyword > config > environment > the app's SECRET_KEY."""
    flask_key = "the-app-secret-key-for-cookies!!"
    assert make({"SECRET_KEY": flask_key}).settings.secret_key == flask_key.encode()
    monkeypatch.setenv("TRANSPORTS_SECRET_KEY", KEY)
    assert make({"SECRET_KEY": flask_key}).settings.secret_key == KEY.encode()
    config = {"SECRET_KEY": flask_key, "TRANSPORTS_SECRET_KEY": "k" * 20}
    assert make(config).settings.secret_key == b"k" * 20
    assert make(config, secret_key=b"w" * 16).settings.secret_key == b"w" * 16


def test_environment_is_read_at_init_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Realtime()`` then ``init_app(app)``: the environment at ``init_app`` counts."""
    realtime = Realtime()
    monkeypatch.setenv("TRANSPORTS_RETRY", "2.5")
    realtime.init_app(Quart(__name__))
    assert realtime.settings.retry == 2.5


async def test_negotiate_announces_environment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the clients are told comes from the environment too."""
    monkeypatch.setenv("TRANSPORTS_HEARTBEAT", "7")
    monkeypatch.setenv("TRANSPORTS_TRANSPORTS", "longpoll")
    realtime = make()
    async with APPS[id(realtime)].test_app() as test_app:
        response = await test_app.test_client().post("/realtime/negotiate", json={})
        body = json.loads(await response.get_data())
    assert body["heartbeat"] == 7000
    assert body["transports"] == ["longpoll"]


# --- errors name the variable ------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("TRANSPORTS_HEARTBEAT", "soon", "must be a number"),
        ("TRANSPORTS_HEARTBEAT", "0", "must be positive"),
        ("TRANSPORTS_MAX_BATCH", "1.5", "whole number"),
        ("TRANSPORTS_RATE_LIMIT", "inf", "finite"),
        ("TRANSPORTS_HARDEN_WEBSOCKET_DEFLATE", "maybe", "boolean"),
        ("TRANSPORTS_TRANSPORTS", "websocket,carrier-pigeon", "subset"),
        ("TRANSPORTS_URL_PREFIX", "realtime/", "url_prefix"),
        ("TRANSPORTS_SECRET_KEY", "too-short", "at least 16 bytes"),
    ],
)
def test_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as caught:
        make()
    message = str(caught.value)
    assert message.startswith(f"environment variable {variable}: "), message
    assert says in message
    if variable != "TRANSPORTS_SECRET_KEY":
        assert repr(value) in message or says in ("must be positive", "subset", "url_prefix")
    else:
        assert value not in message  # a secret is never echoed


def test_a_bad_config_value_names_the_config_key() -> None:
    with pytest.raises(ValueError, match=r"^config key TRANSPORTS_MAX_DEPTH: max_depth"):
        make({"TRANSPORTS_MAX_DEPTH": "deep"})


def test_settings_stay_pure() -> None:
    """core/settings.py reads no environment itself: without ``environ`` nothing is read."""
    import inspect

    import transports.core.settings as module

    assert "os.environ" not in inspect.getsource(module)
    assert "import os" not in inspect.getsource(module)


def test_shared_backplane_configured_in_code() -> None:
    """docs/scaling.md's in-code forms: both keywords in one call, or the key in the config
    before ``Realtime(app)``."""
    redis = "redis://127.0.0.1:1/0"
    assert make(backplane=redis, secret_key=KEY).settings.secret_key == KEY.encode()
    assert make({"TRANSPORTS_SECRET_KEY": KEY}, backplane=redis).settings.backplane == redis


def test_presence_and_topics_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSPORTS_PRESENCE", "room:*, lobby")
    monkeypatch.setenv(
        "TRANSPORTS_TOPICS",
        '{"ticker:*": {"history_size": 10, "history_ttl": 30}, "room:quiet": {"presence": false}}',
    )
    settings = make().settings
    assert [(r.pattern, r.events) for r in settings.presence] == [("room:*", True), ("lobby", True)]
    ticker, quiet = settings.topics
    assert (ticker.pattern, ticker.history_size, ticker.history_ttl) == ("ticker:*", 10, 30.0)
    assert quiet.no_presence
    engine = make(presence=["room:*"], topics={"room:quiet": {"presence": False}}).engine
    assert engine.presence.rule("room:1") is not None
    assert engine.presence.rule("room:quiet") is None  # the topics entry shadows room:*
    assert engine.backplane.retention("ticker:9") == (1000, 300.0)  # not this app's rules


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"room:{x}": {}}, "is not a topic pattern"),
        ({"$presence:*": {}}, "is not a topic pattern"),
        ({"ticker:*": {"history": 3}}, "unknown option(s) history for 'ticker:*'"),
        ({"ticker:*": {"history_size": -1}}, "history_size of 'ticker:*' must be"),
        ({"ticker:*": {"history_size": True}}, "history_size of 'ticker:*' must be"),
        ({"ticker:*": {"history_ttl": 0}}, "history_ttl of 'ticker:*' must be"),
        ({"chat:*": {"presence": "yes"}}, "presence of 'chat:*' must be"),
        ({"chat:*": {"presence": {"events": 1}}}, "'events' of 'chat:*' must be"),
        (["ticker:*"], "topics must be a mapping"),
        ("{not json", "topics: not valid JSON"),
    ],
)
def test_bad_topics_are_refused_at_start_up(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        make(topics=value)
    assert message in str(refused.value)


def test_bad_presence_patterns_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSPORTS_PRESENCE", "room:*, bad pattern")
    with pytest.raises(ValueError, match="TRANSPORTS_PRESENCE: presence: 'bad pattern'"):
        make()
    with pytest.raises(ValueError, match="unknown option"):
        make(presence={"room:*": {"event": False}})
