"""Security catalogue F6: cross-site WebSocket hijacking and its HTTP cousins, in real Chromium.

A page served from a second origin (a small static server on another loopback port) attacks
the app (tests/browser/serve_security.py in a subprocess) while the browser holds a cookie for
the app's origin: it tries negotiate (a JSON fetch and a "simple" one), a WebSocket and an
EventSource with tickets the test obtained server-side (a cross-site page cannot obtain its
own: negotiate refuses its Origin and CORS hides the answer), a long-poll with a session token,
and the upstream POST as a simple request, a preflighted JSON request, a beacon and a form.
Each must fail in the browser (no open, no message, nothing readable) and nothing may happen on
the server (the app's counters from ``GET /counters``). The same calls from the app's own origin
work, so the refusals are the origin check's doing, not the harness's.

Catalogue A11 (browser side): the app publishes, sends and echoes payloads holding
``__proto__`` and ``constructor`` keys to the real client in the page, on each transport; the
page checks that ``Object.prototype`` is untouched and that the handlers got ``__proto__`` as an
own data property. (Duplicate keys and 10^5 keys cannot come from the Python server, whose
``json`` never writes a key twice; they are in the JS client's suite,
tests/js/prototype.test.mjs.)
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from .harness import AppServer, open_page, post_json, publish, send_to, wait_for

ATTACK_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>a page on another origin</title>
<iframe name="sink" style="display:none"></iframe>
<script>
const CFG = __CONFIG__;
const results = {};
window.results = results;
const within = (promise, ms) =>
  Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve("timeout"), ms))]);
async function attempt(name, run) {
  try { results[name] = await within(run(), 8000); }
  catch (error) { results[name] = "threw " + error.name; }
}
const batch = '[[3,1,"count",{"key":"f6"}]]';
window.attack = async () => {
  await attempt("negotiate_json", async () => {
    const r = await fetch(CFG.app + "/realtime/negotiate", {method: "POST",
      credentials: "include", headers: {"Content-Type": "application/json"}, body: "{}"});
    return "read " + r.status + " " + (await r.text());
  });
  await attempt("negotiate_simple", async () => {
    const r = await fetch(CFG.app + "/realtime/negotiate", {method: "POST", mode: "no-cors",
      credentials: "include", headers: {"Content-Type": "text/plain"}, body: "{}"});
    return "opaque " + r.type + " " + r.status;
  });
  await attempt("websocket", () => new Promise((resolve) => {
    const events = [];
    const ws = new WebSocket(CFG.ws + "?ticket=" + CFG.wsTicket);
    ws.onopen = () => { events.push("open"); ws.send(JSON.parse(batch)[0].toString()); };
    ws.onmessage = () => events.push("message");
    ws.onerror = () => events.push("error");
    ws.onclose = (e) => { events.push("close " + e.code); resolve(events.join(", ")); };
  }));
  await attempt("eventsource", () => new Promise((resolve) => {
    const events = [];
    const es = new EventSource(CFG.app + "/realtime/sse?ticket=" + CFG.sseTicket,
                               {withCredentials: true});
    es.onopen = () => events.push("open");
    es.onmessage = () => events.push("message");
    es.onerror = () => {
      events.push("error readyState " + es.readyState);
      es.close();
      resolve(events.join(", "));
    };
  }));
  await attempt("poll", async () => {
    const r = await fetch(CFG.app + "/realtime/poll?cursor=0", {credentials: "include",
      headers: {"X-Realtime-Session": CFG.pollToken}});
    return "read " + r.status + " " + (await r.text());
  });
  await attempt("send_simple", async () => {
    const r = await fetch(CFG.app + "/realtime/send", {method: "POST", mode: "no-cors",
      credentials: "include", headers: {"Content-Type": "text/plain"}, body: batch});
    return "opaque " + r.type + " " + r.status;
  });
  await attempt("send_json", async () => {
    const r = await fetch(CFG.app + "/realtime/send", {method: "POST", credentials: "include",
      headers: {"Content-Type": "application/json", "X-Realtime-Session": CFG.sseToken},
      body: batch});
    return "read " + r.status;
  });
  await attempt("beacon", async () => {
    const queued = navigator.sendBeacon(CFG.app + "/realtime/send",
                                        new Blob([batch], {type: "text/plain"}));
    await new Promise((resolve) => setTimeout(resolve, 500));
    return queued ? "queued" : "refused";
  });
  await attempt("form", () => new Promise((resolve) => {
    const form = document.createElement("form");
    form.method = "POST";
    form.enctype = "text/plain";
    form.action = CFG.app + "/realtime/send";
    form.target = "sink";
    const input = document.createElement("input");
    input.name = batch.slice(0, -1);
    input.value = "]";
    form.appendChild(input);
    document.body.appendChild(form);
    document.querySelector("iframe").onload = () => resolve("submitted");
    form.submit();
  }));
  return results;
};
window.attackReady = true;
</script>
"""

SAME_ORIGIN_CONTROL = """async (cfg) => {
  const r = await fetch("/realtime/negotiate", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: "{}"});
  const negotiated = r.status;
  const opened = await new Promise((resolve) => {
    const ws = new WebSocket(cfg.ws + "?ticket=" + cfg.ticket);
    ws.onopen = () => { ws.close(); resolve("open"); };
    ws.onclose = (e) => resolve("close " + e.code);
  });
  return {negotiated, opened};
}"""


class SecurityAppServer(AppServer):
    """The app with ``GET /counters`` (tests/browser/serve_security.py), ticker off."""

    def start(self, timeout: float = 20.0) -> None:
        argv = [sys.executable, "-m", "tests.browser.serve_security", "--port", str(self.port)]
        argv += ["--tick-ms", "0"]
        for name, value in self.settings.items():
            argv += ["--set", f"{name}={json.dumps(value)}"]
        self._spawn(argv, timeout)


@pytest.fixture
def target(log_dir: Path) -> Iterator[SecurityAppServer]:
    server = SecurityAppServer(log_dir / "security-app.log", tick_ms=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def attacker_origin() -> Iterator[tuple[str, dict[str, Any]]]:
    """A static server on another loopback port serving the attack page; yields its URL and
    the config the page gets (filled in by the test before loading it)."""
    config: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = ATTACK_PAGE.replace("__CONFIG__", json.dumps(config)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", config
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def counters(app: AppServer) -> dict[str, Any]:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(app.url + "/counters", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def test_f6_cross_site_page_refused_everywhere(
    context: BrowserContext,
    target: SecurityAppServer,
    attacker_origin: tuple[str, dict[str, Any]],
) -> None:
    """F6: from a page on another origin, with a cookie for the app set: negotiate (JSON and
    simple), WebSocket and EventSource with valid tickets, long-poll with a valid token, and
    the upstream POST as a simple fetch, a preflighted JSON fetch, a beacon and a form are all
    refused: the page opens nothing, receives nothing and reads nothing, and the server
    negotiates, opens and applies nothing for them. From the app's own origin the same calls
    work."""
    attacker_url, config = attacker_origin
    assert attacker_url.rsplit(":", 1)[1] != str(target.port)  # another origin
    context.add_cookies([{"name": "session", "value": "victim", "url": target.url}])
    ws_info = post_json(target.url + "/realtime/negotiate", {"transports": ["websocket"]})
    sse_info = post_json(target.url + "/realtime/negotiate", {"transports": ["sse"]})
    poll_info = post_json(target.url + "/realtime/negotiate", {"transports": ["longpoll"]})
    config.update(
        app=target.url,
        ws=target.url.replace("http://", "ws://") + "/realtime/ws",
        wsTicket=ws_info["ticket"],
        sseTicket=sse_info["ticket"],
        sseToken=sse_info["token"],
        pollToken=poll_info["token"],
    )
    before = counters(target)

    page = context.new_page()
    page.goto(attacker_url + "/", timeout=10_000)
    page.wait_for_function("window.attackReady === true", timeout=10_000)
    results: dict[str, str] = page.evaluate("() => window.attack()")
    after = counters(target)
    print(
        "\nF6 page results:",
        json.dumps(results, indent=1),
        "\nserver before",
        before,
        "after",
        after,
    )

    # In the browser: nothing opened, nothing received, nothing readable.
    assert results["negotiate_json"] == "threw TypeError", results
    assert results["negotiate_simple"] == "opaque opaque 0", results
    assert results["websocket"] == "error, close 1006", results
    assert results["eventsource"] == "error readyState 2", results
    assert results["poll"] == "threw TypeError", results
    assert results["send_simple"] == "opaque opaque 0", results
    assert results["send_json"] == "threw TypeError", results
    assert results["form"] == "submitted", results
    # On the server: no negotiation, no session opened, nothing applied.
    assert after["applied"].get("f6", 0) == 0
    assert after["stats"].get("negotiated", 0) == before["stats"].get("negotiated", 0)
    assert after["stats"].get("opened", 0) == before["stats"].get("opened", 0)

    # The control: from the app's own origin the same calls work.
    own = context.new_page()
    open_page(own, target.url)
    fresh = post_json(target.url + "/realtime/negotiate", {"transports": ["websocket"]})
    control = own.evaluate(SAME_ORIGIN_CONTROL, {"ws": config["ws"], "ticket": fresh["ticket"]})
    assert control == {"negotiated": 200, "opened": "open"}


# --- A11: prototype keys in payloads, in the real browser client ------------------------------

A11_PAYLOAD: dict[str, Any] = {
    "__proto__": {"polluted": 1},
    "constructor": {"prototype": {"polluted": 1}},
    "keep": [1],
}

A11_START = """async (transport) => {
  const client = Transports.connect("/realtime", {transports: [transport]});
  const got = window.a11 = {client, pubs: [], messages: []};
  client.on("message", (m) => got.messages.push(m.data));
  await client.subscribe("a11", (pub) => got.pubs.push(pub.data)).ready;
  return {state: client.state, transport: client.transport, id: client.id};
}"""

A11_CHECK = """async (text) => {
  const {client, pubs, messages} = window.a11;
  // The echo: the page sends a value with an own __proto__ key (JSON.parse makes one).
  const reply = await client.send("echo", JSON.parse(text));
  client.close();
  const own = (value, key) => {
    const d = Object.getOwnPropertyDescriptor(value, key);
    return d && "value" in d ? d.value : "missing";
  };
  const describe = (value) => ({
    plain: Object.getPrototypeOf(value) === Object.prototype,
    keys: Object.keys(value),
    proto: own(value, "__proto__"),
    ctor: own(value, "constructor"),
    reachable: value.polluted === undefined ? "no" : "yes",
  });
  return {
    publication: describe(pubs[0]),
    message: describe(messages[0]),
    reply: describe(reply),
    polluted: [({}).polluted, Object.prototype.polluted, [].polluted].map(String),
    objectConstructor: ({}).constructor === Object,
  };
}"""


def test_a11_prototype_keys_never_pollute_the_page(page: Page, target: SecurityAppServer) -> None:
    """A11 in real Chromium, on each transport: a publication, a direct message (MSG) and an
    echo reply whose data holds ``__proto__`` and ``constructor`` keys reach the page's
    handlers as plain objects with ``__proto__`` and ``constructor`` as own data properties
    (what ``JSON.parse`` gives), nothing reachable through a prototype, and ``Object.prototype``
    untouched: ``({}).polluted`` stays undefined."""
    open_page(page, target.url)
    text = json.dumps(A11_PAYLOAD)
    expected = {
        "plain": True,
        "keys": ["__proto__", "constructor", "keep"],
        "proto": {"polluted": 1},
        "ctor": {"prototype": {"polluted": 1}},
        "reachable": "no",
    }
    for transport in ("websocket", "sse", "longpoll"):
        opened = page.evaluate(A11_START, transport)
        assert opened["state"] == "open" and opened["transport"] == transport, opened
        publish(target.url, "a11", "proto", A11_PAYLOAD)
        assert send_to(target.url, opened["id"], "direct", A11_PAYLOAD)
        wait_for(page, "() => window.a11.pubs.length > 0 && window.a11.messages.length > 0")
        result = page.evaluate(A11_CHECK, text)
        print(f"\nA11 in Chromium over {transport}:", json.dumps(result))
        assert result["publication"] == expected, result
        assert result["message"] == expected, result
        assert result["reply"] == expected, result
        assert result["polluted"] == ["undefined"] * 3, result
        assert result["objectConstructor"] is True
