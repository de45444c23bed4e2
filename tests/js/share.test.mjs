// Tab sharing (share.js, share-leader.js): the election, the reference counting of topics, each
// tab's own replies, and the handover when the leader tab goes away or freezes. Several "tabs"
// run in this one process: each has its own view of a fake origin (Web Locks and
// BroadcastChannel, tests/js/fakes.mjs createOrigin) and they all reach one fake server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Client } from "../../transports/static/client.js";
import { LEADER_TIMEOUT_MS } from "../../transports/static/share.js";
import { createOrigin, createWorld, framesOf, record, until } from "./fakes.mjs";

/** A server that applies each ref once per client key (§8), answering a retry from memory. */
function dedupServer(world) {
  world.applied = new Map(); // data.key -> times applied
  const memory = new Map();
  world.onEvent = (frame, session) => {
    const key = `${session.clientKey}:${JSON.stringify(frame[1])}`;
    if (memory.has(key)) return memory.get(key);
    if (world.holdReplies) {
      // Applied, but the REPLY is lost with the connection (the leader tab goes away first).
      const data = frame[3];
      world.applied.set(data.key, (world.applied.get(data.key) || 0) + 1);
      memory.set(key, ["ok", { echo: data }]);
      return null;
    }
    const data = frame[0] === 3 ? frame[3] : frame[4];
    if (data && data.key) world.applied.set(data.key, (world.applied.get(data.key) || 0) + 1);
    const reply = ["ok", { echo: data }];
    memory.set(key, reply);
    return reply;
  };
}

/** `n` tabs of one origin, each with a client connected to `world`; the first one leads. */
async function openTabs(n, options = {}, world = createWorld(), origin = createOrigin()) {
  const tabs = [];
  for (let i = 0; i < n; i++) {
    const tab = origin.tab(`tab${i}`);
    tab.client = world.connect({ ...tab.options(), ...options });
    tab.log = record(tab.client);
    tab.leaderEvents = [];
    tab.client.on("leader", ({ leader }) => tab.leaderEvents.push(leader));
    tabs.push(tab);
    // One at a time, so that the first tab is the one that leads.
    await until(() => tabs[0].client.leader, "a leader");
  }
  await until(() => tabs.every((tab) => tab.client.state === "open"), "every tab open");
  return { world, origin, tabs };
}

/**
 * The tab's document goes away without a word (the browser frees its lock and its channels);
 * its code stops, and so does its connection.
 */
function vanish(world, tab) {
  tab.destroy();
  const client = tab.client;
  const leader = client._leading;
  if (leader && leader.hub) {
    const session = world.sessions.find((s) => s.clientKey === leader.hub.clientKey && !s.gone);
    leader.stop(false);
    if (session) session.gone = true;
  }
  client._leading = null;
  client.options.clock.clearTimeout(client._timer);
  client.state = "closed";
}

/** Collect a topic's publications in a tab: `[offset, ...]`. */
function collect(tab, topic, options) {
  const got = [];
  const off = tab.client.subscribe(topic, (pub) => got.push(pub.offset), options);
  return { got, off };
}

test("the tabs elect one leader, which holds the one connection; every tab sees its state", async () => {
  const { world, tabs } = await openTabs(3);
  assert.equal(world.negotiations.length, 1);
  assert.deepEqual(tabs.map((tab) => tab.client.leader), [true, false, false]);
  assert.deepEqual(tabs.map((tab) => tab.client.shared), [true, true, true]);
  assert.deepEqual(tabs.map((tab) => tab.leaderEvents), [[true], [], []]);
  for (const tab of tabs) {
    assert.equal(tab.client.transport, "websocket");
    assert.equal(tab.client.id, "pub0");
    assert.equal(tab.client.stats.attempts, 1);
    assert.deepEqual(tab.log.filter(([name]) => name === "state").map(([, p]) => p.state), ["open"]);
    assert.deepEqual(tab.log.filter(([name]) => name === "transport").map(([, p]) => p.transport), ["websocket"]);
  }
  for (const tab of tabs) tab.client.close();
});

test("a topic is subscribed once for all tabs and unsubscribed when its last tab leaves", async () => {
  const { world, tabs } = await openTabs(3);
  const [a, b, c] = tabs;
  const newsA = collect(a, "news");
  const newsB = collect(b, "news");
  const other = collect(c, "other");
  await until(() => framesOf(world.last(), 5).length === 2, "two SUBs");
  const readyB = await newsB.off.ready;
  assert.deepEqual([readyB.epoch, readyB.offset], ["E1", 0]);
  world.publish("news", "n", 1);
  world.publish("news", "n", 2);
  world.publish("other", "o", 1);
  await until(() => newsA.got.length === 2 && newsB.got.length === 2 && other.got.length === 1, "delivery");
  assert.deepEqual([newsA.got, newsB.got, other.got], [[1, 2], [1, 2], [1]]);
  assert.deepEqual(framesOf(world.last(), 5).map((f) => f[2]).sort(), ["news", "other"]);

  // A third tab joining a topic already subscribed: no SUB, and it starts where the topic is.
  const late = collect(c, "news");
  assert.deepEqual(await late.off.ready, { recovered: true, epoch: "E1", offset: 2 });
  world.publish("news", "n", 3);
  await until(() => late.got.length === 1 && newsA.got.length === 3, "the third");
  assert.deepEqual(late.got, [3]);
  assert.equal(framesOf(world.last(), 5).length, 2);

  newsA.off();
  late.off();
  await until(() => true);
  await world.clock.advance(0);
  assert.equal(framesOf(world.last(), 6).length, 0, "b still follows news");
  newsB.off();
  await until(() => framesOf(world.last(), 6).length === 1, "the UNSUB");
  assert.deepEqual(framesOf(world.last(), 6)[0].slice(2), ["news"]);
  for (const tab of tabs) tab.client.close();
});

test("each tab's send(), publish() and presence() get their own reply, under refs of their own", async () => {
  const { world, tabs } = await openTabs(3);
  dedupServer(world);
  const answers = await Promise.all(tabs.map((tab, i) => tab.client.send("echo", { key: `k${i}` })));
  assert.deepEqual(answers, [0, 1, 2].map((i) => ({ echo: { key: `k${i}` } })));
  const published = await tabs[1].client.publish("open:x", "e", { key: "p" });
  assert.deepEqual(published, { echo: { key: "p" } });
  world.members.set("room", new Map([["m1", { name: "Ann" }]]));
  const listing = await tabs[2].client.presence("room");
  assert.deepEqual(listing, { members: [{ id: "m1", info: { name: "Ann" } }], count: 1, truncated: false });
  const refs = world.last().received.filter((f) => f[0] === 3 || f[0] === 10 || f[0] === 11).map((f) => f[1]);
  assert.equal(new Set(refs).size, refs.length);
  assert.ok(refs.every((ref) => typeof ref === "string"));
  // A refusal reaches the tab that asked, as an error with the server's code.
  world.onEvent = () => ["bad_data", { message: "say something" }];
  await assert.rejects(tabs[2].client.send("chat", {}), (error) => error.code === "bad_data" && /say something/.test(error.message));
  for (const tab of tabs) tab.client.close();
});

test("the leader tab goes away: the next one takes over with the same client key, resumes every topic from the earliest position a tab processed, and retries the sends in flight once", async () => {
  const { world, origin, tabs } = await openTabs(3);
  dedupServer(world);
  const [a, b, c] = tabs;
  const got = tabs.map((tab) => collect(tab, "tick"));
  await Promise.all(got.map(({ off }) => off.ready));
  for (let i = 0; i < 3; i++) world.publish("tick", "t", i);
  await until(() => got.every(({ got: g }) => g.length === 3), "three ticks");
  // The leader applies b's send, but the REPLY is lost with the leader's connection.
  world.holdReplies = true;
  const pending = b.client.send("count", { key: "once" });
  await until(() => world.applied.get("once") === 1, "applied once");
  world.holdReplies = false;
  // Published while the hub is already gone: these must come by the resume.
  vanish(world, a);
  world.publish("tick", "t", 3);
  world.publish("tick", "t", 4);
  await until(() => b.client.leader || c.client.leader, "a new leader");
  assert.equal(origin.grants.length, 2);
  const [next, follower] = b.client.leader ? [b, c] : [c, b];
  assert.equal(follower.client.leader, false);
  assert.deepEqual(next.leaderEvents, [true]);
  await until(() => world.sessions.length === 2 && follower.client.state === "open" && next.client.state === "open", "reopened");
  assert.equal(world.negotiations[1].body.client, world.negotiations[0].body.client, "the group's client key");
  assert.deepEqual(framesOf(world.last(), 5).map((f) => f.slice(2, 4)), [["tick", ["E1", 3]]]);
  assert.deepEqual(await pending, { echo: { key: "once" } });
  assert.equal(world.applied.get("once"), 1, "applied once, answered from memory");
  world.publish("tick", "t", 5);
  await until(() => got[1].got.length === 6 && got[2].got.length === 6, "all ticks");
  assert.deepEqual(got[1].got, [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(got[2].got, [1, 2, 3, 4, 5, 6]);
  for (const tab of [b, c]) {
    const states = tab.log.filter(([name]) => name === "state").map(([, p]) => p.state);
    assert.deepEqual(states, ["open", "reconnecting", "open"]);
    assert.deepEqual(tab.log.filter(([name]) => name === "recovered").map(([, p]) => p), [{ topic: "tick", recovered: true }]);
  }
  b.client.close();
  c.client.close();
});

test("a frozen leader is taken over after LEADER_TIMEOUT_MS; when it runs again it follows, and nothing doubles", async () => {
  const { world, tabs } = await openTabs(3);
  const [a, b, c] = tabs;
  const got = tabs.map((tab) => collect(tab, "tick"));
  await Promise.all(got.map(({ off }) => off.ready));
  world.publish("tick", "t", 1);
  await until(() => got.every(({ got: g }) => g.length === 1), "one tick");
  a.freeze();
  world.publish("tick", "t", 2); // the frozen leader's hub gets it; the others do not, yet
  await world.clock.advance(LEADER_TIMEOUT_MS - 300);
  assert.ok(a.client.leader, "not yet taken over");
  await world.clock.advance(600);
  await until(() => b.client.leader || c.client.leader, "a new leader");
  await until(() => !a.client.leader, "the frozen one stepped down");
  await until(() => b.client.state === "open" && c.client.state === "open" && world.sessions.length === 2, "reopened");
  world.publish("tick", "t", 3);
  a.resume(); // its held messages (the old leader's) are ignored; it follows the new leader
  await until(() => got.every(({ got: g }) => g.length === 3), "every tab has every tick");
  await world.clock.advance(500);
  assert.deepEqual(got.map(({ got: g }) => g), [[1, 2, 3], [1, 2, 3], [1, 2, 3]]);
  assert.equal(tabs.filter((tab) => tab.client.leader).length, 1);
  assert.deepEqual(a.leaderEvents, [true, false]);
  await until(() => a.client.state === "open", "the old leader follows");
  for (const tab of tabs) tab.client.close();
});

test("a tab back from the back-forward cache, behind the others, gets what it missed; the others get no doubles", async () => {
  const { world, tabs } = await openTabs(2);
  const [a, b] = tabs;
  const got = tabs.map((tab) => collect(tab, "tick"));
  await Promise.all(got.map(({ off }) => off.ready));
  world.publish("tick", "t", 1);
  await until(() => got.every(({ got: g }) => g.length === 1), "one tick");
  b.window.dispatchEvent(Object.assign(new Event("pagehide"), { persisted: true }));
  b.cached = true;
  world.publish("tick", "t", 2);
  world.publish("tick", "t", 3);
  await until(() => got[0].got.length === 3, "a has them");
  b.cached = false;
  b.window.dispatchEvent(Object.assign(new Event("pageshow"), { persisted: true }));
  await until(() => got[1].got.length === 3, "b catches up");
  world.publish("tick", "t", 4);
  await until(() => got[1].got.length === 4 && got[0].got.length === 4, "the next");
  await world.clock.advance(100);
  assert.deepEqual(got.map(({ got: g }) => g), [[1, 2, 3, 4], [1, 2, 3, 4]]);
  assert.deepEqual(framesOf(world.last(), 5).map((f) => f[3]), [null, ["E1", 1]], "subscribed again from b's position");
  for (const tab of tabs) tab.client.close();
});

test("presence: each tab follows its members; a tab that comes later gets the snapshot it missed", async () => {
  const { world, tabs } = await openTabs(2);
  const [a, b] = tabs;
  world.members.set("room", new Map([["m1", { name: "Ann" }]]));
  await collect(a, "room", { presence: true }).off.ready;
  assert.deepEqual(a.client.members("room").map((m) => m.id), ["m1"]);
  await collect(b, "room", { presence: true }).off.ready;
  assert.deepEqual(b.client.members("room").map((m) => m.id), ["m1"]);
  assert.equal(framesOf(world.last(), 5).length, 1);
  world.join("room", "m2", { name: "Bob" });
  await until(() => b.client.members("room").length === 2 && a.client.members("room").length === 2, "the join");
  for (const tab of tabs) {
    assert.deepEqual(tab.log.filter(([name]) => name === "join").map(([, topic, m]) => [topic, m.id]), [["room", "m2"]]);
    assert.deepEqual(tab.log.filter(([name]) => name === "presence").map(([, p]) => p.count), [1]);
  }
  for (const tab of tabs) tab.client.close();
});

test("a refused subscription rejects in every tab that asked for it", async () => {
  const { world, tabs } = await openTabs(2);
  world.refuse.add("private:x");
  const offs = tabs.map((tab) => tab.client.subscribe("private:x", () => {}));
  for (const off of offs) await assert.rejects(off.ready, (error) => error.code === "forbidden");
  for (const tab of tabs) {
    assert.deepEqual(tab.log.filter(([name]) => name === "error").map(([, e]) => [e.type, e.topic, e.code]),
      [["subscribe", "private:x", "forbidden"]]);
  }
  for (const tab of tabs) tab.client.close();
});

test("closing the leader hands over quietly; closing the last tab tells the server it leaves", async () => {
  const { world, tabs } = await openTabs(2);
  const [a, b] = tabs;
  a.client.close();
  await until(() => b.client.leader && b.client.state === "open" && world.sessions.length === 2, "b leads");
  assert.equal(world.sockets[0].closedWith.code, 1000);
  assert.equal(framesOf(world.session(0), 9).length, 0, "no CLOSE: the session is resumed");
  b.client.close();
  await until(() => framesOf(world.session(1), 9).length === 1, "the CLOSE");
  assert.equal(b.client.state, "closed");
});

test("pagehide: the last tab of a group says goodbye; a leader with followers hands over instead", async () => {
  const alone = await openTabs(1);
  const only = alone.tabs[0];
  only.window.dispatchEvent(Object.assign(new Event("pagehide"), { persisted: true }));
  await alone.world.clock.advance(0);
  assert.equal(framesOf(alone.world.session(0), 9).length, 0, "kept in the bfcache: no goodbye");
  only.window.dispatchEvent(Object.assign(new Event("pagehide"), { persisted: false }));
  await until(() => framesOf(alone.world.session(0), 9).length === 1, "the goodbye");

  const { world, tabs } = await openTabs(2);
  tabs[0].window.dispatchEvent(Object.assign(new Event("pagehide"), { persisted: false }));
  await world.clock.advance(0);
  assert.equal(framesOf(world.session(0), 9).length, 0, "a follower remains: no goodbye");
  assert.equal(tabs[1].client.state, "open");
});

test("tabs with other credentials do not share, nor do tabs without the browser APIs or with share: false", async () => {
  const world = createWorld();
  const origin = createOrigin();
  const one = origin.tab("one");
  const two = origin.tab("two");
  const x = world.connect({ ...one.options(), token: "token-x" });
  const y = world.connect({ ...two.options(), token: "token-y" });
  await until(() => x.state === "open" && y.state === "open", "both open");
  assert.equal(world.negotiations.length, 2);
  assert.deepEqual([x.leader, y.leader], [true, true]);
  x.close();
  y.close();
  // A token function cannot be compared across tabs: no sharing without a shareKey.
  const fn = world.connect({ ...origin.tab("three").options(), token: () => "t" });
  assert.ok(fn instanceof Client);
  assert.deepEqual([fn.shared, fn.leader], [false, true]);
  fn.close();
  const withKey = world.connect({ ...origin.tab("four").options(), token: () => "t", shareKey: "user-1" });
  assert.equal(withKey.shared, true);
  withKey.close();
  const off = world.connect({ ...origin.tab("five").options(), share: false });
  assert.ok(off instanceof Client);
  const missing = world.connect({ BroadcastChannel: undefined, locks: undefined });
  assert.ok(missing instanceof Client, "no locks in this environment");
  off.close();
  missing.close();
});

test("a browser that refuses the lock: the tab quietly runs its own connection", async () => {
  const world = createWorld();
  const tab = createOrigin().tab("t");
  const locks = { request: () => Promise.reject(new DOMException("no", "SecurityError")) };
  const client = world.connect({ ...tab.options(), locks });
  await until(() => client.state === "open", "open alone");
  assert.deepEqual([client.shared, client.leader], [false, true]);
  const got = collect({ client }, "news");
  await got.off.ready;
  world.publish("news", "n", 1);
  await until(() => got.got.length === 1, "delivered");
  client.close();
});

test("a follower sees what changes without a state change: fallbacks in the stats, a failback switch", async () => {
  const world = createWorld();
  world.mode.websocket = "blocked";
  const { tabs } = await openTabs(2, { failback: { min: 2000, max: 4000 } }, world);
  const [a, b] = tabs;
  assert.equal(b.client.transport, "sse");
  assert.equal(b.client.stats.fallbacks.length, 1);
  assert.match(b.client.fallbackReason, /^websocket: /);
  // A failed probe changes only the stats: the leader tells them all the same.
  await until(() => b.client.stats.probes === 1 && b.client.stats.lastProbe !== null, "the probe in b's stats", 10_000);
  assert.equal(b.client.transport, "sse");
  world.mode.websocket = "ok";
  await until(() => b.client.transport === "websocket", "the switch", 10_000);
  assert.equal(b.client.stats.switches.length, 1);
  assert.equal(b.client.fallbackReason, null);
  assert.deepEqual(b.log.filter(([name]) => name === "transport").map(([, p]) => [p.from, p.transport, p.reason]),
    [[null, "sse", b.log.find(([name]) => name === "transport")[1].reason], ["sse", "websocket", "websocket works again (was sse)"]]);
  assert.deepEqual(b.log.filter(([name]) => name === "state").map(([, p]) => p.state), ["open"]);
  for (const tab of [a, b]) tab.client.close();
});
