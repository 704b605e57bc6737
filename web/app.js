// app.js - what every page of the farm's web UI shares: the API token
// (asked for once, when the server answers 401, and kept in localStorage),
// JSON requests with it, escaping, and the small formatters the pages use.
// Plain JavaScript, no build step, no dependencies.
"use strict";

// No page of the farm works inside a frame: a framing site could trick a
// member into clicking "Send" or "Cancel" (a meta CSP cannot say
// frame-ancestors, so the page hides itself).
if (window.top !== window.self) document.documentElement.style.display = "none";

const farm = (() => {
  const TOKEN_KEY = "farm.token";
  const STATES = ["queued", "preparing", "running", "testing", "pushing", "review", "revising",
                  "waiting", "awaiting_approval", "done", "failed", "cancelled"];

  function token() {
    try { return localStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }
  function setToken(t) {
    try {
      if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* private mode: the token lasts for the page */ }
    memo = t;
  }
  let memo = null;
  function currentToken() { return memo !== null ? memo : token(); }

  function headers(extra) {
    const h = Object.assign({ "Accept": "application/json" }, extra || {});
    const t = currentToken();
    if (t) h["Authorization"] = "Bearer " + t;
    return h;
  }

  // The token dialog: one form, shown when the server answers 401 (or 403
  // for a write that needs a stronger role). Resolves when a token is saved.
  let asking = null;
  function askToken(why) {
    if (asking) return asking;
    const dlg = document.getElementById("token-dialog");
    if (!dlg) return Promise.reject(new Error("no token dialog on this page"));
    dlg.querySelector(".why").textContent = why || "This farm needs an API token.";
    const input = dlg.querySelector("input");
    input.value = "";
    asking = new Promise((resolve) => {
      const form = dlg.querySelector("form");
      form.onsubmit = (ev) => {
        ev.preventDefault();
        const v = input.value.trim();
        if (!v) return;
        setToken(v);
        dlg.close();
        asking = null;
        resolve(v);
      };
      dlg.querySelector(".cancel").onclick = () => { dlg.close(); };
      dlg.addEventListener("close", () => { asking = null; }, { once: true });
      if (typeof dlg.showModal === "function") dlg.showModal(); else dlg.setAttribute("open", "");
      input.focus();
    });
    return asking;
  }

  class HttpError extends Error {
    constructor(status, body) {
      super((body && (body.error + (body.hint ? " (" + body.hint + ")" : ""))) || ("HTTP " + status));
      this.status = status;
      this.body = body;
    }
  }

  // A JSON request to the farm's API; asks for a token on 401 (and on 403
  // when allowed) and tries again once it has one.
  async function api(method, path, body, opts) {
    opts = opts || {};
    for (let attempt = 0; ; attempt++) {
      const init = { method, headers: headers(body !== undefined ? { "Content-Type": "application/json" } : {}) };
      if (body !== undefined) init.body = JSON.stringify(body);
      if (opts.signal) init.signal = opts.signal;
      const r = await fetch(path, init);
      let data = null;
      const text = await r.text();
      try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text.slice(0, 200) }; }
      if ((r.status === 401 || (r.status === 403 && opts.askOn403)) && attempt < 3) {
        await askToken(r.status === 401
          ? "The farm answered 401: give an API token (viewer or better)."
          : "The farm answered 403: " + ((data && data.hint) || "this needs a stronger token."));
        continue;
      }
      if (!r.ok) throw new HttpError(r.status, data);
      return data;
    }
  }

  function esc(s) {
    return String(s === null || s === undefined ? "" : s)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  // Only http(s) links reach an href.
  function safeUrl(u) {
    return typeof u === "string" && /^https?:\/\//i.test(u) ? u : null;
  }

  function duration(secs) {
    secs = Math.max(0, Math.floor(secs || 0));
    if (secs >= 86400) return Math.floor(secs / 86400) + "d " + Math.floor(secs / 3600) % 24 + "h";
    if (secs >= 3600) return Math.floor(secs / 3600) + "h " + String(Math.floor(secs / 60) % 60).padStart(2, "0") + "m";
    if (secs >= 60) return Math.floor(secs / 60) + "m " + String(secs % 60).padStart(2, "0") + "s";
    return secs + "s";
  }

  function ago(iso) {
    if (!iso) return "";
    const s = (Date.now() - Date.parse(iso)) / 1000;
    return duration(s) + " ago";
  }

  function timeOf(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function stateBadge(state) {
    // "awaiting_approval" is a contract's name; a person reads words
    return '<span class="badge state-' + esc(state) + '">' + esc(String(state || "").replace(/_/g, " ")) + "</span>";
  }

  function testsBadge(tests) {
    if (tests === "passed") return '<span class="badge ok" title="tests passed">✓ tests passed</span>';
    if (tests === "failed") return '<span class="badge bad" title="tests failed">✗ tests failed</span>';
    return '<span class="muted">no tests yet</span>';
  }

  // A draft pull request (pr_draft, with pr_draft_reason saying why, e.g.
  // "the tests still fail") is not a success: a badge that says so, and the
  // reason beside it when asked for.
  function draftBadge(s) {
    if (!s || !s.pr_draft) return "";
    return '<span class="badge draft" title="' + esc(s.pr_draft_reason ? "draft: " + s.pr_draft_reason : "draft pull request") +
      '">draft</span>';
  }

  // A pull request of the local tracker (local://REPO/pulls/N) has no web
  // page: what a person needs is its branch, in the repository's clone.
  function localPr(s) {
    return !!s && typeof s.pr_url === "string" && /^local:\/\//i.test(s.pr_url);
  }

  // The commands that show a local pull request's change: `farm issue show`
  // prints the branch and the clone it lives in (the session's JSON names
  // the clone only when it carries clone_url).
  function localPrCommands(s) {
    const clone = s.clone_url || "<clone_url of " + (s.repo || "the repository") + ">";
    return "farm issue show " + s.pr_number + "\n" +
      "git fetch " + clone + " " + (s.branch || "<branch>") + "\n" +
      "git log -p main..FETCH_HEAD";
  }

  function diffstat(ds) {
    if (!ds) return '<span class="muted">—</span>';
    return '<span class="diffstat" title="' + esc(ds.files) + " files changed, " + esc(ds.insertions) +
      " insertions, " + esc(ds.deletions) + ' deletions">' + esc(ds.files) + (ds.files === 1 ? " file " : " files ") +
      '<span class="ins">+' + esc(ds.insertions) + '</span> <span class="del">−' + esc(ds.deletions) + "</span></span>";
  }

  function status(el, text, kind) {
    if (!el) return;
    el.textContent = text || "";
    el.className = "status" + (kind ? " " + kind : "");
  }

  // The sign-out link in the header forgets the token.
  document.addEventListener("DOMContentLoaded", () => {
    const out = document.getElementById("forget-token");
    if (out) out.addEventListener("click", (ev) => {
      ev.preventDefault();
      setToken("");
      location.reload();
    });
  });

  return { api, askToken, token: currentToken, setToken, esc, safeUrl, duration, ago, timeOf,
           stateBadge, testsBadge, draftBadge, localPr, localPrCommands, diffstat, status, STATES, HttpError };
})();
