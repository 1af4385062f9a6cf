// The dashboard: a hash router and its pages (runs, run, compare, schedules; operations: tables, queues, endpoints).
import { ApiError, api, el, fmtDuration, fmtTime, fmtValue, qs, statusBadge } from "./util.js";
import { LineChart, parallelCoordinates } from "./charts.js";
import { drawDag, taskTitle } from "./dag.js";

const main = document.getElementById("main");
let cleanup = [];            // what the current page must close when the user leaves it

function onLeave(fn) { cleanup.push(fn); }

function live(run, onChange) {
  // Server-sent events: the server polls the store only while this stream is open.
  const source = new EventSource(`/api/events?${qs({ run })}`);
  const dot = document.getElementById("live");
  source.addEventListener("hello", () => dot.classList.add("on"));
  source.addEventListener("change", (e) => onChange(JSON.parse(e.data).kinds));
  source.onerror = () => dot.classList.remove("on");
  onLeave(() => { source.close(); dot.classList.remove("on"); });
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

async function route() {
  for (const fn of cleanup) fn();
  cleanup = [];
  const { parts, params } = parseHash();
  const page = parts[0] || "runs";
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  main.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
  try {
    if (page === "runs") await runsPage(params);
    else if (page === "run") await runPage(parts[1], parts[2]);
    else if (page === "compare") await comparePage(params);
    else if (page === "schedules") await schedulesPage();
    else if (page === "tables") await (parts[1] ? tablePage(parts[1], params) : tablesPage());
    else if (page === "queues") await queuesPage();
    else if (page === "endpoints") await endpointsPage();
    else main.replaceChildren(el("p", { text: `No page ${page}.` }));
  } catch (err) {
    main.replaceChildren(el("p", { class: "error", text: err.message }));
  }
}

// -- runs -------------------------------------------------------------------------------------
const PAGE = 50;
const saved = JSON.parse(localStorage.getItem("keel.columns") || "null");
const state = { where: "", sort: "", offset: 0, selected: new Set(), columns: saved ? new Set(saved) : null };

async function runsPage(params) {
  state.where = params.get("where") || state.where;
  state.sort = params.get("sort") || state.sort;
  const input = el("input", { type: "text", value: state.where, placeholder: 'filter: params.alpha > 0.3 and status = "succeeded"', spellcheck: "false", "aria-label": "filter" });
  const errorBox = el("div", { class: "error", role: "alert" });
  const filter = el("div", { class: "filter" }, input, errorBox);
  const table = el("table", { class: "runs" });
  const info = el("span", { class: "muted" });
  const prev = el("button", { text: "‹ Prev", onclick: () => { state.offset = Math.max(0, state.offset - PAGE); load(); } });
  const next = el("button", { text: "Next ›", onclick: () => { state.offset += PAGE; load(); } });
  const compareBtn = el("button", { class: "primary", text: "Compare", disabled: true,
    onclick: () => { location.hash = `#/compare?runs=${[...state.selected].join(",")}`; } });
  const tagInput = el("input", { type: "text", placeholder: "tag", size: 10, "aria-label": "tag" });
  const tagBtn = el("button", { text: "Tag selected", onclick: async () => {
    const tag = tagInput.value.trim();
    if (!tag || !state.selected.size) return;
    await Promise.all([...state.selected].map((p) => api(`/api/runs/${p}/tags`, { json: { add: [tag] } })));
    tagInput.value = ""; load();
  } });
  const menu = el("div", { class: "menu", hidden: true });
  const columnsBtn = el("div", { class: "columns" }, el("button", { text: "Columns ▾", onclick: () => { menu.hidden = !menu.hidden; } }), menu);
  main.replaceChildren(el("h1", { text: "Runs" }),
    el("div", { class: "toolbar" }, filter, columnsBtn, tagInput, tagBtn, compareBtn), table,
    el("div", { class: "pager" }, prev, next, info));
  let timer = null;
  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => { state.where = input.value; state.offset = 0; load(); }, 250); });
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") { clearTimeout(timer); state.where = input.value; state.offset = 0; load(); } });
  let page = null;

  async function load() {
    let result;
    try {
      const url = `/api/runs?${qs({ where: state.where, sort: state.sort, limit: PAGE, offset: state.offset })}`;
      const first = window.keelFirstRuns;     // started by index.html before the modules loaded
      window.keelFirstRuns = null;
      result = await api(url, first && first.url === url ? { response: first.response } : {});
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) {
        filter.classList.add("bad");
        const col = err.body.column;
        errorBox.textContent = col ? `${err.body.error}\n${err.body.query}\n${" ".repeat(col - 1)}^` : err.body.error;
        return;
      }
      throw err;
    }
    filter.classList.remove("bad"); errorBox.textContent = "";
    page = result;
    render();
  }

  function allColumns() {
    return ["status", "duration", "created", "user", "tags",
      ...page.param_names.map((n) => `params.${n}`), ...page.metric_names.map((n) => `metrics.${n}`)];
  }

  function shown() {
    if (state.columns) return allColumns().filter((c) => state.columns.has(c));
    return allColumns().filter((c) => !c.startsWith("metrics.sys.") && c !== "user").slice(0, 16);
  }

  function render() {
    const cols = shown();
    menu.replaceChildren(...allColumns().map((c) => el("label", {}, el("input", { type: "checkbox", checked: cols.includes(c), onchange: (e) => {
      const set = new Set(shown());
      if (e.target.checked) set.add(c); else set.delete(c);
      state.columns = set; localStorage.setItem("keel.columns", JSON.stringify([...set])); render();
    } }), " ", c)));
    const sortKey = state.sort.replace(/^-/, ""), desc = state.sort.startsWith("-");
    const sortable = (c) => (["duration", "created", "status", "user"].includes(c) || c.includes(".") ? c : null);
    const head = el("tr", {}, el("th", {}, ""), el("th", { text: "run" }), ...cols.map((c) => {
      const key = sortable(c);
      return el("th", { "data-col": c, text: c.replace(/^(params|metrics)\./, "") + (key && key === sortKey ? (desc ? " ▼" : " ▲") : ""),
        title: c, onclick: key ? () => { state.sort = sortKey === key && !desc ? `-${key}` : key; state.offset = 0; load(); } : null });
    }));
    const rows = page.rows.map((r) => {
      const box = el("input", { type: "checkbox", checked: state.selected.has(r.pathspec), onchange: (e) => {
        if (e.target.checked) state.selected.add(r.pathspec); else state.selected.delete(r.pathspec);
        tr.classList.toggle("sel", e.target.checked); compareBtn.disabled = state.selected.size < 1;
      } });
      const tr = el("tr", { class: state.selected.has(r.pathspec) ? "sel" : "", "data-run": r.pathspec },
        el("td", {}, box), el("td", {}, el("a", { href: `#/run/${r.flow}/${r.id}`, text: r.pathspec })),
        ...cols.map((c) => cell(r, c)));
      return tr;
    });
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
    compareBtn.disabled = state.selected.size < 1;
    info.textContent = page.total ? `${page.offset + 1}–${page.offset + page.rows.length} of ${page.total}` : "no runs match";
    prev.disabled = page.offset === 0; next.disabled = page.offset + page.rows.length >= page.total;
  }

  function cell(r, c) {
    if (c === "status") return el("td", {}, statusBadge(r.status));
    if (c === "duration") return el("td", { class: "num", text: fmtDuration(r.duration) });
    if (c === "created") return el("td", { text: fmtTime(r.created) });
    if (c === "user") return el("td", { text: r.user || "" });
    if (c === "tags") return el("td", {}, r.tags.map((t) => el("span", { class: "tag", text: t })));
    const [kind, ...rest] = c.split("."), name = rest.join(".");
    const v = kind === "params" ? r.params[name] : r.metrics[name];
    return el("td", { class: typeof v === "number" ? "num" : "", text: fmtValue(v) });
  }

  await load();
  live("", (kinds) => { if (kinds.includes("runs")) load(); });
}

// -- a run ------------------------------------------------------------------------------------
async function runPage(flow, id) {
  const path = `/api/runs/${encodeURIComponent(flow)}/${id}`;
  let run = await api(path);
  const header = el("div");
  const dagBox = el("div", { class: "card" });
  const timeline = el("div", { class: "card timeline" });
  const tasksBox = el("div", { class: "card" });
  const params = el("div", { class: "card" });
  const charts = el("div", { class: "charts" });
  const comments = el("div", { class: "card" });
  const taskPanel = el("div", { class: "card task" }, el("p", { class: "muted", text: "Click a task for its logs and artifacts." }));
  const codeBox = el("details", { class: "card" }, el("summary", { text: "Code snapshot and environment" }));
  main.replaceChildren(header, el("h2", { text: "Graph" }), dagBox, el("h2", { text: "Timeline" }), timeline,
    el("div", { class: "grid" }, el("div", {}, el("h2", { text: "Tasks" }), tasksBox), el("div", {}, el("h2", { text: "Task" }), taskPanel)),
    el("h2", { text: "Metrics" }), charts,
    el("div", { class: "grid" }, el("div", {}, el("h2", { text: "Parameters" }), params), el("div", {}, el("h2", { text: "Comments" }), comments)),
    el("h2", { text: "Code" }), codeBox);
  let selectedTask = null, logState = null;
  const expanded = new Set();   // foreach steps whose tasks the graph shows

  function renderHeader() {
    const tagInput = el("input", { type: "text", placeholder: "add tag", size: 10, "aria-label": "add tag" });
    header.replaceChildren(...[
      el("h1", {}, `${run.pathspec} `, statusBadge(run.status)),
      el("p", { class: "muted" }, `${run.kind} · started ${fmtTime(run.created)} · ${fmtDuration(run.duration)} · ${run.user || ""}@${run.host || ""}`),
      run.next_command ? el("p", {}, "Failed. Fix it, then: ", el("code", { text: run.next_command })) : null,
      run.error ? el("pre", { class: "log", text: run.error }) : null,
      el("div", {}, run.tags.map((t) => el("span", { class: "tag", text: t })), tagInput,
        el("button", { text: "Tag", onclick: async () => {
          if (!tagInput.value.trim()) return;
          await api(`${path}/tags`, { json: { add: [tagInput.value.trim()] } }); await refresh();
        } }))].filter(Boolean));
  }

  function renderGraph() {
    dagBox.replaceChildren(drawDag(run, (taskId) => selectTask(taskId), expanded, (step) => {
      if (expanded.has(step)) expanded.delete(step); else expanded.add(step);
      renderGraph();
    }));
    const starts = run.tasks.map((t) => t.started || t.created).filter(Boolean);
    const t0 = Math.min(...starts, run.created), t1 = Math.max(...run.tasks.map((t) => t.finished || Date.now() / 1000), t0 + 0.001);
    timeline.replaceChildren(...run.tasks.slice(0, 500).map((t) => {
      const a = t.started || t.created, b = t.finished || Date.now() / 1000;
      const mark = t.cached ? "cached" : t.reused ? "reused" : "";
      const bar = el("div", { class: `bar ${mark}`, title: taskTitle(t),
        style: `left:${(100 * (a - t0)) / (t1 - t0)}%;width:${Math.max(0.5, (100 * (b - a)) / (t1 - t0))}%;background:${mark ? `var(--${mark})` : `var(--${t.status}, #a0a7b4)`}` });
      return el("div", { class: "row", "data-task": t.id, "data-mark": mark || null },
        el("span", { class: "label", text: `${t.step}/${t.id}${t.attempts > 1 ? ` ×${t.attempts}` : ""}` },
          mark ? el("span", { class: `mark ${mark}`, text: mark }) : null),
        el("div", { class: "lane" }, bar));
    }));
    tasksBox.replaceChildren(el("table", {}, el("tr", {}, ["task", "step", "status", "attempts", "duration", "origin"].map((h) => el("th", { text: h }))),
      run.tasks.slice(0, 1000).map((t) => el("tr", { "data-task": t.id, class: t.id === selectedTask ? "sel" : "", style: "cursor:pointer", onclick: () => selectTask(t.id) },
        el("td", { text: t.id }), el("td", { text: t.step }), el("td", {}, statusBadge(t.status)), el("td", { class: "num", text: t.attempts }),
        el("td", { class: "num", text: t.started ? fmtDuration((t.finished || Date.now() / 1000) - t.started) : "" }),
        el("td", { text: t.cached ? `cached: ${t.origin}` : t.reused ? `reused: ${t.origin}` : "" })))));
    params.replaceChildren(el("table", { class: "kv" }, Object.entries(run.params).map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: fmtValue(v) })))));
    comments.replaceChildren(...run.comments.map((c) => el("p", {}, el("b", { text: c.author }), el("span", { class: "muted", text: ` ${fmtTime(c.created_at)}: ` }), el("span", { class: "comment", text: c.text }))),
      commentForm());
  }

  function commentForm() {
    const text = el("input", { type: "text", placeholder: "write a comment", size: 40, "aria-label": "comment" });
    return el("form", { onsubmit: async (e) => {
      e.preventDefault();
      if (!text.value.trim()) return;
      await api(`${path}/comments`, { json: { text: text.value } }); await refresh();
    } }, text, el("button", { type: "submit", text: "Comment" }));
  }

  async function selectTask(taskId) {
    selectedTask = taskId;
    const t = run.tasks.find((x) => x.id === taskId);
    const pre = el("pre", { class: "log", "data-log": taskId });
    logState = { taskId, offset: 0, pre };
    const arts = el("div", {}, el("p", { class: "muted", text: "loading artifacts…" }));
    const system = el("div", { class: "system" });
    taskPanel.replaceChildren(el("h3", { text: `${t.step}/${t.id} ` }, statusBadge(t.status)),
      ...(t.links || []).map((l) => el("p", { class: "link", "data-link": l.name }, `${LINK_LABELS[l.name] || l.name}: `,
        el("a", { href: l.url, target: "_blank", rel: "noopener", text: l.url }))),
      ...(t.attempt_list || []).filter((a) => a.traceback).map((a) => el("pre", { class: "log", text: a.traceback })),
      el("h4", { text: "stdout" }), pre, el("h4", { text: "System metrics" }), system, el("h4", { text: "Artifacts" }), arts);
    systemMetrics(taskId, system);
    tasksBox.querySelectorAll("tr[data-task]").forEach((r) => r.classList.toggle("sel", Number(r.dataset.task) === taskId));
    await followLog();
    let list;
    try { list = await api(`${path}/tasks/${taskId}/artifacts`); } catch (err) { arts.replaceChildren(el("p", { class: "error", text: err.message })); return; }
    if (selectedTask !== taskId) return;     // the user picked another task meanwhile
    arts.replaceChildren(...Object.entries(list).map(([name, a]) => el("div", { class: "artifact", "data-artifact": name },
      el("b", { text: name }), el("span", { class: "muted", text: ` ${a.serializer}, ${a.size} bytes` }), previewOf(a.preview))));
  }

  async function systemMetrics(taskId, box) {
    // A compact table of this task's sys.* metrics: last, min and max of each.
    const names = ["sys.cpu_percent", "sys.rss_mb", "sys.peak_rss_mb", "sys.cpu_time_s"];
    const rows = [];
    for (const name of names) {
      const s = await api(`${path}/metrics/${encodeURIComponent(name)}?${qs({ task: taskId, buckets: 1 })}`).catch(() => null);
      if (!s || !s.count) continue;
      rows.push(el("tr", { "data-sys": name }, el("td", { text: name }), el("td", { class: "num", text: fmtValue(s.last[s.last.length - 1]) }),
        el("td", { class: "num", text: `min ${fmtValue(Math.min(...s.min.filter((v) => typeof v === "number")))}` }),
        el("td", { class: "num", text: `max ${fmtValue(Math.max(...s.max.filter((v) => typeof v === "number")))}` })));
    }
    box.replaceChildren(rows.length ? el("table", { class: "kv" }, rows) : el("p", { class: "muted", text: "none recorded" }));
  }

  async function followLog() {
    const s = logState;
    if (!s) return;
    for (;;) {
      const chunk = await api(`${path}/tasks/${s.taskId}/log?${qs({ offset: s.offset })}`);
      if (s !== logState) return;
      if (chunk.text) { s.pre.append(chunk.text); s.pre.scrollTop = s.pre.scrollHeight; }
      s.offset = chunk.next;
      if (!chunk.text || chunk.next - chunk.offset < 262144) return;
    }
  }

  const chartsByName = new Map();
  async function renderCharts() {
    // The user's metrics first; system metrics (sys.*, sampled per task) after them.
    const names = Object.keys(run.metrics).sort((a, b) => (a.startsWith("sys.") - b.startsWith("sys.")));
    for (const name of names) {
      if (!chartsByName.has(name)) {
        const chart = new LineChart(name, { onZoom: (lo, hi) => { chart.range = [lo, hi]; loadSeries(name); } });
        chart.range = [null, null];
        chartsByName.set(name, chart); charts.append(chart.node);
      }
      await loadSeries(name);
    }
    if (!names.length) charts.replaceChildren(el("p", { class: "muted", text: "No metrics." }));
  }
  async function loadSeries(name) {
    const chart = chartsByName.get(name);
    const [lo, hi] = chart.range;
    const s = await api(`${path}/metrics/${encodeURIComponent(name)}?${qs({ buckets: 400, lo, hi })}`);
    chart.setSeries([{ label: run.pathspec, ...s }]);
  }

  async function refresh() { run = await api(path); renderHeader(); renderGraph(); }

  renderHeader(); renderGraph();
  // Show a task at once (the running one, else the last), unless the user picked one already.
  const first = run.tasks.find((t) => t.status === "running") || run.tasks[run.tasks.length - 1];
  if (first && selectedTask === null) selectTask(first.id);
  await renderCharts();
  api(`${path}/code`).then((code) => {
    codeBox.append(el("pre", { class: "log", text: JSON.stringify(run.environment, null, 2) }),
      ...Object.entries(code.files).map(([name, text]) => el("div", {}, el("b", { text: name }), el("pre", { class: "log", text }))));
  }).catch(() => {});
  live(run.pathspec, async (kinds) => {
    if (kinds.includes("logs")) await followLog();
    if (kinds.includes("run") || kinds.includes("runs")) await refresh();
    if (kinds.includes("metrics")) await renderCharts();
  });
}

function previewOf(p) {
  if (!p) return null;
  if (p.kind === "array") return el("div", {}, el("div", { class: "muted", text: `array shape ${JSON.stringify(p.shape)} dtype ${p.dtype}` }), el("pre", { class: "log", text: JSON.stringify(p.head) }));
  if (p.kind === "table") return el("table", {}, el("tr", {}, p.columns.map((c) => el("th", { text: c }))),
    p.rows.map((r) => el("tr", {}, r.map((v) => el("td", { text: fmtValue(v) })))));
  return el("pre", { class: "log", text: p.text });
}

// -- compare ----------------------------------------------------------------------------------
async function comparePage(params) {
  const runs = (params.get("runs") || [...state.selected].join(",")).split(",").filter(Boolean);
  if (!runs.length) {
    main.replaceChildren(el("h1", { text: "Compare" }), el("p", { class: "muted", text: "Select runs on the Runs page, then Compare." }));
    return;
  }
  if (!params.get("runs")) history.replaceState(null, "", `#/compare?runs=${runs.join(",")}`);
  const data = await api(`/api/compare?${qs({ runs: runs.join(","), series: 0 })}`);
  const diffOnly = el("input", { type: "checkbox", checked: params.get("diff") === "1" });
  const table = el("table", { class: "params" });
  const renderTable = () => table.replaceChildren(...[
    el("tr", {}, el("th", { text: "parameter" }), data.runs.map((r) => el("th", {}, el("a", { href: `#/run/${r.pathspec}`, text: r.pathspec })))),
    data.params.filter((p) => !diffOnly.checked || p.differs).map((p) => el("tr", { "data-param": p.name },
      el("td", { text: p.name }), p.values.map((v) => el("td", { class: p.differs ? "differs" : "", text: fmtValue(v) })))),
    data.metric_names.map((m) => el("tr", {}, el("td", { text: `metrics.${m}` }), data.runs.map((r) => el("td", { class: "num", text: fmtValue(r.metrics[m]) }))))].flat());
  diffOnly.addEventListener("change", renderTable); renderTable();
  const charts = el("div", { class: "charts" });
  const pc = el("canvas", { style: "width:100%;height:260px" });
  const metricSel = el("select", { "aria-label": "metric" }, data.metric_names.map((m) => el("option", { value: m, text: m })));
  main.replaceChildren(el("h1", { text: `Compare ${data.runs.length} runs` }),
    el("p", { class: "muted" }, "Share this comparison: ", el("a", { href: location.href, text: location.href })),
    el("label", {}, diffOnly, " only parameters that differ"), table,
    el("h2", { text: "Metrics" }), charts, el("h2", {}, "Parallel coordinates vs ", metricSel), el("div", { class: "card" }, pc));
  // One request per chart: every run's series of the metric, bucketed by the server in one pass
  // over one shared range; a zoom asks again for the range dragged across.
  const overlay = async (chart, name, lo = null, hi = null) => {
    const s = await api(`/api/series?${qs({ runs: data.runs.map((r) => r.pathspec).join(","), name, buckets: 300, lo, hi })}`);
    chart.setSeries(s.series.map((x) => ({ label: x.run, ...x })));
  };
  for (const name of data.metric_names.slice(0, 12)) {
    const chart = new LineChart(name, { onZoom: (lo, hi) => overlay(chart, name, lo, hi) });
    charts.append(chart.node);
    overlay(chart, name).catch((err) => chart.node.append(el("p", { class: "error", text: err.message })));
  }
  const drawPc = () => {
    const names = data.params.filter((p) => p.differs).map((p) => p.name);
    const axes = names.map((n) => ({ label: n, get: (r) => r.params[n] }));
    if (metricSel.value) axes.push({ label: metricSel.value, get: (r) => r.metrics[metricSel.value] });
    parallelCoordinates(pc, data.runs, axes);
  };
  metricSel.addEventListener("change", drawPc);
  requestAnimationFrame(drawPc);
}

// -- schedules --------------------------------------------------------------------------------
async function schedulesPage() {
  const data = await api("/api/schedules");
  if (!data.project) {
    main.replaceChildren(el("h1", { text: "Schedules" }), el("p", { class: "muted", text: "No project: start `keel ui` in a project folder (or with -f keel.yaml) to see its schedules." }));
    return;
  }
  main.replaceChildren(el("h1", { text: `Schedules of ${data.project}` }), el("table", {},
    el("tr", {}, ["job", "schedule", "last fire", "last status", "last run", "next fire", "starts"].map((h) => el("th", { text: h }))),
    data.rows.map((r) => el("tr", {}, el("td", { text: r.job }), el("td", { text: r.schedule }), el("td", { text: fmtTime(r.last_fire) }),
      el("td", {}, r.last_status ? statusBadge(r.last_status) : ""), el("td", {}, r.last_run ? el("a", { href: `#/run/${r.last_run}`, text: r.last_run }) : ""),
      el("td", { text: fmtTime(r.next_fire) }), el("td", { text: (r.jobs || []).join(", ") })))));
}

// -- operations: Data Engine tables, queues, endpoints ------------------------------------------
const LINK_LABELS = { spark_ui: "Spark UI", spark_app_ui: "Spark application UI" };

function fmtBytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function grid(columns, rows) {
  return el("div", { class: "scroll" }, el("table", { class: "data" },
    el("tr", {}, columns.map((c) => el("th", { text: c }))),
    rows.map((r) => el("tr", {}, r.map((v) => el("td", { text: fmtValue(v) }))))));
}

async function tablesPage() {
  const data = await api("/api/tables");
  const box = el("div", { class: "card" });
  const out = el("div", {});
  const query = el("textarea", { rows: 3, cols: 80, spellcheck: "false", "aria-label": "SQL",
    placeholder: data.rows.length ? `SELECT * FROM ${data.rows[0].name} LIMIT 10` : "SELECT 42" });
  const run = el("button", { class: "primary", text: "Run", onclick: async () => {
    out.replaceChildren(el("p", { class: "muted", text: "running…" }));
    try {
      const r = await api("/api/sql", { json: { query: query.value || query.placeholder, limit: 1000 } });
      out.replaceChildren(grid(r.columns, r.rows),
        el("p", { class: "muted", text: `${r.rows.length} row(s)${r.truncated ? ` (the first ${r.limit})` : ""}` }));
    } catch (err) { out.replaceChildren(el("p", { class: "error", role: "alert", text: err.message })); }
  } });
  box.replaceChildren(data.rows.length ? el("table", { class: "tables" },
    el("tr", {}, ["table", "versions", "latest", "rows", "size", "written", "by"].map((h) => el("th", { text: h }))),
    data.rows.map((t) => el("tr", { "data-table": t.name }, el("td", {}, el("a", { href: `#/tables/${encodeURIComponent(t.name)}`, text: t.name })),
      el("td", { class: "num", text: t.versions }), el("td", { class: "num", text: t.version }), el("td", { class: "num", text: t.rows }),
      el("td", { class: "num", text: fmtBytes(t.bytes) }), el("td", { text: fmtTime(t.created) }),
      el("td", {}, t.lineage ? el("a", { href: `#/run/${t.lineage.split("/").slice(0, 2).join("/")}`, text: t.lineage }) : (t.user || "")))))
    : el("p", { class: "muted", text: "No tables yet: a step saves one with current.data.save(NAME, df)." }));
  main.replaceChildren(el("h1", { text: "Data Engine tables" }), box,
    el("h2", { text: "SQL (read-only, DuckDB)" }), el("div", { class: "card sql" }, query, el("div", {}, run), out));
}

async function tablePage(name, params) {
  const version = params.get("version") || "";
  const t = await api(`/api/tables/${encodeURIComponent(name)}?${qs({ version, limit: 50 })}`);
  main.replaceChildren(el("h1", { text: `${t.name}@${t.version}` }),
    el("p", { class: "muted", text: `${t.rows_total} rows · ${t.schema.map((f) => `${f.name}: ${f.type}`).join(", ")}` }),
    el("h2", { text: "First rows" }), el("div", { class: "card" }, grid(t.columns, t.rows)),
    el("h2", { text: "Versions" }), el("div", { class: "card" }, el("table", { class: "history" },
      el("tr", {}, ["version", "written", "mode", "rows", "size", "by"].map((h) => el("th", { text: h }))),
      t.history.map((h) => el("tr", { class: h.version === t.version ? "sel" : "" },
        el("td", {}, el("a", { href: `#/tables/${encodeURIComponent(t.name)}?version=${h.version}`, text: h.version })),
        el("td", { text: fmtTime(h.created) }), el("td", { text: h.mode + (h.parent ? ` of ${h.parent}` : "") }),
        el("td", { class: "num", text: h.rows }), el("td", { class: "num", text: fmtBytes(h.bytes) }),
        el("td", { text: h.lineage || h.user || "" }))))));
}

async function queuesPage() {
  const data = await api("/api/queues");
  main.replaceChildren(el("h1", { text: "Queues" }), el("p", { class: "muted", text: `backend: ${data.backend}` }),
    data.rows.length ? el("table", { class: "queues" },
      el("tr", {}, ["queue", "ready", "delayed", "in flight", "lag", "state"].map((h) => el("th", { text: h }))),
      data.rows.map((q) => el("tr", { "data-queue": q.name }, el("td", { text: q.name }), el("td", { class: "num", text: q.ready }),
        el("td", { class: "num", text: q.delayed }), el("td", { class: "num", text: q.in_flight }),
        el("td", { class: "num", text: q.lag === null ? "-" : fmtDuration(q.lag) }), el("td", { text: q.closed ? "closed" : "open" }))))
    : el("p", { class: "muted", text: "No queues yet: a step or job makes one with current.queue(NAME).put(...)." }));
}

async function endpointsPage() {
  const data = await api("/api/endpoints");
  if (!data.project) {
    main.replaceChildren(el("h1", { text: "Endpoints" }), el("p", { class: "muted", text: "No project: start `keel ui` in a project folder (or with -f keel.yaml) to see its endpoints." }));
    return;
  }
  main.replaceChildren(el("h1", { text: `Endpoints of ${data.project}` }), data.rows.length ? el("table", { class: "endpoints" },
    el("tr", {}, ["endpoint", "flow", "artifact", "serves", "address"].map((h) => el("th", { text: h }))),
    data.rows.map((e) => el("tr", { "data-endpoint": e.name }, el("td", { text: e.name }), el("td", { text: e.flow }),
      el("td", { text: e.artifact + (e.preprocess ? ` after ${e.preprocess}` : "") }),
      el("td", {}, e.serves ? el("a", { href: `#/run/${e.serves}`, text: e.serves + (e.pinned ? " (pinned)" : " (latest successful)") }) : "no successful run yet"),
      el("td", { text: `http://${e.host}:${e.port}` }))))
    : el("p", { class: "muted", text: "keel.yaml declares no endpoints:." }));
}

window.addEventListener("hashchange", route);
route();
