// leaf console: reads leafd's API (the same endpoints and roles as the
// CLI) and redraws every second. No framework, no build step.
"use strict";

const state = { role: "", status: null, changing: false };

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
  const box = document.getElementById("hooks");
  box.replaceChildren();
  if (byHook.size === 0) box.append(el("p", { class: "muted" }, "no attachments"));
  for (const [hook, members] of [...byHook.entries()].sort()) {
    members.sort((x, y) => ((x.chain && x.chain.position) || 0) - ((y.chain && y.chain.position) || 0) || x.priority - y.priority || x.name.localeCompare(y.name));
    const line = el("div", { class: "pipeline" });
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
      const m = el("div", { class: `member ${a.state}`, "data-name": a.name, "data-position": c.position || 0 },
        el("div", { class: "name" }, a.name), el("div", { class: "muted" }, `${a.package} · ${a.program}`), dl);
      if (canChange() && members.length > 1 && i > 0) {
        m.append(el("button", { onclick: () => moveBefore(a, members[i - 1]), title: "run this one before the previous member" }, "◀ earlier"));
      }
      line.append(m);
    });
    box.append(el("div", { class: "hook", "data-hook": hook }, el("h3", {}, `${members[0].hookType} ${hook}`), line));
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
  await refresh();
  loadPackages();
  followEvents(0);
  setInterval(refresh, 1000);
}

main();
