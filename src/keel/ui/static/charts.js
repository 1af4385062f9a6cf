// Line charts on <canvas>: several series overlaid, EMA smoothing, drag to zoom (the caller
// re-fetches the range bucketed by the server), double-click to reset. Parallel coordinates.
import { COLORS, el, fmtValue } from "./util.js";

function ema(values, alpha) {
  if (!alpha) return values;
  const out = new Array(values.length);
  let acc = null;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== "number") { out[i] = v; continue; }
    acc = acc === null ? v : alpha * acc + (1 - alpha) * v;
    out[i] = acc;
  }
  return out;
}

function setupCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 400, h = canvas.clientHeight || 220;
  canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { ctx, w, h };
}

// series: [{label, x: [...], last: [...], min: [...], max: [...]}]
export class LineChart {
  constructor(title, { onZoom } = {}) {
    this.title = title; this.onZoom = onZoom; this.series = []; this.smoothing = 0;
    this.canvas = el("canvas");
    this.smooth = el("input", { type: "range", min: "0", max: "0.99", step: "0.01", value: "0", title: "EMA smoothing",
      oninput: () => { this.smoothing = Number(this.smooth.value); this.draw(); } });
    this.legend = el("div", { class: "legend" });
    this.node = el("div", { class: "card chart", "data-metric": title },
      el("div", { class: "title" }, el("span", { text: title }), el("label", { class: "muted" }, "smooth ", this.smooth)),
      this.canvas, this.legend);
    let start = null;
    this.canvas.addEventListener("mousedown", (e) => { start = e.offsetX; });
    this.canvas.addEventListener("mouseup", (e) => {
      if (start === null) return;
      const a = Math.min(start, e.offsetX), b = Math.max(start, e.offsetX);
      start = null;
      if (b - a < 5 || !this.view) return;
      const lo = this.toX(a), hi = this.toX(b);
      if (this.onZoom) this.onZoom(lo, hi);
    });
    this.canvas.addEventListener("dblclick", () => { if (this.onZoom) this.onZoom(null, null); });
    new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  setSeries(series) {
    this.series = series;
    this.legend.replaceChildren(...series.map((s, i) => el("span", { style: `color:${COLORS[i % COLORS.length]}`, text: `■ ${s.label}` })));
    this.draw();
  }

  toX(px) { const v = this.view; return v.x0 + ((px - v.left) / (v.w - v.left - v.right)) * (v.x1 - v.x0); }

  draw() {
    if (!this.canvas.isConnected) return;
    const { ctx, w, h } = setupCanvas(this.canvas);
    const left = 52, right = 8, top = 8, bottom = 22;
    ctx.clearRect(0, 0, w, h);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const s of this.series) {
      for (let i = 0; i < s.x.length; i++) {
        const lo = s.min[i], hi = s.max[i];
        if (typeof lo !== "number" || typeof hi !== "number") continue;
        x0 = Math.min(x0, s.x[i]); x1 = Math.max(x1, s.x[i]);
        y0 = Math.min(y0, lo); y1 = Math.max(y1, hi);
      }
    }
    ctx.fillStyle = "#6b7385"; ctx.font = "11px system-ui";
    if (!isFinite(x0)) { ctx.fillText("no points", left, h / 2); this.view = null; return; }
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y1 += 0.5; y0 -= 0.5; }
    this.view = { x0, x1, w, left, right };
    const X = (x) => left + ((x - x0) / (x1 - x0)) * (w - left - right);
    const Y = (y) => top + (1 - (y - y0) / (y1 - y0)) * (h - top - bottom);
    ctx.strokeStyle = "#dde1e8"; ctx.lineWidth = 1;
    for (let k = 0; k <= 4; k++) {
      const y = y0 + (k / 4) * (y1 - y0);
      ctx.beginPath(); ctx.moveTo(left, Y(y)); ctx.lineTo(w - right, Y(y)); ctx.stroke();
      ctx.fillText(fmtValue(y), 2, Y(y) + 4);
    }
    ctx.fillText(fmtValue(x0), left, h - 6);
    const endLabel = fmtValue(x1);
    ctx.fillText(endLabel, w - right - ctx.measureText(endLabel).width, h - 6);
    this.series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      ctx.globalAlpha = 0.18; ctx.fillStyle = color;      // the min..max band of each bucket
      for (let j = 0; j < s.x.length; j++) {
        if (s.max[j] !== s.min[j]) ctx.fillRect(X(s.x[j]) - 1, Y(s.max[j]), 2, Math.max(1, Y(s.min[j]) - Y(s.max[j])));
      }
      ctx.globalAlpha = 1; ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.beginPath();
      const ys = ema(s.last, this.smoothing);
      let pen = false;
      for (let j = 0; j < s.x.length; j++) {
        if (typeof ys[j] !== "number") { pen = false; continue; }
        if (pen) ctx.lineTo(X(s.x[j]), Y(ys[j])); else ctx.moveTo(X(s.x[j]), Y(ys[j]));
        pen = true;
      }
      ctx.stroke();
      if (s.x.length < 30) {            // few points: mark each, so a single one shows
        ctx.fillStyle = color;
        for (let j = 0; j < s.x.length; j++) if (typeof ys[j] === "number") ctx.fillRect(X(s.x[j]) - 2, Y(ys[j]) - 2, 4, 4);
      }
    });
  }
}

// Parallel coordinates: one axis per parameter (numeric or categorical) and the chosen metric.
export function parallelCoordinates(canvas, runs, axes) {
  const { ctx, w, h } = setupCanvas(canvas);
  ctx.clearRect(0, 0, w, h);
  if (!axes.length || !runs.length) return;
  const top = 24, bottom = 16, pad = 40;
  const scales = axes.map((a) => {
    const vals = runs.map(a.get);
    const nums = vals.filter((v) => typeof v === "number");
    if (nums.length === vals.filter((v) => v !== null && v !== undefined).length && nums.length) {
      let lo = Math.min(...nums), hi = Math.max(...nums);
      if (lo === hi) { lo -= 0.5; hi += 0.5; }
      return { f: (v) => (typeof v === "number" ? (v - lo) / (hi - lo) : null), lo, hi };
    }
    const cats = [...new Set(vals.map((v) => JSON.stringify(v)))];
    return { f: (v) => (cats.length === 1 ? 0.5 : cats.indexOf(JSON.stringify(v)) / (cats.length - 1)), cats };
  });
  const X = (i) => pad + (axes.length === 1 ? 0 : (i / (axes.length - 1)) * (w - 2 * pad));
  const Y = (t) => top + (1 - t) * (h - top - bottom);
  ctx.font = "11px system-ui"; ctx.fillStyle = "#1d2330"; ctx.strokeStyle = "#a0a7b4";
  axes.forEach((a, i) => {
    ctx.beginPath(); ctx.moveTo(X(i), top); ctx.lineTo(X(i), h - bottom); ctx.stroke();
    const label = a.label.length > 18 ? a.label.slice(0, 17) + "…" : a.label;
    ctx.fillText(label, X(i) - ctx.measureText(label).width / 2, 12);
  });
  runs.forEach((r, k) => {
    ctx.strokeStyle = COLORS[k % COLORS.length]; ctx.lineWidth = 1.5; ctx.beginPath();
    let pen = false;
    axes.forEach((a, i) => {
      const t = scales[i].f(a.get(r));
      if (t === null || Number.isNaN(t)) { pen = false; return; }
      if (pen) ctx.lineTo(X(i), Y(t)); else ctx.moveTo(X(i), Y(t));
      pen = true;
    });
    ctx.stroke();
  });
}
