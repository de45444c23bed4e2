// @ts-check
/**
 * Tab sharing, the leader's side: the tab holding the share lock (share.js) runs the one real
 * connection (a plain Client, "the hub") for every tab of the group, and serves them over the
 * group's BroadcastChannel:
 *
 * - topics are reference-counted: a topic is subscribed on the hub with the first tab that wants
 *   it and unsubscribed when the last one leaves; its PUBs go to every tab, which drops what it
 *   already processed (its own position, §7);
 * - each tab's send()/publish()/presence() goes out under the tab's own ref (a string unique to
 *   the tab) and its REPLY goes back to that tab alone. The hub negotiates with the group's
 *   client key, the same for every leader, so that a new leader's retry of a ref the old one
 *   sent is answered from the server's memory, not applied twice (§8);
 * - the hub's state, transport, errors, direct messages and presence are relayed to every tab.
 *
 * A new leader first asks every tab for what it has (`hello`; each answers `join` with its
 * topics, the last position it processed on each and its unanswered requests), subscribes each
 * topic from the earliest of those positions and sends the requests again under their refs.
 * A tab that answers late, behind the hub on a topic, makes the hub subscribe that topic again
 * from its position (Subscriptions.rewind).
 *
 * Messages, all `{k, ...}` plain objects (structured clone): tab -> leader `join`, `sub`,
 * `unsub`, `req`, `ping`, `bye`, `who` (with `from`, the tab, and `to`, the leader's id);
 * leader -> tabs `hello`, `status`, `pub`, `ev`, `pong`, and `ack`, `reply` (with `to`, one tab).
 */

import { Client } from "./client-core.js";
import { randomKey } from "./negotiate.js";
import { TopicPresence } from "./presence.js";

/** @typedef {import("./subscriptions.js").Position} Position */
/** @typedef {import("./subscriptions.js").Publication} Publication */
/** @typedef {import("./codec.js").Frame} Frame */

/**
 * ms a new leader that took over from another waits for the tabs' `join` answers before it
 * connects (they come within a few ms; a later one costs a rewind, not a loss).
 */
export const JOIN_WINDOW_MS = 50;

/** How often the leader looks for changes in its connection's stats to tell the tabs, ms. */
export const STATUS_MS = 250;

/**
 * The hub's view of one topic.
 * @typedef {Object} LeaderTopic
 * @property {Map<string, boolean>} tabs tab -> whether it follows presence
 * @property {(() => void)[]} offs the hub subscriptions to undo when the last tab leaves
 * @property {boolean} presence whether the hub follows presence on it
 * @property {boolean} ready whether the hub's first SUB was answered
 * @property {Position | null} last the position of the last PUB relayed (or the SUB reply's)
 * @property {Position | null} seed the earliest position tabs reported, before the hub subscribed
 * @property {Set<string>} waiting tabs to answer (`ack`) once the hub's SUB is answered
 * @property {TopicPresence | null} members the hub's members, for a tab that comes later
 */

/**
 * The earlier of two positions of one epoch; across epochs the first one stays.
 * @param {Position | null} a @param {Position | null | undefined} b @returns {Position | null}
 */
function earlier(a, b) {
  if (!b) return a;
  if (!a) return { epoch: b.epoch, offset: b.offset };
  return a.epoch === b.epoch && b.offset < a.offset ? { epoch: b.epoch, offset: b.offset } : a;
}

/** An error as a message can carry it. @param {any} error */
const wireError = (error) => ({ code: String((error && error.code) || "internal_error"), message: String((error && error.message) || error) });

/** The leader of a share group: the hub connection and the tabs it serves. */
export class Leader {
  /**
   * @param {import("./share.js").SharedClient} share this tab's client
   * @param {boolean} takeover whether another leader served the group before (wait for joins)
   */
  constructor(share, takeover) {
    this.share = share;
    this.lid = randomKey(share.options.random).slice(0, 12);
    /** the group's client key (§3), kept from leader to leader */
    this.key = share._key || randomKey(share.options.random);
    /** @type {Map<string, Set<string>>} tab -> its topics */
    this.tabs = new Map();
    /** @type {Map<string, LeaderTopic>} */
    this.topics = new Map();
    /** @type {Map<string | number, string>} ref -> the tab that sent it, while unanswered */
    this.routes = new Map();
    /** @type {[string | number, Frame][]} requests that came before the hub */
    this.early = [];
    /** @type {Client | null} */
    this.hub = null;
    /** @type {((again?: boolean) => void) | null} */
    this.status = null;
    /** @type {any} */
    this.watchTimer = null;
    this.stopped = false;
    this.post({ k: "hello", key: this.key });
    this.startTimer = takeover ? share.options.clock.setTimeout(() => this.start(), JOIN_WINDOW_MS) : null;
    if (!takeover) queueMicrotask(() => this.start());
  }

  /** Send a message to the tabs (this one included). @param {Record<string, any>} msg */
  post(msg) {
    if (!this.stopped) this.share._post({ ...msg, lid: this.lid });
  }

  /** Create the hub with every topic and request known so far. */
  start() {
    if (this.stopped || this.hub) return;
    const share = this.share;
    // The tab-sharing layer decides what a leaving page does (it hands the connection over).
    const hub = new Client(share._url, { ...share._raw, share: false, closeOnPageHide: false });
    hub.clientKey = this.key; // before its first negotiate (a microtask away)
    this.hub = hub;
    let last = "";
    /** Tell the tabs the hub's state; unless `again`, only when something changed. @param {boolean} [again] */
    const status = (again = true) => {
      const now = { state: hub.state, transport: hub.transport, id: hub.id, fallbackReason: hub.fallbackReason, stats: hub.stats };
      const text = JSON.stringify(now);
      if (!again && text === last) return;
      last = text;
      this.post({ k: "status", ...JSON.parse(text) });
    };
    this.status = status;
    // Fallbacks, probes and switches change the stats without an event: look every STATUS_MS.
    const clock = share.options.clock;
    const watch = () => {
      this.watchTimer = clock.setTimeout(() => {
        if (this.stopped || hub.state === "closed") return;
        status(false);
        watch();
      }, STATUS_MS);
    };
    watch();
    hub.on("state", () => status());
    hub.on("transport", (payload) => {
      this.post({ k: "ev", name: "transport", payload });
      status();
    });
    hub.on("message", (payload) => this.post({ k: "ev", name: "message", payload }));
    hub.on("recovered", (payload) => this.post({ k: "ev", name: "recovered", payload, topic: payload.topic }));
    hub.on("presence", (sync) => {
      const t = this.topics.get(sync.topic);
      if (t) {
        t.members = t.members || new TopicPresence();
        t.members.snapshot(sync);
      }
      this.post({ k: "ev", name: "presence", payload: sync, topic: sync.topic });
    });
    for (const name of /** @type {const} */ (["join", "leave"])) {
      hub.on(name, (topic, member) => {
        const t = this.topics.get(topic);
        if (t && t.members) t.members.change(name, member);
        this.post({ k: "ev", name, payload: member, topic });
      });
    }
    hub.on("error", (error) => {
      if (error.type === "subscribe") return this.refused(error.topic, error);
      if (error.type === "presence") {
        const t = this.topics.get(error.topic);
        if (t && t.members) t.members.reset();
      }
      const payload = { ...error, error: error.error === undefined ? undefined : String(error.error) };
      this.post({ k: "ev", name: "error", payload, topic: error.topic });
    });
    for (const [topic, t] of this.topics) this.subscribe(topic, t);
    const early = this.early;
    this.early = [];
    for (const [ref, frame] of early) this.transmit(ref, frame);
    status();
  }

  /** @param {Record<string, any>} msg a message from a tab (or any, when addressed to no one) */
  receive(msg) {
    if (this.stopped) return;
    if (msg.k === "who") {
      this.post({ k: "hello", key: this.key });
      if (this.status) this.status();
      return;
    }
    if (msg.to !== this.lid) return;
    const tab = String(msg.from);
    if (msg.k === "ping") this.post({ k: "pong" });
    else if (msg.k === "join") {
      this.tabs.set(tab, this.tabs.get(tab) || new Set());
      for (const { topic, presence, position, acked } of msg.topics || []) this.add(tab, topic, presence, position, acked);
      for (const { ref, frame } of msg.requests || []) this.request(tab, ref, frame);
      if (this.status) this.status();
    } else if (msg.k === "sub") this.add(tab, msg.topic, msg.presence, null, false);
    else if (msg.k === "unsub") this.remove(tab, msg.topic);
    else if (msg.k === "req") this.request(tab, msg.ref, msg.frame);
    else if (msg.k === "bye") {
      for (const topic of this.tabs.get(tab) || []) this.remove(tab, topic);
      this.tabs.delete(tab);
      for (const [ref, owner] of this.routes) if (owner === tab) this.routes.delete(ref);
    }
  }

  /**
   * A tab wants a topic. `position`: the last it processed (a join); `acked`: it was already
   * subscribed through an earlier leader, so it needs no `ack`.
   * @param {string} tab @param {string} topic @param {boolean} presence
   * @param {Position | null} position @param {boolean} acked
   */
  add(tab, topic, presence, position, acked) {
    const topics = this.tabs.get(tab) || new Set();
    this.tabs.set(tab, topics.add(topic));
    let t = this.topics.get(topic);
    const fresh = !t;
    if (!t) {
      t = { tabs: new Map(), offs: [], presence: false, ready: false, last: null, seed: null, waiting: new Set(), members: null };
      this.topics.set(topic, t);
    }
    t.tabs.set(tab, Boolean(presence) || t.tabs.get(tab) === true);
    if (!acked) t.waiting.add(tab);
    if (!this.hub) {
      t.seed = earlier(t.seed, position);
      return;
    }
    if (fresh) t.seed = earlier(null, position);
    this.subscribe(topic, t);
    // A tab behind what the hub relayed: subscribe again from its position (share-leader docs).
    if (!fresh && position) this.hub._subscriptions.rewind(topic, position);
    if (t.ready) this.answer(topic, t);
  }

  /** Subscribe `topic` on the hub as its tabs need it (once; presence added when wanted). @param {string} topic @param {LeaderTopic} t */
  subscribe(topic, t) {
    const hub = /** @type {Client} */ (this.hub);
    const presence = [...t.tabs.values()].some(Boolean);
    if (t.offs.length && (t.presence || !presence)) return;
    /** @param {Publication} pub */
    const relay = (pub) => {
      t.last = { epoch: pub.epoch, offset: pub.offset };
      this.post({ k: "pub", pub });
    };
    const first = !t.offs.length;
    t.presence = t.presence || presence;
    const off = hub._subscriptions.add(topic, first ? relay : () => {}, presence);
    t.offs.push(off);
    if (!first) return;
    if (t.seed) hub._subscriptions.rewind(topic, t.seed);
    off.ready.then((result) => {
      if (this.topics.get(topic) !== t) return;
      t.ready = true;
      if (!t.last) t.last = { epoch: result.epoch, offset: result.offset };
      this.answer(topic, t, result);
    }, (error) => this.refused(topic, error));
  }

  /**
   * Tell the tabs waiting on a topic where their subscription starts: the SUB reply's position
   * for those that came before it, the last PUB relayed for those after.
   * @param {string} topic @param {LeaderTopic} t @param {any} [result] the hub's SUB reply
   */
  answer(topic, t, result) {
    const position = result ? { epoch: result.epoch, offset: result.offset } : t.last;
    const recovered = result ? Boolean(result.recovered) : true;
    const members = t.members && t.members.synced ? t.members.sync(topic) : null;
    for (const tab of t.waiting) this.post({ k: "ack", to: tab, topic, ok: true, recovered, position, members });
    t.waiting.clear();
  }

  /** The server refused a topic (its first SUB or a later one): every tab of it is told. @param {string} topic @param {any} error */
  refused(topic, error) {
    const t = this.topics.get(topic);
    if (!t) return;
    this.topics.delete(topic);
    for (const off of t.offs) off();
    for (const tab of t.tabs.keys()) {
      const topics = this.tabs.get(tab);
      if (topics) topics.delete(topic);
      this.post({ k: "ack", to: tab, topic, ok: false, error: wireError(error) });
    }
  }

  /** A tab no longer wants a topic: the last one out unsubscribes it. @param {string} tab @param {string} topic */
  remove(tab, topic) {
    const topics = this.tabs.get(tab);
    if (topics) topics.delete(topic);
    const t = this.topics.get(topic);
    if (!t || !t.tabs.delete(tab)) return;
    t.waiting.delete(tab);
    if (t.tabs.size) return;
    this.topics.delete(topic);
    for (const off of t.offs) off();
  }

  /**
   * Send a tab's EVENT/PUBLISH/PRESENCE frame under the tab's ref; its REPLY goes to that tab.
   * @param {string} tab @param {string | number} ref @param {Frame} frame
   */
  request(tab, ref, frame) {
    if (this.routes.has(ref)) return; // already on its way (or waiting for the hub)
    this.routes.set(ref, tab);
    if (this.hub) this.transmit(ref, frame);
    else this.early.push([ref, frame]);
  }

  /** @param {string | number} ref @param {Frame} frame */
  transmit(ref, frame) {
    /** @type {Client} */ (this.hub)._requests.request(() => frame, ref).then(
      (data) => this.reply(ref, { ok: true, data }),
      (error) => this.reply(ref, { ok: false, error: wireError(error) }));
  }

  /** @param {string | number} ref @param {Record<string, any>} answer */
  reply(ref, answer) {
    const tab = this.routes.get(ref);
    if (tab === undefined || this.stopped) return;
    this.routes.delete(ref);
    this.post({ k: "reply", to: tab, ref, ...answer });
  }

  /** Tabs other than this one that the leader serves. */
  others() {
    return [...this.tabs.keys()].filter((tab) => tab !== this.share._tab).length;
  }

  /**
   * Stop leading. `leave`: the group ends (no other tab): close the connection for good,
   * telling the server; otherwise drop it quietly for the next leader to resume.
   * @param {boolean} leave
   */
  stop(leave) {
    if (this.stopped) return;
    this.stopped = true;
    this.share.options.clock.clearTimeout(this.startTimer);
    this.share.options.clock.clearTimeout(this.watchTimer);
    const hub = this.hub;
    if (!hub) return;
    if (leave) hub.close();
    else hub._shutdown(1000, "the leader tab handed over", false);
  }
}
