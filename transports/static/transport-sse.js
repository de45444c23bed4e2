// @ts-check
/**
 * Server-Sent Events transport (§5): EventSource down, POST /send up. A dropped stream is
 * reattached to its own session with `lastEventId` (§5.3) at the pace and within the budget of
 * the policy's `reattach` and `requests.sse` (policy.js), not at the EventSource's own pace.
 */

import { FRAME } from "./codec.js";
import { Attempts, POLICY, closeCodeFor } from "./policy.js";
import { startDeadline } from "./timer.js";
import { READY } from "./transport-base.js";
import { HttpTransport } from "./transport-http.js";

/** @typedef {import("./transport-http.js").HttpOptions} HttpOptions */

/** EventSource.readyState values. */
const ES = Object.freeze({ CONNECTING: 0, OPEN: 1, CLOSED: 2 });

/** Server-Sent Events transport (§5): EventSource down, POST /send up. */
export class SSETransport extends HttpTransport {
  static bidirectional = false;
  /** The stream proves itself with its first event, the HELLO. */
  static provenBy = FRAME.HELLO;
  static awaiting = "first event";

  /** @param {Record<string, any>} options @param {any} globals */
  static environment(options, globals) {
    const EventSource = options.EventSource || globals.EventSource;
    return EventSource ? { EventSource } : null;
  }

  /**
   * @param {URL} url the negotiated `urls.sse` @param {any} neg
   * @param {(path: string) => URL} resolve @param {HttpOptions} options
   */
  static start(url, neg, resolve, options) {
    url.searchParams.set("ticket", neg.ticket);
    return new SSETransport(url.href, resolve(neg.urls.send).href, neg.token, options);
  }

  /**
   * @param {string} url stream URL including `?ticket=`
   * @param {string} sendUrl
   * @param {string} token secret session token
   * @param {HttpOptions} options
   */
  constructor(url, sendUrl, token, options) {
    super(sendUrl, token, options);
    this.url = url;
    /** sequence number of the last event received (`id:`), 0 before any */
    this.lastSeq = 0;
    /** the reattaches of the stream (the policy's `requests.sse` and `reattach`) */
    this.streams = new Attempts("sse", options.hint, options.clock, options.random);
    /** @type {any} pending re-open of the stream */
    this.reattach = null;
    /** @type {{cancel: () => boolean} | null} how long a re-opened stream gets to answer */
    this.reopening = null;
    this.es = this.open(url);
  }

  /** Open the event stream at `url`. @param {string} url @returns {any} the EventSource */
  open(url) {
    const es = new this.options.EventSource(url);
    es.onopen = () => {
      this.answered();
      this.streams.recovered();
      this.opened();
    };
    es.onmessage = (/** @type {{data: string, lastEventId?: string}} */ event) => {
      const seq = Number(event.lastEventId);
      if (event.lastEventId && Number.isSafeInteger(seq)) this.lastSeq = seq;
      this.receive(event.data, () => this.push(this.lastSeq ? `[8,${this.lastSeq}]` : "[8]"));
    };
    es.onerror = () => this.dropped(es);
    return es;
  }

  /**
   * The stream failed. CLOSED: the browser got an answer that is not a stream (a spent ticket,
   * 404, 409...; EventSource hides the status): the session is lost. CONNECTING: the browser
   * would reattach by itself, at the server's `retry:` pace and for ever while a server is down;
   * an open transport reattaches itself instead, as the policy says. While opening, the
   * EventSource keeps trying until the open deadline.
   * @param {any} es
   */
  dropped(es) {
    if (es !== this.es || this.readyState === READY.CLOSED) return;
    this.answered();
    if (es.readyState === ES.CLOSED) return this.end(closeCodeFor("sse"), "event stream closed");
    if (this.readyState === READY.OPEN) this.lost();
  }

  /** The stream is lost on the network: open it again after the policy's delay, or give up. */
  lost() {
    this.detachStream();
    const wait = this.streams.failed();
    if (wait === null) return this.end(1006, `event stream not reattached within ${this.streams.budget} ms`);
    this.onerror(new Error("event stream interrupted, reattaching"));
    const clock = this.options.clock;
    this.reattach = clock.setTimeout(() => {
      this.reattach = null;
      if (this.readyState === READY.CLOSED) return;
      const url = new URL(this.url);
      url.searchParams.set("lastEventId", String(this.lastSeq));
      this.es = this.open(url.href);
      // No answer in time (the policy's requests.sse.timeoutMs, at most what is left of the
      // budget) is a loss too.
      const timeoutMs = POLICY.requests.sse.timeoutMs;
      const ms = Math.max(0, Math.min(timeoutMs === null ? Infinity : timeoutMs, this.streams.left()));
      this.reopening = startDeadline(clock, ms, () => {
        this.reopening = null;
        if (this.readyState !== READY.CLOSED) this.lost();
      });
    }, wait);
  }

  /** The re-opened stream answered (opened, or refused): stop its timeout. */
  answered() {
    if (this.reopening) this.reopening.cancel();
    this.reopening = null;
  }

  /** Close the current EventSource and forget its callbacks. */
  detachStream() {
    const es = this.es;
    es.onopen = es.onmessage = es.onerror = null;
    es.close();
  }

  close() {
    if (!this.detach()) return false;
    this.answered();
    if (this.reattach !== null) this.options.clock.clearTimeout(this.reattach);
    this.reattach = null;
    this.detachStream();
    return true;
  }
}
