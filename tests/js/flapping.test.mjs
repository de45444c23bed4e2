// Flapping (the policy's `flapping`): a transport that opens and dies soon after, several times
// in a row, is demoted to the next one and remembered so; only the background probe brings it
// back, once it has stayed up a while.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createWorld, framesOf, record } from "./fakes.mjs";

const KEY = "transports:last:http://app.test/rt";

/** WebSockets through a "proxy" that cuts each one `afterMs` after it is made, while `cut`. */
function flappy(world, proxy) {
  const Base = world.WebSocket;
  world.WebSocket = class extends Base {
    constructor(url) {
      super(url);
      if (!proxy.cut) return;
      world.clock.setTimeout(() => { if (this.readyState === 1) this.serverClose(1006, ""); }, proxy.afterMs);
    }
  };
}

/** Advance in small steps until `predicate()` holds; returns the ms waited. */
async function until(world, predicate, limit = 120000) {
  let waited = 0;
  while (!predicate()) {
    assert.ok(waited < limit, "condition not met in time");
    await world.clock.advance(50);
    waited += 50;
  }
  return waited;
}

function setup(options = {}, proxy = { cut: true, afterMs: 2000 }) {
  const world = createWorld();
  world.heartbeat = 1e9;
  flappy(world, proxy);
  const client = world.connect({ failback: { min: 10000, max: 40000 }, ...options });
  return { world, client, proxy, log: record(client) };
}

test("a WebSocket cut 2 s after opening, 3 times in a row, is demoted to SSE, remembered and reported", async () => {
  const { world, client, log } = setup();
  const got = [];
  client.subscribe("feed", (pub) => got.push(pub.data));
  await world.clock.advance(0);
  assert.equal(client.transport, "websocket");
  let n = 0;
  const publisher = () => { world.publish("feed", "n", n++); world.clock.setTimeout(publisher, 500); };
  publisher();
  const started = world.clock.now();
  await until(world, () => client.transport === "sse");
  const settled = world.clock.now() - started;
  assert.ok(settled < 15000, `settled on SSE after ${settled} ms`);
  assert.equal(world.sockets.length, 3);
  assert.equal(client.stats.demotions, 1);
  assert.equal(client.fallbackReason, "websocket: flapping (closed 3 times within 10 s of opening)");
  const change = log.filter(([name, p]) => name === "transport" && p.transport === "sse").map(([, p]) => p);
  assert.deepEqual(change, [{ transport: "sse", from: "websocket", reason: client.fallbackReason }]);
  // The negotiate that moved to SSE reported why (§3), with a reason code of the policy's list.
  const reports = world.negotiations.map((r) => r.body.fallback).filter(Boolean);
  assert.deepEqual(reports, [{ from: "websocket", to: "sse", reason: "flapping" }]);
  const saved = JSON.parse(world.storage.getItem(KEY));
  assert.equal(saved.transport, "sse");
  assert.deepEqual(Object.keys(saved.demoted), ["websocket"]);
  // It stays on SSE: no WebSocket but the probes, which the proxy still cuts before 30 s.
  const sockets = world.sockets.length;
  await world.clock.advance(60000);
  assert.equal(client.transport, "sse");
  assert.equal(world.sockets.length - sockets, client.stats.probes);
  assert.ok(client.stats.probes >= 1);
  assert.match(client.stats.lastProbe, /^websocket: closed with 1006/);
  await world.clock.advance(1000);
  world.clock.timers.clear(); // stop the publisher
  await world.clock.advance(0);
  const last = n;
  await until(world, () => got.length === last);
  assert.deepEqual(got, [...Array(last).keys()]); // nothing lost or doubled through it all
  client.close();
});

test("once the path is fixed, the probe stays up stayUpMs and the client returns to WebSocket", async () => {
  const { world, client, proxy } = setup({ flapping: { stayUpMs: 5000 } });
  const got = [];
  client.subscribe("feed", (pub) => got.push(pub.data));
  await until(world, () => client.transport === "sse");
  world.publish("feed", "n", 0);
  proxy.cut = false;
  const probes = client.stats.probes;
  await until(world, () => client.stats.probes > probes);
  const probeAt = world.clock.now();
  const probe = client._failback.probe;
  assert.equal(probe && probe.name, "websocket");
  await world.clock.advance(4900);
  assert.equal(client.transport, "sse"); // not before it stayed up stayUpMs
  assert.equal(framesOf(probe.neg && world.sessions.find((s) => s.token === probe.neg.token), 5).length, 0);
  world.publish("feed", "n", 1);
  await until(world, () => client.transport === "websocket");
  assert.ok(world.clock.now() - probeAt >= 5000);
  world.publish("feed", "n", 2);
  await world.clock.advance(0);
  assert.deepEqual(got, [0, 1, 2]);
  assert.equal(client.fallbackReason, null);
  assert.equal(JSON.parse(world.storage.getItem(KEY)).demoted, undefined);
  assert.deepEqual(client.stats.switches.map((s) => [s.from, s.to]), [["sse", "websocket"]]);
  client.close();
});

test("the demotion is remembered: the next page load starts on SSE and only probes WebSocket", async () => {
  const first = setup();
  await until(first.world, () => first.client.transport === "sse");
  first.client.close();
  const world = first.world;
  const sockets = world.sockets.length;
  const again = world.connect({ failback: { min: 10000, max: 40000 } });
  await world.clock.advance(0);
  assert.equal(again.transport, "sse");
  assert.equal(world.sockets.length, sockets);
  assert.equal(again.fallbackReason, "sse: remembered from an earlier connection (websocket was flapping)");
  again.close();
});

test("closes that do not count start the count over: a long-lived connection, a close the server chose", async () => {
  const { world, client } = setup({}, { cut: false });
  await world.clock.advance(0);
  for (const [code, upMs] of [[1006, 2000], [1006, 2000], [1006, 10000], [1006, 2000], [1006, 2000], [1012, 100], [1006, 2000], [1006, 2000]]) {
    assert.equal(client.transport, "websocket");
    await world.clock.advance(upMs);
    client._conn.transport.onclose({ code, reason: "" });
    await until(world, () => client.state === "open");
  }
  assert.equal(client.transport, "websocket");
  assert.equal(client.stats.demotions, 0);
  client.close();
});

test("the thresholds are connect() options; flapping: false turns it off", async () => {
  const quick = setup({ flapping: { times: 2, upForLessThanMs: 3000 } });
  await until(quick.world, () => quick.client.transport === "sse");
  assert.equal(quick.world.sockets.length, 2);
  assert.equal(quick.client.fallbackReason, "websocket: flapping (closed 2 times within 3 s of opening)");
  quick.client.close();

  const tolerant = setup({ flapping: { upForLessThanMs: 1500 } }); // cut after 2 s: not a flap
  await tolerant.world.clock.advance(60000);
  assert.equal(tolerant.client.stats.demotions, 0);
  tolerant.client.close();

  const off = setup({ flapping: false });
  await off.world.clock.advance(60000);
  assert.equal(off.client.stats.demotions, 0);
  assert.ok(off.world.sockets.length > 3);
  off.client.close();
});

test("a transport with nothing after it is never demoted", async () => {
  const { world, client } = setup({ transports: ["websocket"] });
  await world.clock.advance(60000);
  assert.equal(client.stats.demotions, 0);
  assert.ok(world.sockets.length > 3);
  client.close();
});
