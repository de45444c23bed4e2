// @ts-check
/**
 * Browser client of `transports`, wire protocol v1 (docs/protocol.md is the contract; this file
 * relies on nothing else). One ES module, no build step, no dependencies.
 *
 *     <script type="module">
 *       import { connect } from "/realtime/client.js";
 *       const rt = connect("/realtime");
 *       const off = rt.subscribe("news", (pub) => console.log(pub.event, pub.data));
 *       const answer = await rt.send("chat.send", { text: "hi" });
 *     </script>
 *
 * Loading the module also sets `globalThis.Transports = { connect }`, so code that is not a module
 * can use `Transports.connect(...)` once the module has run (module scripts are deferred: call it
 * from a `load`/`DOMContentLoaded` handler, not from an inline classic script above it).
 *
 * Sections: constants, codec, timers/backoff, transports (WebSocket, SSE, long-poll: each looks
 * like a WebSocket), client.
 */

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

/** Protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** Frame type numbers (protocol §2). A binary frame's type is its text type + 16 (§2.2). */
export const FRAME = Object.freeze({
  HELLO: 0, PUB: 1, MSG: 2, EVENT: 3, REPLY: 4, SUB: 5, UNSUB: 6, PING: 7, PONG: 8, CLOSE: 9,
  PUBLISH: 10,
});

/** Added to a frame type when its data is binary (§2.2). */
const BINARY = 16;

/** Position of `data` in each frame type that can carry binary data. */
const DATA_INDEX = /** @type {Readonly<Record<number, number>>} */ (
  Object.freeze({ 1: 3, 2: 2, 3: 3, 4: 3, 10: 4 })
);

/** readyState values shared by the three transports (the WebSocket ones). */
export const READY = Object.freeze({ CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });

/** @typedef {"websocket" | "sse" | "longpoll"} TransportName */
/** @typedef {"connecting" | "open" | "reconnecting" | "closed"} State */

/** @type {readonly TransportName[]} */
const TRANSPORT_NAMES = Object.freeze(["websocket", "sse", "longpoll"]);

/** Defaults for {@link connect} options. */
export const DEFAULTS = Object.freeze({
  transports: TRANSPORT_NAMES,
  deadlines: Object.freeze({ websocket: 2500, sse: 2500, longpoll: 10000 }),
  backoff: Object.freeze({ min: 500, max: 20000 }),
  failback: Object.freeze({ min: 30000, max: 600000 }),
  sendTimeout: 10000,
  maxQueue: 1000,
  rememberMs: 10 * 60 * 1000,
});

/**
 * A client that receives nothing for heartbeat + this considers the connection dead (§9); on
 * long-poll for max(heartbeat, pollWindow) + this, and every poll response counts, an empty one
 * (the long-poll heartbeat, §6.1) included.
 */
const LIVENESS_SLACK_MS = 10000;
/** A connection open this long resets the reconnect backoff. */
const STABLE_AFTER_MS = 5000;
/**
 * After a dropped SSE stream or a failed poll (network error), the HTTP transports keep trying
 * their own session (§5.3, §6.1) for the server's `retry` plus this long, then give it up.
 */
const REATTACH_GRACE_MS = 2500;
/** How many entries stats.fallbacks and stats.switches keep. */
const HISTORY = 20;
/** Event and topic names (§2.1); `$` topics are reserved and never match. */
const NAME_RE = /^[A-Za-z0-9_\-.:/@=+]+$/;
/** @param {unknown} name @param {number} max @returns {boolean} */
const validName = (name, max) => typeof name === "string" && name.length <= max && NAME_RE.test(name);

// ---------------------------------------------------------------------------------------------
// Codec (§2): frames are JSON arrays; binary data travels as base64 (text) or after a NUL (WS)
// ---------------------------------------------------------------------------------------------

/** @typedef {any[]} Frame */

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** The bytes of a binary value, or null when it is not binary. @param {unknown} value @returns {Uint8Array | null} */
function asBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return null;
}

/**
 * Standard base64 (with padding) of some bytes.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, /** @type {any} */ (bytes.subarray(i, i + 0x8000)));
  }
  return btoa(text);
}

/**
 * Bytes from standard base64.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * Encode one frame. Binary data (Uint8Array, ArrayBuffer or any view) switches the frame to its
 * binary type (+16): with `binary` true it becomes a WebSocket binary message (JSON with null
 * data, one NUL byte, the raw bytes), otherwise JSON text with the data as base64.
 * @param {Frame} frame e.g. `[3, 7, "upload", new Uint8Array([0, 1])]`
 * @param {boolean} [binary] whether the transport carries binary messages (WebSocket)
 * @returns {string | Uint8Array}
 */
export function encodeFrame(frame, binary = false) {
  const index = DATA_INDEX[frame[0]];
  const bytes = index === undefined ? null : asBytes(frame[index]);
  if (!bytes) return JSON.stringify(frame);
  const copy = frame.slice();
  copy[0] = frame[0] + BINARY;
  if (!binary) {
    copy[index] = toBase64(bytes);
    return JSON.stringify(copy);
  }
  copy[index] = null;
  const head = utf8Encoder.encode(JSON.stringify(copy));
  const message = new Uint8Array(head.length + 1 + bytes.length);
  message.set(head, 0);
  message[head.length] = 0;
  message.set(bytes, head.length + 1);
  return message;
}

/**
 * Decode one frame: JSON text, a WebSocket binary message, or an already parsed array (a
 * long-poll response). Binary frames come back with their text type and a Uint8Array as data.
 * @param {string | ArrayBuffer | ArrayBufferView | any[]} input
 * @returns {Frame}
 * @throws {TypeError | SyntaxError} when the input is not a frame
 */
export function decodeFrame(input) {
  /** @type {unknown} */
  let parsed;
  /** @type {Uint8Array | null} */
  let raw = null;
  if (typeof input === "string") parsed = JSON.parse(input);
  else if (Array.isArray(input)) parsed = input.slice();
  else {
    const bytes = asBytes(input);
    if (!bytes) throw new TypeError("a frame is a string, an array or bytes");
    const nul = bytes.indexOf(0);
    if (nul < 0) throw new TypeError("binary message without a NUL separator");
    parsed = JSON.parse(utf8Decoder.decode(bytes.subarray(0, nul)));
    raw = bytes.slice(nul + 1);
  }
  if (!Array.isArray(parsed) || !Number.isInteger(parsed[0])) {
    throw new TypeError("a frame is a JSON array starting with its type");
  }
  const frame = parsed;
  if (frame[0] >= BINARY) {
    const type = frame[0] - BINARY;
    const index = DATA_INDEX[type];
    if (index === undefined) throw new TypeError(`frame type ${frame[0]} cannot be binary`);
    if (raw) frame[index] = raw;
    else if (typeof frame[index] === "string") frame[index] = fromBase64(frame[index]);
    else throw new TypeError("binary frame without base64 data");
    frame[0] = type;
  } else if (raw) {
    throw new TypeError(`frame type ${frame[0]} sent as a binary message`);
  }
  return frame;
}

/** UTF-8 byte length of a string, or the length of bytes. @param {string | Uint8Array} value */
const byteLength = (value) => (typeof value === "string" ? utf8Encoder.encode(value).length : value.length);

/** An Error with a `code` (a §10.3 status, "timeout", "closed"...). @param {string} code @param {string} [message] */
function codeError(code, message) {
  const error = /** @type {Error & {code: string}} */ (new Error(message ? `${code}: ${message}` : code));
  error.code = code;
  return error;
}

// ---------------------------------------------------------------------------------------------
// Timers, backoff, deadlines, close codes
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {Object} Clock injectable time source (tests use a fake one)
 * @property {(fn: () => void, ms: number) => any} setTimeout
 * @property {(id: any) => void} clearTimeout
 * @property {() => number} now milliseconds, like Date.now()
 */

/** @type {Clock} */
const realClock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
  now: () => Date.now(),
};

/**
 * Full-jitter exponential backoff: a delay drawn uniformly from [0, min(max, min * 2^attempt)].
 * @param {number} attempt 0 for the first retry
 * @param {{min: number, max: number}} backoff
 * @param {() => number} [random] returns [0, 1)
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, backoff, random = Math.random) {
  const cap = Math.min(backoff.max, backoff.min * 2 ** Math.max(0, attempt));
  return random() * cap;
}

/**
 * Delay before reconnect attempt `attempt`: full-jitter backoff, shifted up so that it is never
 * shorter than the server's `retry` hint (so a restarting server is not hit by the whole herd at
 * once), and never longer than max(backoff.max, hint).
 * @param {number} attempt
 * @param {{min: number, max: number}} backoff
 * @param {number} hint the negotiate response's `retry` (ms), 0 when unknown
 * @param {() => number} [random]
 * @returns {number} milliseconds
 */
export function reconnectDelay(attempt, backoff, hint, random = Math.random) {
  const jitter = backoffDelay(attempt, backoff, random);
  if (!(hint > 0)) return jitter;
  return Math.min(Math.max(backoff.max, hint), hint + jitter);
}

/**
 * What a close code tells the client to do (§10.1): 1001, 1005, 1006, 1011-1015 and 4000-4499
 * reconnect; every other code is terminal (the same set as the Python client's
 * `is_reconnect_code`). 1005 is what a browser reports for a close frame without a status, as a
 * proxy may send; 1014 and 1015 are a bad gateway and a failed TLS handshake.
 * @param {number} code
 * @returns {"reconnect" | "stop"}
 */
export function classifyClose(code) {
  if (code === 1001 || code === 1005 || code === 1006 || (code >= 1011 && code <= 1015)) return "reconnect";
  if (code >= 4000 && code <= 4499) return "reconnect";
  return "stop";
}

/**
 * Milliseconds left before a connection that last received something at `lastReceived` is
 * considered dead (§9: heartbeat + 10 s of silence); zero or less means dead.
 * @param {number} lastReceived
 * @param {number} now
 * @param {number} heartbeat the longest the server may stay silent (ms): its PING interval, on
 *   long-poll max(heartbeat, pollWindow)
 * @returns {number}
 */
export function livenessRemaining(lastReceived, now, heartbeat) {
  return lastReceived + heartbeat + LIVENESS_SLACK_MS - now;
}

/**
 * Run `onExpire` after `ms` unless cancelled first.
 * @param {Clock} clock
 * @param {number} ms
 * @param {() => void} onExpire
 * @returns {{cancel: () => boolean, readonly expired: boolean}} cancel returns false when too late
 */
export function startDeadline(clock, ms, onExpire) {
  let state = "running";
  const id = clock.setTimeout(() => {
    if (state !== "running") return;
    state = "expired";
    onExpire();
  }, ms);
  return {
    cancel() {
      if (state !== "running") return false;
      state = "cancelled";
      clock.clearTimeout(id);
      return true;
    },
    get expired() { return state === "expired"; },
  };
}

/** @param {unknown} value @param {number} fallback @returns {number} value if a positive number */
const positive = (value, fallback) => (Number(value) > 0 ? Number(value) : fallback);

/** Resolve after `ms` on `clock`. @param {Clock} clock @param {number} ms @returns {Promise<void>} */
const sleep = (clock, ms) => new Promise((resolve) => clock.setTimeout(resolve, ms));

/** Retry-After in ms, or null. @param {{headers?: {get(name: string): string | null}}} res */
function retryAfterMs(res) {
  const value = res.headers && res.headers.get ? res.headers.get("Retry-After") : null;
  const seconds = value == null ? NaN : Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : null;
}

/** The close code the client uses when a poll or POST fails with `status`. @param {number} status */
function httpFailure(status) {
  if (status === 404 || status === 401) return { code: 4004, reason: `session gone (HTTP ${status})` };
  if (status === 413) return { code: 1009, reason: "message too big (HTTP 413)" };
  if (status === 403) return { code: 4503, reason: "forbidden (HTTP 403)" };
  if (status === 400 || status === 415) return { code: 4500, reason: `bad request (HTTP ${status})` };
  return { code: 1011, reason: `server error (HTTP ${status})` };
}

// ---------------------------------------------------------------------------------------------
// Transports: each looks like a WebSocket (readyState, onopen/onmessage/onerror/onclose, send,
// close), but onmessage gets decoded frames, send takes frames, and onclose gets {code, reason}.
// A transport answers PING itself and turns a CLOSE frame into onclose. After close() it calls
// nothing any more.
// ---------------------------------------------------------------------------------------------

/** @typedef {{code: number, reason: string}} CloseInfo */

/** Shared surface of the three transports. */
class BaseTransport {
  /** @param {number} maxMessage largest frame the server accepts (limits.message) */
  constructor(maxMessage) {
    /** @type {number} */
    this.readyState = READY.CONNECTING;
    this.maxMessage = maxMessage;
    this.binary = false;
    /** @type {() => void} */
    this.onopen = () => {};
    /** @type {(frame: Frame) => void} */
    this.onmessage = () => {};
    /** @type {(error: Error) => void} */
    this.onerror = () => {};
    /** @type {(info: CloseInfo) => void} */
    this.onclose = () => {};
    /** Called on every poll response, frames or none: the server was heard from (§6.1, §9). */
    this.onalive = () => {};
  }

  /** Encode a frame, refusing one larger than limits.message. @param {Frame} frame */
  encode(frame) {
    const encoded = encodeFrame(frame, this.binary);
    if (byteLength(encoded) > this.maxMessage) {
      throw codeError("payload_too_large", `frame exceeds ${this.maxMessage} bytes`);
    }
    return encoded;
  }

  opened() {
    if (this.readyState !== READY.CONNECTING) return;
    this.readyState = READY.OPEN;
    this.onopen();
  }

  /**
   * Handle one incoming frame: answer PING, turn CLOSE into onclose, pass the rest on.
   * @param {any} raw @param {() => void} pong sends the PONG
   */
  receive(raw, pong) {
    let frame;
    try {
      frame = decodeFrame(raw);
    } catch (error) {
      return this.onerror(/** @type {Error} */ (error));
    }
    if (frame[0] === FRAME.CLOSE) return this.end(Number(frame[1]) || 1006, String(frame[2] ?? ""));
    if (frame[0] === FRAME.PING) pong();
    this.onmessage(frame);
  }

  /** Mark closed and detach every callback. @returns {boolean} false if already closed */
  detach() {
    if (this.readyState === READY.CLOSED) return false;
    this.readyState = READY.CLOSED;
    this.onopen = this.onmessage = this.onerror = this.onclose = this.onalive = () => {};
    return true;
  }

  /** Close and report it once. @param {number} code @param {string} reason */
  end(code, reason) {
    const onclose = this.onclose;
    if (this.close()) onclose({ code, reason });
  }

  /** @returns {boolean} */
  close() { return this.detach(); }

  /** Tell the server the client leaves for good (a CLOSE frame, §2), best effort. */
  leave() {}
}

/** WebSocket transport (§4): one frame per message, binary frames as binary messages. */
export class WebSocketTransport extends BaseTransport {
  /**
   * @param {string} url ws:// or wss:// URL including `?ticket=`
   * @param {{WebSocket: any, maxMessage: number}} options
   */
  constructor(url, options) {
    super(options.maxMessage);
    this.binary = true;
    const ws = (this.ws = new options.WebSocket(url));
    ws.binaryType = "arraybuffer";
    ws.onopen = () => this.opened();
    ws.onmessage = (/** @type {{data: any}} */ event) => this.receive(event.data, () => ws.send("[8]"));
    ws.onerror = () => this.onerror(new Error("websocket error"));
    ws.onclose = (/** @type {CloseInfo} */ event) => this.end(event.code || 1006, event.reason || "");
  }

  /** @param {Frame} frame */
  send(frame) { this.ws.send(this.encode(frame)); }

  leave() {
    if (this.readyState !== READY.CLOSED && this.ws.readyState === 1) {
      try { this.ws.send(`[${FRAME.CLOSE},1000,"closed by the client"]`); } catch (_) { /* closing */ }
    }
  }

  close() {
    if (!this.detach()) return false;
    const ws = this.ws;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try { ws.close(1000, ""); } catch (_) { /* already closing */ }
    return true;
  }
}

/**
 * @typedef {{fetch: Fetch, clock: Clock, maxMessage: number, batch: number, body: number,
 *   EventSource?: any, reattachMs?: number}} HttpOptions
 *   reattachMs: how long an open transport keeps trying its own session after a network failure
 */

/**
 * Base of SSE and long-poll: the uplink (§6.2) POSTs frames as JSON arrays, batched per tick
 * up to limits.batch frames / limits.body bytes, one POST in flight at a time.
 */
class HttpTransport extends BaseTransport {
  /**
   * @param {string} sendUrl
   * @param {string} token the secret session token (X-Realtime-Session)
   * @param {HttpOptions} options
   */
  constructor(sendUrl, token, options) {
    super(options.maxMessage);
    this.sendUrl = sendUrl;
    this.token = token;
    this.options = options;
    /** @type {string[]} encoded frames waiting for a POST */
    this.outbox = [];
    this.posting = false;
  }

  /** @param {Frame} frame */
  send(frame) { this.push(/** @type {string} */ (this.encode(frame))); }

  /** @param {string} text one encoded frame */
  push(text) {
    this.outbox.push(text);
    if (this.outbox.length === 1 && !this.posting) queueMicrotask(() => this.flush());
  }

  async flush() {
    if (this.posting) return;
    this.posting = true;
    while (this.outbox.length && this.readyState !== READY.CLOSED) {
      const failure = await this.post(this.takeBatch());
      if (failure) this.end(failure.code, failure.reason);
    }
    this.posting = false;
  }

  leave() {
    if (this.readyState === READY.CLOSED) return;
    const headers = { "Content-Type": "application/json", "X-Realtime-Session": this.token };
    const body = `[[${FRAME.CLOSE},1000,"closed by the client"]]`;
    // keepalive: the request outlives the page when close() runs on unload
    try {
      Promise.resolve(this.options.fetch(this.sendUrl, { method: "POST", headers, body, cache: "no-store", keepalive: true }))
        .catch(() => {});
    } catch (_) { /* best effort: the session expires anyway */ }
  }

  /** @returns {string[]} the next batch, taken off the outbox */
  takeBatch() {
    let count = 0;
    let bytes = 2;
    while (count < this.outbox.length && count < this.options.batch) {
      const size = byteLength(this.outbox[count]) + (count ? 1 : 0);
      if (count && bytes + size > this.options.body) break;
      bytes += size;
      count++;
    }
    return this.outbox.splice(0, count);
  }

  /**
   * POST one batch, retrying 409/429/503 a few times.
   * @param {string[]} batch
   * @returns {Promise<CloseInfo | null>} null on success (or when closed meanwhile)
   */
  async post(batch) {
    const body = `[${batch.join(",")}]`;
    const headers = { "Content-Type": "application/json", "X-Realtime-Session": this.token };
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await this.options.fetch(this.sendUrl, { method: "POST", headers, body, cache: "no-store" });
      } catch (_) {
        return { code: 1006, reason: "send failed: network error" };
      }
      if (this.readyState === READY.CLOSED || (res.status >= 200 && res.status < 300)) return null;
      if (![409, 429, 503].includes(res.status) || attempt >= 5) return httpFailure(res.status);
      await sleep(this.options.clock, retryAfterMs(res) ?? 100 * 2 ** attempt);
    }
  }
}

/** Server-Sent Events transport (§5): EventSource down, POST /send up. */
export class SSETransport extends HttpTransport {
  /**
   * @param {string} url stream URL including `?ticket=`
   * @param {string} sendUrl
   * @param {string} token secret session token
   * @param {HttpOptions} options
   */
  constructor(url, sendUrl, token, options) {
    super(sendUrl, token, options);
    /** sequence number of the last event received (`id:`), 0 before any */
    this.lastSeq = 0;
    /** @type {any} pending "reattach or give up" timer */
    this.reattach = null;
    const es = (this.es = new options.EventSource(url));
    es.onopen = () => {
      this.reattached();
      this.opened();
    };
    es.onmessage = (/** @type {{data: string, lastEventId?: string}} */ event) => {
      this.reattached();
      const seq = Number(event.lastEventId);
      if (event.lastEventId && Number.isSafeInteger(seq)) this.lastSeq = seq;
      this.receive(event.data, () => this.push(this.lastSeq ? `[8,${this.lastSeq}]` : "[8]"));
    };
    es.onerror = () => {
      // While CONNECTING the EventSource reattaches by itself with Last-Event-ID (§5.3); CLOSED
      // means it gave up (404, 409, a non-stream response): the session is lost. A server that
      // is down leaves it CONNECTING for ever (it retries every `retry:` ms), so the reattach
      // gets a bounded time before the session is given up and the client reconnects.
      if (es.readyState === 2) return this.end(1006, "event stream closed");
      const ms = options.reattachMs;
      if (this.readyState === READY.OPEN && ms && ms > 0 && this.reattach === null) {
        this.reattach = options.clock.setTimeout(() => {
          this.reattach = null;
          this.end(1006, `event stream not reattached within ${ms} ms`);
        }, ms);
      }
      this.onerror(new Error("event stream interrupted, reattaching"));
    };
  }

  /** The stream is back (open, or an event arrived): cancel the reattach timer. */
  reattached() {
    if (this.reattach === null) return;
    this.options.clock.clearTimeout(this.reattach);
    this.reattach = null;
  }

  close() {
    if (!this.detach()) return false;
    this.reattached();
    this.es.onopen = this.es.onmessage = this.es.onerror = null;
    this.es.close();
    return true;
  }
}

/** Long-polling transport (§6): GET /poll?cursor=N down, POST /send up. */
export class LongPollTransport extends HttpTransport {
  /**
   * @param {string} pollUrl
   * @param {string} sendUrl
   * @param {string} token secret session token
   * @param {HttpOptions} options
   */
  constructor(pollUrl, sendUrl, token, options) {
    super(sendUrl, token, options);
    this.pollUrl = pollUrl;
    /** sequence number of the last frame processed */
    this.cursor = 0;
    /** @type {AbortController | null} */
    this.controller = null;
    queueMicrotask(() => this.loop());
  }

  async loop() {
    /** @type {number | null} when the polls started failing on the network */
    let lostAt = null;
    for (let failures = 0, lost = 0; this.readyState !== READY.CLOSED;) {
      const url = new URL(this.pollUrl);
      url.searchParams.set("cursor", String(this.cursor));
      this.controller = typeof AbortController === "function" ? new AbortController() : null;
      const headers = { "X-Realtime-Session": this.token };
      let res;
      let body;
      try {
        res = await this.options.fetch(url.href, {
          method: "GET", headers, cache: "no-store", signal: this.controller ? this.controller.signal : undefined,
        });
        if (res.status === 200 && this.readyState !== READY.CLOSED) body = await res.json();
      } catch (_) {
        if (this.readyState === READY.CLOSED) return;
        // A response lost in transit is not lost (§6.1): an open session polls again with the
        // same cursor for a bounded time (a proxy restart, a network blip), then gives up.
        const now = this.options.clock.now();
        if (lostAt === null) lostAt = now;
        const left = this.readyState === READY.OPEN ? (this.options.reattachMs || 0) - (now - lostAt) : 0;
        if (left <= 0) return this.end(1006, "poll failed: network error");
        await sleep(this.options.clock, Math.min(left, 250 * 2 ** lost++));
        continue;
      }
      lostAt = null;
      lost = 0;
      if (this.readyState === READY.CLOSED) return;
      if (res.status !== 200) {
        // 408/429/502/503/504: a proxy timeout or overload; poll again a few times (§6.1).
        if (![408, 429, 502, 503, 504].includes(res.status) || failures >= 5) {
          const failure = httpFailure(res.status);
          return this.end(failure.code, failure.reason);
        }
        await sleep(this.options.clock, retryAfterMs(res) ?? 500 * 2 ** failures++);
        continue;
      }
      failures = 0;
      if (!body || !Array.isArray(body.frames) || !Number.isSafeInteger(body.cursor)) {
        return this.end(1011, "malformed poll response");
      }
      // Every poll response is news from the server: an empty one is the long-poll heartbeat,
      // sent when the poll window passes with nothing to send (§6.1, §9).
      this.onalive();
      this.opened();
      for (const raw of body.frames) {
        if (this.readyState === READY.CLOSED) return;
        this.receive(raw, () => this.push("[8]"));
      }
      this.cursor = body.cursor;
    }
  }

  close() {
    if (!this.detach()) return false;
    if (this.controller) this.controller.abort();
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {(url: string, init?: any) => Promise<{status: number, ok?: boolean,
 *   headers?: {get(name: string): string | null}, json(): Promise<any>}>} Fetch
 */

/**
 * Options of {@link connect}. Every field is optional.
 * @typedef {Object} Options
 * @property {TransportName[]} [transports] transports to use, best first
 *   (default `["websocket", "sse", "longpoll"]`)
 * @property {Partial<Record<TransportName, number>>} [deadlines] ms a new transport gets to prove
 *   itself: WebSocket open + PING/PONG round trip (2500), SSE first event (2500), long-poll
 *   first poll response (10000). Once open, a dropped SSE stream or a poll that failed on the
 *   network gets the server's `retry` + 2.5 s to reach its own session again (§5.3, §6.1)
 *   before the client gives the session up and reconnects
 * @property {{min?: number, max?: number}} [backoff] reconnect backoff in ms (500, 20000)
 * @property {{min?: number, max?: number} | false} [failback] background re-probe of a better
 *   transport while on a worse one: first after about `min` ms, doubling up to `max`
 *   (30000, 600000); false disables it
 * @property {string | (() => string | Promise<string>)} [token] bearer token for negotiate;
 *   a function is called again before every negotiate
 * @property {number} [sendTimeout] ms send()/publish() wait for their REPLY once sent (10000)
 * @property {number} [maxQueue] sends kept while not connected; more reject with
 *   code "queue_full" (1000)
 * @property {Storage | null} [storage] where the transport that worked is remembered
 *   (sessionStorage, else localStorage; null to disable)
 * @property {number} [rememberMs] how long that memory is trusted (10 minutes)
 * @property {any} [WebSocket] constructor to use instead of the global one (tests)
 * @property {any} [EventSource] constructor to use instead of the global one (tests)
 * @property {Fetch} [fetch] function to use instead of the global fetch (tests)
 * @property {Clock} [clock] time source (tests)
 * @property {() => number} [random] random source in [0, 1) (tests)
 * @property {any} [window] target of online/pageshow listeners (default: globalThis, tests)
 * @property {any} [document] target of visibilitychange listeners (default: document, tests)
 * @property {{onLine?: boolean}} [navigator] online status source (default: navigator, tests)
 */

/** @typedef {{id: string, topic: string, event: string, data: any, offset: number, epoch: string}} Publication */
/** @typedef {{epoch: string, offset: number}} Position */
/**
 * @typedef {Object} TopicEntry
 * @property {Set<(pub: Publication) => void>} handlers
 * @property {Position | null} position last processed position (§7)
 * @property {Promise<any>} ready
 * @property {(value: any) => void} resolve
 * @property {(error: Error) => void} reject
 */
/**
 * @typedef {Object} SendEntry an EVENT or PUBLISH waiting for its REPLY
 * @property {number} ref
 * @property {Frame} frame
 * @property {(data: any) => void} resolve
 * @property {(error: Error) => void} reject
 * @property {any} timer
 * @property {boolean} sent
 */

/**
 * Counters for debugging, demos and browser tests.
 * @typedef {Object} Stats
 * @property {number} attempts connection cycles started (each negotiates at least once)
 * @property {number} reconnects successful reconnects after a lost connection
 * @property {{from: string, to: string | null, reason: string, at: number}[]} fallbacks last 20
 * @property {{from: string, to: string, at: number}[]} switches failback switches, last 20
 * @property {number} probes background probes of a better transport
 * @property {string | null} lastProbe outcome of the last probe
 * @property {number | null} lastNegotiateMs duration of the last negotiate request
 * @property {CloseInfo | null} lastClose how the last connection ended
 */

/** One session on one transport, from negotiate to close. */
class Conn {
  /** @param {TransportName} name @param {any} neg negotiate response */
  constructor(name, neg) {
    this.name = name;
    this.neg = neg;
    /** @type {any} */
    this.transport = this.liveTimer = null;
    this.accepted = this.closed = false;
    this.lastRx = 0; // when the server was last heard from (a frame, or any poll response)
    this.heartbeat = positive(neg.heartbeat, 25000);
    this.pollWindow = positive(neg.pollWindow, 25000);
    /** @type {((result: {ok: boolean, reason?: string}) => void) | null} */
    this.settle = null;
    /** @type {Set<string>} topics with an ok SUB reply on this session */
    this.subscribed = new Set();
    /** @type {Set<string>} topics whose SUB is waiting for its reply */
    this.subscribing = new Set();
  }

  /**
   * The longest the server may stay silent on this connection (ms): its PING interval, and on
   * long-poll at least the poll window, after which a held poll answers empty (§6.1, §9).
   */
  get silence() {
    return this.name === "longpoll" ? Math.max(this.heartbeat, this.pollWindow) : this.heartbeat;
  }
}

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
    /** @type {Stats} */
    this.stats = { attempts: 0, reconnects: 0, fallbacks: [], switches: [], probes: 0, lastProbe: null,
      lastNegotiateMs: null, lastClose: null };
    this.clientKey = randomKey(o.random);
    this._ref = this._gen = this._attempt = this._probeAttempt = this._retryHint = 0;
    this._connecting = this._waitOnline = this._everOpen = false;
    /** @type {TransportName | null} */
    this._lastTransport = null;
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {Map<string, TopicEntry>} */
    this._topics = new Map();
    /** @type {Map<number, {topic: string, entry: TopicEntry, conn: Conn, since: any}>} */
    this._subs = new Map();
    /** @type {Map<number, SendEntry>} sent, waiting for a REPLY */
    this._inflight = new Map();
    /** @type {SendEntry[]} not sent yet */
    this._queue = [];
    /** @type {Conn | null} current connection, and the background probe of a better transport */
    this._conn = this._probe = null;
    /** @type {Record<string, any>} */
    this._timers = {};
    /** @type {TransportName | null} */
    this._preferred = this._recall();
    if (this._preferred && this._preferred !== o.transports[0]) {
      this.fallbackReason = `${this._preferred}: remembered from an earlier connection`;
    }
    this._bindEnvironment();
    queueMicrotask(() => this._cycle());
  }

  // --- public API ---------------------------------------------------------------------------

  /**
   * Subscribe to a topic. The handler gets `{id, topic, event, data, offset, epoch}` for every
   * publication, once, in order, across reconnects and transport switches.
   * @param {string} topic
   * @param {(pub: Publication) => void} handler
   * @returns {(() => void) & {ready: Promise<{recovered: boolean, epoch: string, offset: number}>}}
   *   call it to unsubscribe; `ready` settles with the first SUB reply (rejects with `.code`)
   */
  subscribe(topic, handler) {
    if (!validName(topic, 200)) throw new TypeError(`invalid topic ${JSON.stringify(topic)}`);
    if (typeof handler !== "function") throw new TypeError("handler must be a function");
    if (this.state === "closed") throw codeError("closed", "client is closed");
    let entry = this._topics.get(topic);
    if (!entry) {
      /** @type {any} */
      const settle = {};
      const ready = new Promise((resolve, reject) => Object.assign(settle, { resolve, reject }));
      ready.catch(() => {});
      entry = { handlers: new Set(), position: null, ready, resolve: settle.resolve, reject: settle.reject };
      this._topics.set(topic, entry);
      const conn = this._conn;
      if (conn && this.state === "open") this._sendSub(conn, topic);
      this._maybeSwitch();
    }
    const own = entry;
    const fn = (/** @type {Publication} */ pub) => handler(pub);
    own.handlers.add(fn);
    const off = () => {
      if (!own.handlers.delete(fn) || own.handlers.size || this._topics.get(topic) !== own) return;
      this._topics.delete(topic);
      for (const conn of [this._conn, this._probe]) {
        if (!conn || !conn.accepted) continue;
        conn.subscribed.delete(topic);
        conn.subscribing.delete(topic);
        conn.transport.send([FRAME.UNSUB, ++this._ref, topic]);
      }
    };
    return Object.assign(off, { ready: own.ready });
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
    return this._request((ref) => [FRAME.EVENT, ref, event, normalizeData(data)]);
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
    return this._request((ref) => [FRAME.PUBLISH, ref, topic, event, normalizeData(data)]);
  }

  /**
   * Listen to client events: "state" `{state, previous}`, "transport" `{transport, from,
   * reason}`, "error" `{type, code?, message?, ...}`, "recovered" `{topic, recovered}`,
   * "message" `{event, data}` (MSG frames).
   * @param {"state" | "transport" | "error" | "recovered" | "message"} name
   * @param {(payload: any) => void} fn
   * @returns {() => void} removes the listener
   */
  on(name, fn) {
    let set = this._listeners.get(name);
    if (!set) this._listeners.set(name, (set = new Set()));
    const own = set;
    const wrapper = (/** @type {any} */ payload) => fn(payload);
    own.add(wrapper);
    return () => { own.delete(wrapper); };
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
    if (this._offline()) return void (this._waitOnline = true);
    this._connecting = true;
    this.stats.attempts++;
    const gen = this._gen;
    try {
      const order = orderTransports(this.options.transports, this._preferred);
      let neg = null;
      for (let i = 0; i < order.length; i++) {
        const name = order[i];
        if (!neg) {
          try {
            neg = await this._negotiate();
          } catch (error) {
            if (gen === this._gen) this._negotiateFailed(/** @type {any} */ (error));
            return;
          }
          if (gen !== this._gen) return;
          this._retryHint = positive(neg.retry, 0);
        }
        const next = order[i + 1] || null;
        if (!offers(neg, name)) {
          this._recordFallback(name, next, `${name}: not offered by the server`);
          continue;
        }
        const conn = new Conn(name, neg);
        neg = null; // the ticket is single use: renegotiate before the next attempt
        const result = await this._open(conn);
        if (gen !== this._gen) return this._drop(conn);
        if (result.ok) return this._attach(conn, null);
        this._recordFallback(name, next, result.reason || `${name}: failed`);
      }
      this._scheduleReconnect(0);
    } finally {
      this._connecting = false;
    }
  }

  /** POST /negotiate (§3). @returns {Promise<any>} the response body */
  async _negotiate() {
    const started = this.options.clock.now();
    let token = this.options.token;
    try {
      if (typeof token === "function") token = await token();
    } catch (error) {
      throw Object.assign(new Error(`token function failed: ${error}`), { type: "token", terminal: false });
    }
    /** @type {Record<string, string>} */
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const body = JSON.stringify({ v: PROTOCOL_VERSION, client: this.clientKey, transports: this.options.transports });
    let res;
    try {
      res = await this.options.fetch(this.negotiateUrl, { method: "POST", headers, body, cache: "no-store" });
    } catch (_) {
      throw Object.assign(new Error("negotiate failed: network error"), { terminal: false });
    } finally {
      this.stats.lastNegotiateMs = this.options.clock.now() - started;
    }
    /** @type {any} */
    let json = null;
    try { json = await res.json(); } catch (_) { /* not JSON: a proxy's page */ }
    if (res.status !== 200) {
      const code = json && typeof json.error === "string" ? json.error : `http_${res.status}`;
      const retryable = res.status >= 500 || res.status === 408 || res.status === 429;
      throw Object.assign(new Error(`negotiate refused: ${code} (HTTP ${res.status})`), {
        status: res.status, code, terminal: !retryable, retryAfterMs: retryAfterMs(res),
      });
    }
    if (!json || typeof json.ticket !== "string" || typeof json.token !== "string" || !json.urls) {
      throw Object.assign(new Error("negotiate: malformed response"), { terminal: false });
    }
    return json;
  }

  /** @param {any} error */
  _negotiateFailed(error) {
    this._emit("error", {
      type: error.type || "negotiate", status: error.status, code: error.code, message: error.message,
    });
    if (error.terminal) {
      this.stats.lastClose = { code: error.status, reason: error.code };
      return this._shutdown(error.status, error.code, false);
    }
    this._scheduleReconnect(error.retryAfterMs || 0);
  }

  /**
   * Start a transport on a fresh session and wait until it proves itself within its deadline.
   * @param {Conn} conn
   * @returns {Promise<{ok: boolean, reason?: string}>}
   */
  _open(conn) {
    const ms = this.options.deadlines[conn.name];
    const what = { websocket: "no round trip", sse: "no first event", longpoll: "no poll response" }[conn.name];
    return new Promise((resolve) => {
      const deadline = startDeadline(this.options.clock, ms, () =>
        this._drop(conn, `${conn.name}: ${what} within ${ms} ms`));
      conn.settle = (result) => {
        conn.settle = null;
        deadline.cancel();
        resolve(result);
      };
      try {
        this._startTransport(conn);
      } catch (error) {
        this._drop(conn, `${conn.name}: ${/** @type {Error} */ (error).message}`);
      }
    });
  }

  /** Create the transport of `conn` and route its callbacks. @param {Conn} conn */
  _startTransport(conn) {
    const neg = conn.neg;
    const o = this.options;
    const url = (/** @type {string} */ path) => new URL(path, this.negotiateUrl);
    const limits = neg.limits || {};
    const common = { fetch: o.fetch, clock: o.clock, maxMessage: positive(limits.message, 65536),
      batch: positive(limits.batch, 100), body: positive(limits.body, 1048576),
      reattachMs: positive(neg.retry, 1000) + REATTACH_GRACE_MS };
    /** @type {WebSocketTransport | HttpTransport} */
    let transport;
    if (conn.name === "websocket") {
      const u = url(neg.urls.websocket);
      u.protocol = u.protocol === "https:" ? "wss:" : u.protocol === "http:" ? "ws:" : u.protocol;
      u.searchParams.set("ticket", neg.ticket);
      transport = new WebSocketTransport(u.href, { ...common, WebSocket: o.WebSocket });
    } else if (conn.name === "sse") {
      const u = url(neg.urls.sse);
      u.searchParams.set("ticket", neg.ticket);
      transport = new SSETransport(u.href, url(neg.urls.send).href, neg.token, { ...common, EventSource: o.EventSource });
    } else {
      transport = new LongPollTransport(url(neg.urls.longpoll).href, url(neg.urls.send).href, neg.token, common);
    }
    conn.transport = transport;
    transport.onopen = () => {
      // A proxy may accept the upgrade and then stall: require a PING/PONG round trip (§4).
      if (conn.name === "websocket" && !conn.accepted) transport.send([FRAME.PING]);
    };
    transport.onmessage = (frame) => this._onFrame(conn, frame);
    transport.onalive = () => { if (!conn.closed) conn.lastRx = o.clock.now(); };
    transport.onerror = (error) => {
      if (conn === this._conn) this._emit("error", { type: "transport", transport: conn.name, message: error.message });
    };
    transport.onclose = (info) => this._onClose(conn, info.code, info.reason);
  }

  /** @param {Conn} conn */
  _accept(conn) {
    if (conn.accepted || conn.closed) return;
    conn.accepted = true;
    if (conn.settle) conn.settle({ ok: true });
  }

  /**
   * Close a connection's transport without reporting; settle a pending _open with `reason`.
   * @param {Conn} conn
   * @param {string} [reason]
   */
  _drop(conn, reason = "abandoned") {
    if (conn.closed) return;
    conn.closed = true;
    this.options.clock.clearTimeout(conn.liveTimer);
    if (conn.transport) conn.transport.close();
    for (const [ref, sub] of this._subs) if (sub.conn === conn) this._subs.delete(ref);
    if (conn.settle) conn.settle({ ok: false, reason });
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
    this._lastTransport = this._preferred = conn.name;
    this._retryHint = positive(conn.neg.retry, 0);
    if (reconnect) this.stats.reconnects++;
    if (conn.name === this.options.transports[0]) this.fallbackReason = null;
    const reason = switchedFrom ? `${conn.name} works again (was ${switchedFrom.name})` : this.fallbackReason;
    this._remember(conn.name);
    conn.lastRx = this.options.clock.now();
    this._watchLiveness(conn, livenessRemaining(conn.lastRx, conn.lastRx, conn.silence));
    this._clearTimer("stable");
    this._timers.stable = this.options.clock.setTimeout(() => { this._attempt = 0; }, STABLE_AFTER_MS);
    for (const topic of this._topics.keys()) {
      if (!conn.subscribed.has(topic) && !conn.subscribing.has(topic)) this._sendSub(conn, topic);
    }
    for (const entry of [...this._inflight.values()].sort((a, b) => a.ref - b.ref)) this._transmit(conn, entry);
    const queued = this._queue;
    this._queue = [];
    for (const entry of queued) this._transmit(conn, entry);
    this._setState("open");
    if (from !== conn.name) this._emit("transport", { transport: conn.name, from, reason });
    this._scheduleProbe();
  }

  /**
   * A transport closed (or was found dead).
   * @param {Conn} conn @param {number} code @param {string} reason
   */
  _onClose(conn, code, reason) {
    if (conn.closed) return;
    const detail = `${conn.name}: closed with ${code}${reason ? ` (${reason})` : ""}`;
    const pending = conn.settle !== null;
    this._drop(conn, `${detail} before it was usable`);
    if (pending) return;
    if (conn === this._probe) return this._probeFailed(detail);
    if (conn !== this._conn) return;
    this._conn = this.transport = this.id = null;
    this._clearTimer("stable");
    this._abortProbe();
    this.stats.lastClose = { code, reason };
    if (classifyClose(code) === "stop") return this._shutdown(code, reason, code !== 1000);
    this._setState("reconnecting");
    this._scheduleReconnect(0);
  }

  /** @param {number} minimum ms, e.g. a Retry-After */
  _scheduleReconnect(minimum) {
    if (this.state === "closed" || this._timers.reconnect) return;
    if (this._everOpen) this._setState("reconnecting");
    if (this._offline()) return void (this._waitOnline = true);
    const { backoff, random, clock } = this.options;
    const delay = Math.max(minimum, reconnectDelay(this._attempt++, backoff, this._retryHint, random));
    this._timers.reconnect = clock.setTimeout(() => {
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

  // --- liveness and the page environment -----------------------------------------------------

  /** @param {Conn} conn @param {number} ms */
  _watchLiveness(conn, ms) {
    conn.liveTimer = this.options.clock.setTimeout(() => {
      conn.liveTimer = null;
      if (conn.closed || conn !== this._conn) return;
      // Frames and poll responses only move lastRx forward, so a throttled timer never kills a
      // healthy connection.
      const left = livenessRemaining(conn.lastRx, this.options.clock.now(), conn.silence);
      if (left > 0) this._watchLiveness(conn, left);
      else this._onClose(conn, 4000, "no data from the server");
    }, Math.max(0, ms));
  }

  /** The page became visible or was restored: check the connection, reconnect at once if dead. */
  _wake() {
    if (this.state === "closed") return;
    const conn = this._conn;
    if (conn) {
      const left = livenessRemaining(conn.lastRx, this.options.clock.now(), conn.silence);
      if (left > 0 && conn.transport.readyState !== READY.CLOSED) return;
      this._onClose(conn, 4000, "connection found dead on wake");
    }
    if (!this._connecting) this._reconnectNow();
  }

  _bindEnvironment() {
    const o = this.options;
    const win = o.window;
    const doc = o.document;
    /** @type {[any, string, (event: any) => void][]} */
    this._bindings = [];
    if (win && typeof win.addEventListener === "function") {
      this._bindings.push([win, "online", () => { if (this._waitOnline || this._timers.reconnect) this._reconnectNow(); }]);
      this._bindings.push([win, "pageshow", (event) => { if (event && event.persisted) this._wake(); }]);
    }
    if (doc && typeof doc.addEventListener === "function") {
      this._bindings.push([doc, "visibilitychange", () => { if (doc.visibilityState === "visible") this._wake(); }]);
    }
    for (const [target, name, fn] of this._bindings) target.addEventListener(name, fn);
  }

  /** @returns {boolean} */
  _offline() {
    const nav = this.options.navigator;
    return Boolean(nav && nav.onLine === false);
  }

  // --- frames --------------------------------------------------------------------------------

  /** @param {Conn} conn @param {Frame} frame */
  _onFrame(conn, frame) {
    if (conn.closed) return;
    conn.lastRx = this.options.clock.now();
    const [type] = frame; // PING is answered by the transport; unknown types are ignored
    const ws = conn.name === "websocket";
    if (type === FRAME.HELLO) conn.heartbeat = positive((frame[1] || {}).heartbeat, conn.heartbeat);
    if ((type === FRAME.HELLO && !ws) || (type === FRAME.PONG && ws)) this._accept(conn);
    else if (type === FRAME.PUB) this._onPub(frame);
    else if (type === FRAME.MSG) this._emit("message", { event: frame[1], data: frame[2] });
    else if (type === FRAME.REPLY) this._onReply(frame);
  }

  /** @param {Frame} frame `[1, topic, event, data, offset, epoch]` */
  _onPub(frame) {
    const [, topic, event, data, offset, epoch] = frame;
    const entry = this._topics.get(topic);
    if (!entry || typeof offset !== "number") return;
    const pos = entry.position;
    if (pos && pos.epoch === epoch && offset <= pos.offset) return; // already processed (§7)
    entry.position = { epoch, offset };
    // The message id the server gave this publication (protocol §7): "epoch:topic:offset".
    const pub = { id: `${epoch}:${topic}:${offset}`, topic, event, data, offset, epoch };
    for (const handler of [...entry.handlers]) this._call(handler, pub);
  }

  /** @param {Frame} frame `[4, ref, status, data]` */
  _onReply(frame) {
    const [, ref, status, data] = frame;
    const sub = this._subs.get(ref);
    if (sub && this._subs.delete(ref)) return this._onSubReply(sub, status, data);
    const entry = this._inflight.get(ref);
    if (!entry) return; // a repeated REPLY (the server re-answers a retried ref) or an UNSUB
    this._inflight.delete(ref);
    this.options.clock.clearTimeout(entry.timer);
    if (status === "ok") entry.resolve(data);
    else entry.reject(codeError(String(status), data && data.message));
  }

  /**
   * @param {{topic: string, entry: TopicEntry, conn: Conn, since: any}} sub
   * @param {string} status
   * @param {any} data `{recovered, epoch, offset}`
   */
  _onSubReply(sub, status, data) {
    const { topic, entry, conn } = sub;
    conn.subscribing.delete(topic);
    if (this._topics.get(topic) !== entry) return; // unsubscribed meanwhile
    if (status !== "ok") {
      this._topics.delete(topic);
      const error = codeError(String(status), data && data.message);
      entry.reject(error);
      this._emit("error", { type: "subscribe", topic, code: status, message: error.message });
      return this._maybeSwitch();
    }
    conn.subscribed.add(topic);
    const pos = data && typeof data.epoch === "string" && typeof data.offset === "number"
      ? { epoch: data.epoch, offset: data.offset } : null;
    const recovered = Boolean(data && data.recovered);
    if (sub.since) {
      // recovered: the missed PUBs follow. Not recovered: there is a gap; start from the
      // server's position and tell the application so that it reloads its state (§7).
      if (!recovered && pos) entry.position = pos;
      this._emit("recovered", { topic, recovered });
    } else if (pos && !(entry.position && entry.position.epoch === pos.epoch && entry.position.offset >= pos.offset)) {
      entry.position = pos;
    }
    entry.resolve({ recovered, epoch: pos && pos.epoch, offset: pos && pos.offset });
    if (conn === this._probe) this._maybeSwitch();
  }

  /** @param {Conn} conn @param {string} topic */
  _sendSub(conn, topic) {
    const entry = /** @type {TopicEntry} */ (this._topics.get(topic));
    const ref = ++this._ref;
    const since = entry.position ? [entry.position.epoch, entry.position.offset] : null;
    conn.subscribing.add(topic);
    this._subs.set(ref, { topic, entry, conn, since });
    conn.transport.send([FRAME.SUB, ref, topic, since]);
  }

  /** @param {(ref: number) => Frame} build @returns {Promise<any>} */
  _request(build) {
    if (this.state === "closed") return Promise.reject(codeError("closed", "client is closed"));
    const ref = ++this._ref;
    return new Promise((resolve, reject) => {
      /** @type {SendEntry} */
      const entry = { ref, frame: build(ref), resolve, reject, timer: null, sent: false };
      if (this._conn && this.state === "open") this._transmit(this._conn, entry);
      else if (this._queue.length >= this.options.maxQueue) {
        reject(codeError("queue_full", `${this.options.maxQueue} sends already queued`));
      } else this._queue.push(entry);
    });
  }

  /**
   * Send an EVENT/PUBLISH on `conn`; the first time, start its reply timeout.
   * @param {Conn} conn @param {SendEntry} entry
   */
  _transmit(conn, entry) {
    try {
      conn.transport.send(entry.frame);
    } catch (error) {
      this._inflight.delete(entry.ref);
      this.options.clock.clearTimeout(entry.timer);
      return entry.reject(/** @type {Error} */ (error));
    }
    if (entry.sent) return;
    entry.sent = true;
    this._inflight.set(entry.ref, entry);
    entry.timer = this.options.clock.setTimeout(() => {
      this._inflight.delete(entry.ref);
      entry.reject(codeError("timeout", `no reply within ${this.options.sendTimeout} ms`));
    }, this.options.sendTimeout);
  }

  // --- failback: re-probe a better transport while on a worse one -----------------------------

  /** @param {Conn} conn @returns {TransportName[]} the allowed transports the server offered */
  _offered(conn) {
    return this.options.transports.filter((name) => offers(conn.neg, name));
  }

  _scheduleProbe() {
    const failback = this.options.failback;
    const conn = this._conn;
    if (!failback || !conn || this._probe || this._timers.probe) return;
    if (this._offered(conn).indexOf(conn.name) <= 0) return;
    const cap = Math.min(failback.max, failback.min * 2 ** this._probeAttempt);
    const delay = cap / 2 + (this.options.random() * cap) / 2;
    this._timers.probe = this.options.clock.setTimeout(() => {
      this._timers.probe = null;
      this._runProbe();
    }, delay);
  }

  /** Negotiate a new session and try each better transport; on success subscribe, then switch. */
  async _runProbe() {
    const main = this._conn;
    if (!main || this.state !== "open") return;
    const gen = this._gen;
    const stillCurrent = () => gen === this._gen && this._conn === main;
    this.stats.probes++;
    const offered = this._offered(main);
    for (const name of offered.slice(0, offered.indexOf(main.name))) {
      let neg;
      try {
        neg = await this._negotiate();
      } catch (error) {
        this.stats.lastProbe = /** @type {Error} */ (error).message;
        break;
      }
      if (!stillCurrent()) return;
      if (!offers(neg, name)) continue;
      const probe = new Conn(name, neg);
      this._probe = probe;
      const result = await this._open(probe);
      if (!stillCurrent() || this._probe !== probe) return this._drop(probe);
      if (result.ok) {
        this._timers.switch = this.options.clock.setTimeout(() => {
          this._timers.switch = null;
          this._probeFailed(`${name}: resubscribing took over ${this.options.sendTimeout} ms`);
        }, this.options.sendTimeout);
        return this._maybeSwitch();
      }
      this._probe = null;
      this.stats.lastProbe = result.reason || `${name}: failed`;
    }
    this._probeAttempt++;
    this._scheduleProbe();
  }

  /** Switch to the probe once every topic is subscribed on it (SUB with since, §7). */
  _maybeSwitch() {
    const probe = this._probe;
    if (!probe || !probe.accepted || probe.closed) return;
    let missing = false;
    for (const topic of this._topics.keys()) {
      if (probe.subscribed.has(topic)) continue;
      missing = true;
      if (!probe.subscribing.has(topic)) this._sendSub(probe, topic);
    }
    if (missing) return;
    this._clearTimer("switch");
    const old = /** @type {Conn} */ (this._conn);
    this._probe = null;
    this._probeAttempt = 0;
    this._drop(old); // WebSocket close 1000 / EventSource close / polling stops
    this._conn = null;
    this.stats.switches.push({ from: old.name, to: probe.name, at: this.options.clock.now() });
    if (this.stats.switches.length > HISTORY) this.stats.switches.shift();
    this.stats.lastProbe = `${probe.name}: ok`;
    // Unanswered EVENTs go again on the new session with the same refs: the server answers a
    // ref it has seen with the remembered REPLY instead of applying it twice (§8).
    this._attach(probe, old);
  }

  /** @param {string} reason */
  _probeFailed(reason) {
    this.stats.lastProbe = reason;
    this._abortProbe();
    this._probeAttempt++;
    this._scheduleProbe();
  }

  _abortProbe() {
    this._clearTimer("probe");
    this._clearTimer("switch");
    const probe = this._probe;
    this._probe = null;
    if (probe) this._drop(probe);
  }

  // --- bookkeeping ---------------------------------------------------------------------------

  /** @param {string} from @param {string | null} to @param {string} reason */
  _recordFallback(from, to, reason) {
    this.fallbackReason = reason;
    this.stats.fallbacks.push({ from, to, reason, at: this.options.clock.now() });
    if (this.stats.fallbacks.length > HISTORY) this.stats.fallbacks.shift();
  }

  /** @returns {TransportName | null} the transport remembered for this endpoint, if fresh */
  _recall() {
    const { storage, rememberMs, clock, transports } = this.options;
    try {
      const saved = storage ? JSON.parse(storage.getItem(this.storageKey) || "null") : null;
      const age = saved ? clock.now() - Number(saved.at) : Infinity;
      if (saved && transports.includes(saved.transport) && age >= 0 && age <= rememberMs) return saved.transport;
    } catch (_) { /* storage blocked or garbage */ }
    return null;
  }

  /** @param {TransportName} name */
  _remember(name) {
    const { storage, clock } = this.options;
    try {
      if (storage) storage.setItem(this.storageKey, JSON.stringify({ transport: name, at: clock.now() }));
    } catch (_) { /* storage full or blocked */ }
  }

  /**
   * Stop everything. @param {number} code @param {string} reason @param {boolean} isError
   */
  _shutdown(code, reason, isError) {
    if (this.state === "closed") return;
    this._gen++;
    for (const name of Object.keys(this._timers)) this._clearTimer(name);
    this._abortProbe();
    if (this._conn) this._drop(this._conn);
    this._conn = this.transport = this.id = null;
    for (const [target, name, fn] of this._bindings || []) target.removeEventListener(name, fn);
    const closed = codeError("closed", `connection closed (${code}${reason ? ` ${reason}` : ""})`);
    for (const entry of [...this._inflight.values(), ...this._queue]) {
      this.options.clock.clearTimeout(entry.timer);
      entry.reject(closed);
    }
    this._inflight.clear();
    this._queue = [];
    for (const entry of this._topics.values()) entry.reject(closed);
    if (isError) this._emit("error", { type: "close", code, reason, message: `closed by the server: ${code} ${reason}` });
    this._setState("closed");
  }

  /** @param {State} state */
  _setState(state) {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous });
  }

  /** @param {string} name */
  _clearTimer(name) {
    if (this._timers[name] == null) return;
    this.options.clock.clearTimeout(this._timers[name]);
    this._timers[name] = null;
  }

  /** @param {string} name @param {any} payload */
  _emit(name, payload) {
    for (const fn of [...(this._listeners.get(name) || [])]) this._call(fn, payload, name === "error");
  }

  /**
   * Call application code; an exception never breaks the client. It goes to the "error"
   * listeners as `{type: "handler", error}`, or is rethrown asynchronously (so it shows up as an
   * uncaught error) when there are none or an "error" listener itself threw.
   * @param {Function} fn @param {any} arg @param {boolean} [isErrorListener]
   */
  _call(fn, arg, isErrorListener = false) {
    try {
      fn(arg);
    } catch (error) {
      const listeners = this._listeners.get("error");
      if (isErrorListener || !listeners || !listeners.size) queueMicrotask(() => { throw error; });
      else this._emit("error", { type: "handler", error, message: String(/** @type {any} */ (error).message || error) });
    }
  }
}

/** Merge options over DEFAULTS, dropping transports this environment cannot run. @param {Options} options */
function resolveOptions(options) {
  const g = /** @type {any} */ (globalThis);
  const fetchFn = options.fetch || g.fetch;
  if (typeof fetchFn !== "function") throw new TypeError("transports: fetch is required");
  const WebSocketCtor = options.WebSocket || g.WebSocket;
  const EventSourceCtor = options.EventSource || g.EventSource;
  const available = { websocket: Boolean(WebSocketCtor), sse: Boolean(EventSourceCtor), longpoll: true };
  const wanted = options.transports || DEFAULTS.transports;
  const transports = /** @type {TransportName[]} */ (
    wanted.filter((name, i) => TRANSPORT_NAMES.includes(name) && wanted.indexOf(name) === i && available[name])
  );
  if (!transports.length) throw new TypeError("transports: no usable transport");
  let storage = options.storage;
  if (storage === undefined) {
    try { storage = g.sessionStorage || g.localStorage || null; } catch (_) { storage = null; }
  }
  return {
    transports,
    deadlines: { ...DEFAULTS.deadlines, ...options.deadlines },
    backoff: { ...DEFAULTS.backoff, ...options.backoff },
    failback: options.failback === false ? null : { ...DEFAULTS.failback, ...options.failback },
    token: options.token,
    sendTimeout: options.sendTimeout ?? DEFAULTS.sendTimeout,
    maxQueue: options.maxQueue ?? DEFAULTS.maxQueue,
    rememberMs: options.rememberMs ?? DEFAULTS.rememberMs,
    storage,
    WebSocket: WebSocketCtor,
    EventSource: EventSourceCtor,
    /** @type {Fetch} */
    fetch: (url, init) => fetchFn(url, init),
    clock: options.clock || realClock,
    random: options.random || Math.random,
    window: options.window !== undefined ? options.window : g.addEventListener ? g : null,
    document: options.document !== undefined ? options.document : g.document || null,
    navigator: options.navigator !== undefined ? options.navigator : g.navigator || null,
  };
}

/**
 * Transports in the order to try: the one that worked last first, then the rest in preference order.
 * @param {readonly TransportName[]} transports @param {TransportName | null} preferred
 * @returns {TransportName[]}
 */
export function orderTransports(transports, preferred) {
  if (!preferred || !transports.includes(preferred)) return transports.slice();
  return [preferred, ...transports.filter((name) => name !== preferred)];
}

/** @param {any} neg @param {TransportName} name */
function offers(neg, name) {
  return Array.isArray(neg.transports) && neg.transports.includes(name) && Boolean(neg.urls && neg.urls[name]) &&
    (name === "websocket" || Boolean(neg.urls.send));
}

/** @param {any} data */
const normalizeData = (data) => (data === undefined ? null : asBytes(data) || data);

/** A random client key (§3: 8-64 characters of A-Z a-z 0-9 _ -). @param {() => number} random */
function randomKey(random) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  const bytes = new Uint8Array(22).map(() => Math.floor(random() * 256));
  const cryptoObj = /** @type {any} */ (globalThis).crypto;
  if (cryptoObj && cryptoObj.getRandomValues) cryptoObj.getRandomValues(bytes);
  return Array.from(bytes, (byte) => alphabet[byte & 63]).join("");
}

/**
 * Connect to a `transports` server and keep the connection alive: negotiate, pick the best
 * transport that works through the network (WebSocket, then SSE, then long-poll by default),
 * reconnect with backoff, resume topics without loss or duplicates, and move back to a better
 * transport when it works again.
 * @param {string} url the extension's URL prefix, e.g. "/realtime" or "https://host/realtime"
 * @param {Options} [options]
 * @returns {Client}
 */
export function connect(url, options) {
  return new Client(url, options);
}

if (typeof globalThis === "object" && !(/** @type {any} */ (globalThis).Transports)) {
  /** @type {any} */ (globalThis).Transports = Object.freeze({ connect, version: PROTOCOL_VERSION });
}
