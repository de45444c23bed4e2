// The fast start (options.fastStart): with nothing known of the network, open on long-poll and
// probe the better transports at once; the memory shared by the tabs (expiry, forgotten when the
// network changes); the shorter deadline of a remembered transport; the old order by option.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createWorld, framesOf, record } from "./fakes.mjs";

const KEY = "transports:last:http://app.test/rt";
const FAST = { fastStart: {} }; // the defaults: long-poll, probe at once, 1000 ms for a remembered one

const remembered = (world) => JSON.parse(world.storage.getItem(KEY) || "null");

test("DEFAULTS: fast start on long-poll, memory for 24 h", async () => {
  const { DEFAULTS } = await import("../../transports/static/client.js");
  assert.deepEqual(DEFAULTS.fastStart, { transport: "longpoll", probeAfterMs: 0, rememberedDeadlineMs: 1000 });
  assert.equal(DEFAULTS.rememberMs, 24 * 60 * 60 * 1000);
});

test("first visit: opens on long-poll, probes WebSocket at once and switches without loss or doubles", async () => {
  const world = createWorld();
  const client = world.connect(FAST);
  const log = record(client);
  const got = [];
  client.subscribe("news", (p) => got.push(p.offset));
  world.publish("news", "n", null); // before the subscription: not delivered
  await world.clock.advance(0);
  // Opened on long-poll first, then the probe's session on WebSocket, both in the same instant.
  assert.equal(world.sessions[0].transport, "longpoll");
  assert.equal(world.sessions[1].transport, "websocket");
  assert.equal(client.transport, "websocket");
  assert.deepEqual(log.filter(([n]) => n === "transport").map(([, t]) => [t.transport, t.from]),
    [["longpoll", null], ["websocket", "longpoll"]]);
  assert.deepEqual(log.filter(([n]) => n === "state").map(([, s]) => s.state), ["open"]);
  assert.deepEqual(client.stats.switches.map(({ from, to }) => [from, to]), [["longpoll", "websocket"]]);
  assert.equal(client.stats.fallbacks.length, 0);
  assert.equal(client.fallbackReason, null);
  assert.equal(log.find(([n]) => n === "transport")[1].reason, "longpoll: fast start, probing the better transports");
  // The long-poll session was told it is over (CLOSE on POST /send), so the server frees it.
  assert.ok(world.sessions[0].received.some((f) => f[0] === 9));
  // The WebSocket subscribed from the long-poll's position.
  assert.deepEqual(framesOf(world.sessions[1], 5).map((f) => f[3]), [["E1", 1]]);
  assert.deepEqual(remembered(world), { transport: "websocket", at: world.clock.now() });
  world.publish("news", "n", null);
  world.publish("news", "n", null);
  await world.clock.advance(0);
  assert.deepEqual(got, [2, 3]);
  client.close();
});

test("a fast start is remembered only once the better transports failed (a buffering proxy)", async () => {
  const world = createWorld();
  world.mode.websocket = "blocked";
  world.mode.sse = "buffered";
  const client = world.connect(FAST);
  await world.clock.advance(0);
  assert.equal(client.transport, "longpoll");
  assert.equal(remembered(world), null); // not yet: WebSocket and SSE are being probed
  await world.clock.advance(2500); // the probe: WebSocket refused, SSE silent past its deadline
  assert.equal(client.transport, "longpoll");
  assert.match(client.stats.lastProbe, /^sse: no first event within 2500 ms/);
  assert.equal(remembered(world).transport, "longpoll");
  // What the probe found is what an ordered start would have: fallbacks, reported to the server.
  assert.deepEqual(client.stats.fallbacks.map(({ from, to }) => [from, to]), [["websocket", "sse"], ["sse", "longpoll"]]);
  assert.equal(client.fallbackReason, client.stats.lastProbe);
  assert.deepEqual(world.negotiations.at(-1).body.fallback, { from: "websocket", to: "sse", reason: "refused" });
  client.close();

  // A new tab starts on long-poll as remembered, and probes at the ordinary failback pace.
  const negotiations = world.negotiations.length;
  const tab = world.connect(FAST);
  await world.clock.advance(0);
  assert.equal(tab.transport, "longpoll");
  assert.equal(world.negotiations.length, negotiations + 1);
  await world.clock.advance(10000);
  assert.equal(world.negotiations.length, negotiations + 1); // no probe yet (15-30 s)
  tab.close();
});

test("new tab: the transport remembered by another page opens at once, without long-poll", async () => {
  const world = createWorld();
  const first = world.connect(FAST);
  await world.clock.advance(0);
  assert.equal(first.transport, "websocket");
  first.close();
  const polls = world.polls.length;
  const tab = world.connect(FAST);
  await world.clock.advance(0);
  assert.equal(tab.transport, "websocket");
  assert.equal(world.polls.length, polls);
  assert.equal(world.sessions.at(-1).transport, "websocket");
  tab.close();
});

test("a remembered transport that no longer works gets rememberedDeadlineMs, then the fast start takes over", async () => {
  const world = createWorld();
  world.storage.setItem(KEY, JSON.stringify({ transport: "websocket", at: world.clock.now() - 3600 * 1000 }));
  world.mode.websocket = "silent"; // another network now: the upgrade is accepted, then nothing
  const client = world.connect(FAST);
  const log = record(client);
  await world.clock.advance(999);
  assert.equal(client.state, "connecting");
  await world.clock.advance(1);
  assert.equal(client.transport, "longpoll");
  assert.deepEqual(client.stats.fallbacks.map(({ from, to, reason }) => [from, to, reason]),
    [["websocket", "longpoll", "websocket: no round trip within 1000 ms"]]);
  // Probed at once with the full deadlines: WebSocket (2.5 s, silent), then SSE, which works.
  await world.clock.advance(2500);
  assert.equal(client.transport, "sse");
  assert.deepEqual(log.filter(([n]) => n === "transport").map(([, t]) => t.transport), ["longpoll", "sse"]);
  assert.equal(remembered(world).transport, "sse");
  client.close();
});

test("the memory is shared for rememberMs (24 h) and ignored after it", async () => {
  const world = createWorld();
  world.storage.setItem(KEY, JSON.stringify({ transport: "sse", at: world.clock.now() - 23 * 3600 * 1000 }));
  const fresh = world.connect(FAST);
  await world.clock.advance(0);
  assert.equal(fresh.transport, "sse");
  assert.equal(fresh.fallbackReason, "sse: remembered from an earlier connection");
  assert.equal(world.polls.length, 0);
  fresh.close();

  world.storage.setItem(KEY, JSON.stringify({ transport: "sse", at: world.clock.now() - 25 * 3600 * 1000 }));
  const stale = world.connect(FAST);
  const log = record(stale);
  await world.clock.advance(0);
  assert.deepEqual(log.filter(([n]) => n === "transport").map(([, t]) => t.transport), ["longpoll", "websocket"]);
  stale.close();
});

test("the network changing (offline, online, connection change) forgets the memory", async () => {
  for (const change of ["offline", "online", "connection"]) {
    const world = createWorld();
    const connection = new EventTarget();
    const navigator = { onLine: true, connection };
    const client = world.connect({ ...FAST, navigator, failback: false, fastStart: undefined });
    await world.clock.advance(0);
    assert.equal(client.transport, "websocket"); // failback off: no fast start
    assert.equal(remembered(world).transport, "websocket");
    if (change === "connection") connection.dispatchEvent(new Event("change"));
    else world.window.dispatchEvent(new Event(change));
    assert.equal(remembered(world), null, change);
    client.close();
  }
});

test("after a network change, the next connection of the same client starts fast again", async () => {
  const world = createWorld();
  const connection = new EventTarget();
  const client = world.connect({ ...FAST, navigator: { onLine: true, connection } });
  await world.clock.advance(0);
  assert.equal(client.transport, "websocket");
  const got = [];
  client.subscribe("news", (p) => got.push(p.offset));
  await world.clock.advance(0);
  world.publish("news", "n", null);
  await world.clock.advance(0);
  // The network changes: now a proxy refuses the upgrade and the socket dies.
  connection.dispatchEvent(new Event("change"));
  world.mode.websocket = "blocked";
  world.sessions.at(-1).socket.serverClose(1006);
  world.publish("news", "n", null);
  await world.clock.advance(2000); // the reconnect: backoff above the 1 s retry hint
  const after = world.sessions.filter((s) => s.transport).map((s) => s.transport);
  assert.equal(after.at(-2), "longpoll"); // fast start, not WebSocket first
  assert.equal(after.at(-1), "sse"); // the probe: WebSocket refused, SSE works
  assert.equal(client.transport, "sse");
  assert.deepEqual(got, [1, 2]);
  client.close();
});

test("probeAfterMs delays the first probe after a fast start", async () => {
  const world = createWorld();
  const client = world.connect({ fastStart: { probeAfterMs: 300 } });
  await world.clock.advance(299);
  assert.equal(client.transport, "longpoll");
  await world.clock.advance(1);
  assert.equal(client.transport, "websocket");
  client.close();
});

test("fastStart: false keeps the ordered start: WebSocket first, each transport with its full deadline", async () => {
  const world = createWorld();
  world.mode.websocket = "silent";
  const client = world.connect({ fastStart: false });
  await world.clock.advance(2499);
  assert.equal(client.state, "connecting");
  await world.clock.advance(1);
  assert.equal(client.transport, "sse");
  assert.equal(world.polls.length, 0);
  client.close();
});

test("no fast start when long-poll is not allowed, or comes first anyway", async () => {
  const world = createWorld();
  const noPoll = world.connect({ ...FAST, transports: ["websocket", "sse"] });
  await world.clock.advance(0);
  assert.equal(noPoll.transport, "websocket");
  assert.equal(noPoll.options.fastStart, null);
  noPoll.close();
  const pollFirst = world.connect({ ...FAST, transports: ["longpoll", "websocket"], storage: null });
  await world.clock.advance(100);
  assert.equal(pollFirst.transport, "longpoll");
  assert.equal(pollFirst.stats.probes, 0);
  pollFirst.close();
});

test("at the switch, the long-poll session's CLOSE waits for the POST in flight (one POST at a time, §6.2)", async () => {
  const world = createWorld();
  let active = 0;
  let most = 0;
  world.sendHook = async (init, session) => {
    if (!session || session.n !== 0) return undefined;
    active++;
    most = Math.max(most, active);
    // Every POST of the long-poll session takes 50 ms to answer.
    await new Promise((resolve) => world.clock.setTimeout(resolve, 50));
    active--;
    return undefined;
  };
  const client = world.connect({ fastStart: { probeAfterMs: 10 } });
  client.subscribe("news", () => {});
  await world.clock.advance(0);
  assert.equal(client.transport, "longpoll"); // its SUB POST is in flight
  await world.clock.advance(10); // the probe switches to WebSocket meanwhile
  assert.equal(client.transport, "websocket");
  await world.clock.advance(200);
  const closes = world.postLog.filter(({ session, body }) => session === world.sessions[0] && body.includes("[9,"));
  assert.equal(closes.length, 1);
  assert.equal(most, 1);
  client.close();
});
