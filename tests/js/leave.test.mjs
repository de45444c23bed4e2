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

test("a client closed before any transport opened sends nothing", async () => {
  const world = createWorld();
  world.mode.websocket = "blocked";
  const client = world.connect({ transports: ["websocket"], failback: false });
  client.close();
  await world.clock.advance(0);
  assert.equal(client.state, "closed");
  for (const session of world.sessions) assert.deepEqual(framesOf(session, 9), []);
});
