// @ts-check
/**
 * The client policy, in one place: option defaults, what the client assumes when the negotiate
 * answer leaves a value out, which HTTP statuses are retried and how often, which close codes
 * reconnect, the backoff formulas and the liveness slack. Every other module reads these values
 * from here and writes none of them itself (transports/protocol/policy.json is meant to become
 * their single source).
 */

/**
 * Defaults of the {@link import("./options.js").Options} fields that are policy (options.js adds
 * `transports`, the registry's names, in front to make the public `DEFAULTS`).
 */
export const OPTION_DEFAULTS = Object.freeze({
  /** ms a new transport gets to prove itself, by transport name */
  deadlines: Object.freeze({ websocket: 2500, sse: 2500, longpoll: 10000 }),
  backoff: Object.freeze({ min: 500, max: 20000 }),
  failback: Object.freeze({ min: 30000, max: 600000 }),
  sendTimeout: 10000,
  maxQueue: 1000,
  rememberMs: 10 * 60 * 1000,
});

/** What the client assumes when the negotiate response leaves a value out (ms, bytes, frames). */
export const SESSION_DEFAULTS = Object.freeze({
  heartbeat: 25000,
  pollWindow: 25000,
  /** limits.message: the largest frame the server accepts */
  message: 65536,
  /** limits.batch: frames per POST /send */
  batch: 100,
  /** limits.body: bytes per POST /send */
  body: 1048576,
  /** the server's `retry` hint */
  retry: 1000,
});

/**
 * A client that receives nothing for heartbeat + this considers the connection dead (§9); on
 * long-poll for max(heartbeat, pollWindow) + this, and every poll response counts, an empty one
 * (the long-poll heartbeat, §6.1) included.
 */
export const LIVENESS_SLACK_MS = 10000;
/** A connection open this long resets the reconnect backoff. */
export const STABLE_AFTER_MS = 5000;
/**
 * After a dropped SSE stream or a failed poll (network error), the HTTP transports keep trying
 * their own session (§5.3, §6.1) for the server's `retry` plus this long, then give it up.
 */
export const REATTACH_GRACE_MS = 2500;

/**
 * Retries of an HTTP request answered with a status in `statuses`: at most `retries` in a row,
 * the n-th (0-based) after Retry-After, else `baseMs * 2^n`.
 * @typedef {{statuses: readonly number[], retries: number, baseMs: number}} RetryRule
 */

/** POST /send (§6.2). @type {Readonly<RetryRule>} */
export const SEND_RETRY = Object.freeze({ statuses: Object.freeze([409, 429, 503]), retries: 5, baseMs: 100 });
/** GET /poll (§6.1): a proxy timeout or overload. @type {Readonly<RetryRule>} */
export const POLL_RETRY = Object.freeze({ statuses: Object.freeze([408, 429, 502, 503, 504]), retries: 5, baseMs: 500 });
/** A poll lost on the network is sent again after `min(left, this * 2^n)` ms (n-th loss in a row). */
export const POLL_LOST_BASE_MS = 250;

/** Whether a refused negotiate is worth another try (else the client stops). @param {number} status */
export const negotiateRetryable = (status) => status >= 500 || status === 408 || status === 429;

/** The close code the client uses when a poll or POST fails with `status`. @param {number} status */
export function httpFailure(status) {
  if (status === 404 || status === 401) return { code: 4004, reason: `session gone (HTTP ${status})` };
  if (status === 413) return { code: 1009, reason: "message too big (HTTP 413)" };
  if (status === 403) return { code: 4503, reason: "forbidden (HTTP 403)" };
  if (status === 400 || status === 415) return { code: 4500, reason: `bad request (HTTP ${status})` };
  return { code: 1011, reason: `server error (HTTP ${status})` };
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
 * Delay before failback probe `attempt` (0 first): half the doubling cap plus up to half again.
 * @param {number} attempt
 * @param {{min: number, max: number}} failback
 * @param {() => number} random
 * @returns {number} milliseconds
 */
export function failbackDelay(attempt, failback, random) {
  const cap = Math.min(failback.max, failback.min * 2 ** attempt);
  return cap / 2 + (random() * cap) / 2;
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

/** Retry-After in ms, or null. @param {{headers?: {get(name: string): string | null}}} res */
export function retryAfterMs(res) {
  const value = res.headers && res.headers.get ? res.headers.get("Retry-After") : null;
  const seconds = value == null ? NaN : Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : null;
}

/** A server-sent value, or the default when it is missing or not positive. @param {unknown} value @param {number} fallback @returns {number} */
export const positive = (value, fallback) => (Number(value) > 0 ? Number(value) : fallback);
