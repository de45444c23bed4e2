// Test doubles for the browser client: a fake clock and a tiny scripted server that speaks
// wire protocol v1 over fake WebSocket / EventSource / fetch constructors, injected through
// connect() options. Not a test file itself (node --test only runs *.test.mjs).

import { connect, decodeFrame, encodeFrame } from "../../transports/static/client.js";

export const BASE = "http://app.test/rt";

/** Let every pending promise, microtask and immediate run. */
export async function settle() {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Deterministic time: timers run only inside advance(). */
export class FakeClock {
  constructor() {
    this.t = 1_700_000_000_000;
    this.timers = new Map();
    this.nextId = 1;
    this.setTimeout = (fn, ms = 0) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.t + Math.max(0, ms || 0), fn, id });
      return id;
    };
    this.clearTimeout = (id) => { this.timers.delete(id); };
    this.now = () => this.t;
  }

  /** Move time forward by ms, running due timers in order and settling in between. */
  async advance(ms) {
    const end = this.t + ms;
    await settle();
    for (;;) {
      let next = null;
      for (const timer of this.timers.values()) {
        if (timer.at <= end && (!next || timer.at < next.at || (timer.at === next.at && timer.id < next.id))) next = timer;
      }
      if (!next) break;
      this.timers.delete(next.id);
      this.t = next.at;
      next.fn();
      await settle();
    }
    this.t = end;
    await settle();
  }
}

export class MemoryStorage {
  constructor() { this.map = new Map(); }
  getItem(key) { return this.map.has(key) ? this.map.get(key) : null; }
  setItem(key, value) { this.map.set(key, String(value)); }
  removeItem(key) { this.map.delete(key); }
}

export function response(status, body, headers = {}) {
  return {
    status,
    ok: status >= 200 && status < 300,
    headers: new Headers(headers),
    json: async () => {
      if (body === undefined) throw new SyntaxError("no body");
      return body;
    },
  };
}

/** One server-side session. */
class ServerSession {
  constructor(world, n, body) {
    this.world = world;
    this.n = n;
    this.id = `pub${n}`;
    this.token = `secret${n}`;
    this.ticket = `ticket${n}`;
    this.clientKey = body.client;
    this.transport = null; // "websocket" | "sse" | "longpoll" once attached
    this.socket = null;
    this.eventSource = null;
    this.received = []; // client frames, decoded
    this.posts = []; // raw POST bodies (arrays of frames)
    this.subs = new Set();
    this.seq = 0;
    this.outbox = []; // [seq, frame] for long-poll
    this.helloSent = false;
    this.waiters = [];
    this.gone = false; // no more frames pushed
    this.expired = false; // polls and POSTs get 404
    this.answer = null; // while a POST asking for its replies is applied: the replies for its answer (§6.2)
    this.downstream = []; // every frame pushed down the stream or poll, in order
  }

  /** The REPLY to an EVENT or PUBLISH: in the POST's answer when it asked for it, else down. */
  reply(frame) {
    if (this.answer) {
      this.answer.push(frame);
      if (this.world.answerReplies !== "both") return;
    }
    this.push(frame);
  }

  /** A frame from the client. The default behaviour mimics a healthy server. */
  receive(frame) {
    this.received.push(frame);
    const world = this.world;
    const [type, ref] = frame;
    if (type === 5) {
      const [, , topic, since, options] = frame;
      if (world.refuse.has(topic)) return this.push([4, ref, "forbidden", { message: "no" }]);
      this.subs.add(topic);
      const top = world.top(topic);
      const recovered = since ? world.recovered(topic, since) : false;
      const reply = { recovered, epoch: world.epoch, offset: top };
      if (options && options.presence) {
        reply.presence = world.snapshot(topic, this);
        if (reply.presence && reply.presence.events) this.subs.add(`$presence:${topic}`);
      }
      this.push([4, ref, "ok", reply]);
      if (recovered) {
        for (const pub of world.history.get(topic) || []) if (pub[4] > since[1]) this.push(pub);
      }
    } else if (type === 6) {
      this.subs.delete(frame[2]);
      this.subs.delete(`$presence:${frame[2]}`);
      this.push([4, ref, "ok", null]);
    } else if (type === 3 || type === 10) {
      const reply = world.onEvent(frame, this);
      if (reply) this.reply([4, ref, ...reply]);
    } else if (type === 7) {
      this.push([8]);
    } else if (type === 11) {
      const topic = frame[2];
      if (world.dropPresence) return; // the REPLY is lost
      if (world.noPresence.has(topic)) return this.push([4, ref, "presence_disabled", { message: "no presence on this topic" }]);
      const members = [...world.membersOf(topic)].map(([id, info]) => ({ id, info }));
      this.push([4, ref, "ok", { members, count: members.length, truncated: false }]);
    }
  }

  /** Send a frame to the client over whatever transport is attached. */
  push(frame) {
    if (this.gone) return;
    this.downstream.push(frame);
    if (this.transport === "websocket" && this.socket) this.socket.deliver(frame);
    else if (this.transport === "sse" && this.eventSource) {
      const seq = frame[0] === 7 ? null : ++this.seq;
      this.eventSource.deliver(frame, seq);
    } else {
      this.outbox.push([++this.seq, frame]);
      this.wake();
    }
  }

  wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const fn of waiters) fn();
  }

  /** End the session from the server side with a close code. */
  kill(code = 1011, reason = "") {
    if (this.transport === "websocket" && this.socket) this.socket.serverClose(code, reason);
    else if (this.transport === "sse" && this.eventSource) this.eventSource.deliver([9, code, reason], null);
    else this.outbox.push([++this.seq, [9, code, reason]]), this.wake();
    this.gone = true;
  }

  /** Forget the session: its polls and POSTs now get 404, its stream fails. */
  expire() {
    this.gone = this.expired = true;
    if (this.eventSource) this.eventSource.fail();
    this.wake();
  }
}

/**
 * A fake network + server. `world.mode` says how each transport behaves through the "proxy":
 *   websocket: "ok" | "blocked" (closes before open) | "silent" (opens, then nothing)
 *              | "oneway" (HELLO and server frames arrive, client frames are lost)
 *   sse: "ok" | "buffered" (nothing ever arrives)
 *        | "down" (network errors: the EventSource reports an error and stays CONNECTING)
 *   longpoll: "ok" | "down" (network errors) | "hang" (polls never answer)
 */
let lastWorld = null;

export function createWorld() {
  const clock = new FakeClock();
  const world = {
    clock,
    mode: { websocket: "ok", sse: "ok", longpoll: "ok" },
    offered: ["websocket", "sse", "longpoll"],
    heartbeat: 25000,
    pollWindow: 25000, // negotiate's pollWindow; with emptyPolls, how long a poll is held
    emptyPolls: false, // true: a held poll answers {cursor, frames: []} after pollWindow (§6.1)
    emptyAnswers: 0, // how many empty poll answers were sent
    retry: 1000,
    limits: { message: 65536, body: 1048576, batch: 100, subscriptions: 128, topic: 200, depth: 32 },
    epoch: "E1",
    offsets: new Map(),
    history: new Map(),
    refuse: new Set(),
    negotiations: [],
    negotiateHook: null, // (request) => response | undefined
    sessions: [],
    sockets: [],
    eventSources: [],
    polls: [],
    postLog: [],
    /**
     * POST /send with `Accept: application/json` (§6.2): false, an older server (204, every
     * REPLY down the stream or poll); true, the REPLYs to EVENT and PUBLISH in a 200 answer;
     * "both", an odd server that sends them both ways.
     */
    answerReplies: false,
    /** What SUB with since replies: recovered when the epoch matches (override per test). */
    recovered: (topic, since) => since[0] === world.epoch,
    /** Presence (§12): members by topic (id -> info), topics without presence. */
    members: new Map(),
    noPresence: new Set(),
    /** The `presence` field of a SUB reply with `{presence: true}` (override per test). */
    snapshot: (topic) => {
      if (world.noPresence.has(topic)) return { error: "presence_disabled", message: "no presence on this topic" };
      const members = [...world.membersOf(topic)].map(([id, info]) => ({ id, info }));
      return { members, count: members.length, truncated: false, events: true, epoch: world.epoch,
        offset: world.top(`$presence:${topic}`) };
    },
    /** Reply to EVENT/PUBLISH: [status, data] or null for no reply. */
    onEvent: (frame) => ["ok", { echo: frame[0] === 3 ? frame[3] : frame[4] }],
    top: (topic) => world.offsets.get(topic) || 0,
    window: new EventTarget(),
    document: Object.assign(new EventTarget(), { visibilityState: "visible" }),
    navigator: { onLine: true },
    storage: new MemoryStorage(),
  };

  lastWorld = world;
  world.session = (n) => world.sessions[n];
  world.last = () => world.sessions[world.sessions.length - 1];
  world.bySecret = (token) => world.sessions.find((s) => s.token === token);
  world.byTicket = (url) => world.sessions.find((s) => s.ticket === new URL(url).searchParams.get("ticket"));

  world.membersOf = (topic) => {
    if (!world.members.has(topic)) world.members.set(topic, new Map());
    return world.members.get(topic);
  };
  /** A member joins (or leaves) a topic: the server's state changes and `$presence:` publishes it. */
  world.join = (topic, id, info = null) => {
    world.membersOf(topic).set(id, info);
    return world.publish(`$presence:${topic}`, "join", { id, info });
  };
  world.leave = (topic, id) => {
    const info = world.membersOf(topic).get(id) ?? null;
    world.membersOf(topic).delete(id);
    return world.publish(`$presence:${topic}`, "leave", { id, info });
  };

  /** Publish on a topic to every subscribed live session; returns the PUB frame. */
  world.publish = (topic, event, data) => {
    const offset = world.top(topic) + 1;
    world.offsets.set(topic, offset);
    const pub = [1, topic, event, data, offset, world.epoch];
    if (!world.history.has(topic)) world.history.set(topic, []);
    world.history.get(topic).push(pub);
    for (const s of world.sessions) if (s.subs.has(topic) && !s.gone && s.transport) s.push(pub);
    return pub;
  };

  world.fetch = async (url, init = {}) => {
    const u = new URL(url);
    const headers = init.headers || {};
    if (u.pathname === "/rt/negotiate") {
      const request = { url, headers, body: JSON.parse(init.body), at: clock.now() };
      world.negotiations.push(request);
      const hooked = world.negotiateHook && world.negotiateHook(request);
      if (hooked) return hooked;
      const s = new ServerSession(world, world.sessions.length, request.body);
      world.sessions.push(s);
      return response(200, {
        v: 1, id: s.id, token: s.token, ticket: s.ticket,
        transports: world.offered.filter((t) => request.body.transports.includes(t)),
        urls: { websocket: "/rt/ws", sse: "/rt/sse", longpoll: "/rt/poll", send: "/rt/send" },
        heartbeat: world.heartbeat, pollWindow: world.pollWindow, retry: world.retry, ticketTtl: 30000,
        limits: world.limits, history: { size: 1000, ttl: 300000 },
      });
    }
    const s = world.bySecret(headers["X-Realtime-Session"]);
    if (u.pathname === "/rt/send") {
      world.postLog.push({ session: s, body: init.body, headers });
      if (world.sendHook) {
        const hooked = await world.sendHook(init, s);
        if (hooked) return hooked;
      }
      if (!s || s.expired) return response(404, { error: "unknown_session", message: "gone" });
      const frames = JSON.parse(init.body);
      s.posts.push(frames);
      const answering = Boolean(world.answerReplies) && headers.Accept === "application/json";
      const answer = answering ? [] : null;
      s.answer = answer;
      try {
        for (const raw of frames) s.receive(decodeFrame(raw));
      } finally {
        s.answer = null;
      }
      if (!answer) return response(204);
      return response(200, { frames: answer.map((f) => JSON.parse(encodeFrame(f, false))) }, { "Content-Type": "application/json" });
    }
    if (u.pathname === "/rt/poll") {
      if (world.mode.longpoll === "down") throw new TypeError("Failed to fetch");
      if (world.mode.longpoll === "hang") {
        world.hungPolls = (world.hungPolls || 0) + 1;
        return new Promise((_, reject) => init.signal.addEventListener("abort", () => {
          world.abortedPolls = (world.abortedPolls || 0) + 1;
          reject(new DOMException("aborted", "AbortError"));
        }));
      }
      const cursor = Number(u.searchParams.get("cursor"));
      world.polls.push({ session: s, cursor });
      if (!s || s.expired) return response(404, { error: "unknown_session", message: "gone" });
      if (!s.transport) s.transport = "longpoll";
      s.outbox = s.outbox.filter(([seq]) => seq > cursor);
      for (;;) {
        if (s.expired) return response(404, { error: "unknown_session", message: "gone" });
        const frames = [];
        if (cursor === 0 && !s.helloSent) {
          s.helloSent = true;
          frames.push([0, { v: 1, id: s.id, transport: "longpoll", heartbeat: world.heartbeat }]);
        }
        for (const [, frame] of s.outbox) frames.push(JSON.parse(encodeFrame(frame, false)));
        if (frames.length) return response(200, { cursor: s.seq, frames });
        const woke = await new Promise((resolve, reject) => {
          // Like the server: with nothing to send, the poll ends empty after the poll window.
          const timer = world.emptyPolls ? clock.setTimeout(() => resolve("window"), world.pollWindow) : null;
          s.waiters.push(() => { clock.clearTimeout(timer); resolve("woken"); });
          if (init.signal) {
            init.signal.addEventListener("abort", () => {
              clock.clearTimeout(timer);
              reject(new DOMException("aborted", "AbortError"));
            });
          }
        });
        if (woke === "window") {
          world.emptyAnswers++;
          return response(200, { cursor, frames: [] });
        }
      }
    }
    return response(404, { error: "not_found", message: "no" });
  };

  world.WebSocket = class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this.session = world.byTicket(url);
      world.sockets.push(this);
      const mode = world.mode.websocket;
      queueMicrotask(() => {
        if (this.readyState === 3) return;
        if (mode === "blocked") {
          this.readyState = 3;
          if (this.onclose) this.onclose({ code: 1006, reason: "" });
          return;
        }
        this.readyState = 1;
        if ((mode === "ok" || mode === "oneway") && this.session) {
          this.session.transport = "websocket";
          this.session.socket = this;
          this.deliver([0, { v: 1, id: this.session.id, transport: "websocket", heartbeat: world.heartbeat }]);
        }
        if (this.onopen) this.onopen();
      });
    }
    send(data) {
      this.sent.push(data);
      if (world.mode.websocket === "ok" && this.session && this.readyState === 1) this.session.receive(decodeFrame(data));
    }
    deliver(frame) {
      const data = encodeFrame(frame, true);
      queueMicrotask(() => {
        if (this.readyState === 1 && this.onmessage) {
          this.onmessage({ data: typeof data === "string" ? data : data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) });
        }
      });
    }
    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }
    serverClose(code, reason = "") {
      this.readyState = 3;
      if (this.onclose) this.onclose({ code, reason });
    }
  };

  world.EventSource = class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.closed = false;
      this.lastId = "";
      this.session = world.byTicket(url);
      world.eventSources.push(this);
      const mode = world.mode.sse;
      queueMicrotask(() => {
        if (mode === "down" && !this.closed) {
          if (this.onerror) this.onerror({});
          return;
        }
        if (mode !== "ok" || this.closed || !this.session) return;
        this.readyState = 1;
        if (this.onopen) this.onopen();
        this.session.transport = "sse";
        this.session.eventSource = this;
        this.deliver([0, { v: 1, id: this.session.id, transport: "sse", heartbeat: world.heartbeat }], null);
      });
    }
    deliver(frame, seq) {
      const data = encodeFrame(frame, false);
      queueMicrotask(() => {
        if (this.closed || this.readyState !== 1) return;
        if (seq != null) this.lastId = String(seq);
        if (this.onmessage) this.onmessage({ data, lastEventId: this.lastId });
      });
    }
    close() {
      this.closed = true;
      this.readyState = 2;
    }
    /** The stream failed for good (e.g. 404 on reattach). */
    fail() {
      this.readyState = 2;
      if (this.onerror) this.onerror({});
    }
  };

  /** connect() with this world's fakes; extra options override. No fast start unless asked
   * (the tests of the ordered connect predate it; fast-start.test.mjs tests it). */
  world.connect = (options = {}) =>
    connect(BASE, {
      fastStart: false,
      WebSocket: world.WebSocket,
      EventSource: world.EventSource,
      fetch: world.fetch,
      clock,
      random: () => 0.5,
      storage: world.storage,
      window: world.window,
      document: world.document,
      navigator: world.navigator,
      ...options,
    });

  return world;
}

/** Record every event of a client, in order, as [name, payload]. */
export function record(client) {
  const log = [];
  for (const name of ["state", "transport", "error", "recovered", "message", "presence"]) {
    client.on(name, (payload) => log.push([name, payload]));
  }
  for (const name of ["join", "leave"]) client.on(name, (topic, member) => log.push([name, topic, member]));
  return log;
}

/** Client frames a session received, of one type. */
export function framesOf(session, type) {
  return session.received.filter((f) => f[0] === type);
}

// --- tab sharing: an in-process origin with Web Locks and BroadcastChannel ---------------------

/**
 * The tabs of one origin: a LockManager and BroadcastChannels shared by the tabs, each tab with
 * its own view (`tab.locks`, `tab.BroadcastChannel`) so that a tab can be closed (its lock is
 * released, its queued requests dropped, its channels closed: what the browser does when a
 * document goes away), frozen (its channels hold what comes in and what goes out until it
 * resumes) or sent to the back-forward cache (its channels drop what comes in).
 */
export function createOrigin() {
  const channels = new Set();
  const held = new Map(); // lock name -> request holding it
  const queues = new Map(); // lock name -> requests waiting
  const abortError = (text) => new DOMException(text, "AbortError");
  const origin = { grants: [], tabs: [] };

  function pump(name) {
    if (held.has(name)) return;
    const next = (queues.get(name) || []).shift();
    if (next) grant(next);
  }
  function grant(req) {
    held.set(req.name, req);
    origin.grants.push(req.owner.name);
    queueMicrotask(async () => {
      let result;
      let error = null;
      try { result = await req.cb({ name: req.name, mode: "exclusive" }); } catch (e) { error = e; }
      if (held.get(req.name) === req) {
        held.delete(req.name);
        pump(req.name);
      }
      if (!req.stolen && !req.owner.closed) (error ? req.reject(error) : req.resolve(result));
    });
  }

  origin.tab = (name) => {
    const tab = { name, closed: false, frozen: false, cached: false, window: new EventTarget() };
    const inbox = [];
    const outbox = [];
    tab.locks = {
      request(lockName, options, cb) {
        return new Promise((resolve, reject) => {
          const req = { owner: tab, name: lockName, cb, resolve, reject, stolen: false };
          if (options.steal) {
            const current = held.get(lockName);
            if (current) {
              held.delete(lockName);
              current.stolen = true;
              if (!current.owner.closed) current.reject(abortError("the lock was stolen"));
            }
            return grant(req);
          }
          if (options.signal) {
            if (options.signal.aborted) return reject(abortError("aborted"));
            options.signal.addEventListener("abort", () => {
              const queue = queues.get(lockName) || [];
              const at = queue.indexOf(req);
              if (at >= 0) {
                queue.splice(at, 1);
                reject(abortError("aborted"));
              }
            });
          }
          if (!queues.has(lockName)) queues.set(lockName, []);
          queues.get(lockName).push(req);
          pump(lockName);
        });
      },
    };
    tab.BroadcastChannel = class FakeBroadcastChannel {
      constructor(channelName) {
        this.name = channelName;
        this.tab = tab;
        this.closed = false;
        this.onmessage = null;
        channels.add(this);
      }
      postMessage(data) {
        if (this.closed) throw new DOMException("closed", "InvalidStateError");
        if (tab.frozen) return void outbox.push([this, data]);
        for (const other of channels) {
          if (other !== this && other.name === this.name && !other.closed) other.receive(structuredClone(data));
        }
      }
      receive(data) {
        setImmediate(() => {
          if (this.closed || tab.cached) return;
          if (tab.frozen) return void inbox.push([this, data]);
          if (this.onmessage) this.onmessage({ data });
        });
      }
      close() {
        this.closed = true;
        channels.delete(this);
      }
    };
    /** The document goes away: no pagehide handler needed, the browser frees its lock. */
    tab.destroy = () => {
      tab.closed = true;
      for (const channel of [...channels]) if (channel.tab === tab) channel.close();
      for (const queue of queues.values()) {
        for (let i = queue.length - 1; i >= 0; i--) if (queue[i].owner === tab) queue.splice(i, 1);
      }
      for (const [lockName, req] of held) {
        if (req.owner === tab) {
          held.delete(lockName);
          pump(lockName);
        }
      }
    };
    tab.freeze = () => { tab.frozen = true; };
    tab.resume = () => {
      tab.frozen = false;
      for (const [channel, data] of outbox.splice(0)) channel.postMessage(data);
      for (const [channel, data] of inbox.splice(0)) channel.receive(data);
    };
    /** What the tab's options need to take part. */
    tab.options = () => ({ locks: tab.locks, BroadcastChannel: tab.BroadcastChannel, window: tab.window });
    origin.tabs.push(tab);
    return tab;
  };
  origin.holder = (lockName) => (held.get(lockName) || { owner: null }).owner;
  return origin;
}

/**
 * Settle until `condition()` holds (real async work, such as crypto.subtle, included), moving
 * the last world's clock 5 ms at a time (at most `ms` of it) meanwhile.
 */
export async function until(condition, what = "condition", ms = 3000) {
  const end = Date.now() + 3000;
  let moved = 0;
  while (!condition()) {
    if (Date.now() > end || moved > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
    if (lastWorld) await lastWorld.clock.advance(5);
    moved += 5;
    await settle();
  }
}
