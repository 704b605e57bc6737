// admin.js - the admin page (GET /admin): the scaling settings read from
// and written to /api/scaling (admin token), the slots and the queue as the
// scaling answer reports them, and the running and queued sessions from
// /api/digest.
"use strict";

(() => {
  const { api, esc, duration } = farm;
  const FIELDS = ["max_agents", "max_per_repo", "min_warm", "idle_timeout_s"];
  let loaded = null;

  // The limits may come flat or under "limits"; either is accepted.
  function limitsOf(d) {
    return d && typeof d.limits === "object" && d.limits ? d.limits : d || {};
  }

  function renderFacts(d) {
    const dl = document.getElementById("slots");
    const rows = [];
    const walk = (obj, prefix) => {
      for (const [k, v] of Object.entries(obj || {})) {
        if (FIELDS.includes(k) && !prefix) continue;
        if (v && typeof v === "object" && !Array.isArray(v)) walk(v, prefix + k + " ");
        else rows.push("<dt>" + esc((prefix + k).replace(/_/g, " ")) + "</dt><dd>" +
                       esc(Array.isArray(v) ? v.length + " entries" : v) + "</dd>");
      }
    };
    walk(d, "");
    dl.innerHTML = rows.join("") || "<dt>slots</dt><dd>not reported by this farm</dd>";
  }

  async function loadScaling() {
    const st = document.getElementById("scaling-status");
    try {
      const d = await api("GET", "/api/scaling", undefined, { askOn403: true });
      loaded = limitsOf(d);
      for (const f of FIELDS) {
        const v = loaded[f];
        document.getElementById(f).value = typeof v === "object" && v ? v.value : v;
      }
      renderFacts(d);
      farm.status(st, "");
    } catch (e) {
      renderFacts(null);
      farm.status(st, e.status === 404 ? "This farm does not serve /api/scaling." : "Could not read the settings: " + e.message, "error");
    }
  }

  async function loadWork() {
    try {
      const d = await api("GET", "/api/digest?since=1h");
      const list = (d.running || []).concat(d.queued || []);
      document.getElementById("work").innerHTML = list.length ? list.map((s) =>
        '<article class="row" data-state="' + esc(s.state) + '"><h3><a href="/sessions/' + esc(s.id) + '">' + esc(s.title || "(untitled)") + "</a></h3>" +
        '<p class="meta">' + esc(s.repo) + "#" + esc(s.number) + " " + farm.stateBadge(s.state) +
        (s.step ? ' <span class="sep">·</span> ' + esc(s.step.name) : "") + ' <span class="sep">·</span> ' +
        duration((Date.now() - Date.parse(s.created)) / 1000) + "</p></article>").join("")
        : '<p class="empty">Nothing runs and nothing is queued.</p>';
    } catch (e) {
      document.getElementById("work").innerHTML = '<p class="empty">Could not read the queue: ' + esc(e.message) + "</p>";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("scaling-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const st = document.getElementById("scaling-status");
      const change = {};
      for (const f of FIELDS) {
        const v = parseInt(document.getElementById(f).value, 10);
        if (Number.isNaN(v)) { farm.status(st, f + ": a whole number, please", "error"); return; }
        change[f] = v;
      }
      try {
        await api("PUT", "/api/scaling", change, { askOn403: true });
        farm.status(st, "Saved.", "ok");
        loadScaling();
      } catch (e) {
        farm.status(st, "Not saved: " + e.message, "error");
      }
    });
    loadScaling().then(loadWork);
    setInterval(loadWork, 5000);
  });
})();
