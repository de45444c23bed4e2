// Negotiate, transport acceptance and fallback, driven by fake WebSocket/EventSource/fetch.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createWorld, framesOf, record } from "./fakes.mjs";

test("negotiates with version, client key, transport order and a fresh bearer token", async () => {
  const world = createWorld();
  let calls = 0;
  const client = world.connect({ token: async () => `tok${++calls}` });
  await world.clock.advance(0);
  const [first] = world.negotiations;
  assert.equal(first.url, "http://app.test/rt/negotiate");
  assert.equal(first.headers["Content-Type"], "application/json");
  assert.equal(first.headers.Authorization, "Bearer tok1");
  assert.equal(first.body.v, 1);
  assert.match(first.body.client, /^[A-Za-z0-9_-]{8,64}$/);
  assert.deepEqual(first.body.transports, ["websocket", "sse", "longpoll"]);
  world.last().kill(1012, "restart");
  await world.clock.advance(5000);
  assert.equal(world.negotiations.length, 2);
  assert.equal(world.negotiations[1].headers.Authorization, "Bearer tok2"); // token function called again
  assert.equal(world.negotiations[1].body.client, first.body.client); // same key for the page's lifetime
  client.close();
});

test("a static token is sent as a bearer token; without one no Authorization header is sent", async () => {
  const world = createWorld();
  const withToken = world.connect({ token: "abc" });
  await world.clock.advance(0);
  withToken.close();
  const without = world.connect();
  await world.clock.advance(0);
  without.close();
  assert.equal(world.negotiations[0].headers.Authorization, "Bearer abc");
  assert.equal("Authorization" in world.negotiations[1].headers, false);
});

test("websocket is accepted only after a PING/PONG round trip, then the state is open", async () => {
  const world = createWorld();
  const client = world.connect();
  const log = record(client);
  assert.equal(client.state, "connecting");
  assert.equal(client.transport, null);
  await world.clock.advance(0);
  const [socket] = world.sockets;
  assert.equal(socket.url, "ws://app.test/rt/ws?ticket=ticket0");
  assert.deepEqual(socket.sent, ["[7]"]); // the probe PING
  assert.equal(client.state, "open");
  assert.equal(client.transport, "websocket");
  assert.equal(client.id, "pub0");
  assert.deepEqual(log.slice(0, 2), [
    ["state", { state: "open", previous: "connecting" }],
    ["transport", { transport: "websocket", from: null, reason: null }],
  ]);
  assert.equal(client.fallbackReason, null);
  assert.equal(typeof client.stats.lastNegotiateMs, "number");
  client.close();
});

test("a websocket that opens but stays silent falls back to SSE after its deadline", async () => {
  const world = createWorld();
  world.mode.websocket = "silent"; // a proxy accepted the upgrade, then nothing
  const client = world.connect();
  await world.clock.advance(2499);
  assert.equal(client.state, "connecting");
  assert.equal(world.eventSources.length, 0);
  await world.clock.advance(1);
  assert.equal(client.transport, "sse");
  assert.equal(client.state, "open");
  assert.equal(client.fallbackReason, "websocket: no round trip within 2500 ms");
  assert.deepEqual(client.stats.fallbacks.map(({ from, to, reason }) => ({ from, to, reason })), [
    { from: "websocket", to: "sse", reason: "websocket: no round trip within 2500 ms" },
  ]);
  assert.deepEqual(world.sockets[0].closedWith, { code: 1000, reason: "" }); // abandoned socket closed
  assert.equal(world.negotiations.length, 2); // renegotiated: tickets are single use
  assert.equal(world.eventSources[0].url, "http://app.test/rt/sse?ticket=ticket1");
  client.close();
});

test("a websocket that delivers HELLO but loses what the client sends (no PONG) is not accepted", async () => {
  const world = createWorld();
  world.mode.websocket = "oneway";
  const client = world.connect();
  await world.clock.advance(2499);
  assert.equal(client.state, "connecting");
  await world.clock.advance(1);
  assert.equal(client.transport, "sse");
  assert.equal(client.fallbackReason, "websocket: no round trip within 2500 ms");
  client.close();
});

test("a long-poll whose first poll does not answer within 10 s is aborted and the next transport tried", async () => {
  const world = createWorld();
  world.mode.longpoll = "hang";
  const client = world.connect({ transports: ["longpoll", "sse"] });
  await world.clock.advance(9999);
  assert.equal(client.state, "connecting");
  await world.clock.advance(1);
  assert.equal(client.transport, "sse");
  assert.equal(client.fallbackReason, "longpoll: no poll response within 10000 ms");
  assert.equal(world.abortedPolls, 1);
  client.close();
});

test("a blocked websocket (closed before open) falls back at once, without waiting for the deadline", async () => {
  const world = createWorld();
  world.mode.websocket = "blocked";
  const client = world.connect();
  await world.clock.advance(10);
  assert.equal(client.transport, "sse");
  assert.match(client.fallbackReason, /^websocket: closed with 1006/);
  client.close();
});

test("buffered SSE (no HELLO within its deadline) is closed and long-poll takes over", async () => {
  const world = createWorld();
  world.mode.websocket = "blocked";
  world.mode.sse = "buffered";
  const client = world.connect();
  const log = record(client);
  await world.clock.advance(2500);
  assert.equal(world.eventSources[0].closed, true); // or it would reconnect by itself forever
  assert.equal(client.transport, "longpoll");
  assert.equal(client.fallbackReason, "sse: no first event within 2500 ms");
  assert.deepEqual(client.stats.fallbacks.map((f) => [f.from, f.to]), [["websocket", "sse"], ["sse", "longpoll"]]);
  assert.deepEqual(log.find(([name]) => name === "transport"), [
    "transport", { transport: "longpoll", from: null, reason: "sse: no first event within 2500 ms" },
  ]);
  assert.equal(world.negotiations.length, 3);
  client.close();
});

test("the transports option sets the order and which transports are used at all", async () => {
  const world = createWorld();
  world.mode.longpoll = "down";
  const client = world.connect({ transports: ["longpoll", "sse"] });
  await world.clock.advance(10);
  assert.equal(world.sockets.length, 0);
  assert.equal(client.transport, "sse");
  assert.deepEqual(world.negotiations[0].body.transports, ["longpoll", "sse"]);
  assert.match(client.fallbackReason, /^longpoll: closed with 1006/);
  client.close();
});

test("a transport the server does not offer is skipped without spending the ticket", async () => {
  const world = createWorld();
  world.offered = ["sse", "longpoll"];
  const client = world.connect();
  await world.clock.advance(0);
  assert.equal(client.transport, "sse");
  assert.equal(world.negotiations.length, 1);
  assert.equal(client.fallbackReason, "websocket: not offered by the server");
  client.close();
});

test("when every transport fails, the client retries the whole cycle with backoff", async () => {
  const world = createWorld();
  world.mode = { websocket: "blocked", sse: "buffered", longpoll: "down" };
  const client = world.connect();
  await world.clock.advance(2600);
  assert.equal(client.state, "connecting");
  assert.equal(world.negotiations.length, 3);
  world.mode = { websocket: "ok", sse: "ok", longpoll: "ok" };
  await world.clock.advance(999); // the server's retry hint (1000 ms) is the lower bound
  assert.equal(world.negotiations.length, 3);
  await world.clock.advance(1000);
  assert.equal(client.state, "open");
  assert.equal(client.transport, "websocket");
  client.close();
});

test("negotiate refused with 401 is terminal; 503 is retried after Retry-After", async () => {
  const world = createWorld();
  world.negotiateHook = () => ({ status: 401, headers: new Headers(), json: async () => ({ error: "unauthorized", message: "no" }) });
  const client = world.connect();
  const log = record(client);
  await world.clock.advance(60000);
  assert.equal(client.state, "closed");
  assert.equal(world.negotiations.length, 1);
  assert.deepEqual(log.find(([n]) => n === "error")[1].code, "unauthorized");

  const world2 = createWorld();
  let n = 0;
  world2.negotiateHook = () => (n++ === 0
    ? { status: 503, headers: new Headers({ "Retry-After": "7" }), json: async () => ({ error: "unavailable" }) }
    : undefined);
  const client2 = world2.connect();
  await world2.clock.advance(6999);
  assert.equal(world2.negotiations.length, 1);
  await world2.clock.advance(1);
  assert.equal(client2.state, "open");
  client2.close();
});

test("liveness: silence for heartbeat + 10 s reconnects; server PINGs keep it alive and get PONGs", async () => {
  const world = createWorld();
  const client = world.connect();
  await world.clock.advance(0);
  const session = world.last();
  for (let i = 0; i < 4; i++) {
    await world.clock.advance(25000);
    session.push([7]);
  }
  await world.clock.advance(0);
  assert.equal(client.state, "open");
  assert.equal(framesOf(session, 8).length, 4); // every PING answered
  await world.clock.advance(34999);
  assert.equal(client.state, "open");
  await world.clock.advance(1);
  assert.equal(client.state, "reconnecting");
  assert.deepEqual(client.stats.lastClose, { code: 4000, reason: "no data from the server" });
  await world.clock.advance(2000);
  assert.equal(client.state, "open");
  assert.equal(world.sessions.length, 2);
  assert.equal(client.stats.reconnects, 1);
  client.close();
});

test("the HELLO heartbeat overrides the negotiated one for liveness", async () => {
  const world = createWorld();
  world.heartbeat = 5000;
  const client = world.connect();
  await world.clock.advance(0);
  await world.clock.advance(15000);
  assert.equal(client.state, "reconnecting");
  client.close();
});

test("terminal close codes stop reconnecting; reconnect codes do not", async () => {
  for (const [code, expected] of [[4501, "closed"], [4509, "closed"], [1000, "closed"], [1012, "open"], [4008, "open"]]) {
    const world = createWorld();
    const client = world.connect();
    const log = record(client);
    await world.clock.advance(0);
    world.last().kill(code, "bye");
    await world.clock.advance(5000);
    assert.equal(client.state, expected, `code ${code}`);
    const errors = log.filter(([n]) => n === "error");
    if (expected === "closed") {
      assert.equal(world.negotiations.length, 1, `code ${code} must not renegotiate`);
      assert.equal(errors.length, code === 1000 ? 0 : 1, `code ${code}`);
      assert.deepEqual(client.stats.lastClose, { code, reason: "bye" });
    } else {
      assert.equal(world.negotiations.length, 2);
    }
    client.close();
  }
});

test("close() closes the socket with 1000 and never reconnects", async () => {
  const world = createWorld();
  const client = world.connect();
  const log = record(client);
  await world.clock.advance(0);
  client.close();
  assert.equal(client.state, "closed");
  assert.equal(client.transport, null);
  assert.deepEqual(world.sockets[0].closedWith, { code: 1000, reason: "" });
  await world.clock.advance(120000);
  assert.equal(world.negotiations.length, 1);
  assert.deepEqual(log.at(-1), ["state", { state: "closed", previous: "open" }]);
});

test("the reconnect backoff grows while failing and resets once a connection is stable", async () => {
  const world = createWorld();
  world.retry = 0;
  const client = world.connect({ random: () => 0.999, transports: ["websocket"] });
  await world.clock.advance(0);
  world.mode.websocket = "blocked";
  const times = [];
  world.negotiateHook = (req) => { times.push(req.at); };
  world.last().kill(1011);
  await world.clock.advance(10000);
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  assert.deepEqual(gaps.map((g) => Math.round(g / 100) * 100), [1000, 2000, 4000]); // 500 * 2^n
  world.mode.websocket = "ok";
  await world.clock.advance(12000); // connects (next step), then stays up past the stable time
  assert.equal(client.state, "open");
  world.last().push([7]); // keep it alive
  times.length = 0;
  world.last().kill(1011);
  await world.clock.advance(600);
  assert.equal(times.length, 1); // back to the first step (< 500 ms)
  assert.ok(times[0] - (world.clock.now() - 600) < 500);
  client.close();
});

test("the next negotiate reports the last fallback once, with the policy's reason code", async () => {
  const world = createWorld();
  world.mode.websocket = "silent";
  const silent = world.connect();
  await world.clock.advance(2500);
  assert.equal(silent.transport, "sse");
  assert.equal(world.negotiations[0].body.fallback, undefined);
  assert.deepEqual(world.negotiations[1].body.fallback, { from: "websocket", to: "sse", reason: "timeout" });
  world.last().kill(1012, "restart");
  await world.clock.advance(30_000);
  assert.ok(world.negotiations.length >= 3);
  assert.equal(world.negotiations[2].body.fallback, undefined); // reported once
  silent.close();

  const blocked = createWorld();
  blocked.mode.websocket = "blocked"; // closed before it opened: the upgrade was refused
  const client = blocked.connect();
  await blocked.clock.advance(10);
  assert.equal(client.transport, "sse");
  assert.deepEqual(blocked.negotiations[1].body.fallback, { from: "websocket", to: "sse", reason: "refused" });
  client.close();
});
