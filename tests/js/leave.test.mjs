// A client that leaves for good tells the server (§2: CLOSE), so its session is freed at once
// instead of when it expires; a transport abandoned for another one does not.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createWorld, framesOf } from "./fakes.mjs";

for (const transport of ["websocket", "sse", "longpoll"]) {
  test(`${transport}: close() sends CLOSE 1000 to the server, once`, async () => {
    const world = createWorld();
    const client = world.connect({ transports: [transport], failback: false });
    await world.clock.advance(0);
    assert.equal(client.state, "open");
    const session = world.sessions[0];
    assert.deepEqual(framesOf(session, 9), []);
    client.close();
    client.close();
    await world.clock.advance(0);
    assert.equal(client.state, "closed");
    assert.deepEqual(framesOf(session, 9), [[9, 1000, "closed by the client"]]);
    if (transport !== "websocket") {
      const posted = world.postLog.filter((p) => p.body.includes('[9,'));
      assert.equal(posted.length, 1);
      assert.equal(posted[0].headers["X-Realtime-Session"], session.token);
    }
  });
}

// A session negotiated, its transport started but not yet accepted (no HELLO, no first event,
// no first poll answer, or the WebSocket failed): close() has no open transport to tell.
for (const [transport, mode] of [
  ["websocket", "silent"], // the socket opened, but no HELLO or PONG ever came
  ["websocket", "blocked"], // the socket closed before opening: the client waits in backoff
  ["sse", "buffered"], // no first event
  ["longpoll", "hang"], // the first poll never answers
]) {
  test(`${transport} (${mode}): a client closed before any transport opened sends nothing`, async () => {
    const world = createWorld();
    world.mode[transport] = mode;
    const client = world.connect({ transports: [transport], failback: false });
    await world.clock.advance(0);
    assert.notEqual(client.state, "open");
    assert.equal(world.sessions.length, 1); // negotiated: there is a session to tell
    if (transport === "websocket") assert.equal(world.sockets.length, 1);
    if (transport === "sse") assert.equal(world.eventSources.length, 1);
    if (transport === "longpoll") assert.equal(world.hungPolls, 1);
    client.close();
    await world.clock.advance(0);
    assert.equal(client.state, "closed");
    const [session] = world.sessions;
    assert.deepEqual(framesOf(session, 9), []);
    assert.deepEqual(world.postLog.filter((p) => p.body.includes("[9,")), []);
    for (const socket of world.sockets) {
      assert.deepEqual(socket.sent.filter((data) => String(data).startsWith("[9,")), []);
    }
  });
}

test("a client closed before negotiating sends nothing", async () => {
  const world = createWorld();
  const client = world.connect({ transports: ["websocket"], failback: false });
  client.close();
  await world.clock.advance(0);
  assert.equal(client.state, "closed");
  assert.equal(world.sockets.length, 0);
  assert.deepEqual(world.postLog, []);
  for (const session of world.sessions) assert.deepEqual(framesOf(session, 9), []);
});
