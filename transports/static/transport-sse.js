// @ts-check
/** Server-Sent Events transport (§5): EventSource down, POST /send up. */

import { FRAME } from "./codec.js";
import { READY } from "./transport-base.js";
import { HttpTransport } from "./transport-http.js";

/** @typedef {import("./transport-http.js").HttpOptions} HttpOptions */

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
    /** sequence number of the last event received (`id:`), 0 before any */
    this.lastSeq = 0;
    /** @type {any} pending "reattach or give up" timer */
    this.reattach = null;
    const es = (this.es = new options.EventSource(url));
    es.onopen = () => {
      this.reattached();
      this.opened();
    };
    es.onmessage = (/** @type {{data: string, lastEventId?: string}} */ event) => {
      this.reattached();
      const seq = Number(event.lastEventId);
      if (event.lastEventId && Number.isSafeInteger(seq)) this.lastSeq = seq;
      this.receive(event.data, () => this.push(this.lastSeq ? `[8,${this.lastSeq}]` : "[8]"));
    };
    es.onerror = () => {
      // While CONNECTING the EventSource reattaches by itself with Last-Event-ID (§5.3); CLOSED
      // means it gave up (404, 409, a non-stream response): the session is lost. A server that
      // is down leaves it CONNECTING for ever (it retries every `retry:` ms), so the reattach
      // gets a bounded time before the session is given up and the client reconnects.
      if (es.readyState === 2) return this.end(1006, "event stream closed");
      const ms = options.reattachMs;
      if (this.readyState === READY.OPEN && ms && ms > 0 && this.reattach === null) {
        this.reattach = options.clock.setTimeout(() => {
          this.reattach = null;
          this.end(1006, `event stream not reattached within ${ms} ms`);
        }, ms);
      }
      this.onerror(new Error("event stream interrupted, reattaching"));
    };
  }

  /** The stream is back (open, or an event arrived): cancel the reattach timer. */
  reattached() {
    if (this.reattach === null) return;
    this.options.clock.clearTimeout(this.reattach);
    this.reattach = null;
  }

  close() {
    if (!this.detach()) return false;
    this.reattached();
    this.es.onopen = this.es.onmessage = this.es.onerror = null;
    this.es.close();
    return true;
  }
}
