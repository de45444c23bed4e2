// POST /send answered with its replies (§6.2, "Replies in the answer"): the HTTP uplink of SSE
// and long-poll asks for them with `Accept: application/json` and hands each REPLY of a 200
// answer to the client like one from the stream; a 204 (an older server) keeps working.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeFrame } from "../../transports/static/client.js";
import { createWorld, record, response } from "./fakes.mjs";

/** A client open on `transport`; `log` records its events from then on. */
async function openOn(transport, setup = () => {}, options = {}) {
  const world = createWorld();
  setup(world);
  const client = world.connect({ transports: [transport], ...options });
  const log = record(client);
  await world.clock.advance(0);
  assert.equal(client.state, "open");
  assert.equal(client.transport, transport);
  log.length = 0;
  return { world, client, log };
}

/** The REPLY frames a session pushed down its stream or poll. */
const repliesDown = (session) => session.downstream.filter((f) => f[0] === 4);

/**
 * A sendHook that applies the POST like the fake server does and answers with `answer(replies)`
 * instead: `replies` are the REPLYs it gathered for EVENT and PUBLISH (none went down).
 */
function answerWith(world, answer) {
  return async (init, s) => {
    const frames = JSON.parse(init.body);
    s.posts.push(frames);
    const gathered = [];
    s.answer = gathered;
    try {
      for (const raw of frames) s.receive(decodeFrame(raw));
    } finally {
      s.answer = null;
    }
    return answer(gathered, s, init);
  };
}

for (const transport of ["sse", "longpoll"]) {
  test(`${transport}: a send is resolved by the POST's answer alone, nothing comes down for it`, async () => {
    const { world, client, log } = await openOn(transport, (w) => { w.answerReplies = true; });
    const polls = world.polls.length;
    const s = world.last();
    assert.deepEqual(await client.send("a", 1), { echo: 1 });
    assert.deepEqual(await client.publish("room", "said", "hi"), { echo: "hi" });
    assert.deepEqual(repliesDown(s), []);
    // On long-poll the held poll was not answered: no poll per reply.
    assert.equal(world.polls.length, polls);
    assert.equal(client.state, "open");
    assert.deepEqual(log.filter(([n]) => n === "error"), []);
    client.close();
  });

  test(`${transport}: every POST /send asks for its replies (Accept: application/json), the leaving one too`, async () => {
    const { world, client } = await openOn(transport);
    world.postLog.length = 0;
    await client.send("a", 1);
    client.subscribe("news", () => {});
    await world.clock.advance(0);
    client.close();
    await world.clock.advance(0);
    assert.ok(world.postLog.length >= 2);
    assert.deepEqual(JSON.parse(world.postLog.at(-1).body), [[9, 1000, "closed by the client"]]);
    for (const post of world.postLog) {
      assert.equal(post.headers.Accept, "application/json");
      assert.equal(post.headers["Content-Type"], "application/json");
    }
  });

  test(`${transport}: an older server's 204 still works: replies come down and the next batches go`, async () => {
    // answerReplies false: the fake server ignores Accept, answers 204 and sends every REPLY down.
    const { world, client, log } = await openOn(transport);
    world.postLog.length = 0;
    const s = world.last();
    assert.deepEqual(await client.send("a", 1), { echo: 1 });
    assert.deepEqual(await Promise.all([client.send("b", 2), client.send("c", 3)]), [{ echo: 2 }, { echo: 3 }]);
    assert.equal(world.postLog.length, 2);
    assert.equal(world.postLog[0].headers.Accept, "application/json"); // asked, not given
    assert.equal(repliesDown(s).length, 2 + 1);
    assert.equal(client.state, "open");
    assert.deepEqual(log.filter(([n]) => n === "error"), []);
    client.close();
  });

  test(`${transport}: a 200 whose body is not {"frames": [...]} is ignored, the connection and the next answers go on`, async () => {
    const malformed = [
      () => response(200, undefined), // not JSON (or empty): json() throws
      () => response(200, null),
      () => response(200, []),
      () => response(200, { frames: "nope" }),
      () => response(200, { frames: ["[4,1,\"ok\",null]", 3] }), // not frames
      () => response(200, { replies: [] }),
    ];
    const { world, client, log } = await openOn(transport, (w) => { w.answerReplies = true; });
    const s = world.last();
    for (const [i, body] of malformed.entries()) {
      // This answer is unusable; its replies come down the stream or poll (as from a server
      // that could not answer): the send resolves from there.
      world.sendHook = answerWith(world, (gathered, session) => {
        for (const frame of gathered) session.push(frame);
        return body();
      });
      assert.deepEqual(await client.send("bad", i), { echo: i });
      // The next POST is answered properly, with its reply only in the answer: it is read.
      world.sendHook = null;
      const down = repliesDown(s).length;
      assert.deepEqual(await client.send("good", i), { echo: i });
      assert.equal(repliesDown(s).length, down);
    }
    assert.equal(client.state, "open");
    assert.equal(world.sessions.length, 1);
    assert.deepEqual(log.filter(([n]) => n === "error" || n === "state"), []);
    client.close();
  });

  test(`${transport}: a reply that comes both in the answer and down (an odd server) settles its send once`, async () => {
    const { world, client, log } = await openOn(transport, (w) => { w.answerReplies = true; });
    const s = world.last();
    // The copy that comes down arrives 1 s after the answer.
    world.sendHook = answerWith(world, (gathered, session) => {
      world.clock.setTimeout(() => { for (const frame of gathered) session.push(frame); }, 1000);
      return response(200, { frames: gathered }, { "Content-Type": "application/json" });
    });
    world.onEvent = (frame) => (frame[2] === "no" ? ["bad_data", { message: "refused" }] : ["ok", frame[3]]);
    const settled = [];
    client.send("yes", 1).then((v) => settled.push(["ok", v]), (e) => settled.push(["err", e.code]));
    client.send("no", 2).then((v) => settled.push(["ok", v]), (e) => settled.push(["err", e.code]));
    await world.clock.advance(0);
    // Settled by the answer, before the copies came down.
    assert.deepEqual(settled, [["ok", 1], ["err", "bad_data"]]);
    assert.deepEqual(repliesDown(s), []);
    await world.clock.advance(1000);
    assert.equal(repliesDown(s).length, 2);
    // The copies were ignored (no send waits for those refs): nothing else settled, no error,
    // and the next send, with the next ref, gets its own reply.
    assert.deepEqual(settled, [["ok", 1], ["err", "bad_data"]]);
    world.sendHook = null;
    assert.equal(await client.send("yes", 3), 3);
    assert.deepEqual(log.filter(([n]) => n === "error" || n === "state"), []);
    assert.equal(client.state, "open");
    client.close();
  });

  test(`${transport}: several replies in one answer are handed on in the answer's order, before the next POST`, async () => {
    const { world, client } = await openOn(transport, (w) => { w.answerReplies = true; });
    const settled = [];
    const atPost = [];
    // This server's answer lists the replies last first (their order is the answer's to give).
    world.sendHook = answerWith(world, (gathered) => {
      atPost.push(settled.slice());
      return response(200, { frames: gathered.slice().reverse() }, { "Content-Type": "application/json" });
    });
    world.onEvent = (frame) => ["ok", frame[3]];
    world.postLog.length = 0;
    for (const event of ["a", "b", "c"]) {
      client.send(event, event).then((v) => {
        settled.push(v);
        if (v === "a") client.send("d", "d").then((w) => settled.push(w)); // goes in the next POST
      });
    }
    await world.clock.advance(0);
    assert.equal(world.postLog.length, 2);
    assert.deepEqual(JSON.parse(world.postLog[0].body).map((f) => f[2]), ["a", "b", "c"]);
    assert.deepEqual(JSON.parse(world.postLog[1].body).map((f) => f[2]), ["d"]);
    assert.deepEqual(settled, ["c", "b", "a", "d"]);
    // When the second POST went, every reply of the first answer had been handed on.
    assert.deepEqual(atPost, [[], ["c", "b", "a"]]);
    client.close();
  });

  test(`${transport}: replies in the answers do not count as hearing from the server: a silent downstream is still found dead`, async () => {
    // heartbeat 25 s: silent for 35 s, the connection is dead (§9). The downstream says nothing
    // (the fake server sends no PING by itself) while a send every 5 s is answered in its POST.
    const { world, client } = await openOn(transport, (w) => { w.answerReplies = true; });
    const s = world.last();
    const down = s.downstream.length;
    let answered = 0;
    for (let t = 0; t < 30000; t += 5000) {
      client.send("tick", t).then(() => answered++);
      await world.clock.advance(5000);
    }
    assert.equal(answered, 6);
    assert.equal(s.downstream.length, down);
    assert.equal(client.state, "open");
    await world.clock.advance(6000);
    assert.deepEqual(client.stats.lastClose, { code: 4000, reason: "no data from the server" });
    client.close();
  });
}

/** A 200 answer whose body never reads: `json()` fails as `fail(init)` says. */
function brokenBody(init, fail) {
  return {
    status: 200,
    ok: true,
    headers: new Headers({ "Content-Type": "application/json" }),
    json: () => new Promise((_, reject) => fail(init, reject)),
  };
}

for (const transport of ["sse", "longpoll"]) {
  for (const [what, fail, after] of [
    // The headers came and the body never does: like fetch's, reading it fails once aborted.
    ["stalls until the send deadline (30 s)", (init, reject) => {
      init.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
    }, 30000],
    ["is cut on the network", (init, reject) => reject(new TypeError("network error")), 0],
  ]) {
    test(`${transport}: a POST answer whose body ${what} is a lost answer: the same frames go again and their replies come`, async () => {
      const { world, client, log } = await openOn(transport, (w) => { w.answerReplies = true; }, { sendTimeout: 60000 });
      let broken = 1;
      world.sendHook = answerWith(world, (gathered, session, init) => {
        if (broken-- > 0) return brokenBody(init, fail);
        return response(200, { frames: gathered }, { "Content-Type": "application/json" });
      });
      world.postLog.length = 0;
      const settled = [];
      client.send("a", 1).then((v) => settled.push(v));
      await world.clock.advance(0);
      client.send("b", 2).then((v) => settled.push(v)); // waits for the POST in flight
      await world.clock.advance(Math.max(0, after - 1));
      assert.equal(world.postLog.length, 1);
      await world.clock.advance(1000); // the deadline, then the policy's delay (125 ms here)
      assert.deepEqual(world.postLog.map((p) => JSON.parse(p.body).map((f) => [f[1], f[2]])), [
        [[1, "a"]],
        [[1, "a"], [2, "b"]], // the same ref again, and the next send behind it
      ]);
      assert.deepEqual(settled, [{ echo: 1 }, { echo: 2 }]);
      assert.deepEqual(repliesDown(world.last()), []);
      assert.equal(client.state, "open");
      assert.deepEqual(log.filter(([n]) => n === "state"), []);
      client.close();
    });
  }

  test(`${transport}: answers whose bodies are lost for longer than the reattach budget end the session (1006), like lost POSTs`, async () => {
    const { world, client } = await openOn(transport, (w) => { w.answerReplies = true; });
    world.sendHook = answerWith(world, (gathered, session, init) =>
      brokenBody(init, (_, reject) => reject(new TypeError("network error"))));
    client.send("a", 1).catch(() => {});
    await world.clock.advance(3400);
    assert.equal(client.state, "open");
    await world.clock.advance(1000);
    assert.equal(client.state, "reconnecting");
    assert.deepEqual(client.stats.lastClose, { code: 1006, reason: "send failed: network error" });
    client.close();
  });
}
