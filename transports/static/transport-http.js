// @ts-check
/**
 * The HTTP uplink shared by the transports whose downlink is one-way (SSE, long-poll): frames go
 * up as JSON arrays in POST /send (§6.2), batched per tick up to limits.batch frames /
 * limits.body bytes, one POST in flight at a time.
 */

import { FRAME, byteLength } from "./codec.js";
import { SEND_RETRY, httpFailure, retryAfterMs } from "./policy.js";
import { sleep } from "./timer.js";
import { BaseTransport, READY } from "./transport-base.js";

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./transport-base.js").CloseInfo} CloseInfo */

/**
 * @typedef {import("./transport-base.js").TransportOptions} HttpOptions
 *   reattachMs: how long an open transport keeps trying its own session after a network failure
 */

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
      const failure = await this.post(this.takeBatch());
      if (failure) this.end(failure.code, failure.reason);
    }
    this.posting = false;
  }

  leave() {
    if (this.readyState === READY.CLOSED) return;
    const headers = { "Content-Type": "application/json", "X-Realtime-Session": this.token };
    const body = `[[${FRAME.CLOSE},1000,"closed by the client"]]`;
    // keepalive: the request outlives the page when close() runs on unload
    try {
      Promise.resolve(this.options.fetch(this.sendUrl, { method: "POST", headers, body, cache: "no-store", keepalive: true }))
        .catch(() => {});
    } catch (_) { /* best effort: the session expires anyway */ }
  }

  /** @returns {string[]} the next batch, taken off the outbox */
  takeBatch() {
    let count = 0;
    let bytes = 2;
    while (count < this.outbox.length && count < this.options.batch) {
      const size = byteLength(this.outbox[count]) + (count ? 1 : 0);
      if (count && bytes + size > this.options.body) break;
      bytes += size;
      count++;
    }
    return this.outbox.splice(0, count);
  }

  /**
   * POST one batch, retrying the statuses of SEND_RETRY (policy.js) a few times.
   * @param {string[]} batch
   * @returns {Promise<CloseInfo | null>} null on success (or when closed meanwhile)
   */
  async post(batch) {
    const body = `[${batch.join(",")}]`;
    const headers = { "Content-Type": "application/json", "X-Realtime-Session": this.token };
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await this.options.fetch(this.sendUrl, { method: "POST", headers, body, cache: "no-store" });
      } catch (_) {
        return { code: 1006, reason: "send failed: network error" };
      }
      if (this.readyState === READY.CLOSED || (res.status >= 200 && res.status < 300)) return null;
      if (!SEND_RETRY.statuses.includes(res.status) || attempt >= SEND_RETRY.retries) return httpFailure(res.status);
      await sleep(this.options.clock, retryAfterMs(res) ?? SEND_RETRY.baseMs * 2 ** attempt);
    }
  }
}
