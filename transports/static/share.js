// @ts-check
/**
 * Tab sharing: the tabs of one origin that connect to the same realtime URL with the same
 * credentials share one connection. Each tab gets a SharedClient, with the whole API of a
 * Client (its own subscriptions, sends and replies, presence, events); one of them, the leader,
 * holds the connection for all (share-leader.js) and the others talk to it over a
 * BroadcastChannel.
 *
 * Election: a Web Lock per group. Every tab asks for it; the holder leads, the others wait in
 * the lock's queue. A tab that closes releases the lock at once (the browser does it), so the
 * next tab in the queue leads within milliseconds. A leader that stops answering (a frozen tab)
 * is found by the followers' pings and its lock is stolen after LEADER_TIMEOUT_MS; if it ever
 * runs again, it finds its lock gone and follows.
 *
 * The group: the lock's and the channel's name is a hash of the endpoint, the transports and
 * the credentials (`shareKey`, else a string `token`): tabs with other credentials never share.
 * A token *function* cannot be compared across tabs: with one, a tab shares only when the
 * application names its credentials with `shareKey`.
 *
 * Each tab keeps what it processed: the last position per topic (it drops PUBs it already has,
 * §7: nothing doubles when a new leader replays), its unanswered requests under refs of its own
 * (`<tab>.<n>`, sent again to a new leader, which retries them under the same refs with the
 * group's client key: applied once, §8) and the members of the topics it follows with presence.
 */

import { FRAME, codeError, normalizeData, validName, validTopic } from "./codec.js";
import { Emitter } from "./events.js";
import { randomKey } from "./negotiate.js";
import { resolveOptions } from "./options.js";
import { TopicPresence, toListing } from "./presence.js";
import { Leader } from "./share-leader.js";
import { newStats } from "./stats.js";

/** @typedef {import("./options.js").Options} Options */
/** @typedef {import("./subscriptions.js").Publication} Publication */
/** @typedef {import("./subscriptions.js").Position} Position */
/** @typedef {import("./presence.js").SubscribeOptions} SubscribeOptions */
/** @typedef {import("./client-core.js").State} State */

/** How often a follower checks that it still hears from its leader, ms. */
export const CHECK_MS = 250;
/** A follower that heard nothing from its leader for this long asks it (`ping`), ms. */
export const PING_AFTER_MS = 400;
/** A leader silent this long (pings unanswered) is taken over: its lock is stolen, ms. */
export const LEADER_TIMEOUT_MS = 1200;

/**
 * The browser APIs tab sharing needs, from the options (tests) or the page; null when any is
 * missing or the options turn it off.
 * @param {Options} options
 * @returns {{BroadcastChannel: any, locks: any, subtle: any} | null}
 */
export function shareSupport(options) {
  const g = /** @type {any} */ (globalThis);
  if (options.share === false) return null;
  if (typeof options.token === "function" && typeof options.shareKey !== "string") return null;
  const BC = options.BroadcastChannel || g.BroadcastChannel;
  const locks = options.locks || (g.navigator && g.navigator.locks);
  const subtle = g.crypto && g.crypto.subtle;
  if (typeof BC !== "function" || !locks || typeof locks.request !== "function" || !subtle) return null;
  return { BroadcastChannel: BC, locks, subtle };
}

/**
 * The group's name: the endpoint, the transports and the credentials, hashed (SHA-256) so that
 * no token shows in a lock or channel name.
 * @param {any} subtle @param {string} endpoint @param {readonly string[]} transports
 * @param {Options} options
 */
export async function groupName(subtle, endpoint, transports, options) {
  const credentials = typeof options.shareKey === "string" ? `key:${options.shareKey}`
    : typeof options.token === "string" ? `token:${options.token}` : "cookies";
  const text = JSON.stringify([endpoint, transports, credentials]);
  const digest = new Uint8Array(await subtle.digest("SHA-256", new TextEncoder().encode(text)));
  const hex = Array.from(digest.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
  return `transports:share:${hex}`;
}

/** An error as the leader sent it (share-leader.js `wireError`). @param {{code: string, message: string}} wire */
function fromWire(wire) {
  return Object.assign(new Error(wire.message), { code: wire.code });
}

/**
 * A tab's view of one topic.
 * @typedef {Object} TabTopic
 * @property {Set<(pub: Publication) => void>} handlers
 * @property {Position | null} position the last PUB processed (or where the subscription started)
 * @property {boolean} acked whether the leader said where the subscription starts
 * @property {Publication[]} early PUBs that came before that answer
 * @property {TopicPresence | null} presence its members, when followed
 * @property {Promise<any>} ready
 * @property {(value: any) => void} resolve
 * @property {(error: Error) => void} reject
 */

/**
 * The client of one tab in a share group: the API of {@link import("./client-core.js").Client},
 * over the leader's connection (this tab's own when it leads). Create it with `connect()`.
 */
export class SharedClient {
  /** @param {string} url @param {Options} options @param {NonNullable<ReturnType<typeof shareSupport>>} support */
  constructor(url, options, support) {
    const o = resolveOptions(options); // the same checks (and TypeErrors) as a Client's
    this.options = o;
    this._raw = options;
    this._url = url;
    this._support = support;
    const page = globalThis.location ? globalThis.location.href : undefined;
    const base = new URL(url.replace(/\/+$/, ""), page);
    this._endpoint = base.href.replace(/\/+$/, "");
    /** @type {State} */
    this.state = "connecting";
    /** @type {import("./transports.js").TransportName | null} */
    this.transport = null;
    /** @type {string | null} */
    this.id = null;
    /** @type {string | null} the last one the leader told */
    this._fallbackReason = null;
    /** @type {import("./stats.js").Stats} the last counters the leader told */
    this._stats = newStats();
    /** whether this tab holds the shared connection */
    this.leader = false;
    /** whether this client shares a connection with other tabs (false: its own, as a Client) */
    this.shared = true;
    this._events = new Emitter();
    this._tab = randomKey(o.random).slice(0, 12);
    this._n = 0;
    /** @type {Map<string, TabTopic>} */
    this._topics = new Map();
    /** @type {Map<string | number, {frame: any[], resolve: (data: any) => void, reject: (error: Error) => void}>} */
    this._pending = new Map();
    /** @type {string | null} the leader this tab follows */
    this._lid = null;
    /** @type {string | null} the group's client key */
    this._key = null;
    this._heard = 0;
    this._everOpen = false;
    /** @type {string | null} */
    this._lastTransport = null;
    /** @type {Leader | null} */
    this._leading = null;
    /** @type {any} */
    this._bus = null;
    /** @type {AbortController | null} the lock request waiting in the queue */
    this._queued = null;
    /** @type {any} */
    this._timer = null;
    /** @type {(() => void)[]} */
    this._unbind = [];
    this._start();
  }

  // --- public API (the same as Client's) ---------------------------------------------------

  /** @returns {string | null} why the shared connection is not on the first transport */
  get fallbackReason() {
    const hub = this._leading && this._leading.hub;
    return hub ? hub.fallbackReason : this._fallbackReason;
  }

  /** @returns {import("./stats.js").Stats} the shared connection's counters (live in the leader tab) */
  get stats() {
    const hub = this._leading && this._leading.hub;
    return hub ? hub.stats : this._stats;
  }

  /**
   * @param {string} topic @param {(pub: Publication) => void} handler @param {SubscribeOptions} [options]
   * @returns {(() => void) & {ready: Promise<{recovered: boolean, epoch: string, offset: number}>}}
   */
  subscribe(topic, handler, options = {}) {
    if (!validTopic(topic)) throw new TypeError(`invalid topic ${JSON.stringify(topic)}`);
    if (typeof handler !== "function") throw new TypeError("handler must be a function");
    if (!options || typeof options !== "object") throw new TypeError("options must be an object");
    if (this.state === "closed") throw codeError("closed", "client is closed");
    const presence = options.presence === true;
    let entry = this._topics.get(topic);
    if (!entry) {
      /** @type {any} */
      const settle = {};
      const ready = new Promise((resolve, reject) => Object.assign(settle, { resolve, reject }));
      ready.catch(() => {});
      entry = { handlers: new Set(), position: null, acked: false, early: [], presence: presence ? new TopicPresence() : null,
        ready, resolve: settle.resolve, reject: settle.reject };
      this._topics.set(topic, entry);
      this._toLeader({ k: "sub", topic, presence });
    } else if (presence && !entry.presence) {
      entry.presence = new TopicPresence();
      this._toLeader({ k: "sub", topic, presence });
    }
    const own = entry;
    const fn = (/** @type {Publication} */ pub) => handler(pub);
    own.handlers.add(fn);
    const off = () => {
      if (!own.handlers.delete(fn) || own.handlers.size || this._topics.get(topic) !== own) return;
      this._topics.delete(topic);
      this._toLeader({ k: "unsub", topic });
    };
    return Object.assign(off, { ready: own.ready });
  }

  /** @param {string} topic @returns {Promise<import("./presence.js").PresenceListing>} */
  presence(topic) {
    if (!validName(topic, 200)) return Promise.reject(codeError("bad_topic", `invalid topic ${JSON.stringify(topic)}`));
    return this._request((ref) => [FRAME.PRESENCE, ref, topic]).then(toListing);
  }

  /** @param {string} topic @returns {import("./presence.js").Member[]} */
  members(topic) {
    const entry = this._topics.get(topic);
    return entry && entry.presence ? entry.presence.list() : [];
  }

  /** @param {string} event @param {any} [data] @returns {Promise<any>} */
  send(event, data) {
    if (!validName(event, 100)) return Promise.reject(codeError("bad_event", `invalid event ${JSON.stringify(event)}`));
    return this._request((ref) => [FRAME.EVENT, ref, event, normalizeData(data)]);
  }

  /** @param {string} topic @param {string} event @param {any} [data] @returns {Promise<any>} */
  publish(topic, event, data) {
    if (!validName(topic, 200)) return Promise.reject(codeError("bad_topic", `invalid topic ${JSON.stringify(topic)}`));
    if (!validName(event, 100)) return Promise.reject(codeError("bad_event", `invalid event ${JSON.stringify(event)}`));
    return this._request((ref) => [FRAME.PUBLISH, ref, topic, event, normalizeData(data)]);
  }

  /** @param {import("./client-core.js").EventName} name @param {(...args: any[]) => void} fn @returns {() => void} */
  on(name, fn) {
    return this._events.on(name, fn);
  }

  /**
   * Close this tab's client for good. The shared connection goes on for the other tabs (a
   * leader hands it over); the last tab closes it and tells the server.
   */
  close() {
    if (this.state === "closed") return;
    this._toLeader({ k: "bye" });
    this._shutdown(codeError("closed", "connection closed (1000 client closed)"));
  }

  // --- election ------------------------------------------------------------------------------

  /** Find the group, join its channel, ask who leads and queue for the lock. */
  async _start() {
    const { BroadcastChannel: BC, subtle } = this._support;
    let name;
    try {
      name = await groupName(subtle, this._endpoint, this.options.transports, this._raw);
      if (this.state === "closed") return;
      this._name = name;
      this._bus = new BC(name);
      this._bus.onmessage = (/** @type {any} */ event) => this._receive(event.data);
    } catch (_) {
      return this._alone();
    }
    const win = this.options.window;
    if (win && typeof win.addEventListener === "function") {
      /** @param {any} event */
      const hide = (event) => {
        const leader = this._leading;
        if (!leader) this._toLeader({ k: "bye" }); // back with `join` on pageshow
        else if (!(event && event.persisted) && [...leader.tabs.keys()].every((tab) => tab === this._tab)) {
          if (leader.hub) leader.hub.close(); // the last tab leaves for good: a goodbye to the server
        }
      };
      /** @param {any} event */
      const show = (event) => { if (event && event.persisted) this._join(); };
      win.addEventListener("pagehide", hide);
      win.addEventListener("pageshow", show);
      this._unbind.push(() => { win.removeEventListener("pagehide", hide); win.removeEventListener("pageshow", show); });
    }
    this._post({ k: "who", from: this._tab });
    this._queue(false);
    this._check();
  }

  /**
   * Ask for the lock: in the queue, or (`steal`) at once, taking it from a leader that stopped
   * answering. Holding it, this tab leads until it closes, or until its lock is stolen.
   * @param {boolean} steal
   */
  _queue(steal) {
    if (this.state === "closed" || this._leading) return;
    const { locks } = this._support;
    if (this._queued) this._queued.abort();
    const controller = steal ? null : new AbortController();
    this._queued = controller;
    /** @type {{leader: Leader | null}} */
    const held = { leader: null };
    const options = controller ? { signal: controller.signal } : { steal: true };
    let granted;
    try {
      granted = locks.request(this._name, options, () => {
        if (this._queued === controller) this._queued = null;
        if (this.state === "closed") return undefined;
        return new Promise((release) => {
          held.leader = this._lead(() => release(undefined));
        });
      });
    } catch (_) {
      return this._alone();
    }
    Promise.resolve(granted).catch((/** @type {any} */ error) => {
      // Aborted in the queue (closed, or about to steal), or stolen from this leader.
      if (held.leader && held.leader === this._leading) this._stepDown(false);
      else if (!held.leader && error && error.name !== "AbortError" && !this._leading && this.state !== "closed") this._alone();
    });
  }

  /**
   * This tab leads now. @param {() => void} release ends the lock
   * @returns {Leader}
   */
  _lead(release) {
    const leader = new Leader(this, this._lid !== null);
    this._leading = leader;
    this._release = release;
    this._key = leader.key;
    this._setLeader(true);
    return leader;
  }

  /**
   * Stop leading: the lock was stolen (`handover` false: this tab follows the new leader), or
   * this tab closes. The connection is dropped quietly unless no other tab uses it.
   * @param {boolean} closing
   */
  _stepDown(closing) {
    const leader = this._leading;
    if (!leader) return;
    this._leading = null;
    leader.stop(closing && leader.others() === 0);
    if (this._release) this._release();
    this._release = null;
    this._setLeader(false);
    if (!closing) {
      if (this._lid === leader.lid) {
        this._lid = null;
        this._post({ k: "who", from: this._tab }); // the new leader says hello again
      }
      this._queue(false);
    }
  }

  /** The browser refused the lock or the channel: this tab runs its own connection. */
  _alone() {
    if (this.state === "closed" || this._leading) return;
    this.shared = false;
    if (this._bus) this._bus.close();
    this._bus = null;
    this._lead(() => {});
  }

  /** Followers: ping a leader gone quiet, take over from one that does not answer. */
  _check() {
    const clock = this.options.clock;
    this._timer = clock.setTimeout(() => {
      this._timer = null;
      if (this.state === "closed") return;
      const silent = clock.now() - this._heard;
      if (this._lid && !this._leading) {
        if (silent >= LEADER_TIMEOUT_MS) this._queue(true);
        else if (silent >= PING_AFTER_MS) this._toLeader({ k: "ping" });
      }
      this._check();
    }, CHECK_MS);
  }

  // --- messages ------------------------------------------------------------------------------

  /** Post to the group, this tab included (a BroadcastChannel does not echo). @param {Record<string, any>} msg */
  _post(msg) {
    if (this._bus) {
      try {
        this._bus.postMessage(msg);
      } catch (_) { /* closed, or data that cannot be cloned */ }
    }
    queueMicrotask(() => this._receive(msg));
  }

  /** A message for the leader this tab follows (none known yet: the `join` will carry it). @param {Record<string, any>} msg */
  _toLeader(msg) {
    if (this._lid) this._post({ ...msg, to: this._lid, from: this._tab });
  }

  /** Tell the leader everything this tab has: topics, positions, unanswered requests. */
  _join() {
    const topics = [...this._topics].map(([topic, entry]) => ({
      topic, presence: entry.presence !== null, position: entry.position, acked: entry.acked,
    }));
    const requests = [...this._pending].map(([ref, { frame }]) => ({ ref, frame }));
    this._toLeader({ k: "join", topics, requests });
  }

  /** @param {any} msg */
  _receive(msg) {
    if (!msg || typeof msg !== "object" || this.state === "closed") return;
    if (this._leading) this._leading.receive(msg);
    if (typeof msg.lid !== "string") return;
    if (msg.k === "hello") {
      if (msg.lid !== this._lid) this._follow(msg.lid, msg.key);
      return;
    }
    if (msg.lid !== this._lid) return; // an earlier leader's
    this._heard = this.options.clock.now();
    if (msg.to !== undefined && msg.to !== this._tab) return;
    if (msg.k === "status") this._status(msg);
    else if (msg.k === "pub") this._pub(msg.pub);
    else if (msg.k === "ack") this._ack(msg);
    else if (msg.k === "reply") this._reply(msg);
    else if (msg.k === "ev") this._event(msg.name, msg.payload, msg.topic);
  }

  /** A new leader: follow it and tell it what this tab has. @param {string} lid @param {string} key */
  _follow(lid, key) {
    const leaderHere = this._leading !== null && this._leading.lid === lid;
    if (this._leading && !leaderHere) {
      // Another tab leads (this one's lock was stolen): stop leading.
      this._stepDown(false);
    }
    this._lid = lid;
    this._key = key;
    this._heard = this.options.clock.now();
    if (this.state === "open") {
      this.transport = this.id = null;
      this._setState("reconnecting");
    }
    this._join();
  }

  /** @param {any} s a `status` message */
  _status(s) {
    this.transport = s.transport;
    this.id = s.id;
    this._fallbackReason = s.fallbackReason;
    this._stats = s.stats;
    if (s.state === "closed") return this._shutdown(codeError("closed", "connection closed"));
    if (s.state === "open") this._everOpen = true;
    this._setState(s.state === "open" ? "open" : this._everOpen ? "reconnecting" : "connecting");
    if (s.transport) this._event("transport", { transport: s.transport, reason: s.fallbackReason });
  }

  /** @param {Publication} pub */
  _pub(pub) {
    const entry = this._topics.get(pub.topic);
    if (!entry) return;
    if (!entry.acked) return void entry.early.push(pub);
    this._deliver(entry, pub);
  }

  /** @param {TabTopic} entry @param {Publication} pub */
  _deliver(entry, pub) {
    const pos = entry.position;
    if (pos && pos.epoch === pub.epoch && pub.offset <= pos.offset) return; // already processed (§7)
    entry.position = { epoch: pub.epoch, offset: pub.offset };
    for (const handler of [...entry.handlers]) this._events.call(handler, pub);
  }

  /** Where a subscription starts (or why it was refused). @param {any} msg */
  _ack(msg) {
    const entry = this._topics.get(msg.topic);
    if (!entry) return;
    if (!msg.ok) {
      this._topics.delete(msg.topic);
      const error = fromWire(msg.error);
      entry.reject(error);
      this._events.emit("error", { type: "subscribe", topic: msg.topic, code: msg.error.code, message: error.message });
      return;
    }
    if (entry.presence && msg.members && !entry.presence.synced) this._snapshot(msg.topic, entry.presence, msg.members);
    if (entry.acked) return;
    entry.acked = true;
    const start = msg.position;
    if (start && !entry.position) entry.position = { epoch: start.epoch, offset: start.offset };
    const early = entry.early;
    entry.early = [];
    entry.resolve({ recovered: msg.recovered, epoch: start && start.epoch, offset: start && start.offset });
    for (const pub of early) if (this._topics.get(msg.topic) === entry) this._deliver(entry, pub);
  }

  /** @param {string} topic @param {TopicPresence} state @param {any} sync */
  _snapshot(topic, state, sync) {
    for (const [event, member] of state.snapshot(sync)) this._events.emit(event, topic, member);
    this._events.emit("presence", state.sync(topic));
  }

  /** @param {any} msg */
  _reply(msg) {
    const pending = this._pending.get(msg.ref);
    if (!pending) return;
    this._pending.delete(msg.ref);
    if (msg.ok) pending.resolve(msg.data);
    else pending.reject(fromWire(msg.error));
  }

  /** An event of the shared connection. @param {string} name @param {any} payload @param {string} [topic] */
  _event(name, payload, topic) {
    const entry = topic === undefined ? null : this._topics.get(topic) || null;
    if (name === "transport") {
      if (payload.transport === this._lastTransport) return;
      const from = this._lastTransport;
      this._lastTransport = payload.transport;
      this._events.emit("transport", { transport: payload.transport, from, reason: payload.reason });
    } else if (name === "message") this._events.emit("message", payload);
    else if (name === "recovered") {
      if (entry && entry.acked) this._events.emit("recovered", payload);
    } else if (name === "presence") {
      if (entry && entry.acked && entry.presence) this._snapshot(/** @type {string} */ (topic), entry.presence, payload);
    } else if (name === "join" || name === "leave") {
      const member = entry && entry.acked && entry.presence && entry.presence.synced ? entry.presence.change(name, payload) : null;
      if (member) this._events.emit(name, topic, member);
    } else if (name === "error") {
      if (payload.type === "presence") {
        if (!entry || !entry.presence) return;
        entry.presence.reset();
      }
      this._events.emit("error", payload);
    }
  }

  // --- requests ------------------------------------------------------------------------------

  /** @param {(ref: string) => any[]} build @returns {Promise<any>} */
  _request(build) {
    if (this.state === "closed") return Promise.reject(codeError("closed", "client is closed"));
    if (!this._lid && this._pending.size >= this.options.maxQueue) {
      return Promise.reject(codeError("queue_full", `${this.options.maxQueue} sends already queued`));
    }
    const ref = `${this._tab}.${++this._n}`;
    const frame = build(ref);
    return new Promise((resolve, reject) => {
      this._pending.set(ref, { frame, resolve, reject });
      this._toLeader({ k: "req", ref, frame });
    });
  }

  // --- state ---------------------------------------------------------------------------------

  /** @param {State} state */
  _setState(state) {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    this._events.emit("state", { state, previous });
  }

  /** @param {boolean} leader */
  _setLeader(leader) {
    if (this.leader === leader) return;
    this.leader = leader;
    if (this.state !== "closed") this._events.emit("leader", { leader });
  }

  /** Close this tab's client: everything pending rejects. @param {Error} error */
  _shutdown(error) {
    if (this.state === "closed") return;
    this.transport = this.id = null;
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const { reject } of pending) reject(error);
    for (const entry of this._topics.values()) {
      entry.reject(error);
      if (entry.presence) entry.presence.reset();
    }
    if (this._timer !== null) this.options.clock.clearTimeout(this._timer);
    this._timer = null;
    if (this._queued) this._queued.abort();
    this._queued = null;
    for (const unbind of this._unbind) unbind();
    this._unbind = [];
    this._setState("closed");
    this._stepDown(true);
    const bus = this._bus;
    this._bus = null;
    if (bus) bus.close();
  }
}
