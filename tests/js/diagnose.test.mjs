// The diagnose page's logic without a browser: the verdict each set of observations leads to,
// the late-burst test for buffering, what the Tap records from WebSocket, EventSource and poll
// traffic, the idle hold (how it ends, and when that is idle_cut), the report's shape (the CLI's,
// plus userAgent and when) and the chart's axes.

import { test } from "node:test";
import assert from "node:assert/strict";

import { niceStep, valueAxis } from "../../transports/static/diagnose-chart.js";
import { median, percentile } from "../../transports/static/diagnose-live.js";
import {
  Tap, buildReport, describe, holdIdle, idleOutcome, judge, lateBurst, sseEventBytes, transportReport, wsHeaderBytes,
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
    idle: null, idleFrom: null,
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

/** The observation of a transport held idle: `idle` as idleOutcome gives it. */
const heldIdle = (transport, idle) => observed(transport, (o) => { o.idle = { planned: 4, detail: "", ...idle }; });

test("idle hold: a cut before the heartbeat is idle_cut, with the silence and the heartbeat in words", () => {
  for (const name of ["websocket", "sse"]) {
    const obs = heldIdle(name, { silence: 1.5, end: "cut", detail: "the WebSocket dropped (1006)" });
    assert.equal(verdict(obs), "idle_cut");
    assert.ok(describe(obs).includes("cut after 1.5 s idle (heartbeat is 25 s): the WebSocket dropped (1006)"), describe(obs).join("\n"));
  }
  // Long-poll's heartbeat is the poll window, from the negotiate answer (ms) as the rest.
  const poll = heldIdle("longpoll", { silence: 2, end: "cut", detail: "a held poll answered HTTP 504" });
  poll.tap.negotiate.pollWindow = 20000;
  assert.equal(verdict(poll), "idle_cut");
  assert.ok(describe(poll).some((line) => line.startsWith("cut after 2.0 s idle (heartbeat is 20 s, the poll window)")));
  // A poll the browser asked again unseen: the silence is an upper bound, the cut is still one.
  const retried = heldIdle("longpoll", { silence: 30, end: "cut", detail: "a held poll failed on the network", upper: true });
  assert.equal(verdict(retried), "idle_cut");
  assert.ok(describe(retried).some((line) => line.startsWith("cut after at most 30.0 s idle")));
});

test("idle hold: the heartbeat, the time asked, the server's close or a late cut are no idle_cut", () => {
  const cases = [
    [{ silence: 25, end: "heartbeat" }, "idle: kept open 25.0 s, until the server's heartbeat"],
    [{ silence: 4, end: "held" }, "idle: kept open 4.0 s (4 s asked; a cut after a longer silence, below the server's heartbeat of 25 s, is not ruled out)"],
    [{ silence: 3, end: "closed", detail: "the server sent CLOSE 1001" }, "idle: the server closed the connection after 3.0 s: the server sent CLOSE 1001"],
    [{ silence: 30, end: "cut" }, "idle: cut after 30.0 s, beyond the server's heartbeat of 25 s"],
  ];
  for (const [idle, line] of cases) {
    const obs = heldIdle("websocket", idle);
    assert.deepEqual(judge(obs), { verdict: "ok", ok: true }, line);
    assert.equal(describe(obs).at(-1), line);
  }
  assert.equal(describe(heldIdle("longpoll", { silence: 25, end: "heartbeat" })).at(-1), "idle: kept open 25.0 s, until the server's poll window");
  // The publications are judged first, as the CLI does.
  const buffered = observed("sse", (o) => { o.received = o.received.slice(0, 2); o.idle = { planned: 4, silence: 1, end: "cut", detail: "" }; });
  assert.equal(verdict(buffered), "sse_buffered");
});

test("idle outcome: what the tap saw first from the hold's start ends it; before the start, nothing", () => {
  let t = 0;
  const tap = new Tap(() => t);
  const WS = tap.webSocket(FakeSocket);
  const socket = new WS("ws://x/ws");
  socket.dispatchEvent(new Event("open"));
  // A drop before the hold began does not count.
  t = 100; socket.dispatchEvent(Object.assign(new Event("close"), { code: 1006 }));
  t = 1000; socket.dispatchEvent(Object.assign(new Event("message"), { data: JSON.stringify([1, "$diagnose:abcdefgh", "probe", {}, 5, "e"]) }));
  const start = 1200;
  t = 2000;
  assert.equal(idleOutcome(tap, start, 4000), null, "going on");
  t = 2500; socket.dispatchEvent(Object.assign(new Event("close"), { code: 1006 }));
  t = 2600;
  assert.deepEqual(idleOutcome(tap, start, 4000), { planned: 4, silence: 1.5, end: "cut", detail: "the WebSocket dropped (1006)" });

  // The server's PING (its heartbeat) first: the hold ends there, and a close after it is no cut.
  // (Each tap counts from when it was made: t starts again at 0.)
  t = 0;
  const beat = new Tap(() => t);
  const ES = beat.eventSource(FakeSocket);
  const es = new ES("http://x/sse");
  t = 3000; es.dispatchEvent(new Event("open"));
  t = 28000; es.dispatchEvent(Object.assign(new Event("message"), { data: "[7]", lastEventId: "9" }));
  t = 28100; es.dispatchEvent(new Event("error"));
  assert.deepEqual(idleOutcome(beat, 3500, 30000), { planned: 30, silence: 25, end: "heartbeat", detail: "" });

  // A CLOSE frame is the server closing; a clean WebSocket close code too.
  t = 0;
  const closed = new Tap(() => t);
  t = 28000;
  const socket2 = new (closed.webSocket(FakeSocket))("ws://x/ws");
  t = 30000; socket2.dispatchEvent(Object.assign(new Event("message"), { data: '[9,1001,"going away"]' }));
  socket2.dispatchEvent(Object.assign(new Event("close"), { code: 1001 }));
  assert.deepEqual(idleOutcome(closed, 29000, 4000), { planned: 4, silence: 2, end: "closed", detail: "the server sent CLOSE 1001 going away" });

  // Nothing at all: held for the time asked, silence counted from the last traffic.
  t = 0;
  const quiet = new Tap(() => t);
  t = 31000; quiet.traffic();
  t = 35000;
  assert.deepEqual(idleOutcome(quiet, 31000, 4000), { planned: 4, silence: 4, end: "held", detail: "" });
  // The client leaving the connection by itself (its liveness check) ends it as a cut.
  t = 33000;
  assert.deepEqual(idleOutcome(quiet, 31000, 4000, { code: 4000, reason: "no data from the server" }),
    { planned: 4, silence: 2, end: "cut", detail: "the client left the connection (4000 no data from the server)" });
});

test("idle outcome on long-poll: an empty answer is the heartbeat; a lost held poll a cut, its silence an upper bound", async () => {
  let t = 0;
  const tap = new Tap(() => t);
  let answer = async () => { t += 25000; return [200, { cursor: 1, frames: [] }]; };
  const base = async () => {
    const [status, body] = await answer();
    const text = JSON.stringify(body);
    return { status, ok: status === 200, headers: new Headers(), text: async () => text };
  };
  const f = tap.fetch(base);
  await f("http://x/rt/poll?cursor=1");
  assert.deepEqual(idleOutcome(tap, 0, 30000), { planned: 30, silence: 25, end: "heartbeat", detail: "" });

  t = 0;
  const cut = new Tap(() => t);
  const start = 0;
  answer = async () => { t += 4500; throw new TypeError("Failed to fetch"); };
  await assert.rejects(cut.fetch(base)("http://x/rt/poll?cursor=1"), TypeError);
  const idle = idleOutcome(cut, start, 8000);
  assert.equal(idle.end, "cut");
  assert.equal(idle.silence, 4.5);
  assert.equal(idle.upper, true);
  // A proxy's 504 on a held poll: a cut, its silence exact.
  t = 0;
  const gateway = new Tap(() => t);
  const at = 0;
  answer = async () => { t += 1500; return [504, {}]; };
  await gateway.fetch(base)("http://x/rt/poll?cursor=1");
  assert.deepEqual(idleOutcome(gateway, at, 8000), { planned: 8, silence: 1.5, end: "cut", detail: "a held poll answered HTTP 504" });

  // In the report, a poll lost during the hold is the hold's line, not "a poll failed on the network".
  const obs = observed("longpoll", (o) => { o.tap = cut; o.idle = idle; o.idleFrom = start; });
  Object.assign(cut.poll, { count: 1, firstAnswer: 1, statuses: [200] });
  cut.negotiate.status = 200;
  const lines = describe(obs);
  assert.ok(!lines.includes("a poll failed on the network"), lines.join("\n"));
  assert.match(lines.at(-1), /^cut after at most 4\.5 s idle \(heartbeat is 25 s, the poll window\): a held poll failed on the network/);
  obs.idleFrom = 5000;
  assert.ok(describe(obs).includes("a poll failed on the network"), "lost before the hold began");
});

test("holdIdle waits, in short steps, until the outcome is known", async () => {
  let t = 0;
  const tap = new Tap(() => t);
  const socket = new (tap.webSocket(FakeSocket))("ws://x/ws");
  socket.dispatchEvent(new Event("open"));
  const waits = [];
  const wait = async (ms) => {
    waits.push(ms);
    t += ms;
    if (t >= 1500 && tap.drops.length === 0) socket.dispatchEvent(Object.assign(new Event("close"), { code: 1006 }));
  };
  const idle = await holdIdle(tap, 4000, () => null, wait);
  assert.equal(idle.end, "cut");
  assert.equal(idle.silence, 1.5);
  assert.ok(waits.every((ms) => ms >= 10 && ms <= 100));
  t = 0;
  const held = await holdIdle(new Tap(() => t), 300, () => null, async (ms) => { t += ms; });
  assert.equal(held.end, "held");
  assert.equal(held.silence >= 0.3, true);
});
