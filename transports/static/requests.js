// @ts-check
/**
 * Sends and their replies (§8): EVENT and PUBLISH frames queued while not connected, sent with a
 * reply timeout, re-sent with the same ref on the next session until their REPLY arrives.
 */

import { codeError, decodeFrame, encodeFrame } from "./codec.js";

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./conn.js").Conn} Conn */
/** @typedef {import("./client-core.js").Client} Client */

/**
 * @typedef {Object} SendEntry an EVENT or PUBLISH waiting for its REPLY
 * @property {number | string} ref
 * @property {Frame} frame
 * @property {(data: any) => void} resolve
 * @property {(error: Error) => void} reject
 * @property {any} timer
 * @property {boolean} sent
 */

/** The client's sends: queued ones, and sent ones waiting for a REPLY. */
export class Requests {
  /** @param {Client} client */
  constructor(client) {
    this.client = client;
    /** @type {Map<number | string, SendEntry>} sent, waiting for a REPLY */
    this.inflight = new Map();
    /** @type {SendEntry[]} not sent yet */
    this.queue = [];
  }

  /**
   * @param {(ref: number | string) => Frame} build
   * @param {number | string} [given] the ref, when the caller chose it: a tab's, on a shared
   *   connection (share-leader.js); it must not collide with the client's own numbers
   * @returns {Promise<any>} the REPLY data
   */
  request(build, given) {
    const client = this.client;
    if (client.state === "closed") return Promise.reject(codeError("closed", "client is closed"));
    const ref = given ?? ++client._ref;
    return new Promise((resolve, reject) => {
      /** @type {SendEntry} */
      const entry = { ref, frame: build(ref), resolve, reject, timer: null, sent: false };
      if (client._conn && client.state === "open") this.transmit(client._conn, entry);
      else if (this.queue.length >= client.options.maxQueue) {
        reject(codeError("queue_full", `${client.options.maxQueue} sends already queued`));
      } else this.queue.push(entry);
    });
  }

  /**
   * Send an EVENT/PUBLISH on `conn`; the first time, start its reply timeout.
   * @param {Conn} conn @param {SendEntry} entry
   */
  transmit(conn, entry) {
    const { clock, sendTimeout } = this.client.options;
    try {
      conn.transport.send(entry.frame);
    } catch (error) {
      this.inflight.delete(entry.ref);
      clock.clearTimeout(entry.timer);
      return entry.reject(/** @type {Error} */ (error));
    }
    if (entry.sent) return;
    entry.sent = true;
    this.inflight.set(entry.ref, entry);
    entry.timer = clock.setTimeout(() => {
      this.inflight.delete(entry.ref);
      entry.reject(codeError("timeout", `no reply within ${sendTimeout} ms`));
    }, sendTimeout);
  }

  /**
   * On a new session: unanswered sends again (same refs, oldest first), then the queue.
   * @param {Conn} conn
   */
  resend(conn) {
    // Numbers in order; a tab's string refs (share-leader.js) after them, in the order sent.
    const order = (/** @type {SendEntry} */ e) => (typeof e.ref === "number" ? e.ref : Number.MAX_SAFE_INTEGER);
    for (const entry of [...this.inflight.values()].sort((a, b) => order(a) - order(b))) this.transmit(conn, entry);
    const queued = this.queue;
    this.queue = [];
    for (const entry of queued) this.transmit(conn, entry);
  }

  /** @param {Frame} frame `[4, ref, status, data]` */
  onReply(frame) {
    const [, ref, status, data] = frame;
    const entry = this.inflight.get(ref);
    if (!entry) return; // a repeated REPLY (the server re-answers a retried ref) or an UNSUB
    this.inflight.delete(ref);
    this.client.options.clock.clearTimeout(entry.timer);
    if (status === "ok") entry.resolve(data);
    else entry.reject(codeError(String(status), data && data.message));
  }

  /**
   * The server refused an encoded frame on its own as too large (413): its send, if it is one,
   * fails with "payload_too_large" (the connection stays).
   * @param {string} text
   */
  refused(text) {
    let ref;
    try {
      ref = decodeFrame(text)[1];
    } catch (_) {
      return;
    }
    const entry = this.inflight.get(ref);
    if (!entry || encodeFrame(entry.frame, false) !== text) return;
    this.inflight.delete(ref);
    this.client.options.clock.clearTimeout(entry.timer);
    entry.reject(codeError("payload_too_large", "the server refused the frame as too large"));
  }

  /** The client closed: every pending and queued send rejects. @param {Error} error */
  rejectAll(error) {
    for (const entry of [...this.inflight.values(), ...this.queue]) {
      this.client.options.clock.clearTimeout(entry.timer);
      entry.reject(error);
    }
    this.inflight.clear();
    this.queue = [];
  }
}
