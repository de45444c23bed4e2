// Remembering the transport that worked, background re-probe of a better one and the switch,
// and the page environment (offline/online, visibility, bfcache).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createWorld, framesOf, record } from "./fakes.mjs";

const KEY = "transports:last:http://app.test/rt";

test("the transport that worked is remembered per endpoint and the next page load starts there", async () => {
  const world = createWorld();
  world.mode.websocket = "blocked";
  const first = world.connect({ failback: false });
  await world.clock.advance(0);
  assert.equal(first.transport, "sse");
  assert.deepEqual(JSON.parse(world.storage.getItem(KEY)), { transport: "sse", at: world.clock.now() });
  first.close();

  const sockets = world.sockets.length;
  const second = world.connect({ failback: false });
  await world.clock.advance(0);
  assert.equal(second.transport, "sse");
  assert.equal(world.sockets.length, sockets); // did not try WebSocket first
  assert.equal(second.fallbackReason, "sse: remembered from an earlier connection");
  second.close();
});

test("the memory is ignored after rememberMs", async () => {
  const world = createWorld();
  world.storage.setItem(KEY, JSON.stringify({ transport: "longpoll", at: world.clock.now() - 25 * 60 * 60 * 1000 }));
  const client = world.connect();
  await world.clock.advance(0);
  assert.equal(client.transport, "websocket");
  assert.equal(world.polls.length, 0);
  client.close();
  world.storage.setItem(KEY, JSON.stringify({ transport: "longpoll", at: world.clock.now() - 60 * 1000 }));
  const again = world.connect({ failback: false });
  await world.clock.advance(0);
  assert.equal(again.transport, "longpoll");
  again.close();
});

test("failback: on SSE, a background probe finds WebSocket working again and switches without loss or doubles", async () => {
  const world = createWorld();
  world.mode.websocket = "blocked";
  const client = world.connect();
  const log = record(client);
  const got = [];
  client.subscribe("news", (p) => got.push(p.offset));
  await world.clock.advance(0);
  assert.equal(client.transport, "sse");
  world.publish("news", "n", null);
  await world.clock.advance(0);
  const sseSession = world.last();
  const es = world.eventSources[0];

  world.mode.websocket = "ok";
  await world.clock.advance(22499); // first probe after 30 s * (0.5 + 0.5 * random): 22.5 s here
  assert.equal(world.negotiations.length, 2);
  await world.clock.advance(1);
  assert.equal(world.negotiations.length, 3);
  const wsSession = world.last();
  assert.equal(wsSession.transport, "websocket");
  // the new session subscribed with the position, and the switch happened after its reply
  assert.deepEqual(framesOf(wsSession, 5).map((f) => [f[2], f[3]]), [["news", ["E1", 1]]]);
  assert.equal(client.transport, "websocket");
  assert.equal(es.closed, true);
  assert.deepEqual(log.filter(([n]) => n === "transport").at(-1)[1], {
    transport: "websocket", from: "sse", reason: "websocket works again (was sse)",
  });
  assert.deepEqual(client.stats.switches.map(({ from, to }) => [from, to]), [["sse", "websocket"]]);
  assert.equal(client.stats.reconnects, 0);
  assert.equal(client.fallbackReason, null);
  assert.equal(JSON.parse(world.storage.getItem(KEY)).transport, "websocket");

  // both sessions got the same publication during the overlap: delivered once
  sseSession.push([1, "news", "n", null, 2, "E1"]);
  world.publish("news", "n", null);
  await world.clock.advance(0);
  assert.deepEqual(got, [1, 2]);
  // sends now go over the WebSocket
  assert.deepEqual(await client.send("hi", 1), { echo: 1 });
  assert.equal(framesOf(wsSession, 3).length, 1);
  assert.equal(framesOf(sseSession, 3).length, 0);
  client.close();
});

test("failback: an EVENT unanswered on the old session is sent again on the new one with the same ref", async () => {
  const world = createWorld();
  world.mode.websocket = "blocked";
  let answer = false;
  world.onEvent = (f) => (answer ? ["ok", "done"] : null);
  const client = world.connect({ sendTimeout: 60000 });
  await world.clock.advance(0);
  const p = client.send("pay", 5);
  await world.clock.advance(0);
  const [[, ref]] = framesOf(world.last(), 3);
  world.mode.websocket = "ok";
  answer = true;
  await world.clock.advance(22500);
  assert.equal(client.transport, "websocket");
  assert.deepEqual(framesOf(world.last(), 3), [[3, ref, "pay", 5]]);
  assert.equal(await p, "done");
  client.close();
});

test("failback: failed probes back off (about 30 s, then 60 s, ...) and never disturb the working session", async () => {
  const world = createWorld();
  world.mode.websocket = "silent";
  world.heartbeat = 600000; // no liveness noise in this test
  const client = world.connect({ transports: ["websocket", "longpoll"] });
  const log = record(client);
  await world.clock.advance(2500);
  assert.equal(client.transport, "longpoll");
  const start = world.clock.now();
  const probeTimes = () => world.negotiations.slice(2).map((n) => n.at - start);
  await world.clock.advance(120000);
  assert.deepEqual(probeTimes().slice(0, 2), [22500, 22500 + 2500 + 45000]);
  assert.equal(client.stats.probes >= 2, true);
  assert.equal(client.stats.lastProbe, "websocket: no round trip within 2500 ms");
  assert.deepEqual(log.filter(([n]) => n === "state").map(([, p]) => p.state), ["open"]); // never left open
  assert.equal(client.transport, "longpoll");
  client.close();
});

test("a connection lost while offline waits for 'online', then reconnects at once", async () => {
  const world = createWorld();
  const client = world.connect();
  await world.clock.advance(0);
  world.navigator.onLine = false;
  world.last().kill(1006);
  await world.clock.advance(120000);
  assert.equal(client.state, "reconnecting");
  assert.equal(world.negotiations.length, 1);
  world.navigator.onLine = true;
  world.window.dispatchEvent(new Event("online"));
  await world.clock.advance(0);
  assert.equal(client.state, "open");
  assert.equal(world.negotiations.length, 2);
  client.close();
});

test("when the tab becomes visible with a dead connection (timers were frozen), it reconnects at once", async () => {
  const world = createWorld();
  const client = world.connect();
  await world.clock.advance(0);
  world.clock.t += 60000; // hidden tab: no timer ran, nothing arrived
  world.document.visibilityState = "visible";
  world.document.dispatchEvent(new Event("visibilitychange"));
  await world.clock.advance(0);
  assert.equal(client.state, "open");
  assert.equal(world.negotiations.length, 2);
  assert.equal(world.sockets[0].closedWith.code, 1000);
  client.close();
});

test("a healthy connection is kept on visibilitychange; pageshow from the bfcache checks it too", async () => {
  const world = createWorld();
  const client = world.connect();
  await world.clock.advance(0);
  world.clock.t += 20000;
  world.document.dispatchEvent(new Event("visibilitychange"));
  await world.clock.advance(0);
  assert.equal(world.negotiations.length, 1);
  world.clock.t += 40000;
  world.window.dispatchEvent(Object.assign(new Event("pageshow"), { persisted: true }));
  await world.clock.advance(0);
  assert.equal(world.negotiations.length, 2);
  assert.equal(client.state, "open");
  client.close();
});

test("while waiting in backoff, becoming visible retries at once", async () => {
  const world = createWorld();
  world.mode = { websocket: "blocked", sse: "ok", longpoll: "ok" };
  const client = world.connect({ transports: ["websocket"] });
  await world.clock.advance(0);
  assert.equal(world.negotiations.length, 1);
  world.mode.websocket = "ok";
  world.document.dispatchEvent(new Event("visibilitychange"));
  await world.clock.advance(0);
  assert.equal(client.state, "open");
  client.close();
});

/** An EventTarget that keeps the listeners currently added, as [type, listener] pairs. */
class ListenerLog extends EventTarget {
  constructor(props = {}) {
    super();
    Object.assign(this, props);
    this.live = [];
  }
  addEventListener(type, fn, options) {
    this.live.push([type, fn]);
    super.addEventListener(type, fn, options);
  }
  removeEventListener(type, fn, options) {
    const at = this.live.findIndex(([t, f]) => t === type && f === fn);
    if (at >= 0) this.live.splice(at, 1);
    super.removeEventListener(type, fn, options);
  }
  types() { return this.live.map(([type]) => type).sort(); }
}

test("close() removes the page listeners", async () => {
  const world = createWorld();
  const window = new ListenerLog();
  const document = new ListenerLog({ visibilityState: "visible" });
  const client = world.connect({ window, document });
  await world.clock.advance(0);
  // The handlers guard themselves on state "closed", so only the listener lists can tell
  // whether close() took them off the page.
  assert.deepEqual(window.types(), ["offline", "online", "pagehide", "pageshow"]);
  assert.deepEqual(document.types(), ["visibilitychange"]);
  client.close();
  assert.deepEqual(window.types(), []);
  assert.deepEqual(document.types(), []);
  // and nothing the page does afterwards brings the client back
  world.clock.t += 60000;
  document.dispatchEvent(new Event("visibilitychange"));
  window.dispatchEvent(new Event("online"));
  window.dispatchEvent(Object.assign(new Event("pageshow"), { persisted: true }));
  await world.clock.advance(0);
  assert.equal(world.negotiations.length, 1);
  assert.equal(client.state, "closed");
});

test("loading the module defines globalThis.Transports.connect for non-module scripts", async () => {
  const mod = await import("../../transports/static/client.js");
  assert.equal(globalThis.Transports.connect, mod.connect);
});

test("a page that goes away for good closes the client (goodbye); one kept in the bfcache does not", async () => {
  const kept = createWorld();
  const stays = kept.connect();
  await kept.clock.advance(0);
  kept.window.dispatchEvent(Object.assign(new Event("pagehide"), { persisted: true }));
  await kept.clock.advance(0);
  assert.equal(stays.state, "open");
  stays.close();

  const world = createWorld();
  const client = world.connect();
  await world.clock.advance(0);
  assert.equal(client.state, "open");
  world.window.dispatchEvent(Object.assign(new Event("pagehide"), { persisted: false }));
  await world.clock.advance(0);
  assert.equal(client.state, "closed");
  assert.equal(world.sockets[0].closedWith.code, 1000);
  assert.equal(framesOf(world.session(0), 9).length, 1, "a CLOSE frame: goodbye");
});
