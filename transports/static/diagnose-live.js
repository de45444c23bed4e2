// @ts-check
/**
 * The diagnose page's live view, without the DOM: one client per transport, each subscribed to
 * the same `$diagnose:<id>` topic; the page publishes through the publish endpoint at a steady
 * rate and each client records, per publication, its latency (the page's clock at receipt minus
 * the page's clock written in the publication) and the bytes it took on the wire (an estimate,
 * see diagnose-probe.js), plus round trips, reconnects and fallbacks.
 */

import { connect } from "./client.js";
import { TRANSPORT_ORDER, Tap, publishDiagnose, tappedOptions } from "./diagnose-probe.js";

/** @typedef {import("./diagnose-probe.js").TransportName} TransportName */

/**
 * What one pane shows; `points` is what the charts draw.
 * @typedef {Object} PaneData
 * @property {TransportName} transport the one transport this client may use
 * @property {string} state the client's state
 * @property {string | null} on the transport it is open on (null while not open)
 * @property {number} received publications delivered
 * @property {{n: number, t: number, latency: number, bytes: number | null}[]} points one per
 *   publication: `t` seconds since the start, `latency` ms, `bytes` estimated bytes on the wire
 * @property {{t: number, ms: number}[]} roundTrips subscribe round trips
 * @property {number} reconnects the client's `stats.reconnects`
 * @property {number} fallbacks entries of the client's `stats.fallbacks`
 * @property {string | null} lastFallback the last fallback's reason
 * @property {string[]} errors the client's error events, last 5
 */

/**
 * @typedef {Object} LiveData
 * @property {"idle" | "running" | "done"} status
 * @property {string} topic
 * @property {number} durationMs how long the page publishes
 * @property {number} rate publications per second
 * @property {number} elapsedMs since the start
 * @property {number} published publications the endpoint took
 * @property {number} publishErrors publications it refused or never answered
 * @property {Record<string, PaneData>} panes by transport
 */

/** The median of a list of numbers (null when empty). @param {number[]} values */
export function median(values) {
  if (!values.length) return null;
  const sorted = values.slice().sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The p-th percentile (0-100, nearest rank; null when empty). @param {number[]} values @param {number} p */
export function percentile(values, p) {
  if (!values.length) return null;
  const sorted = values.slice().sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Three clients side by side on one topic, with a publisher. */
export class LiveView {
  /**
   * @param {{prefix: string, id: string, durationMs: number, rate: number,
   *   roundTripEveryMs?: number, graceMs?: number}} run
   * @param {(data: LiveData) => void} onUpdate called after every change
   */
  constructor(run, onUpdate) {
    this.run = run;
    this.onUpdate = onUpdate;
    this.t0 = 0;
    /** @type {LiveData} */
    this.data = {
      status: "idle",
      topic: `$diagnose:${run.id}`,
      durationMs: run.durationMs,
      rate: run.rate,
      elapsedMs: 0,
      published: 0,
      publishErrors: 0,
      panes: {},
    };
    /** @type {{name: TransportName, client: any, tap: Tap, rtt: boolean}[]} */
    this.clients = [];
    /** @type {any[]} */
    this.timers = [];
  }

  /** ms since the start. */
  since() {
    return performance.now() - this.t0;
  }

  start() {
    if (this.data.status === "running") return;
    this.t0 = performance.now();
    this.data.status = "running";
    for (const name of TRANSPORT_ORDER) this.open(name);
    const every = 1000 / Math.max(0.1, this.run.rate);
    let n = 0;
    const publish = () => {
      if (this.since() >= this.run.durationMs) return this.finish();
      n++;
      const body = { n, sent: performance.now() };
      publishDiagnose(this.run.prefix, this.data.topic, "live", body)
        .then(() => { this.data.published++; }, () => { this.data.publishErrors++; })
        .finally(() => this.changed());
    };
    this.timers.push(setInterval(publish, every));
    this.timers.push(setInterval(() => this.roundTrips(), this.run.roundTripEveryMs ?? 2000));
    this.timers.push(setInterval(() => this.changed(), 500));
    this.changed();
  }

  /** @param {TransportName} name */
  open(name) {
    const tap = new Tap();
    /** @type {PaneData} */
    const pane = {
      transport: name, state: "connecting", on: null, received: 0, points: [], roundTrips: [],
      reconnects: 0, fallbacks: 0, lastFallback: null, errors: [],
    };
    this.data.panes[name] = pane;
    let client;
    try {
      client = connect(this.run.prefix, tappedOptions(name, tap));
    } catch (error) {
      pane.state = "unusable";
      pane.errors.push(/** @type {Error} */ (error).message);
      return;
    }
    const entry = { name, client, tap, rtt: false };
    this.clients.push(entry);
    client.on("state", (/** @type {any} */ { state }) => {
      pane.state = state;
      pane.on = client.transport;
      this.count(entry, pane);
    });
    client.on("error", (/** @type {any} */ error) => {
      pane.errors.push(`${error.type}: ${error.message}`);
      if (pane.errors.length > 5) pane.errors.shift();
    });
    client.subscribe(this.data.topic, (/** @type {any} */ pub) => {
      const data = pub.data || {};
      if (typeof data.sent !== "number") return;
      pane.received++;
      pane.points.push({
        n: Number(data.n),
        t: Math.round(this.since()) / 1000,
        latency: Math.round((performance.now() - data.sent) * 10) / 10,
        bytes: tap.bytesOf(pub.topic, pub.offset),
      });
      this.count(entry, pane);
      this.changed();
    });
  }

  /** Copy the client's counters into its pane. @param {{client: any}} entry @param {PaneData} pane */
  count(entry, pane) {
    const stats = entry.client.stats;
    pane.reconnects = stats.reconnects;
    pane.fallbacks = stats.fallbacks.length;
    pane.lastFallback = stats.fallbacks.length ? stats.fallbacks[stats.fallbacks.length - 1].reason : null;
  }

  /** A round trip on every open client: subscribe to a topic of its own and time the reply. */
  roundTrips() {
    for (const entry of this.clients) {
      const pane = this.data.panes[entry.name];
      if (entry.rtt || entry.client.state !== "open") continue;
      entry.rtt = true;
      const started = performance.now();
      const off = entry.client.subscribe(`${this.data.topic}-rtt`, () => {});
      off.ready.then(
        () => { pane.roundTrips.push({ t: Math.round(this.since()) / 1000, ms: Math.round((performance.now() - started) * 10) / 10 }); },
        () => {},
      ).finally(() => {
        off();
        entry.rtt = false;
        this.changed();
      });
    }
  }

  /** Stop publishing; close the clients once the last publications had time to arrive. */
  finish() {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    this.timers.push(setTimeout(() => this.stop(), this.run.graceMs ?? 2000));
  }

  /** Close every client and stop every timer. */
  stop() {
    for (const timer of this.timers) { clearInterval(timer); clearTimeout(timer); }
    this.timers = [];
    for (const entry of this.clients) {
      this.count(entry, this.data.panes[entry.name]);
      entry.client.close();
    }
    this.clients = [];
    if (this.data.status === "running") this.data.status = "done";
    this.changed();
  }

  changed() {
    if (this.data.status === "running") this.data.elapsedMs = Math.round(this.since());
    this.onUpdate(this.data);
  }
}
