// admin.js - the admin page (GET /admin): the scaling limits in force, read
// from and written to /api/scaling (reading needs a viewer token, a change
// an admin token), the scheduler's slots, the job queue and the outbox from
// /api/status, and the running and queued sessions from /api/digest.
"use strict";

(() => {
  const { api, esc, duration } = farm;
  const FIELDS = ["max_agents", "max_per_repo", "min_warm", "idle_timeout_s"];
  let current = {};

  function dl(rows) {
    return rows.map(([k, v]) => "<dt>" + esc(k) + "</dt><dd>" + esc(v) + "</dd>").join("");
  }

  async function loadScaling() {
    const st = document.getElementById("scaling-status");
    try {
      current = await api("GET", "/api/scaling");
      for (const f of FIELDS) {
        const input = document.getElementById(f);
        input.value = current[f];
        const src = current.source && current.source[f];
        input.title = src === "setting" ? "set here (kept in the store)" : "from the config file";
        const note = document.getElementById(f + "-source");
        if (note) note.textContent = src === "setting" ? "set here" : "from the config";
      }
    } catch (e) {
      farm.status(st, "Could not read the settings: " + e.message, "error");
    }
  }

  async function loadStatus() {
    const box = document.getElementById("slots");
    try {
      const s = await api("GET", "/api/status");
      const sc = s.scheduler || {}, jobs = s.jobs || {}, ob = s.outbox || {};
      box.innerHTML = dl([
        ["scheduler", sc.running ? "running" : "not running in this process"],
        ["slots", (sc.slots || 0) + " (" + (sc.busy || 0) + " busy, " + (sc.idle || 0) + " idle, " + (sc.warm || 0) + " warm)"],
        ["jobs queued", jobs.queued || 0],
        ["jobs running", jobs.leased || 0],
        ["jobs done / failed", (jobs.done || 0) + " / " + (jobs.failed || 0)],
        ["jobs started here", sc.jobs_started || 0],
        ["waits for memory", sc.admission_waits || 0],
        ["outbox pending", (ob.pending || 0) + (ob.retries ? " (" + ob.retries + " retries)" : "")],
        ["outbox sent / failed", (ob.sent || 0) + " / " + (ob.failed || 0)],
      ]);
    } catch (e) {
      box.innerHTML = dl([["status", "could not be read: " + e.message]]);
    }
  }

  async function loadWork() {
    try {
      const d = await api("GET", "/api/digest?since=1h");
      const list = (d.running || []).concat(d.queued || []);
      document.getElementById("work").innerHTML = list.length ? list.map((s) =>
        '<article class="row" data-state="' + esc(s.state) + '"><h3><a href="/sessions/' + esc(s.id) + '">' +
        esc(s.title || "(untitled)") + "</a></h3>" +
        '<p class="meta">' + esc(s.repo) + "#" + esc(s.number) + " " + farm.stateBadge(s.state) +
        (s.step ? ' <span class="sep" aria-hidden="true">·</span> <span class="step">' + esc(s.step.name) + "</span>" : "") +
        ' <span class="sep" aria-hidden="true">·</span> ' + duration((Date.now() - Date.parse(s.created)) / 1000) +
        "</p></article>").join("")
        : '<p class="empty">Nothing runs and nothing is queued.</p>';
    } catch (e) {
      document.getElementById("work").innerHTML = '<p class="empty">Could not read the queue: ' + esc(e.message) + "</p>";
    }
    document.body.dataset.loaded = "1";
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("scaling-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const st = document.getElementById("scaling-status");
      const change = {};
      for (const f of FIELDS) {
        const raw = document.getElementById(f).value.trim();
        if (!/^[0-9]+$/.test(raw)) {
          farm.status(st, f.replace(/_/g, " ") + ": a whole number, please", "error");
          document.getElementById(f).focus();
          return;
        }
        const v = parseInt(raw, 10);
        if (v !== current[f]) change[f] = v;
      }
      if (!Object.keys(change).length) {
        farm.status(st, "Nothing changed.");
        return;
      }
      try {
        await api("PUT", "/api/scaling", change, { askOn403: true });
        farm.status(st, "Saved: " + Object.entries(change).map(([k, v]) => k + " = " + v).join(", ") + ".", "ok");
        await loadScaling();
        loadStatus();
      } catch (e) {
        farm.status(st, "Not saved: " + e.message, "error");
        const field = e.body && e.body.field;
        if (field && document.getElementById(field)) document.getElementById(field).focus();
      }
    });
    loadScaling().then(loadStatus).then(loadWork);
    setInterval(() => { loadStatus(); loadWork(); }, 5000);
  });
})();
