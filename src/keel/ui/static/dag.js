// A run's graph as SVG: one node per step, coloured by the status of its tasks. A step with
// many tasks (a foreach) is one node with a progress bar of its finished tasks; a click on it
// expands it into a grid of its tasks (one square each, coloured by status; a click on a square
// selects that task). Tasks taken from the step cache or reused by resume are marked.
import { STATUS_COLORS, svg } from "./util.js";

const DONE = new Set(["succeeded", "reused", "cached", "caught"]);
const CELL = 12, GRID_COLS = 40;

function stepStatus(tasks) {
  const s = new Set(tasks.map((t) => t.status));
  if (!tasks.length) return "pending";
  for (const k of ["failed", "crashed", "running"]) if (s.has(k)) return k;
  if (![...s].every((k) => DONE.has(k))) return "pending";
  if (s.size === 1 && (s.has("cached") || s.has("reused"))) return [...s][0];   // every task taken, none run
  return "succeeded";
}

function taken(tasks) {
  // "2 cached · 1 reused": how many of a step's tasks came from the cache or an earlier run.
  const cached = tasks.filter((t) => t.cached).length, reused = tasks.filter((t) => t.reused).length;
  return [cached ? `${cached} cached` : "", reused ? `${reused} reused` : ""].filter(Boolean).join(" · ");
}

export function taskTitle(t) {
  const from = t.cached ? `, cached: outputs of ${t.origin}` : t.reused ? `, reused from ${t.origin}` : "";
  return `${t.step}/${t.id}: ${t.status}, ${t.attempts} attempt(s)${from}`;
}

export function drawDag(run, onSelect, expanded = new Set(), onToggle = null) {
  const byId = new Map(run.tasks.map((t) => [t.id, t]));
  const names = run.steps.length ? run.steps.map((s) => s.name) : [...new Set(run.tasks.map((t) => t.step))];
  const tasksOf = new Map(names.map((n) => [n, []]));
  for (const t of run.tasks) { if (!tasksOf.has(t.step)) tasksOf.set(t.step, []); tasksOf.get(t.step).push(t); }
  const edges = new Set();
  for (const t of run.tasks) for (const p of t.parents || []) {
    const parent = byId.get(p);
    if (parent && parent.step !== t.step) edges.add(`${parent.step}\u0000${t.step}`);
  }
  const parentsOf = new Map(names.map((n) => [n, []]));
  for (const e of edges) { const [a, b] = e.split("\u0000"); if (parentsOf.has(b)) parentsOf.get(b).push(a); }
  const layer = new Map();
  const depth = (n, seen = new Set()) => {
    if (layer.has(n)) return layer.get(n);
    if (seen.has(n)) return 0;
    seen.add(n);
    const ps = parentsOf.get(n) || [];
    const d = ps.length ? 1 + Math.max(...ps.map((p) => depth(p, seen))) : (n === "start" ? 0 : (names.indexOf(n) > 0 ? 1 : 0));
    layer.set(n, d);
    return d;
  };
  names.forEach((n) => depth(n));
  const rows = new Map();
  for (const n of names) { const d = layer.get(n); if (!rows.has(d)) rows.set(d, []); rows.get(d).push(n); }
  const W = 150, H = 44, GX = 40, GY = 28;
  // An expanded foreach node is as wide as its grid of tasks (up to GRID_COLS a row) and as tall.
  const size = new Map(names.map((n) => {
    const count = tasksOf.get(n).length;
    if (!(count > 1 && expanded.has(n))) return [n, { w: W, h: H }];
    const cols = Math.min(GRID_COLS, count);
    return [n, { w: Math.max(W, cols * CELL + 16), h: H + Math.ceil(count / cols) * CELL + 8 }];
  }));
  const rowWidth = (row) => row.reduce((s, n) => s + size.get(n).w + GX, GX);
  const width = Math.max(...[...rows.values()].map(rowWidth), W + 2 * GX);
  const pos = new Map();
  let y = GY;
  for (const d of [...rows.keys()].sort((a, b) => a - b)) {
    const row = rows.get(d);
    let x = (width - rowWidth(row)) / 2 + GX;
    for (const n of row) { pos.set(n, { x, y }); x += size.get(n).w + GX; }
    y += Math.max(...row.map((n) => size.get(n).h)) + GY;
  }
  const height = y;
  const root = svg("svg", { class: "dag", width, height, viewBox: `0 0 ${width} ${height}` });
  root.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "6", markerHeight: "6", orient: "auto" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#a0a7b4" }))));
  for (const e of edges) {
    const [a, b] = e.split("\u0000"), pa = pos.get(a), pb = pos.get(b);
    if (!pa || !pb) continue;
    const ax = pa.x + size.get(a).w / 2, ay = pa.y + size.get(a).h, bx = pb.x + size.get(b).w / 2;
    root.append(svg("path", { d: `M${ax},${ay} C${ax},${ay + GY / 2} ${bx},${pb.y - GY / 2} ${bx},${pb.y}`,
      fill: "none", stroke: "#a0a7b4", "marker-end": "url(#arrow)" }));
  }
  for (const n of names) {
    const p = pos.get(n), { w, h } = size.get(n), tasks = tasksOf.get(n), status = stepStatus(tasks);
    const many = tasks.length > 1, open = many && expanded.has(n);
    const g = svg("g", { class: "node", "data-step": n, "data-status": status, transform: `translate(${p.x},${p.y})`,
      "data-cached": tasks.filter((t) => t.cached).length, "data-reused": tasks.filter((t) => t.reused).length,
      "data-expanded": open ? "true" : "false", style: "cursor:pointer" });
    const color = STATUS_COLORS[status] || "#a0a7b4";
    const head = svg("g", { class: "head" });
    head.addEventListener("click", () => {
      if (many && onToggle) onToggle(n);          // a foreach: show or hide its tasks
      else if (tasks[0] && onSelect) onSelect(tasks[0].id);
    });
    head.append(svg("rect", { width: w, height: h, rx: 6, fill: "#fff", stroke: color, "stroke-width": 2,
      "stroke-dasharray": status === "cached" || status === "reused" ? "5 3" : null }));
    head.append(svg("rect", { width: 6, height: h, rx: 2, fill: color }));
    const label = svg("text", { x: 14, y: 18 }); label.textContent = many ? `${open ? "▾" : "▸"} ${n}` : n; head.append(label);
    const done = tasks.filter((t) => DONE.has(t.status)).length;
    const sub = svg("text", { x: 14, y: 34, fill: "#6b7385" });
    const marks = taken(tasks);
    sub.textContent = many ? `${done}/${tasks.length} tasks${marks ? ` · ${marks}` : ""}` : (tasks[0] ? `${tasks[0].status}` : "pending");
    head.append(sub);
    if (!many && tasks[0]) head.append(svg("title", {}, taskTitle(tasks[0])));
    if (many) {
      head.append(svg("rect", { x: w - 70, y: 8, width: 60, height: 6, fill: "#eef1f5" }));
      head.append(svg("rect", { class: "progress", x: w - 70, y: 8, width: Math.round((60 * done) / tasks.length), height: 6, fill: STATUS_COLORS.succeeded }));
    }
    g.append(head);
    if (open) {
      const cols = Math.min(GRID_COLS, tasks.length);
      tasks.forEach((t, i) => {
        const cell = svg("rect", { class: "task-cell", "data-task": t.id, "data-status": t.status,
          x: 8 + (i % cols) * CELL, y: H + Math.floor(i / cols) * CELL, width: CELL - 2, height: CELL - 2, rx: 2,
          fill: STATUS_COLORS[t.status] || "#a0a7b4" }, svg("title", {}, taskTitle(t)));
        cell.addEventListener("click", (e) => { e.stopPropagation(); if (onSelect) onSelect(t.id); });
        g.append(cell);
      });
    }
    root.append(g);
  }
  return root;
}
