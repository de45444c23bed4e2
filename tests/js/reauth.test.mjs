// Re-authentication (the policy's `reauthenticate`): a session the server ends for its
// credentials (4501) is resumed with a fresh token from the token function, nothing lost or
// doubled; a renewal that fails closes the client with 4501 "credentials refused".
import { test } from "node:test";
import assert from "node:assert/strict";
import { createWorld, framesOf, record } from "./fakes.mjs";

/** A token function: "tok1", "tok2"... then what `next` says once set. */
function tokens() {
  const fn = async () => {
    fn.calls++;
    if (fn.next && fn.calls > 1) return fn.next();
    return `tok${fn.calls}`;
  };
  fn.calls = 0;
  /** @type {null | (() => any)} */
  fn.next = null;
  return fn;
}

async function openClient(transport, options = {}) {
  const world = createWorld();
  world.heartbeat = 1e9;
  const token = options.token ?? tokens();
  const client = world.connect({ transports: [transport], failback: false, ...options, token });
  const log = record(client);
  await world.clock.advance(0);
  assert.equal(client.state, "open");
  return { world, client, log, token };
}

const auth = (world, n) => world.negotiations[n].headers.Authorization;

for (const transport of ["websocket", "sse", "longpoll"]) {
  test(`${transport}: a 4501 is resumed with a fresh token at once, nothing lost, doubled or applied twice`, async () => {
    const { world, client, log, token } = await openClient(transport);
    const got = [];
    client.subscribe("feed", (pub) => got.push(pub.data));
    await world.clock.advance(0);
    for (let n = 0; n < 3; n++) world.publish("feed", "n", n);
    await world.clock.advance(0);
    world.onEvent = () => null; // the first session never answers the send: it is in flight
    const sent = client.send("count", { key: "k" });
    await world.clock.advance(0);
    const first = world.last();
    assert.equal(framesOf(first, 3).length, 1);
    const ref = framesOf(first, 3)[0][1];
    first.kill(4501, "authentication expired");
    for (let n = 3; n < 6; n++) world.publish("feed", "n", n); // while the client is away
    world.onEvent = (frame) => ["ok", { applied: frame[1] }];
    await world.clock.advance(0);
    assert.equal(client.state, "open"); // at once: no backoff wait
    assert.equal(token.calls, 2);
    assert.equal(auth(world, 1), "Bearer tok2");
    const second = world.last();
    assert.notEqual(second, first);
    assert.deepEqual(framesOf(second, 5).map((f) => f[3]), [["E1", 3]]); // resumed from its position
    assert.deepEqual(framesOf(second, 3).map((f) => f[1]), [ref]); // sent again under its ref
    assert.deepEqual(await sent, { applied: ref });
    world.publish("feed", "n", 6);
    await world.clock.advance(0);
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6]);
    assert.equal(client.stats.reauthentications, 1);
    assert.equal(client.stats.reconnects, 1);
    assert.deepEqual(log.filter(([name]) => name === "state").map(([, p]) => p.state), ["open", "reconnecting", "open"]);
    assert.equal(log.filter(([name]) => name === "error").length, 0);
    client.close();
  });
}

/** Expire the first session with 4501 and expect the client closed for its credentials. */
async function expectRefused(world, client, log, detail) {
  world.last().kill(4501, "authentication expired");
  await world.clock.advance(0);
  assert.equal(client.state, "closed");
  assert.deepEqual(client.stats.lastClose, { code: 4501, reason: "credentials refused" });
  const errors = log.filter(([name]) => name === "error").map(([, p]) => p);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].type, "reauth");
  assert.equal(errors[0].code, 4501);
  assert.equal(errors[0].reason, "credentials refused");
  assert.match(errors[0].message, detail);
  const negotiations = world.negotiations.length;
  await world.clock.advance(120000);
  assert.equal(world.negotiations.length, negotiations); // stopped: no loop
  await assert.rejects(client.send("e", 1), { code: "closed" });
}

for (const [name, next, detail] of [
  ["null", () => null, /gave no token/],
  ["undefined", () => undefined, /gave no token/],
  ["an empty string", () => "", /gave no token/],
  ["a throw", () => { throw new Error("refresh failed"); }, /token function failed: Error: refresh failed/],
]) {
  test(`a token function that gives ${name} on renewal closes the client with 4501 "credentials refused"`, async () => {
    const token = tokens();
    token.next = next;
    const { world, client, log } = await openClient("websocket", { token });
    await expectRefused(world, client, log, detail);
    assert.equal(token.calls, 2);
    assert.equal(world.negotiations.length, 1);
  });
}

for (const status of [401, 403]) {
  test(`a fresh token the server refuses (${status}) closes the client with 4501 "credentials refused"`, async () => {
    const { world, client, log, token } = await openClient("websocket");
    world.negotiateHook = () => ({
      status, ok: false, headers: new Headers(), json: async () => ({ error: "unauthorized", message: "no" }),
    });
    await expectRefused(world, client, log, new RegExp(`unauthorized \\(HTTP ${status}\\)`));
    assert.equal(token.calls, 2);
  });
}

test("a 4501 again right after re-authenticating closes the client (no loop); later it renews again", async () => {
  const { world, client, log, token } = await openClient("websocket");
  world.last().kill(4501, "authentication expired");
  await world.clock.advance(0);
  assert.equal(client.stats.reauthentications, 1);
  await world.clock.advance(10000); // reauthenticate.minUpMs: a later 4501 is a new expiry
  world.last().kill(4501, "authentication expired");
  await world.clock.advance(0);
  assert.equal(client.state, "open");
  assert.equal(client.stats.reauthentications, 2);
  await world.clock.advance(9999);
  await expectRefused(world, client, log, /closed with 4501 \(authentication expired\) again 9999 ms after re-authenticating/);
  assert.equal(token.calls, 3);
});

test("a fixed token cannot be renewed: a 4501 closes the client with the server's code and reason", async () => {
  const { world, client, log } = await openClient("websocket", { token: "fixed" });
  world.last().kill(4501, "authentication expired");
  await world.clock.advance(0);
  assert.equal(client.state, "closed");
  assert.deepEqual(client.stats.lastClose, { code: 4501, reason: "authentication expired" });
  const errors = log.filter(([name]) => name === "error").map(([, p]) => p);
  assert.deepEqual(errors.map((e) => [e.type, e.code]), [["close", 4501]]);
  assert.equal(client.stats.reauthentications, 0);
  assert.equal(world.negotiations.length, 1);
});

test("a network failure while renewing is retried with backoff, then the fresh token resumes", async () => {
  const { world, client, token } = await openClient("websocket");
  const fetch = world.fetch;
  let down = true;
  world.negotiateHook = () => (down ? Promise.reject(new TypeError("Failed to fetch")) : undefined);
  world.last().kill(4501, "authentication expired");
  await world.clock.advance(0);
  assert.equal(client.state, "reconnecting");
  down = false;
  await world.clock.advance(5000);
  assert.equal(client.state, "open");
  assert.equal(client.stats.reauthentications, 1);
  assert.ok(token.calls >= 3);
  assert.equal(world.fetch, fetch);
  client.close();
});
