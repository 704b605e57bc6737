// harness.mjs - what the UI tests share: a real `farm serve` (FARM_BIN) on a
// port of its own with a temporary data directory and tokens, sessions
// seeded into its store (seed.py, through farm-store-probe), and Debian's
// chromium driven headless by playwright-core with a new empty profile.
// Every wait polls a condition with a deadline; nothing sleeps to
// synchronise.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const FARM_BIN = process.env.FARM_BIN || "farm";
export const STORE_PROBE = process.env.FARM_STORE_PROBE || path.join(path.dirname(path.resolve(FARM_BIN)), "tests", "farm-store-probe");
export const CHROMIUM = process.env.FARM_CHROMIUM || "/usr/bin/chromium";
export const ADMIN_TOKEN = "ui-admin-token-0123456789abcdef";
export const VIEWER_TOKEN = "ui-viewer-token-0123456789abcdef";
export const ARTIFACTS = process.env.FARM_UI_ARTIFACTS || path.join(os.tmpdir(), "farm-ui-artifacts");

// Why the UI tests cannot run here, or null when they can.
export async function missing() {
  if (!fs.existsSync(CHROMIUM)) return "chromium is not installed at " + CHROMIUM + " (apt-get install chromium)";
  try {
    await import("playwright-core");
  } catch (e) {
    return "node_modules/playwright-core is missing in tests/ui (run `npm ci` there, or scripts/install-deps --test)";
  }
  if (!fs.existsSync(FARM_BIN)) return "FARM_BIN (" + FARM_BIN + ") does not exist";
  if (!fs.existsSync(STORE_PROBE)) return "FARM_STORE_PROBE (" + STORE_PROBE + ") does not exist";
  return null;
}

export async function waitFor(cond, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

export class Farm {
  constructor() {
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), "farm-ui-"));
    // searchable by other users (not listable): a farm run as root refuses a
    // data directory its sandboxed agents could not reach
    fs.chmodSync(this.tmp, 0o711);
    this.dataDir = path.join(this.tmp, "data");
    this.proc = null;
    this.port = 0;
    this.log = [];
  }

  async start() {
    if (!this.port) this.port = await freePort();
    const cfg = {
      listen: "127.0.0.1:" + this.port,
      data_dir: this.dataDir,
      tokens: [
        { name: "admin", token: "env:FARM_UI_ADMIN", role: "admin" },
        { name: "viewer", token: "env:FARM_UI_VIEWER", role: "viewer" },
      ],
    };
    const cfgPath = path.join(this.tmp, "farm.json");
    fs.writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
    const env = Object.assign({}, process.env, { FARM_UI_ADMIN: ADMIN_TOKEN, FARM_UI_VIEWER: VIEWER_TOKEN });
    // the same port again after a restart: another test may grab it in between, so retry
    for (let attempt = 0; attempt < 50; attempt++) {
      const p = spawn(FARM_BIN, ["serve", "--config", cfgPath], { env, stdio: ["ignore", "ignore", "pipe"] });
      let listening = false, exited = false;
      p.stderr.setEncoding("utf8");
      p.stderr.on("data", (d) => {
        for (const l of d.split("\n")) {
          if (!l) continue;
          this.log.push(l);
          if (l.includes('"msg":"listening"')) listening = true;
        }
      });
      p.on("exit", () => { exited = true; });
      await waitFor(() => listening || exited, "the farm to listen");
      if (listening) {
        this.proc = p;
        this.url = "http://127.0.0.1:" + this.port;
        return this;
      }
      await new Promise((r) => setTimeout(r, 100)); // the port is still held: try again
    }
    throw new Error("farm did not start:\n" + this.log.slice(-20).join("\n"));
  }

  async stop(signal = "SIGTERM") {
    if (!this.proc) return;
    const p = this.proc;
    this.proc = null;
    const done = new Promise((r) => p.once("exit", r));
    p.kill(signal);
    await done;
  }

  seed(...args) {
    const r = spawnSync("python3", [path.join(here, "seed.py"), this.dataDir, ...args.map(String)], { encoding: "utf8" });
    if (r.status !== 0) throw new Error("seed.py failed: " + r.stderr);
    return r.stdout.trim();
  }

  // Append one event to a session's log, as the farm would (picked up by
  // the stream's poll); returns its seq.
  append(id, kind, body) {
    return parseInt(this.seed("append", id, kind, JSON.stringify(body)), 10);
  }

  cleanup() {
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}

export async function browser() {
  const { chromium } = await import("playwright-core");
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "farm-ui-chromium-"));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 900 },
  });
  ctx.profileDir = profile;
  return ctx;
}

export async function closeBrowser(ctx) {
  await ctx.close();
  fs.rmSync(ctx.profileDir, { recursive: true, force: true });
}

// A page that already holds the admin token (as if given once before).
export async function pageWithToken(ctx, farm, token = ADMIN_TOKEN) {
  const page = await ctx.newPage();
  await page.goto(farm.url + "/static/favicon.svg");
  await page.evaluate((t) => localStorage.setItem("farm.token", t), token);
  return page;
}

// Forget the screenshots of an earlier run's failures, so the ones in
// ARTIFACTS are this run's.
export function clearFailureShots() {
  if (!fs.existsSync(ARTIFACTS)) return;
  for (const f of fs.readdirSync(ARTIFACTS))
    if (f.startsWith("FAILED-") && f.endsWith(".png")) fs.rmSync(path.join(ARTIFACTS, f), { force: true });
}

// A PNG of the page in ARTIFACTS: the whole page, or with
// { fullPage: false } only what the viewport shows (what a person sees
// first).
export async function shot(page, name, { fullPage = true } = {}) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name + ".png");
  await page.screenshot({ path: file, fullPage });
  return file;
}

// The desktop and phone sizes every page is looked at in.
export const VIEWPORTS = [
  { width: 1280, height: 900, tag: "desktop" },
  { width: 390, height: 844, tag: "phone" },
];
