// The diagnose page's logic without a browser: the verdict each set of observations leads to,
// the late-burst test for buffering, what the Tap records from WebSocket, EventSource and poll
// traffic, the report's shape (the CLI's, plus userAgent and when) and the chart's axes.

import { test } from "node:test";
import assert from "node:assert/strict";

import { niceStep, valueAxis } from "../../transports/static/diagnose-chart.js";
import { median, percentile } from "../../transports/static/diagnose-live.js";
import {
  Tap, buildReport, judge, lateBurst, sseEventBytes, transportReport, wsHeaderBytes,
} from "../../transports/static/diagnose-probe.js";

/** An observation as checkTransport leaves it, with `change` applied to it and its tap. */
function observed(transport, change = () => {}) {
  const tap = new Tap(() => 0);
  Object.assign(tap.negotiate, { status: 200, ms: 5, transports: ["websocket", "sse", "longpoll"], count: 1 });
  if (transport === "websocket") Object.assign(tap.ws, { created: 6, opened: 10, firstMessage: 12.34 });
  if (transport === "sse") Object.assign(tap.sse, { created: 6, opened: 10, firstEvent: 12.34 });
  if (transport === "longpoll") Object.assign(tap.poll, { count: 1, firstAnswer: 12.34, statuses: [200] });
  const obs = {
    transport, outcome: "open", fallbackReason: null, openMs: 20, roundTripMs: 3, subscribeError: null,
    droppedAfterOpen: null, sent: 5, publishErrors: 0, spacingMs: 300, tap,
    sentAt: [0, 1, 2, 3, 4].map((seq) => 26 + seq * 300),
    received: [0, 1, 2, 3, 4].map((seq) => ({ seq, at: 30 + seq * 300, latency: 4 })),
  };
  change(obs, tap);
  return obs;
}

const verdict = (obs) => judge(obs).verdict;

test("a transport that opened, answered a round trip and got every publication on time is ok", () => {
  for (const name of ["websocket", "sse", "longpoll"]) assert.deepEqual(judge(observed(name)), { verdict: "ok", ok: true });
});

test("negotiate: no answer is unreachable, 403 origin_refused, another status negotiate_failed", () => {
  assert.equal(verdict(observed("sse", (o, t) => { o.outcome = "negotiate"; t.negotiate.status = null; t.negotiate.network = true; })), "unreachable");
  assert.equal(verdict(observed("sse", (o, t) => { o.outcome = "negotiate"; t.negotiate.status = null; })), "timeout");
  assert.equal(verdict(observed("websocket", (o, t) => { o.outcome = "negotiate"; t.negotiate.status = 403; })), "origin_refused");
  assert.equal(verdict(observed("longpoll", (o, t) => { o.outcome = "negotiate"; t.negotiate.status = 502; })), "negotiate_failed");
});

test("a transport the server does not list is not_offered", () => {
  const obs = observed("websocket", (o, t) => { o.outcome = "fallback"; t.negotiate.transports = ["sse", "longpoll"]; });
  assert.equal(verdict(obs), "not_offered");
});

test("WebSocket: failed before open is upgrade_refused, open then silent upgrade_silent", () => {
  const refused = observed("websocket", (o, t) => {
    o.outcome = "fallback";
    Object.assign(t.ws, { created: 10, opened: null, firstMessage: null, error: 15, closed: 15, closeCode: 1006 });
  });
  assert.equal(verdict(refused), "upgrade_refused");
  const silent = observed("websocket", (o, t) => {
    o.outcome = "fallback";
    Object.assign(t.ws, { created: 10, opened: 14, firstMessage: null });
  });
  assert.equal(verdict(silent), "upgrade_silent");
  const nothing = observed("websocket", (o, t) => { o.outcome = "fallback"; Object.assign(t.ws, { opened: null, firstMessage: null }); });
  assert.equal(verdict(nothing), "timeout");
});

test("SSE: no event is sse_buffered, a late burst is sse_buffered, a refused stream http_error", () => {
  const failed = (change) => observed("sse", (o, t) => { o.outcome = "fallback"; Object.assign(t.sse, { opened: null, firstEvent: null }, change); });
  assert.equal(verdict(failed({})), "sse_buffered");
  assert.equal(verdict(failed({ opened: 12 })), "sse_buffered");
  assert.equal(verdict(failed({ error: 12, refused: true })), "http_error");
  const burst = observed("sse", (o) => {
    o.received = [0, 1, 2, 3, 4].map((seq) => ({ seq, at: 1600 + seq, latency: 1574 - seq * 299 }));
  });
  assert.equal(lateBurst(burst), true);
  assert.equal(verdict(burst), "sse_buffered");
  const missing = observed("sse", (o) => { o.received = o.received.slice(0, 2); });
  assert.equal(verdict(missing), "sse_buffered");
  // Evenly late (a slow path, not a buffer) is no burst.
  const slow = observed("sse", (o) => { o.received = o.received.map((r) => ({ ...r, at: r.at + 1500, latency: 1500 })); });
  assert.equal(lateBurst(slow), false);
  // The CLI's rule: sends spanning under 200 ms prove nothing.
  const close = observed("sse", (o) => { o.sentAt = [0, 50, 100, 150, 190]; o.received = o.received.map((r) => ({ ...r, at: 1000 })); });
  assert.equal(lateBurst(close), false);
});

test("long-poll: an HTTP error on a poll is http_error; a network failure unreachable", () => {
  assert.equal(verdict(observed("longpoll", (o, t) => { o.outcome = "fallback"; t.poll.statuses = [502]; })), "http_error");
  assert.equal(verdict(observed("longpoll", (o, t) => { o.outcome = "fallback"; Object.assign(t.poll, { statuses: [], network: 1 }); })), "unreachable");
});

test("closed during the check is idle_cut; publications lost on a non-SSE transport time out", () => {
  assert.equal(verdict(observed("websocket", (o) => { o.droppedAfterOpen = { code: 1006, reason: "" }; })), "idle_cut");
  assert.equal(verdict(observed("longpoll", (o) => { o.received = []; })), "timeout");
  // Publications the endpoint refused are not held against the transport.
  assert.equal(verdict(observed("websocket", (o) => { o.publishErrors = 5; o.received = []; })), "ok");
});

test("the report has the CLI's shape plus userAgent and when; best is the first transport that works", () => {
  const catalogue = { version: 1, verdicts: {
    ok: { title: "Works", cause: "", fix: "" },
    upgrade_refused: { title: "Upgrade refused", cause: "a proxy", fix: "pass Upgrade" },
  } };
  const ws = observed("websocket", (o, t) => {
    o.outcome = "fallback";
    Object.assign(t.ws, { created: 1, opened: null, firstMessage: null, error: 2, closed: 2, closeCode: 1006 });
  });
  const report = buildReport("http://x/realtime", [ws, observed("sse"), observed("longpoll")], catalogue,
    { userAgent: "UA", when: new Date(0) });
  assert.deepEqual(Object.keys(report), ["url", "best", "transports", "userAgent", "when"]);
  assert.equal(report.best, "sse");
  assert.equal(report.when, "1970-01-01T00:00:00.000Z");
  for (const entry of Object.values(report.transports)) {
    assert.deepEqual(Object.keys(entry), ["ok", "first_message_ms", "verdict", "title", "observed", "cause", "fix"]);
  }
  assert.deepEqual({ ...report.transports.websocket, observed: [] },
    { ok: false, first_message_ms: null, verdict: "upgrade_refused", title: "Upgrade refused", observed: [], cause: "a proxy", fix: "pass Upgrade" });
  assert.ok(report.transports.websocket.observed.some((line) => /failed before it opened/.test(line)));
  assert.ok(report.transports.sse.observed.every((line) => typeof line === "string"));
  assert.equal(report.transports.sse.first_message_ms, 12.3, "ms to the first frame, to 0.1 ms (as the CLI)");
  // Without the catalogue the verdict id stands in for the title.
  assert.equal(transportReport(ws, null).title, "upgrade_refused");
});

class FakeSocket extends EventTarget {
  constructor(url) { super(); this.url = url; this.readyState = 0; this.extensions = ""; }
}

test("the tap records WebSocket and SSE timings and the wire bytes of each publication", () => {
  let t = 0;
  const tap = new Tap(() => t);
  const WS = tap.webSocket(FakeSocket);
  const socket = new WS("ws://x/ws");
  t = 5; socket.dispatchEvent(new Event("open"));
  const pub = JSON.stringify([1, "$diagnose:abcdefgh", "live", { n: 1 }, 7, "ep"]);
  t = 9; socket.dispatchEvent(Object.assign(new Event("message"), { data: pub }));
  assert.deepEqual([tap.ws.created, tap.ws.opened, tap.ws.firstMessage], [0, 5, 9]);
  assert.equal(tap.bytesOf("$diagnose:abcdefgh", 7), pub.length + wsHeaderBytes(pub.length));
  assert.equal(tap.bytesOf("$diagnose:abcdefgh", 7), null, "read once");

  const ES = tap.eventSource(FakeSocket);
  const es = new ES("http://x/sse");
  es.dispatchEvent(Object.assign(new Event("message"), { data: pub, lastEventId: "12" }));
  assert.equal(tap.bytesOf("$diagnose:abcdefgh", 7), sseEventBytes(pub, "12"));
  assert.equal(sseEventBytes("[7]", "3"), "id: 3\r\ndata: [7]\r\n\r\n".length);
  es.readyState = 2;
  es.dispatchEvent(new Event("error"));
  assert.equal(tap.sse.refused, false, "an error after an event is no refusal");
});

test("the tap's fetch reads negotiate and poll answers and shares a poll's overhead among its publications", async () => {
  const tap = new Tap(() => 0);
  const answers = {
    "/rt/negotiate": [200, { transports: ["sse", "longpoll"], token: "t", ticket: "k", urls: {} }],
    "/rt/poll": [200, { cursor: 3, frames: [[0, { v: 1 }], [1, "a", "e", 1, 1, "x"], [1, "a", "e", 2, 2, "x"]] }],
  };
  const base = async (url) => {
    const [status, body] = answers[new URL(url).pathname];
    const text = JSON.stringify(body);
    return { status, ok: status === 200, headers: new Headers({ "content-type": "application/json" }), text: async () => text };
  };
  const f = tap.fetch(base);
  const neg = await f("http://x/rt/negotiate", { method: "POST" });
  assert.deepEqual((await neg.json()).transports, ["sse", "longpoll"]);
  assert.deepEqual(tap.negotiate.transports, ["sse", "longpoll"]);
  assert.equal(tap.negotiate.status, 200);
  const poll = await f("http://x/rt/poll?cursor=0", { headers: { "X-Realtime-Session": "t" } });
  assert.equal((await poll.json()).cursor, 3);
  const one = tap.bytesOf("a", 1);
  const two = tap.bytesOf("a", 2);
  // Two publications share the request (at least 250 bytes of browser headers) and the answer's head.
  assert.ok(one > JSON.stringify([1, "a", "e", 1, 1, "x"]).length + 125, `${one}: the frame and a share of the exchange`);
  assert.ok(Math.abs(one - two) <= 1);
  await assert.rejects(tap.fetch(async () => { throw new TypeError("down"); })("http://x/rt/negotiate"), TypeError);
});

test("chart axes: decades on a log scale, round steps on a linear one; median and percentile", () => {
  assert.deepEqual(valueAxis([3, 40, 900], true), { min: 1, max: 1000, ticks: [1, 10, 100, 1000] });
  assert.deepEqual(valueAxis([0.4, 12], true).ticks, [0.1, 1, 10, 100]);
  assert.deepEqual(valueAxis([], true), { min: 1, max: 10, ticks: [1, 10] });
  const linear = valueAxis([120, 660], false);
  assert.equal(linear.min, 0);
  assert.ok(linear.max >= 660 && linear.ticks.at(-1) >= 660);
  assert.equal(niceStep(6, 6), 1);
  assert.equal(niceStep(60, 6), 10);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([]), null);
  assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95), 10);
});
