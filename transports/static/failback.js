// @ts-check
/**
 * Failback: while on a worse transport, re-probe a better one in the background (a fresh
 * session), resubscribe every topic on it with `since` (§7), then switch to it and drop the old
 * one. Unanswered sends follow with their refs (§8). A transport demoted for flapping must first
 * stay up `flapping.stayUpMs` in its probe.
 */

import { Conn } from "./conn.js";
import { negotiate, offers } from "./negotiate.js";
import { failbackDelay } from "./policy.js";
import { pushHistory } from "./stats.js";
import { clearTimer } from "./timer.js";

/** @typedef {import("./transports.js").TransportName} TransportName */
/** @typedef {import("./client-core.js").Client} Client */

/** The background probe of a better transport. */
export class Failback {
  /** @param {Client} client */
  constructor(client) {
    this.client = client;
    /** @type {Conn | null} the probe connection, while one runs */
    this.probe = null;
    /** probes failed in a row: the delay doubles with each */
    this.attempt = 0;
    /**
     * the next probe; how long a probe of a demoted transport must stay up; the probe's time to
     * resubscribe
     * @type {{probe: any, stay: any, switch: any}}
     */
    this.timers = { probe: null, stay: null, switch: null };
    /** the next probe is the one after a fast start: after `fastStart.probeAfterMs` */
    this.soon = false;
  }

  /** @param {Conn} conn @returns {TransportName[]} the allowed transports the server offered */
  offered(conn) {
    return this.client.options.transports.filter((name) => offers(conn.neg, name));
  }

  /** Plan the next probe, if the current connection is not on the best offered transport. */
  schedule() {
    const { failback, fastStart, clock, random } = this.client.options;
    const conn = this.client._conn;
    if (!failback || !conn || this.probe || this.timers.probe) return;
    if (this.offered(conn).indexOf(conn.name) <= 0) return this.client._fastStartSettled(conn);
    const soon = this.soon && fastStart;
    this.soon = false;
    this.timers.probe = clock.setTimeout(() => {
      this.timers.probe = null;
      this.run();
    }, soon ? fastStart.probeAfterMs : failbackDelay(this.attempt, failback, random));
  }

  /** Negotiate a new session and try each better transport; on success subscribe, then switch. */
  async run() {
    const client = this.client;
    const main = client._conn;
    if (!main || client.state !== "open") return;
    const gen = client._gen;
    const stillCurrent = () => gen === client._gen && client._conn === main;
    client.stats.probes++;
    const offered = this.offered(main);
    const better = offered.slice(0, offered.indexOf(main.name));
    let unanswered = false; // a negotiate failed: nothing learnt about the transports
    for (const [i, name] of better.entries()) {
      let neg;
      try {
        neg = await negotiate(client);
      } catch (error) {
        client.stats.lastProbe = /** @type {Error} */ (error).message;
        unanswered = true;
        break;
      }
      if (!stillCurrent()) return;
      if (!offers(neg, name)) continue;
      const probe = new Conn(name, neg);
      this.probe = probe;
      const result = await probe.open(client);
      if (!stillCurrent() || this.probe !== probe) return client._drop(probe);
      if (result.ok) {
        const { clock, flapping } = client.options;
        if (!client._demoted[name] || !flapping) return this.subscribe(name);
        // Demoted for flapping: trusted again only once it has stayed up a while.
        this.timers.stay = clock.setTimeout(() => {
          this.timers.stay = null;
          if (this.probe !== probe || probe.closed) return;
          client._undemote(name);
          this.subscribe(name);
        }, flapping.stayUpMs);
        return;
      }
      this.probe = null;
      client.stats.lastProbe = result.reason || `${name}: failed`;
      // After a fast start, the probe is where the client finds out what fails: a fallback
      // (stats.fallbacks, fallbackReason, and the reason reported in the next negotiate, §3).
      if (main.fast) client._recordFallback(name, better[i + 1] || main.name, client.stats.lastProbe, result.cause || "error");
    }
    if (!unanswered) client._fastStartSettled(main);
    this.attempt++;
    this.schedule();
  }

  /** Subscribe every topic on the probe, then switch. @param {string} name */
  subscribe(name) {
    const { clock, sendTimeout } = this.client.options;
    this.timers.switch = clock.setTimeout(() => {
      this.timers.switch = null;
      this.failed(`${name}: resubscribing took over ${sendTimeout} ms`);
    }, sendTimeout);
    this.maybeSwitch();
  }

  /** Switch to the probe once every topic is subscribed on it (SUB with since, §7). */
  maybeSwitch() {
    const client = this.client;
    const probe = this.probe;
    if (!probe || !probe.accepted || probe.closed || this.timers.stay) return;
    if (client._subscriptions.resubscribe(probe)) return;
    clearTimer(client.options.clock, this.timers, "switch");
    const old = /** @type {Conn} */ (client._conn);
    this.probe = null;
    this.attempt = 0;
    // The old session is told it is over (an HTTP transport's CLOSE), so the server frees it now.
    if (old.accepted && old.transport) old.transport.leave();
    client._drop(old); // WebSocket close 1000 / EventSource close / polling stops
    client._conn = null;
    pushHistory(client.stats.switches, { from: old.name, to: probe.name, at: client.options.clock.now() });
    client.stats.lastProbe = `${probe.name}: ok`;
    // Unanswered EVENTs go again on the new session with the same refs: the server answers a
    // ref it has seen with the remembered REPLY instead of applying it twice (§8).
    client._attach(probe, old);
  }

  /** @param {string} reason */
  failed(reason) {
    this.client.stats.lastProbe = reason;
    this.abort();
    this.attempt++;
    this.schedule();
  }

  /** Stop the probe and its timers (the connection changed, or the client closed). */
  abort() {
    const clock = this.client.options.clock;
    clearTimer(clock, this.timers, "probe");
    clearTimer(clock, this.timers, "stay");
    clearTimer(clock, this.timers, "switch");
    const probe = this.probe;
    this.probe = null;
    if (probe) this.client._drop(probe);
  }
}
