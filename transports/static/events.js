// @ts-check
/**
 * The client's event listeners ("state", "transport", "error", "recovered", "message",
 * "presence" with one payload each; "join" and "leave" with two arguments, topic and member).
 */

/** Listeners by event name; calls application code so that an exception never breaks the client. */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
  }

  /**
   * @param {string} name @param {(...args: any[]) => void} fn
   * @returns {() => void} removes the listener
   */
  on(name, fn) {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    const own = set;
    const wrapper = (/** @type {any[]} */ ...args) => fn(...args);
    own.add(wrapper);
    return () => { own.delete(wrapper); };
  }

  /** @param {string} name @param {...any} args the listener's arguments (one payload for most events) */
  emit(name, ...args) {
    for (const fn of [...(this.listeners.get(name) || [])]) this.invoke(fn, args, name === "error");
  }

  /** Call one handler with one argument, like a listener. @param {Function} fn @param {any} arg */
  call(fn, arg) {
    this.invoke(fn, [arg], false);
  }

  /**
   * Call application code; an exception never breaks the client. It goes to the "error"
   * listeners as `{type: "handler", error}`, or is rethrown asynchronously (so it shows up as an
   * uncaught error) when there are none or an "error" listener itself threw.
   * @param {Function} fn @param {any[]} args @param {boolean} isErrorListener
   */
  invoke(fn, args, isErrorListener) {
    try {
      fn(...args);
    } catch (error) {
      const listeners = this.listeners.get("error");
      if (isErrorListener || !listeners || !listeners.size) queueMicrotask(() => { throw error; });
      else this.emit("error", { type: "handler", error, message: String(/** @type {any} */ (error).message || error) });
    }
  }
}
