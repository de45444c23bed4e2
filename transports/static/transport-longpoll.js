// @ts-check
/** Long-polling transport (§6): GET /poll?cursor=N down, POST /send up. */

import { FRAME } from "./codec.js";
import { POLL_LOST_BASE_MS, POLL_RETRY, httpFailure, retryAfterMs } from "./policy.js";
import { sleep } from "./timer.js";
import { READY } from "./transport-base.js";
import { HttpTransport } from "./transport-http.js";

/** @typedef {import("./transport-http.js").HttpOptions} HttpOptions */

/** Long-polling transport (§6): GET /poll?cursor=N down, POST /send up. */
export class LongPollTransport extends HttpTransport {
  static bidirectional = false;
  /** The first poll response carries the HELLO. */
  static provenBy = FRAME.HELLO;
  static awaiting = "poll response";
  /** A held poll answers empty only after the poll window (§6.1). */
  static polling = true;

  /** fetch is all it needs, and the client requires fetch anyway. @returns {Record<string, any>} */
  static environment() { return {}; }

  /**
   * @param {URL} url the negotiated `urls.longpoll` @param {any} neg
   * @param {(path: string) => URL} resolve @param {HttpOptions} options
   */
  static start(url, neg, resolve, options) {
    return new LongPollTransport(url.href, resolve(neg.urls.send).href, neg.token, options);
  }

  /**
   * @param {string} pollUrl
   * @param {string} sendUrl
   * @param {string} token secret session token
   * @param {HttpOptions} options
   */
  constructor(pollUrl, sendUrl, token, options) {
    super(sendUrl, token, options);
    this.pollUrl = pollUrl;
    /** sequence number of the last frame processed */
    this.cursor = 0;
    /** @type {AbortController | null} */
    this.controller = null;
    queueMicrotask(() => this.loop());
  }

  async loop() {
    /** @type {number | null} when the polls started failing on the network */
    let lostAt = null;
    for (let failures = 0, lost = 0; this.readyState !== READY.CLOSED;) {
      const url = new URL(this.pollUrl);
      url.searchParams.set("cursor", String(this.cursor));
      this.controller = typeof AbortController === "function" ? new AbortController() : null;
      const headers = { "X-Realtime-Session": this.token };
      let res;
      let body;
      try {
        res = await this.options.fetch(url.href, {
          method: "GET", headers, cache: "no-store", signal: this.controller ? this.controller.signal : undefined,
        });
        if (res.status === 200 && this.readyState !== READY.CLOSED) body = await res.json();
      } catch (_) {
        if (this.readyState === READY.CLOSED) return;
        // A response lost in transit is not lost (§6.1): an open session polls again with the
        // same cursor for a bounded time (a proxy restart, a network blip), then gives up.
        const now = this.options.clock.now();
        if (lostAt === null) lostAt = now;
        const left = this.readyState === READY.OPEN ? (this.options.reattachMs || 0) - (now - lostAt) : 0;
        if (left <= 0) return this.end(1006, "poll failed: network error");
        await sleep(this.options.clock, Math.min(left, POLL_LOST_BASE_MS * 2 ** lost++));
        continue;
      }
      lostAt = null;
      lost = 0;
      if (this.readyState === READY.CLOSED) return;
      if (res.status !== 200) {
        // A proxy timeout or overload (POLL_RETRY in policy.js): poll again a few times (§6.1).
        if (!POLL_RETRY.statuses.includes(res.status) || failures >= POLL_RETRY.retries) {
          const failure = httpFailure(res.status);
          return this.end(failure.code, failure.reason);
        }
        await sleep(this.options.clock, retryAfterMs(res) ?? POLL_RETRY.baseMs * 2 ** failures++);
        continue;
      }
      failures = 0;
      if (!body || !Array.isArray(body.frames) || !Number.isSafeInteger(body.cursor)) {
        return this.end(1011, "malformed poll response");
      }
      // Every poll response is news from the server: an empty one is the long-poll heartbeat,
      // sent when the poll window passes with nothing to send (§6.1, §9).
      this.onalive();
      this.opened();
      for (const raw of body.frames) {
        if (this.readyState === READY.CLOSED) return;
        this.receive(raw, () => this.push("[8]"));
      }
      this.cursor = body.cursor;
    }
  }

  close() {
    if (!this.detach()) return false;
    if (this.controller) this.controller.abort();
    return true;
  }
}
