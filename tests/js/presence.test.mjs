// Presence (§12): SUB with {presence: true}, the snapshot in its REPLY, joins and leaves on
// `$presence:<topic>` applied once and in order, the diff after a reconnect, PRESENCE requests.
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

const ids = (members) => members.map((m) => m.id).sort();
const changes = (log) => log.filter(([name]) => name === "join" || name === "leave")
  .map(([name, topic, member]) => `${name} ${topic} ${member.id}`);
const ofType = (log, type) => log.filter(([name]) => name === type).map(([, payload]) => payload);

for (const transport of ["websocket", "sse", "longpoll"]) {
  test(`${transport}: the snapshot fills members(), then joins and leaves arrive in order`, async () => {
    const { world, client, log } = await openClient({ transports: [transport], failback: false }, (w) => {
      w.join("room", "ada", { name: "Ada" });
      w.join("room", "bob", { name: "Bob" });
    });
    const off = client.subscribe("room", () => {}, { presence: true });
    assert.deepEqual(client.members("room"), []); // nothing known before the snapshot
    await off.ready;
    await world.clock.advance(0);
    assert.deepEqual(framesOf(world.last(), 5), [[5, 1, "room", null, { presence: true }]]);
    assert.deepEqual(client.members("room"), [{ id: "ada", info: { name: "Ada" } }, { id: "bob", info: { name: "Bob" } }]);
    assert.deepEqual(changes(log), []); // the first snapshot is no change: the "presence" event says it
    assert.deepEqual(ofType(log, "presence"), [{ topic: "room", members: client.members("room"), count: 2,
      truncated: false, events: true }]);
    world.join("room", "cid", { name: "Cid" });
    world.leave("room", "ada");
    world.join("room", "dan", null);
    await world.clock.advance(0);
    assert.deepEqual(changes(log), ["join room cid", "leave room ada", "join room dan"]);
    assert.deepEqual(ids(client.members("room")), ["bob", "cid", "dan"]);
    const left = log.find(([name]) => name === "leave");
    assert.deepEqual(left[2], { id: "ada", info: { name: "Ada" } });
    client.close();
  });
}

test("joins and leaves at or below the snapshot's offset, or repeated, are dropped", async () => {
  const { world, client, log } = await openClient({}, (w) => {
    w.join("room", "ada");
    w.join("room", "bob");
    w.leave("room", "bob"); // offset 3: the snapshot is at 3
  });
  client.subscribe("room", () => {}, { presence: true });
  await world.clock.advance(0);
  assert.deepEqual(ids(client.members("room")), ["ada"]);
  const s = world.last();
  s.push([1, "$presence:room", "join", { id: "bob", info: null }, 2, "E1"]); // before the snapshot
  s.push([1, "$presence:room", "leave", { id: "ada", info: null }, 3, "E1"]); // at the snapshot
  const next = world.join("room", "cid"); // offset 4
  s.push(next); // the same PUB again (two resume paths overlapping)
  s.push([1, "$presence:room", "leave", { id: "cid", info: null }, 4, "E1"]);
  await world.clock.advance(0);
  assert.deepEqual(changes(log), ["join room cid"]);
  assert.deepEqual(ids(client.members("room")), ["ada", "cid"]);
  client.close();
});

test("a join of a member already known, or a leave of an unknown one, is no event", async () => {
  const { world, client, log } = await openClient({}, (w) => w.join("room", "ada", { name: "Ada" }));
  client.subscribe("room", () => {}, { presence: true });
  await world.clock.advance(0);
  world.publish("$presence:room", "join", { id: "ada", info: { name: "Ada L." } });
  world.publish("$presence:room", "leave", { id: "zed", info: null });
  world.publish("$presence:room", "wave", { id: "ada", info: null }); // an event this client does not know
  world.publish("$presence:room", "join", { info: "no id" });
  await world.clock.advance(0);
  assert.deepEqual(changes(log), []);
  assert.deepEqual(client.members("room"), [{ id: "ada", info: { name: "Ada L." } }]); // info kept up to date
  world.leave("room", "ada");
  world.publish("$presence:room", "leave", { id: "ada", info: null });
  await world.clock.advance(0);
  assert.deepEqual(changes(log), ["leave room ada"]);
  client.close();
});

test("after a reconnect the new snapshot reports only the differences", async () => {
  const { world, client, log } = await openClient({}, (w) => {
    for (const id of ["ada", "bob", "cid"]) w.join("room", id, { name: id });
  });
  const got = [];
  client.subscribe("room", (pub) => got.push(pub.data), { presence: true });
  await world.clock.advance(0);
  world.last().kill(1012, "restart");
  await world.clock.advance(0);
  assert.equal(client.state, "reconnecting");
  assert.deepEqual(ids(client.members("room")), ["ada", "bob", "cid"]); // kept while reconnecting
  world.leave("room", "bob"); // missed while disconnected
  world.join("room", "dan", { name: "dan" });
  world.publish("room", "msg", "hello");
  await world.clock.advance(3000);
  assert.equal(client.state, "open");
  const [sub] = framesOf(world.last(), 5);
  assert.deepEqual(sub.slice(2), ["room", ["E1", 0], { presence: true }]); // resubscribed with presence
  assert.deepEqual(changes(log), ["leave room bob", "join room dan"]); // nothing for ada and cid
  assert.deepEqual(ids(client.members("room")), ["ada", "cid", "dan"]);
  const syncs = ofType(log, "presence");
  assert.equal(syncs.length, 2);
  assert.deepEqual(ids(syncs[1].members), ["ada", "cid", "dan"]);
  assert.deepEqual(got, ["hello"]);
  world.join("room", "eve");
  await world.clock.advance(0);
  assert.deepEqual(changes(log).slice(2), ["join room eve"]);
  client.close();
});

test("$presence: PUBs never reach a subscription's handler", async () => {
  const { world, client, log } = await openClient();
  const withPresence = [];
  const without = [];
  client.subscribe("room", (pub) => withPresence.push(pub.topic), { presence: true });
  client.subscribe("lobby", (pub) => without.push(pub.topic));
  await world.clock.advance(0);
  world.join("room", "ada");
  world.publish("room", "msg", 1);
  const s = world.last();
  s.push([1, "$presence:lobby", "join", { id: "bob", info: null }, 1, "E1"]); // not followed
  s.push([1, "$presence:", "join", { id: "bob", info: null }, 1, "E1"]);
  world.publish("lobby", "msg", 2);
  await world.clock.advance(0);
  assert.deepEqual(withPresence, ["room"]);
  assert.deepEqual(without, ["lobby"]);
  assert.deepEqual(changes(log), ["join room ada"]);
  assert.deepEqual(client.members("lobby"), []);
  client.close();
});

test("a presence error in the snapshot: the messages still come, an 'error' event says why", async () => {
  const { world, client, log } = await openClient({}, (w) => w.noPresence.add("room"));
  const got = [];
  const off = client.subscribe("room", (pub) => got.push(pub.data), { presence: true });
  assert.deepEqual(await off.ready, { recovered: false, epoch: "E1", offset: 0 });
  world.publish("room", "msg", "still here");
  await world.clock.advance(0);
  assert.deepEqual(got, ["still here"]);
  assert.deepEqual(ofType(log, "error"), [{ type: "presence", topic: "room", code: "presence_disabled",
    message: "presence_disabled: no presence on this topic" }]);
  assert.deepEqual(ofType(log, "presence"), []);
  assert.deepEqual(client.members("room"), []);
  client.close();
});

test("a server that sends no snapshot: an 'error' event with code 'unsupported'", async () => {
  const { world, client, log } = await openClient({}, (w) => { w.snapshot = () => undefined; });
  await client.subscribe("room", () => {}, { presence: true }).ready;
  await world.clock.advance(0);
  const [error] = ofType(log, "error");
  assert.equal(error.type, "presence");
  assert.equal(error.code, "unsupported");
  client.close();
});

test("events: false: the members are the snapshot's, nothing is applied after it", async () => {
  const { world, client, log } = await openClient({}, (w) => {
    w.join("big", "ada");
    const plain = w.snapshot;
    w.snapshot = (topic) => ({ ...plain(topic), events: false, count: 5000, truncated: true });
  });
  client.subscribe("big", () => {}, { presence: true });
  await world.clock.advance(0);
  world.last().push([1, "$presence:big", "join", { id: "bob", info: null }, 9, "E1"]);
  await world.clock.advance(0);
  assert.deepEqual(ids(client.members("big")), ["ada"]);
  assert.deepEqual(changes(log), []);
  assert.deepEqual(ofType(log, "presence").map((p) => [p.count, p.truncated, p.events]), [[5000, true, false]]);
  client.close();
});

test("a truncated listing: the leave of a member it left out is still reported", async () => {
  const { world, client, log } = await openClient({}, (w) => {
    w.join("big", "ada");
    w.join("big", "zed", { name: "Zed" });
    const plain = w.snapshot;
    w.snapshot = (topic) => {
      const snap = plain(topic);
      return { ...snap, members: snap.members.filter((m) => m.id === "ada"), truncated: true };
    };
  });
  client.subscribe("big", () => {}, { presence: true });
  await world.clock.advance(0);
  assert.deepEqual(ids(client.members("big")), ["ada"]);
  world.leave("big", "zed");
  await world.clock.advance(0);
  assert.deepEqual(changes(log), ["leave big zed"]);
  const presence = ofType(log, "presence");
  assert.deepEqual(ids(client.members("big")), ["ada"]);
  assert.equal(presence.length, 1);
  client.close();
});

test("unsubscribing forgets the members without leave events; UNSUB stops both", async () => {
  const { world, client, log } = await openClient({}, (w) => w.join("room", "ada"));
  const off = client.subscribe("room", () => {}, { presence: true });
  await world.clock.advance(0);
  assert.equal(client.members("room").length, 1);
  off();
  await world.clock.advance(0);
  assert.deepEqual(client.members("room"), []);
  assert.deepEqual(framesOf(world.last(), 6).map((f) => f[2]), ["room"]);
  world.join("room", "bob");
  world.last().push([1, "$presence:room", "join", { id: "cid", info: null }, 99, "E1"]);
  await world.clock.advance(0);
  assert.deepEqual(changes(log), []);
  assert.deepEqual(client.members("room"), []);
  client.close();
});

test("presence on a topic already subscribed without it: subscribed again with presence, quietly", async () => {
  const { world, client, log } = await openClient({}, (w) => w.join("room", "ada"));
  client.subscribe("room", () => {});
  await world.clock.advance(0);
  world.publish("room", "msg", 1);
  await world.clock.advance(0);
  client.subscribe("room", () => {}, { presence: true });
  await world.clock.advance(0);
  assert.deepEqual(framesOf(world.last(), 5).map((f) => f.slice(2)), [["room", null], ["room", ["E1", 1], { presence: true }]]);
  assert.deepEqual(ids(client.members("room")), ["ada"]);
  assert.deepEqual(ofType(log, "recovered"), []); // not a resume
  assert.equal(ofType(log, "presence").length, 1);
  client.close();
});

test("presence() sends PRESENCE and resolves with {members, count, truncated}", async () => {
  const { world, client } = await openClient({}, (w) => w.join("room", "ada", { name: "Ada" }));
  const listing = await client.presence("room");
  assert.deepEqual(framesOf(world.last(), 11), [[11, 1, "room"]]);
  assert.deepEqual(listing, { members: [{ id: "ada", info: { name: "Ada" } }], count: 1, truncated: false });
  client.close();
});

test("presence() rejects with the error reply's code, and bad_topic for an invalid topic", async () => {
  const { world, client } = await openClient({}, (w) => w.noPresence.add("secret"));
  await assert.rejects(client.presence("secret"), (error) => error.code === "presence_disabled"
    && error.message === "presence_disabled: no presence on this topic");
  await assert.rejects(client.presence("$presence:room"), (error) => error.code === "bad_topic");
  assert.equal(framesOf(world.last(), 11).length, 1); // the invalid topic was never sent
  client.close();
});

test("presence() waits for a connection and is sent again after a reconnect until answered", async () => {
  const world = createWorld();
  world.join("room", "ada");
  const client = world.connect();
  const early = client.presence("room"); // before the connection opens: queued
  await world.clock.advance(0);
  assert.equal((await early).count, 1);
  world.dropPresence = true; // the server's answer is lost...
  const pending = client.presence("room");
  await world.clock.advance(0);
  const [sent] = framesOf(world.last(), 11).slice(-1);
  world.last().kill(1012);
  world.dropPresence = false;
  world.join("room", "bob");
  await world.clock.advance(3000);
  assert.equal(client.state, "open");
  assert.deepEqual(framesOf(world.last(), 11), [sent]); // ...so it is sent again on the new session, same ref
  assert.equal((await pending).count, 2); // and answered there
  client.close();
});

test("close() forgets the members", async () => {
  const { world, client } = await openClient({}, (w) => w.join("room", "ada"));
  client.subscribe("room", () => {}, { presence: true });
  await world.clock.advance(0);
  client.close();
  assert.deepEqual(client.members("room"), []);
  await assert.rejects(client.presence("room"), (error) => error.code === "closed");
});

test("subscribe() refuses options that are not an object", async () => {
  const { client } = await openClient();
  assert.throws(() => client.subscribe("room", () => {}, null), TypeError);
  client.close();
});

test("a failback switch follows presence on the new session: only the differences are reported", async () => {
  const world = createWorld();
  world.mode.websocket = "blocked";
  world.join("room", "ada");
  const client = world.connect();
  const log = record(client);
  client.subscribe("room", () => {}, { presence: true });
  await world.clock.advance(0);
  assert.equal(client.transport, "sse");
  world.mode.websocket = "ok";
  world.join("room", "bob"); // reaches the SSE session, then the probe's snapshot holds it too
  await world.clock.advance(30000);
  assert.equal(client.transport, "websocket");
  assert.deepEqual(framesOf(world.last(), 5).map((f) => f[4]), [{ presence: true }]);
  assert.deepEqual(changes(log), ["join room bob"]); // once: not again from the probe's snapshot
  assert.deepEqual(ids(client.members("room")), ["ada", "bob"]);
  world.leave("room", "ada");
  await world.clock.advance(0);
  assert.deepEqual(changes(log), ["join room bob", "leave room ada"]);
  client.close();
});
