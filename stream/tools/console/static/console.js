// vector-trainer console: the pages' only script, no framework.
// Everything shown comes from the JSON API under /api/v1.  Text from a topic is only
// ever written with textContent (never innerHTML), so a hostile sample stays text.
"use strict";

const API = "/api/v1";
const main = document.getElementById("main");
const PAGE = main.dataset.page;
const FN = main.dataset.function;
const READ_ONLY = main.dataset.readOnly === "true";

// ------------------------------------------------------------------ helpers
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fill(tbody, rows, empty, cols) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: cols, class: "muted" }, empty))]));
}

function fmtTime(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : "–"; }
function fmtNum(x, digits) {
  if (x === null || x === undefined) return "–";
  return digits === undefined ? Math.round(x).toLocaleString("en") : Number(x).toFixed(digits);
}
function fnUrl(name, rest) { return "/functions/" + encodeURIComponent(name) + (rest || ""); }
function fnApi(rest) { return API + "/functions/" + encodeURIComponent(FN) + rest; }
// Plotly reads a few HTML-like tags in hover text: escape them so they show as typed.
function plotText(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }

const tokenInput = document.getElementById("token");
if (tokenInput) {
  tokenInput.value = sessionStorage.getItem("vt-console-token") || "";
  tokenInput.addEventListener("change", () => sessionStorage.setItem("vt-console-token", tokenInput.value.trim()));
}

function toast(text, isError) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.className = isError ? "error" : "";
  t.style.display = "block";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.style.display = "none"; }, 6000);
}

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  if (opts.method && opts.method !== "GET") {
    const token = sessionStorage.getItem("vt-console-token") || "";
    if (token) opts.headers["Authorization"] = "Bearer " + token;
    opts.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, opts);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : resp.statusText;
    const err = new Error(resp.status + ": " + detail);
    err.status = resp.status;
    throw err;
  }
  return body;
}

async function act(label, path, payload, method) {
  if (READ_ONLY) { toast("read-only console: start it with VT_CONSOLE_TOKEN set", true); return null; }
  try {
    const res = await api(path, { method: method || "POST", body: method === "DELETE" ? undefined : JSON.stringify(payload || {}) });
    toast(label + ": done");
    return res;
  } catch (e) {
    toast(label + " failed: " + e.message, true);
    return null;
  }
}

// Live refresh: poll the status revision; re-render the page when it changed.
function live(render, intervalMs) {
  let last = -1;
  let busy = false;
  const dot = document.getElementById("live");
  async function tick(force) {
    if (busy) return;
    busy = true;
    try {
      const st = await api(API + "/status");
      dot.classList.add("on");
      if (force === true || st.revision !== last) {
        last = st.revision;
        await render(st);
      }
    } catch (e) {
      dot.classList.remove("on");
    } finally {
      busy = false;
    }
  }
  tick(true);
  setInterval(tick, intervalMs || 2000);
  return () => tick(true);
}

// ------------------------------------------------------------------ overview
async function overview() {
  const o = await api(API + "/overview");
  document.getElementById("lag").textContent = fmtNum(o.consumer_lag);
  document.getElementById("consumed").textContent = fmtNum(o.consumed_total);
  document.getElementById("dlq-total").textContent = fmtNum(o.dead_letters_seen);
  document.getElementById("caught-up").textContent =
    o.status.caught_up.join(", ") + (o.status.missing_topics.length ? " (missing: " + o.status.missing_topics.join(", ") + ")" : "");
  fill(document.querySelector("#functions tbody"), o.functions.map((f) => el("tr", { dataset: { function: f.name } },
    el("td", {}, el("a", { href: fnUrl(f.name) }, f.name)),
    el("td", { class: "num" }, fmtNum(f.logs_indexed)),
    el("td", { class: "num" }, f.golden_steady),
    el("td", { class: "num" }, f.golden_anomaly),
    el("td", { class: "num" }, f.hook_version ? el("a", { href: fnUrl(f.name, "/hooks") }, "v" + f.hook_version + " (" + f.hook_rules + " rules)") : "–"),
    el("td", {}, f.last_job ? el("a", { href: fnUrl(f.name, "/training"), class: "status-" + f.last_job.status }, f.last_job.status + " · " + fmtTime(f.last_job.at)) : "–"),
    el("td", { class: "mono" }, f.model || "–"),
  )), "no function seen yet", 7);
  const reasons = Object.entries(o.dead_letters_by_reason).sort((a, b) => b[1] - a[1]);
  fill(document.querySelector("#dlq-reasons tbody"), reasons.map(([r, n]) => el("tr", {},
    el("td", {}, el("a", { href: "/dlq?reason=" + encodeURIComponent(r) }, r)), el("td", { class: "num" }, n))), "none", 2);
  document.getElementById("metrics-sources").replaceChildren(...(o.status.metrics.length
    ? o.status.metrics.map((m) => el("li", { class: m.ok ? "" : "del" }, m.url + (m.ok ? " · scraped " + m.age_s + " s ago" : " · " + (m.error || "not scraped yet"))))
    : [el("li", { class: "muted" }, "none given (--metrics-url): indexed logs and lag are not shown")]));
}

// ------------------------------------------------------------------ function page: golden samples and map
function golden() {
  const PAGE_SIZE = 25;
  let offset = 0;
  const q = document.getElementById("q");
  const strategy = document.getElementById("strategy");
  const params = () => { const p = new URLSearchParams(); if (q.value) p.set("q", q.value); if (strategy.value) p.set("strategy", strategy.value); return p; };
  async function render() {
    const p = params();
    document.getElementById("download").href = fnApi("/golden.jsonl?" + p.toString());
    p.set("offset", offset); p.set("limit", PAGE_SIZE);
    const g = await api(fnApi("/golden?" + p.toString()));
    document.getElementById("golden-count").textContent = g.total + " matching of " + g.golden;
    const sampleApi = (uuid, rest) => fnApi("/golden/" + encodeURIComponent(uuid) + rest);
    const decide = (label, uuid, rest, method) => async () => {
      const res = await act(label, sampleApi(uuid, rest), {}, method);
      if (res) toast(label + " published; the golden set changes once the processor's answer is read back from the topic");
    };
    fill(document.querySelector("#golden tbody"), g.items.map((s) => el("tr", { dataset: { uuid: s.uuid } },
      el("td", {}, fmtTime(s.selected_at)),
      el("td", {}, s.strategy, s.pinned ? el("span", { class: "pinned" }, " · pinned") : null),
      el("td", { class: "num" }, fmtNum(s.density, 2)),
      el("td", { class: "chat" }, s.messages.map((m) => el("div", { class: "msg" }, el("span", { class: "role" }, m.role), el("span", { class: "content" }, m.content)))),
      el("td", { class: "mono" }, s.uuid),
      el("td", {},
        el("button", { type: "button", class: "reject", disabled: READ_ONLY, onclick: decide("reject " + s.uuid, s.uuid, "/reject") }, "reject"),
        s.pinned
          ? el("button", { type: "button", class: "unpin", disabled: READ_ONLY, onclick: decide("unpin " + s.uuid, s.uuid, "/curation", "DELETE") }, "unpin")
          : el("button", { type: "button", class: "pin", disabled: READ_ONLY, onclick: decide("pin " + s.uuid, s.uuid, "/pin") }, "pin")),
    )), "no golden sample" + (q.value || strategy.value ? " matches" : " yet"), 6);
    const cur = await api(fnApi("/curation"));
    fill(document.querySelector("#curation tbody"), cur.items.map((d) => el("tr", { dataset: { uuid: d.uuid } },
      el("td", {}, d.decision),
      el("td", { class: "mono" }, d.uuid),
      el("td", {}, d.reason || ""),
      el("td", {}, (d.by || "") + " · " + fmtTime(d.at)),
      el("td", {}, el("button", { type: "button", class: "clear", disabled: READ_ONLY,
        onclick: decide("clear the decision on " + d.uuid, d.uuid, "/curation", "DELETE") }, "clear")),
    )), "no sample rejected or pinned", 5);
    document.getElementById("page").textContent = g.total ? (offset + 1) + "–" + Math.min(offset + PAGE_SIZE, g.total) + " of " + g.total : "";
    document.getElementById("prev").disabled = offset === 0;
    document.getElementById("next").disabled = offset + PAGE_SIZE >= g.total;
  }
  const refresh = live(render, 3000);
  document.getElementById("golden-search").addEventListener("submit", (e) => { e.preventDefault(); offset = 0; refresh(); });
  document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE_SIZE); refresh(); });
  document.getElementById("next").addEventListener("click", () => { offset += PAGE_SIZE; refresh(); });
  densityMap();
}

async function densityMap() {
  const note = document.getElementById("map-note");
  const box = document.getElementById("map");
  let m;
  try {
    m = await api(fnApi("/map"));
  } catch (e) {
    note.textContent = "map unavailable: " + e.message;
    box.replaceChildren(el("p", { class: "muted" }, "The map is read from the processor's density checkpoints (console --state-dir)."));
    box.style.height = "auto";
    return;
  }
  note.textContent = m.shown + " of " + m.indexed + " indexed logs, PCA (" + Math.round(m.variance[0] * 100) + "% + " + Math.round(m.variance[1] * 100) + "% of variance)";
  const pick = (cond) => { const idx = []; m.x.forEach((_, i) => { if (cond(i)) idx.push(i); }); return idx; };
  const trace = (idx, name, marker) => ({
    type: "scatter", mode: "markers", name: name + " (" + idx.length + ")",
    x: idx.map((i) => m.x[i]), y: idx.map((i) => m.y[i]),
    text: idx.map((i) => plotText(m.input[i] || "(no input kept: not SUCCESS)")),
    customdata: idx.map((i) => m.density[i]),
    hovertemplate: "%{text}<br>density %{customdata:.2f}<extra></extra>",
    marker: marker,
  });
  const maxD = Math.max(1, ...m.density);
  const colour = (idx) => ({ color: idx.map((i) => m.density[i]), colorscale: "Viridis", cmin: 0, cmax: maxD, size: 6, opacity: 0.75 });
  const ok = pick((i) => m.success[i] && !m.strategy[i]);
  const other = pick((i) => !m.success[i]);
  const steady = pick((i) => m.strategy[i] === "steady");
  const anomaly = pick((i) => m.strategy[i] === "anomaly");
  const okMarker = Object.assign(colour(ok), { showscale: true, colorbar: { title: { text: "density" } } });
  const data = [
    trace(other, "not SUCCESS", Object.assign(colour(other), { symbol: "x" })),
    trace(ok, "SUCCESS", okMarker),
    trace(steady, "golden steady", { symbol: "star", size: 13, color: "red", line: { width: 1, color: "#600" } }),
    trace(anomaly, "golden anomaly", { symbol: "diamond-open", size: 10, color: "magenta", line: { width: 2 } }),
  ];
  const layout = { margin: { l: 50, r: 20, t: 10, b: 40 }, hovermode: "closest", legend: { orientation: "h" },
    xaxis: { title: { text: "PC1" }, zeroline: false }, yaxis: { title: { text: "PC2" }, zeroline: false } };
  window.Plotly.newPlot(box, data, layout, { responsive: true, displaylogo: false });
}

// ------------------------------------------------------------------ hooks
function hooks() {
  let versions = [];
  let shown = null;
  const pair = (p) => fmtNum(p[0], 3) + " → " + fmtNum(p[1], 3);
  function showRules(v) {
    shown = v.version;
    document.getElementById("shown-version").textContent = v.version;
    fill(document.querySelector("#rules tbody"), v.rules.map((r) => el("tr", {},
      el("td", {}, r.description), el("td", { class: "mono" }, r.kind), el("td", { class: "num" }, r.support),
      el("td", { class: "num" }, r.confidence === null ? "–" : fmtNum(r.confidence, 2)), el("td", {}, r.origin))), "no rules", 5);
    document.getElementById("vetoed").replaceChildren(...(v.vetoed.length ? v.vetoed.map((r) => el("li", { class: "del" }, r.description)) : [el("li", { class: "muted" }, "none")]));
  }
  async function render() {
    const h = await api(fnApi("/hooks"));
    versions = h.versions;
    const newest = versions.length ? versions[versions.length - 1].version : null;
    fill(document.querySelector("#versions tbody"), versions.slice().reverse().map((v) => {
      const val = v.validation;
      const g = (k) => val[k] || 0;
      return el("tr", { dataset: { version: v.version } },
        el("td", { class: "num" }, el("a", { href: "#", onclick: (e) => { e.preventDefault(); showRules(v); } }, "v" + v.version)),
        el("td", {}, fmtTime(v.created_at)),
        el("td", { class: "num" }, v.rules.length),
        el("td", {}, (val.pairs || 0) + " (" + (val.heldout_pairs || 0) + ")"),
        el("td", {}, pair([g("exact_match_before"), g("exact_match_after")])),
        el("td", {}, pair([g("heldout_exact_match_before"), g("heldout_exact_match_after")])),
        el("td", {}, pair([g("heldout_similarity_before"), g("heldout_similarity_after")])),
        el("td", {}, (v.rollback_of ? "rollback to v" + v.rollback_of : "") + (v.signed ? " signed" : "")),
        el("td", {}, v.version === newest ? el("span", { class: "muted" }, "current")
          : el("button", { type: "button", class: "rollback", disabled: READ_ONLY, dataset: { to: v.version },
            onclick: async () => {
              if (!confirm("Publish the rules of v" + v.version + " as a new version of " + FN + "?")) return;
              const res = await act("rollback to v" + v.version, fnApi("/hooks/rollback"), { to: v.version });
              if (res) toast("published v" + res.version + " (rules of v" + res.rollback_of + "); it shows once read back from the topic");
            } }, "Roll back to v" + v.version)),
      );
    }), "no hook released yet", 9);
    const a = document.getElementById("diff-a"), b = document.getElementById("diff-b");
    const keepA = a.value, keepB = b.value;
    const opts = () => versions.map((v) => el("option", { value: v.version }, "v" + v.version));
    a.replaceChildren(...opts()); b.replaceChildren(...opts());
    if (versions.length) {
      a.value = keepA || String(versions[Math.max(0, versions.length - 2)].version);
      b.value = keepB || String(newest);
      showRules(versions.find((v) => v.version === shown) || versions[versions.length - 1]);
    }
  }
  live(render, 2000);
  document.getElementById("diff-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const a = document.getElementById("diff-a").value, b = document.getElementById("diff-b").value;
    try {
      const d = await api(fnApi("/hooks/diff?a=" + encodeURIComponent(a) + "&b=" + encodeURIComponent(b)));
      const lines = [
        ...d.added.map((r) => el("li", { class: "add" }, "+ " + r.description)),
        ...d.removed.map((r) => el("li", { class: "del" }, "- " + r.description)),
        ...d.kept.map((r) => el("li", {}, "  " + r.description)),
      ];
      document.getElementById("diff").replaceChildren(...(lines.length ? lines : [el("li", { class: "muted" }, "no rules in either")]));
    } catch (err) { toast(err.message, true); }
  });
}

// ------------------------------------------------------------------ training
function training() {
  async function render() {
    const t = await api(fnApi("/training"));
    document.getElementById("t-golden").textContent = t.golden;
    document.getElementById("t-new").textContent = t.new_since_last_job;
    document.getElementById("t-model").textContent = t.model || "–";
    fill(document.querySelector("#jobs tbody"), t.jobs.map((j) => el("tr", { dataset: { job: j.job_id } },
      el("td", { class: "mono" }, j.job_id),
      el("td", { class: "status-" + j.status }, j.status),
      el("td", {}, j.trainer + " / " + j.base_model),
      el("td", { class: "num" }, j.n_train + " / " + j.n_val),
      el("td", { class: "num" }, fmtNum(j.est_tokens)),
      el("td", { class: "num" }, fmtNum(j.est_cost_usd, 4)),
      el("td", {}, fmtTime(j.updated_at)),
      el("td", { class: "mono" }, j.error || j.fine_tuned_model || j.dataset_path || "–"),
      el("td", {}, j.active ? el("button", { type: "button", class: "cancel", disabled: READ_ONLY, onclick: async () => {
        if (!confirm("Cancel job " + j.job_id + "?")) return;
        await act("cancel " + j.job_id, fnApi("/training/cancel"));
      } }, "Cancel") : ""),
    )), "no job yet", 9);
    const traces = [];
    for (const j of t.jobs) {
      if (!j.loss.length) continue;
      const steps = j.loss.map((p, i) => (p.step === null ? i : p.step));
      for (const split of ["train_loss", "valid_loss"]) {
        const pts = j.loss.map((p, i) => [steps[i], p[split]]).filter((p) => p[1] !== null);
        if (pts.length) traces.push({ type: "scatter", mode: "lines+markers", name: plotText(j.job_id + " " + split), x: pts.map((p) => p[0]), y: pts.map((p) => p[1]) });
      }
    }
    const box = document.getElementById("loss");
    if (!traces.length) { box.replaceChildren(el("p", { class: "muted" }, "no loss reported yet (exports and the 'none' trainer report none)")); box.style.height = "auto"; return; }
    box.style.height = "";
    window.Plotly.react(box, traces, { margin: { l: 50, r: 20, t: 10, b: 40 }, xaxis: { title: { text: "step" } }, yaxis: { title: { text: "loss" } } }, { responsive: true, displaylogo: false });
  }
  live(render, 2000);
}

// ------------------------------------------------------------------ dead letters
function dlq() {
  const PAGE_SIZE = 50;
  let offset = 0;
  let current = [];
  const reason = document.getElementById("reason");
  const since = document.getElementById("since");
  const url = new URLSearchParams(location.search);
  if (url.get("reason")) reason.value = url.get("reason");
  const filters = () => { const p = {}; if (reason.value) p.reason = reason.value; if (since.value.trim()) p.since = since.value.trim(); return p; };
  async function render() {
    const p = new URLSearchParams(filters());
    p.set("offset", offset); p.set("limit", PAGE_SIZE);
    let d;
    try { d = await api(API + "/dlq?" + p.toString()); } catch (e) { toast(e.message, true); return; }
    current = d.items;
    document.getElementById("dlq-count").textContent = d.total + " matching; " + d.seen + " read from the topic";
    fill(document.querySelector("#dlq tbody"), d.items.map((x) => el("tr", { dataset: { id: x.id } },
      el("td", {}, el("input", { type: "checkbox", class: "pick", value: x.id, "aria-label": "select " + x.id })),
      el("td", {}, fmtTime(x.at)),
      el("td", { class: "mono" }, x.error_type),
      el("td", { class: "mono" }, x.source_topic + " " + x.partition + ":" + x.offset),
      el("td", { class: "mono" }, x.key === null ? "–" : x.key),
      el("td", { class: "error" }, x.error),
      el("td", {}, el("div", { class: "preview" }, x.preview), el("div", { class: "muted" }, x.value_bytes + " bytes" + (x.value_truncated ? ", cut" : ""))),
    )), "no dead letter matches", 7);
    document.getElementById("page").textContent = d.total ? (offset + 1) + "–" + Math.min(offset + PAGE_SIZE, d.total) + " of " + d.total : "";
    document.getElementById("prev").disabled = offset === 0;
    document.getElementById("next").disabled = offset + PAGE_SIZE >= d.total;
  }
  const refresh = live(render, 3000);
  document.getElementById("dlq-filter").addEventListener("submit", (e) => { e.preventDefault(); offset = 0; refresh(); });
  document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE_SIZE); refresh(); });
  document.getElementById("next").addEventListener("click", () => { offset += PAGE_SIZE; refresh(); });
  document.getElementById("select-all").addEventListener("change", (e) => {
    document.querySelectorAll("#dlq .pick").forEach((c) => { c.checked = e.target.checked; });
  });
  const report = (res) => { if (res) toast("replayed " + res.replayed.length + (res.skipped.length ? "; skipped " + res.skipped.length + ": " + res.skipped.slice(0, 3).map((s) => s.why).join("; ") : "")); };
  document.getElementById("replay-selected").addEventListener("click", async () => {
    const ids = Array.from(document.querySelectorAll("#dlq .pick:checked")).map((c) => c.value);
    if (!ids.length) { toast("select dead letters first", true); return; }
    report(await act("replay", API + "/dlq/replay", { ids: ids }));
  });
  document.getElementById("replay-filter").addEventListener("click", async () => {
    const f = filters();
    if (!f.reason && !f.since) { toast("choose a reason or a time first", true); return; }
    if (!confirm("Replay every dead letter matching the filter to its source topic?")) return;
    report(await act("replay", API + "/dlq/replay", f));
  });
}

const PAGES = { overview: () => live(overview, 2000), golden: golden, hooks: hooks, training: training, dlq: dlq };
if (PAGES[PAGE]) PAGES[PAGE]();
