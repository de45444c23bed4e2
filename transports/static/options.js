// @ts-check
/** The options of connect(): their documentation, defaults, and the merge over the environment. */

import { OPTION_DEFAULTS } from "./policy.js";
import { realClock } from "./timer.js";
import { TRANSPORT_NAMES, isTransportName, transportClass } from "./transports.js";

/** @typedef {import("./transports.js").TransportName} TransportName */
/** @typedef {import("./timer.js").Clock} Clock */
/** @typedef {import("./transport-base.js").Fetch} Fetch */

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
 * @property {string | (() => string | null | undefined | Promise<string | null | undefined>)} [token]
 *   bearer token for negotiate; a function is called again before every negotiate. When the
 *   server ends the session for its credentials (4501, e.g. its `revalidate` hook refused an
 *   expired token), a function is asked for a fresh token and the client resumes on a new
 *   session without loss; if it gives none (null, "", or throws) or the server refuses it, the
 *   client closes with 4501 "credentials refused". A string cannot be renewed: the client closes
 * @property {{upForLessThanMs?: number, times?: number, stayUpMs?: number} | false} [flapping]
 *   a transport whose connections die within `upForLessThanMs` of opening `times` times in a
 *   row is demoted to the next one (and remembered so); the background probe brings it back
 *   once it stayed up `stayUpMs` (10000, 3, 30000: the policy's); false disables it
 * @property {number} [sendTimeout] ms send()/publish() wait for their REPLY once sent (10000)
 * @property {number} [maxQueue] sends kept while not connected; more reject with
 *   code "queue_full" (1000)
 * @property {Storage | null} [storage] where the transport that worked is remembered, shared
 *   by the tabs of the origin (localStorage, else sessionStorage; null to disable); forgotten
 *   when the network changes (online, offline, navigator.connection change)
 * @property {number} [rememberMs] how long that memory is trusted (24 hours)
 * @property {{transport?: TransportName, probeAfterMs?: number, rememberedDeadlineMs?: number} | false} [fastStart]
 *   with no transport remembered, open on `transport` (long-poll: it passes every proxy) and
 *   probe the better ones in the background `probeAfterMs` after it opened (0), switching
 *   without loss (failback); a remembered transport other than `transport` gets
 *   `rememberedDeadlineMs` (1000) on the page's first connection before `transport` is tried.
 *   false: the transports in order (the remembered one first), each with its full deadline.
 *   Needs failback: with `failback: false` there is no fast start
 * @property {boolean} [closeOnPageHide] close the client (a goodbye to the server) when the page
 *   goes away for good: `pagehide` not into the back-forward cache (default true)
 * @property {boolean} [share] share one connection between the tabs of this origin that connect
 *   to the same URL with the same credentials (default true; share.js)
 * @property {string} [shareKey] names the credentials for tab sharing: tabs share only with tabs
 *   of the same key (default: the `token` string; with a token function, no sharing without it)
 * @property {any} [BroadcastChannel] constructor to use instead of the global one (tests)
 * @property {any} [locks] LockManager to use instead of `navigator.locks` (tests)
 * @property {any} [WebSocket] constructor to use instead of the global one (tests)
 * @property {any} [EventSource] constructor to use instead of the global one (tests)
 * @property {Fetch} [fetch] function to use instead of the global fetch (tests)
 * @property {Clock} [clock] time source (tests)
 * @property {() => number} [random] random source in [0, 1) (tests)
 * @property {any} [window] target of online/pageshow listeners (default: globalThis, tests)
 * @property {any} [document] target of visibilitychange listeners (default: document, tests)
 * @property {{onLine?: boolean, connection?: any}} [navigator] online status source, and the
 *   network's (`connection` change events), default: navigator (tests)
 */

/** Defaults for {@link connect} options: the registry's transports, then the policy's values. */
export const DEFAULTS = Object.freeze({ transports: TRANSPORT_NAMES, ...OPTION_DEFAULTS });

/** @typedef {ReturnType<typeof resolveOptions>} Resolved */

/**
 * Merge options over DEFAULTS, dropping transports this environment cannot run (a transport's
 * `environment` says what it needs; what it returns goes to the transport when it starts).
 * @param {Options} options
 */
export function resolveOptions(options) {
  const g = /** @type {any} */ (globalThis);
  const fetchFn = options.fetch || g.fetch;
  if (typeof fetchFn !== "function") throw new TypeError("transports: fetch is required");
  /** @type {Partial<Record<TransportName, Record<string, any>>>} */
  const environment = {};
  for (const name of TRANSPORT_NAMES) {
    const needs = transportClass(name).environment(options, g);
    if (needs) environment[name] = needs;
  }
  const wanted = options.transports || DEFAULTS.transports;
  const transports = /** @type {TransportName[]} */ (
    wanted.filter((name, i) => isTransportName(name) && wanted.indexOf(name) === i && Boolean(environment[name]))
  );
  if (!transports.length) throw new TypeError("transports: no usable transport");
  let storage = options.storage;
  if (storage === undefined) {
    try { storage = g.localStorage || g.sessionStorage || null; } catch (_) { storage = null; }
  }
  const failback = options.failback === false ? null : { ...DEFAULTS.failback, ...options.failback };
  const fastStart = options.fastStart === false || !failback ? null : { ...DEFAULTS.fastStart, ...options.fastStart };
  return {
    transports,
    deadlines: /** @type {Record<string, number>} */ ({ ...DEFAULTS.deadlines, ...options.deadlines }),
    backoff: { ...DEFAULTS.backoff, ...options.backoff },
    failback,
    /** @type {{transport: TransportName, probeAfterMs: number, rememberedDeadlineMs: number} | null} */
    fastStart: fastStart && transports.includes(fastStart.transport) ? fastStart : null,
    flapping: options.flapping === false ? null : { ...DEFAULTS.flapping, ...options.flapping },
    token: options.token,
    sendTimeout: options.sendTimeout ?? DEFAULTS.sendTimeout,
    maxQueue: options.maxQueue ?? DEFAULTS.maxQueue,
    rememberMs: options.rememberMs ?? DEFAULTS.rememberMs,
    storage,
    /** what each usable transport needs when it starts (its constructors) */
    environment,
    /** @type {Fetch} */
    fetch: (url, init) => fetchFn(url, init),
    clock: options.clock || realClock,
    random: options.random || Math.random,
    closeOnPageHide: options.closeOnPageHide !== false,
    window: options.window !== undefined ? options.window : g.addEventListener ? g : null,
    document: options.document !== undefined ? options.document : g.document || null,
    navigator: options.navigator !== undefined ? options.navigator : g.navigator || null,
  };
}

/**
 * Transports in the order to try: the one that worked last first, then the rest in preference
 * order, those demoted for flapping last.
 * @param {readonly TransportName[]} transports @param {TransportName | null} preferred
 * @param {readonly string[]} [demoted]
 * @returns {TransportName[]}
 */
export function orderTransports(transports, preferred, demoted = []) {
  const first = !preferred || !transports.includes(preferred) ? transports.slice()
    : [preferred, ...transports.filter((name) => name !== preferred)];
  return [...first.filter((name) => !demoted.includes(name)), ...first.filter((name) => demoted.includes(name))];
}
