// @ts-check
/**
 * The diagnose page (`<prefix>/diagnose`, served when the server's `diagnose` setting is on):
 * checks each transport from the browser through the real network path and shows a verdict per
 * transport (diagnose.json's catalogue), a JSON report in the CLI's shape to copy, and a live
 * side-by-side view of the three transports (started by its button, or by `#live` in the URL).
 *
 * Query string: `duration` (seconds the live view publishes, 60), `rate` (publications per
 * second, 2, at most 5: the server's limit per address), `count` and `spacing` (publications per check and ms between them, 5 and 300),
 * `idle` (seconds each transport's connection is then held idle, ended early by the server's
 * first heartbeat: 30 as the CLI's `--idle`, 0 for none; the three holds run at once).
 * Everything the page measured is on `window.diagnose` too (for tests and curious users).
 */

import { drawChart, legendSample } from "./diagnose-chart.js";
import { LiveView, median, percentile } from "./diagnose-live.js";
import { IDLE_SECONDS, TRANSPORT_ORDER, buildReport, checkTransport, runId, transportReport } from "./diagnose-probe.js";

/** @typedef {import("./diagnose-probe.js").TransportName} TransportName */
/** @typedef {import("./diagnose-probe.js").Catalogue} Catalogue */
/** @typedef {import("./diagnose-probe.js").Report} Report */
/** @typedef {import("./diagnose-probe.js").Observation} Observation */
/** @typedef {import("./diagnose-live.js").LiveData} LiveData */

/** The extension's prefix (absolute), where this module is served. */
const PREFIX = new URL(".", import.meta.url).href.replace(/\/+$/, "");

const NAMES = /** @type {Record<TransportName, string>} */ ({
  websocket: "WebSocket",
  sse: "Server-Sent Events",
  longpoll: "Long-polling",
});

/** How each transport is drawn: colour, marker and dash differ, so colour is not the only cue. */
const LOOK = /** @type {Record<TransportName, {color: string, marker: "circle" | "square" | "triangle", dash: string}>} */ ({
  websocket: { color: "#1d5fbf", marker: "circle", dash: "" },
  sse: { color: "#c2410c", marker: "square", dash: "6 3" },
  longpoll: { color: "#8b2fa8", marker: "triangle", dash: "2 3" },
});

const STYLE = `
:root { color-scheme: light dark; --fg: #1a1a1a; --bg: #fdfdfc; --muted: #555; --line: #d4d4d0;
  --panel: #f3f3f0; --ok: #17692f; --ok-bg: #e3f3e7; --bad: #a61b1b; --bad-bg: #fbe6e6; --focus: #1d5fbf; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #ececea; --bg: #161616; --muted: #b4b4ae; --line: #44443f; --panel: #22221f;
    --ok: #8fdca3; --ok-bg: #17301f; --bad: #f4a3a3; --bad-bg: #3a1b1b; --focus: #8ab4f8; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 62rem; padding: 1.25rem 1rem 3rem; font: 16px/1.5 system-ui,
  -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 1.7rem; margin: 0 0 .25rem; }
h2 { font-size: 1.3rem; margin: 2rem 0 .25rem; padding-top: 1rem; border-top: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.25rem 0 .25rem; }
header p, .explain { color: var(--muted); max-width: 48rem; margin: .25rem 0 .75rem; }
.controls { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem; }
button { font: inherit; padding: .4rem .9rem; border: 1px solid var(--fg); border-radius: .3rem;
  background: var(--panel); color: var(--fg); cursor: pointer; }
button:disabled { opacity: .55; cursor: not-allowed; }
button:focus-visible, pre:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
[role=status] { color: var(--muted); }
.summary { font-weight: 600; min-height: 1.5em; }
.results { display: grid; gap: .75rem; }
.result { border: 1px solid var(--line); border-left-width: 6px; border-radius: .35rem; padding: .6rem .9rem; background: var(--panel); }
.result.ok { border-left-color: var(--ok); }
.result.fail { border-left-color: var(--bad); }
.result h3 { display: flex; flex-wrap: wrap; align-items: baseline; gap: .25rem .75rem; margin: 0 0 .35rem; }
.badge { font-size: .85rem; font-weight: 600; padding: .05rem .5rem; border-radius: 1rem; }
.ok .badge { color: var(--ok); background: var(--ok-bg); }
.fail .badge { color: var(--bad); background: var(--bad-bg); }
.pending .badge { color: var(--muted); background: transparent; border: 1px solid var(--line); }
.hold { display: flex; flex-wrap: wrap; align-items: center; gap: .25rem .75rem; margin: 0; }
.hold progress { width: 12rem; height: .9rem; accent-color: var(--focus); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
ul.observed { margin: 0; padding-left: 1.1rem; }
code { font-size: .9em; background: var(--bg); border: 1px solid var(--line); border-radius: .2rem; padding: 0 .2rem; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: .35rem; padding: .75rem;
  overflow: auto; max-height: 24rem; font-size: .85rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.panes { display: grid; grid-template-columns: repeat(auto-fit, minmax(15rem, 1fr)); gap: .75rem; margin: .75rem 0; }
.pane { border: 1px solid var(--line); border-top-width: 5px; border-radius: .35rem; padding: .5rem .75rem; background: var(--panel); }
.pane h3 { margin: 0 0 .35rem; display: flex; align-items: center; gap: .5rem; }
.pane dl { font-size: .92rem; }
figure { margin: 1rem 0; }
figcaption { color: var(--muted); font-size: .92rem; }
.chart { width: 100%; height: auto; display: block; background: var(--panel); border: 1px solid var(--line); border-radius: .35rem; }
.chart .grid line { stroke: var(--line); stroke-width: 1; }
.chart .grid text { fill: var(--muted); font-size: 12px; font-family: system-ui, sans-serif; }
.chart .frame { stroke: var(--muted); stroke-width: 1; }
.chart .empty { fill: var(--muted); font-size: 15px; font-family: system-ui, sans-serif; }
.legend { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; list-style: none; padding: 0; margin: 0; }
.legend li { display: flex; align-items: center; gap: .4rem; }
.note { padding: .5rem .75rem; border: 1px solid var(--line); background: var(--panel); }
`;

/** The page's state, readable by tests: `window.diagnose`. */
const state = /** @type {{prefix: string, catalogue: Catalogue | null, check: {status: string,
 *   report: Report | null, observations: any[]}, live: LiveData | null}} */ ({
  prefix: PREFIX,
  catalogue: null,
  check: { status: "idle", report: null, observations: [] },
  live: null,
});
/** @type {any} */ (window).diagnose = state;

const params = new URLSearchParams(location.search);

/** The live view's publications per second: the server takes at most 5 a second per address. */
const liveRate = () => Math.min(5, param("rate", 2));
/** A positive number from the query string, else `fallback`. @param {string} name @param {number} fallback */
const param = (name, fallback) => {
  const value = Number(params.get(name));
  return Number.isFinite(value) && value > 0 ? value : fallback;
};

/** Seconds each connection is held idle (`idle`, 0: none), else the CLI's default. */
const idleSeconds = () => {
  const value = Number(params.get("idle") ?? NaN);
  return Number.isFinite(value) && value >= 0 ? value : IDLE_SECONDS;
};

/** @param {string} id @returns {HTMLElement} */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * An element with text and attributes.
 * @param {string} tag @param {Record<string, string>} [attrs] @param {(string | Node)[]} [children]
 */
function h(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

/** A definition list from `[term, value]` pairs (values that are null are left out). @param {[string, string | Node | null][]} rows */
function list(rows) {
  const dl = h("dl");
  for (const [term, value] of rows) if (value !== null && value !== "") dl.append(h("dt", {}, [term]), h("dd", {}, [value]));
  return dl;
}

/**
 * Catalogue text with its `code` spans (backticks) shown as code.
 * @param {string} text @returns {Node}
 */
function withCode(text) {
  const span = h("span");
  text.split(/(`[^`]+`)/).forEach((part) => {
    if (part.length > 2 && part.startsWith("`") && part.endsWith("`")) span.append(h("code", {}, [part.slice(1, -1)]));
    else if (part) span.append(part);
  });
  return span;
}

/** diagnose.json, the verdict catalogue, or null when it cannot be read. @returns {Promise<Catalogue | null>} */
async function loadCatalogue() {
  try {
    const res = await fetch(`${PREFIX}/diagnose.json`, { cache: "no-cache" });
    return res.ok ? await res.json() : null;
  } catch (_) {
    return null;
  }
}

// --- the check -------------------------------------------------------------------------------

/** @param {TransportName} name @param {string} text */
function pendingCard(name, text) {
  return h("article", { class: "result pending", "data-transport": name }, [
    h("h3", {}, [NAMES[name], h("span", { class: "badge" }, [text])]),
  ]);
}

/**
 * The card of a transport whose connection is held idle: the time left, as a bar and in words.
 * @param {TransportName} name @param {number} elapsed ms since the hold began @param {number} idleS
 */
function holdingCard(name, elapsed, idleS) {
  const left = Math.max(0, Math.ceil(idleS - elapsed / 1000));
  const bar = h("progress", { max: String(idleS), value: String(Math.min(idleS, elapsed / 1000)),
    "aria-label": `${NAMES[name]}: idle hold` });
  return h("article", { class: "result pending", "data-transport": name, "data-holding": "" }, [
    h("h3", {}, [NAMES[name], h("span", { class: "badge" }, ["holding idle…"])]),
    h("p", { class: "hold" }, [bar, `Left idle, waiting up to ${idleS} s for the server's heartbeat: ${left} s left.`]),
  ]);
}

/** @param {TransportName} name @param {import("./diagnose-probe.js").TransportReport} r */
function resultCard(name, r) {
  const rows = /** @type {[string, string | Node | null][]} */ ([
    ["First message", r.first_message_ms === null ? null : `${Math.round(r.first_message_ms)} ms after connecting (the server's hello)`],
    [r.ok ? "Verdict" : "Problem", r.ok ? null : r.title],
    ["What the page saw", h("ul", { class: "observed" }, r.observed.map((line) => h("li", {}, [line])))],
    ["Likely cause", r.ok || !r.cause ? null : withCode(r.cause)],
    ["What to do", r.ok || !r.fix ? null : withCode(r.fix)],
  ]);
  return h("article", { class: `result ${r.ok ? "ok" : "fail"}`, "data-transport": name, "data-verdict": r.verdict }, [
    h("h3", {}, [NAMES[name], h("span", { class: "badge" }, [r.ok ? "✓ works" : "✗ does not work"])]),
    list(rows),
  ]);
}

async function runCheck() {
  if (state.check.status === "running") return;
  const button = /** @type {HTMLButtonElement} */ ($("run"));
  const copy = /** @type {HTMLButtonElement} */ ($("copy"));
  button.disabled = copy.disabled = true;
  state.check = { status: "running", report: null, observations: [] };
  $("summary").textContent = "";
  $("copy-status").textContent = "";
  $("report").textContent = "The report appears here once the check is done.";
  const results = $("results");
  results.replaceChildren(...TRANSPORT_ORDER.map((name) => pendingCard(name, "waiting")));
  const id = runId();
  const catalogue = state.catalogue;
  const idleS = idleSeconds();
  /** @param {TransportName} name @param {HTMLElement} card */
  const show = (name, card) => {
    const old = results.querySelector(`[data-transport="${name}"]`);
    if (old) old.replaceWith(card);
  };
  /** @type {Map<TransportName, number>} when each idle hold began (performance.now()) */
  const holding = new Map();
  /** @type {Partial<Record<TransportName, Observation>>} */
  const found = {};
  let checking = "";
  const status = () => {
    const now = performance.now();
    for (const [name, since] of holding) show(name, holdingCard(name, now - since, idleS));
    const left = Math.max(0, ...[...holding.values()].map((since) => Math.ceil(idleS - (now - since) / 1000)));
    const held = [...holding.keys()].map((name) => NAMES[name]).join(", ");
    $("check-status").textContent = checking
      ? `Checking ${checking}…${held ? ` (holding ${held} idle)` : ""}`
      : holding.size ? `Holding ${held} idle: up to ${idleS} s, until the server's heartbeat (${left} s left)…` : "";
  };
  const ticker = setInterval(status, 500);
  try {
    /** @type {Promise<void>[]} */
    const checks = [];
    for (const name of TRANSPORT_ORDER) {
      checking = NAMES[name];
      status();
      show(name, pendingCard(name, "checking…"));
      /** @type {() => void} */
      let holds = () => {};
      const held = new Promise((resolve) => { holds = () => resolve(undefined); });
      // The next transport is checked once this one holds its connection idle: the holds overlap.
      const checked = checkTransport(name, {
        prefix: PREFIX, id: `${id}-${name}`, count: param("count", 5), spacingMs: param("spacing", 300),
        idleMs: idleS * 1000,
        onHold: () => { holding.set(name, performance.now()); holds(); },
      }).then((obs) => {
        holding.delete(name);
        found[name] = obs;
        show(name, resultCard(name, transportReport(obs, catalogue)));
        status();
      });
      checks.push(checked);
      await Promise.race([held, checked]);
    }
    checking = "";
    status();
    await Promise.all(checks);
    state.check.observations = TRANSPORT_ORDER.flatMap((name) => found[name] || []);
    const report = buildReport(PREFIX, state.check.observations, catalogue);
    state.check.report = report;
    $("summary").textContent = report.best
      ? `Best transport from here: ${NAMES[/** @type {TransportName} */ (report.best)]}.`
      : "No transport works from here: see the problems below.";
    $("report").textContent = JSON.stringify(report, null, 2);
    $("check-status").textContent = catalogue ? "Done." : "Done (the verdict texts could not be loaded: diagnose.json).";
    state.check.status = "done";
  } catch (error) {
    state.check.status = "failed";
    $("check-status").textContent = `The check itself failed: ${/** @type {Error} */ (error).message}`;
  } finally {
    clearInterval(ticker);
    button.disabled = false;
    copy.disabled = !state.check.report;
  }
}

/** Put the report on the clipboard; where the page may not, select it for the user to copy. */
async function copyReport() {
  const text = state.check.report ? JSON.stringify(state.check.report, null, 2) : "";
  if (!text) return;
  const status = $("copy-status");
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = "Copied to the clipboard.";
    return;
  } catch (_) { /* no clipboard API here (a page over plain HTTP), or refused */ }
  const range = document.createRange();
  range.selectNodeContents($("report"));
  const selection = getSelection();
  if (selection) {
    selection.removeAllRanges();
    selection.addRange(range);
  }
  let copied = false;
  try { copied = document.execCommand("copy"); } catch (_) { /* unsupported */ }
  status.textContent = copied ? "Copied to the clipboard." : "The report is selected below: copy it with Ctrl+C (⌘C).";
}

// --- the live view ---------------------------------------------------------------------------

/** @type {LiveView | null} */
let live = null;
let drawPending = false;

function startLive() {
  if (live && live.data.status === "running") return;
  const durationMs = param("duration", 60) * 1000;
  const rate = liveRate();
  live = new LiveView({ prefix: PREFIX, id: `${runId()}-live`, durationMs, rate }, (data) => {
    state.live = data;
    // The last update is drawn at once: what the page shows then matches window.diagnose.live.
    if (data.status !== "running") return renderLive(data);
    if (!drawPending) {
      drawPending = true;
      requestAnimationFrame(() => { drawPending = false; renderLive(data); });
    }
  });
  state.live = live.data;
  /** @type {HTMLButtonElement} */ ($("live-start")).disabled = true;
  /** @type {HTMLButtonElement} */ ($("live-stop")).disabled = false;
  live.start();
}

/** @param {number | null} value @param {string} unit */
const num = (value, unit) => (value === null ? "-" : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${unit}`);

/** @param {LiveData} data */
function renderLive(data) {
  const running = data.status === "running";
  $("live-status").textContent = running
    ? `Running: ${Math.round(data.elapsedMs / 1000)} of ${Math.round(data.durationMs / 1000)} s, ${data.published} published.`
    : data.status === "done" ? `Done: ${data.published} published${data.publishErrors ? `, ${data.publishErrors} refused` : ""}.` : "";
  /** @type {HTMLButtonElement} */ ($("live-start")).disabled = running;
  /** @type {HTMLButtonElement} */ ($("live-stop")).disabled = !running;
  const panes = $("panes");
  panes.replaceChildren(...TRANSPORT_ORDER.map((name) => {
    const pane = data.panes[name];
    const latencies = pane ? pane.points.map((p) => p.latency) : [];
    const bytes = pane ? pane.points.map((p) => p.bytes).filter((b) => b !== null) : [];
    const trips = pane ? pane.roundTrips.map((r) => r.ms) : [];
    const last = latencies.length ? latencies[latencies.length - 1] : null;
    const node = h("section", { class: "pane", "data-transport": name, "aria-label": NAMES[name] }, [
      h("h3", {}, [legendSample({ name, label: NAMES[name], points: [], ...LOOK[name] }), NAMES[name]]),
      list([
        ["State", pane ? (pane.on && pane.state === "open" ? `open (${pane.on})` : pane.state) : "not started"],
        ["Messages", pane ? `${pane.received} of ${data.published}` : "-"],
        ["Latency", latencies.length ? `median ${num(median(latencies), "ms")}, p95 ${num(percentile(latencies, 95), "ms")}, last ${num(last, "ms")}` : "-"],
        ["Round trip", trips.length ? `median ${num(median(trips), "ms")} (${trips.length})` : "-"],
        ["Bytes/message", bytes.length ? `≈ ${num(median(/** @type {number[]} */ (bytes)), "B")} (estimate)` : "-"],
        ["Reconnects", pane ? String(pane.reconnects) : "-"],
        ["Fallbacks", pane ? `${pane.fallbacks}${pane.lastFallback ? `: ${pane.lastFallback}` : ""}` : "-"],
        ["Last error", pane && pane.errors.length ? pane.errors[pane.errors.length - 1] : null],
      ]),
    ]);
    node.style.borderTopColor = LOOK[name].color;
    return node;
  }));
  const xMax = Math.max(data.durationMs, data.elapsedMs) / 1000;
  const series = (/** @type {(p: {latency: number, bytes: number | null}) => number | null} */ pick) =>
    TRANSPORT_ORDER.map((name) => ({
      name, label: NAMES[name], ...LOOK[name],
      points: (data.panes[name] ? data.panes[name].points : [])
        .map((p) => ({ x: p.t, y: pick(p) }))
        .filter((p) => p.y !== null)
        .map((p) => ({ x: p.x, y: /** @type {number} */ (p.y) })),
    }));
  drawChart(/** @type {any} */ ($("latency-chart")), { title: "Latency per message", unit: "ms", log: true, xMax, series: series((p) => p.latency),
    empty: running ? "Waiting for the first message…" : "No data yet: start the live comparison" });
  drawChart(/** @type {any} */ ($("bytes-chart")), { title: "Bytes on the wire per message (estimate)", unit: "bytes", log: false, xMax, series: series((p) => p.bytes),
    empty: running ? "Waiting for the first message…" : "No data yet: start the live comparison" });
  const summary = TRANSPORT_ORDER.map((name) => {
    const points = data.panes[name] ? data.panes[name].points : [];
    return `${NAMES[name]}: ${points.length} messages, median latency ${num(median(points.map((p) => p.latency)), "ms")}`;
  }).join("; ");
  $("latency-caption").textContent = `Latency of each message, per transport (ms, log scale). ${summary}.`;
}

/** The live view before it starts: empty panes and charts. @returns {LiveData} */
function emptyLive() {
  return { status: "idle", topic: "", durationMs: param("duration", 60) * 1000, rate: liveRate(),
    elapsedMs: 0, published: 0, publishErrors: 0, panes: {} };
}

function renderLegend() {
  $("legend").replaceChildren(...TRANSPORT_ORDER.map((name) =>
    h("li", {}, [legendSample({ name, label: NAMES[name], points: [], ...LOOK[name] }), NAMES[name]])));
}

// --- start -----------------------------------------------------------------------------------

async function main() {
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(STYLE);
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  const idleS = idleSeconds();
  $("idle-explain").textContent = idleS > 0
    ? `Then it leaves each connection idle, all three at once, for up to ${idleS} seconds, or until the server's first heartbeat: a proxy or NAT that cuts connections which carry nothing for a while shows as a cut before the heartbeat.`
    : "The idle hold is off (idle=0 in the address): a proxy that cuts idle connections is not looked for.";
  $("live-rate").textContent = String(liveRate());
  $("live-duration").textContent = String(param("duration", 60));
  renderLegend();
  renderLive(emptyLive());
  $("run").addEventListener("click", () => { void runCheck(); });
  $("copy").addEventListener("click", () => { void copyReport(); });
  $("live-start").addEventListener("click", startLive);
  $("live-stop").addEventListener("click", () => { if (live) live.stop(); });
  addEventListener("pagehide", () => { if (live) live.stop(); });
  // The charts are drawn at their shown size: draw them again when it changes.
  let resizing = false;
  addEventListener("resize", () => {
    if (resizing) return;
    resizing = true;
    requestAnimationFrame(() => { resizing = false; renderLive(state.live || emptyLive()); });
  });
  state.catalogue = await loadCatalogue();
  if (location.hash === "#live") {
    $("check-status").textContent = "Not run: the live view is running (its traffic would disturb the timings).";
    /** @type {HTMLButtonElement} */ ($("run")).textContent = "Run the check";
    startLive();
  } else {
    await runCheck();
  }
}

void main();
