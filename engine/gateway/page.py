"""The dashboard's page: one HTML document with its style and script inline (no build
step, nothing fetched from elsewhere). The server puts each chain's section where the
page says ``<!--CHAINS-->``; the script reads the event stream and lays it over them.
Every name the stream carries is set as text (``textContent``), never as markup."""

from __future__ import annotations

from typing import Final

__all__ = ["LOGIN", "PAGE"]

PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>torq-fallback: live</title>
<link rel="icon" href="data:,">
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #fafafa; }
header { position: sticky; top: 0; background: #263238; color: #fff; padding: 8px 16px;
  display: flex; gap: 24px; align-items: baseline; flex-wrap: wrap; z-index: 2; }
header h1 { font-size: 16px; margin: 0; }
#status[data-state=live]::before { content: "\\25CF "; color: #81c784; }
#status[data-state=reconnecting]::before { content: "\\25CB "; color: #ffb74d; }
main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(320px, 2fr); gap: 16px;
  padding: 16px; }
@media (max-width: 1100px) { main { grid-template-columns: minmax(0, 1fr); } }
section.chain { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px;
  margin-bottom: 16px; }
section.chain h2 { font-size: 15px; margin: 4px 0 8px; }
.diagram { overflow-x: auto; }
.diagram svg { max-width: 100%; height: auto; }
.diagram g.node.answered > :is(path, polygon, ellipse) { stroke: #2e7d32; stroke-width: 4; }
.diagram g.node.open > :is(path, polygon, ellipse) { fill: #ffebee; stroke: #c62828;
  stroke-dasharray: 6 3; stroke-width: 2; }
.diagram g.node.half_open > :is(path, polygon, ellipse) { fill: #fff8e1; stroke: #ef6c00; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eee; vertical-align: top;
  overflow-wrap: anywhere; }
th { color: #555; font-weight: 600; white-space: nowrap; }
#tail td:not(:nth-child(3)) { white-space: nowrap; }
td.state-open { color: #b71c1c; font-weight: 600; }
td.state-half_open { color: #e65100; font-weight: 600; }
td.state-closed { color: #1b5e20; }
#tail tbody tr { cursor: pointer; }
#tail tbody tr:hover, #tail tbody tr.chosen { background: #e3f2fd; }
.final-succeeded { color: #1b5e20; } .final-exhausted, .final-aborted { color: #b71c1c; }
.final-cancelled { color: #616161; }
aside { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px;
  align-self: start; position: sticky; top: 56px; max-height: calc(100vh - 72px); overflow: auto; }
aside h2 { font-size: 15px; margin: 4px 0 8px; }
pre#details { white-space: pre-wrap; overflow-wrap: anywhere; background: #f5f5f5;
  padding: 8px; font-size: 12px; }
.note { color: #cfd8dc; font-size: 12px; }
.nodot { color: #555; font-style: italic; }
</style></head>
<body>
<header><h1>torq-fallback: live</h1><span id="status" data-state="reconnecting">connecting</span>
<span class="note" id="scope"></span><span class="note" id="totals"></span></header>
<main>
<div id="chains">
<!--CHAINS-->
</div>
<aside>
<h2>Recent requests</h2>
<table id="tail"><thead><tr><th>time</th><th>chain</th><th>path</th><th>ms</th>
<th>tokens</th><th>cost</th></tr></thead><tbody></tbody></table>
<h2 id="details-title">Attempt history</h2>
<p class="note" id="details-hint" style="color:#555">Click a request to see its attempts.</p>
<pre id="details" hidden></pre>
</aside>
</main>
<script>
"use strict";
const chains = {};
for (const section of document.querySelectorAll("section.chain")) {
  const info = JSON.parse(section.dataset.chain);
  const nodes = {}, edges = {};
  for (const g of section.querySelectorAll("svg g.node")) {
    const title = g.querySelector("title");
    if (title) nodes[title.textContent] = g;
  }
  for (const g of section.querySelectorAll("svg g.edge")) {
    const title = g.querySelector("title");
    if (!title) continue;
    const label = g.querySelector("text");
    const category = label ? label.textContent.trim() : "start";
    if (label) label.dataset.base = label.textContent;
    edges[title.textContent.replace("\\u2192", "->") + "|" + category] = g;
  }
  chains[info.name] = {info, section, nodes, edges, body: section.querySelector("tbody")};
}
let shown = [];
let chosen = null;

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (cls) td.className = cls;
  return td;
}

function paint(data) {
  const scope = data.scope;
  document.getElementById("scope").textContent =
    "traffic and requests: " + scope.traffic + " (" + scope.workers.join(", ") +
    "); breakers and quotas: " + (scope.shared ? scope.health : "this worker's own (local)");
  document.getElementById("totals").textContent =
    data.requests + " requests seen" + (data.dropped ? ", " + data.dropped + " dropped" : "");
  const health = {}, quotas = {};
  for (const row of data.health.providers) health[row.provider] = row;
  for (const row of data.health.quotas) quotas[row.provider] = row;
  for (const [name, chain] of Object.entries(chains)) {
    const live = data.chains[name] || {edges: [], last_answered: null};
    let total = 0;
    for (const e of live.edges) if (e.category === "start") total += e.minute;
    const fromStep = {};
    for (const g of Object.values(chain.edges)) {
      const path = g.querySelector("path");
      if (path) path.style.strokeWidth = "";
      const label = g.querySelector("text");
      if (label && label.dataset.base) label.textContent = label.dataset.base;
    }
    for (const e of live.edges) {
      fromStep[e.from] = (fromStep[e.from] || 0) + e.minute;
      const g = chain.edges[e.from + "->" + e.to + "|" + e.category];
      if (!g) continue;
      const share = total ? e.minute / total : 0;
      const path = g.querySelector("path");
      if (path) path.style.strokeWidth = String(1 + 7 * Math.min(share, 1));
      const label = g.querySelector("text");
      if (label) label.textContent = label.dataset.base + " \\u00b7 " + e.minute + "/min (" +
        e.quarter + "/15 min)";
      g.dataset.minute = String(e.minute);
    }
    const last = live.last_answered ? live.last_answered.step : null;
    chain.body.replaceChildren();
    for (const step of chain.info.steps) {
      const h = health[step.breaker] || health[step.provider] ||
        {state: "closed", why: "no call yet"};
      const p = data.providers[step.provider] || {};
      const node = chain.nodes[step.id];
      if (node) {
        node.classList.remove("open", "half_open", "closed", "answered");
        node.classList.add(h.state);
        if (step.id === last) node.classList.add("answered");
      }
      const row = chain.body.insertRow();
      row.dataset.step = step.id;
      cell(row, step.id + (step.id === last ? "  \\u25c0 answered last (" +
        live.last_answered.seconds_ago + " s ago)" : ""));
      cell(row, step.provider);
      cell(row, h.state.replace("_", "-"), "state-" + h.state).dataset.role = "breaker";
      cell(row, h.why);
      cell(row, h.next_probe_in_s === null || h.next_probe_in_s === undefined ? "-" :
        h.next_probe_in_s + " s");
      cell(row, p.p50_ms === undefined ? "-" : p.p50_ms + " / " + p.p95_ms + " ms");
      const q = quotas[step.provider];
      cell(row, q ? q.requests + "/" + (q.requests_limit ?? "\u221e") + " req, " + q.tokens +
        "/" + (q.tokens_limit ?? "\u221e") + " tok" : "-").dataset.role = "quota";
      cell(row, p.hedge_rate === undefined ? "-" : Math.round(p.hedge_rate * 100) + " %");
      cell(row, (fromStep[step.id] || 0) + " attempts");
    }
  }
  shown = data.tail;
  const body = document.querySelector("#tail tbody");
  body.replaceChildren();
  for (const [index, r] of shown.entries()) {
    const row = body.insertRow();
    row.dataset.index = String(index);
    if (chosen && r.request_id === chosen) row.classList.add("chosen");
    cell(row, new Date(r.at * 1000).toLocaleTimeString());
    cell(row, r.chain);
    cell(row, r.path.map(a => a.provider + " " + a.status + (a.code ? " " + a.code : ""))
      .join(" \\u2192 ") + " \\u21d2 " + r.final_state, "final-" + r.final_state);
    cell(row, r.duration_ms);
    cell(row, r.tokens_total);
    cell(row, r.cost_usd_est === null ? "-" : "$" + Number(r.cost_usd_est).toFixed(6));
  }
}

document.querySelector("#tail tbody").addEventListener("click", (event) => {
  const row = event.target.closest("tr");
  if (!row) return;
  const r = shown[Number(row.dataset.index)];
  chosen = r.request_id;
  for (const other of row.parentElement.rows) other.classList.toggle("chosen", other === row);
  document.getElementById("details-title").textContent =
    "Attempt history of " + r.request_id + " (" + r.chain + ", " + r.final_state + ")";
  document.getElementById("details-hint").hidden = true;
  const details = document.getElementById("details");
  details.hidden = false;
  details.textContent = JSON.stringify(r.attempts, null, 2);
});

const status = document.getElementById("status");
const source = new EventSource(location.pathname.replace(/\\/?$/, "/events"));
source.onopen = () => { status.dataset.state = "live"; status.textContent = "live"; };
source.onerror = () => {
  status.dataset.state = "reconnecting"; status.textContent = "reconnecting\\u2026";
};
source.onmessage = (message) => paint(JSON.parse(message.data));
</script>
</body></html>
"""

LOGIN: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>torq-fallback: key</title></head>
<body style="font: 14px system-ui, sans-serif; margin: 40px">
<h1 style="font-size: 18px">This gateway asks for a key</h1>
<form id="key"><label>Gateway key <input type="password" name="key" autocomplete="off"
 required></label> <button>Open the dashboard</button></form>
<script>
document.getElementById("key").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = new FormData(event.target).get("key");
  document.cookie = "torq_key=" + encodeURIComponent(key) +
    "; path=/; SameSite=Strict" + (location.protocol === "https:" ? "; Secure" : "");
  location.reload();
});
</script></body></html>
"""
