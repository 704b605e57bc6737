// setup.mjs - the UI tests' dependency: installs playwright-core into
// tests/ui/node_modules with `npm ci` when it is not there yet. It never
// fails the suite: without the module (no npm, no registry) the browser test
// skips and says why.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
if (fs.existsSync(path.join(here, "node_modules", "playwright-core", "package.json"))) {
  console.log("ui setup: playwright-core is installed");
  process.exit(0);
}
const r = spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: here, stdio: "inherit", timeout: 300000 });
if (r.error || r.status !== 0)
  console.log("ui setup: npm ci did not install playwright-core (" + (r.error ? r.error.message : "exit " + r.status) +
              "); the UI tests will be skipped");
else
  console.log("ui setup: playwright-core installed");
process.exit(0);
