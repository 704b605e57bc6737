// test_ui.mjs - the web UI in headless chromium: the queue renders sessions
// in each state, a token is asked for once on 401, a live session page
// receives new events, it reconnects after a server restart and shows each
// line once, the message box posts, and the queue renders 500 sessions
// (timed). What a person sees of a run: the lines of its output, where a
// local pull request is (its branch), that a draft PR is a draft and why, and
// the session page's title still in view after it loads (the log follows in
// its own box). Screenshots of every page at desktop and phone width go to
// FARM_UI_ARTIFACTS, and one of the page under test whenever a test fails.
//
// Exits 77 (ctest: skipped) with the reason printed when chromium or
// tests/ui/node_modules is not there.
import assert from "node:assert/strict";
import { test, after, before } from "node:test";
import * as h from "./harness.mjs";

const why = await h.missing();
if (why) {
  console.log("SKIP: the UI tests need " + why);
  process.exit(77);
}

let farm, ctx, ids, prs;

before(async () => {
  h.clearFailureShots();
  farm = new h.Farm();
  await farm.start();
  ids = JSON.parse(farm.seed("all"));
  prs = JSON.parse(farm.seed("prs")); // {local, draft}: two more sessions in review
  Object.assign(prs, JSON.parse(farm.seed("transcript"))); // {transcript}: one more, a claude run
  Object.assign(prs, JSON.parse(farm.seed("egress"))); // {egress}: one more, denied network, on hold
  Object.assign(prs, JSON.parse(farm.seed("plan"))); // {plan}: one more, a plan waiting for approval
  farm.seed("spend"); // today's model spend of two repositories
  ctx = await h.browser();
});

after(async () => {
  if (ctx) await h.closeBrowser(ctx);
  if (farm) {
    await farm.stop();
    farm.cleanup();
  }
});

// Run body(page); on failure keep a screenshot of the page as an artifact.
async function withPage(name, body, token = h.ADMIN_TOKEN) {
  const page = await h.pageWithToken(ctx, farm, token);
  try {
    await body(page);
  } catch (e) {
    const file = await h.shot(page, "FAILED-" + name).catch(() => null);
    if (file) console.log("# screenshot of the failure: " + file);
    throw e;
  } finally {
    await page.close();
  }
}

test("the queue renders sessions in each state", async () => {
  await withPage("queue", async (page) => {
    await page.goto(farm.url + "/");
    await page.waitForSelector("body[data-loaded='1']");
    const where = {
      review: ["review"], waiting: ["waiting"], failed: ["failed"],
      running: ["preparing", "running", "testing", "pushing", "revising"], queued: ["queued"],
      done: ["done", "cancelled"],
    };
    const extra = Object.values(prs).map(String);
    for (const [list, states] of Object.entries(where)) {
      const got = await page.$$eval(`[data-list="${list}"] .row`, (rows, extra) =>
        rows.filter((r) => !extra.includes(r.dataset.id)).map((r) => r.dataset.state), extra);
      assert.deepEqual(got.sort(), states.slice().sort(), "section " + list);
    }
    const review = page.locator(`.row[data-id="${ids.review}"]`);
    assert.match(await review.innerText(), /passed/);
    assert.match(await review.innerText(), /3 files \+42 −7/);
    assert.equal(await review.locator("a.pr").getAttribute("href"), "https://github.com/octo/app/pull/115");
    assert.match(await page.locator(`.row[data-id="${ids.failed}"] .reason`).innerText(), /tests still fail/);
    assert.match(await page.locator(`.row[data-id="${ids.waiting}"] .question`).innerText(), /tabs as separators/);
    assert.match(await page.locator(`.row[data-id="${ids.running}"] .step`).innerText(), /agent/);
    // every page at desktop and phone width, for people to look at
    for (const { width, height, tag } of h.VIEWPORTS) {
      await page.setViewportSize({ width, height });
      await h.shot(page, "queue-" + tag);
      await page.goto(farm.url + "/sessions/" + ids.review);
      await page.waitForSelector("body[data-conn='live']");
      await page.waitForSelector(".timeline .current");
      await h.shot(page, "session-" + tag);
      // the demo's local PR (branch, git commands, test output) and a draft PR
      for (const name of ["local", "draft"]) {
        await page.goto(farm.url + "/sessions/" + prs[name]);
        await page.waitForSelector("body[data-conn='live']");
        await page.waitForSelector('#log li[data-kind="pr_opened"]');
        await page.waitForSelector("#meta .badge");
        await h.shot(page, "session-" + name + "-" + tag);
        await h.shot(page, "session-" + name + "-" + tag + "-onload", { fullPage: false });
      }
      await page.goto(farm.url + "/sessions/" + ids.waiting);
      await page.waitForSelector("#answer-panel:not([hidden])");
      await h.shot(page, "session-waiting-" + tag);
      await page.goto(farm.url + "/admin");
      await page.waitForSelector("#work .row, #work .empty:not(:empty)");
      await h.shot(page, "admin-" + tag);
      await page.goto(farm.url + "/");
      await page.waitForSelector("body[data-loaded='1']");
    }
  });
});

test("a plan waiting for approval reads plainly on the review queue", async () => {
  await withPage("queue-plans", async (page) => {
    await page.goto(farm.url + "/");
    await page.waitForSelector("body[data-loaded='1']");
    const rows = page.locator('[data-list="plans"] .row');
    assert.equal(await rows.count(), 1);
    const row = page.locator(`[data-list="plans"] .row[data-id="${prs.plan}"]`);
    assert.equal(await row.getAttribute("data-state"), "awaiting_approval");
    const text = await row.innerText();
    assert.match(text, /Accept tabs in the config file/);
    assert.match(text, /octo\/app#60/);
    assert.match(text, /awaiting approval/);
    // the revised plan (the newest), shortened, and what to do with it
    assert.match(text, /Plan: 1\. Keep parse_line\(\) and split on runs of spaces or tabs/);
    assert.match(text, /\n2\. Add test_tabs/); // one step a line, as the agent wrote it
    assert.doesNotMatch(text, /Rewrite the parser from scratch/);
    assert.match(text, /…/);
    assert.match(text, /Comment \/farm approve on the issue to start/);
    assert.match(text, /2 runs/);
    assert.doesNotMatch(text, /0 rounds/); // a plan run runs no tests
    assert.match(await page.locator("#h-plans").innerText(), /Plans waiting for approval \(1\)/);
    assert.match(await page.locator("#summary").innerText(), /1 plan waiting for approval/);
    // the plan is in no other list
    assert.equal(await page.locator(`.row[data-id="${prs.plan}"]`).count(), 1);
    for (const { width, height, tag } of h.VIEWPORTS) {
      await page.setViewportSize({ width, height });
      await h.shot(page, "queue-plans-" + tag, { fullPage: false });
      await row.screenshot({ path: h.ARTIFACTS + "/queue-plan-row-" + tag + ".png" });
    }
  });
});

test("a page without a token asks for one once and keeps it", async () => {
  const page = await h.pageWithToken(ctx, farm, ""); // the profile is shared: forget the token
  try {
    await page.evaluate(() => localStorage.removeItem("farm.token"));
    await page.goto(farm.url + "/");
    await page.waitForSelector("#token-dialog[open]");
    await page.fill("#token-input", h.VIEWER_TOKEN);
    await page.press("#token-input", "Enter");
    await page.waitForSelector("body[data-loaded='1']");
    assert.equal(await page.evaluate(() => localStorage.getItem("farm.token")), h.VIEWER_TOKEN);
    await page.reload();
    await page.waitForSelector("body[data-loaded='1']");
    assert.equal(await page.locator("#token-dialog[open]").count(), 0);
  } finally {
    await page.evaluate(() => localStorage.removeItem("farm.token")).catch(() => {});
    await page.close();
  }
});

test("a live session page receives new events", async () => {
  await withPage("live", async (page) => {
    const id = ids.running;
    await page.goto(farm.url + "/sessions/" + id);
    await page.waitForSelector("body[data-conn='live']");
    const before = Number(await page.getAttribute("body", "data-last-seq"));
    assert.ok(before > 0, "the log so far is shown");
    const seq = farm.append(id, "output", { step: "agent", stream: "stdout", line: "a brand new line" });
    await page.waitForSelector(`#log li[data-seq="${seq}"]`);
    assert.match(await page.locator(`#log li[data-seq="${seq}"]`).innerText(), /a brand new line/);
    const s2 = farm.append(id, "step", { run: 1, step: "agent", status: "done", round: 1, ms: 1000 });
    await page.waitForSelector(`#log li[data-seq="${s2}"]`);
  });
});

test("the session page reconnects after a server restart and shows each line once", async () => {
  await withPage("restart", async (page) => {
    const id = ids.testing;
    await page.goto(farm.url + "/sessions/" + id);
    await page.waitForSelector("body[data-conn='live']");
    const a = farm.append(id, "output", { step: "test", stream: "stdout", line: "before the restart" });
    await page.waitForSelector(`#log li[data-seq="${a}"]`);
    await farm.stop();
    await page.waitForSelector("body[data-conn='down']");
    const b = farm.append(id, "output", { step: "test", stream: "stdout", line: "while the server was down" });
    await farm.start();
    const c = farm.append(id, "output", { step: "test", stream: "stdout", line: "after the restart" });
    await page.waitForSelector(`#log li[data-seq="${c}"]`, { timeout: 20000 });
    await page.waitForSelector("body[data-conn='live']");
    const seqs = await page.$$eval("#log li", (lis) => lis.map((li) => Number(li.dataset.seq)));
    const want = Array.from({ length: c }, (_, i) => i + 1);
    assert.deepEqual(seqs, want, "every line once, in order");
    assert.ok(seqs.includes(b));
  });
});

// A claude run's transcript (agent_message, tool_call, tool_result,
// file_change, command) reads as a narrative; its raw stream-json lines are
// folded behind the "Raw agent output" toggle, and come back with it.
test("the agent's transcript reads as a narrative, its raw output folded", async () => {
  await withPage("transcript", async (page) => {
    for (const { width, height, tag } of h.VIEWPORTS) {
      await page.setViewportSize({ width, height });
      await page.goto(farm.url + "/sessions/" + prs.transcript);
      await page.waitForSelector('#log li[data-kind="pr_opened"]');
      const said = page.locator('#log li[data-kind="agent_message"]', { hasText: "split on tabs as well as spaces" });
      assert.ok(await said.isVisible(), "what the agent said");
      assert.match(await said.innerText(), /agent: I'll make the parser split on tabs/);
      const edit = page.locator('#log li[data-kind="tool_call"]', { hasText: "Edit src/parser.c" });
      assert.ok(await edit.isVisible());
      assert.match(await edit.innerText(), /✓ ok/, "the call says it succeeded");
      const failed = page.locator('#log li[data-kind="tool_call"].done-bad');
      assert.equal(await failed.count(), 1, "one call failed");
      assert.match(await failed.innerText(), /→ Bash make test\s+✗ failed/);
      const cmds = await page.$$eval('#log li[data-kind="command"] .text', (els) => els.map((e) => e.innerText));
      assert.deepEqual(cmds, ["$ make test  → exit 2", "$ make test TESTS=test_tabs  → exit 0"]);
      assert.ok(await page.locator('#log li[data-kind="file_change"]', { hasText: "file changed: src/parser.c" }).isVisible());
      assert.ok(await page.locator('#log li[data-kind="agent_message"]', { hasText: "test_tabs passes" }).isVisible());
      // a result is shown on its call's line, not on a line of its own
      assert.equal(await page.locator('#log li[data-kind="tool_result"]:visible').count(), 0);
      // the raw output: folded, but one click away; the test step's output stays
      const raw = page.locator('#log li[data-kind="output"].agent-raw');
      assert.equal(await raw.count(), 10);
      assert.equal(await page.locator('#log li[data-kind="output"].agent-raw:visible').count(), 0, "folded");
      assert.ok(await page.locator('#log li[data-kind="output"]', { hasText: "ran 12 tests" }).isVisible());
      const toggle = page.locator("#raw-toggle");
      assert.ok(await toggle.isVisible());
      assert.match(await toggle.innerText(), /Raw agent output \(10 lines\)/);
      await h.shot(page, "session-transcript-" + tag);
      await page.locator("#show-raw").check();
      assert.equal(await page.locator('#log li[data-kind="output"].agent-raw:visible').count(), 10, "shown");
      assert.match(await raw.nth(2).innerText(), /"tool_use"/);
      await h.shot(page, "session-transcript-raw-" + tag);
      await page.locator("#show-raw").uncheck();
      assert.equal(await page.locator('#log li[data-kind="output"].agent-raw:visible').count(), 0, "folded again");
    }
    // without a transcript, no toggle and the raw output as it came
    await page.goto(farm.url + "/sessions/" + prs.local);
    await page.waitForSelector('#log li[data-kind="pr_opened"]');
    assert.ok(await page.locator("#raw-toggle").isHidden());
    assert.ok(await page.locator('#log li[data-kind="output"]', { hasText: "reading greeter.sh" }).isVisible());
  });
});

// The egress proxy's decisions (farm/run/pipeline_egress.c): each a line of
// the log a person can read, the denied hosts said once under Progress; the
// session's agent preset and its issue's hold in the header.
test("egress events, the agent preset and a hold read plainly on the session page", async () => {
  await withPage("egress", async (page) => {
    for (const { width, height, tag } of h.VIEWPORTS) {
      await page.setViewportSize({ width, height });
      await page.goto(farm.url + "/sessions/" + prs.egress);
      await page.waitForSelector('#log li[data-kind="pr_opened"]');
      const lines = await page.$$eval('#log li[data-kind="egress"] .text', (els) => els.map((e) => e.innerText));
      assert.deepEqual(lines, [
        "network: reached packages.internal:443",
        "network: denied pypi.org:443 — not on the allowlist",
        "network: denied pypi.org:443 — not on the allowlist (37 times in all)",
      ]);
      const denied = page.locator('#log li[data-kind="egress"]', { hasText: "37 times in all" });
      await denied.scrollIntoViewIfNeeded();
      assert.ok(await denied.isVisible(), "the repeat's line is visible");
      const net = page.locator("#network");
      assert.ok(await net.isVisible(), "the denied hosts under Progress");
      assert.equal(await net.innerText(),
        "The agent tried to reach pypi.org:443 (denied: not on the allowlist, 37 times). " +
        "Hosts it needs go in sandbox.allow_hosts.");
      const meta = await page.locator("#meta").innerText();
      assert.match(meta, /agent codex/);
      assert.match(meta, /on hold \(by alice\)/);
      await page.evaluate(() => window.scrollTo(0, 0));
      await h.shot(page, "session-egress-" + tag, { fullPage: false });
      await h.shot(page, "session-egress-" + tag + "-full");
    }
    // a session without egress events has no network note
    await page.goto(farm.url + "/sessions/" + prs.local);
    await page.waitForSelector('#log li[data-kind="pr_opened"]');
    assert.ok(await page.locator("#network").isHidden());
  });
});

// The output events carry their text in "line" (farm/run/pipeline_exec.c):
// the failing test's own words are what a person reads the log for.
test("an output line's text is visible on the session page", async () => {
  await withPage("output-line", async (page) => {
    await page.goto(farm.url + "/sessions/" + prs.local);
    await page.waitForSelector("body[data-conn='live']");
    await page.waitForSelector('#log li[data-kind="pr_opened"]'); // the log's last line
    const texts = await page.$$eval('#log li[data-kind="output"] .text', (els) => els.map((e) => e.innerText));
    assert.equal(texts.length, 6, "the run's six output lines are listed");
    assert.deepEqual(texts.filter((t) => !t.trim()), [], "no output line is blank");
    assert.ok(texts.includes('FAIL: greeter.sh prints "Hello, wrold!"'), "the failing test's line: " + JSON.stringify(texts));
    const fail = page.locator('#log li[data-kind="output"] .text', { hasText: 'FAIL: greeter.sh prints "Hello, wrold!"' });
    await fail.scrollIntoViewIfNeeded();
    assert.ok(await fail.isVisible(), "the failing test's line is visible");
    assert.equal(await fail.innerText(), 'FAIL: greeter.sh prints "Hello, wrold!"');
    const box = await fail.boundingBox();
    assert.ok(box && box.width > 100 && box.height > 8, "the line takes room on the page: " + JSON.stringify(box));
    // the failed round's test output under Test results too
    assert.match(await page.locator("#tests li.bad").innerText(), /FAIL: greeter\.sh prints "Hello, wrold!"/);
  });
});

// A PR of the local tracker (local://) has no web page: its branch and the
// git commands to see it, on the queue and on the session page.
test("a local PR shows its branch", async () => {
  await withPage("local-pr", async (page) => {
    const branch = "farm/1-fix-the-typo-in-the-greeting";
    await page.goto(farm.url + "/");
    await page.waitForSelector("body[data-loaded='1']");
    const row = page.locator(`[data-list="review"] .row[data-id="${prs.local}"]`);
    assert.match(await row.innerText(), /local PR #2/);
    const code = row.locator(".branch code");
    assert.ok(await code.isVisible(), "the branch is shown on the queue");
    assert.equal(await code.innerText(), branch);

    await page.goto(farm.url + "/sessions/" + prs.local);
    await page.waitForSelector("body[data-conn='live']");
    const pr = page.locator("#pr");
    await pr.locator(".pr-line").waitFor();
    assert.match(await pr.locator(".pr-line").innerText(), /Local pull request #2 on branch farm\/1-fix-the-typo-in-the-greeting/);
    const cmd = pr.locator("pre.cmd");
    assert.ok(await cmd.isVisible(), "the commands are shown");
    const lines = (await cmd.innerText()).split("\n");
    assert.equal(lines[0], "farm issue show 2");
    assert.match(lines[1], new RegExp("^git fetch \\S.* " + branch.replace(/\//g, "\\/") + "$"));
    assert.equal(lines[2], "git log -p main..FETCH_HEAD");
    assert.equal(await pr.locator("a").count(), 0, "no link to a page that does not exist");
  });
});

// A draft PR (the session's pr_draft and pr_draft_reason) is no success:
// the queue and the session page say "draft" and why.
test("a draft PR with failing tests says draft and why", async () => {
  await withPage("draft-pr", async (page) => {
    await page.goto(farm.url + "/");
    await page.waitForSelector("body[data-loaded='1']");
    const row = page.locator(`[data-list="review"] .row[data-id="${prs.draft}"]`);
    const badge = row.locator(".badge.draft");
    assert.ok(await badge.isVisible(), "the queue shows a draft badge");
    assert.equal(await badge.innerText(), "draft");
    assert.match(await row.locator(".draft-reason").innerText(), /^Draft: the tests still fail after 2 rounds$/);
    assert.match(await row.locator(".pr").innerText(), /draft PR #140/);
    assert.equal(await page.locator(`.row[data-id="${ids.review}"] .badge.draft`).count(), 0, "a ready PR is no draft");
    assert.equal(await page.locator(`.row[data-id="${prs.local}"] .badge.draft`).count(), 0);

    // the session page
    await page.goto(farm.url + "/sessions/" + prs.draft);
    await page.waitForSelector("body[data-conn='live']");
    await page.locator("#pr .pr-line").waitFor();
    const top = page.locator("#draft-badge");
    await top.waitFor();
    assert.ok(await top.isVisible(), "the title's badges say draft");
    assert.match(await page.locator("#pr .pr-line").innerText(), /Draft pull request #140/);
    const why = page.locator("#pr .draft-reason");
    assert.ok(await why.isVisible());
    assert.match(await why.innerText(), /^draft the tests still fail after 2 rounds$/);
    assert.match(await page.locator("#progress").innerText(),
                 /^A draft pull request waits for review: the tests still fail after 2 rounds\./);
    // a PR that is ready says nothing of the kind
    await page.goto(farm.url + "/sessions/" + prs.local);
    await page.waitForSelector("body[data-conn='live']");
    await page.locator("#pr .pr-line").waitFor();
    assert.ok(!(await page.locator("#draft-badge").isVisible()));
    assert.match(await page.locator("#progress").innerText(), /^The pull request waits for review/);
  });
});

// Following the log scrolls the log's box, never the window: after the
// page loads (and after a live line) the title and state are in view. And
// nothing (a branch name, a command) makes the page wider than the screen.
test("the session page keeps the window at the top on load", async () => {
  await withPage("no-jump", async (page) => {
    const scrolled = {}, want = {}, boxes = [];
    for (const { width, height, tag } of h.VIEWPORTS) {
      want[tag] = { onLoad: 0, afterLine: 0, widerBy: 0 };
      await page.setViewportSize({ width, height });
      await page.goto(farm.url + "/sessions/" + prs.local);
      await page.waitForSelector("body[data-conn='live']");
      await page.waitForSelector('#log li[data-kind="pr_opened"]'); // the log's last line
      await page.waitForSelector("#meta .badge");
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      scrolled[tag] = { onLoad: await page.evaluate(() => window.scrollY) };
      const log = await page.$eval("#log", (l) => ({ top: l.scrollTop, client: l.clientHeight, height: l.scrollHeight }));
      assert.ok(log.height > log.client, tag + ": the log overflows its box (" + JSON.stringify(log) + ")");
      boxes.push([log.top + log.client >= log.height - 2, tag + ": the box follows the log's end (" + JSON.stringify(log) + ")"]);
      // a live line: the box follows, the window still does not move
      const seq = farm.append(prs.local, "message", { author: "viewer", text: "a line while watching at " + tag });
      await page.waitForSelector(`#log li[data-seq="${seq}"]`);
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      scrolled[tag].afterLine = await page.evaluate(() => window.scrollY);
      scrolled[tag].widerBy = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      const end = await page.$eval("#log", (l) => l.scrollTop + l.clientHeight >= l.scrollHeight - 2);
      boxes.push([end, tag + ": the box shows the new line"]);
    }
    assert.deepEqual(scrolled, want, "window.scrollY at each width: the title and state stay in view");
    for (const [ok, what] of boxes) assert.ok(ok, what);
  });
});

test("the message box posts to the session", async () => {
  await withPage("message", async (page) => {
    const id = ids.waiting;
    await page.goto(farm.url + "/sessions/" + id);
    await page.waitForSelector("body[data-conn='live']");
    await page.fill("#message", "please keep the old flag working");
    await page.click("#message-form button[type=submit]");
    const li = page.locator('#log li[data-kind="message"]', { hasText: "please keep the old flag working" });
    await li.waitFor();
    assert.match(await li.innerText(), /admin: please keep the old flag working/);
    assert.equal(await page.inputValue("#message"), "");
  });
});

test("the admin page shows the slots and changes scaling", async () => {
  await withPage("admin", async (page) => {
    await page.goto(farm.url + "/admin");
    await page.waitForSelector("body[data-loaded='1']");
    const before = Number(await page.inputValue("#max_agents"));
    assert.ok(before >= 1, "max_agents is shown (" + before + ")");
    assert.match(await page.locator("#slots").innerText(), /jobs queued/);
    await page.fill("#max_agents", String(before + 3));
    await page.click("#scaling-form button[type=submit]");
    await page.locator("#scaling-status", { hasText: "Saved" }).waitFor();
    const r = await page.evaluate(async (t) => (await fetch("/api/scaling", { headers: { Authorization: "Bearer " + t } })).json(), h.ADMIN_TOKEN);
    assert.equal(r.max_agents, before + 3);
    assert.equal(r.source.max_agents, "setting");
    // more per repository than in total: the server refuses and names the field
    await page.fill("#max_per_repo", String(before + 50));
    await page.click("#scaling-form button[type=submit]");
    await page.locator("#scaling-status", { hasText: "Not saved" }).waitFor();
    assert.match(await page.locator("#scaling-status").innerText(), /max_per_repo/);
  });
});

test("the admin page shows the budgets and today's spend, and changes a budget", async () => {
  await withPage("admin-budgets", async (page) => {
    await page.goto(farm.url + "/admin");
    await page.waitForSelector("body[data-loaded='1']");
    await page.waitForSelector("#spend table");
    // no budget in the config: each is 0, from the config
    for (const f of ["session_usd", "repo_daily_usd", "daily_usd"]) {
      assert.equal(Number(await page.inputValue("#" + f)), 0, f);
      assert.equal(await page.locator("#" + f + "-source").innerText(), "no budget, from the config", f);
    }
    const spend = await page.locator("#spend").innerText();
    assert.match(spend, /all repositories\s+\$3\.22 · no budget/);
    assert.match(spend, /octo\/app\s+\$3\.22/);
    assert.doesNotMatch(spend, /Of its budget/); // no repository budget: no column for it
    assert.match(spend, /octo\/lib-with-a-rather-long-name\s+\$0\.0042/);
    assert.match(spend, /\(UTC\)/);
    // an admin sets the farm's daily budget: kept live, the spend shown against it
    await page.fill("#daily_usd", "5");
    await page.click("#budgets-form button[type=submit]");
    await page.locator("#budgets-status", { hasText: "Saved" }).waitFor();
    assert.match(await page.locator("#budgets-status").innerText(), /daily_usd = \$5\.00/);
    assert.equal(await page.locator("#daily_usd-source").innerText(), "set here");
    assert.match(await page.locator("#spend").innerText(), /\$3\.22 · 64% of \$5\.00/);
    const r = await page.evaluate(async (t) => (await fetch("/api/budgets", { headers: { Authorization: "Bearer " + t } })).json(), h.ADMIN_TOKEN);
    assert.equal(r.daily_usd, 5);
    assert.equal(r.source.daily_usd, "live");
    for (const { width, height, tag } of h.VIEWPORTS) {
      await page.setViewportSize({ width, height });
      await h.shot(page, "admin-budgets-" + tag);
    }
    await page.setViewportSize({ width: h.VIEWPORTS[0].width, height: h.VIEWPORTS[0].height });
    // back to the config's value
    await page.click('[data-clear="daily_usd"]');
    await page.locator("#budgets-status", { hasText: "back to the config" }).waitFor();
    await page.locator("#daily_usd-source", { hasText: "from the config" }).waitFor();
    assert.equal(Number(await page.inputValue("#daily_usd")), 0);
    assert.ok(await page.locator('[data-clear="daily_usd"]').isHidden());
    // a negative amount never leaves the page
    await page.fill("#session_usd", "-1");
    await page.click("#budgets-form button[type=submit]");
    await page.locator("#budgets-status", { hasText: "0 or more" }).waitFor();
  });
});

// No farm page works inside a frame: the server's headers forbid it
// (frame-ancestors 'none', X-Frame-Options), and a page framed anyway (a
// proxy that drops them) hides itself (app.js).
test("a page inside a frame hides itself", async () => {
  await withPage("frame", async (page) => {
    // the parent is a farm page too (chromium keeps other origins from framing loopback)
    await page.goto(farm.url + "/admin");
    assert.notEqual(await page.evaluate(() => getComputedStyle(document.documentElement).display), "none");
    const shown = (f) => f.evaluate(() => !!document.querySelector("header.top") &&
                                          getComputedStyle(document.documentElement).display !== "none").catch(() => false);
    // as served: the browser shows nothing of the page in the frame
    await page.evaluate(() => {
      const f = document.createElement("iframe");
      f.src = "/sessions/1";
      document.body.append(f);
    });
    const first = await h.waitFor(() => page.frames().find((f) => f !== page.mainFrame()), "the frame");
    await first.waitForLoadState("load");
    assert.equal(await shown(first), false, "the framed page is not shown (" + first.url() + ")");
    // without the headers: the page's own script hides it
    await page.route(farm.url + "/sessions/2", async (route) => {
      const res = await route.fetch();
      const headers = Object.fromEntries(Object.entries(res.headers())
        .filter(([k]) => !["content-security-policy", "x-frame-options"].includes(k.toLowerCase())));
      await route.fulfill({ response: res, headers });
    });
    await page.evaluate(() => {
      const f = document.createElement("iframe");
      f.src = "/sessions/2";
      document.body.append(f);
    });
    const frame = await waitForFrame(page, farm.url + "/sessions/2");
    await frame.waitForLoadState("load");
    assert.ok(await frame.evaluate(() => !!document.querySelector("header.top")), "the page itself loaded");
    const display = await frame.evaluate(() => getComputedStyle(document.documentElement).display);
    assert.equal(display, "none");
  });
});

async function waitForFrame(page, url) {
  return h.waitFor(() => page.frames().find((f) => f.url() === url), "the framed page");
}

test("the queue renders 500 sessions quickly", async () => {
  const many = new h.Farm();
  await many.start();
  try {
    many.seed("many", 500);
    const page = await h.pageWithToken(ctx, many);
    try {
      const t0 = Date.now();
      await page.goto(many.url + "/");
      await page.waitForSelector("body[data-loaded='1']");
      const total = Date.now() - t0;
      const rows = await page.locator(".row").count();
      const renderMs = Number(await page.getAttribute("body", "data-render-ms"));
      console.log(`# queue with 500 sessions: ${rows} rows, page ready in ${total} ms (fetch + render ${renderMs} ms)`);
      assert.ok(rows >= 400, "most sessions are listed (" + rows + ")");
      // generous: the suite runs in parallel, and under ASan; typical is about 1 s
      assert.ok(total < 10000, "the queue page is ready within 10 s (" + total + " ms)");
    } finally {
      await page.close();
    }
  } finally {
    await many.stop();
    many.cleanup();
  }
});
