// tunesched dashboard: polls the daemon's JSON API (and its server-drawn SVG) every second.
// Text from the API goes into the page as text nodes only; SVG comes from the daemon, which
// escapes every user-given string in it.
"use strict";

const PARAMS = new URLSearchParams(location.search);
const REFRESH_MS = Math.max(200, Number(PARAMS.get("refresh") || 1000));
const TOKEN_KEY = "tunesched-token";

// a token handed over in the URL fragment (#token=...) is kept for this tab, then dropped
// from the address bar (fragments never reach the server or its logs)
function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}
takeToken();
window.addEventListener("hashchange", takeToken);

class NeedToken extends Error {}

async function api(path, asText) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const reply = await fetch(path, { headers, cache: "no-store" });
  if (reply.status === 401) {
    showLogin();
    throw new NeedToken("this scheduler wants a token");
  }
  if (!reply.ok) {
    let message = reply.statusText;
    try { message = (await reply.json()).error; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return asText ? reply.text() : reply.json();
}

function showLogin() {
  const box = document.getElementById("login");
  if (box.classList.contains("shown")) return;
  box.classList.add("shown");
  box.querySelector("form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, box.querySelector("input").value.trim());
    box.classList.remove("shown");
  });
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "href") node.href = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function us(v) {
  if (v === null || v === undefined || v <= 0) return "-";
  return v >= 1000 ? (v / 1000).toFixed(3) + " ms" : v.toFixed(1) + " us";
}
function seconds(s) {
  if (s === null || s === undefined || s < 0) return "-";
  if (s < 90) return Math.round(s) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function clock(t) { return t ? new Date(t * 1000).toLocaleTimeString() : "-"; }

function table(id, headers, rows, empty) {
  const t = el("table", { id }, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))));
  const body = el("tbody");
  for (const row of rows) body.append(row);
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: headers.length, class: "empty" }, empty)));
  t.append(body);
  return t;
}

function replace(id, node) {
  const old = document.getElementById(id);
  if (old) old.replaceWith(node);
}

function progress(done, budget) {
  const pct = budget ? Math.min(100, (100 * done) / budget) : 0;
  const bar = el("span", { class: "bar" }, el("span"));
  bar.firstChild.style.width = pct.toFixed(1) + "%";
  return el("span", {}, bar, `${done}/${budget}`);
}

function stateCell(job) {
  return el("td", { class: `state state-${job.state}` }, job.state);
}

// ------------------------------------------------------------------- pages
const PAGES = {
  async jobs() {
    const { jobs } = await api("/api/jobs");
    const rows = jobs.map((j) => el("tr", { "data-job": j.job_id },
      el("td", {}, el("a", { href: "/jobs/" + j.job_id }, j.job_id)),
      el("td", {}, j.name), el("td", {}, j.user), stateCell(j),
      el("td", { class: "stage" }, j.stage || "-"),
      el("td", { class: "trials" }, progress(j.trials_done, j.trial_budget)),
      el("td", { class: "num best" }, us(j.best_latency_us)),
      el("td", { class: "num" }, us(j.latency_goal_us)),
      el("td", { class: "num eta" }, j.state === "queued" || j.state === "running" ? seconds(j.eta_s) : "-"),
      el("td", {}, j.host_id || "-"),
      el("td", { class: "note" }, j.error || j.waiting || "")));
    replace("jobs", table("jobs", ["job", "name", "user", "state", "stage", "trials",
      "best", "goal", "ETA", "host", "note"], rows, "no jobs yet: submit one with `tunesched submit`"));
  },

  async job() {
    const id = location.pathname.split("/").pop();
    const [j, curve] = await Promise.all([api("/api/jobs/" + id), api(`/api/jobs/${id}/curve.svg`, true)]);
    document.title = `${j.name} · tunesched`;
    document.getElementById("title").textContent = `${j.name} (${j.job_id})`;
    const facts = [["state", j.state], ["stage", j.stage || "-"], ["round", j.round],
      ["trials", `${j.trials_done} / ${j.trial_budget}`], ["best (estimate)", us(j.best_latency_us)],
      ["untuned → tuned", `${us(j.untuned_us)} → ${us(j.tuned_us)}`],
      ["latency goal", us(j.latency_goal_us)], ["ETA", j.state === "running" || j.state === "queued" ? seconds(j.eta_s) : "-"],
      ["model", j.model], ["target", JSON.stringify(j.target)], ["user", j.user],
      ["host", j.host_id || "-"], ["tasks", j.tasks],
      ["reused", `${j.reused_records} records for ${j.reused_tasks} tasks`],
      ["submitted", clock(j.submitted_at)], ["finished", clock(j.finished_at)],
      ["note", j.error || j.waiting || "-"]];
    const dl = el("dl", { id: "facts" });
    for (const [k, v] of facts) dl.append(el("dt", {}, k), el("dd", { "data-fact": k }, v));
    replace("facts", dl);
    document.getElementById("curve").innerHTML = curve;
    replace("tasks", table("tasks", ["task", "weight", "FLOPs", "trials", "best", "verified", "searched"],
      j.task_rows.map((t) => el("tr", {}, el("td", {}, t.name), el("td", { class: "num" }, t.weight),
        el("td", { class: "num" }, t.flops.toExponential(2)), el("td", { class: "num" }, t.trials),
        el("td", { class: "num" }, us(t.best_us)), el("td", { class: "num" }, us(t.verified_us)),
        el("td", {}, t.exhausted ? "done" : "yes"))), "no tasks yet (extract has not run)"));
    replace("leases", table("leases", ["lease", "stage", "round", "host", "cores", "gpus", "granted", "ended", "outcome"],
      j.leases.slice().reverse().map((x) => el("tr", {}, el("td", {}, x.lease_id), el("td", {}, x.stage),
        el("td", { class: "num" }, x.round), el("td", {}, x.host_id), el("td", {}, x.cores.join(",")),
        el("td", {}, x.gpus.join(",") || "-"), el("td", {}, clock(x.granted_at)),
        el("td", {}, x.ended_at ? clock(x.ended_at) : "live"), el("td", {}, x.outcome))), "no leases yet"));
  },

  async runners() {
    const data = await api("/api/runners");
    replace("hosts", table("hosts", ["host", "runners", "cores", "GPUs", "foreign load", "live leases"],
      data.hosts.map((h) => el("tr", { "data-host": h.host_id }, el("td", {}, h.host_id),
        el("td", { class: "num" }, `${h.connected}/${h.runners}`), el("td", {}, h.cores.length),
        el("td", {}, h.gpus.length ? h.gpus.join(",") : "-"),
        el("td", { class: "num" }, (100 * h.foreign_load).toFixed(0) + "%"),
        el("td", { class: "num" }, h.leases))), "no runners registered"));
    replace("runners", table("runners", ["runner", "host", "connected", "cores", "GPUs", "memory", "targets", "leases"],
      data.runners.map((r) => el("tr", { "data-runner": r.runner_id }, el("td", {}, r.runner_id),
        el("td", {}, r.host_id), el("td", {}, r.connected ? "yes" : "no"), el("td", {}, r.cores.join(",")),
        el("td", {}, r.gpus.join(",") || "-"), el("td", { class: "num" }, (r.memory_mb / 1024).toFixed(1) + " GiB"),
        el("td", {}, r.target_kinds.join(",")),
        el("td", {}, r.leases.map((x) => `${x.label} ${x.stage}`).join("; ") || "-"))), "no runners registered"));
  },

  async timeline() {
    const window_s = document.getElementById("window").value;
    document.getElementById("gantt").innerHTML = await api(`/api/timeline.svg?window=${window_s}`, true);
  },
};

let refreshes = 0;
async function refresh() {
  const page = document.body.dataset.page;
  const status = document.getElementById("status");
  try {
    await PAGES[page]();
    refreshes += 1;
    document.body.dataset.refreshes = String(refreshes);
    status.textContent = "updated " + new Date().toLocaleTimeString();
    status.className = "";
  } catch (e) {
    status.textContent = e.message;
    status.className = "error";
  }
  setTimeout(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const a of document.querySelectorAll("header a[data-page]")) {
    if (a.dataset.page === document.body.dataset.page) a.classList.add("here");
  }
  refresh();
});
