// @ts-check
/**
 * What the diagnose page measures, without the DOM: a Tap that watches what the browser's
 * WebSocket, EventSource and fetch see under a real client, the check of one transport through
 * the real network path, the verdict its observations lead to, and the report, in the same
 * shape as `python -m transports.diagnose URL --json`.
 *
 * A browser hides much of what a proxy does (the status of a refused WebSocket handshake, the
 * headers of a response), so a verdict is an inference from what the page can see, and the
 * report says what was seen ("observed") beside it.
 */

import { DEFAULTS, connect } from "./client.js";
import { SESSION_DEFAULTS } from "./policy.js";

/** @typedef {"websocket" | "sse" | "longpoll"} TransportName */

/** Seconds each connection is held idle by default: the CLI's `--idle`. */
export const IDLE_SECONDS = 30;

/** The transports the page checks, best first (the client's default order). */
export const TRANSPORT_ORDER = /** @type {TransportName[]} */ (["websocket", "sse", "longpoll"]);

const encoder = new TextEncoder();
/** UTF-8 bytes of a string, or the size of binary data. @param {any} data @returns {number} */
const sizeOf = (data) =>
  typeof data === "string" ? encoder.encode(data).length : data && typeof data.byteLength === "number" ? data.byteLength : 0;

/** Bytes of a WebSocket frame header from server to client (unmasked) for a payload. @param {number} n */
export const wsHeaderBytes = (n) => (n <= 125 ? 2 : n <= 65535 ? 4 : 10);

/**
 * Bytes of one SSE event as the server writes it (§5.1: `id:` line, one `data:` line, CRLF).
 * @param {string} data @param {string} id
 */
export const sseEventBytes = (data, id) => (id ? 6 + id.length : 0) + 8 + sizeOf(data) + 2;

/**
 * Estimated bytes of the HTTP/1.1 head of a response: status line and headers, as far as the
 * page can read them (same-origin responses show all but Set-Cookie).
 * @param {number} status @param {{forEach?: (fn: (value: string, name: string) => void) => void} | null | undefined} headers
 */
export function responseHeadBytes(status, headers) {
  let bytes = `HTTP/1.1 ${status} XX\r\n`.length + 2;
  if (headers && typeof headers.forEach === "function") headers.forEach((value, name) => { bytes += name.length + value.length + 4; });
  return bytes;
}

/**
 * Estimated bytes of a browser's GET of `url` with the session header: the request line, Host,
 * the header, and about 250 bytes of what a browser adds (User-Agent, Accept, Accept-Language,
 * Accept-Encoding, Connection...), which the page cannot read.
 * @param {string} url @param {Record<string, string> | undefined} headers
 */
export function requestHeadBytes(url, headers) {
  const u = new URL(url);
  let bytes = `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n\r\n`.length + 250;
  for (const [name, value] of Object.entries(headers || {})) bytes += name.length + value.length + 4;
  return bytes;
}

/** The publication a frame text carries, if it is one: `topic offset`. @param {any} frame */
const pubKey = (frame) =>
  Array.isArray(frame) && (frame[0] === 1 || frame[0] === 17) ? `${frame[1]} ${frame[4]}` : null;

/**
 * Watches what a client's WebSocket, EventSource and fetch see: when things happened (ms since
 * the tap was made) and the bytes each publication took on the wire. Give its constructors to
 * connect() (`WebSocket`, `EventSource`, `fetch` options); they behave like the real ones.
 */
export class Tap {
  /** @param {() => number} [now] */
  constructor(now = () => performance.now()) {
    this.now = now;
    this.t0 = now();
    /** @type {{at: number, what: string}[]} the timeline, for the report's "observed" */
    this.events = [];
    /** estimated wire bytes of each publication, by `topic offset` */
    this.pubBytes = new Map();
    /**
     * The first negotiate; `heartbeat` and `pollWindow`: the server's, ms (the policy's defaults
     * when the answer does not say).
     * @type {{status: number | null, code: string | null, ms: number | null, network: boolean, transports: string[] | null, count: number, heartbeat: number, pollWindow: number}}
     */
    this.negotiate = { status: null, code: null, ms: null, network: false, transports: null, count: 0,
      heartbeat: SESSION_DEFAULTS.heartbeat, pollWindow: SESSION_DEFAULTS.pollWindow };
    /** @type {{created: number | null, opened: number | null, firstMessage: number | null, error: number | null, closed: number | null, closeCode: number | null, compressed: boolean}} */
    this.ws = { created: null, opened: null, firstMessage: null, error: null, closed: null, closeCode: null, compressed: false };
    /** @type {{created: number | null, opened: number | null, firstEvent: number | null, error: number | null, refused: boolean}} */
    this.sse = { created: null, opened: null, firstEvent: null, error: null, refused: false };
    /** @type {{count: number, firstAnswer: number | null, statuses: number[], network: number}} */
    this.poll = { count: 0, firstAnswer: null, statuses: [], network: 0 };
    /** when bytes last went either way on this transport (a frame, a request, an answer) */
    this.lastTraffic = 0;
    /** @type {{at: number, silence: number}[]} the server's heartbeats (a PING, or an empty poll answer), with the ms of silence before each */
    this.beats = [];
    /**
     * Connections lost: a WebSocket that closed, an event stream interrupted, a poll lost on the
     * network or answered with an error. `closed`: the server closed it (a CLOSE frame, a
     * WebSocket close other than 1006), not something on the way. `silence`: ms without traffic
     * before it; `upper`: at most that, as the browser may have sent the request again unseen.
     * @type {{at: number, silence: number, what: string, closed: boolean, upper?: boolean}[]}
     */
    this.drops = [];
  }

  /** ms since the tap was made, to 0.1 ms. */
  at() {
    return Math.round((this.now() - this.t0) * 10) / 10;
  }

  /** @param {string} what */
  mark(what) {
    this.events.push({ at: this.at(), what });
  }

  /** Bytes went one way or the other. */
  traffic() {
    this.lastTraffic = this.at();
  }

  /** The server's heartbeat arrived (before the traffic it is counts). */
  beat() {
    const at = this.at();
    this.beats.push({ at, silence: at - this.lastTraffic });
  }

  /**
   * A connection was lost. @param {string} what @param {boolean} closed by the server
   * @param {boolean} [upper] the silence is at most what the page saw
   */
  drop(what, closed, upper = false) {
    const at = this.at();
    this.drops.push({ at, silence: at - this.lastTraffic, what, closed, ...(upper ? { upper } : {}) });
  }

  /**
   * What a frame says about the connection, before it counts as traffic: a PING is the server's
   * heartbeat, a CLOSE the server closing the connection. @param {any} frame a parsed frame
   */
  control(frame) {
    if (!Array.isArray(frame)) return;
    if (frame[0] === 7) this.beat();
    else if (frame[0] === 9) this.drop(`the server sent CLOSE ${frame[1]}${frame[2] ? ` ${frame[2]}` : ""}`, true);
  }

  /** {@link control} of a frame's text (PING and CLOSE are always text). @param {any} data */
  controlText(data) {
    if (typeof data !== "string" || !/^\[\s*[79]\s*[,\]]/.test(data)) return;
    try { this.control(JSON.parse(data)); } catch (_) { /* not JSON: the client reports it */ }
  }

  /** @param {string} text a frame as it arrived @param {number} bytes its estimated wire size */
  frame(text, bytes) {
    if (typeof text !== "string" || !text.startsWith("[1")) return;
    try {
      const key = pubKey(JSON.parse(text));
      if (key) this.pubBytes.set(key, bytes);
    } catch (_) { /* not JSON: the client reports it */ }
  }

  /**
   * A WebSocket class that reports to this tap. @param {any} Base the real WebSocket
   * @returns {any}
   */
  webSocket(Base) {
    if (!Base) return undefined;
    const tap = this;
    return class TappedWebSocket extends Base {
      /** @param {string} url @param {any} [protocols] */
      constructor(url, protocols) {
        super(url, protocols);
        tap.ws.created = tap.at();
        tap.traffic();
        tap.mark("websocket: connecting");
        // Listeners added here run before the transport's own on* handlers.
        this.addEventListener("open", () => {
          tap.traffic();
          tap.ws.opened = tap.at();
          tap.ws.compressed = Boolean(this.extensions);
          tap.mark("websocket: open");
        });
        this.addEventListener("message", (/** @type {MessageEvent} */ event) => {
          if (tap.ws.firstMessage === null) {
            tap.ws.firstMessage = tap.at();
            tap.mark("websocket: first message");
          }
          const n = sizeOf(event.data);
          tap.frame(event.data, n + wsHeaderBytes(n));
          tap.controlText(event.data);
          tap.traffic();
        });
        this.addEventListener("error", () => {
          if (tap.ws.error === null) tap.ws.error = tap.at();
          tap.mark("websocket: error");
        });
        this.addEventListener("close", (/** @type {CloseEvent} */ event) => {
          tap.ws.closed = tap.at();
          tap.ws.closeCode = event.code;
          tap.mark(`websocket: closed ${event.code}`);
          // 1006: no closing handshake, the connection dropped; another code: the server closed it.
          tap.drop(event.code === 1006 ? "the WebSocket dropped (1006)" : `the WebSocket was closed with ${event.code}`, event.code !== 1006);
        });
      }

      /** @param {any} data */
      send(data) {
        tap.traffic();
        super.send(data);
      }
    };
  }

  /**
   * An EventSource class that reports to this tap. @param {any} Base the real EventSource
   * @returns {any}
   */
  eventSource(Base) {
    if (!Base) return undefined;
    const tap = this;
    return class TappedEventSource extends Base {
      /** @param {string} url @param {any} [init] */
      constructor(url, init) {
        super(url, init);
        if (tap.sse.created === null) tap.sse.created = tap.at();
        tap.traffic();
        tap.mark("sse: stream requested");
        this.addEventListener("open", () => {
          tap.traffic();
          if (tap.sse.opened === null) tap.sse.opened = tap.at();
          tap.mark("sse: response headers");
        });
        this.addEventListener("message", (/** @type {MessageEvent} */ event) => {
          if (tap.sse.firstEvent === null) {
            tap.sse.firstEvent = tap.at();
            tap.mark("sse: first event");
          }
          tap.frame(event.data, sseEventBytes(event.data, event.lastEventId));
          tap.controlText(event.data);
          tap.traffic();
        });
        this.addEventListener("error", () => {
          if (tap.sse.error === null) tap.sse.error = tap.at();
          // CLOSED: the answer was not an event stream (an HTTP error); EventSource gives up.
          if (this.readyState === 2 && tap.sse.firstEvent === null) tap.sse.refused = true;
          tap.mark(this.readyState === 2 ? "sse: refused (not an event stream)" : "sse: stream interrupted");
          tap.drop(this.readyState === 2 ? "the event stream ended" : "the event stream was interrupted", false);
        });
      }
    };
  }

  /**
   * A fetch that reports negotiate and poll answers to this tap (and the bytes of each
   * publication a poll carried). @param {(url: string, init?: any) => Promise<any>} base
   * @returns {(url: string, init?: any) => Promise<any>}
   */
  fetch(base) {
    return async (url, init) => {
      const path = new URL(url, globalThis.location ? globalThis.location.href : undefined).pathname;
      const kind = path.endsWith("/negotiate") ? "negotiate" : path.endsWith("/poll") ? "poll" : "other";
      const started = this.now();
      this.traffic();
      let res;
      let text;
      try {
        res = await base(url, init);
        text = await res.text();
      } catch (error) {
        if (kind === "negotiate") {
          // An abort is the client's own timeout (no answer in time), anything else the network.
          this.negotiate.network = !(init && init.signal && init.signal.aborted);
          this.negotiate.count++;
          this.mark("negotiate: no answer (network error)");
        } else if (kind === "poll" && !(init && init.signal && init.signal.aborted)) {
          this.poll.network++;
          this.mark("longpoll: poll failed on the network");
          // A browser sends a request again, unseen, when a connection it reused is cut before the
          // answer (Chromium, up to twice): the page sees the last cut, after that much more silence.
          this.drop("a held poll failed on the network (a browser asks a poll cut on a connection it reused again, unseen)", false, true);
        }
        throw error;
      }
      if (kind === "negotiate") this.negotiated(res, text, this.now() - started);
      else if (kind === "poll") this.polled(url, init, res, text);
      this.traffic();
      const body = text;
      return { status: res.status, ok: res.ok, headers: res.headers, json: async () => JSON.parse(body) };
    };
  }

  /** @param {any} res @param {string} text @param {number} ms */
  negotiated(res, text, ms) {
    const n = this.negotiate;
    n.count++;
    if (n.count > 1) return; // the first negotiate is the one the check judges
    n.status = res.status;
    n.ms = Math.round(ms * 10) / 10;
    try {
      const body = JSON.parse(text);
      if (res.status !== 200 && body && typeof body.error === "string") n.code = body.error;
      if (res.status === 200 && body && Array.isArray(body.transports)) n.transports = body.transports.map(String);
      if (res.status === 200 && body && body.heartbeat > 0) n.heartbeat = Number(body.heartbeat);
      if (res.status === 200 && body && body.pollWindow > 0) n.pollWindow = Number(body.pollWindow);
    } catch (_) { /* not JSON: a proxy's page */ }
    this.mark(`negotiate: HTTP ${res.status}${n.code ? ` ${n.code}` : ""} in ${Math.round(ms)} ms`);
  }

  /** @param {string} url @param {any} init @param {any} res @param {string} text */
  polled(url, init, res, text) {
    const p = this.poll;
    p.count++;
    p.statuses.push(res.status);
    if (p.firstAnswer === null) {
      p.firstAnswer = this.at();
      this.mark(`longpoll: first poll answered HTTP ${res.status}`);
    }
    // A proxy's 502 or 504 on a held poll is its idle timeout.
    if (res.status !== 200) return this.drop(`a held poll answered HTTP ${res.status}`, false);
    let frames;
    try { frames = JSON.parse(text).frames; } catch (_) { return; }
    if (!Array.isArray(frames)) return;
    // An empty answer is the long-poll heartbeat: the poll window passed with nothing to send.
    if (!frames.length) this.beat();
    for (const frame of frames) this.control(frame);
    const pubs = frames.filter((frame) => pubKey(frame));
    if (!pubs.length) return;
    // What the exchange cost beyond the frames themselves, shared by the publications it carried.
    const head = requestHeadBytes(url, init && init.headers) + responseHeadBytes(res.status, res.headers);
    const frameBytes = frames.reduce((sum, frame) => sum + sizeOf(JSON.stringify(frame)) + 1, 0);
    const share = (head + sizeOf(text) - frameBytes) / pubs.length;
    for (const frame of pubs) {
      this.pubBytes.set(pubKey(frame), Math.round(sizeOf(JSON.stringify(frame)) + 1 + share));
    }
  }

  /** The bytes of publication `offset` on `topic`, or null. @param {string} topic @param {number} offset */
  bytesOf(topic, offset) {
    const key = `${topic} ${offset}`;
    const bytes = this.pubBytes.get(key);
    this.pubBytes.delete(key);
    return bytes === undefined ? null : bytes;
  }
}

/**
 * connect() options for one transport alone, watched by `tap`: no remembered transport, no
 * failback, and a long backoff so that a failed attempt is not repeated during a check.
 * @param {TransportName} name @param {Tap} tap @param {Record<string, any>} [extra]
 * @returns {any}
 */
export function tappedOptions(name, tap, extra = {}) {
  const g = /** @type {any} */ (globalThis);
  return {
    transports: [name],
    storage: null,
    failback: false,
    share: false, // its own connection, through the tapped constructors
    WebSocket: tap.webSocket(g.WebSocket),
    EventSource: tap.eventSource(g.EventSource),
    fetch: tap.fetch((url, init) => g.fetch(url, init)),
    ...extra,
  };
}

/**
 * POST <prefix>/diagnose/publish: publish `data` as `event` on a `$diagnose:<id>` topic.
 * @param {string} prefix @param {string} topic @param {string} event @param {any} data
 * @returns {Promise<{offset: number, epoch: string}>} rejects with an Error on any failure
 */
export async function publishDiagnose(prefix, topic, event, data) {
  const res = await fetch(`${prefix}/diagnose/publish`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ topic, event, data }),
    cache: "no-store",
  });
  if (!res.ok) throw new Error(`the diagnose publish endpoint answered HTTP ${res.status}`);
  return res.json();
}

/** @param {number} ms @returns {Promise<void>} */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * What a check of one transport saw. Times are ms since connect().
 * @typedef {Object} Observation
 * @property {TransportName} transport
 * @property {"open" | "negotiate" | "fallback" | "closed" | "timeout" | "unusable"} outcome how the
 *   connection attempt ended
 * @property {string | null} fallbackReason the client's words when the attempt failed
 * @property {number | null} openMs when the client was open on the transport
 * @property {number | null} roundTripMs a SUB sent, its REPLY received (once open)
 * @property {string | null} subscribeError the server's refusal of the diagnose topic
 * @property {{code: number, reason: string} | null} droppedAfterOpen the connection closed during the check
 * @property {number} sent publications asked for
 * @property {number} publishErrors publications the endpoint did not take
 * @property {number[]} sentAt when each publication was asked for (ms since connect())
 * @property {{seq: number, at: number, latency: number}[]} received publications that arrived
 * @property {number} spacingMs ms between two publications
 * @property {Idle | null} idle the idle hold after the publications (null: not run)
 * @property {number | null} idleFrom when the idle hold began (the tap's ms)
 * @property {Tap} tap
 */

/**
 * The idle hold, as the CLI's (transports/diagnose/observations.py `Idle`): `planned` seconds
 * asked; `silence` seconds without traffic when it ended; `end`: held for the whole time, the
 * server's heartbeat arrived, the connection was cut (dropped, or given up by the client), or
 * the server closed it; `detail`: how it ended, in words; `upper`: the silence is at most that (a
 * request the browser sent again unseen).
 * @typedef {{planned: number, silence: number, end: "held" | "heartbeat" | "cut" | "closed", detail: string, upper?: boolean}} Idle
 */

/**
 * How an idle hold that began at `start` (the tap's ms) stands now: null while it goes on, else
 * how it ended. What came first ends it: the connection lost (a cut, or the server's close), or
 * the server's heartbeat; else the client leaving the connection by itself (`left`: its close
 * code and reason; its liveness check gives a silent connection up); else the time asked, over.
 * Only what the tap saw from `start` on counts, and nothing after the hold ended: the page's own
 * close, once the hold is over, is no cut.
 * @param {Tap} tap @param {number} start @param {number} idleMs
 * @param {{code: number, reason: string} | null} [left]
 * @returns {Idle | null}
 */
export function idleOutcome(tap, start, idleMs, left = null) {
  const planned = idleMs / 1000;
  const seconds = (/** @type {number} */ ms) => Math.round(ms / 100) / 10;
  const drop = tap.drops.find((d) => d.at >= start);
  const beat = tap.beats.find((b) => b.at >= start);
  if (drop && (!beat || drop.at <= beat.at)) {
    const idle = { planned, silence: seconds(drop.silence), end: drop.closed ? "closed" : "cut", detail: drop.what };
    return /** @type {Idle} */ (drop.upper ? { ...idle, upper: true } : idle);
  }
  if (beat) return { planned, silence: seconds(beat.silence), end: "heartbeat", detail: "" };
  const now = tap.at();
  if (left) {
    const detail = `the client left the connection (${left.code}${left.reason ? ` ${left.reason}` : ""})`;
    return { planned, silence: seconds(now - tap.lastTraffic), end: "cut", detail };
  }
  if (now - start >= idleMs) return { planned, silence: seconds(now - tap.lastTraffic), end: "held", detail: "" };
  return null;
}

/**
 * Leave the connection quiet until it is cut, the server's heartbeat comes, or `idleMs` passed
 * (the CLI's `--idle` hold).
 * @param {Tap} tap @param {number} idleMs
 * @param {() => ({code: number, reason: string} | null)} left whether the client left the connection
 * @param {(ms: number) => Promise<void>} [wait]
 * @returns {Promise<Idle>}
 */
export async function holdIdle(tap, idleMs, left, wait = sleep) {
  const start = tap.at();
  for (;;) {
    const outcome = idleOutcome(tap, start, idleMs, left());
    if (outcome) return outcome;
    await wait(Math.max(10, Math.min(100, start + idleMs - tap.at())));
  }
}

/**
 * Check one transport through the real path: negotiate, open, a round trip, then `count`
 * publications `spacingMs` apart through the publish endpoint, each timed by the page's clock,
 * then hold the connection idle up to `idleMs` (0: not), ending early at the server's first
 * heartbeat; `onHold` is called as the hold begins (the page shows its progress).
 * @param {TransportName} name
 * @param {{prefix: string, id: string, count?: number, spacingMs?: number, waitMs?: number,
 *   idleMs?: number, onHold?: (obs: Observation) => void, now?: () => number}} run `id`: the
 *   run's topic id (8-64 characters of A-Z a-z 0-9 _ -)
 * @returns {Promise<Observation>}
 */
export async function checkTransport(name, run) {
  const now = run.now || (() => performance.now());
  const count = run.count ?? 5;
  const spacingMs = run.spacingMs ?? 300;
  const waitMs = run.waitMs ?? 3000;
  const tap = new Tap(now);
  /** @type {Observation} */
  const obs = {
    transport: name, outcome: "timeout", fallbackReason: null, openMs: null, roundTripMs: null,
    subscribeError: null, droppedAfterOpen: null, sent: 0, publishErrors: 0, sentAt: [], received: [], spacingMs,
    idle: null, idleFrom: null, tap,
  };
  let client;
  try {
    client = connect(run.prefix, tappedOptions(name, tap, { backoff: { min: 60000, max: 60000 } }));
  } catch (error) {
    obs.outcome = "unusable";
    obs.fallbackReason = /** @type {Error} */ (error).message;
    return obs;
  }
  const c = client;
  let closing = false;
  let holding = false;
  /** @type {{code: number, reason: string} | null} the client left the connection during the hold */
  let left = null;
  const deadline = (DEFAULTS.deadlines[name] ?? 10000) + 5000;
  try {
    obs.outcome = await new Promise((resolve) => {
      /** @param {Observation["outcome"]} value */
      const done = (value) => {
        clearTimeout(timer);
        clearInterval(watch);
        resolve(value);
      };
      const timer = setTimeout(() => done("timeout"), deadline);
      // A failed attempt of the only transport is recorded as a fallback (with no `to`).
      const watch = setInterval(() => { if (c.stats.fallbacks.length) done("fallback"); }, 25);
      c.on("state", ({ state }) => { if (state === "open" || state === "closed") done(state); });
      c.on("error", (error) => { if (error.type === "negotiate") done("negotiate"); });
    });
    if (c.stats.fallbacks.length) obs.fallbackReason = c.stats.fallbacks[0].reason;
    if (obs.outcome !== "open") return obs;
    obs.openMs = tap.at();
    c.on("state", ({ state }) => {
      if (state === "open" || closing) return;
      const why = c.stats.lastClose || { code: 1006, reason: "" };
      if (holding) left = left || why;
      else if (!obs.droppedAfterOpen) obs.droppedAfterOpen = why;
    });
    const topic = `$diagnose:${run.id}`;
    const started = tap.at();
    const off = c.subscribe(topic, (pub) => {
      const data = pub.data || {};
      if (typeof data.sent !== "number") return;
      obs.received.push({ seq: Number(data.seq), at: tap.at(), latency: Math.round((now() - data.sent) * 10) / 10 });
    });
    try {
      await Promise.race([off.ready, sleep(5000).then(() => { throw new Error("timeout"); })]);
      obs.roundTripMs = Math.round((tap.at() - started) * 10) / 10;
    } catch (error) {
      obs.subscribeError = /** @type {any} */ (error).code || /** @type {Error} */ (error).message;
      return obs;
    }
    for (let seq = 0; seq < count && !obs.droppedAfterOpen; seq++) {
      if (seq) await sleep(spacingMs);
      obs.sent++;
      obs.sentAt.push(tap.at());
      publishDiagnose(run.prefix, topic, "probe", { seq, sent: now() }).catch(() => { obs.publishErrors++; });
    }
    const until = now() + waitMs;
    while (obs.received.length + obs.publishErrors < obs.sent && now() < until && !obs.droppedAfterOpen) await sleep(25);
    const idleMs = run.idleMs ?? 0;
    if (idleMs > 0 && !obs.droppedAfterOpen) {
      holding = true;
      obs.idleFrom = tap.at();
      if (run.onHold) run.onHold(obs);
      obs.idle = await holdIdle(tap, idleMs, () => left);
    }
    return obs;
  } finally {
    closing = true;
    c.close();
  }
}

/** @param {number | null} ms */
const fmt = (ms) => (ms === null ? "-" : `${Math.round(ms)} ms`);

/**
 * Whether the publications arrived late and together: held back on the way, then let go at
 * once. The CLI's rule (transports/diagnose/verdict.py `buffered`): every publication arrived,
 * the sends span at least 200 ms, the arrivals span less than a third of that, and the first
 * arrived more than half that span after it was sent.
 * @param {Observation} obs
 */
export function lateBurst(obs) {
  const sent = obs.sentAt;
  if (sent.length < 2 || obs.received.length !== sent.length) return false;
  const arrived = sent.map((_, seq) => obs.received.find((r) => r.seq === seq));
  if (arrived.some((r) => !r)) return false;
  const times = arrived.map((r) => /** @type {{at: number}} */ (r).at);
  const span = sent[sent.length - 1] - sent[0];
  if (span < 200) return false;
  return Math.max(...times) - Math.min(...times) < span / 3 && times[0] - sent[0] > span / 2;
}

/**
 * The verdict id (diagnose.json) the observations of one transport lead to, and whether the
 * transport works. The browser cannot see HTTP statuses of WebSocket handshakes and stream
 * requests, so the order matters: what the page knows for sure first, inferences after.
 * @param {Observation} obs
 * @returns {{verdict: string, ok: boolean}}
 */
export function judge(obs) {
  const { tap, transport } = obs;
  const n = tap.negotiate;
  const fail = (/** @type {string} */ verdict) => ({ verdict, ok: false });
  if (obs.outcome === "unusable") return fail("not_offered");
  if (n.status === null) return fail(n.network ? "unreachable" : "timeout");
  if (n.status === 403) return fail("origin_refused");
  if (n.status !== 200) return fail("negotiate_failed");
  if (n.transports && !n.transports.includes(transport)) return fail("not_offered");
  if ((obs.fallbackReason || "").includes("not offered")) return fail("not_offered");
  if (obs.outcome !== "open") {
    if (transport === "websocket") {
      if (tap.ws.opened !== null && tap.ws.firstMessage === null) return fail("upgrade_silent");
      if (tap.ws.opened !== null) return fail("idle_cut");
      if (tap.ws.error !== null || tap.ws.closed !== null) return fail("upgrade_refused");
      return fail("timeout");
    }
    if (transport === "sse") {
      if (tap.sse.refused) return fail("http_error");
      if (tap.sse.firstEvent === null) return fail("sse_buffered");
      return fail("timeout");
    }
    if (tap.poll.statuses.some((status) => status !== 200)) return fail("http_error");
    if (tap.poll.network) return fail("unreachable");
    return fail("timeout");
  }
  if (obs.droppedAfterOpen) return fail("idle_cut");
  if (obs.roundTripMs === null) return fail(obs.subscribeError === "timeout" ? "timeout" : "negotiate_failed");
  const expected = obs.sent - obs.publishErrors;
  const missing = expected - obs.received.length;
  if (transport === "sse" && (lateBurst(obs) || (missing > 0 && expected > 0))) return fail("sse_buffered");
  if (missing > 0 && expected > 0) return fail("timeout");
  if (idleCut(obs)) return fail("idle_cut");
  return { verdict: "ok", ok: true };
}

/**
 * Seconds the server may stay silent on this transport: its heartbeat, on long-poll its poll
 * window (a held poll answers empty then), as the CLI judges.
 * @param {Observation} obs
 */
export function idleLimit(obs) {
  const n = obs.tap.negotiate;
  return (obs.transport === "longpoll" ? n.pollWindow : n.heartbeat) / 1000;
}

/**
 * The CLI's rule: the idle hold was cut (not closed by the server) after less silence than the
 * server's heartbeat, which would have kept the connection busy. When the silence is only an
 * upper bound (a held poll the browser asked again unseen after a cut: each time the server
 * holds it a whole poll window again), the cut itself came before the empty answer that ends a
 * poll window: idle_cut too.
 * @param {Observation} obs
 */
export const idleCut = (obs) =>
  Boolean(obs.idle && obs.idle.end === "cut" && (obs.idle.upper || obs.idle.silence < idleLimit(obs)));

/**
 * The idle hold in words (the report's "observed"). @param {Observation} obs @returns {string | null}
 */
export function describeIdle(obs) {
  const idle = obs.idle;
  if (!idle) return null;
  const limit = idleLimit(obs);
  const word = obs.transport === "longpoll" ? "poll window" : "heartbeat";
  const s = idle.silence.toFixed(1);
  const detail = idle.detail ? `: ${idle.detail}` : "";
  if (idleCut(obs)) {
    return `cut after ${idle.upper ? "at most " : ""}${s} s idle (heartbeat is ${limit} s${obs.transport === "longpoll" ? ", the poll window" : ""})${detail}`;
  }
  if (idle.end === "heartbeat") return `idle: kept open ${s} s, until the server's ${word}`;
  if (idle.end === "closed") return `idle: the server closed the connection after ${s} s${detail}`;
  if (idle.end === "cut") return `idle: cut after ${s} s, beyond the server's ${word} of ${limit} s${detail}`;
  return `idle: kept open ${s} s (${idle.planned} s asked; a cut after a longer silence, below the server's ${word} of ${limit} s, is not ruled out)`;
}

/**
 * What the page saw, one line per fact, for the report's "observed" (as the CLI's).
 * @param {Observation} obs @returns {string[]}
 */
export function describe(obs) {
  const { tap, transport } = obs;
  const parts = [];
  const n = tap.negotiate;
  if (obs.outcome === "unusable") return [`this browser cannot run ${transport}: ${obs.fallbackReason}`];
  if (n.status === null) parts.push(n.network ? "negotiate got no answer (network error)" : "negotiate got no answer in time");
  else parts.push(`negotiate answered HTTP ${n.status}${n.code ? ` (${n.code})` : ""} in ${fmt(n.ms)}`);
  if (n.status === 200 && n.transports && !n.transports.includes(transport)) parts.push(`the server offers ${n.transports.join(", ") || "nothing"}`);
  if (transport === "websocket" && tap.ws.created !== null) {
    if (tap.ws.opened === null) {
      parts.push(tap.ws.error !== null || tap.ws.closed !== null
        ? `the WebSocket failed before it opened (close ${tap.ws.closeCode ?? 1006} after ${fmt(tap.ws.closed ?? tap.ws.error)}); a browser does not show why`
        : "the WebSocket neither opened nor failed");
    } else {
      parts.push(`the WebSocket opened in ${fmt(tap.ws.opened - tap.ws.created)}`);
      parts.push(tap.ws.firstMessage === null ? "then nothing came through it" : `first frame at ${fmt(tap.ws.firstMessage)}`);
    }
  }
  if (transport === "sse" && tap.sse.created !== null) {
    if (tap.sse.refused) parts.push("the event stream request was answered with something other than a stream");
    else if (tap.sse.firstEvent === null) {
      parts.push(tap.sse.opened === null ? "the event stream sent neither headers nor events" : "the event stream's headers came, but no event");
    } else parts.push(`first event at ${fmt(tap.sse.firstEvent)}`);
  }
  if (transport === "longpoll" && tap.poll.count + tap.poll.network > 0) {
    const bad = tap.poll.statuses.filter((status) => status !== 200);
    if (bad.length) parts.push(`a poll was answered HTTP ${bad[0]}`);
    else if (tap.poll.firstAnswer !== null) parts.push(`first poll answered at ${fmt(tap.poll.firstAnswer)}`);
    // (A poll lost during the idle hold is the hold's line.)
    const from = obs.idleFrom;
    if (tap.poll.network && (from === null || tap.drops.some((d) => d.upper && d.at < from))) parts.push("a poll failed on the network");
  }
  if (obs.outcome !== "open" && obs.fallbackReason) parts.push(`the client said "${obs.fallbackReason}"`);
  if (obs.outcome === "open") {
    parts.push(`open at ${fmt(obs.openMs)}`);
    if (obs.roundTripMs !== null) parts.push(`round trip (subscribe) ${fmt(obs.roundTripMs)}`);
    else if (obs.subscribeError) parts.push(`subscribing to the diagnose topic failed (${obs.subscribeError})`);
    if (obs.sent) {
      const lat = obs.received.map((r) => r.latency);
      let line = `${obs.received.length} of ${obs.sent} publications (${obs.spacingMs} ms apart) arrived`;
      if (lat.length) line += `, latency ${Math.round(Math.min(...lat))}-${Math.round(Math.max(...lat))} ms`;
      if (lateBurst(obs)) line += ", late and together (held back, then let go)";
      parts.push(line);
    }
    if (obs.publishErrors) parts.push(`${obs.publishErrors} publications were refused by the publish endpoint`);
    if (obs.droppedAfterOpen) parts.push(`the connection closed during the check (${obs.droppedAfterOpen.code}${obs.droppedAfterOpen.reason ? ` ${obs.droppedAfterOpen.reason}` : ""})`);
    const idle = describeIdle(obs);
    if (idle) parts.push(idle);
  }
  return parts;
}

/**
 * @typedef {{title: string, cause: string, fix: string}} VerdictText
 * @typedef {{version: number, verdicts: Record<string, VerdictText>}} Catalogue
 * @typedef {{ok: boolean, first_message_ms: number | null, verdict: string, title: string,
 *   observed: string[], cause: string, fix: string}} TransportReport
 * @typedef {{url: string, best: string | null, transports: Record<string, TransportReport>,
 *   userAgent: string, when: string}} Report
 */

/**
 * ms from connect() (which negotiates at once) to the first frame on the transport, as the CLI
 * counts it: the WebSocket's first message, the stream's first event, the first poll answer
 * (each carries the HELLO); null when none came.
 * @param {Observation} obs @returns {number | null}
 */
export function firstFrame(obs) {
  const { tap } = obs;
  const at = obs.transport === "websocket" ? tap.ws.firstMessage : obs.transport === "sse" ? tap.sse.firstEvent : tap.poll.firstAnswer;
  return at === null ? null : Math.round(at * 10) / 10;
}

/**
 * One transport's part of the report.
 * @param {Observation} obs @param {Catalogue | null} catalogue
 * @returns {TransportReport}
 */
export function transportReport(obs, catalogue) {
  const { verdict, ok } = judge(obs);
  const text = (catalogue && catalogue.verdicts && catalogue.verdicts[verdict]) || { title: verdict, cause: "", fix: "" };
  return {
    ok,
    first_message_ms: firstFrame(obs),
    verdict,
    title: text.title,
    observed: describe(obs),
    cause: text.cause,
    fix: text.fix,
  };
}

/**
 * The whole report: the CLI's shape (`url`, `best`, `transports`) plus `userAgent` and `when`.
 * @param {string} url @param {Observation[]} observations @param {Catalogue | null} catalogue
 * @param {{userAgent?: string, when?: Date}} [context]
 * @returns {Report}
 */
export function buildReport(url, observations, catalogue, context = {}) {
  /** @type {Record<string, TransportReport>} */
  const transports = {};
  for (const obs of observations) transports[obs.transport] = transportReport(obs, catalogue);
  const best = TRANSPORT_ORDER.find((name) => transports[name] && transports[name].ok) || null;
  const nav = /** @type {any} */ (globalThis).navigator;
  return {
    url,
    best,
    transports,
    userAgent: context.userAgent ?? (nav ? String(nav.userAgent) : ""),
    when: (context.when || new Date()).toISOString(),
  };
}

/**
 * A random run id for `$diagnose:<id>` topics (22 characters of A-Z a-z 0-9 _ -).
 * @returns {string}
 */
export function runId() {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  const bytes = new Uint8Array(22);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (byte) => alphabet[byte & 63]).join("");
}
