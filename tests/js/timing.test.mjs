// Pure timing rules: full-jitter backoff, the server's retry hint, close-code classes (§10.1),
// deadlines and liveness (§9), transport order.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  backoffDelay, classifyClose, livenessRemaining, orderTransports, reconnectDelay, startDeadline,
} from "../../transports/static/client.js";
import { FakeClock } from "./fakes.mjs";

const backoff = { min: 500, max: 20000 };

test("full-jitter backoff stays within [0, min(max, min * 2^attempt)]", () => {
  for (let attempt = 0; attempt < 40; attempt++) {
    const cap = Math.min(20000, 500 * 2 ** attempt);
    for (const r of [0, 0.25, 0.5, 0.999999]) {
      const delay = backoffDelay(attempt, backoff, () => r);
      assert.ok(delay >= 0 && delay <= cap, `attempt ${attempt}: ${delay} > ${cap}`);
    }
    assert.equal(backoffDelay(attempt, backoff, () => 0), 0);
    assert.ok(Math.abs(backoffDelay(attempt, backoff, () => 0.999999) - cap) < 1);
  }
});

test("backoff grows exponentially, is capped, and does not overflow for huge attempt numbers", () => {
  const top = (n) => backoffDelay(n, backoff, () => 1);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map(top), [500, 1000, 2000, 4000, 8000, 16000, 20000]);
  assert.equal(top(5000), 20000);
});

test("the jitter actually spreads clients", () => {
  const delays = new Set(Array.from({ length: 50 }, () => Math.round(backoffDelay(5, backoff))));
  assert.ok(delays.size > 40);
});

test("the server's retry hint is a lower bound and the spread stays above it", () => {
  for (const r of [0, 0.5, 0.99]) {
    for (let attempt = 0; attempt < 10; attempt++) {
      const delay = reconnectDelay(attempt, backoff, 1000, () => r);
      assert.ok(delay >= 1000 && delay <= 20000, String(delay));
    }
  }
  assert.equal(reconnectDelay(0, backoff, 0, () => 0.5), 250); // no hint: plain backoff
  assert.equal(reconnectDelay(10, backoff, 30000, () => 0.99), 30000); // hint above max wins
});

test("close codes: 1001, 1005, 1006, 1011-1015 and 4000-4499 reconnect, everything else stops", () => {
  const reconnect = [1001, 1005, 1006, 1011, 1012, 1013, 1014, 1015, 4000, 4004, 4008, 4010, 4029, 4499];
  const stop = [1000, 1002, 1003, 1004, 1007, 1008, 1009, 1010, 1016, 3000, 4500, 4501, 4503, 4504, 4509, 4999];
  for (const code of reconnect) assert.equal(classifyClose(code), "reconnect", String(code));
  for (const code of stop) assert.equal(classifyClose(code), "stop", String(code));
});

test("a deadline fires once after its time, and cancel() stops it only before that", async () => {
  const clock = new FakeClock();
  let fired = 0;
  const d = startDeadline(clock, 2500, () => fired++);
  await clock.advance(2499);
  assert.equal(fired, 0);
  await clock.advance(1);
  assert.equal(fired, 1);
  assert.equal(d.expired, true);
  assert.equal(d.cancel(), false);
  const d2 = startDeadline(clock, 100, () => fired++);
  assert.equal(d2.cancel(), true);
  await clock.advance(1000);
  assert.equal(fired, 1);
  assert.equal(d2.expired, false);
});

test("liveness: dead after heartbeat + 10 s without data, measured from the last frame", () => {
  assert.equal(livenessRemaining(0, 0, 25000), 35000);
  assert.equal(livenessRemaining(0, 34999, 25000), 1);
  assert.ok(livenessRemaining(0, 35000, 25000) <= 0);
  assert.equal(livenessRemaining(30000, 35000, 25000), 30000); // a frame at 30 s re-arms
});

test("transport order starts with the one that worked, then the rest in preference order", () => {
  const all = ["websocket", "sse", "longpoll"];
  assert.deepEqual(orderTransports(all, null), all);
  assert.deepEqual(orderTransports(all, "sse"), ["sse", "websocket", "longpoll"]);
  assert.deepEqual(orderTransports(all, "longpoll"), ["longpoll", "websocket", "sse"]);
  assert.deepEqual(orderTransports(["sse", "longpoll"], "websocket"), ["sse", "longpoll"]);
});
