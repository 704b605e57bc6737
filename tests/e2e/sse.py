"""sse - a small Server-Sent Events client over a raw socket for the stream
tests: it can be cut off at any byte (forced disconnects), stalled (never
read), and it keeps the protocol's resume rule: messages count only once the
control event after them has arrived, and a reconnect starts from that
control event's streamNextOffset.

Python 3 standard library only.
"""
import json
import socket
import time


class SSE:
    def __init__(self, port, path, offset, headers=None, rcvbuf=None, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        sep = "&" if "?" in path else "?"
        req = "GET %s%soffset=%s&live=sse HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (path, sep, offset)
        for k, v in (headers or {}).items():
            req += "%s: %s\r\n" % (k, v)
        req += "\r\n"
        self.sock.sendall(req.encode())
        self.raw = b""
        self.status = None
        self.headers = {}
        self.body = b""          # de-chunked body not yet parsed into events
        self.pending = []        # data messages waiting for their control event
        self.messages = []       # messages confirmed by a control event
        self.controls = []
        self.offset = offset     # resume point: the last control's streamNextOffset
        self.closed = False      # the server ended the response
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- parsing ----------------------------------------------------------

    def _feed(self, data):
        self.raw += data
        if self.status is None:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.raw[:end].decode("latin-1").split("\r\n")
            self.status = int(head[0].split()[1])
            for line in head[1:]:
                k, _, v = line.partition(":")
                self.headers[k.strip().lower()] = v.strip()
            self.raw = self.raw[end + 4:]
        # chunked transfer encoding
        while True:
            eol = self.raw.find(b"\r\n")
            if eol < 0:
                return
            size = int(self.raw[:eol].split(b";")[0], 16)
            if size == 0:
                self.closed = True
                self.raw = b""
                self._events()
                return
            if len(self.raw) < eol + 2 + size + 2:
                return
            self.body += self.raw[eol + 2:eol + 2 + size]
            self.raw = self.raw[eol + 2 + size + 2:]
            self._events()

    def _events(self):
        while True:
            end = self.body.find(b"\n\n")
            if end < 0:
                return
            block = self.body[:end].decode("utf-8")
            self.body = self.body[end + 2:]
            event, data = None, []
            for line in block.split("\n"):
                if line.startswith(":"):
                    continue
                k, _, v = line.partition(":")
                if v.startswith(" "):
                    v = v[1:]
                if k == "event":
                    event = v
                elif k == "data":
                    data.append(v)
            text = "\n".join(data)
            if event == "data":
                self.pending.append(text)
            elif event == "control":
                ctl = json.loads(text)
                self.controls.append(ctl)
                for t in self.pending:
                    try:
                        v = json.loads(t)
                        self.messages.extend(v if isinstance(v, list) else [v])
                    except ValueError:
                        self.messages.append(t)
                self.pending = []
                self.offset = ctl["streamNextOffset"]

    # ---- reading ----------------------------------------------------------

    def read_some(self, limit=65536):
        """One recv; returns the number of bytes (0 at EOF)."""
        try:
            data = self.sock.recv(limit)
        except socket.timeout:
            return -1
        if not data:
            self.eof = True
            return 0
        self._feed(data)
        return len(data)

    def read_until(self, cond, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not cond(self):
            if self.eof or self.closed:
                return cond(self)
            if time.monotonic() > deadline:
                raise AssertionError("SSE: timed out")
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            self.read_some()
        return True
