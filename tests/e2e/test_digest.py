"""test_digest - GET /api/digest, the session facts in /api/sessions, `farm
digest` (table and --json) and the web UI's routes, on the real binary with
sessions in every state written into its store (tests/ui/seed.py).

Python 3 standard library only.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ui"))
import farmtest  # noqa: E402
import seed  # noqa: E402


class Digest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.farm = farmtest.Farm().start()
        cls.ids = seed.seed_all(cls.farm.data_dir)

    @classmethod
    def tearDownClass(cls):
        cls.farm.__exit__(None, None, None)

    def test_api_digest(self):
        status, d = self.farm.get_json("/api/digest?since=24h", token=farmtest.VIEWER_TOKEN)
        self.assertEqual(status, 200, d)
        by = {k: [s["id"] for s in d[k]] for k in
              ("review", "waiting", "failed", "done", "cancelled", "running", "queued")}
        self.assertEqual(by["review"], [self.ids["review"]])
        self.assertEqual(by["waiting"], [self.ids["waiting"]])
        self.assertEqual(by["failed"], [self.ids["failed"]])
        self.assertEqual(by["done"], [self.ids["done"]])
        self.assertEqual(sorted(by["running"]), sorted(self.ids[s] for s in
                         ("preparing", "running", "testing", "pushing", "revising")))
        review = d["review"][0]
        self.assertEqual(review["tests"], "passed")
        self.assertEqual(review["diffstat"], {"files": 3, "insertions": 42, "deletions": 7})
        self.assertEqual(review["pr_url"], "https://github.com/octo/app/pull/115")
        self.assertGreater(review["duration_s"], 0)
        self.assertIn("tests still fail", d["failed"][0]["reason"])
        self.assertIn("tabs", d["waiting"][0]["question"])
        t = d["totals"]
        self.assertEqual((t["review"], t["waiting"], t["failed"], t["running"], t["queued"]), (1, 1, 1, 5, 1))
        self.assertAlmostEqual(t["cost"], 0.42 * 3, places=2)  # review, revising, done have a PR

    def test_api_digest_errors(self):
        status, body = self.farm.get_json("/api/digest", token=None)
        self.assertEqual(status, 401)
        status, body = self.farm.get_json("/api/digest?since=yesterday-ish")
        self.assertEqual(status, 400)
        self.assertIn("since", body["error"])
        status, body = self.farm.get_json("/api/digest?since=2999-01-01T00:00:00Z")
        self.assertEqual(status, 400)
        # an old window still lists what waits on people, and nothing that ended before it
        status, d = self.farm.get_json("/api/digest?since=1s")
        self.assertEqual(status, 200)
        self.assertEqual(len(d["review"]), 1)

    def test_session_facts_in_api(self):
        status, s = self.farm.get_json("/api/sessions/%d" % self.ids["running"])
        self.assertEqual(status, 200)
        self.assertEqual(s["step"]["name"], "agent")
        self.assertEqual(s["step"]["status"], "started")
        self.assertIsNone(s["tests"])
        status, lst = self.farm.get_json("/api/sessions?state=failed")
        self.assertEqual(status, 200)
        self.assertEqual(lst["sessions"][0]["tests"], "failed")
        self.assertIn("reason", lst["sessions"][0])

    def run_cli(self, *args, token=farmtest.VIEWER_TOKEN):
        env = dict(os.environ)
        env["FARM_TOKEN"] = token or ""
        return subprocess.run([farmtest.FARM_BIN, "digest", "--server",
                               "http://127.0.0.1:%d" % self.farm.port] + list(args),
                              env=env, capture_output=True, text=True, timeout=60)

    def test_cli_table_and_json(self):
        p = self.run_cli("--since", "24h")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("Pull requests waiting for review (1)", p.stdout)
        self.assertIn("octo/app#15", p.stdout)
        self.assertIn("3f +42 -7", p.stdout)
        self.assertIn("asks: Should the parser accept tabs", p.stdout)
        self.assertIn("reason: the tests still fail", p.stdout)
        p = self.run_cli("--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        d = json.loads(p.stdout)
        self.assertEqual(d["totals"]["queued"], 1)
        p = self.run_cli("--since", "soon")
        self.assertEqual(p.returncode, 1)
        self.assertIn("since", p.stderr)
        p = self.run_cli("extra")
        self.assertEqual(p.returncode, 2)
        p = self.run_cli(token="wrong-token-0123456789")
        self.assertEqual(p.returncode, 1)

    def test_ui_routes(self):
        for path, ctype in [("/", "text/html"), ("/sessions/%d" % self.ids["review"], "text/html"),
                            ("/admin", "text/html"), ("/static/app.js", "text/javascript"),
                            ("/static/app.css", "text/css"), ("/static/favicon.svg", "image/svg+xml")]:
            status, headers, body = self.farm.request("GET", path)
            self.assertEqual(status, 200, path)
            self.assertTrue(headers["content-type"].startswith(ctype), (path, headers["content-type"]))
            self.assertTrue(body, path)
        status, _, body = self.farm.request("GET", "/")
        self.assertIn(b"Content-Security-Policy", body)
        self.assertIn(b'src="/static/queue.js"', body)
        for path in ["/sessions/0", "/sessions/abc", "/sessions/1x", "/static/nope.js",
                     "/static/..%2fCMakeLists.txt", "/static/.hidden.js", "/static/app.exe",
                     "/static/embed.cmake"]:
            status, _, _ = self.farm.request("GET", path)
            self.assertEqual(status, 404, path)
        status, headers, _ = self.farm.request("POST", "/")
        self.assertEqual(status, 405)
        status, _, body = self.farm.request("HEAD", "/admin")
        self.assertEqual(status, 200)

    def test_ui_override_dir(self):
        """FARM_WEB_DIR serves the pages from a directory (development)."""
        d = tempfile.mkdtemp(prefix="farm-e2e-web-")
        with open(os.path.join(d, "index.html"), "w") as f:
            f.write("<!doctype html><title>dev copy</title>")
        other = farmtest.Farm()
        other.env["FARM_WEB_DIR"] = d
        with other:
            status, _, body = other.request("GET", "/")
            self.assertEqual(status, 200)
            self.assertIn(b"dev copy", body)
            status, _, _ = other.request("GET", "/static/app.js")
            self.assertEqual(status, 404)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
