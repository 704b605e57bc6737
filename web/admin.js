// admin.js - the admin page (GET /admin): the scaling limits in force, read
// from and written to /api/scaling (reading needs a viewer token, a change
// an admin token), the scheduler's slots, the job queue and the outbox from
// /api/status, the running and queued sessions from /api/digest, and the
// model budgets with today's spend, read from and written to /api/budgets
// (the same roles: a viewer reads, an admin changes).
"use strict";

(() => {
  const { api, esc, duration } = farm;
  const FIELDS = ["max_agents", "max_per_repo", "min_warm", "idle_timeout_s"];
  const BUDGETS = ["session_usd", "repo_daily_usd", "daily_usd"];
  let current = {};
  let budgets = {};

  // Dollars as a person reads them: cents, or more digits for the small
  // amounts a test budget or one cheap call comes to.
  function usd(v) {
    v = Number(v) || 0;
    if (v === 0) return "$0";
    if (Math.abs(v) < 0.01) return "$" + Number(v.toPrecision(2));
    return "$" + v.toFixed(2);
  }

  function ofBudget(spent, limit) {
    if (!limit) return "no budget";
    const pct = Math.round((100 * spent) / limit);
    return pct + "% of " + usd(limit);
  }

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

  function renderSpend(b) {
    const box = document.getElementById("spend");
    const sp = b.spend || {};
    const repos = Object.entries(sp.repos || {}).sort((x, y) => y[1] - x[1] || x[0].localeCompare(y[0]));
    let html = '<dl class="facts">' + dl([
      ["day", (sp.day || "today") + " (UTC)"],
      ["all repositories", usd(sp.daily_usd) + " · " + ofBudget(sp.daily_usd || 0, b.daily_usd)],
    ]) + "</dl>";
    if (repos.length) {
      const lim = b.repo_daily_usd;
      html += '<table class="spend"><caption class="hint">Per repository (its daily budget: ' +
        esc(lim ? usd(lim) : "none") + ")</caption>" +
        '<thead><tr><th scope="col">Repository</th><th scope="col" class="num">Spent</th>' +
        (lim ? '<th scope="col" class="num">Of its budget</th>' : "") + "</tr></thead><tbody>" +
        repos.map(([repo, v]) => '<tr><th scope="row">' + esc(repo) + '</th><td class="num">' + esc(usd(v)) +
          "</td>" + (lim ? '<td class="num">' + esc(Math.round((100 * v) / lim) + "%") + "</td>" : "") +
          "</tr>").join("") + "</tbody></table>";
    } else {
      html += '<p class="empty">No model call has been paid for today.</p>';
    }
    box.innerHTML = html;
  }

  // The budgets and the spend; the inputs too unless only the spend is to
  // be refreshed (the periodic refresh leaves what a person is typing alone).
  async function loadBudgets(inputs = true) {
    const st = document.getElementById("budgets-status");
    try {
      budgets = await api("GET", "/api/budgets");
      for (const f of BUDGETS) {
        const input = document.getElementById(f);
        if (inputs) input.value = budgets[f];
        const live = budgets.source && budgets.source[f] === "live";
        input.title = live ? "set here or with `farm budget` (kept in the store)" : "from the config file";
        document.getElementById(f + "-source").textContent =
          (budgets[f] ? "" : "no budget, ") + (live ? "set here" : "from the config");
        document.querySelector('[data-clear="' + f + '"]').hidden = !live;
      }
      renderSpend(budgets);
    } catch (e) {
      farm.status(st, "Could not read the budgets: " + e.message, "error");
      document.getElementById("spend").innerHTML = '<p class="empty">Could not read the spend: ' + esc(e.message) + "</p>";
    }
  }

  async function saveBudgets(change) {
    const st = document.getElementById("budgets-status");
    try {
      await api("PATCH", "/api/budgets", change, { askOn403: true });
      farm.status(st, "Saved: " + Object.entries(change).map(([k, v]) =>
        k + (v === null ? " back to the config's value" : " = " + usd(v))).join(", ") + ".", "ok");
      await loadBudgets();
    } catch (e) {
      farm.status(st, "Not saved: " + e.message, "error");
      const field = e.body && e.body.field;
      if (field && document.getElementById(field)) document.getElementById(field).focus();
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
    document.getElementById("budgets-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const st = document.getElementById("budgets-status");
      const change = {};
      for (const f of BUDGETS) {
        const raw = document.getElementById(f).value.trim();
        const v = Number(raw);
        if (raw === "" || !Number.isFinite(v) || v < 0) {
          farm.status(st, f.replace(/_/g, " ") + ": an amount in dollars, 0 or more (0: no budget)", "error");
          document.getElementById(f).focus();
          return;
        }
        if (v !== budgets[f]) change[f] = v;
      }
      if (!Object.keys(change).length) {
        farm.status(st, "Nothing changed.");
        return;
      }
      await saveBudgets(change);
    });
    for (const b of document.querySelectorAll("[data-clear]"))
      b.addEventListener("click", () => saveBudgets({ [b.dataset.clear]: null }));
    loadScaling().then(() => loadBudgets()).then(loadStatus).then(loadWork);
    setInterval(() => { loadStatus(); loadWork(); loadBudgets(false); }, 5000);
  });
})();
