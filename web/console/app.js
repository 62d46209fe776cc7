// leaf console: reads leafd's API (the same endpoints and roles as the
// CLI) and redraws every second. No framework, no build step.
"use strict";

const state = { role: "", status: null, history: null, changing: false };
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { error: text }; }
  if (!r.ok) {
    const err = new Error((data && data.error) || r.statusText);
    err.status = r.status;
    throw err;
  }
  return data;
}

function short(digest) { return digest ? digest.replace(/^sha256:/, "").slice(0, 12) : ""; }

function avgRun(a) {
  if (a.runCount === undefined || a.runTimeNs === undefined || !a.runCount) return null;
  return (a.runTimeNs / a.runCount).toFixed(0) + " ns";
}

// canChange: admins change the desired state (PUT /v1/state needs admin).
function canChange() { return state.role === "admin"; }

function drawHooks(st) {
  const byHook = new Map();
  for (const a of st.attachments || []) {
    if (!byHook.has(a.hook)) byHook.set(a.hook, []);
    byHook.get(a.hook).push(a);
  }
  const foreign = new Map();
  for (const f of st.foreign || []) {
    if (!foreign.has(f.hook)) foreign.set(f.hook, []);
    foreign.get(f.hook).push(f);
  }
  const box = document.getElementById("hooks");
  box.replaceChildren();
  if (byHook.size === 0) box.append(el("p", { class: "muted" }, "no attachments"));
  for (const [hook, members] of [...byHook.entries()].sort()) {
    members.sort((x, y) => ((x.chain && x.chain.position) || 0) - ((y.chain && y.chain.position) || 0) || x.priority - y.priority || x.name.localeCompare(y.name));
    const line = el("div", { class: "pipeline" });
    // Foreign programs in the kernel's order: those ahead of leaf's link
    // first, the rest after leaf's chain.
    const others = foreign.get(hook) || [];
    for (const f of others.filter(f => f.runsBefore)) line.append(foreignBox(f));
    if (others.some(f => f.runsBefore)) line.append(el("span", { class: "sep", title: "then leaf's chain" }, "┆"));
    members.forEach((a, i) => {
      if (i > 0) line.append(el("span", { class: "arrow" }, "→"));
      const c = a.chain || {};
      const dl = el("dl", {},
        el("dt", {}, "order"), el("dd", {}, c.position ? `${c.position}/${c.length}` : "-"),
        el("dt", {}, "priority"), el("dd", {}, c.priority !== undefined ? c.priority : a.priority),
        el("dt", {}, "proceed on"), el("dd", {}, (c.proceedOn || []).join(", ") || "-"),
        el("dt", {}, "program"), el("dd", {}, a.programID || "-"),
        el("dt", {}, "state"), el("dd", {}, a.state));
      if (a.runCount !== undefined) dl.append(el("dt", {}, "runs"), el("dd", {}, a.runCount));
      const avg = avgRun(a);
      if (avg) dl.append(el("dt", {}, "avg time"), el("dd", {}, avg));
      for (const [verdict, n] of verdictCounts(a.name)) {
        dl.append(el("dt", {}, verdict), el("dd", { class: "verdict", "data-verdict": verdict }, n));
      }
      const m = el("div", { class: `member ${a.state}`, "data-name": a.name, "data-position": c.position || 0 },
        el("div", { class: "name" }, a.name), el("div", { class: "muted" }, `${a.package} · ${a.program}`), dl);
      if (canChange() && members.length > 1 && i > 0) {
        m.append(el("button", { onclick: () => moveBefore(a, members[i - 1]), title: "run this one before the previous member" }, "◀ earlier"));
      }
      line.append(m);
    });
    const after = others.filter(f => !f.runsBefore);
    if (after.length) line.append(el("span", { class: "sep", title: "after leaf's chain" }, "┆"));
    for (const f of after) line.append(foreignBox(f));
    box.append(el("div", { class: "hook", "data-hook": hook }, el("h3", {}, `${members[0].hookType} ${hook}`, chainCost(members)), line));
  }
}

// chainCost is the whole chain's run count and average time, from the
// kernel's statistics of the program the hook runs (members of a chain
// have no time of their own).
function chainCost(members) {
  const c = members[0].chain;
  if (!c || members.length < 2 || c.hookRunCount === undefined) return null;
  const avg = c.hookRunCount ? ` · avg ${(c.hookRunTimeNs / c.hookRunCount).toFixed(0)} ns per run` : "";
  return el("span", { class: "muted chain-cost" }, ` — chain: ${c.hookRunCount} runs${avg}`);
}

// foreignBox draws a program someone else attached to one of leaf's
// hooks: leaf does not manage it (secure mode would remove it).
function foreignBox(f) {
  const fate = f.secure ? (f.allowed ? "kept by the allowlist" : "secure mode removes it") : "left in place";
  return el("div", { class: "member foreign", "data-foreign": f.programID, "data-runs-before": f.runsBefore ? "true" : "false" },
    el("div", { class: "name" }, f.name || `program ${f.programID}`),
    el("div", { class: "muted" }, `foreign · ${f.runsBefore ? "runs before leaf's chain" : "runs after leaf's chain"} · ${fate}`),
    el("dl", {},
      el("dt", {}, "program"), el("dd", {}, f.programID),
      el("dt", {}, "link"), el("dd", {}, f.linkID || "-"),
      el("dt", {}, "tag"), el("dd", {}, f.tag || "-")));
}

// lastValue is a series' newest sample.
function lastValue(s) {
  for (let i = s.values.length - 1; i >= 0; i--) if (s.values[i] !== null) return s.values[i];
  return null;
}

// verdictCounts sums, per verdict, the counters the attachment's package
// declares a verdict for (newest sample).
function verdictCounts(name) {
  const out = new Map();
  for (const s of (state.history && state.history.series) || []) {
    if (s.attachment !== name || !s.verdict) continue;
    const v = lastValue(s);
    if (v !== null) out.set(s.verdict, (out.get(s.verdict) || 0) + v);
  }
  return [...out.entries()].sort();
}

// perSecond turns a counter's samples into rates between samples; a
// counter that went down (a reload) leaves a gap.
function perSecond(times, values) {
  const out = [null];
  for (let i = 1; i < values.length; i++) {
    const a = values[i - 1], b = values[i], dt = (times[i] - times[i - 1]) / 1000;
    out.push(a === null || b === null || b < a || dt <= 0 ? null : (b - a) / dt);
  }
  return out;
}

// sparkline draws values as an inline SVG polyline, broken at gaps.
function sparkline(values) {
  const w = 160, h = 36, pad = 2;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("class", "spark");
  const present = values.filter(v => v !== null);
  svg.dataset.points = present.length;
  if (!present.length) return svg;
  const max = Math.max(...present), min = Math.min(0, ...present);
  const tip = document.createElementNS(SVG, "title");
  tip.textContent = `${present.length} samples, from ${fmt(Math.min(...present))} to ${fmt(max)}`;
  svg.append(tip);
  const x = i => values.length === 1 ? w / 2 : pad + (i * (w - 2 * pad)) / (values.length - 1);
  const y = v => h - pad - (max === min ? 0 : ((v - min) * (h - 2 * pad)) / (max - min));
  let pts = [];
  const flush = () => {
    if (pts.length) {
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", pts.join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", "#2271b1");
      line.setAttribute("stroke-width", "1.5");
      svg.append(line);
    }
    pts = [];
  };
  values.forEach((v, i) => { if (v === null) flush(); else pts.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`); });
  flush();
  return svg;
}

function fmt(v) {
  if (v === null || v === undefined) return "-";
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (Math.abs(v) >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

// charts lists what to draw for one attachment: every declared metric
// (counters as their rate), runs per second and, when the kernel
// measures the program's time, its average run time.
function charts(times, series) {
  const out = [];
  let runs = null, runTime = null;
  for (const s of series) {
    if (s.metric === "leaf_program_runs_total") runs = s;
    else if (s.metric === "leaf_program_run_time_seconds_total") runTime = s;
    else if (s.type === "counter") out.push({ s, label: metricLabel(s) + " /s", values: perSecond(times, s.values), total: lastValue(s) });
    else out.push({ s, label: metricLabel(s), values: s.values });
  }
  if (runs) out.push({ s: runs, label: "runs /s", values: perSecond(times, runs.values), total: lastValue(runs) });
  if (runs && runTime) {
    const r = perSecond(times, runs.values), t = perSecond(times, runTime.values);
    out.push({ s: runTime, label: "avg run time ns", values: r.map((n, i) => n && t[i] !== null ? (t[i] / n) * 1e9 : null) });
  }
  return out;
}

// metricLabel names a declared metric without leaf_pkg_ and the suffix
// the chart's "/s" replaces (a rate's samples are its counter's).
function metricLabel(s) { return s.metric.replace(/^leaf_pkg_/, "").replace(/_total$|_per_second$/, ""); }

function drawCharts(h) {
  const box = document.getElementById("charts");
  box.replaceChildren();
  const times = h.times.map(t => new Date(t).getTime());
  document.getElementById("metrics-note").textContent = times.length
    ? `last ${Math.round((times[times.length - 1] - times[0]) / 60000) || "<1"} min, a sample every ${h.interval} s` : "";
  const byAtt = new Map();
  for (const s of h.series) {
    if (!byAtt.has(s.attachment)) byAtt.set(s.attachment, []);
    byAtt.get(s.attachment).push(s);
  }
  if (byAtt.size === 0) box.append(el("p", { class: "muted" }, "no declared metrics yet"));
  for (const [name, series] of byAtt) {
    const row = el("div", { class: "charts", "data-attachment": name }, el("div", { class: "name" }, name));
    for (const c of charts(times, series)) {
      const now = lastValue({ values: c.values });
      row.append(el("figure", { class: "chart", "data-metric": c.s.metric, "data-last": now === null ? "" : now, title: c.s.help || "" },
        sparkline(c.values),
        el("figcaption", {}, `${c.label}: ${fmt(now)}`, c.total !== undefined ? el("span", { class: "muted" }, ` (total ${fmt(c.total)})`) : null)));
    }
    box.append(row);
  }
}

// mergeHistory appends the samples of fresh (the last few) newer than
// what h holds, and drops what falls out of leafd's window, so the page
// reads the whole history once and then only what is new.
function mergeHistory(h, fresh) {
  if (!h) return fresh;
  const last = h.times.length ? Date.parse(h.times[h.times.length - 1]) : -Infinity;
  const idx = fresh.times.map((t, i) => [Date.parse(t), i]).filter(([t]) => t > last).map(([, i]) => i);
  if (!idx.length) return h;
  const key = s => `${s.attachment}\u0000${s.metric}`;
  const held = new Map(h.series.map(s => [key(s), s]));
  const before = h.times.length;
  for (const i of idx) h.times.push(fresh.times[i]);
  for (const s of fresh.series) {
    let o = held.get(key(s));
    if (!o) {
      o = { ...s, values: new Array(before).fill(null) };
      h.series.push(o);
    }
    Object.assign(o, { help: s.help, type: s.type, verdict: s.verdict });
    o.values.length = before;
    for (const i of idx) o.values.push(s.values[i]);
  }
  for (const o of h.series) while (o.values.length < h.times.length) o.values.push(null);
  const drop = Math.max(0, h.times.length - fresh.capacity);
  h.times.splice(0, drop);
  for (const o of h.series) o.values.splice(0, drop);
  h.series = h.series.filter(o => o.values.some(v => v !== null));
  h.series.sort((a, b) => a.attachment.localeCompare(b.attachment) || a.metric.localeCompare(b.metric));
  return h;
}

async function refreshHistory() {
  try {
    const fresh = await api("GET", state.history ? "/v1/history?samples=5" : "/v1/history");
    state.history = mergeHistory(state.history, fresh);
    drawCharts(state.history);
  } catch (e) {
    document.getElementById("charts").replaceChildren(el("p", { class: "error" }, e.message));
  }
}

function days(seconds) {
  const d = seconds / 86400;
  return Math.abs(d) >= 1 ? `${d.toFixed(1)} days` : `${(seconds / 3600).toFixed(1)} hours`;
}

async function loadCerts() {
  const box = document.getElementById("certs");
  try {
    const c = await api("GET", "/v1/certificates");
    box.replaceChildren();
    if (!c.tls) {
      box.append(el("p", { class: "muted" }, "no TLS listener: the API is the unix socket only"));
      return;
    }
    const body = el("tbody");
    for (const x of c.certificates) {
      const left = x.secondsLeft <= 0 ? `expired ${days(-x.secondsLeft)} ago` : days(x.secondsLeft);
      body.append(el("tr", { class: x.warning ? "warn" : "", "data-kind": x.kind },
        el("td", {}, x.kind), el("td", {}, x.subject), el("td", {}, new Date(x.notAfter).toISOString().slice(0, 10)),
        el("td", { class: "left" }, left + (x.warning ? " ⚠" : ""))));
    }
    if (c.clients) {
      const left = (new Date(c.clients.soonestExpiry).getTime() - Date.now()) / 1000;
      body.append(el("tr", { class: c.clients.expiring ? "warn" : "", "data-kind": "clients" },
        el("td", {}, "clients"), el("td", {}, `${c.clients.seen} seen, ${c.clients.expiring} expiring`),
        el("td", {}, new Date(c.clients.soonestExpiry).toISOString().slice(0, 10)), el("td", { class: "left" }, days(left))));
    }
    box.append(el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "kind"), el("th", {}, "subject"), el("th", {}, "expires"), el("th", {}, "left"))), body),
      el("p", { class: "muted" }, `warning window: ${days(c.warningWindow)}`));
  } catch (e) {
    box.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

function drawAttachments(st) {
  const body = document.querySelector("#attachments tbody");
  body.replaceChildren();
  for (const a of st.attachments || []) {
    const signers = (a.signers || []).map(s => `${s.role}${s.keyHint ? " " + s.keyHint : ""}`).join(", ");
    const comp = a.companion ? `${a.companion.state} (pid ${a.companion.pid || "-"}, ${a.companion.restarts} restarts)` : "";
    body.append(el("tr", {},
      el("td", {}, a.name), el("td", {}, a.state + (a.problem ? ": " + a.problem : "")), el("td", {}, a.package),
      el("td", {}, el("code", { title: a.digest || "" }, short(a.digest))), el("td", {}, a.trust || ""),
      el("td", {}, signers), el("td", {}, comp)));
  }
}

// moveBefore gives a the priority just below b's, so it runs first, and
// applies the whole desired state (leafd swaps the chain atomically).
async function moveBefore(a, b) {
  if (state.changing) return;
  state.changing = true;
  try {
    const doc = await api("GET", "/v1/state");
    const atts = (doc.spec && doc.spec.attachments) || [];
    const da = atts.find(x => x.name === a.name), db = atts.find(x => x.name === b.name);
    if (!da || !db) throw new Error("attachment not in the desired state");
    const pb = db.priority !== undefined ? db.priority : b.priority;
    da.priority = pb - 1;
    await api("PUT", "/v1/state", doc);
    await refresh();
  } catch (e) {
    alert(`reorder refused: ${e.message}`);
  } finally {
    state.changing = false;
  }
}

async function refresh() {
  const conn = document.getElementById("conn");
  try {
    const st = await api("GET", "/v1/status");
    state.status = st;
    drawHooks(st);
    drawAttachments(st);
    conn.textContent = "live";
    conn.className = "badge ok";
  } catch (e) {
    conn.textContent = e.status === 401 || e.status === 403 ? "not allowed" : "disconnected";
    conn.className = "badge bad";
  }
}

async function loadPackages() {
  const body = document.querySelector("#packages tbody");
  try {
    const pkgs = await api("GET", "/v1/packages");
    for (const p of pkgs || []) {
      body.append(el("tr", {}, el("td", {}, p.repository), el("td", {}, `${p.name}@${p.version}`), el("td", {}, p.description || "")));
    }
  } catch (e) {
    body.append(el("tr", {}, el("td", { class: "error", colspan: 3 }, e.message)));
  }
}

// followEvents reads the event stream (one JSON object a line) and
// prepends each event; it reconnects after an error.
async function followEvents(since) {
  const list = document.getElementById("events");
  for (;;) {
    try {
      const r = await fetch(`/v1/events?follow=true&since=${since}`);
      if (!r.ok) throw new Error(r.statusText);
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          const ev = JSON.parse(line);
          since = Math.max(since, ev.seq);
          const t = new Date(ev.time);
          list.prepend(el("li", { class: ev.type }, `${t.toLocaleTimeString()} ${ev.type}${ev.kind ? " (" + ev.kind + ")" : ""} ${ev.attachment || ev.hook || ""}: ${ev.message}`));
          while (list.children.length > 200) list.lastChild.remove();
        }
      }
    } catch (_) { /* leafd restarting or stream cut: retry */ }
    await new Promise(res => setTimeout(res, 2000));
  }
}

async function main() {
  try {
    const who = await api("GET", "/v1/whoami");
    state.role = who.role;
    document.getElementById("who").textContent = `${who.subject} (${who.role}, via ${who.via})`;
    document.body.dataset.role = who.role;
  } catch (e) {
    document.getElementById("who").textContent = `not allowed: ${e.message}`;
  }
  await refreshHistory();
  await refresh();
  loadPackages();
  loadCerts();
  followEvents(0);
  setInterval(refresh, 1000);
  setInterval(refreshHistory, 2000);
  setInterval(loadCerts, 60000);
}

main();
