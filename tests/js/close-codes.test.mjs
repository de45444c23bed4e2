// Close codes (§10.1): the JS client reconnects on exactly the codes the Python client does
// (transports/protocol/codes.py, is_reconnect_code), and a WebSocket a proxy closes without a
// status (1005) leads to a reconnect, not a dead client.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { classifyClose } from "../../transports/static/client.js";
import { createWorld, record } from "./fakes.mjs";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CODES_PY = `${ROOT}transports/protocol/codes.py`;

/** Every code compared: the WebSocket range the protocol names, and the application range. */
const CODES = [];
for (let code = 1000; code <= 1015; code++) CODES.push(code);
for (let code = 4000; code <= 4999; code++) CODES.push(code);

/** §10.1: "1001, 1005, 1006, 1011-1015 and 4000-4499 reconnect; everything else is terminal." */
const RECONNECT = new Set([1001, 1005, 1006, 1011, 1012, 1013, 1014, 1015]);
for (let code = 4000; code <= 4499; code++) RECONNECT.add(code);

/** The codes of CODES that the JS client reconnects on. */
const jsReconnects = () => CODES.filter((code) => classifyClose(code) === "reconnect");

test("classifyClose matches §10.1 for every code in 1000-1015 and 4000-4999", () => {
  for (const code of CODES) {
    assert.equal(classifyClose(code), RECONNECT.has(code) ? "reconnect" : "stop", `code ${code}`);
  }
});

test("classifyClose agrees with is_reconnect_code in codes.py for every code in 1000-1015 and 4000-4999", (t) => {
  // Run codes.py itself (it imports nothing but enum), loaded by path so that the package's
  // other dependencies are not needed.
  const script = [
    "import importlib.util, json, sys",
    "spec = importlib.util.spec_from_file_location('codes', sys.argv[1])",
    "codes = importlib.util.module_from_spec(spec)",
    "spec.loader.exec_module(codes)",
    "print(json.dumps([c for c in json.loads(sys.argv[2]) if codes.is_reconnect_code(c)]))",
  ].join("\n");
  const candidates = [`${ROOT}.venv/bin/python`, "python3", "python"].filter((p) => !p.startsWith("/") || existsSync(p));
  let python = null;
  for (const exe of candidates) {
    const run = spawnSync(exe, ["-c", script, CODES_PY, JSON.stringify(CODES)], { encoding: "utf8" });
    if (run.error) continue; // not installed
    assert.equal(run.status, 0, `${exe} failed on codes.py:\n${run.stderr}`);
    python = JSON.parse(run.stdout);
    break;
  }
  if (python === null) return t.skip("no Python interpreter to evaluate codes.py");
  assert.deepEqual(jsReconnects(), python);
  // And the Python set is the one §10.1 lists (so the literal above is not stale either).
  assert.deepEqual(python, CODES.filter((code) => RECONNECT.has(code)));
});

for (const code of [1005, 1014, 1015]) {
  test(`a WebSocket closed with ${code} reconnects on a new session and resumes`, async () => {
    const world = createWorld();
    const client = world.connect({ transports: ["websocket"] });
    const log = record(client);
    const pubs = [];
    client.subscribe("news", (pub) => pubs.push(pub.data));
    await world.clock.advance(0);
    world.publish("news", "n", 1);
    await world.clock.advance(0);
    // A proxy (or the browser's runtime) ends the socket: 1005 is "no status in the close frame".
    world.last().socket.serverClose(code, "");
    world.last().gone = true;
    await world.clock.advance(0);
    assert.equal(client.state, "reconnecting", `code ${code}`);
    assert.deepEqual(client.stats.lastClose, { code, reason: "" });
    await world.clock.advance(5000);
    assert.equal(client.state, "open", `code ${code}`);
    assert.equal(world.sessions.length, 2);
    assert.equal(client.stats.reconnects, 1);
    assert.deepEqual(log.filter(([n, p]) => n === "error" && p.type === "close"), []);
    // Resubscribed from its position: a publication made after the reconnect arrives once.
    assert.deepEqual(world.last().received.find((f) => f[0] === 5).slice(2), ["news", ["E1", 1]]);
    world.publish("news", "n", 2);
    await world.clock.advance(0);
    assert.deepEqual(pubs, [1, 2]);
    client.close();
  });
}
