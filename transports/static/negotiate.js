// @ts-check
/** POST /negotiate (§3): the request, what its answer offers, and the client key it sends. */

import { PROTOCOL_VERSION } from "./codec.js";
import { POLICY, httpAction, retryAfterMs } from "./policy.js";
import { startDeadline } from "./timer.js";
import { transportClass } from "./transports.js";

/** @typedef {import("./transports.js").TransportName} TransportName */
/** @typedef {import("./options.js").Resolved} Resolved */
/** @typedef {import("./stats.js").Stats} Stats */

/**
 * Negotiate a new session. What an answer leads to is the policy's `requests.negotiate`. Failures
 * are Errors with `terminal` (stop rather than reconnect) and, when the server answered, `status`,
 * `code` (the body's `error`), `closeCode` (the policy's code the client stops with, when
 * terminal) and `retryAfterMs`; `type` "token" when the token function failed (or, while the client
 * re-authenticates, `_reauth`, gave no token: only a fresh one will do).
 * The client's last fallback (`_fallbackReport`) goes in the body as `fallback` and is forgotten
 * once the server answered.
 * @param {{options: Resolved, negotiateUrl: string, clientKey: string, stats: Stats,
 *   _fallbackReport?: {from: string, to: string, reason: string} | null, _reauth?: boolean}} client
 * @returns {Promise<any>} the response body
 */
export async function negotiate(client) {
  const { options, stats } = client;
  const started = options.clock.now();
  /** @type {string | null | undefined} */
  let token;
  try {
    token = typeof options.token === "function" ? await options.token() : options.token;
  } catch (error) {
    throw Object.assign(new Error(`token function failed: ${error}`), { type: "token", terminal: false });
  }
  if (client._reauth && !token) {
    throw Object.assign(new Error("the token function gave no token"), { type: "token", terminal: true, closeCode: 4501 });
  }
  /** @type {Record<string, string>} */
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  /** @type {Record<string, any>} */
  const request = { v: PROTOCOL_VERSION, client: client.clientKey, transports: options.transports };
  const report = client._fallbackReport;
  if (report) request.fallback = report;
  const body = JSON.stringify(request);
  const timeoutMs = POLICY.requests.negotiate.timeoutMs;
  const controller = typeof AbortController === "function" && timeoutMs !== null ? new AbortController() : null;
  const timeout = controller && timeoutMs !== null ? startDeadline(options.clock, timeoutMs, () => controller.abort()) : null;
  let res;
  try {
    res = await options.fetch(client.negotiateUrl, {
      method: "POST", headers, body, cache: "no-store", signal: controller ? controller.signal : undefined,
    });
  } catch (_) {
    // No answer (the policy's `network`: the reconnect loop tries again with its backoff).
    const reason = timeout && timeout.expired ? `no answer within ${timeoutMs} ms` : "network error";
    throw Object.assign(new Error(`negotiate failed: ${reason}`), { terminal: false });
  } finally {
    if (timeout) timeout.cancel();
    stats.lastNegotiateMs = options.clock.now() - started;
  }
  if (report && client._fallbackReport === report) client._fallbackReport = null;
  /** @type {any} */
  let json = null;
  try { json = await res.json(); } catch (_) { /* not JSON: a proxy's page */ }
  const action = httpAction("negotiate", res.status);
  if (action !== "ok") {
    const code = json && typeof json.error === "string" ? json.error : `http_${res.status}`;
    const terminal = typeof action === "number";
    throw Object.assign(new Error(`negotiate refused: ${code} (HTTP ${res.status})`), {
      status: res.status, code, terminal, closeCode: terminal ? action : null, retryAfterMs: retryAfterMs(res),
    });
  }
  if (!json || typeof json.ticket !== "string" || typeof json.token !== "string" || !json.urls) {
    throw Object.assign(new Error("negotiate: malformed response"), { terminal: false });
  }
  return json;
}

/**
 * Whether a negotiate response offers transport `name`: listed, with its URL, and with a send
 * URL unless the transport is bidirectional.
 * @param {any} neg @param {TransportName} name
 */
export function offers(neg, name) {
  return Array.isArray(neg.transports) && neg.transports.includes(name) && Boolean(neg.urls && neg.urls[name]) &&
    (transportClass(name).bidirectional || Boolean(neg.urls.send));
}

/** A random client key (§3: 8-64 characters of A-Z a-z 0-9 _ -). @param {() => number} random */
export function randomKey(random) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  const bytes = new Uint8Array(22).map(() => Math.floor(random() * 256));
  const cryptoObj = /** @type {any} */ (globalThis).crypto;
  if (cryptoObj && cryptoObj.getRandomValues) cryptoObj.getRandomValues(bytes);
  return Array.from(bytes, (byte) => alphabet[byte & 63]).join("");
}
