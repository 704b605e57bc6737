#!/usr/bin/env python3
"""git_http.py - a git smart-HTTP server for tests: `git http-backend` (CGI,
from the installed git) behind HTTP Basic auth.

    git_http.py --root DIR --token-file FILE [--user NAME] [--log FILE]

Serves every bare repository under DIR at http://127.0.0.1:PORT/<name>.git.
Every request must carry Basic auth whose password is one of the lines of
FILE (re-read on every request, so a test can expire or rotate a token while
the server runs); with --user the user name must match too. Anything else
gets 401 with a WWW-Authenticate challenge, like GitHub with an expired
token. Binds port 0 and prints "PORT <n>" on stdout once it listens; stops
on SIGTERM or SIGINT. With --log, appends one line per request:
"<method> <path> <status> <user>".
"""
import argparse
import base64
import os
import signal
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MAX_BODY = 256 << 20


def backend_path():
    out = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True)
    return os.path.join(out.stdout.strip(), "git-http-backend")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-git-http/1"

    def log_message(self, fmt, *args):  # quiet; --log has what tests need
        pass

    def _log(self, status, user):
        if self.server.log_path:
            with self.server.log_lock, open(self.server.log_path, "a") as f:
                f.write(f"{self.command} {self.path} {status} {user or '-'}\n")

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ValueError("truncated chunked body")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(16)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length", "0") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(n) if n else b""

    def _send(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _auth(self):
        """The user name when the request carries a valid token, else None."""
        h = self.headers.get("Authorization", "")
        if not h.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(h[6:]).decode().partition(":")
        except Exception:
            return None
        try:
            with open(self.server.token_file) as f:
                tokens = [t.strip() for t in f if t.strip()]
        except OSError:
            tokens = []
        if password not in tokens:
            return None
        if self.server.user and user != self.server.user:
            return None
        return user

    def _handle(self):
        try:
            body = self._read_body()
        except ValueError as e:
            self.close_connection = True
            self._send(400, [("Content-Type", "text/plain")], str(e).encode())
            return
        user = self._auth()
        if user is None:
            self._log(401, None)
            self._send(401, [("WWW-Authenticate", 'Basic realm="fake git"'),
                             ("Content-Type", "text/plain")], b"authentication required\n")
            return
        url = urlsplit(self.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.server.home,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": self.server.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": "127.0.0.1",
        }
        for h, var in (("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                       ("Git-Protocol", "GIT_PROTOCOL")):
            if self.headers.get(h):
                env[var] = self.headers[h]
        p = subprocess.run([self.server.backend], input=body, env=env, capture_output=True)
        out = p.stdout
        sep = out.find(b"\r\n\r\n")
        seplen = 4
        if sep < 0 or (out.find(b"\n\n") >= 0 and out.find(b"\n\n") < sep):
            sep, seplen = out.find(b"\n\n"), 2
        if sep < 0:
            self._log(500, user)
            self._send(500, [("Content-Type", "text/plain")], p.stderr or b"backend failed\n")
            return
        status, headers = 200, []
        for line in out[:sep].decode("latin-1").splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.strip().split()[0])
            elif k:
                headers.append((k.strip(), v.strip()))
        self._log(status, user)
        self._send(status, headers, out[sep + seplen:])

    do_GET = _handle
    do_POST = _handle


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a client hanging up mid-request (libgit2 giving up after a 401) is normal
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--user")
    ap.add_argument("--log")
    a = ap.parse_args()

    srv = Server(("127.0.0.1", 0), Handler)
    srv.root = os.path.abspath(a.root)
    srv.token_file = a.token_file
    srv.user = a.user
    srv.log_path = a.log
    srv.log_lock = threading.Lock()
    srv.backend = backend_path()
    srv.home = tempfile.mkdtemp(prefix="git-http-home-")

    def stop(*_):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"PORT {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
        os.rmdir(srv.home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
