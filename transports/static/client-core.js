// @ts-check
/**
 * The Client: the public API and the connection cycle (negotiate, try each transport in order,
 * attach, reconnect with backoff, liveness, shutdown). Topics, sends, failback and the page
 * environment are its helpers (subscriptions.js, requests.js, failback.js, page.js); a
 * connection and its transport are a Conn (conn.js). It never names a transport: where they
 * differ it reads the transport class (transport-base.js, `TransportClass`).
 */

import { FRAME, codeError, normalizeData, validName, validTopic } from "./codec.js";
import { Conn } from "./conn.js";
import { Emitter } from "./events.js";
import { Failback } from "./failback.js";
import { negotiate, offers, randomKey } from "./negotiate.js";
import { orderTransports, resolveOptions } from "./options.js";
import { bindPage, forgetTransport, isOffline, recallDemoted, recallTransport, rememberTransport } from "./page.js";
import { toListing } from "./presence.js";
import { afterClose, flapCount, isStable, positive, reconnectDelay, serverHint } from "./policy.js";
import { Requests } from "./requests.js";
import { newStats, pushHistory } from "./stats.js";
import { Subscriptions } from "./subscriptions.js";
import { clearTimer } from "./timer.js";
import { READY } from "./transport-base.js";

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./options.js").Options} Options */
/** @typedef {import("./transports.js").TransportName} TransportName */
/** @typedef {import("./subscriptions.js").Publication} Publication */
/** @typedef {import("./stats.js").Stats} Stats */
/** @typedef {import("./presence.js").Member} Member */
/** @typedef {import("./presence.js").PresenceListing} PresenceListing */
/** @typedef {import("./presence.js").SubscribeOptions} SubscribeOptions */
/**
 * The events of {@link Client.on}: one payload each, except "join" and "leave", whose listeners
 * get `(topic, member)`.
 * @typedef {"state" | "transport" | "error" | "recovered" | "message" | "presence" | "join" | "leave" | "leader"} EventName
 */
/** @typedef {"connecting" | "open" | "reconnecting" | "closed"} State */

/** The close code and reason a client stops with when re-authenticating fails. */
export const CREDENTIALS_REFUSED = Object.freeze({ code: 4501, reason: "credentials refused" });

/**
 * A realtime client. Create it with {@link connect}. Readable properties: `state`, `transport`,
 * `id`, `stats`, `fallbackReason`.
 */
export class Client {
  /** @param {string} url @param {Options} [options] */
  constructor(url, options = {}) {
    const o = resolveOptions(options);
    this.options = o;
    const page = globalThis.location ? globalThis.location.href : undefined;
    const base = new URL(url.replace(/\/+$/, ""), page);
    this.negotiateUrl = `${base.href.replace(/\/+$/, "")}/negotiate`;
    this.storageKey = `transports:last:${base.origin}${base.pathname.replace(/\/+$/, "")}`;
    /** @type {State} */
    this.state = "connecting";
    /** @type {TransportName | null} name of the transport in use, null while not open */
    this.transport = null;
    /** @type {string | null} public id of the current session */
    this.id = null;
    /** @type {string | null} why the client is not on the first transport, human-readable */
    this.fallbackReason = null;
    /** @type {{from: string, to: string, reason: string} | null} the last fallback, not yet reported */
    this._fallbackReport = null;
    /** @type {Stats} */
    this.stats = newStats();
    /** whether this tab holds the connection (always, when not sharing it: share.js) */
    this.leader = true;
    /** whether the connection is shared with other tabs (share.js): never for a Client */
    this.shared = false;
    this.clientKey = randomKey(o.random);
    this._ref = this._gen = this._attempt = this._retryHint = 0;
    this._connecting = this._waitOnline = this._everOpen = false;
    /** a close of the policy's `reauthenticate.codes`: the next negotiate needs a fresh token */
    this._reauth = false;
    /** @type {Partial<Record<TransportName, number>>} closes in a row soon after opening */
    this._flaps = {};
    /** @type {TransportName | null} */
    this._lastTransport = null;
    this._events = new Emitter();
    this._subscriptions = new Subscriptions(this);
    this._requests = new Requests(this);
    this._failback = new Failback(this);
    /** @type {Conn | null} current connection */
    this._conn = null;
    /** @type {{reconnect?: any}} */
    this._timers = {};
    /** @type {TransportName | null} */
    this._preferred = recallTransport(o, this.storageKey);
    /** the preferred transport came from the memory (another page), not from this client */
    this._remembered = this._preferred !== null;
    /** @type {Partial<Record<TransportName, number>>} transports demoted for flapping, and when */
    this._demoted = recallDemoted(o, this.storageKey);
    if (this._preferred && this._preferred !== o.transports[0]) {
      const flapped = this._demoted[o.transports[0]] ? ` (${o.transports[0]} was flapping)` : "";
      this.fallbackReason = `${this._preferred}: remembered from an earlier connection${flapped}`;
    }
    this._unbind = bindPage(o.window, o.document, {
      online: () => { if (this._waitOnline || this._timers.reconnect) this._reconnectNow(); },
      wake: () => this._wake(),
      // A page that goes away for good says goodbye: the server frees the session and the
      // others see this client leave a topic's presence now, not when its session expires.
      leave: o.closeOnPageHide ? () => this.close() : undefined,
      network: () => this._networkChanged(),
    }, o.navigator);
    queueMicrotask(() => this._cycle());
  }

  // --- public API ---------------------------------------------------------------------------

  /**
   * Subscribe to a topic. The handler gets `{id, topic, event, data, offset, epoch}` for every
   * publication, once, in order, across reconnects and transport switches. With
   * `{presence: true}` the client also follows who is subscribed to the topic (§12): see
   * {@link Client.members} and the "presence", "join" and "leave" events.
   * @param {string} topic
   * @param {(pub: Publication) => void} handler
   * @param {SubscribeOptions} [options]
   * @returns {(() => void) & {ready: Promise<{recovered: boolean, epoch: string, offset: number}>}}
   *   call it to unsubscribe; `ready` settles with the first SUB reply (rejects with `.code`)
   */
  subscribe(topic, handler, options = {}) {
    if (!validTopic(topic)) throw new TypeError(`invalid topic ${JSON.stringify(topic)}`);
    if (typeof handler !== "function") throw new TypeError("handler must be a function");
    if (!options || typeof options !== "object") throw new TypeError("options must be an object");
    if (this.state === "closed") throw codeError("closed", "client is closed");
    return this._subscriptions.add(topic, handler, options.presence === true);
  }

  /**
   * Ask who is subscribed to a topic now (PRESENCE, §12). Queued while not connected and sent
   * again after a reconnect until answered, like {@link Client.send} (a read: repeating it is
   * harmless).
   * @param {string} topic
   * @returns {Promise<PresenceListing>} `{members: [{id, info}], count, truncated}`; rejects like
   *   send(), e.g. with code "presence_disabled", "forbidden" or "bad_topic"
   */
  presence(topic) {
    if (!validName(topic, 200)) return Promise.reject(codeError("bad_topic", `invalid topic ${JSON.stringify(topic)}`));
    return this._requests.request((ref) => [FRAME.PRESENCE, ref, topic]).then(toListing);
  }

  /**
   * The members known now of a topic subscribed with `{presence: true}`: its last snapshot and
   * the joins and leaves since. Empty for any other topic, before the first snapshot, after a
   * presence error and once unsubscribed.
   * @param {string} topic
   * @returns {Member[]}
   */
  members(topic) {
    return this._subscriptions.members(topic);
  }

  /**
   * Send an EVENT to the application's handler.
   * @param {string} event
   * @param {any} [data] JSON value, or Uint8Array/ArrayBuffer for a binary frame
   * @returns {Promise<any>} the REPLY data on "ok"; rejects with an Error whose `.code` is the
   *   server's status, "timeout" (no REPLY within sendTimeout of sending), "queue_full",
   *   "payload_too_large", "bad_event" or "closed"
   */
  send(event, data) {
    if (!validName(event, 100)) return Promise.reject(codeError("bad_event", `invalid event ${JSON.stringify(event)}`));
    return this._requests.request((ref) => [FRAME.EVENT, ref, event, normalizeData(data)]);
  }

  /**
   * Ask the server to publish on a topic (allowed only if the application's authoriser says so).
   * @param {string} topic
   * @param {string} event
   * @param {any} [data]
   * @returns {Promise<any>} like {@link Client.send}
   */
  publish(topic, event, data) {
    if (!validName(topic, 200)) return Promise.reject(codeError("bad_topic", `invalid topic ${JSON.stringify(topic)}`));
    if (!validName(event, 100)) return Promise.reject(codeError("bad_event", `invalid event ${JSON.stringify(event)}`));
    return this._requests.request((ref) => [FRAME.PUBLISH, ref, topic, event, normalizeData(data)]);
  }

  /**
   * Listen to client events: "state" `{state, previous}`, "transport" `{transport, from,
   * reason}`, "error" `{type, code?, message?, ...}`, "recovered" `{topic, recovered}`,
   * "message" `{event, data}` (MSG frames), "presence" `{topic, members, count, truncated,
   * events}` (a presence snapshot was applied); "join" and "leave" call `fn(topic, member)`.
   * @param {EventName} name
   * @param {(...args: any[]) => void} fn
   * @returns {() => void} removes the listener
   */
  on(name, fn) {
    return this._events.on(name, fn);
  }

  /** Close for good: no reconnect; pending and queued sends reject with code "closed". */
  close() {
    const conn = this._conn;
    if (this.state !== "closed" && conn && conn.accepted && conn.transport) conn.transport.leave();
    this._shutdown(1000, "client closed", false);
  }

  // --- connecting ----------------------------------------------------------------------------

  /** One connection cycle: negotiate and try each transport in order until one is accepted. */
  async _cycle() {
    if (this.state === "closed" || this._connecting || this._conn) return;
    this._clearTimer("reconnect");
    if (isOffline(this.options.navigator)) return void (this._waitOnline = true);
    this._connecting = true;
    this.stats.attempts++;
    const gen = this._gen;
    try {
      const plan = this._fastStartPlan(orderTransports(this.options.transports, this._preferred, Object.keys(this._demoted)));
      const order = plan.order;
      let neg = null;
      for (let i = 0; i < order.length; i++) {
        const name = order[i];
        if (!neg) {
          try {
            neg = await negotiate(this);
          } catch (error) {
            if (gen === this._gen) this._negotiateFailed(/** @type {any} */ (error));
            return;
          }
          if (gen !== this._gen) return;
          this._retryHint = serverHint(neg.retry);
        }
        const next = order[i + 1] || null;
        if (!offers(neg, name)) {
          this._recordFallback(name, next, `${name}: not offered by the server`);
          continue;
        }
        const conn = new Conn(name, neg);
        conn.fast = name === plan.fast;
        neg = null; // the ticket is single use: renegotiate before the next attempt
        const result = await conn.open(this, i === 0 ? plan.deadline : undefined);
        if (gen !== this._gen) return this._drop(conn);
        if (result.ok) return this._attach(conn, null);
        this._recordFallback(name, next, result.reason || `${name}: failed`, result.cause || "error");
      }
      this._scheduleReconnect(0);
    } finally {
      this._connecting = false;
    }
  }

  /**
   * This cycle's order and the fast start's part in it (options.fastStart): with no transport
   * known (no memory, or the network changed), the fast one first; on the page's first
   * connection, a remembered transport other than it gets the shorter `rememberedDeadlineMs`,
   * with the fast one next. `fast`: the transport whose connection is a fast start (the better
   * ones are probed soon after it opens, and it is remembered only once they failed).
   * @param {TransportName[]} order
   * @returns {{order: TransportName[], fast: TransportName | null, deadline?: number}}
   */
  _fastStartPlan(order) {
    const fast = this.options.fastStart;
    if (!fast || order[0] === fast.transport || this._demoted[fast.transport]) return { order, fast: null };
    const rest = order.filter((name) => name !== fast.transport);
    if (!this._preferred) return { order: [fast.transport, ...rest], fast: fast.transport };
    if (this._everOpen || !this._remembered) return { order, fast: null };
    return { order: [order[0], fast.transport, ...rest.slice(1)], fast: fast.transport, deadline: fast.rememberedDeadlineMs };
  }

  /**
   * The fast start's connection stays: the probe found no better transport working. Now it is
   * the transport known to work, and remembered.
   * @param {Conn} conn
   */
  _fastStartSettled(conn) {
    if (!conn.fast || conn !== this._conn) return;
    conn.fast = false;
    this._preferred = conn.name;
    rememberTransport(this.options, this.storageKey, conn.name, this._demoted);
  }

  /** The network may have changed (online, offline, connection change): what worked may not. */
  _networkChanged() {
    forgetTransport(this.options, this.storageKey);
    this._preferred = null;
    this._remembered = false;
    this._demoted = {};
    this._flaps = {};
  }

  /** @param {any} error */
  _negotiateFailed(error) {
    // Re-authenticating: no fresh token, or the server refused it. Stop (policy reauthenticate).
    if (this._reauth && (error.terminal || error.type === "token")) return this._credentialsRefused(error.message);
    this._events.emit("error", {
      type: error.type || "negotiate", status: error.status, code: error.code, message: error.message,
    });
    if (error.terminal) {
      // The policy's close code for the refusal (requests.negotiate.close): the client stops.
      this.stats.lastClose = { code: error.closeCode, reason: error.code };
      return this._shutdown(error.closeCode, error.code, false);
    }
    this._scheduleReconnect(error.retryAfterMs || 0);
  }

  /**
   * Close a connection's transport without reporting; settle a pending open with `reason` (and
   * `cause`, the fallback reason code reported in the next negotiate).
   * @param {Conn} conn
   * @param {string} [reason]
   * @param {string} [cause]
   */
  _drop(conn, reason = "abandoned", cause = "closed") {
    if (conn.closed) return;
    conn.closed = true;
    this.options.clock.clearTimeout(conn.liveTimer);
    if (conn.transport) conn.transport.close();
    this._subscriptions.forget(conn);
    if (conn.settle) conn.settle({ ok: false, reason, cause });
  }

  /**
   * Make `conn` the current connection: resubscribe, re-send unanswered EVENTs, flush the queue.
   * @param {Conn} conn
   * @param {Conn | null} switchedFrom the connection it replaces on a failback switch
   */
  _attach(conn, switchedFrom) {
    const from = this._lastTransport;
    const reconnect = this._everOpen && !switchedFrom;
    this._conn = conn;
    this._everOpen = true;
    this.transport = conn.name;
    this.id = conn.neg.id == null ? null : String(conn.neg.id);
    this._lastTransport = conn.name;
    if (!conn.fast) this._preferred = conn.name;
    this._retryHint = serverHint(conn.neg.retry);
    if (reconnect) this.stats.reconnects++;
    if (this._reauth && !switchedFrom) {
      conn.reauthenticated = true;
      this._reauth = false;
      this.stats.reauthentications++;
    }
    if (conn.name === this.options.transports[0]) this.fallbackReason = null;
    else if (conn.fast && !this.fallbackReason) this.fallbackReason = `${conn.name}: fast start, probing the better transports`;
    const reason = switchedFrom ? `${conn.name} works again (was ${switchedFrom.name})` : this.fallbackReason;
    // A fast start proves nothing about the better transports: remembered once they failed.
    if (!conn.fast) rememberTransport(this.options, this.storageKey, conn.name, this._demoted);
    else this._failback.soon = true;
    conn.lastRx = conn.attachedAt = this.options.clock.now();
    conn.watch(this, conn.left(conn.lastRx));
    this._subscriptions.resubscribe(conn);
    this._requests.resend(conn);
    this._setState("open");
    if (from !== conn.name) this._events.emit("transport", { transport: conn.name, from, reason });
    this._failback.schedule();
  }

  /**
   * A transport closed (or was found dead).
   * @param {Conn} conn @param {number} code @param {string} reason
   * @param {number} [retryAfter] ms: a Retry-After that came with the failure, 0 when none
   */
  _onClose(conn, code, reason, retryAfter = 0) {
    if (conn.closed) return;
    const detail = `${conn.name}: closed with ${code}${reason ? ` (${reason})` : ""}`;
    const pending = conn.settle !== null;
    this._drop(conn, `${detail} before it was usable`, conn.opened ? "closed" : "refused");
    if (pending) return;
    if (conn === this._failback.probe) return this._failback.failed(detail);
    if (conn !== this._conn) return;
    this._conn = this.transport = this.id = null;
    this._failback.abort();
    this.stats.lastClose = { code, reason };
    const upMs = this.options.clock.now() - conn.attachedAt;
    const renewable = typeof this.options.token === "function";
    const action = afterClose(code, upMs, renewable, conn.reauthenticated);
    if (action === "stop") {
      // Refused again right after re-authenticating (reauthenticate.minUpMs): no loop.
      if (renewable && afterClose(code, Infinity, true, false) === "reauthenticate") {
        return this._credentialsRefused(`${detail} again ${upMs} ms after re-authenticating`);
      }
      return this._shutdown(code, reason, code !== 1000);
    }
    this._countFlap(conn.name, code, upMs);
    // A connection up long enough starts the backoff over (the policy's backoff.stableAfterMs).
    if (isStable(upMs)) this._attempt = 0;
    this._setState("reconnecting");
    if (action === "reauthenticate") {
      // The credentials ran out (the app's revalidate hook said no): the next negotiate asks
      // the token function for a fresh token, at once, and resumes every topic from its position.
      this._reauth = true;
      return void this._cycle();
    }
    this._scheduleReconnect(retryAfter);
  }

  /**
   * Re-authenticating failed: stop with 4501 "credentials refused" and an "error" event.
   * @param {string} detail
   */
  _credentialsRefused(detail) {
    const { code, reason } = CREDENTIALS_REFUSED;
    this._reauth = false;
    this.stats.lastClose = { code, reason };
    this._events.emit("error", { type: "reauth", code, reason, message: `${reason}: ${detail}` });
    this._shutdown(code, reason, false);
  }

  /**
   * Count a close of the current connection on transport `name` after `upMs` up (the policy's
   * `flapping`, the `flapping` option): after `times` quick deaths in a row, demote it to the
   * next transport and remember that; only the background probe brings it back (failback.js).
   * @param {TransportName} name @param {number} code @param {number} upMs
   */
  _countFlap(name, code, upMs) {
    const flapping = this.options.flapping;
    if (!flapping) return;
    const count = flapCount(this._flaps[name] || 0, code, upMs, flapping.upForLessThanMs);
    this._flaps[name] = count;
    if (count < flapping.times) return;
    const order = this.options.transports;
    const next = order.slice(order.indexOf(name) + 1).find((other) => !this._demoted[other]) || null;
    if (!next) return; // nothing worse to go to: keep trying it
    this._flaps[name] = 0;
    this._demoted[name] = this.options.clock.now();
    this._preferred = next;
    this.stats.demotions++;
    const within = Math.round(flapping.upForLessThanMs / 100) / 10;
    this._recordFallback(name, next, `${name}: flapping (closed ${count} times within ${within} s of opening)`, "flapping");
    rememberTransport(this.options, this.storageKey, next, this._demoted);
  }

  /** The probe of a demoted transport stayed up: try it first again. @param {TransportName} name */
  _undemote(name) {
    delete this._demoted[name];
    this._flaps[name] = 0;
  }

  /**
   * ms before reconnect attempt `attempt` (the policy's backoff above the server's `retry` hint),
   * never less than a Retry-After the server sent.
   * @param {number} attempt @param {number} retryAfter ms, 0 when none
   */
  _reconnectDelay(attempt, retryAfter) {
    const { backoff, random } = this.options;
    return reconnectDelay(attempt, backoff, this._retryHint, random, retryAfter);
  }

  /** @param {number} retryAfter ms, e.g. a Retry-After; 0 when none */
  _scheduleReconnect(retryAfter) {
    if (this.state === "closed" || this._timers.reconnect) return;
    if (this._everOpen) this._setState("reconnecting");
    if (isOffline(this.options.navigator)) return void (this._waitOnline = true);
    const delay = this._reconnectDelay(this._attempt++, retryAfter);
    this._timers.reconnect = this.options.clock.setTimeout(() => {
      this._timers.reconnect = null;
      this._cycle();
    }, delay);
  }

  /** Reconnect now (online again, tab visible again), skipping the backoff wait. */
  _reconnectNow() {
    this._waitOnline = false;
    this._clearTimer("reconnect");
    this._cycle();
  }

  /** The page became visible or was restored: check the connection, reconnect at once if dead. */
  _wake() {
    if (this.state === "closed") return;
    const conn = this._conn;
    if (conn) {
      const left = conn.left(this.options.clock.now());
      if (left > 0 && conn.transport.readyState !== READY.CLOSED) return;
      this._onClose(conn, 4000, "connection found dead on wake");
    }
    if (!this._connecting) this._reconnectNow();
  }

  /**
   * @param {Conn} conn @param {Frame} frame
   * @param {boolean} [uplink] a REPLY from the answer to POST /send (§6.2): handled like one
   *   from the stream, but it says nothing about the downstream, so liveness does not move
   */
  _onFrame(conn, frame, uplink = false) {
    if (conn.closed) return;
    if (!uplink) conn.lastRx = this.options.clock.now();
    const [type] = frame; // PING is answered by the transport; unknown types are ignored
    if (type === FRAME.HELLO) conn.heartbeat = positive((frame[1] || {}).heartbeat, conn.heartbeat);
    if (type === conn.kind.provenBy) conn.accept();
    else if (type === FRAME.PUB) this._subscriptions.onPub(frame);
    else if (type === FRAME.MSG) this._events.emit("message", { event: frame[1], data: frame[2] });
    else if (type === FRAME.REPLY) this._subscriptions.onReply(frame) || this._requests.onReply(frame);
  }

  /**
   * @param {string} from @param {string | null} to @param {string} reason
   * @param {string} [cause] the reason code the next negotiate reports (policy `fallbackReasons`)
   */
  _recordFallback(from, to, reason, cause) {
    this.fallbackReason = reason;
    // Reported to the server in the next negotiate body (§3), then forgotten.
    if (cause && to) this._fallbackReport = { from, to, reason: cause };
    pushHistory(this.stats.fallbacks, { from, to, reason, at: this.options.clock.now() });
  }

  /**
   * Stop everything. @param {number} code @param {string} reason @param {boolean} isError
   */
  _shutdown(code, reason, isError) {
    if (this.state === "closed") return;
    this._gen++;
    this._clearTimer("reconnect");
    this._failback.abort();
    if (this._conn) this._drop(this._conn);
    this._conn = this.transport = this.id = null;
    this._unbind();
    const closed = codeError("closed", `connection closed (${code}${reason ? ` ${reason}` : ""})`);
    this._requests.rejectAll(closed);
    this._subscriptions.rejectAll(closed);
    if (isError) this._events.emit("error", { type: "close", code, reason, message: `closed by the server: ${code} ${reason}` });
    this._setState("closed");
  }

  /** @param {State} state */
  _setState(state) {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    this._events.emit("state", { state, previous });
  }

  /** @param {"reconnect"} name */
  _clearTimer(name) {
    clearTimer(this.options.clock, this._timers, name);
  }
}
