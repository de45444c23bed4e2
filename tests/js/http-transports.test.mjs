// SSE (§5) and long-poll (§6): uplink batching, PING/PONG, positions, session loss.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createWorld, framesOf, record } from "./fakes.mjs";

async function openOn(transport, options = {}, setup = () => {}) {
  const world = createWorld();
  setup(world);
  const client = world.connect({ transports: [transport], ...options });
  const log = record(client);
  await world.clock.advance(0);
  assert.equal(client.transport, transport);
  return { world, client, log };
}

for (const transport of ["sse", "longpoll"]) {
  test(`${transport}: sends made in one tick go in one POST with the session header`, async () => {
    const { world, client } = await openOn(transport);
    world.postLog.length = 0;
    const replies = [client.send("a", 1), client.send("b", 2)];
    client.subscribe("news", () => {});
    await world.clock.advance(0);
    assert.equal(world.postLog.length, 1);
    const [post] = world.postLog;
    assert.equal(post.headers["Content-Type"], "application/json");
    assert.equal(post.headers["X-Realtime-Session"], world.last().token);
    assert.equal(post.body, '[[3,1,"a",1],[3,2,"b",2],[5,3,"news",null]]');
    assert.deepEqual(await Promise.all(replies), [{ echo: 1 }, { echo: 2 }]);
    client.close();
  });

  test(`${transport}: one POST in flight at a time, and batches respect limits.batch`, async () => {
    const { world, client } = await openOn(transport, {}, (w) => { w.limits = { ...w.limits, batch: 2 }; });
    let release;
    let inFlight = 0;
    let maxInFlight = 0;
    world.sendHook = async () => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((resolve) => { release = resolve; });
      inFlight--;
    };
    world.postLog.length = 0;
    for (const event of ["a", "b", "c", "d", "e"]) client.send(event, null);
    await world.clock.advance(0);
    assert.equal(world.postLog.length, 1);
    for (let i = 0; i < 3; i++) {
      release();
      await world.clock.advance(0);
    }
    assert.equal(maxInFlight, 1);
    assert.deepEqual(world.postLog.map((p) => JSON.parse(p.body).map((f) => f[2])), [["a", "b"], ["c", "d"], ["e"]]);
    client.close();
  });

  test(`${transport}: binary data goes base64 in a type-19 frame`, async () => {
    const { world, client } = await openOn(transport, {}, (w) => { w.onEvent = (f) => ["ok", [...f[3]]]; });
    world.postLog.length = 0;
    assert.deepEqual(await client.send("upload", new Uint8Array([0, 1, 2, 255])), [0, 1, 2, 255]);
    assert.equal(world.postLog[0].body, '[[19,1,"upload","AAEC/w=="]]');
    client.close();
  });

  test(`${transport}: a session the server forgot (404) leads to a new session resumed by topic positions`, async () => {
    const { world, client } = await openOn(transport);
    const got = [];
    client.subscribe("news", (p) => got.push(p.offset));
    await world.clock.advance(0);
    world.publish("news", "n", 1);
    await world.clock.advance(0);
    world.last().expire();
    world.publish("news", "n", 2);
    await world.clock.advance(3000);
    assert.equal(client.state, "open");
    assert.equal(world.sessions.length, 2);
    assert.deepEqual(framesOf(world.last(), 5).map((f) => f[3]), [["E1", 1]]);
    assert.deepEqual(got, [1, 2]);
    client.close();
  });

  test(`${transport}: a CLOSE frame ends the session: 4010 reconnects, 4501 stops`, async () => {
    const { world, client } = await openOn(transport);
    world.last().kill(4010, "resync");
    await world.clock.advance(3000);
    assert.equal(client.state, "open");
    assert.equal(world.sessions.length, 2);
    world.last().kill(4501, "unauthorized");
    await world.clock.advance(3000);
    assert.equal(client.state, "closed");
    assert.deepEqual(client.stats.lastClose, { code: 4501, reason: "unauthorized" });
  });
}

test("sse: server PINGs are answered by POST with PONG carrying the last event id", async () => {
  const { world, client } = await openOn("sse");
  client.subscribe("news", () => {});
  await world.clock.advance(0);
  world.publish("news", "n", 1);
  world.last().push([7]);
  await world.clock.advance(0);
  assert.deepEqual(framesOf(world.last(), 8), [[8, 2]]); // seq 1 = SUB reply, 2 = the PUB
  client.close();
});

test("sse: a dropped stream is reattached to its own session with lastEventId; one the server refuses is replaced", async () => {
  // The client reattaches the stream itself, at the policy's pace (reattach.baseMs with jitter:
  // 250 * 0.5 here), not the EventSource's own (the server's `retry:`, for ever while down).
  const { world, client, log } = await openOn("sse");
  client.subscribe("news", () => {});
  await world.clock.advance(0);
  world.publish("news", "n", 1);
  await world.clock.advance(0);
  const es = world.eventSources[0];
  es.readyState = 0; // CONNECTING: the stream dropped
  es.onerror({});
  await world.clock.advance(0);
  assert.equal(es.closed, true);
  assert.equal(client.state, "open");
  assert.equal(log.filter(([n, p]) => n === "error" && p.type === "transport").length, 1);
  await world.clock.advance(124);
  assert.equal(world.eventSources.length, 1);
  await world.clock.advance(1);
  assert.equal(world.eventSources.length, 2);
  const url = new URL(world.eventSources[1].url);
  assert.equal(url.searchParams.get("ticket"), "ticket0");
  assert.equal(url.searchParams.get("lastEventId"), "2"); // seq 1 = SUB reply, 2 = the PUB
  assert.equal(client.state, "open");
  assert.equal(world.negotiations.length, 1);
  world.last().expire(); // the reattached stream now fails for good (CLOSED)
  await world.clock.advance(0);
  assert.equal(client.state, "reconnecting");
  assert.deepEqual(client.stats.lastClose, { code: 1006, reason: "event stream closed" });
  await world.clock.advance(3000);
  assert.equal(client.state, "open");
  assert.equal(world.eventSources.length, 3);
  client.close();
  assert.equal(world.eventSources[2].closed, true);
});

test("sse: a reattach that succeeds within the budget (retry + 2.5 s) keeps the session", async () => {
  const { world, client, log } = await openOn("sse");
  const es = world.eventSources[0];
  const seen = log.length;
  world.mode.sse = "down"; // the server is unreachable: each reattach fails on the network
  es.readyState = 0;
  es.onerror({});
  await world.clock.advance(1000); // reattaches at 125, 375 and 875 ms failed; the next at 1875
  assert.equal(world.eventSources.length, 4);
  world.mode.sse = "ok";
  await world.clock.advance(1000);
  assert.equal(world.eventSources.length, 5);
  await world.clock.advance(10000); // well past 3500 ms (and short of the liveness limit)
  assert.equal(client.state, "open");
  assert.equal(world.negotiations.length, 1);
  assert.deepEqual(log.slice(seen).filter(([n]) => n === "state"), []);
  client.close();
});

test("sse: a stream that cannot be reattached (server down) is given up after the budget (retry + 2.5 s)", async () => {
  const { world, client } = await openOn("sse");
  const es = world.eventSources[0];
  world.mode.sse = "down";
  es.readyState = 0;
  es.onerror({});
  await world.clock.advance(3499);
  assert.equal(client.state, "open");
  assert.equal(world.negotiations.length, 1);
  await world.clock.advance(1);
  assert.equal(client.state, "reconnecting");
  assert.deepEqual(client.stats.lastClose, { code: 1006, reason: "event stream not reattached within 3500 ms" });
  assert.ok(world.eventSources.every((source) => source.closed));
  // Reattached at the policy's pace: 125, 375, 875, 1875 and 3500 ms after the drop.
  assert.equal(world.eventSources.length, 6);
  world.mode.sse = "ok";
  await world.clock.advance(3000);
  assert.equal(client.state, "open");
  assert.equal(new URL(world.eventSources.at(-1).url).searchParams.get("ticket"), "ticket1");
  client.close();
});

test("sse: a POST answered 404 (session gone) reconnects", async () => {
  const { world, client } = await openOn("sse");
  world.last().expired = true;
  client.send("x", 1).catch(() => {});
  await world.clock.advance(0);
  assert.equal(client.state, "reconnecting");
  assert.equal(client.stats.lastClose.code, 4004);
  client.close();
});

test("longpoll: polls carry the session header and the cursor of the last response, frames in order", async () => {
  const { world, client } = await openOn("longpoll");
  const got = [];
  client.subscribe("news", (p) => got.push(p.data));
  await world.clock.advance(0);
  for (let i = 1; i <= 3; i++) world.publish("news", "n", i);
  await world.clock.advance(0);
  assert.deepEqual(got, [1, 2, 3]);
  const cursors = world.polls.map((p) => p.cursor);
  assert.equal(cursors[0], 0);
  assert.deepEqual(cursors, [...cursors].sort((a, b) => a - b));
  assert.equal(cursors.at(-1), world.last().seq);
  client.close();
});

test("longpoll: PING is answered with PONG by POST, and binary PUB data arrives as Uint8Array", async () => {
  const { world, client } = await openOn("longpoll");
  const got = [];
  client.subscribe("files", (p) => got.push(p.data));
  await world.clock.advance(0);
  world.last().push([7]);
  world.publish("files", "chunk", new Uint8Array([7, 8]));
  await world.clock.advance(0);
  assert.deepEqual(framesOf(world.last(), 8), [[8]]);
  assert.ok(got[0] instanceof Uint8Array);
  assert.deepEqual([...got[0]], [7, 8]);
  client.close();
});

test("longpoll: a proxy's 502 on a poll is retried on the same session, not a reconnect", async () => {
  const { world, client } = await openOn("longpoll");
  const realFetch = world.fetch;
  let failed = 0;
  const fetch = async (url, init) => {
    if (url.includes("/poll") && failed < 1) {
      failed++;
      return { status: 502, headers: new Headers(), json: async () => ({}) };
    }
    return realFetch(url, init);
  };
  client.close();
  const client2 = world.connect({ transports: ["longpoll"], fetch });
  await world.clock.advance(0);
  assert.equal(client2.state, "connecting");
  await world.clock.advance(500);
  assert.equal(client2.state, "open");
  assert.equal(world.sessions.length, 2); // the first client's and this one's: no extra session
  client2.close();
});

/** A long-poll client whose polls fail on the network while `world.pollDown` is true. */
async function flakyPolls() {
  const world = createWorld();
  world.pollDown = false;
  const fetch = async (url, init) => {
    if (url.includes("/poll") && world.pollDown) throw new TypeError("Failed to fetch");
    return world.fetch(url, init);
  };
  const client = world.connect({ transports: ["longpoll"], fetch });
  const log = record(client);
  await world.clock.advance(0);
  assert.equal(client.state, "open");
  return { world, client, log };
}

test("longpoll: a poll lost on the network is retried on the same session with the same cursor", async () => {
  const { world, client, log } = await flakyPolls();
  const got = [];
  client.subscribe("news", (p) => got.push(p.data));
  await world.clock.advance(0);
  world.publish("news", "n", 1);
  await world.clock.advance(0);
  const seen = log.length;
  const cursor = world.polls.at(-1).cursor;
  world.pollDown = true;
  world.last().push([7]); // ends the held poll; the next one fails
  await world.clock.advance(0);
  world.publish("news", "n", 2); // queued in the session's outbox meanwhile
  await world.clock.advance(2000);
  assert.equal(client.state, "open");
  world.pollDown = false;
  await world.clock.advance(2000);
  assert.equal(client.state, "open");
  assert.equal(world.sessions.length, 1);
  assert.deepEqual(got, [1, 2]);
  assert.ok(world.polls.some((p) => p.cursor >= cursor));
  assert.deepEqual(log.slice(seen).filter(([n]) => n === "state"), []);
  client.close();
});

test("longpoll: polls failing on the network for longer than retry + 2.5 s give the session up", async () => {
  const { world, client } = await flakyPolls();
  world.pollDown = true;
  world.last().push([7]);
  await world.clock.advance(3400);
  assert.equal(client.state, "open");
  await world.clock.advance(200);
  assert.equal(client.state, "reconnecting");
  assert.deepEqual(client.stats.lastClose, { code: 1006, reason: "poll failed: network error" });
  world.pollDown = false;
  await world.clock.advance(3000);
  assert.equal(client.state, "open");
  assert.equal(world.sessions.length, 2);
  client.close();
});

test("longpoll: a first poll that fails on the network fails the attempt at once", async () => {
  const world = createWorld();
  const fetch = async (url, init) => {
    if (url.includes("/poll")) throw new TypeError("Failed to fetch");
    return world.fetch(url, init);
  };
  const client = world.connect({ transports: ["longpoll"], fetch });
  await world.clock.advance(0);
  assert.equal(client.stats.fallbacks.length, 1);
  assert.match(client.stats.fallbacks[0].reason, /closed with 1006 \(poll failed: network error\)/);
  client.close();
});

test("longpoll: close() aborts the held poll and polling stops", async () => {
  const { world, client } = await openOn("longpoll");
  const polls = world.polls.length;
  client.close();
  await world.clock.advance(60000);
  world.last().push([7]);
  await world.clock.advance(0);
  assert.equal(world.polls.length, polls);
});
