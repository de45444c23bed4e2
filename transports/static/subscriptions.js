// @ts-check
/**
 * Topics (§7): the application's handlers per topic, the last position processed, SUB/UNSUB on
 * the current connection and the failback probe, and delivery of PUBs once, in order, across
 * reconnects and transport switches. A topic followed with presence (§12) also keeps its
 * members (presence.js); its `$presence:` PUBs go through the same position check, never to a
 * handler.
 */

import { FRAME, codeError } from "./codec.js";
import { TopicPresence, applyChange, applySnapshot, followedTopic } from "./presence.js";

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./conn.js").Conn} Conn */
/** @typedef {import("./client-core.js").Client} Client */

/** @typedef {{id: string, topic: string, event: string, data: any, offset: number, epoch: string}} Publication */
/** @typedef {{epoch: string, offset: number}} Position */
/**
 * @typedef {Object} TopicEntry
 * @property {Set<(pub: Publication) => void>} handlers
 * @property {Position | null} position last processed position (§7)
 * @property {TopicPresence | null} presence its members, when followed (§12)
 * @property {Promise<any>} ready
 * @property {(value: any) => void} resolve
 * @property {(error: Error) => void} reject
 * @property {number} [rewinding] SUBs in flight that moved the position back (tab sharing)
 */
/**
 * A SUB waiting for its REPLY. `presence`: it asked for the topic's presence; `quiet`: it only
 * adds presence to a subscription already made (no "recovered" event); `rewind`: it subscribes
 * again from an earlier position ({@link Subscriptions.rewind}).
 * @typedef {{topic: string, entry: TopicEntry, conn: Conn, since: any, presence: boolean, quiet: boolean,
 *   rewind?: boolean}} PendingSub
 */

/**
 * Move `holder`'s position to (epoch, offset), unless that PUB was already processed: its offset
 * is not beyond the position in the same epoch (§7). A new epoch starts over.
 * @param {{position: Position | null}} holder @param {string} epoch @param {number} offset
 * @returns {boolean} whether the PUB is new
 */
function advance(holder, epoch, offset) {
  const pos = holder.position;
  if (pos && pos.epoch === epoch && offset <= pos.offset) return false;
  holder.position = { epoch, offset };
  return true;
}

/** The client's topics and the SUBs in flight. */
export class Subscriptions {
  /** @param {Client} client */
  constructor(client) {
    this.client = client;
    /** @type {Map<string, TopicEntry>} */
    this.topics = new Map();
    /** @type {Map<number, PendingSub>} SUBs by ref */
    this.pending = new Map();
  }

  /**
   * Add a handler to a topic (already validated), subscribing on the first one. With
   * `presence`, the topic also follows its members from now on (a topic already subscribed
   * without is subscribed again, from its position, with presence).
   * @param {string} topic @param {(pub: Publication) => void} handler @param {boolean} presence
   * @returns {(() => void) & {ready: Promise<{recovered: boolean, epoch: string, offset: number}>}}
   */
  add(topic, handler, presence) {
    const client = this.client;
    let entry = this.topics.get(topic);
    if (!entry) {
      /** @type {any} */
      const settle = {};
      const ready = new Promise((resolve, reject) => Object.assign(settle, { resolve, reject }));
      ready.catch(() => {});
      entry = { handlers: new Set(), position: null, presence: presence ? new TopicPresence() : null,
        ready, resolve: settle.resolve, reject: settle.reject };
      this.topics.set(topic, entry);
      const conn = client._conn;
      if (conn && client.state === "open") this.sub(conn, topic);
      client._failback.maybeSwitch();
    } else if (presence && !entry.presence) {
      entry.presence = new TopicPresence();
      for (const conn of [client._conn, client._failback.probe]) {
        if (conn && conn.accepted && (conn.subscribed.has(topic) || conn.subscribing.has(topic))) this.sub(conn, topic, true);
      }
    }
    const own = entry;
    const fn = (/** @type {Publication} */ pub) => handler(pub);
    own.handlers.add(fn);
    const off = () => {
      if (!own.handlers.delete(fn) || own.handlers.size || this.topics.get(topic) !== own) return;
      this.topics.delete(topic);
      for (const conn of [client._conn, client._failback.probe]) {
        if (!conn || !conn.accepted) continue;
        conn.subscribed.delete(topic);
        conn.subscribing.delete(topic);
        conn.transport.send([FRAME.UNSUB, ++client._ref, topic]);
      }
    };
    return Object.assign(off, { ready: own.ready });
  }

  /**
   * Send SUB for `topic` on `conn`, from the last position processed, with the presence option
   * when the topic follows its members.
   * @param {Conn} conn @param {string} topic @param {boolean} [quiet] only to add presence
   * @param {boolean} [rewind] from a position moved back ({@link Subscriptions.rewind})
   */
  sub(conn, topic, quiet = false, rewind = false) {
    const entry = /** @type {TopicEntry} */ (this.topics.get(topic));
    const ref = ++this.client._ref;
    const since = entry.position ? [entry.position.epoch, entry.position.offset] : null;
    const presence = entry.presence !== null;
    conn.subscribing.add(topic);
    if (rewind) entry.rewinding = (entry.rewinding || 0) + 1;
    this.pending.set(ref, { topic, entry, conn, since, presence, quiet, rewind });
    conn.transport.send(presence ? [FRAME.SUB, ref, topic, since, { presence: true }] : [FRAME.SUB, ref, topic, since]);
  }

  /** @param {string} topic @returns {import("./presence.js").Member[]} its known members ([] when not followed) */
  members(topic) {
    const entry = this.topics.get(topic);
    return entry && entry.presence ? entry.presence.list() : [];
  }

  /**
   * SUB every topic that `conn` neither has nor is waiting for.
   * @param {Conn} conn @returns {boolean} whether some topic is not subscribed on it yet
   */
  resubscribe(conn) {
    let missing = false;
    for (const topic of this.topics.keys()) {
      if (conn.subscribed.has(topic)) continue;
      missing = true;
      if (!conn.subscribing.has(topic)) this.sub(conn, topic);
    }
    return missing;
  }

  /** Forget the SUBs in flight on a connection that is gone. @param {Conn} conn */
  forget(conn) {
    for (const [ref, sub] of this.pending) {
      if (sub.conn !== conn) continue;
      this.pending.delete(ref);
      if (sub.rewind) sub.entry.rewinding = (sub.entry.rewinding || 1) - 1;
    }
  }

  // --- tab sharing (share-leader.js) -------------------------------------------------------

  /**
   * Move a topic's position back to `position` and subscribe it again from there wherever it
   * is subscribed: on a shared connection (share-leader.js), a tab that processed less than the
   * connection did. Until the server answers that SUB the topic's PUBs are dropped: the replay
   * after its REPLY brings them again, in order (each tab drops what it already has). A position
   * of another epoch, or not behind the topic's, changes nothing.
   * @param {string} topic @param {Position} position
   */
  rewind(topic, position) {
    const entry = this.topics.get(topic);
    const pos = entry && entry.position;
    if (!entry || (pos && (pos.epoch !== position.epoch || pos.offset <= position.offset))) return;
    entry.position = { epoch: position.epoch, offset: position.offset };
    for (const conn of [this.client._conn, this.client._failback.probe]) {
      if (conn && conn.accepted && (conn.subscribed.has(topic) || conn.subscribing.has(topic))) this.sub(conn, topic, false, true);
    }
  }

  /** @param {Frame} frame `[1, topic, event, data, offset, epoch]` */
  onPub(frame) {
    const [, topic, event, data, offset, epoch] = frame;
    const followed = followedTopic(topic);
    const entry = this.topics.get(followed === null ? topic : followed);
    if (!entry || typeof offset !== "number") return;
    if (followed !== null) {
      // A join or leave (§12): applied after the snapshot's position, never given to a handler.
      const state = entry.presence;
      if (state && state.position && advance(state, epoch, offset)) applyChange(this.client, followed, state, event, data);
      return;
    }
    if (entry.rewinding) return; // replayed after the rewinding SUB's REPLY
    if (!advance(entry, epoch, offset)) return; // already processed (§7)
    // The message id the server gave this publication (protocol §7): "epoch:topic:offset".
    const pub = { id: `${epoch}:${topic}:${offset}`, topic, event, data, offset, epoch };
    for (const handler of [...entry.handlers]) this.client._events.call(handler, pub);
  }

  /** @param {Frame} frame `[4, ref, status, data]` @returns {boolean} whether it answered a SUB */
  onReply(frame) {
    const [, ref, status, data] = frame;
    const sub = this.pending.get(ref);
    if (!sub || !this.pending.delete(ref)) return false;
    this.settled(sub, status, data);
    return true;
  }

  /**
   * @param {PendingSub} sub
   * @param {string} status
   * @param {any} data `{recovered, epoch, offset}`
   */
  settled(sub, status, data) {
    const client = this.client;
    const { topic, entry, conn } = sub;
    conn.subscribing.delete(topic);
    if (sub.rewind) entry.rewinding = (entry.rewinding || 1) - 1;
    if (this.topics.get(topic) !== entry) return; // unsubscribed meanwhile
    // An earlier SUB answered while a rewind waits: the rewinding SUB's REPLY sets the position.
    const moves = !entry.rewinding || sub.rewind === true;
    if (status !== "ok") {
      if (sub.quiet) {
        // Only adding presence failed: the subscription made before stands.
        const presence = entry.presence;
        if (presence) applySnapshot(client, topic, presence, { error: String(status), message: data && data.message });
        return;
      }
      this.topics.delete(topic);
      const error = codeError(String(status), data && data.message);
      entry.reject(error);
      client._events.emit("error", { type: "subscribe", topic, code: status, message: error.message });
      return client._failback.maybeSwitch();
    }
    conn.subscribed.add(topic);
    const pos = data && typeof data.epoch === "string" && typeof data.offset === "number"
      ? { epoch: data.epoch, offset: data.offset } : null;
    const recovered = Boolean(data && data.recovered);
    if (sub.since) {
      // recovered: the missed PUBs follow. Not recovered: there is a gap; start from the
      // server's position and tell the application so that it reloads its state (§7).
      if (!recovered && pos && moves) entry.position = pos;
      if (!sub.quiet) client._events.emit("recovered", { topic, recovered });
    } else if (moves && pos && !(entry.position && entry.position.epoch === pos.epoch && entry.position.offset >= pos.offset)) {
      entry.position = pos;
    }
    // The members are known before `ready` resolves.
    if (sub.presence && entry.presence) applySnapshot(client, topic, entry.presence, data && data.presence);
    entry.resolve({ recovered, epoch: pos && pos.epoch, offset: pos && pos.offset });
    if (conn === client._failback.probe) client._failback.maybeSwitch();
  }

  /** The client closed: every topic's `ready` rejects, no members are known. @param {Error} error */
  rejectAll(error) {
    for (const entry of this.topics.values()) {
      entry.reject(error);
      if (entry.presence) entry.presence.reset();
    }
  }
}
