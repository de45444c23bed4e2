// Catalogue A11 on the browser client: duplicate keys, __proto__/constructor keys, 10^5 keys.
// Policy, identical to the server's (tests/test_security_frames.py A11): a payload is whatever
// JSON.parse makes of the text, so duplicate keys keep the last value (as Python's json does)
// and "__proto__" is an own data property (JSON.parse never sets a prototype). The client hands
// that value to the application as is: it never copies, spreads or merges server data into
// its own objects, and never reads a server field through a prototype.
//
// Frames are delivered as raw text (the fakes' own deliver() re-encodes a JS value, which would
// lose duplicate keys): WebSocket and SSE messages go straight to the socket's onmessage; a
// long-poll response reaches the client as res.json(), i.e. JSON.parse of the body, which is
// what the fake hands it for the same text.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeFrame } from "../../transports/static/client.js";
import { createWorld, framesOf, record } from "./fakes.mjs";

const TRANSPORTS = ["websocket", "sse", "longpoll"];
const PROTO = '{"__proto__":{"polluted":1}}';
const CTOR = '{"constructor":{"prototype":{"polluted":1}}}';
const BOTH = '{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}},"keep":[1]}';
const DUPLICATES = '{"a":1,"a":2,"b":{"c":1,"c":[3]},"__proto__":0,"__proto__":{"polluted":1}}';
const MANY = 100_000;
const MANY_KEYS = `{${Array.from({ length: MANY }, (_, i) => `"k${i}":${i}`).join(",")}}`;

const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype).sort();

/** Nothing reached Object.prototype (or through it, every object). */
function assertNotPolluted() {
  assert.equal(({}).polluted, undefined);
  assert.equal(Object.prototype.polluted, undefined);
  assert.equal([].polluted, undefined);
  assert.equal(({}).constructor, Object);
  assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), PROTOTYPE_NAMES);
}

/** `value` is a plain object whose own data property `key` holds `expected`. */
function assertOwn(value, key, expected) {
  assert.equal(Object.getPrototypeOf(value), Object.prototype, "a plain object, prototype untouched");
  const own = Object.getOwnPropertyDescriptor(value, key);
  assert.ok(own && "value" in own, `${key} is an own data property`);
  assert.deepEqual(own.value, expected);
}

/** What a payload of DUPLICATES must look like: last value wins, __proto__ own. */
function assertLastWins(value) {
  assert.deepEqual(Object.keys(value), ["a", "b", "__proto__"]);
  assert.equal(value.a, 2);
  assert.deepEqual(value.b, { c: [3] });
  assertOwn(value, "__proto__", { polluted: 1 });
}

function assertMany(value) {
  const keys = Object.keys(value);
  assert.equal(keys.length, MANY);
  assert.equal(keys[0], "k0");
  assert.equal(value[`k${MANY - 1}`], MANY - 1);
}

/** Deliver one server frame, given as JSON text, to the client on the session's transport. */
function deliverRaw(session, text) {
  if (session.transport === "websocket") session.socket.onmessage({ data: text });
  else if (session.transport === "sse") session.eventSource.onmessage({ data: text, lastEventId: String(++session.seq) });
  else {
    session.outbox.push([++session.seq, JSON.parse(text)]); // the browser's res.json() of the body
    session.wake();
  }
}

async function openOn(transport, setup = () => {}) {
  const world = createWorld();
  setup(world);
  const client = world.connect({ transports: [transport] });
  const log = record(client);
  await world.clock.advance(0);
  assert.equal(client.transport, transport);
  assert.equal(client.state, "open");
  return { world, client, log, session: world.last() };
}

test("decodeFrame: __proto__ and constructor keys stay own data in text, binary-header and parsed frames", () => {
  const text = decodeFrame(`[1,"t","e",${BOTH},1,"E1"]`);
  assertOwn(text[3], "__proto__", { polluted: 1 });
  assertOwn(text[3], "constructor", { prototype: { polluted: 1 } });
  const header = new TextEncoder().encode(`[20,1,"ok",null,${BOTH}]`);
  const binary = decodeFrame(new Uint8Array([...header, 0, 7]));
  assert.deepEqual([...binary[3]], [7]);
  assertOwn(binary[4], "__proto__", { polluted: 1 });
  const parsed = decodeFrame(JSON.parse(`[2,"m",${DUPLICATES}]`)); // a long-poll response's frame
  assertLastWins(parsed[2]);
  assertMany(decodeFrame(`[4,1,"ok",${MANY_KEYS}]`)[3]);
  assertNotPolluted();
});

for (const transport of TRANSPORTS) {
  test(`${transport}: publications with __proto__/constructor keys, duplicate keys and 10^5 keys reach the handler as JSON.parse gives them`, async () => {
    const { world, client, log, session } = await openOn(transport);
    const got = [];
    const off = client.subscribe("a11", (pub) => got.push(pub));
    await world.clock.advance(0);
    await off.ready;
    const payloads = [PROTO, CTOR, BOTH, DUPLICATES, MANY_KEYS];
    payloads.forEach((text, i) => deliverRaw(session, `[1,"a11","e",${text},${i + 1},"E1"]`));
    await world.clock.advance(0);
    assert.deepEqual(got.map((p) => p.offset), [1, 2, 3, 4, 5]);
    const [proto, ctor, both, duplicates, many] = got.map((p) => p.data);
    assertOwn(proto, "__proto__", { polluted: 1 });
    assert.deepEqual(Object.keys(proto), ["__proto__"]);
    assert.equal(proto.polluted, undefined); // not reachable through a prototype either
    assertOwn(ctor, "constructor", { prototype: { polluted: 1 } });
    assertOwn(both, "__proto__", { polluted: 1 });
    assertOwn(both, "constructor", { prototype: { polluted: 1 } });
    assert.deepEqual(both.keep, [1]);
    assertLastWins(duplicates);
    assertMany(many);
    assert.equal(client.state, "open");
    assert.deepEqual(log.filter(([name]) => name === "error"), []);
    assertNotPolluted();
    client.close();
  });

  test(`${transport}: send() resolves with reply data holding __proto__/constructor keys, duplicate keys, 10^5 keys`, async () => {
    const { world, client, session } = await openOn(transport, (w) => { w.onEvent = () => null; });
    const payloads = [BOTH, DUPLICATES, MANY_KEYS];
    const replies = payloads.map((_, i) => client.send("echo", i));
    await world.clock.advance(0);
    const refs = framesOf(session, 3).map((f) => f[1]);
    assert.equal(refs.length, payloads.length);
    refs.forEach((ref, i) => deliverRaw(session, `[4,${ref},"ok",${payloads[i]}]`));
    await world.clock.advance(0);
    const [both, duplicates, many] = await Promise.all(replies);
    assertOwn(both, "__proto__", { polluted: 1 });
    assertOwn(both, "constructor", { prototype: { polluted: 1 } });
    assertLastWins(duplicates);
    assertMany(many);
    assertNotPolluted();
    client.close();
  });

  test(`${transport}: a direct message (MSG) with __proto__ keys reaches "message" listeners as own data`, async () => {
    const { world, client, session } = await openOn(transport);
    const got = [];
    client.on("message", (m) => got.push(m));
    deliverRaw(session, `[2,"direct",${BOTH}]`);
    deliverRaw(session, `[2,"direct",${DUPLICATES}]`);
    await world.clock.advance(0);
    assert.equal(got.length, 2);
    assertOwn(got[0].data, "__proto__", { polluted: 1 });
    assertOwn(got[0].data, "constructor", { prototype: { polluted: 1 } });
    assertLastWins(got[1].data);
    assertNotPolluted();
    client.close();
  });
}

test("the client never reads its own fields through a server-sent __proto__: SUB reply, HELLO, negotiate answer", async () => {
  // A SUB reply whose recovered/epoch/offset sit only under __proto__: none of them is taken.
  {
    const { world, client, session } = await openOn("websocket");
    const receive = session.receive.bind(session);
    session.receive = (frame) => {
      if (frame[0] !== 5) return receive(frame);
      session.received.push(frame);
      queueMicrotask(() => deliverRaw(session, `[4,${frame[1]},"ok",{"__proto__":{"recovered":true,"epoch":"E9","offset":7}}]`));
    };
    const off = client.subscribe("a11", () => {});
    await world.clock.advance(0);
    assert.deepEqual(await off.ready, { recovered: false, epoch: null, offset: null });
    client.close();
  }
  // A HELLO whose heartbeat sits only under __proto__: the negotiated 25 s stays. (A 1 ms
  // heartbeat would declare the connection dead after 10 s of silence and reconnect.)
  {
    const world = createWorld();
    world.mode.websocket = "silent"; // the test speaks for the server
    const client = world.connect({ transports: ["websocket"] });
    await world.clock.advance(0);
    const [socket] = world.sockets;
    socket.onmessage({ data: '[0,{"v":1,"id":"pub0","transport":"websocket","__proto__":{"heartbeat":1}}]' });
    assert.deepEqual(socket.sent, ["[7]"]);
    socket.onmessage({ data: "[8]" });
    await world.clock.advance(0);
    assert.equal(client.state, "open");
    await world.clock.advance(20_000);
    assert.equal(client.state, "open");
    assert.equal(world.sockets.length, 1);
    client.close();
  }
  // A negotiate answer whose ticket, token and urls sit only under __proto__ is malformed;
  // one whose limits.message sits only under __proto__ keeps the default 64 KiB limit.
  {
    const world = createWorld();
    const answer = (text) => ({ status: 200, ok: true, headers: new Headers(), json: async () => JSON.parse(text) });
    world.negotiateHook = () => answer('{"v":1,"__proto__":{"ticket":"t","token":"s","urls":{"websocket":"/rt/ws"}}}');
    const client = world.connect({ transports: ["websocket"] });
    const log = record(client);
    await world.clock.advance(0);
    assert.equal(world.sockets.length, 0);
    assert.ok(log.some(([name, e]) => name === "error" && /malformed response/.test(e.message)), JSON.stringify(log));
    client.close();
  }
  {
    const { world, client } = await openOn("websocket", (w) => {
      w.limits = JSON.parse('{"__proto__":{"message":10},"body":1048576,"batch":100}');
    });
    assert.deepEqual(await client.send("echo", "more than ten bytes"), { echo: "more than ten bytes" });
    assert.equal(world.sockets.length, 1);
    client.close();
  }
  assertNotPolluted();
});
