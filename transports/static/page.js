// @ts-check
/**
 * The page around the client: online/offline, visibility and back-forward-cache restores, and
 * the storage that remembers which transport worked for an endpoint.
 */

/** @typedef {import("./transports.js").TransportName} TransportName */

/**
 * Listen to the page: `online` when the browser is back online, `wake` when the tab becomes
 * visible or is restored from the back-forward cache, `leave` when the page goes away for good
 * (`pagehide` not into the back-forward cache), `network` when the network may have changed
 * (`online`, `offline`, a `change` of `navigator.connection` where it exists; before `online`).
 * @param {any} win target of online/offline/pageshow/pagehide (or null) @param {any} doc target of visibilitychange (or null)
 * @param {{online: () => void, wake: () => void, leave?: () => void, network?: () => void}} on
 * @param {any} [nav] the navigator, whose `connection` (if any) says when the network changes
 * @returns {() => void} removes exactly the listeners it added
 */
export function bindPage(win, doc, on, nav = null) {
  /** @type {[any, string, (event: any) => void][]} */
  const bindings = [];
  const network = on.network || (() => {});
  if (win && typeof win.addEventListener === "function") {
    bindings.push([win, "online", () => { network(); on.online(); }]);
    bindings.push([win, "offline", () => network()]);
    bindings.push([win, "pageshow", (event) => { if (event && event.persisted) on.wake(); }]);
    const leave = on.leave;
    if (leave) bindings.push([win, "pagehide", (event) => { if (!(event && event.persisted)) leave(); }]);
  }
  if (doc && typeof doc.addEventListener === "function") {
    bindings.push([doc, "visibilitychange", () => { if (doc.visibilityState === "visible") on.wake(); }]);
  }
  const connection = nav && nav.connection;
  if (connection && typeof connection.addEventListener === "function") bindings.push([connection, "change", () => network()]);
  for (const [target, name, fn] of bindings) target.addEventListener(name, fn);
  return () => {
    for (const [target, name, fn] of bindings) target.removeEventListener(name, fn);
  };
}

/** @param {{onLine?: boolean} | null} nav @returns {boolean} whether the browser says it is offline */
export function isOffline(nav) {
  return Boolean(nav && nav.onLine === false);
}

/**
 * @typedef {Object} Memory where and how long the transport that worked is remembered
 * @property {Storage | null | undefined} storage
 * @property {number} rememberMs
 * @property {import("./timer.js").Clock} clock
 * @property {readonly TransportName[]} transports the allowed ones
 */

/**
 * @param {Memory} memory @param {string} key
 * @returns {TransportName | null} the transport remembered for this endpoint, if fresh and allowed
 */
export function recallTransport({ storage, rememberMs, clock, transports }, key) {
  try {
    const saved = storage ? JSON.parse(storage.getItem(key) || "null") : null;
    const age = saved ? clock.now() - Number(saved.at) : Infinity;
    if (saved && transports.includes(saved.transport) && age >= 0 && age <= rememberMs) return saved.transport;
  } catch (_) { /* storage blocked or garbage */ }
  return null;
}

/**
 * @param {Memory} memory @param {string} key
 * @returns {Partial<Record<TransportName, number>>} the transports remembered as demoted for
 *   flapping (and when), if fresh and allowed
 */
export function recallDemoted({ storage, rememberMs, clock, transports }, key) {
  /** @type {Partial<Record<TransportName, number>>} */
  const demoted = {};
  try {
    const saved = storage ? JSON.parse(storage.getItem(key) || "null") : null;
    for (const [name, at] of Object.entries((saved && saved.demoted) || {})) {
      const age = clock.now() - Number(at);
      if (transports.includes(/** @type {TransportName} */ (name)) && age >= 0 && age <= rememberMs) {
        demoted[/** @type {TransportName} */ (name)] = Number(at);
      }
    }
  } catch (_) { /* storage blocked or garbage */ }
  return demoted;
}

/**
 * @param {Memory} memory @param {string} key @param {TransportName} name the transport that works
 * @param {Partial<Record<TransportName, number>>} [demoted] transports demoted for flapping
 */
export function rememberTransport({ storage, clock }, key, name, demoted = {}) {
  try {
    /** @type {Record<string, any>} */
    const entry = { transport: name, at: clock.now() };
    if (Object.keys(demoted).length) entry.demoted = demoted;
    if (storage) storage.setItem(key, JSON.stringify(entry));
  } catch (_) { /* storage full or blocked */ }
}

/**
 * Forget what is remembered for this endpoint (the network changed: what worked may not).
 * @param {Memory} memory @param {string} key
 */
export function forgetTransport({ storage }, key) {
  try {
    if (storage) storage.removeItem(key);
  } catch (_) { /* storage blocked */ }
}
