// Topics, positions and resume (§7), sends, replies, queueing and retries (§8).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createWorld, framesOf, record } from "./fakes.mjs";

async function openClient(options = {}, setup = () => {}) {
  const world = createWorld();
  setup(world);
  const client = world.connect(options);
  const log = record(client);
  await world.clock.advance(0);
  assert.equal(client.state, "open");
  return { world, client, log };
}

test("subscribe delivers publications as {id, topic, event, data, offset, epoch}; unsubscribe stops them", async () => {
  const { world, client } = await openClient();
  const got = [];
  const off = client.subscribe("news", (pub) => got.push(pub));
  await world.clock.advance(0);
  assert.deepEqual(await off.ready, { recovered: false, epoch: "E1", offset: 0 });
  assert.deepEqual(framesOf(world.last(), 5), [[5, 1, "news", null]]); // since null: from now
  world.publish("news", "new", { title: "Build passed" });
  await world.clock.advance(0);
  assert.deepEqual(got, [
    { id: "E1:news:1", topic: "news", event: "new", data: { title: "Build passed" }, offset: 1, epoch: "E1" },
  ]);
  off();
  await world.clock.advance(0);
  assert.equal(framesOf(world.last(), 6).length, 1);
  world.publish("news", "new", 2);
  await world.clock.advance(0);
  assert.equal(got.length, 1);
  client.close();
});

test("two handlers on one topic share one SUB, and the topic stays until the last one leaves", async () => {
  const { world, client } = await openClient();
  const a = [];
  const b = [];
  const offA = client.subscribe("room", (p) => a.push(p.offset));
  client.subscribe("room", (p) => b.push(p.offset));
  await world.clock.advance(0);
  assert.equal(framesOf(world.last(), 5).length, 1);
  offA();
  world.publish("room", "x", 1);
  await world.clock.advance(0);
  assert.deepEqual([a, b], [[], [1]]);
  assert.equal(framesOf(world.last(), 6).length, 0);
  client.close();
});

test("a PUB whose offset is not beyond the topic's position is dropped (no doubles)", async () => {
  const { world, client } = await openClient();
  const got = [];
  client.subscribe("t", (p) => got.push(p.offset));
  await world.clock.advance(0);
  const s = world.last();
  for (const offset of [1, 2, 2, 1, 3]) s.push([1, "t", "e", null, offset, "E1"]);
  s.push([1, "t", "e", null, 1, "E2"]); // a new epoch starts over
  await world.clock.advance(0);
  assert.deepEqual(got, [1, 2, 3, 1]);
  client.close();
});

test("after a reconnect every topic is resubscribed with since = its last position, and 'recovered' is emitted", async () => {
  const { world, client, log } = await openClient();
  const got = [];
  client.subscribe("news", (p) => got.push(p.offset));
  client.subscribe("chat", () => {});
  await world.clock.advance(0);
  world.publish("news", "n", 1);
  world.publish("news", "n", 2);
  await world.clock.advance(0);
  world.last().kill(1012, "restart");
  world.publish("news", "n", 3); // missed while disconnected
  await world.clock.advance(3000);
  assert.equal(client.state, "open");
  const subs = framesOf(world.last(), 5).map(([, , topic, since]) => [topic, since]);
  assert.deepEqual(subs, [["news", ["E1", 2]], ["chat", ["E1", 0]]]);
  assert.deepEqual(got, [1, 2, 3]); // replayed after the REPLY, nothing lost, nothing doubled
  assert.deepEqual(log.filter(([n]) => n === "recovered").map(([, p]) => p), [
    { topic: "news", recovered: true }, { topic: "chat", recovered: true },
  ]);
  client.close();
});

test("a topic unsubscribed while disconnected is not resubscribed", async () => {
  const { world, client } = await openClient();
  const off = client.subscribe("gone", () => {});
  client.subscribe("kept", () => {});
  await world.clock.advance(0);
  world.last().kill(1012);
  await world.clock.advance(0);
  off();
  await world.clock.advance(3000);
  assert.equal(client.state, "open");
  assert.deepEqual(framesOf(world.last(), 5).map((f) => f[2]), ["kept"]);
  client.close();
});

test("recovered: false moves the topic to the server's position and tells the application", async () => {
  const { world, client, log } = await openClient();
  const got = [];
  client.subscribe("news", (p) => got.push([p.epoch, p.offset]));
  await world.clock.advance(0);
  world.publish("news", "n", 1);
  await world.clock.advance(0);
  world.last().kill(1012);
  world.epoch = "E2"; // history lost (server restart)
  world.offsets.set("news", 7);
  await world.clock.advance(3000);
  assert.deepEqual(log.filter(([n]) => n === "recovered").map(([, p]) => p), [{ topic: "news", recovered: false }]);
  world.publish("news", "n", 8);
  await world.clock.advance(0);
  assert.deepEqual(got, [["E1", 1], ["E2", 8]]);
  client.close();
});

test("send() resolves with the REPLY data on ok and rejects with the server's status as .code", async () => {
  const { world, client } = await openClient({}, (w) => {
    w.onEvent = (frame) => (frame[2] === "bad" ? ["unknown_event", { message: "no handler" }] : ["ok", { got: frame[3] }]);
  });
  assert.deepEqual(await client.send("chat.send", { text: "hi" }), { got: { text: "hi" } });
  await assert.rejects(client.send("bad", 1), (err) => err.code === "unknown_event" && /no handler/.test(err.message));
  assert.deepEqual(framesOf(world.last(), 3).map((f) => f.slice(0, 3)), [[3, 1, "chat.send"], [3, 2, "bad"]]);
  client.close();
});

test("send() rejects with code 'timeout' when no REPLY arrives within sendTimeout", async () => {
  const { world, client } = await openClient({ sendTimeout: 3000 }, (w) => { w.onEvent = () => null; });
  const p = client.send("slow", 1);
  let error = null;
  p.catch((e) => { error = e; });
  await world.clock.advance(2999);
  assert.equal(error, null);
  await world.clock.advance(1);
  assert.equal(error.code, "timeout");
  client.close();
});

test("client-side checks: bad event names and frames over limits.message reject without touching the socket", async () => {
  const { world, client } = await openClient({}, (w) => { w.limits = { ...w.limits, message: 100 }; });
  await assert.rejects(client.send("has space", 1), (e) => e.code === "bad_event");
  await assert.rejects(client.send("big", "x".repeat(200)), (e) => e.code === "payload_too_large");
  assert.throws(() => client.subscribe("$sys", () => {}), TypeError);
  assert.equal(framesOf(world.last(), 3).length, 0);
  assert.equal(client.state, "open");
  client.close();
});

test("the one reserved topic a client may subscribe to is a diagnose run's $diagnose:<id>", async () => {
  const { world, client } = await openClient();
  const off = client.subscribe("$diagnose:run-1234_ab", () => {});
  await world.clock.advance(0);
  assert.deepEqual(framesOf(world.last(), 5).map((f) => f[2]), ["$diagnose:run-1234_ab"]);
  for (const topic of ["$diagnose:short", "$diagnose:has.dot1234", "$diagnosex:run-1234", `$diagnose:${"a".repeat(65)}`]) {
    assert.throws(() => client.subscribe(topic, () => {}), TypeError, topic);
  }
  await assert.rejects(client.publish("$diagnose:run-1234_ab", "e", 1), (e) => e.code === "bad_topic");
  off();
  client.close();
});

test("sends made while reconnecting are queued and sent once, in order, after the resubscribe", async () => {
  const { world, client } = await openClient();
  client.subscribe("news", () => {});
  await world.clock.advance(0);
  world.last().kill(1012);
  await world.clock.advance(0);
  assert.equal(client.state, "reconnecting");
  const replies = [client.send("a", 1), client.send("b", 2), client.send("c", 3)];
  await world.clock.advance(3000);
  const s = world.last();
  assert.deepEqual(s.received.filter((f) => f[0] !== 7).map((f) => [f[0], f[2]]), [[5, "news"], [3, "a"], [3, "b"], [3, "c"]]);
  assert.deepEqual(await Promise.all(replies), [{ echo: 1 }, { echo: 2 }, { echo: 3 }]);
  client.close();
});

test("the queue is bounded: beyond maxQueue, send() rejects with code 'queue_full'", async () => {
  const world = createWorld();
  world.mode = { websocket: "blocked", sse: "buffered", longpoll: "down" };
  const client = world.connect({ maxQueue: 2 });
  const a = client.send("a");
  const b = client.send("b");
  await assert.rejects(client.send("c"), (e) => e.code === "queue_full");
  client.close();
  await assert.rejects(a, (e) => e.code === "closed");
  await assert.rejects(b, (e) => e.code === "closed");
});

test("unanswered EVENTs are sent again with the same ref after a reconnect and resolve once", async () => {
  let answer = false;
  const { world, client } = await openClient({}, (w) => { w.onEvent = (f) => (answer ? ["ok", f[3]] : null); });
  const p = client.send("pay", { amount: 5 });
  await world.clock.advance(0);
  const [[, ref]] = framesOf(world.last(), 3);
  world.last().kill(1001, "going away");
  answer = true;
  await world.clock.advance(3000);
  const resent = framesOf(world.last(), 3);
  assert.deepEqual(resent, [[3, ref, "pay", { amount: 5 }]]);
  assert.deepEqual(await p, { amount: 5 });
  world.last().push([4, ref, "ok", "again"]); // a repeated REPLY is ignored
  await world.clock.advance(0);
  client.close();
});

test("a refused subscription rejects its ready promise, emits an error and is not resubscribed", async () => {
  const { world, client, log } = await openClient({}, (w) => w.refuse.add("secret"));
  const off = client.subscribe("secret", () => {});
  await assert.rejects(off.ready, (e) => e.code === "forbidden");
  assert.deepEqual(log.find(([n]) => n === "error")[1].code, "forbidden");
  world.last().kill(1012);
  await world.clock.advance(3000);
  assert.equal(framesOf(world.last(), 5).length, 0);
  client.close();
});

test("MSG frames reach 'message' listeners; binary data arrives as Uint8Array", async () => {
  const { world, client, log } = await openClient();
  world.last().push([2, "note", { a: 1 }]);
  world.last().push([2, "blob", new Uint8Array([1, 2, 3])]);
  await world.clock.advance(0);
  const messages = log.filter(([n]) => n === "message").map(([, p]) => p);
  assert.deepEqual(messages[0], { event: "note", data: { a: 1 } });
  assert.ok(messages[1].data instanceof Uint8Array);
  assert.deepEqual([...messages[1].data], [1, 2, 3]);
  client.close();
});

test("binary send on WebSocket goes as one binary message; publish() sends a PUBLISH frame", async () => {
  const { world, client } = await openClient({}, (w) => { w.onEvent = (f) => ["ok", f[0] === 3 ? f[3].length : f[2]]; });
  assert.equal(await client.send("upload", new Uint8Array([0, 1, 2, 255]).buffer), 4);
  const binary = world.sockets[0].sent.find((m) => typeof m !== "string");
  assert.deepEqual([...binary], [...new TextEncoder().encode('[19,1,"upload",null]'), 0, 0, 1, 2, 255]);
  assert.equal(await client.publish("room", "draw", { x: 1 }), "room");
  assert.deepEqual(framesOf(world.last(), 10), [[10, 2, "room", "draw", { x: 1 }]]);
  client.close();
});

test("an exception in a handler does not break delivery to the others and is reported as an error", async () => {
  const { world, client, log } = await openClient();
  const got = [];
  client.subscribe("t", () => { throw new Error("app bug"); });
  client.subscribe("t", (p) => got.push(p.offset));
  await world.clock.advance(0);
  world.publish("t", "e", null);
  world.publish("t", "e", null);
  await world.clock.advance(0);
  assert.deepEqual(got, [1, 2]);
  const errors = log.filter(([n]) => n === "error").map(([, p]) => [p.type, p.error.message]);
  assert.deepEqual(errors, [["handler", "app bug"], ["handler", "app bug"]]);
  assert.equal(client.state, "open");
  client.close();
});
