// @ts-check
/**
 * Time: the injectable clock (tests pass a fake one), deadlines, sleeps and named timers. The
 * delays themselves (backoff, failback, liveness) are policy: see policy.js.
 */

/**
 * @typedef {Object} Clock injectable time source (tests use a fake one)
 * @property {(fn: () => void, ms: number) => any} setTimeout
 * @property {(id: any) => void} clearTimeout
 * @property {() => number} now milliseconds, like Date.now()
 */

/** @type {Clock} */
export const realClock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
  now: () => Date.now(),
};

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

/** Resolve after `ms` on `clock`. @param {Clock} clock @param {number} ms @returns {Promise<void>} */
export const sleep = (clock, ms) => new Promise((resolve) => clock.setTimeout(resolve, ms));

/**
 * Cancel the timer stored under `name` in `timers`, if any, and forget it.
 * @param {Clock} clock @param {Record<string, any>} timers @param {string} name
 */
export function clearTimer(clock, timers, name) {
  if (timers[name] == null) return;
  clock.clearTimeout(timers[name]);
  timers[name] = null;
}
