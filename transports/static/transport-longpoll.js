// @ts-check
/**
 * Long-polling transport (§6): GET /poll?cursor=N down, POST /send up. What a poll's answer, or
 * its loss on the network, leads to is the policy's `requests.poll` (policy.js).
 */

import { FRAME } from "./codec.js";
import { Attempts, httpAction, retryAfterMs } from "./policy.js";
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
    const polls = new Attempts("poll", this.options.hint, this.options.clock, this.options.random);
    while (this.readyState !== READY.CLOSED) {
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
        // The body of an answer that succeeded; one lost half-way counts as lost on the network.
        if (this.readyState !== READY.CLOSED && httpAction("poll", res.status) === "ok") body = await res.json();
      } catch (_) {
        if (this.readyState === READY.CLOSED) return;
        // A response lost in transit is not lost (§6.1): an open session polls again with the
        // same cursor within the policy's reattach budget (a proxy restart, a network blip),
        // then gives up. A first poll that fails fails the attempt at once.
        const wait = this.readyState === READY.OPEN ? polls.failed() : null;
        if (wait === null) return this.end(1006, "poll failed: network error");
        await sleep(this.options.clock, wait);
        continue;
      }
      if (this.readyState === READY.CLOSED) return;
      polls.recovered();
      const { action, delay } = polls.answered(res);
      if (action === "retry") {
        // A proxy timeout or overload: poll again, same cursor (§6.1).
        await sleep(this.options.clock, delay);
        continue;
      }
      if (action !== "ok") {
        const code = typeof action === "number" ? action : 1011;
        return this.end(code, `poll failed (HTTP ${res.status})`, retryAfterMs(res));
      }
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
