// A run's graph as SVG: one node per step, coloured by the status of its tasks; a step with
// many tasks (a foreach) is one node with a progress bar of its finished tasks.
import { STATUS_COLORS, svg } from "./util.js";

function stepStatus(tasks) {
  const s = new Set(tasks.map((t) => t.status));
  if (!tasks.length) return "pending";
  for (const k of ["failed", "crashed", "running"]) if (s.has(k)) return k;
  return s.size === 1 && s.has("succeeded") ? "succeeded" : "pending";
}

export function drawDag(run, onSelect) {
  const byId = new Map(run.tasks.map((t) => [t.id, t]));
  const names = run.steps.length ? run.steps.map((s) => s.name) : [...new Set(run.tasks.map((t) => t.step))];
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
  const maxCols = Math.max(...[...rows.values()].map((r) => r.length), 1);
  const width = maxCols * (W + GX) + GX, height = rows.size * (H + GY) + GY;
  const pos = new Map();
  for (const [d, row] of rows) row.forEach((n, i) => {
    const offset = (width - row.length * (W + GX) + GX) / 2;
    pos.set(n, { x: offset + i * (W + GX), y: GY + d * (H + GY) });
  });
  const root = svg("svg", { class: "dag", width, height, viewBox: `0 0 ${width} ${height}` });
  root.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "6", markerHeight: "6", orient: "auto" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#a0a7b4" }))));
  for (const e of edges) {
    const [a, b] = e.split("\u0000"), pa = pos.get(a), pb = pos.get(b);
    if (!pa || !pb) continue;
    root.append(svg("path", { d: `M${pa.x + W / 2},${pa.y + H} C${pa.x + W / 2},${pa.y + H + GY / 2} ${pb.x + W / 2},${pb.y - GY / 2} ${pb.x + W / 2},${pb.y}`,
      fill: "none", stroke: "#a0a7b4", "marker-end": "url(#arrow)" }));
  }
  for (const n of names) {
    const p = pos.get(n), tasks = run.tasks.filter((t) => t.step === n), status = stepStatus(tasks);
    const g = svg("g", { class: "node", "data-step": n, "data-status": status, transform: `translate(${p.x},${p.y})`, style: "cursor:pointer" });
    g.addEventListener("click", () => onSelect && onSelect(n));
    g.append(svg("rect", { width: W, height: H, rx: 6, fill: "#fff", stroke: STATUS_COLORS[status] || "#a0a7b4", "stroke-width": 2 }));
    g.append(svg("rect", { width: 6, height: H, rx: 2, fill: STATUS_COLORS[status] || "#a0a7b4" }));
    const label = svg("text", { x: 14, y: 18 }); label.textContent = n; g.append(label);
    const done = tasks.filter((t) => t.status === "succeeded").length;
    const sub = svg("text", { x: 14, y: 34, fill: "#6b7385" });
    sub.textContent = tasks.length > 1 ? `${done}/${tasks.length} tasks` : (tasks[0] ? `${status}${tasks[0].reused ? " · reused" : ""}` : "pending");
    g.append(sub);
    if (tasks.length > 1) {
      g.append(svg("rect", { x: 80, y: 28, width: 60, height: 6, fill: "#eef1f5" }));
      g.append(svg("rect", { class: "progress", x: 80, y: 28, width: Math.round((60 * done) / tasks.length), height: 6, fill: STATUS_COLORS.succeeded }));
    }
    root.append(g);
  }
  return root;
}
