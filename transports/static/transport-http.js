// @ts-check
/**
 * The HTTP uplink shared by the transports whose downlink is one-way (SSE, long-poll): frames go
 * up as JSON arrays in POST /send (§6.2), batched per tick up to limits.batch frames /
 * limits.body bytes, one POST in flight at a time. What a failed POST leads to is the policy's
 * `requests.send` (policy.js).
 *
 * Every POST asks for its replies in the answer (`Accept: application/json`, §6.2): a server that
 * gives them answers `200 {"frames": [...]}` with the REPLY to each EVENT and PUBLISH of the
 * batch, which then do not come down the stream or poll; an older server answers `204` and the
 * replies come down as before. On long-poll this saves the poll that carried each reply.
 */

import { FRAME, byteLength } from "./codec.js";
import { Attempts, POLICY, retryAfterMs } from "./policy.js";
import { sleep, startDeadline } from "./timer.js";
import { BaseTransport, READY } from "./transport-base.js";

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./transport-base.js").CloseInfo} CloseInfo */

/** @typedef {import("./transport-base.js").TransportOptions} HttpOptions */

/** What readReplies() says of an answer whose body was lost on the way. */
const LOST = Symbol("lost");

/** Base of SSE and long-poll: the POST /send uplink. */
export class HttpTransport extends BaseTransport {
  /**
   * @param {string} sendUrl
   * @param {string} token the secret session token (X-Realtime-Session)
   * @param {HttpOptions} options
   */
  constructor(sendUrl, token, options) {
    super(options.maxMessage);
    this.sendUrl = sendUrl;
    this.token = token;
    this.options = options;
    /** @type {string[]} encoded frames waiting for a POST */
    this.outbox = [];
    this.posting = false;
    /** @type {Promise<void> | null} the POST in flight, if any */
    this.inflight = null;
    /** frames per POST now: halved after a 413 (or a repeated 429), grows back after a success */
    this.cap = options.batch;
    /** the retries of POST /send on this transport */
    this.sends = new Attempts("send", options.hint, options.clock, options.random);
  }

  /** @param {Frame} frame */
  send(frame) { this.push(/** @type {string} */ (this.encode(frame))); }

  /** @param {string} text one encoded frame */
  push(text) {
    this.outbox.push(text);
    if (this.outbox.length === 1 && !this.posting) queueMicrotask(() => this.flush());
  }

  async flush() {
    if (this.posting) return;
    this.posting = true;
    while (this.outbox.length && this.readyState !== READY.CLOSED) {
      this.inflight = this.post(this.takeBatch());
      await this.inflight;
    }
    this.inflight = null;
    this.posting = false;
  }

  leave() {
    if (this.readyState === READY.CLOSED) return;
    // The headers of every POST (Accept included: harmless, a CLOSE has no reply and the
    // answer is not read).
    const headers = this.headers();
    const body = `[[${FRAME.CLOSE},1000,"closed by the client"]]`;
    // keepalive: the request outlives the page when close() runs on unload
    const send = () => {
      try {
        Promise.resolve(this.options.fetch(this.sendUrl, { method: "POST", headers, body, cache: "no-store", keepalive: true }))
          .catch(() => {});
      } catch (_) { /* best effort: the session expires anyway */ }
    };
    // One POST per session at a time (§6.2: a second one is refused with 409): after the one
    // in flight, if any.
    if (this.inflight) this.inflight.then(send, send);
    else send();
  }

  /**
   * The headers of a POST /send: the session, and `Accept: application/json` to get the replies
   * in the answer (§6.2; a safelisted header: it adds no CORS preflight).
   * @returns {Record<string, string>}
   */
  headers() {
    return { "Content-Type": "application/json", Accept: "application/json", "X-Realtime-Session": this.token };
  }

  /** @returns {string[]} the next batch, taken off the outbox: at least one frame */
  takeBatch() {
    let count = 0;
    let bytes = 2;
    while (count < this.outbox.length && count < this.cap) {
      const size = byteLength(this.outbox[count]) + (count ? 1 : 0);
      if (count && bytes + size > this.options.body) break;
      bytes += size;
      count++;
    }
    return this.outbox.splice(0, count);
  }

  /**
   * The server refused `batch` as too large (413): send smaller batches; a frame it refuses on
   * its own is dropped and its send fails, instead of the same frames going again after every
   * reconnect.
   * @param {string[]} batch
   */
  split(batch) {
    if (batch.length > 1) {
      this.outbox.unshift(...batch);
      this.cap = Math.max(1, Math.floor(batch.length / 2));
      return;
    }
    this.onrefuse(batch[0]);
  }

  /**
   * POST one batch and act on the answer as the policy's `requests.send` says: ok, ask again
   * (after its jittered delay, a Retry-After at least), split, or end the transport. A POST lost
   * on the network goes again within the policy's reattach budget, then the transport ends
   * with 1006.
   * @param {string[]} batch
   * @returns {Promise<void>}
   */
  async post(batch) {
    const body = `[${batch.join(",")}]`;
    const headers = this.headers();
    const timeoutMs = POLICY.requests.send.timeoutMs;
    const controller = typeof AbortController === "function" && timeoutMs !== null ? new AbortController() : null;
    const timeout = controller && timeoutMs !== null ? startDeadline(this.options.clock, timeoutMs, () => controller.abort()) : null;
    const clock = this.options.clock;
    let res;
    try {
      res = await this.options.fetch(this.sendUrl, {
        method: "POST", headers, body, cache: "no-store", signal: controller ? controller.signal : undefined,
      });
    } catch (_) {
      if (timeout) timeout.cancel();
      return this.postLost(batch);
    }
    if (this.readyState === READY.CLOSED) {
      if (timeout) timeout.cancel();
      return;
    }
    const { action, delay } = this.sends.answered(res);
    // The replies in the answer (§6.2), read while the request's deadline still runs: a body that
    // stalls is cut by it.
    const replies = action === "ok" && res.status === 200 ? await this.readReplies(res) : null;
    if (timeout) timeout.cancel();
    if (this.readyState === READY.CLOSED) return;
    if (replies === LOST) return this.postLost(batch);
    // An answer, read in full: the network works (a body lost after the headers is no proof).
    this.sends.recovered();
    if (action === "ok") {
      this.cap = Math.min(this.options.batch, this.cap * 2);
      // Handed on before the next batch goes up, in the order of the answer.
      for (const raw of replies || []) {
        if (this.readyState === READY.CLOSED) return;
        this.receive(raw, () => {}, true);
      }
    } else if (action === "split") this.split(batch);
    else if (action === "retry") {
      // 408, 409 (another POST finishing), 429 (the session's rate limit: nothing applied,
      // §6.2), 5xx: the same frames again, after Retry-After at least.
      this.outbox.unshift(...batch);
      if (res.status === 429 && this.sends.retried > 1 && batch.length > 1) {
        this.cap = Math.max(1, Math.floor(batch.length / 2)); // a batch may cost more than the burst
      }
      await sleep(clock, delay);
    } else this.end(action, `send failed (HTTP ${res.status})`, retryAfterMs(res));
  }

  /**
   * A POST, or its answer, was lost on the way: the same frames again after the policy's delay
   * (safe: the server deduplicates refs and answers the repeats from its reply memory, §6.2,
   * §8), or the transport ends with 1006 once the reattach budget is spent.
   * @param {string[]} batch
   * @returns {Promise<void>}
   */
  async postLost(batch) {
    if (this.readyState === READY.CLOSED) return;
    const wait = this.sends.failed();
    if (wait === null) return this.end(1006, "send failed: network error");
    this.outbox.unshift(...batch);
    return sleep(this.options.clock, wait);
  }

  /**
   * The frames of a 200 answer to POST /send, `{"frames": [frame, ...]}` (§6.2); null when the
   * answer has none to give; LOST when its body was lost on the way.
   *
   * A body cut off on the network, or by the request's deadline, is a lost answer: the batch
   * goes again, as after a POST lost on the way (§6.2 "a lost answer loses nothing").
   *
   * A body that is not JSON (an empty one included) or not that shape is ignored, and the
   * connection goes on: the batch was applied (the status says so), and the sends it carried
   * stay pending in requests.js, so nothing is lost. Their replies come down the stream or poll
   * if the server sent them there (an older or odd server); else when requests.js sends the
   * same refs again on the next session (the reply memory answers them without applying them
   * twice, §8), or the sends fail with "timeout" after sendTimeout.
   * @param {{json?(): Promise<any>}} res
   * @returns {Promise<any[][] | null | typeof LOST>}
   */
  async readReplies(res) {
    if (typeof res.json !== "function") return null; // a test's fetch that gives no body
    let body;
    try {
      body = await res.json();
    } catch (error) {
      return error instanceof SyntaxError ? null : LOST;
    }
    if (!body || !Array.isArray(body.frames) || !body.frames.every(Array.isArray)) return null;
    return body.frames;
  }
}
