// @ts-check
/**
 * One session on one transport, from negotiate to close: opening it within its deadline, wiring
 * the transport's callbacks to the client, and watching that the server is still heard from.
 * Where transports differ it reads the transport class (transport-base.js, `TransportClass`).
 */

import { FRAME } from "./codec.js";
import { SESSION_DEFAULTS, deadline, limit, livenessLimit, positive, serverHint } from "./policy.js";
import { startDeadline } from "./timer.js";
import { transportClass } from "./transports.js";

/** @typedef {import("./transports.js").TransportName} TransportName */
/** @typedef {import("./client-core.js").Client} Client */
/**
 * `cause` is the fallback reason reported to the server in the next negotiate (the policy's
 * `fallbackReasons`): "timeout", "refused", "closed" or "error".
 * @typedef {{ok: boolean, reason?: string, cause?: string}} OpenResult
 */

/** One session on one transport, from negotiate to close. */
export class Conn {
  /** @param {TransportName} name @param {any} neg negotiate response */
  constructor(name, neg) {
    this.name = name;
    this.kind = transportClass(name);
    this.neg = neg;
    /** @type {any} */
    this.transport = this.liveTimer = null;
    this.accepted = this.closed = false;
    this.opened = false; // the transport opened (an upgrade or a request was accepted)
    this.reauthenticated = false; // opened by a re-authentication (the policy's reauthenticate)
    this.fast = false; // opened by a fast start (options.fastStart): the better ones are probed soon
    this.lastRx = 0; // when the server was last heard from (a frame, or any poll response)
    this.attachedAt = 0; // when the client made it its connection
    this.heartbeat = positive(neg.heartbeat, SESSION_DEFAULTS.heartbeat);
    this.pollWindow = positive(neg.pollWindow, SESSION_DEFAULTS.pollWindow);
    const limits = neg.limits || {};
    /** What the server accepts (the negotiate answer's `limits`, else the policy's defaults). */
    this.limits = Object.freeze({
      message: limit(limits.message, SESSION_DEFAULTS.message),
      body: limit(limits.body, SESSION_DEFAULTS.body),
      batch: limit(limits.batch, SESSION_DEFAULTS.batch),
    });
    /** @type {((result: OpenResult) => void) | null} */
    this.settle = null;
    /** @type {Set<string>} topics with an ok SUB reply on this session */
    this.subscribed = new Set();
    /** @type {Set<string>} topics whose SUB is waiting for its reply */
    this.subscribing = new Set();
  }

  /**
   * ms of silence from the server after which this connection is dead (§9): its PING interval,
   * on a polling transport at least the poll window, after which a held poll answers empty
   * (§6.1), plus the policy's liveness slack.
   */
  get silenceLimit() {
    return livenessLimit(this.heartbeat, this.kind.polling ? this.pollWindow : 0);
  }

  /**
   * Start the transport and wait until it proves itself within its deadline.
   * @param {Client} client
   * @param {number} [ms] the deadline, when not the transport's own (a fast start's shorter one)
   * @returns {Promise<OpenResult>}
   */
  open(client, ms = client.options.deadlines[this.name] ?? deadline(this.name)) {
    return new Promise((resolve) => {
      const deadline = startDeadline(client.options.clock, ms, () =>
        client._drop(this, `${this.name}: no ${this.kind.awaiting} within ${ms} ms`, "timeout"));
      this.settle = (result) => {
        this.settle = null;
        deadline.cancel();
        resolve(result);
      };
      try {
        this.start(client);
      } catch (error) {
        client._drop(this, `${this.name}: ${/** @type {Error} */ (error).message}`, "error");
      }
    });
  }

  /** Create the transport and route its callbacks to `client`. @param {Client} client */
  start(client) {
    const neg = this.neg;
    const o = client.options;
    const url = (/** @type {string} */ path) => new URL(path, client.negotiateUrl);
    const common = { fetch: o.fetch, clock: o.clock, random: o.random, maxMessage: this.limits.message,
      batch: this.limits.batch, body: this.limits.body, hint: serverHint(neg.retry) };
    const transport = this.kind.start(url(neg.urls[this.name]), neg, url, { ...common, ...o.environment[this.name] });
    this.transport = transport;
    transport.onopen = () => {
      this.opened = true;
      // Proven by a PONG: ask for one at once (a proxy may accept the upgrade and then stall, §4).
      if (this.kind.provenBy === FRAME.PONG && !this.accepted) transport.send([FRAME.PING]);
    };
    transport.onmessage = (frame, uplink) => client._onFrame(this, frame, uplink);
    transport.onalive = () => { if (!this.closed) this.lastRx = o.clock.now(); };
    transport.onerror = (error) => {
      if (this === client._conn) client._events.emit("error", { type: "transport", transport: this.name, message: error.message });
    };
    transport.onrefuse = (text) => client._requests.refused(text);
    transport.onclose = (info) => client._onClose(this, info.code, info.reason, info.retryAfter || 0);
  }

  /** The transport proved itself: settle a pending open. */
  accept() {
    if (this.accepted || this.closed) return;
    this.accepted = true;
    if (this.settle) this.settle({ ok: true });
  }

  /**
   * Check after `ms` that the server was heard from recently enough (§9), else report the
   * connection dead with 4000. Frames and poll responses only move lastRx forward, so a
   * throttled timer never kills a healthy connection.
   * @param {Client} client @param {number} ms
   */
  watch(client, ms) {
    const clock = client.options.clock;
    this.liveTimer = clock.setTimeout(() => {
      this.liveTimer = null;
      if (this.closed || this !== client._conn) return;
      const left = this.left(clock.now());
      if (left > 0) this.watch(client, left);
      else client._onClose(this, 4000, "no data from the server");
    }, Math.max(0, ms));
  }

  /** ms before the connection counts as dead (§9); zero or less: dead. @param {number} now */
  left(now) {
    return this.lastRx + this.silenceLimit - now;
  }
}
