// @ts-check
/**
 * Presence (protocol §12): who is subscribed to a topic. A topic subscribed with
 * `{presence: true}` keeps a TopicPresence: the members of the SUB reply's snapshot, then the
 * joins and leaves the server publishes on `$presence:<topic>`, which subscriptions.js applies
 * once and in order with the same position check as any topic (§7). A later snapshot (after a
 * reconnect or a transport switch) reports only the differences from what was known.
 */

/** @typedef {import("./client-core.js").Client} Client */
/** @typedef {import("./subscriptions.js").Position} Position */

/**
 * A member of a topic: a client subscribed to it. `info` is what the application shows of it.
 * @typedef {{id: string, info: any}} Member
 */
/**
 * What {@link Client.presence} resolves with; `count` is exact, `members` may be fewer (`truncated`).
 * @typedef {{members: Member[], count: number, truncated: boolean}} PresenceListing
 */
/**
 * The third argument of {@link Client.subscribe}.
 * @typedef {{presence?: boolean}} SubscribeOptions
 */
/**
 * Payload of the "presence" event: a snapshot was applied (the first one, and after every
 * resubscribe); `events` false means the server sends no joins or leaves for this topic.
 * @typedef {{topic: string, members: Member[], count: number, truncated: boolean, events: boolean}} PresenceSync
 */

/** Where the server publishes a topic's joins and leaves: `$presence:<topic>` (reserved). */
export const PRESENCE_PREFIX = "$presence:";

/** The topic whose joins and leaves `topic` carries, or null for any other topic. @param {unknown} topic */
export const followedTopic = (topic) =>
  typeof topic === "string" && topic.startsWith(PRESENCE_PREFIX) ? topic.slice(PRESENCE_PREFIX.length) : null;

/** A member from the wire (`{id, info}`), or null when it has no string id. @param {any} value @returns {Member | null} */
function toMember(value) {
  if (!value || typeof value !== "object" || typeof value.id !== "string") return null;
  return Object.freeze({ id: value.id, info: value.info === undefined ? null : value.info });
}

/**
 * The listing in a PRESENCE reply or a snapshot: well-formed members only, an exact count never
 * below their number.
 * @param {any} data @returns {PresenceListing}
 */
export function toListing(data) {
  const members = [];
  for (const value of (data && Array.isArray(data.members) ? data.members : [])) {
    const member = toMember(value);
    if (member) members.push(member);
  }
  const count = data && Number.isInteger(data.count) ? Math.max(data.count, members.length) : members.length;
  return { members, count, truncated: Boolean(data && data.truncated) };
}

/** The members of one followed topic. */
export class TopicPresence {
  constructor() {
    /** @type {Map<string, Member>} by id */
    this.members = new Map();
    /** @type {Position | null} last applied position in `$presence:<topic>`; null: apply nothing */
    this.position = null;
    this.count = 0;
    this.truncated = false;
    this.events = false;
    /** whether a snapshot was applied since the last reset (the first one reports no changes) */
    this.synced = false;
  }

  /** @returns {Member[]} the members known now */
  list() {
    return [...this.members.values()];
  }

  /** Forget everything (a presence error, or the client closed); reports nothing. */
  reset() {
    this.members.clear();
    this.position = null;
    this.count = 0;
    this.truncated = this.events = this.synced = false;
  }

  /**
   * Take a snapshot (§12): its members replace the known ones and its position is where the
   * joins and leaves resume. Returns the changes to report: none for the first snapshot, else
   * a leave for each member gone and a join for each new one.
   * @param {any} snap `{members, count, truncated, events, epoch, offset}`
   * @returns {["join" | "leave", Member][]}
   */
  snapshot(snap) {
    const listing = toListing(snap);
    const next = new Map(listing.members.map((member) => [member.id, member]));
    /** @type {["join" | "leave", Member][]} */
    const changes = [];
    if (this.synced) {
      for (const [id, member] of this.members) if (!next.has(id)) changes.push(["leave", member]);
      for (const [id, member] of next) if (!this.members.has(id)) changes.push(["join", member]);
    }
    this.members = next;
    this.count = listing.count;
    this.truncated = listing.truncated;
    this.events = Boolean(snap.events);
    const positioned = typeof snap.epoch === "string" && Number.isInteger(snap.offset);
    this.position = this.events && positioned ? { epoch: snap.epoch, offset: snap.offset } : null;
    this.synced = true;
    return changes;
  }

  /**
   * Apply a join or a leave already found to be new (its offset is beyond the position).
   * Returns the member to report, or null when nothing changed: a join of a known member, a
   * leave of an unknown one (unless the listing was truncated: then it may be one left out).
   * @param {string} event "join" or "leave" @param {any} data `{id, info}`
   * @returns {Member | null}
   */
  change(event, data) {
    const member = toMember(data);
    if (!member) return null;
    const known = this.members.get(member.id);
    if (event === "join") {
      this.members.set(member.id, member); // a known member: its info as the server now has it
      if (known) return null;
      this.count = Math.max(this.count + 1, this.members.size);
      return member;
    }
    if (event !== "leave") return null;
    // A truncated listing leaves some members out: their leave still lowers the count.
    if (known || this.truncated) this.count = Math.max(this.count - 1, this.members.size - (known ? 1 : 0));
    // A member the truncated listing left out leaves: reported, the app may never have seen it.
    if (!known) return this.truncated ? member : null;
    this.members.delete(member.id);
    return known;
  }

  /** @param {string} topic @returns {PresenceSync} */
  sync(topic) {
    return { topic, members: this.list(), count: this.count, truncated: this.truncated, events: this.events };
  }
}

/**
 * Apply a SUB reply's `presence` field for `topic`: a snapshot (report its differences, then
 * "presence"), or an error (`{error, message}`, or no field at all from a server without
 * presence): the members are forgotten and an "error" event `{type: "presence"}` says why. The
 * subscription to the topic's messages stands either way.
 * @param {Client} client @param {string} topic @param {TopicPresence} state @param {any} snap
 */
export function applySnapshot(client, topic, state, snap) {
  const events = client._events;
  if (!snap || typeof snap !== "object" || typeof snap.error === "string" || !Array.isArray(snap.members)) {
    state.reset();
    const code = snap && typeof snap.error === "string" ? snap.error : "unsupported";
    const text = !snap ? "the server sent no presence snapshot (it does not support presence)"
      : typeof snap.message === "string" ? snap.message : "no presence for this topic";
    events.emit("error", { type: "presence", topic, code, message: `${code}: ${text}` });
    return;
  }
  for (const [event, member] of state.snapshot(snap)) events.emit(event, topic, member);
  events.emit("presence", state.sync(topic));
}

/**
 * Apply one join or leave PUB of `$presence:<topic>` (already found new) and report a real change.
 * @param {Client} client @param {string} topic @param {TopicPresence} state
 * @param {string} event @param {any} data
 */
export function applyChange(client, topic, state, event, data) {
  const member = state.change(event, data);
  if (member) client._events.emit(event, topic, member);
}
