// lmgym leaderboard page: builds everything from the JSON in <script id="data">.
// Every value goes into the page with textContent or setAttribute: nothing is parsed as markup.
"use strict";

const DATA = JSON.parse(document.getElementById("data").textContent);
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#393b79", "#637939"];

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

function slug(text) {
  return String(text).replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "").toLowerCase();
}

// --- the config panel ------------------------------------------------------------------------
const panel = document.getElementById("config-panel");
document.getElementById("config-close").addEventListener("click", () => { panel.hidden = true; });
document.addEventListener("keydown", (event) => { if (event.key === "Escape") panel.hidden = true; });

function showConfig(title, runs) {
  document.getElementById("config-title").textContent = title;
  const shown = runs.map((run) => ({seed: run.seed, test_ground_truth: run.test, verified: run.verified,
                                    agent_class: run.agent_class, config: run.config, budget: run.budget,
                                    model: run.model, env_kwargs: run.env_kwargs, git_commit: run.git_commit}));
  document.getElementById("config-body").textContent = JSON.stringify(shown, null, 2);
  panel.hidden = false;
}

// --- tables ------------------------------------------------------------------------------------
function intervalCell(row, scale) {
  const td = el("td", {class: "interval"});
  const [point, low, high] = row.interval;
  const bar = el("span", {class: "bar"});
  const range = el("span", {class: "range"});
  range.style.left = `${Math.max(0, 100 * low / scale)}%`;
  range.style.width = `${Math.max(0.5, 100 * (high - low) / scale)}%`;
  const dot = el("span", {class: "dot"});
  dot.style.left = `${Math.min(100, Math.max(0, 100 * point / scale))}%`;
  bar.append(range, dot);
  td.append(el("span", {class: "value"}, row.cells["test ground truth (95% CI)"]), bar);
  return td;
}

function sortRows(table, column, descending) {
  const tbody = table.tBodies[0];
  const rows = Array.from(tbody.rows);
  const key = (tr) => {
    const value = tr.dataset["sort_" + column];
    return value === undefined || value === "" ? null : Number(value);
  };
  rows.sort((a, b) => {
    const ka = key(a), kb = key(b);
    if (ka === null && kb === null) return a.dataset.agent.localeCompare(b.dataset.agent);
    if (ka === null) return 1;
    if (kb === null) return -1;
    return descending ? kb - ka : ka - kb;
  });
  for (const tr of rows) tbody.appendChild(tr);
  for (const th of table.tHead.rows[0].cells) th.removeAttribute("aria-sort");
  const th = table.tHead.rows[0].querySelector(`th[data-column="${CSS.escape(column)}"]`);
  if (th) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
}

// A header row whose cells sort the table by their column: descending first, then ascending.
function sortableHeader(table, columns) {
  const head = table.createTHead().insertRow();
  columns.forEach((column, index) => {
    const th = el("th", {"data-column": String(index), scope: "col", title: "click to sort"}, column);
    th.addEventListener("click", () => sortRows(table, String(index), th.getAttribute("aria-sort") !== "descending"));
    head.appendChild(th);
  });
  return head;
}

function buildTable(spec) {
  const table = el("table", {class: "board", "data-env": spec.env, "data-track": spec.track});
  const head = sortableHeader(table, spec.columns);
  const scale = Math.max(1, ...spec.rows.map((row) => row.interval[2]));
  head.appendChild(el("th", {scope: "col"}, "config"));
  const body = table.createTBody();
  for (const row of spec.rows) {
    const tr = body.insertRow();
    tr.dataset.agent = row.agent;
    spec.columns.forEach((column, index) => {
      const value = row.sort[column];
      tr.dataset["sort_" + index] = value === null || value === undefined ? "" : String(value);
      if (column === "test ground truth (95% CI)") tr.appendChild(intervalCell(row, scale));
      else if (column === "verified") {
        const [done, total] = row.cells.verified.split("/").map(Number);
        tr.appendChild(el("td", {class: done > 0 ? "verified" : "unverified"}, (done > 0 ? "\u2713 " : "") + row.cells.verified));
        if (total) tr.dataset["sort_" + index] = String(done / total);
      } else tr.appendChild(el("td", {class: column === "agent" ? "agent" : "num"}, row.cells[column]));
    });
    const td = tr.insertCell();
    const button = el("button", {type: "button", class: "config"}, "config");
    button.addEventListener("click", () => showConfig(`${row.agent} on ${spec.env} (${spec.track})`, row.runs));
    td.appendChild(button);
  }
  return table;
}

// --- curves ------------------------------------------------------------------------------------
function buildCurves(spec) {
  const width = 640, height = 300, left = 52, right = 150, top = 14, bottom = 40;
  const series = spec.rows.map((row) => {
    const curves = row.runs.map((run) => run.curve.filter((p) => p[1] !== null && p[1] !== undefined));
    const length = Math.min(...curves.map((c) => c.length));
    const points = [];
    for (let i = 0; i < length; i++) {
      points.push([curves.reduce((s, c) => s + c[i][0], 0) / curves.length,
                   curves.reduce((s, c) => s + c[i][1], 0) / curves.length]);
    }
    return {agent: row.agent, points};
  }).filter((s) => s.points.length > 0);
  const svg = svgEl("svg", {viewBox: `0 0 ${width} ${height}`, class: "curves", role: "img",
                            "aria-label": `validation curves on ${spec.env}`});
  if (!series.length) return svg;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const xMax = Math.max(1, ...xs), yMin = Math.min(...ys), yMax = Math.max(...ys);
  const pad = (yMax - yMin) * 0.08 || 0.05;
  const y0 = yMin - pad, y1 = yMax + pad;
  const X = (x) => left + (width - left - right) * x / xMax;
  const Y = (y) => top + (height - top - bottom) * (1 - (y - y0) / (y1 - y0));
  svg.appendChild(svgEl("line", {x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, class: "axis"}));
  svg.appendChild(svgEl("line", {x1: left, y1: top, x2: left, y2: height - bottom, class: "axis"}));
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4, x = xMax * i / 4;
    const ty = svgEl("text", {x: left - 6, y: Y(y) + 4, class: "tick", "text-anchor": "end"});
    ty.textContent = y.toFixed(2);
    const tx = svgEl("text", {x: X(x), y: height - bottom + 16, class: "tick", "text-anchor": "middle"});
    tx.textContent = Math.round(x).toLocaleString("en");
    svg.append(ty, tx);
  }
  const label = svgEl("text", {x: (left + width - right) / 2, y: height - 6, class: "label", "text-anchor": "middle"});
  label.textContent = "generated samples (validation ground truth, greedy; mean over seeds)";
  svg.appendChild(label);
  series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    svg.appendChild(svgEl("polyline", {points: s.points.map((p) => `${X(p[0])},${Y(p[1])}`).join(" "),
                                       fill: "none", stroke: colour, "stroke-width": 2}));
    const legend = svgEl("text", {x: width - right + 10, y: top + 14 * i + 10, fill: colour, class: "legend"});
    legend.textContent = s.agent;
    svg.appendChild(legend);
  });
  return svg;
}

// --- suites --------------------------------------------------------------------------------------
function buildSuite(suite) {
  const section = el("section", {class: "suite", id: "suite-" + slug(suite.name)});
  section.appendChild(el("h2", {}, `Suite ${suite.name}: base-normalised test score over every env and seed`));
  const table = el("table", {class: "board suite-table", "data-suite": suite.name});
  sortableHeader(table, suite.columns);
  const body = table.createTBody();
  for (const row of suite.rows) {
    const tr = body.insertRow();
    tr.dataset.agent = row.agent;
    suite.columns.forEach((column, index) => {
      const value = row.sort[column];
      tr.dataset["sort_" + index] = value === null || value === undefined ? "" : String(value);
      tr.appendChild(el("td", {class: column === "agent" ? "agent" : "num"}, row.cells[column]));
    });
  }
  section.append(table, el("p", {class: "note"}, suite.note));
  return section;
}

// --- the page --------------------------------------------------------------------------------------
function build() {
  document.getElementById("note").textContent = DATA.note;
  const main = document.getElementById("main");
  const nav = el("nav", {});
  for (const suite of DATA.suites) {
    const a = el("a", {href: "#suite-" + slug(suite.name)}, `suite ${suite.name}`);
    nav.append(a, document.createTextNode(" "));
  }
  for (const spec of DATA.tables) {
    nav.append(el("a", {href: "#" + slug(spec.env + " " + spec.track)}, `${spec.env} (${spec.track})`), document.createTextNode(" "));
  }
  main.appendChild(nav);
  for (const suite of DATA.suites) main.appendChild(buildSuite(suite));
  for (const spec of DATA.tables) {
    const section = el("section", {class: "env", id: slug(spec.env + " " + spec.track)});
    const limits = spec.limits || {};
    const parts = [];
    if (limits.samples) parts.push(`\u2264 ${Number(limits.samples).toLocaleString("en")} samples`);
    if (limits.trained_tokens) parts.push(`\u2264 ${Number(limits.trained_tokens).toLocaleString("en")} trained tokens`);
    section.appendChild(el("h2", {}, `${spec.env} \u2014 track ${spec.track}` + (parts.length ? ` (${parts.join(", ")})` : "")));
    section.appendChild(buildTable(spec));
    section.appendChild(buildCurves(spec));
    main.appendChild(section);
  }
  document.body.dataset.ready = "true";
}

build();
