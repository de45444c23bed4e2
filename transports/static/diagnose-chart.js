// @ts-check
/**
 * A small hand-written SVG chart for the diagnose page's live view: points per series over time,
 * on a linear or logarithmic value axis. Series differ by colour, marker shape and line dash, so
 * colour is never the only cue.
 */

const SVG = "http://www.w3.org/2000/svg";

/** The margins around the plot area, in px of the drawn chart (the viewBox is its size in px). */
const MARGIN = Object.freeze({ left: 64, right: 16, top: 14, bottom: 40 });

/**
 * @typedef {{x: number, y: number}} Point x in seconds, y in the chart's unit
 * @typedef {{name: string, label: string, color: string, marker: "circle" | "square" | "triangle",
 *   dash: string, points: Point[]}} Series
 * @typedef {{title: string, unit: string, log: boolean, xMax: number, series: Series[], empty?: string}} ChartSpec
 *   `empty`: what the chart says while it has no points
 */

/**
 * An SVG element with attributes.
 * @param {string} tag @param {Record<string, string | number>} attrs @param {string} [text]
 * @returns {SVGElement}
 */
function el(tag, attrs, text) {
  const node = /** @type {SVGElement} */ (document.createElementNS(SVG, tag));
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A round step for about `count` ticks over `span`. @param {number} span @param {number} count */
export function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

/**
 * The value axis: its range and ticks. Logarithmic: whole decades around the values;
 * linear: from 0 to a round number above the largest.
 * @param {number[]} values @param {boolean} log
 * @returns {{min: number, max: number, ticks: number[]}}
 */
export function valueAxis(values, log) {
  const positive = values.filter((v) => Number.isFinite(v) && v > 0);
  if (log) {
    const lo = positive.length ? Math.min(...positive) : 1;
    const hi = positive.length ? Math.max(...positive) : 10;
    const min = 10 ** Math.max(-1, Math.floor(Math.log10(Math.min(lo, 1))));
    const max = 10 ** Math.max(1, Math.ceil(Math.log10(hi)));
    const ticks = [];
    for (let t = min; t <= max * 1.0001; t *= 10) ticks.push(Number(t.toPrecision(1)));
    return { min, max, ticks };
  }
  const hi = positive.length ? Math.max(...positive) : 1;
  const step = niceStep(hi, 4);
  const max = Math.ceil((hi * 1.05) / step) * step;
  const ticks = [];
  for (let t = 0; t <= max + step / 2; t += step) ticks.push(Number(t.toPrecision(6)));
  return { min: 0, max, ticks };
}

/** @param {number} value */
const label = (value) => (value >= 1000 && value % 1000 === 0 ? `${value / 1000}k` : String(value));

/**
 * Draw `spec` into `svg`, replacing what it held.
 * @param {SVGSVGElement} svg @param {ChartSpec} spec
 */
export function drawChart(svg, spec) {
  // Drawn at the size it is shown, so that the labels stay readable on a narrow screen.
  const shown = Math.round(svg.getBoundingClientRect().width);
  const width = Math.max(300, shown || 720);
  const height = width < 560 ? 220 : 260;
  const { left, right, top, bottom } = MARGIN;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  while (svg.lastChild) svg.removeChild(svg.lastChild);
  svg.appendChild(el("title", {}, spec.title));

  const values = spec.series.flatMap((s) => s.points.map((p) => p.y));
  const axis = valueAxis(values, spec.log);
  const xMax = Math.max(1, spec.xMax);
  const x = (/** @type {number} */ v) => left + (Math.min(v, xMax) / xMax) * plotW;
  const y = (/** @type {number} */ v) => {
    const clamped = Math.min(Math.max(v, axis.min), axis.max);
    const ratio = spec.log
      ? (Math.log10(clamped) - Math.log10(axis.min)) / (Math.log10(axis.max) - Math.log10(axis.min))
      : (clamped - axis.min) / (axis.max - axis.min || 1);
    return top + plotH - ratio * plotH;
  };

  const grid = el("g", { class: "grid", "aria-hidden": "true" });
  for (const t of values.length ? axis.ticks : []) {
    grid.appendChild(el("line", { x1: left, x2: left + plotW, y1: y(t), y2: y(t) }));
    grid.appendChild(el("text", { x: left - 8, y: y(t) + 4, "text-anchor": "end" }, label(t)));
  }
  const xStep = niceStep(xMax, Math.max(3, Math.floor(plotW / 90)));
  for (let t = 0; t <= xMax + 1e-9; t += xStep) {
    grid.appendChild(el("line", { x1: x(t), x2: x(t), y1: top, y2: top + plotH }));
    grid.appendChild(el("text", { x: x(t), y: top + plotH + 18, "text-anchor": "middle" }, `${Number(t.toPrecision(6))}`));
  }
  grid.appendChild(el("text", { x: left + plotW / 2, y: height - 4, "text-anchor": "middle" }, "seconds since the start"));
  grid.appendChild(el("text", { x: 14, y: top + plotH / 2, "text-anchor": "middle",
    transform: `rotate(-90 14 ${top + plotH / 2})` }, `${spec.unit}${spec.log ? " (log scale)" : ""}`));
  svg.appendChild(grid);
  svg.appendChild(el("rect", { class: "frame", x: left, y: top, width: plotW, height: plotH, fill: "none" }));

  if (!values.length) {
    svg.appendChild(el("text", { class: "empty", x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle" },
      spec.empty || "No data yet"));
  }
  for (const series of spec.series) {
    const group = el("g", { class: `series series-${series.name}`, "data-points": series.points.length });
    if (series.points.length > 1) {
      const path = series.points.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(" ");
      group.appendChild(el("polyline", { points: path, fill: "none", stroke: series.color, "stroke-width": 1.5,
        "stroke-dasharray": series.dash, "stroke-opacity": 0.7 }));
    }
    for (const p of series.points) group.appendChild(marker(series, x(p.x), y(p.y)));
    svg.appendChild(group);
  }
}

/**
 * One point's marker. @param {Series} series @param {number} cx @param {number} cy
 * @returns {SVGElement}
 */
function marker(series, cx, cy) {
  const common = { fill: series.color, stroke: "#fff", "stroke-width": 0.75 };
  if (series.marker === "square") return el("rect", { ...common, x: cx - 3, y: cy - 3, width: 6, height: 6 });
  if (series.marker === "triangle") {
    return el("polygon", { ...common, points: `${cx},${cy - 4} ${cx - 4},${cy + 3} ${cx + 4},${cy + 3}` });
  }
  return el("circle", { ...common, cx, cy, r: 3.2 });
}

/**
 * A legend entry's small SVG sample of a series (marker and dash).
 * @param {Series} series @returns {SVGSVGElement}
 */
export function legendSample(series) {
  const svg = /** @type {SVGSVGElement} */ (/** @type {unknown} */ (el("svg", { viewBox: "0 0 28 12", width: 28, height: 12, "aria-hidden": "true" })));
  svg.appendChild(el("line", { x1: 1, x2: 27, y1: 6, y2: 6, stroke: series.color, "stroke-width": 1.5, "stroke-dasharray": series.dash }));
  svg.appendChild(marker(series, 14, 6));
  return svg;
}
