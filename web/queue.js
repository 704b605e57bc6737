// queue.js - the review queue (GET /): PRs waiting for review, questions
// waiting, failures, what runs now and what is queued, from GET
// /api/digest. Refreshed every few seconds; elapsed times tick every second.
// Rows are built as one HTML string per section, so 500 sessions render in
// one layout pass.
"use strict";

(() => {
  const { api, esc, safeUrl, duration, stateBadge, testsBadge, diffstat } = farm;
  const REFRESH_MS = 5000;
  let last = "";
  let timer = null;

  function issueLink(s) {
    const label = esc(s.repo) + "#" + esc(s.number);
    const u = safeUrl(s.url);
    return u ? '<a href="' + esc(u) + '" rel="noreferrer">' + label + "</a>" : label;
  }

  // The PR: a link to its page, or for a local one (no page) its branch.
  function prLink(s) {
    const what = (s.pr_draft ? "draft PR #" : "PR #") + esc(s.pr_number);
    if (farm.localPr(s))
      return '<span class="pr local" title="a pull request of the local tracker: farm issue show ' + esc(s.pr_number) +
        ' prints where its branch is">local ' + what + "</span>" +
        (s.branch ? ' <span class="branch">branch <code>' + esc(s.branch) + "</code></span>" : "");
    const u = safeUrl(s.pr_url);
    if (!u) return "";
    return '<a class="pr" href="' + esc(u) + '" rel="noreferrer">' + what + "</a>";
  }

  function row(s, section) {
    const page = "/sessions/" + encodeURIComponent(s.id);
    const meta = [issueLink(s), stateBadge(s.state)];
    if (s.pr_draft) meta.push(farm.draftBadge(s));
    const facts = [];
    if (section === "review" || section === "done" || section === "failed") {
      facts.push(testsBadge(s.tests));
      if (s.diffstat) facts.push(diffstat(s.diffstat));
    }
    if (section === "running" && s.step) {
      facts.push('<span class="step">' + esc(s.step.name) + (s.step.status === "started" ? "" : " " + esc(s.step.status)) +
                 "</span>");
    }
    if (section === "running" || section === "queued") {
      facts.push('<span class="elapsed" data-created="' + esc(s.created) + '" title="elapsed since the issue was taken">' +
                 duration((Date.now() - Date.parse(s.created)) / 1000) + "</span>");
    } else {
      facts.push('<span title="from the issue to the end of the latest run">' + duration(s.duration_s) + "</span>");
    }
    if (s.runs > 1 || s.rounds > 1)
      facts.push('<span title="runs (first, revisions, answers) and test rounds of the latest run">' +
                 esc(s.runs) + " run" + (s.runs === 1 ? "" : "s") +
                 (s.rounds ? ", " + esc(s.rounds) + " round" + (s.rounds === 1 ? "" : "s") : "") + "</span>");
    const pr = prLink(s);
    if (pr) facts.push(pr);
    let extra = "";
    if (s.pr_draft)
      extra = '<p class="draft-reason"><strong>Draft:</strong> ' +
              esc(s.pr_draft_reason || "the pull request is not ready to merge") + "</p>";
    if (s.reason) extra = '<p class="reason"><strong>Reason:</strong> ' + esc(s.reason) + "</p>";
    if (s.question)
      extra = '<p class="question"><strong>Asks:</strong> ' + esc(s.question) +
              ' <a href="' + page + '#answer">Answer</a></p>';
    if (s.plan)
      extra = '<p class="plan"><strong>Plan:</strong> <span class="text">' +
              esc(s.plan.length > 300 ? s.plan.slice(0, 300) + "…" : s.plan) + "</span>" +
              '<span class="next hint">Comment <code>/farm approve</code> on the issue to start, or ask for another plan.</span></p>';
    return '<article class="row" data-id="' + esc(s.id) + '" data-state="' + esc(s.state) + '"' +
      (s.pr_draft ? ' data-draft="1"' : "") + ">" +
      '<h3><a href="' + page + '">' + esc(s.title || "(untitled issue)") + "</a></h3>" +
      '<p class="meta">' + meta.join(" ") + '<span class="sep" aria-hidden="true">·</span>' +
      facts.join('<span class="sep" aria-hidden="true">·</span>') + "</p>" + extra + "</article>";
  }

  function render(d) {
    const lists = {
      review: d.review || [], waiting: d.waiting || [], plans: d.plans || [], failed: d.failed || [],
      running: d.running || [], queued: d.queued || [],
      done: (d.done || []).concat(d.cancelled || []).sort((a, b) => b.id - a.id),
    };
    const empty = {
      review: "No pull requests are waiting for review.",
      waiting: "No session waits for an answer.",
      plans: "No plan waits for approval.",
      failed: "No failures in this window.",
      running: "Nothing runs right now.",
      queued: "Nothing is queued.",
      done: "Nothing else ended in this window.",
    };
    for (const name of Object.keys(lists)) {
      const el = document.querySelector('[data-list="' + name + '"]');
      const list = lists[name];
      el.innerHTML = list.length ? list.map((s) => row(s, name)).join("")
                                 : '<p class="empty">' + empty[name] + "</p>";
      document.querySelector('[data-count="' + name + '"]').textContent = list.length ? "(" + list.length + ")" : "";
    }
    const t = d.totals || {};
    document.getElementById("summary").textContent =
      (t.review || 0) + " waiting for review · " + (t.waiting || 0) + " waiting for an answer · " +
      (t.plans || 0) + (t.plans === 1 ? " plan" : " plans") + " waiting for approval · " +
      (t.failed || 0) + " failed · " + (t.running || 0) + " running · " + (t.queued || 0) +
      " queued · agent time " + duration(t.agent_seconds) + " · cost $" + Number(t.cost || 0).toFixed(2);
  }

  function tick() {
    for (const el of document.querySelectorAll(".elapsed[data-created]")) {
      el.textContent = duration((Date.now() - Date.parse(el.dataset.created)) / 1000);
    }
  }

  async function load() {
    const since = document.getElementById("since").value;
    const st = document.getElementById("status");
    try {
      const t0 = performance.now();
      const d = await api("GET", "/api/digest?since=" + encodeURIComponent(since));
      const key = JSON.stringify(d, (k, v) => (k === "until" || k === "duration_s" ? undefined : v));
      if (key !== last) {
        render(d);
        last = key;
        document.body.dataset.renderMs = String(Math.round(performance.now() - t0));
      }
      document.body.dataset.loaded = "1";
      farm.status(st, "");
    } catch (e) {
      farm.status(st, "Could not load the queue: " + e.message + ". Trying again…", "error");
    }
    clearTimeout(timer);
    timer = setTimeout(load, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const sel = document.getElementById("since");
    const saved = localStorage.getItem("farm.since");
    if (saved && [...sel.options].some((o) => o.value === saved)) sel.value = saved;
    sel.addEventListener("change", () => {
      localStorage.setItem("farm.since", sel.value);
      last = "";
      load();
    });
    document.getElementById("window-form").addEventListener("submit", (e) => e.preventDefault());
    load();
    setInterval(tick, 1000);
  });
})();
