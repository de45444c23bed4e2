// @ts-check
/**
 * The client policy: which HTTP statuses are retried and how often, which close codes reconnect,
 * the backoff and reattach formulas, the deadlines, the liveness slack and what the client assumes
 * when the negotiate answer leaves a value out. Every value comes from policy.json beside this
 * module, the one definition that the Python client reads too (transports/protocol/policy.py
 * documents each field; tests/policy_vectors.json holds the cases both clients must decide
 * alike). Every other module reads the policy through the functions here and writes none of its
 * values itself. Times are milliseconds.
 */

import POLICY_JSON from "./policy.json" with { type: "json" };

/**
 * Numbers and `[low, high]` inclusive ranges.
 * @typedef {readonly (number | readonly number[])[]} CodeList
 */

/**
 * `requests.<kind>` of policy.json.
 * @typedef {Object} RequestPolicy
 * @property {CodeList} ok statuses that succeeded
 * @property {CodeList} retry statuses asked again, up to `retries` times in a row
 * @property {number | null} retries null: no limit
 * @property {CodeList} split statuses that ask for a smaller batch
 * @property {{baseMs: number, capMs: number} | null} delay the retry delay; null: the kind is
 *   retried by the reconnect loop
 * @property {"reconnect" | "reattach"} network what a network failure (no answer) leads to
 * @property {number | null} timeoutMs how long the client waits for the answer
 * @property {Readonly<Record<string, number>>} close the close code for any other status (by
 *   status, else `default`)
 */

/**
 * The whole of policy.json.
 * @typedef {Object} Policy
 * @property {number} version
 * @property {CodeList} reconnectCodes
 * @property {{baseMs: number, capMs: number, stableAfterMs: number}} backoff
 * @property {number} retryAfterCapMs
 * @property {Readonly<Record<string, number>>} deadlinesMs by transport name, `default` for others
 * @property {number} livenessSlackMs
 * @property {readonly string[]} fallbackReasons
 * @property {{codes: CodeList, minUpMs: number}} reauthenticate
 * @property {{codes: CodeList, upForLessThanMs: number, times: number, stayUpMs: number}} flapping
 * @property {{hintDefaultMs: number, graceMs: number, baseMs: number, capMs: number}} reattach
 * @property {{heartbeatMs: number, pollWindowMs: number, message: number, body: number, batch: number}} defaults
 * @property {Readonly<Record<RequestKind, RequestPolicy>>} requests
 */

/** @typedef {"negotiate" | "send" | "poll" | "sse"} RequestKind */
/**
 * What the client does with an HTTP answer: go on, ask again, send a smaller batch, or end the
 * connection with this close code (for negotiate: stop with it).
 * @typedef {"ok" | "retry" | "split" | number} HttpAction
 */

/** The policy, as policy.json says it. @type {Readonly<Policy>} */
export const POLICY = deepFreeze(/** @type {Policy} */ (/** @type {unknown} */ (POLICY_JSON)));
if (POLICY.version !== 1) throw new Error(`transports: unknown policy version ${POLICY.version}`);

/** @template T @param {T} value @returns {T} */
function deepFreeze(value) {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}

/** 2**30 times any base is past any cap: no overflow for huge attempt counts. */
const MAX_DOUBLINGS = 30;

/** Whether `code` is in a code list. @param {CodeList} list @param {number} code */
const has = (list, code) =>
  list.some((item) => (typeof item === "number" ? item === code : item[0] <= code && code <= item[1]));

/** The full-jitter window of attempt `attempt`: min(cap, base * 2^attempt). @param {number} attempt @param {number} base @param {number} cap */
const jitterWindow = (attempt, base, cap) => Math.min(cap, base * 2 ** Math.min(Math.max(attempt, 0), MAX_DOUBLINGS));

/** A server-sent value, or the default when it is missing or not a positive number. @param {unknown} value @param {number} fallback @returns {number} */
export const positive = (value, fallback) => (typeof value === "number" && value > 0 ? value : fallback);

/** A negotiate `limits` entry when it is a number of at least 1, else the default. @param {unknown} value @param {number} fallback @returns {number} */
export const limit = (value, fallback) => (typeof value === "number" && value >= 1 && Number.isFinite(value) ? Math.floor(value) : fallback);

/** What the client assumes when the negotiate answer leaves a value out (ms, bytes, frames). */
export const SESSION_DEFAULTS = Object.freeze({
  heartbeat: POLICY.defaults.heartbeatMs,
  pollWindow: POLICY.defaults.pollWindowMs,
  /** limits.message: the largest frame the server accepts */
  message: POLICY.defaults.message,
  /** limits.batch: frames per POST /send */
  batch: POLICY.defaults.batch,
  /** limits.body: bytes per POST /send */
  body: POLICY.defaults.body,
});

/**
 * Defaults of the {@link import("./options.js").Options} fields (options.js adds `transports`, the
 * registry's names, in front to make the public `DEFAULTS`). `deadlines` and `backoff` are the
 * policy's; the others are options of the browser client alone (policy.json has no such field).
 */
export const OPTION_DEFAULTS = Object.freeze({
  /** ms a new transport gets to prove itself, by transport name (see {@link deadline}) */
  deadlines: Object.freeze(Object.fromEntries(Object.entries(POLICY.deadlinesMs).filter(([name]) => name !== "default"))),
  backoff: Object.freeze({ min: POLICY.backoff.baseMs, max: POLICY.backoff.capMs }),
  failback: Object.freeze({ min: 30000, max: 600000 }),
  sendTimeout: 10000,
  maxQueue: 1000,
  rememberMs: 24 * 60 * 60 * 1000,
  /**
   * the fast start: with nothing known of the network, open on `transport` (the one that passes
   * every proxy) and probe the better ones `probeAfterMs` after it opened; a transport
   * remembered from another page gets `rememberedDeadlineMs` before the fast start takes over
   */
  fastStart: Object.freeze({ transport: "longpoll", probeAfterMs: 0, rememberedDeadlineMs: 1000 }),
  /** when a transport counts as flapping and how long its probe must stay up (policy `flapping`) */
  flapping: Object.freeze({
    upForLessThanMs: POLICY.flapping.upForLessThanMs,
    times: POLICY.flapping.times,
    stayUpMs: POLICY.flapping.stayUpMs,
  }),
});

/**
 * What a close code tells the client to do (§10.1, `reconnectCodes`): 1001, 1005, 1006,
 * 1011-1015 and 4000-4499 reconnect; every other code is terminal. 1005 is what a browser reports
 * for a close frame without a status, as a proxy may send; 1014 and 1015 are a bad gateway and a
 * failed TLS handshake.
 * @param {number} code
 * @returns {"reconnect" | "stop"}
 */
export function classifyClose(code) {
  return has(POLICY.reconnectCodes, code) ? "reconnect" : "stop";
}

/**
 * What the client does when its connection ended with `code` after `upMs` up (`reauthenticate`
 * in policy.json): "reauthenticate" (a code of `reauthenticate.codes`, a token that can be
 * renewed, i.e. a function, and not a connection opened by a re-authentication less than
 * `minUpMs` ago: that would loop), else {@link classifyClose}.
 * @param {number} code @param {number} upMs
 * @param {boolean} renewable the token option is a function
 * @param {boolean} reauthenticated the connection was opened by a re-authentication
 * @returns {"reconnect" | "reauthenticate" | "stop"}
 */
export function afterClose(code, upMs, renewable, reauthenticated) {
  if (has(POLICY.reauthenticate.codes, code)) {
    return !renewable || (reauthenticated && upMs < POLICY.reauthenticate.minUpMs) ? "stop" : "reauthenticate";
  }
  return classifyClose(code);
}

/**
 * A transport's flaps in a row after one of its connections ended with `code` after `upMs` up,
 * `count` before: one more for a code of `flapping.codes` within `upForLessThanMs`, else 0
 * (flapping once it reaches `times`).
 * @param {number} count @param {number} code @param {number} upMs
 * @param {number} [upForLessThanMs] the `flapping` option's, else the policy's
 */
export function flapCount(count, code, upMs, upForLessThanMs = POLICY.flapping.upForLessThanMs) {
  return has(POLICY.flapping.codes, code) && upMs < upForLessThanMs ? count + 1 : 0;
}

/**
 * What to do with a `kind` request answered `status` after `retried` retries in a row (each of
 * them a status the policy retries): "ok", "retry", "split" or the close code to end with.
 * @param {RequestKind} kind @param {number} status @param {number} [retried]
 * @returns {HttpAction}
 */
export function httpAction(kind, status, retried = 0) {
  const rule = POLICY.requests[kind];
  if (has(rule.ok, status)) return "ok";
  if (has(rule.split, status)) return "split";
  if (has(rule.retry, status) && (rule.retries === null || retried < rule.retries)) return "retry";
  return closeCodeFor(kind, status);
}

/**
 * The close code a `kind` request ends the connection with when answered `status` (by status,
 * else the kind's `default`; `status` undefined when the browser hides it, as EventSource does).
 * @param {RequestKind} kind @param {number} [status]
 * @returns {number}
 */
export function closeCodeFor(kind, status) {
  const close = POLICY.requests[kind].close;
  const code = status === undefined ? undefined : close[String(status)];
  return code === undefined ? close.default : code;
}

/**
 * Full-jitter exponential backoff: a delay drawn uniformly from [0, min(max, min * 2^attempt)].
 * @param {number} attempt 0 for the first retry
 * @param {{min: number, max: number}} backoff the `backoff` option (policy: backoff.baseMs, capMs)
 * @param {() => number} [random] returns [0, 1)
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, backoff, random = Math.random) {
  return random() * jitterWindow(attempt, backoff.min, backoff.max);
}

/**
 * Delay before reconnect attempt `attempt`: full-jitter backoff, shifted up so that it is never
 * shorter than the server's `retry` hint (so a restarting server is not hit by the whole herd at
 * once), and never longer than max(backoff.max, hint); a Retry-After that came with the failure
 * is a lower bound on top of that.
 * @param {number} attempt
 * @param {{min: number, max: number}} backoff
 * @param {number} hint the negotiate response's `retry` (ms), 0 when unknown
 * @param {() => number} [random]
 * @param {number} [retryAfter] ms, 0 when none
 * @returns {number} milliseconds
 */
export function reconnectDelay(attempt, backoff, hint, random = Math.random, retryAfter = 0) {
  const jitter = backoffDelay(attempt, backoff, random);
  const delay = hint > 0 ? Math.min(Math.max(backoff.max, hint), hint + jitter) : jitter;
  return Math.max(retryAfter, delay);
}

/**
 * Delay before the (`retried` + 1)-th retry in a row of a `kind` request answered with a status
 * the policy retries: max(Retry-After, random * min(capMs, baseMs * 2^retried)).
 * @param {RequestKind} kind @param {number} retried @param {number} retryAfter ms, 0 when none
 * @param {() => number} random
 * @returns {number} milliseconds
 */
export function requestDelay(kind, retried, retryAfter, random) {
  const delay = POLICY.requests[kind].delay;
  if (delay === null) return retryAfter;
  return Math.max(retryAfter, random() * jitterWindow(retried, delay.baseMs, delay.capMs));
}

/** A finite decimal number of seconds (an HTTP date, or anything else, is none). */
const SECONDS_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * A Retry-After header value in ms: a finite positive number of seconds, at most
 * `retryAfterCapMs`; 0 when absent or anything else.
 * @param {string | null | undefined} value
 * @returns {number}
 */
export function parseRetryAfter(value) {
  if (value == null) return 0;
  const text = String(value).trim();
  if (!SECONDS_RE.test(text)) return 0;
  const ms = Number(text) * 1000;
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, POLICY.retryAfterCapMs) : 0;
}

/** Retry-After of a response in ms, 0 when none. @param {{headers?: {get(name: string): string | null}}} res */
export function retryAfterMs(res) {
  return parseRetryAfter(res.headers && res.headers.get ? res.headers.get("Retry-After") : null);
}

/** The negotiate answer's `retry` hint (ms), 0 when it sent none; capped like Retry-After. @param {unknown} value */
export const serverHint = (value) => Math.min(positive(value, 0), POLICY.retryAfterCapMs);

/**
 * How long a request lost on the network is sent again on the same session, from the first loss
 * in a row: the server's `retry` hint (hintDefaultMs when it sent none) plus graceMs.
 * @param {number} hint ms, 0 when none
 */
export const reattachBudget = (hint) => (hint > 0 ? hint : POLICY.reattach.hintDefaultMs) + POLICY.reattach.graceMs;

/**
 * The wait before sending again after the `lost`-th loss in a row (0 first), with `left` ms of the
 * budget left: min(left, random * min(capMs, baseMs * 2^lost)).
 * @param {number} lost @param {number} left @param {() => number} random
 */
export const reattachDelay = (lost, left, random) =>
  Math.max(0, Math.min(left, random() * jitterWindow(lost, POLICY.reattach.baseMs, POLICY.reattach.capMs)));

/**
 * The retries of one kind of session request (POST /send, GET /poll, the SSE stream) on one
 * transport, as the policy says. Sans-I/O: {@link Attempts#answered} and {@link Attempts#failed}
 * decide, the transport sleeps and sends.
 */
export class Attempts {
  /**
   * @param {RequestKind} kind
   * @param {number} hint the negotiate answer's `retry` (ms), 0 when none
   * @param {{now(): number}} clock
   * @param {() => number} random
   */
  constructor(kind, hint, clock, random) {
    this.kind = kind;
    /** ms a request lost on the network is sent again, from the first loss in a row */
    this.budget = reattachBudget(hint);
    this.clock = clock;
    this.random = random;
    /** answers in a row that the policy asked again */
    this.retried = 0;
    this.lost = 0;
    /** @type {number | null} when the first loss in a row happened */
    this.lostAt = null;
  }

  /**
   * The action for an answer and, for "retry", the ms to wait first. An answer is not news that
   * the network works again: the caller says so with {@link Attempts#recovered}.
   * @param {{status: number, headers?: {get(name: string): string | null}}} res
   * @returns {{action: HttpAction, delay: number}}
   */
  answered(res) {
    const action = httpAction(this.kind, res.status, this.retried);
    if (action !== "retry") {
      this.retried = 0;
      return { action, delay: 0 };
    }
    const delay = requestDelay(this.kind, this.retried, retryAfterMs(res), this.random);
    this.retried++;
    return { action, delay };
  }

  /**
   * A request lost on the network: ms to wait before sending it again, or null once the budget
   * is spent (the transport then ends with 1006).
   * @returns {number | null}
   */
  failed() {
    const now = this.clock.now();
    if (this.lostAt === null) this.lostAt = now;
    const left = this.budget - (now - this.lostAt);
    if (left <= 0) return null;
    return reattachDelay(this.lost++, left, this.random);
  }

  /** ms of the budget left since the first loss in a row (the whole budget when none). */
  left() {
    return this.lostAt === null ? this.budget : this.budget - (this.clock.now() - this.lostAt);
  }

  /** The network works again (an answer, or a stream that opened). */
  recovered() {
    this.lost = 0;
    this.lostAt = null;
  }
}

/** ms a new connection of `transport` gets to prove itself. @param {string} transport */
export const deadline = (transport) =>
  Object.prototype.hasOwnProperty.call(POLICY.deadlinesMs, transport) ? POLICY.deadlinesMs[transport] : POLICY.deadlinesMs.default;

/**
 * ms of silence after which a connection is dead (§9): max(heartbeat, pollWindow) + the slack,
 * `pollWindow` counting on a polling transport only (pass 0 otherwise).
 * @param {number} heartbeat @param {number} [pollWindow]
 */
export const livenessLimit = (heartbeat, pollWindow = 0) => Math.max(heartbeat, pollWindow) + POLICY.livenessSlackMs;

/**
 * Milliseconds left before a connection that last received something at `lastReceived` is
 * considered dead (§9: heartbeat + the liveness slack of silence); zero or less means dead.
 * @param {number} lastReceived
 * @param {number} now
 * @param {number} heartbeat the longest the server may stay silent (ms): its PING interval, on
 *   long-poll max(heartbeat, pollWindow)
 * @returns {number}
 */
export function livenessRemaining(lastReceived, now, heartbeat) {
  return lastReceived + livenessLimit(heartbeat) - now;
}

/** Whether a connection up `upMs` resets the reconnect backoff. @param {number} upMs */
export const isStable = (upMs) => upMs >= POLICY.backoff.stableAfterMs;

/**
 * Delay before failback probe `attempt` (0 first): half the doubling cap plus up to half again.
 * (The browser client's own option: policy.json has no failback.)
 * @param {number} attempt
 * @param {{min: number, max: number}} failback
 * @param {() => number} random
 * @returns {number} milliseconds
 */
export function failbackDelay(attempt, failback, random) {
  const cap = Math.min(failback.max, failback.min * 2 ** attempt);
  return cap / 2 + (random() * cap) / 2;
}
