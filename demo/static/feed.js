// @ts-check
/**
 * The feed on screen: notifications newest first, optimistic posts, unread state, and a bound.
 *
 * Every notification has the server's id: the library's publication id, `epoch:topic:offset`
 * (what `POST /api/notify` returns and `GET /api/feed` lists). A post from this page is shown at
 * once as "sending" with no id yet; the server's ack (or the publication itself, whichever comes
 * first: they carry the same `nonce`) gives it its id and turns it "sent", so it is never shown
 * twice. User text only ever goes through textContent.
 */

/** The page keeps this many notifications (pending posts not counted); older ones drop off. */
export const MAX_ITEMS = 500;

/** @typedef {{title: string, body?: string, kind?: string, author?: string, ts: number,
 *   nonce?: string, seed?: string}} NoteData */
/** @typedef {{id: string, topic: string, offset?: number, epoch?: string, data: NoteData}} Note */
/**
 * @typedef {Object} Item
 * @property {string | null} id the server's id, null while a post is pending
 * @property {string} topic
 * @property {NoteData} data
 * @property {"received" | "sending" | "sent" | "failed"} status
 * @property {boolean} mine posted from this page
 * @property {boolean} unread
 * @property {number} seq arrival order, breaks ties between equal timestamps
 * @property {string | null} nonce
 * @property {HTMLLIElement} el
 */

/** The id of a publication as the page receives it: the same string as the server's. */
export function notificationId(/** @type {{epoch: string, topic: string, offset: number}} */ pub) {
  return `${pub.epoch}:${pub.topic}:${pub.offset}`;
}

const ICONS = {
  // 24x24 paths, drawn with currentColor
  check: "M9.5 16.2 5.3 12l-1.4 1.4 5.6 5.6L20.1 8.4 18.7 7z",
  cross: "M18.3 5.7 12 12l6.3 6.3-1.4 1.4L10.6 13.4 4.3 19.7l-1.4-1.4L9.2 12 2.9 5.7l1.4-1.4 6.3 6.3 6.3-6.3z",
  rocket: "M12 2c3 2 5 5.5 5 9.5V15l2 3h-4l-1 2h-4l-1-2H5l2-3v-3.5C7 7.5 9 4 12 2Zm0 6.5a2 2 0 1 0 0 4 2 2 0 0 0 0-4Z",
  chat: "M4 4h16a1 1 0 0 1 1 1v11a1 1 0 0 1-1 1H9l-5 4v-4H4a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1Zm3 5v2h10V9Zm0 4v2h7v-2Z",
  eye: "M12 5c5 0 9 4.5 10 7-1 2.5-5 7-10 7S3 14.5 2 12c1-2.5 5-7 10-7Zm0 3.5a3.5 3.5 0 1 0 0 7 3.5 3.5 0 0 0 0-7Z",
  alert: "M12 2 1 21h22Zm-1 7h2v6h-2Zm0 8h2v2h-2Z",
  tag: "M3 3h8l10 10-8 8L3 11Zm4.5 2.5a2 2 0 1 0 0 4 2 2 0 0 0 0-4Z",
  info: "M12 2a10 10 0 1 1 0 20 10 10 0 0 1 0-20Zm-1 8v7h2v-7Zm0-4v2h2V6Z",
};
/** @type {Record<string, keyof typeof ICONS>} */
const KIND_ICON = {
  build: "check", build_failed: "cross", deploy: "rocket", comment: "chat", review: "eye",
  alert: "alert", release: "tag", info: "info",
};

/** "just now", "42 s ago", "5 min ago", "3 h ago", or a date. @param {number} ms @param {number} now */
export function relativeTime(ms, now) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 10) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

export class Feed {
  /**
   * @param {HTMLOListElement} list where items go
   * @param {HTMLTemplateElement} template one item's markup
   * @param {{onChange?: () => void, onRetry?: (item: Item) => void, max?: number}} [options]
   */
  constructor(list, template, options = {}) {
    this.list = list;
    this.template = template;
    this.onChange = options.onChange || (() => {});
    this.onRetry = options.onRetry || (() => {});
    this.max = options.max || MAX_ITEMS;
    /** @type {Map<string, Item>} by server id */
    this.byId = new Map();
    /** @type {Map<string, Item>} posts from this page, by nonce */
    this.byNonce = new Map();
    /** @type {Item[]} newest first, the order on screen */
    this.items = [];
    /** @type {Set<string>} seed keys shown ("earlier" notifications a restarted server repeats) */
    this.seeds = new Set();
    this.seq = 0;
    /** server clock minus this page's clock (ms), learnt from live notifications */
    this.skew = 0;
  }

  /** The server's "now" as well as this page can tell. */
  now() { return Date.now() + this.skew; }

  /** How many notifications are unread. */
  get unread() { return this.items.reduce((n, item) => n + (item.unread ? 1 : 0), 0); }

  /**
   * Show a notification from the server (live, from history, or replayed after a reconnect).
   * @param {Note} note
   * @param {{live?: boolean}} [how] live: it just happened (counts as unread, teaches the clock)
   * @returns {Item | null} the item, or null when it was already there
   */
  add(note, how = {}) {
    const data = note.data && typeof note.data === "object" ? note.data : /** @type {NoteData} */ ({ title: "", ts: 0 });
    if (typeof data.ts !== "number") data.ts = this.now();
    if (how.live) this.skew = data.ts - Date.now();
    if (this.byId.has(note.id)) return null;
    if (data.seed && this.seeds.has(data.seed)) return null;
    const mine = data.nonce ? this.byNonce.get(data.nonce) : undefined;
    if (mine && !mine.id) {
      // Our own post came back before its ack: this is its id.
      this._identify(mine, note.id, note.topic, data);
      if (mine.status !== "failed") this._setStatus(mine, "sent");
      this.onChange();
      return mine;
    }
    if (data.seed) this.seeds.add(data.seed);
    const item = this._create({ id: note.id, topic: note.topic, data, status: "received", mine: false,
      unread: Boolean(how.live), nonce: null });
    this.byId.set(note.id, item);
    this._insert(item);
    this._trim();
    this.onChange();
    return item;
  }

  /**
   * Show a post from this page at once, as "sending".
   * @param {{nonce: string, topic: string, data: NoteData}} post
   */
  addPending(post) {
    const item = this._create({ id: null, topic: post.topic, data: { ...post.data, ts: this.now() },
      status: "sending", mine: true, unread: false, nonce: post.nonce });
    this.byNonce.set(post.nonce, item);
    this._insert(item);
    this.onChange();
    return item;
  }

  /**
   * The server acknowledged a post: it is published, with this id.
   * @param {string} nonce @param {{id: string, topic: string, ts?: number}} ack
   */
  confirm(nonce, ack) {
    const item = this.byNonce.get(nonce);
    if (!item) return;
    if (!item.id) {
      const other = this.byId.get(ack.id);
      if (other && other !== item) this._remove(other); // cannot happen, but never show it twice
      this._identify(item, ack.id, ack.topic, { ...item.data, ts: ack.ts ?? item.data.ts });
    }
    this._setStatus(item, "sent");
    this.onChange();
  }

  /**
   * A post was refused or timed out.
   * @param {string} nonce @param {string} reason
   */
  fail(nonce, reason) {
    const item = this.byNonce.get(nonce);
    if (!item || item.id) return;
    this._setStatus(item, "failed", reason);
    this.onChange();
  }

  /** A failed post is sent again: back to "sending". @param {Item} item */
  resending(item) {
    this._setStatus(item, "sending");
    this.onChange();
  }

  /** Waiting for the connection: say so on every post still sending. @param {boolean} waiting */
  setWaiting(waiting) {
    for (const item of this.byNonce.values()) {
      if (item.status === "sending") this._setStatus(item, "sending", waiting ? "waiting for the connection" : "");
    }
  }

  /** Remove every notification of a topic (the page left it); posts still sending stay. @param {string} topic */
  removeTopic(topic) {
    for (const item of [...this.items]) {
      if (item.topic === topic && item.id) this._remove(item);
    }
    this.onChange();
  }

  /** Remove one item (a dismissed failed post). @param {Item} item */
  dismiss(item) {
    this._remove(item);
    this.onChange();
  }

  markAllRead() {
    for (const item of this.items) if (item.unread) this._setUnread(item, false);
    this.onChange();
  }

  /** @param {Item} item */
  markRead(item) {
    if (!item.unread) return;
    this._setUnread(item, false);
    this.onChange();
  }

  /** Re-render the relative times. */
  refreshTimes() {
    const now = this.now();
    for (const item of this.items) {
      const time = /** @type {HTMLTimeElement} */ (item.el.querySelector(".note-time"));
      time.textContent = relativeTime(item.data.ts, now);
    }
  }

  // --- internals ---------------------------------------------------------------------------------

  /**
   * @param {Omit<Item, "el" | "seq">} fields
   * @returns {Item}
   */
  _create(fields) {
    const fragment = /** @type {DocumentFragment} */ (this.template.content.cloneNode(true));
    const el = /** @type {HTMLLIElement} */ (fragment.firstElementChild);
    /** @type {Item} */
    const item = { ...fields, el, seq: ++this.seq };
    el.addEventListener("click", (event) => {
      if (/** @type {HTMLElement} */ (event.target).closest("button")) return;
      this.markRead(item);
    });
    this._render(item);
    this._setStatus(item, item.status);
    this._setUnread(item, item.unread);
    return item;
  }

  /** @param {Item} item */
  _render(item) {
    const { el, data } = item;
    const q = (/** @type {string} */ sel) => /** @type {HTMLElement} */ (el.querySelector(sel));
    if (item.id) el.dataset.id = item.id;
    else delete el.dataset.id;
    if (item.nonce) el.dataset.nonce = item.nonce;
    el.dataset.topic = item.topic;
    const kind = data.kind && KIND_ICON[data.kind] ? data.kind : "info";
    el.dataset.kind = kind;
    if (item.mine) el.dataset.mine = "true";
    const icon = q(".icon");
    icon.replaceChildren(svgIcon(ICONS[KIND_ICON[kind]]));
    const title = q(".note-title");
    title.textContent = data.title || "(empty title)";
    title.classList.toggle("placeholder", !data.title);
    const body = q(".note-body");
    body.textContent = data.body || "";
    body.hidden = !data.body;
    q(".note-author").textContent = item.mine ? `You · ${data.author || "guest"}` : data.author || "someone";
    q(".note-topic").textContent = `#${item.topic}`;
    const time = /** @type {HTMLTimeElement} */ (q(".note-time"));
    time.dateTime = new Date(data.ts).toISOString();
    time.title = new Date(data.ts).toLocaleString();
    time.textContent = relativeTime(data.ts, this.now());
  }

  /** @param {Item} item @param {string} id @param {string} topic @param {NoteData} data */
  _identify(item, id, topic, data) {
    item.id = id;
    item.topic = topic;
    item.data = data;
    this.byId.set(id, item);
    this._render(item);
  }

  /**
   * @param {Item} item
   * @param {Item["status"]} status
   * @param {string} [detail] why it failed, or what it waits for
   */
  _setStatus(item, status, detail = "") {
    item.status = status;
    item.el.dataset.status = status;
    const label = /** @type {HTMLElement} */ (item.el.querySelector(".note-status"));
    const actions = /** @type {HTMLElement} */ (item.el.querySelector(".note-actions"));
    actions.replaceChildren();
    if (status === "received") {
      label.textContent = "";
      label.hidden = true;
      return;
    }
    label.hidden = false;
    if (status === "sending") label.textContent = detail ? `Sending… (${detail})` : "Sending…";
    else if (status === "sent") label.textContent = "✓ Sent";
    else {
      label.textContent = `Failed: ${detail}`;
      label.title = detail;
      actions.append(
        button("Retry", () => this.onRetry(item)),
        button("Dismiss", () => this.dismiss(item)),
      );
    }
  }

  /** @param {Item} item @param {boolean} unread */
  _setUnread(item, unread) {
    item.unread = unread;
    item.el.classList.toggle("unread", unread);
  }

  /** Insert newest first by server time, so history and live notifications interleave. @param {Item} item */
  _insert(item) {
    let index = this.items.findIndex((other) => other.data.ts < item.data.ts
      || (other.data.ts === item.data.ts && other.seq < item.seq));
    if (index < 0) index = this.items.length;
    const before = this.items[index];
    this.items.splice(index, 0, item);
    this.list.insertBefore(item.el, before ? before.el : null);
  }

  /** Keep the newest `max` notifications (pending and failed posts are not counted). */
  _trim() {
    let count = 0;
    for (const item of this.items) if (item.id) count++;
    for (let i = this.items.length - 1; i >= 0 && count > this.max; i--) {
      const item = this.items[i];
      if (!item.id) continue;
      this._remove(item);
      count--;
    }
  }

  /** @param {Item} item */
  _remove(item) {
    const index = this.items.indexOf(item);
    if (index >= 0) this.items.splice(index, 1);
    if (item.id && this.byId.get(item.id) === item) this.byId.delete(item.id);
    if (item.nonce && this.byNonce.get(item.nonce) === item) this.byNonce.delete(item.nonce);
    item.el.remove();
  }
}

/** @param {string} path */
function svgIcon(path) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  const p = document.createElementNS(ns, "path");
  p.setAttribute("d", path);
  svg.append(p);
  return svg;
}

/** @param {string} text @param {() => void} onClick */
function button(text, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "link";
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}
