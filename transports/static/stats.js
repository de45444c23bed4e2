// @ts-check
/** The client's counters, for debugging, demos and browser tests. */

/** How many entries stats.fallbacks and stats.switches keep. */
const HISTORY = 20;

/**
 * Counters for debugging, demos and browser tests.
 * @typedef {Object} Stats
 * @property {number} attempts connection cycles started (each negotiates at least once)
 * @property {number} reconnects successful reconnects after a lost connection
 * @property {number} reauthentications reconnects with a fresh token after the server ended the
 *   session for its credentials (4501)
 * @property {number} demotions transports demoted for flapping
 * @property {{from: string, to: string | null, reason: string, at: number}[]} fallbacks last 20
 * @property {{from: string, to: string, at: number}[]} switches failback switches, last 20
 * @property {number} probes background probes of a better transport
 * @property {string | null} lastProbe outcome of the last probe
 * @property {number | null} lastNegotiateMs duration of the last negotiate request
 * @property {import("./transport-base.js").CloseInfo | null} lastClose how the last connection ended
 */

/** @returns {Stats} all zero */
export function newStats() {
  return { attempts: 0, reconnects: 0, reauthentications: 0, demotions: 0, fallbacks: [], switches: [], probes: 0, lastProbe: null,
    lastNegotiateMs: null, lastClose: null };
}

/**
 * Append to a history list (stats.fallbacks, stats.switches), keeping the last 20.
 * @template T @param {T[]} list @param {T} entry
 */
export function pushHistory(list, entry) {
  list.push(entry);
  if (list.length > HISTORY) list.shift();
}
