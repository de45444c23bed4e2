// Liveness on an idle page (§6.1, §9): what counts as hearing from the server on each HTTP
// transport, and how long the client waits before it calls a quiet connection dead.
//
// Long-poll has no PING frames: a poll the server holds for its poll window and then answers
// with no frames is the heartbeat. An idle long-poll page must therefore stay on its session
// however long it idles, while a poll that never answers is still found dead.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createWorld, framesOf, record } from "./fakes.mjs";

/** A client on one transport, open, subscribed to "news"; `setup` adjusts the world first. */
async function idleClient(transport, setup = () => {}) {
  const world = createWorld();
  setup(world);
  const client = world.connect({ transports: [transport], failback: false });
  const log = record(client);
  const pubs = [];
  client.subscribe("news", (pub) => pubs.push(pub.data));
  await world.clock.advance(0);
  assert.equal(client.state, "open");
  assert.equal(client.transport, transport);
  return { world, client, log, pubs };
}

/** Everything that says the client lost its connection at some point. */
function assertNeverReconnected(world, client, log) {
  assert.equal(client.state, "open");
  assert.equal(client.stats.reconnects, 0);
  assert.equal(client.stats.lastClose, null);
  assert.equal(world.negotiations.length, 1, "no renegotiation");
  assert.equal(world.sessions.length, 1);
  assert.deepEqual(log.filter(([n]) => n === "state").map(([, p]) => p.state), ["open"]);
}

for (const [heartbeat, pollWindow] of [[25000, 25000], [5000, 25000], [25000, 5000]]) {
  test(`long-poll (heartbeat ${heartbeat}, pollWindow ${pollWindow}): empty poll answers keep an idle page on its session`, async () => {
    const { world, client, log, pubs } = await idleClient("longpoll", (w) => {
      w.heartbeat = heartbeat;
      w.pollWindow = pollWindow;
      w.emptyPolls = true;
    });
    const period = Math.max(heartbeat, pollWindow);
    // Several heartbeat periods, and far beyond heartbeat + 10 s, with nothing but empty polls.
    for (let i = 0; i < 6; i++) await world.clock.advance(period);
    assertNeverReconnected(world, client, log);
    assert.equal(world.emptyAnswers, 6 * (period / pollWindow));
    // Still the same, working session: a publication arrives, a send is answered.
    world.publish("news", "n", { late: true });
    await world.clock.advance(0);
    assert.deepEqual(pubs, [{ late: true }]);
    assert.deepEqual(await client.send("echo", 1), { echo: 1 });
    assert.equal(world.sessions.length, 1);
    client.close();
  });
}

test("long-poll: a poll that never answers is found dead after max(heartbeat, pollWindow) + 10 s", async () => {
  // The server would have answered empty after pollWindow (25 s): only past 25 s + 10 s of
  // silence is the connection dead, not after heartbeat (5 s) + 10 s.
  const { world, client } = await idleClient("longpoll", (w) => {
    w.heartbeat = 5000;
    w.pollWindow = 25000; // emptyPolls stays off: polls are held for ever (a stalled path)
  });
  await world.clock.advance(34999);
  assert.equal(client.state, "open");
  assert.equal(client.stats.lastClose, null);
  assert.equal(world.sessions.length, 1);
  await world.clock.advance(1);
  assert.equal(client.state, "reconnecting");
  assert.deepEqual(client.stats.lastClose, { code: 4000, reason: "no data from the server" });
  await world.clock.advance(3000);
  assert.equal(client.state, "open");
  assert.equal(world.sessions.length, 2);
  client.close();
});

test("long-poll: each empty answer re-arms the limit from when it arrived", async () => {
  // Empty answers come every 25 s, then the server goes quiet (the path stalls): the client
  // gives up 35 s after the last answer, not 35 s after the last frame.
  const { world, client } = await idleClient("longpoll", (w) => { w.emptyPolls = true; });
  await world.clock.advance(90000); // empty answers at 25, 50 and 75 s
  world.emptyPolls = false; // the poll held since 75 s still answers at 100 s; the next never
  await world.clock.advance(10000);
  assert.equal(world.sessions.length, 1);
  assert.equal(world.emptyAnswers, 4);
  await world.clock.advance(34999);
  assert.equal(client.state, "open");
  assert.equal(client.stats.lastClose, null);
  assert.equal(world.sessions.length, 1);
  await world.clock.advance(1);
  assert.equal(client.state, "reconnecting");
  assert.equal(client.stats.lastClose.code, 4000);
  client.close();
});

test("sse: the server's PING events keep an idle stream alive, and each is answered", async () => {
  // On an idle SSE stream the server sends PING as a data event with an id every heartbeat
  // (engine sweeper, §5.1/§9); EventSource never surfaces comment lines, and none are sent.
  const { world, client, log, pubs } = await idleClient("sse", (w) => { w.heartbeat = 5000; });
  const session = world.last();
  for (let i = 0; i < 10; i++) {
    await world.clock.advance(5000);
    session.eventSource.deliver([7], ++session.seq);
  }
  await world.clock.advance(0);
  assertNeverReconnected(world, client, log);
  assert.equal(framesOf(session, 8).length, 10); // every PING answered (by POST)
  assert.deepEqual(framesOf(session, 8).at(-1), [8, session.seq]);
  world.publish("news", "n", 1);
  await world.clock.advance(0);
  assert.deepEqual(pubs, [1]);
  client.close();
});

test("sse: a stream on which nothing arrives is dead after heartbeat + 10 s", async () => {
  const { world, client } = await idleClient("sse", (w) => { w.heartbeat = 5000; });
  await world.clock.advance(14999);
  assert.equal(client.state, "open");
  await world.clock.advance(1);
  assert.equal(client.state, "reconnecting");
  assert.equal(client.stats.lastClose.code, 4000);
  client.close();
});
