// The client policy (transports/static/policy.json) against tests/policy_vectors.json: the same
// table tests/test_policy.py runs against the Python client, run here against the browser
// client, so that the two cannot drift. Every vector runs through the code the client runs: a
// close code through the client's close handling, an HTTP answer through the real negotiate
// request (driven by a Client), POST /send uplink, poll loop and SSE reattach (with a scripted
// server and a fake clock), delays through Client._reconnectDelay and the Attempts class the
// transports use, deadlines, liveness and defaults through the client's options and its Conn.
// Each HTTP answer is also checked against httpAction, the decision function those paths call.
// A section or a vector this file cannot run fails; none is skipped.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import VECTORS from "../policy_vectors.json" with { type: "json" };
import { Conn } from "../../transports/static/conn.js";
import {
  Attempts, POLICY, afterClose, classifyClose, flapCount, httpAction, isStable, parseRetryAfter, retryAfterMs,
} from "../../transports/static/policy.js";
import { HttpTransport } from "../../transports/static/transport-http.js";
import { LongPollTransport } from "../../transports/static/transport-longpoll.js";
import { SSETransport } from "../../transports/static/transport-sse.js";
import { TRANSPORT_NAMES } from "../../transports/static/transports.js";
import { FakeClock, createWorld } from "./fakes.mjs";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const FRAME = [3, 1, "e", null];
const FRAME_TEXT = '[3,1,"e",null]';
const CLOSE_BODY = { cursor: 1, frames: [[9, 1000, "bye"]] };

/** The runners below, by section: adding a section to the vectors without one here fails. */
const SECTIONS = [
  "closeCodes", "http", "requestDelay", "retryAfter", "reconnectDelay", "reattach", "deadlines",
  "liveness", "stable", "defaults", "afterClose", "flapping",
];

const cases = (section) => {
  assert.ok(VECTORS[section] && Array.isArray(VECTORS[section].cases), `no section ${section}`);
  return VECTORS[section].cases;
};
const caseId = (c) => Object.entries(c).filter(([, v]) => typeof v !== "object" || v === null)
  .map(([k, v]) => `${k}=${v}`).join(",");
/** The answers of an HTTP case: `status`, the first time and `retried` times again. */
const answers = (c) => Array(c.retried + 1).fill(c.status);
const near = (actual, expected, what) => assert.ok(Math.abs(actual - expected) < 1e-6, `${what}: ${actual} != ${expected}`);

function response(status, body = null, headers = {}) {
  return {
    status, ok: status >= 200 && status < 300, headers: new Headers(headers),
    json: async () => { if (body === null) throw new SyntaxError("no body"); return body; },
  };
}

/** Options a transport gets from the client (conn.js), with a fake clock and a fixed draw. */
function transportOptions(clock, extra = {}) {
  return { clock, random: () => 1, maxMessage: 65536, batch: 100, body: 1048576, hint: 1000, ...extra };
}

// --- the files themselves ------------------------------------------------------------------------

test("every section of policy_vectors.json has a runner here", () => {
  const sections = Object.keys(VECTORS).filter((key) => !key.startsWith("$"));
  assert.deepEqual([...sections].sort(), [...SECTIONS].sort());
});

test("the client imports the one policy.json, the file the Python client reads", () => {
  const onDisk = JSON.parse(readFileSync(`${ROOT}transports/static/policy.json`, "utf8"));
  assert.deepEqual(POLICY, onDisk);
  const found = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
      if (entry.isDirectory()) walk(`${dir}${entry.name}/`);
      else if (entry.name === "policy.json") found.push(`${dir}${entry.name}`.slice(ROOT.length));
    }
  };
  walk(ROOT);
  assert.deepEqual(found, ["transports/static/policy.json"]);
});

test("the vectors cover every request kind and every registered transport", () => {
  const kinds = new Set(cases("http").map((c) => c.kind));
  assert.deepEqual([...kinds].sort(), Object.keys(POLICY.requests).sort());
  assert.deepEqual(cases("deadlines").map((c) => c.transport).sort(), [...TRANSPORT_NAMES].sort());
});

// --- close codes ---------------------------------------------------------------------------------

for (const c of cases("closeCodes")) {
  test(`closeCodes: ${caseId(c)}`, async () => {
    assert.equal(classifyClose(c.code), c.action);
    // Through the client: its open connection's transport ends with the code.
    const world = createWorld();
    const client = world.connect({ transports: ["websocket"], failback: false });
    await world.clock.advance(0);
    assert.equal(client.state, "open");
    client._conn.transport.onclose({ code: c.code, reason: "vector" });
    await world.clock.advance(0);
    assert.deepEqual(client.stats.lastClose, { code: c.code, reason: "vector" });
    if (c.action === "stop") {
      assert.equal(client.state, "closed");
      await world.clock.advance(60000);
      assert.equal(world.negotiations.length, 1);
    } else {
      assert.equal(client.state, "reconnecting");
      await world.clock.advance(10000); // the backoff above the server's retry hint, < 1.5 s
      assert.equal(client.state, "open");
      assert.equal(client.stats.reconnects, 1);
    }
    client.close();
  });
}

// --- after a close: reconnect, re-authenticate or stop ---------------------------------------------

for (const c of cases("afterClose")) {
  test(`afterClose: ${caseId(c)}`, async () => {
    const renewable = c.token === "function";
    assert.equal(afterClose(c.code, c.upMs, renewable, c.reauthenticated), c.action);
    // Through the client: its connection (opened by a re-authentication, if the case says so)
    // ends with the code after upMs.
    const world = createWorld();
    world.heartbeat = 1e9;
    let issued = 0;
    const token = renewable ? () => `t${++issued}` : "fixed";
    const client = world.connect({ transports: ["websocket"], failback: false, flapping: false, token });
    await world.clock.advance(0);
    if (c.reauthenticated) {
      client._conn.transport.onclose({ code: 4501, reason: "expired" });
      await world.clock.advance(0);
      assert.equal(client.stats.reauthentications, 1);
    }
    assert.equal(client.state, "open");
    const negotiations = world.negotiations.length;
    await world.clock.advance(c.upMs);
    client._conn.transport.onclose({ code: c.code, reason: "vector" });
    await world.clock.advance(0);
    if (c.action === "reauthenticate") {
      assert.equal(client.state, "open"); // at once: no backoff
      assert.equal(world.negotiations.length, negotiations + 1);
      assert.equal(world.last().n, world.sessions.length - 1);
      assert.equal(world.negotiations.at(-1).headers.Authorization, `Bearer t${issued}`);
      assert.equal(client.stats.reauthentications, c.reauthenticated ? 2 : 1);
    } else if (c.action === "stop") {
      assert.equal(client.state, "closed");
      await world.clock.advance(60000);
      assert.equal(world.negotiations.length, negotiations);
    } else {
      await world.clock.advance(10000);
      assert.equal(client.state, "open");
      assert.equal(client.stats.reauthentications, c.reauthenticated ? 1 : 0);
    }
    client.close();
  });
}

for (const c of cases("flapping")) {
  test(`flapping: ${JSON.stringify(c.closes)}`, async () => {
    let count = 0;
    for (const [code, upMs] of c.closes) count = flapCount(count, code, upMs);
    assert.equal(count, c.flaps);
    assert.equal(count >= POLICY.flapping.times, c.flapping);
    // Through the client: each WebSocket connection ends with the code after upMs.
    const world = createWorld();
    world.heartbeat = 1e9;
    const client = world.connect({ failback: false, token: () => "t" });
    await world.clock.advance(0);
    for (const [code, upMs] of c.closes) {
      if (client.transport !== "websocket") break; // demoted
      await world.clock.advance(upMs);
      client._conn.transport.onclose({ code, reason: "vector" });
      for (let waited = 0; client.state !== "open" && waited < 30000; waited += 10) await world.clock.advance(10);
    }
    assert.equal(client.transport, c.flapping ? "sse" : "websocket");
    assert.equal(client.stats.demotions, c.flapping ? 1 : 0);
    client.close();
  });
}

// --- HTTP answers, through the requests the client makes ------------------------------------------

const runHttp = {
  /** POST /negotiate answered `status` (retried times again, then 200), driven by a Client. */
  async negotiate(c) {
    const world = createWorld();
    world.heartbeat = 1e9; // an open connection stays open however long the test waits
    const refusals = answers(c);
    world.negotiateHook = () => {
      const status = refusals.length ? refusals.shift() : 200;
      return status === 200 ? undefined : response(status, { error: "scripted", message: "scripted" });
    };
    const client = world.connect({ transports: ["websocket"], failback: false });
    await world.clock.advance(0);
    if (c.action === "ok") {
      assert.equal(client.state, "open");
    } else if (c.action === "retry") {
      await world.clock.advance(3_600_000);
      assert.equal(client.state, "open");
      assert.equal(world.negotiations.length, c.retried + 2);
    } else {
      assert.equal(typeof c.action, "number", `unknown action ${c.action}`);
      assert.equal(client.state, "closed");
      assert.deepEqual(client.stats.lastClose, { code: c.action, reason: "scripted" });
      assert.equal(world.negotiations.length, c.retried + 1);
      assert.equal(classifyClose(c.action), "stop");
    }
    client.close();
  },

  /** One frame over POST /send answered as the case says, then 204 (the shared uplink). */
  async send(c) {
    const clock = new FakeClock();
    const statuses = answers(c);
    const posts = [];
    const fetch = async (url, init) => {
      posts.push(init.body);
      return response(statuses.length ? statuses.shift() : 204, { error: "scripted" });
    };
    const transport = new HttpTransport("http://app.test/rt/send", "secret", transportOptions(clock, { fetch }));
    const closed = [];
    const refused = [];
    transport.onclose = (info) => closed.push(info.code);
    transport.onrefuse = (text) => refused.push(text);
    transport.send(FRAME);
    await clock.advance(600_000);
    assert.ok(posts.every((body) => body === `[${FRAME_TEXT}]`), JSON.stringify(posts));
    assert.equal(posts.length, answers(c).length + (c.action === "retry" ? 1 : 0));
    assert.deepEqual(closed, typeof c.action === "number" ? [c.action] : []);
    assert.deepEqual(refused, c.action === "split" ? [FRAME_TEXT] : []);
    transport.close();
  },

  /** Polls answered as the case says, then 200 with a CLOSE 1000. */
  async poll(c) {
    const clock = new FakeClock();
    const statuses = answers(c);
    let polls = 0;
    const fetch = async () => {
      polls++;
      const status = statuses.length ? statuses.shift() : 200;
      return response(status, status === 200 ? CLOSE_BODY : { error: "scripted" });
    };
    const transport = new LongPollTransport(
      "http://app.test/rt/poll", "http://app.test/rt/send", "secret", transportOptions(clock, { fetch }));
    const closed = [];
    transport.onclose = (info) => closed.push(info.code);
    await clock.advance(600_000);
    assert.deepEqual(closed, [typeof c.action === "number" ? c.action : 1000]);
    assert.equal(polls, answers(c).length + (c.action === "retry" ? 1 : 0));
  },

  /**
   * A dropped stream reattached and answered as the case says. EventSource shows the client
   * only that a stream opened (200) or failed for good (any other answer), not the status.
   */
  async sse(c) {
    const clock = new FakeClock();
    const statuses = answers(c);
    const sources = [];
    class ScriptedEventSource {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        this.closed = false;
        sources.push(this);
        if (sources.length === 1) return; // the stream the transport opened with
        const status = statuses.length ? statuses.shift() : 200;
        queueMicrotask(() => {
          if (this.closed) return;
          this.readyState = status === 200 ? 1 : 2;
          if (status === 200) this.onopen();
          else this.onerror({});
        });
      }
      close() { this.closed = true; this.readyState = 2; }
    }
    const transport = new SSETransport("http://app.test/rt/sse?ticket=t", "http://app.test/rt/send", "secret",
      transportOptions(clock, { fetch: async () => response(204), EventSource: ScriptedEventSource }));
    const closed = [];
    transport.onclose = (info) => closed.push(info.code);
    const [first] = sources;
    first.readyState = 1;
    first.onopen();
    first.onmessage({ data: '[1,"t","e",null,1,"E"]', lastEventId: "7" });
    first.readyState = 0; // dropped: the browser would reattach by itself
    first.onerror({});
    await clock.advance(600_000);
    assert.deepEqual(closed, typeof c.action === "number" ? [c.action] : []);
    assert.equal(sources.length - 1, answers(c).length + (c.action === "retry" ? 1 : 0));
    for (const source of sources.slice(1)) {
      assert.equal(new URL(source.url).searchParams.get("lastEventId"), "7");
    }
    transport.close();
  },
};

for (const c of cases("http")) {
  test(`http: ${caseId(c)}`, async () => {
    assert.deepEqual(httpAction(c.kind, c.status, c.retried), c.action);
    const run = runHttp[c.kind];
    assert.ok(run, `no runner for request kind ${c.kind}`);
    await run(c);
  });
}

// --- delays --------------------------------------------------------------------------------------

for (const c of cases("requestDelay")) {
  test(`requestDelay: ${caseId(c)}`, () => {
    const attempts = new Attempts(c.kind, 0, new FakeClock(), () => c.random);
    attempts.retried = c.retried;
    const headers = c.retryAfter === null ? {} : { "Retry-After": c.retryAfter };
    const { action, delay } = attempts.answered(response(503, null, headers));
    assert.equal(action, "retry");
    near(delay, c.delayMs, "delay");
  });
}

for (const c of cases("retryAfter")) {
  test(`retryAfter: ${caseId(c)}`, () => {
    near(parseRetryAfter(c.header), c.ms, "raw header");
    const headers = c.header === null ? {} : { "retry-AFTER": c.header };
    near(retryAfterMs(response(429, null, headers)), c.ms, "response header");
  });
}

for (const c of cases("reconnectDelay")) {
  test(`reconnectDelay: ${caseId(c)}`, () => {
    const world = createWorld();
    const options = { random: () => c.random };
    if (c.backoffMs) options.backoff = { min: c.backoffMs.base, max: c.backoffMs.cap };
    const client = world.connect(options);
    client._retryHint = c.hintMs;
    near(client._reconnectDelay(c.attempt, c.retryAfterMs ?? 0), c.delayMs, "delay");
    client.close();
  });
}

for (const kind of ["send", "poll", "sse"]) {
  for (const c of cases("reattach")) {
    test(`reattach: ${kind}, hint=${c.hintMs}, losses at ${c.losses.map((l) => l.atMs)}`, () => {
      assert.equal(POLICY.requests[kind].network, "reattach");
      const clock = { t: 0, now: () => clock.t };
      let draw = 0;
      const attempts = new Attempts(kind, c.hintMs, clock, () => draw);
      for (const loss of c.losses) {
        clock.t = loss.atMs;
        draw = loss.random;
        const delay = attempts.failed();
        if (loss.delayMs === null) assert.equal(delay, null, JSON.stringify(loss));
        else near(delay, loss.delayMs, JSON.stringify(loss));
      }
    });
  }
}

// --- deadlines, liveness, stability, defaults ----------------------------------------------------

/** A negotiate answer for a Conn of `transport`, with `extra` fields. */
const answer = (extra = {}) => ({ token: "s", ticket: "t", urls: { websocket: "/ws", sse: "/sse", longpoll: "/poll", send: "/send" }, ...extra });

for (const c of cases("deadlines")) {
  test(`deadlines: ${caseId(c)}`, () => {
    const world = createWorld();
    const client = world.connect();
    assert.equal(client.options.deadlines[c.transport], c.ms);
    client.close();
  });
}

for (const c of cases("liveness")) {
  test(`liveness: ${caseId(c)}`, () => {
    const conn = new Conn(c.transport, answer({ heartbeat: c.heartbeatMs, pollWindow: c.pollWindowMs }));
    assert.equal(conn.silenceLimit, c.limitMs);
    assert.equal(conn.left(0), c.limitMs);
  });
}

for (const c of cases("stable")) {
  test(`stable: ${caseId(c)}`, async () => {
    assert.equal(isStable(c.upMs), c.resetsBackoff);
    // Through the client: a connection up upMs ends; the next reconnect is attempt 0 or not.
    const world = createWorld();
    world.heartbeat = 10 * 60 * 1000; // no liveness death while it is up
    const client = world.connect({ transports: ["websocket"], failback: false });
    await world.clock.advance(0);
    assert.equal(client.state, "open");
    client._attempt = 7;
    await world.clock.advance(c.upMs);
    client._conn.transport.onclose({ code: 1011, reason: "vector" });
    assert.equal(client._attempt, c.resetsBackoff ? 1 : 8); // the scheduled attempt counted
    client.close();
  });
}

for (const c of cases("defaults")) {
  test(`defaults: ${JSON.stringify(c.answer)}`, () => {
    const conn = new Conn("longpoll", answer(c.answer));
    assert.equal(conn.heartbeat, c.heartbeatMs);
    assert.equal(conn.pollWindow, c.pollWindowMs);
    assert.deepEqual({ ...conn.limits }, c.limits);
  });
}
