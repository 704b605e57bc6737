// session.js - one session live (GET /sessions/{id}): its log read from the
// durable stream /v1/stream/sessions/{id} with live=sse, through fetch (an
// EventSource cannot send the Authorization header), a state timeline, test
// results, the diff summary, the pull request (a link, or for a local one
// its branch and the git commands to see it; "draft" and why when it is
// one), and the boxes to message the session or answer its question.
//
// Resuming: every control event carries streamNextOffset; after a network
// drop or a server restart the page reconnects from the last one it saw.
// Lines are keyed by their seq (dense from 1) and a seq at or below the
// last one shown is dropped, so no line is lost or shown twice whatever the
// server resends.
//
// Following the log scrolls the log's own box, never the window: the title
// and the state stay where a person looks first.
//
// The agent's transcript (agent_message, tool_call, tool_result,
// file_change, command, error: farm/run/transcript.c via pipeline_exec.c)
// reads as a narrative in the log: what it said, each tool call with its
// summary and, once its result comes, whether it succeeded, the files it
// changed, the commands with their exit codes. Once a session has one, the
// agent's raw output lines are folded away behind the "Raw agent output"
// toggle; without one they stay in the log as they come.
"use strict";

(() => {
  const { api, esc, safeUrl, duration } = farm;
  const id = decodeURIComponent(location.pathname.split("/")[2] || "");
  let offset = "-1";
  let lastSeq = 0;
  let session = null;
  let refreshTimer = null;
  const states = [];       // [{to, ts}] from "state" events
  const tests = [];        // test_result bodies
  const tails = new Map(); // "run/round" -> the end of that test step's output
  let diff = null;
  let openQuestion = null; // {text, seq}
  let step = null;         // {name, status, ts}
  const calls = new Map(); // tool call id -> its log line, for its result
  let rawLines = 0;        // the agent's raw output lines in the log
  const denied = new Map(); // "host:port" -> {reason, count}: the egress proxy refused it

  const FILE_KIND = { add: "added", update: "changed", delete: "deleted" };

  // ---- rendering ---------------------------------------------------------

  function line(ev) {
    const b = ev.body || {};
    switch (ev.kind) {
      case "output": // one line of a command's output (farm/run/pipeline_exec.c)
        return { cls: "out" + (b.stream === "stderr" ? " stderr" : ""),
                 text: typeof b.line === "string" ? b.line : "" };
      case "agent_message":
        return { cls: "agent-say", text: "agent: " + (b.text || "") };
      case "tool_call":
        return { cls: "tool", text: "→ " + (b.tool || "tool") + (b.summary ? " " + b.summary : "") };
      case "tool_result": // shown on its call's line when that was seen
        return { cls: "tool-result " + (b.ok ? "ok" : "bad"),
                 text: "tool call " + (b.ok ? "succeeded" : "failed") };
      case "file_change":
        return { cls: "file", text: "file " + (FILE_KIND[b.kind] || b.kind || "changed") + ": " + (b.path || "?") };
      case "command": {
        const known = typeof b.exit_code === "number";
        return { cls: "cmd " + (known ? (b.exit_code === 0 ? "ok" : "bad") : ""),
                 text: "$ " + (b.command || "") + "  → " + (known ? "exit " + b.exit_code : "exit status unknown") };
      }
      case "error":
        return { cls: b.fatal ? "bad" : "warn",
                 text: (b.fatal ? "the agent failed: " : "the agent warns: ") + (b.message || "") };
      case "transcript_dropped":
        return { cls: "other", text: (b.events || 0) + " more event" + (b.events === 1 ? "" : "s") +
                 " of the agent's transcript not logged" +
                 (b.lines_too_long ? " (" + b.lines_too_long + " output line" + (b.lines_too_long === 1 ? "" : "s") +
                  " too long to read)" : "") };
      case "output_dropped":
        return { cls: "other", text: (b.lines || 0) + " more line" + (b.lines === 1 ? "" : "s") + " of " +
                 (b.step || "the") + " output not logged (" + (b.bytes || 0) + " bytes)" };
      case "step": {
        let t = "step " + (b.step || "?") + " " + (b.status || "");
        if (b.round) t += " (round " + b.round + ")";
        if (b.status === "done" && b.ms !== undefined) t += " in " + duration(b.ms / 1000);
        if (b.status === "done" && b.exit !== undefined) t += ", exit " + b.exit;
        if (b.status === "done" && b.draft) t += ", a draft" + (b.draft_reason ? ": " + b.draft_reason : "");
        if (b.error) t += ": " + b.error;
        return { cls: "step " + (b.status || "") + (b.status === "done" && b.passed === false ? " bad" : ""), text: t };
      }
      case "setup":
        return { cls: "step done", text: b.mode === "restored"
          ? "setup restored from the cache" + (b.warm ? " in a warm slot" : "") + " in " + duration((b.ms || 0) / 1000) +
            (typeof b.files === "number" ? " (" + b.files + " files)" : "")
          : "setup ran in " + duration((b.ms || 0) / 1000) +
            (b.saved === true ? " (kept in the cache)" : b.saved === false ? " (not kept in the cache)" : "") };
      case "egress": { // the sandbox's egress proxy (farm/run/pipeline_egress.c)
        const where = (b.host || "?") + ":" + (b.port || "?");
        const times = b.repeat ? " (" + b.count + " times in all)" : "";
        const who = b.step && b.step !== "agent" ? " (" + b.step + ")" : "";
        return b.decision === "allow"
          ? { cls: "egress ok", text: "network: reached " + where + who + times }
          : { cls: "egress bad", text: "network: denied " + where + who + " — " + (b.reason || "refused") + times };
      }
      case "egress_dropped":
        return { cls: "other", text: (b.connections || 0) + " more connection" + (b.connections === 1 ? "" : "s") +
                 " to other hosts not logged (over " + (b.max_destinations || "the") + " destinations)" };
      case "parked":
        return { cls: "warn", text: (b.kind || "a") + " job parked: " + (b.why || "the issue is on hold") };
      case "unparked":
        return { cls: "run", text: (b.kind || "a") + " job queued again (hold lifted)" };
      case "hold":
      case "unhold":
        return { cls: ev.kind === "hold" ? "warn" : "run",
                 text: (ev.kind === "hold" ? "put on hold" : "hold lifted") + (ev.actor ? " by " + ev.actor : "") };
      case "state":
        return { cls: "state", text: "state " + (b.from || "?") + " → " + (b.to || "?") };
      case "test_result":
        return { cls: b.passed ? "ok" : "bad",
                 text: "tests " + (b.passed ? "passed" : "failed") + " (round " + (b.round || 1) + ", exit " + b.exit + ")" };
      case "message":
        return { cls: "message", text: (b.author || ev.actor || "someone") + ": " + (b.text || "") };
      case "comment":
      case "review":
      case "review_comment":
        return { cls: "message", text: (b.author || ev.actor || "comment") + ": " + (b.body || b.text || "") };
      case "question":
        return { cls: "question", text: "the agent asks: " + (b.question || "") };
      case "answer":
        return { cls: "message", text: "answer" + (b.author ? " from " + b.author : "") + ": " + (b.text || "") };
      case "run_started":
        return { cls: "run", text: "run " + (b.run || "?") + " started (" + (b.kind || "run") + ")" };
      case "run_finished":
        return { cls: "run" + (b.draft ? " draft" : ""), text: "run " + (b.run || "?") + " finished: " + (b.outcome || "?") +
                 (b.reason ? " (" + b.reason + ")" : "") + (b.tests ? ", tests " + b.tests : "") };
      case "pushed":
        return { cls: "run", text: "pushed " + String(b.oid || "").slice(0, 12) + (b.branch ? " to " + b.branch : "") };
      case "pr_opened":
        return { cls: "run", text: "pull request #" + (b.number || "?") + " opened" + (b.url ? ": " + b.url : "") };
      case "tracker_error":
        return { cls: "bad", text: "the tracker refused" + (b.kind ? " a " + b.kind : "") + (b.error ? ": " + b.error : "") };
      case "cancel_requested":
        return { cls: "bad", text: "cancel requested" + (ev.actor ? " by " + ev.actor : "") };
      case "failed":
        return { cls: "bad", text: "failed: " + (b.reason || "") };
      case "triggered":
        return { cls: "run", text: "triggered" + (ev.actor ? " by " + ev.actor : "") +
                 (b.rule ? " (" + b.rule + ")" : b.event ? " (" + b.event + (b.action ? " " + b.action : "") + ")" : "") +
                 (b.agent ? ", agent preset " + b.agent : "") };
      default:
        return { cls: "other", text: ev.kind + (Object.keys(b).length ? " " + JSON.stringify(b) : "") };
    }
  }

  function take(ev) {
    const b = ev.body || {};
    if (ev.kind === "state" && b.to) states.push({ to: b.to, ts: ev.ts });
    if (ev.kind === "test_result") tests.push(b);
    if (ev.kind === "run_finished" && b.diffstat) diff = b.diffstat;
    if (ev.kind === "step" && b.step === "test" && b.status === "done" && b.tail)
      tails.set((b.run || 1) + "/" + (b.round || 1), b.tail);
    if (ev.kind === "question") openQuestion = { text: b.question || "", seq: ev.seq };
    if (ev.kind === "answer" || (ev.kind === "run_started" && openQuestion && ev.seq > openQuestion.seq))
      openQuestion = null;
    if (ev.kind === "step") step = { name: b.step, status: b.status, ts: ev.ts };
    if (ev.kind === "egress" && b.decision === "deny" && b.host) {
      const key = b.host + ":" + b.port;
      const seen = denied.get(key);
      denied.set(key, { reason: b.reason || "refused", count: Math.max(b.count || 1, seen ? seen.count : 0) });
    }
  }

  function append(events) {
    const log = document.getElementById("log");
    const follow = document.getElementById("follow").checked;
    const frag = document.createDocumentFragment();
    let changed = false;
    for (const ev of events) {
      if (typeof ev.seq !== "number" || ev.seq <= lastSeq) continue; // shown already
      lastSeq = ev.seq;
      take(ev);
      const l = line(ev);
      const li = document.createElement("li");
      const b = ev.body || {};
      li.className = "ev " + l.cls;
      li.dataset.seq = String(ev.seq);
      li.dataset.kind = ev.kind;
      if (ev.kind === "output" && b.step === "agent") {
        li.classList.add("agent-raw");
        rawLines++;
      }
      if (TRANSCRIPT.has(ev.kind)) showNarrative();
      if (ev.kind === "tool_call" && b.id) calls.set(b.id, li);
      if (ev.kind === "tool_result" && calls.has(b.id)) {
        const call = calls.get(b.id);
        const mark = document.createElement("span");
        mark.className = "verdict " + (b.ok ? "ok" : "bad");
        mark.textContent = b.ok ? "✓ ok" : "✗ failed";
        call.append(mark);
        call.classList.add(b.ok ? "done-ok" : "done-bad");
        li.classList.add("merged"); // its call's line says it
        calls.delete(b.id);
      }
      const t = document.createElement("time");
      t.dateTime = ev.ts || "";
      t.textContent = ev.ts ? ev.ts.slice(11, 19) : "";
      const span = document.createElement("span");
      span.className = "text";
      span.textContent = l.text;
      li.append(t, span);
      frag.append(li);
      if (ev.kind !== "output") changed = true;
    }
    if (!frag.childNodes.length) return;
    log.append(frag);
    const n = document.getElementById("raw-count");
    if (n) n.textContent = rawLines ? " (" + rawLines + " line" + (rawLines === 1 ? "" : "s") + ")" : "";
    document.body.dataset.lastSeq = String(lastSeq);
    if (follow) log.scrollTop = log.scrollHeight; // the log's box only: never the window
    if (changed) {
      renderFacts();
      scheduleRefresh();
    }
  }

  const TRANSCRIPT = new Set(["agent_message", "tool_call", "tool_result", "file_change", "command", "error"]);

  // The session has a transcript: the narrative reads without the agent's
  // raw output, which the toggle shows again.
  function showNarrative() {
    const sec = document.getElementById("log-section");
    if (sec.classList.contains("narrative")) return;
    sec.classList.add("narrative");
    document.getElementById("raw-toggle").hidden = false;
    sec.classList.toggle("show-raw", document.getElementById("show-raw").checked);
  }

  const PATH = ["queued", "preparing", "running", "testing", "pushing", "review", "done"];

  function renderTimeline() {
    const el = document.getElementById("timeline");
    const cur = session ? session.state : (states.length ? states[states.length - 1].to : "queued");
    const seen = new Map();
    seen.set("queued", session ? session.created : null);
    for (const s of states) seen.set(s.to, s.ts);
    let path = PATH.slice();
    if (seen.has("revising") || cur === "revising") path.splice(path.indexOf("review") + 1, 0, "revising");
    if (seen.has("waiting") || cur === "waiting") {
      // after the last state it came from
      let k = 0;
      path.forEach((p, i) => { if (seen.has(p) && p !== "waiting" && seen.get(p) <= (seen.get("waiting") || "~")) k = i; });
      path.splice(k + 1, 0, "waiting");
    }
    if (cur === "failed" || cur === "cancelled") // only where it went, then how it ended
      path = path.filter((p) => seen.has(p) && p !== cur).concat([cur]);
    el.innerHTML = path.map((p) => {
      const cls = p === cur ? "current" : seen.has(p) ? "past" : "future";
      const when = seen.get(p);
      return '<li class="' + cls + ' st-' + esc(p) + '"' + (p === cur ? ' aria-current="step"' : "") + ">" +
        '<span class="dot" aria-hidden="true"></span><span class="name">' + esc(p) + "</span>" +
        (when ? '<time datetime="' + esc(when) + '">' + esc(when.slice(11, 16)) + "</time>" : "") + "</li>";
    }).join("");
  }

  // Whether the pull request is a draft, and why (the session's pr_draft
  // and pr_draft_reason), or null.
  function draftOf(s) {
    return s && s.pr_number && s.pr_draft ? { reason: s.pr_draft_reason || "" } : null;
  }

  // The pull request: a link, or for a local one its branch and how to see
  // it; a draft says so and why.
  function renderPr(s, draft) {
    const pr = document.getElementById("pr");
    if (!s || !s.pr_number) {
      pr.innerHTML = "";
      return;
    }
    const what = (draft ? "Draft pull request #" : "Pull request #") + esc(s.pr_number);
    const branch = s.branch ? "<code>" + esc(s.branch) + "</code>" : "";
    const reason = draft ? '<p class="draft-reason"><span class="badge draft">draft</span> ' +
      esc(draft.reason || "not ready to merge") + "</p>" : "";
    const u = safeUrl(s.pr_url);
    if (farm.localPr(s)) {
      pr.innerHTML = '<p class="pr-line">Local ' + what.charAt(0).toLowerCase() + what.slice(1) +
        (branch ? ' on branch <span class="branch">' + branch + "</span>" : "") + "</p>" + reason +
        '<p class="hint">The local tracker keeps it as a branch of the repository\'s clone, with no web page. ' +
        "To see the change (<code>farm issue show</code> prints the clone):</p>" +
        '<pre class="cmd"><code>' + esc(farm.localPrCommands(s)) + "</code></pre>";
    } else if (u) {
      pr.innerHTML = '<p class="pr-line"><a href="' + esc(u) + '" rel="noreferrer">' + what + "</a>" +
        (branch ? " on " + branch : "") + "</p>" + reason;
    } else {
      pr.innerHTML = '<p class="pr-line">' + what + (branch ? " on " + branch : "") + "</p>" + reason;
    }
  }

  function renderFacts() {
    renderTimeline();
    const draft = draftOf(session);
    const prog = document.getElementById("progress");
    const final = session && ["done", "failed", "cancelled", "review", "waiting"].includes(session.state);
    if (step && !final) {
      prog.innerHTML = "Step <strong>" + esc(step.name) + "</strong> " + esc(step.status) +
        ' · <span class="elapsed" data-since="' + esc(step.ts) + '">' +
        duration((Date.now() - Date.parse(step.ts)) / 1000) + "</span>";
    } else if (session) {
      prog.textContent = session.state === "waiting" ? "Waiting for an answer to the agent's question."
        : session.state === "review" && draft ? "A draft pull request waits for review" +
          (draft.reason ? ": " + draft.reason : "") + ". The run took " + duration(session.duration_s) + "."
        : session.state === "review" ? "The pull request waits for review; the run took " + duration(session.duration_s) + "."
        : final ? "Took " + duration(session.duration_s) + "." : "Waiting to start.";
    }
    const net = document.getElementById("network");
    if (net && denied.size) {
      net.hidden = false;
      net.innerHTML = "The agent tried to reach " + [...denied].map(([k, v]) =>
        "<code>" + esc(k) + "</code> (denied: " + esc(v.reason) + (v.count > 1 ? ", " + esc(v.count) + " times" : "") + ")"
      ).join(", ") + ". Hosts it needs go in <code>sandbox.allow_hosts</code>.";
    }
    const tl = document.getElementById("tests");
    if (tests.length) {
      tl.innerHTML = tests.map((t) => {
        const tail = !t.passed && tails.get((t.run || 1) + "/" + (t.round || 1));
        return '<li class="' + (t.passed ? "ok" : "bad") + '">' +
          (t.passed ? "✓ passed" : "✗ failed") + " · run " + esc(t.run || 1) + ", round " + esc(t.round || 1) +
          (t.passed ? "" : ", exit " + esc(t.exit)) +
          (tail ? '<pre class="tail">' + esc(tail.trimEnd().split("\n").slice(-8).join("\n")) + "</pre>" : "") + "</li>";
      }).join("");
    }
    const ds = diff || (session && session.diffstat);
    if (ds) {
      const d = document.getElementById("diff");
      d.className = "";
      d.innerHTML = farm.diffstat(ds);
    }
    renderPr(session, draft);
    const badge = document.getElementById("draft-badge");
    if (badge) badge.hidden = !draft;
    const cancel = document.getElementById("cancel");
    cancel.hidden = !session || ["done", "failed", "cancelled", "review"].includes(session.state);
    const ap = document.getElementById("answer-panel");
    const waiting = (session && session.state === "waiting") || (!session && openQuestion);
    const q = openQuestion ? openQuestion.text : session && session.question;
    ap.hidden = !(waiting && q);
    if (!ap.hidden) document.getElementById("question").textContent = q;
  }

  function renderSession() {
    const s = session;
    document.title = (s.title || "Session " + s.id) + " · farm";
    document.getElementById("title").textContent = s.title || "Session " + s.id;
    const u = safeUrl(s.url);
    const issue = esc(s.repo) + "#" + esc(s.number);
    const parts = [(u ? '<a href="' + esc(u) + '" rel="noreferrer">' + issue + "</a>" : issue),
                   farm.stateBadge(s.state) + ' <span class="badge draft" id="draft-badge" hidden>draft</span>'];
    if (s.agent) parts.push("agent " + esc(s.agent));
    if (s.hold) parts.push('<span class="badge held">on hold (by ' + esc(s.hold.by || "someone") + ")</span>");
    if (s.runs) parts.push(esc(s.runs) + " run" + (s.runs === 1 ? "" : "s"));
    parts.push("agent time " + duration(s.agent_seconds) + ", $" + Number(s.cost || 0).toFixed(2));
    parts.push("session " + esc(s.id));
    document.getElementById("meta").innerHTML = parts.join(' <span class="sep" aria-hidden="true">·</span> ');
    renderFacts();
  }

  async function refresh() {
    try {
      session = await api("GET", "/api/sessions/" + encodeURIComponent(id));
      renderSession();
      farm.status(document.getElementById("status"), "");
    } catch (e) {
      farm.status(document.getElementById("status"),
        e.status === 404 ? "There is no session " + id + "." : "Could not read the session: " + e.message, "error");
    }
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, 250);
  }

  // ---- the stream ----------------------------------------------------------

  function setConn(text, kind) {
    const c = document.getElementById("conn");
    c.textContent = text;
    c.className = "conn " + (kind || "");
    document.body.dataset.conn = kind || "";
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // Parse SSE from a fetch body; calls onEvent(type, data) per event.
  async function readSSE(body, onEvent) {
    const reader = body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let type = "message";
        const data = [];
        for (const l of block.split("\n")) {
          if (l.startsWith(":")) continue;
          const k = l.indexOf(":");
          const field = k < 0 ? l : l.slice(0, k);
          const val = k < 0 ? "" : l.slice(k + 1).replace(/^ /, "");
          if (field === "event") type = val;
          else if (field === "data") data.push(val);
        }
        if (data.length) onEvent(type, data.join("\n"));
      }
    }
  }

  async function follow() {
    let backoff = 250;
    for (;;) {
      try {
        const headers = { Accept: "text/event-stream" };
        const t = farm.token();
        if (t) headers.Authorization = "Bearer " + t;
        const r = await fetch("/v1/stream/sessions/" + encodeURIComponent(id) + "?offset=" +
                              encodeURIComponent(offset) + "&live=sse", { headers, cache: "no-store" });
        if (r.status === 401) {
          setConn("needs a token", "error");
          await farm.askToken("The farm answered 401: give an API token (viewer or better) to watch this session.");
          continue;
        }
        if (r.status === 404) {
          setConn("no such session", "error");
          return;
        }
        if (r.status === 400 || r.status === 410) {
          offset = "-1"; // an offset the server no longer knows: read again; seqs drop repeats
          continue;
        }
        if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
        setConn("live", "live");
        backoff = 250;
        await readSSE(r.body, (type, data) => {
          if (type === "data") {
            append(JSON.parse(data));
          } else if (type === "control") {
            const c = JSON.parse(data);
            if (c.streamNextOffset) offset = c.streamNextOffset;
          }
        });
        // the server ends an SSE response after a minute: reconnect at once
      } catch (e) {
        setConn("reconnecting…", "down");
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 4000);
      }
    }
  }

  // ---- messages --------------------------------------------------------------

  function wireForm(formId, fieldId, statusId, sentText) {
    const form = document.getElementById(formId);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const field = document.getElementById(fieldId);
      const text = field.value.trim();
      const st = statusId && document.getElementById(statusId);
      if (!text) return;
      const btn = form.querySelector("button[type=submit]");
      btn.disabled = true;
      try {
        await api("POST", "/api/sessions/" + encodeURIComponent(id) + "/messages", { text }, { askOn403: true });
        field.value = "";
        farm.status(st, sentText, "ok");
      } catch (e) {
        farm.status(st, "Not sent: " + e.message, "error");
      } finally {
        btn.disabled = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!/^[1-9][0-9]*$/.test(id)) {
      farm.status(document.getElementById("status"), "Not a session id: " + id, "error");
      return;
    }
    document.getElementById("show-raw").addEventListener("change", (ev) => {
      document.getElementById("log-section").classList.toggle("show-raw", ev.target.checked);
    });
    wireForm("message-form", "message", "message-status", "Sent. It appears in the log below.");
    wireForm("answer-form", "answer", "message-status", "Answer sent.");
    document.getElementById("cancel").addEventListener("click", async () => {
      if (!confirm("Stop this session's run now?")) return;
      const st = document.getElementById("status");
      try {
        await api("POST", "/api/sessions/" + encodeURIComponent(id) + "/cancel", {}, { askOn403: true });
        farm.status(st, "Cancelling…", "ok");
      } catch (e) {
        farm.status(st, "Not cancelled: " + e.message, "error");
      }
    });
    setInterval(() => {
      for (const el of document.querySelectorAll(".elapsed[data-since]"))
        el.textContent = duration((Date.now() - Date.parse(el.dataset.since)) / 1000);
    }, 1000);
    refresh().then(follow);
  });
})();
