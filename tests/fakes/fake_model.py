#!/usr/bin/env python3
"""fake_model.py - a stand-in for the model APIs behind the farm's gateway.

Run it as `python3 fake_model.py [--port N] [--host H] [--key KEY] [--script]
[--file-path P] [--content C]`; it binds port 0 by default and prints the port
it got as the first line on stdout. Python 3 standard library only.

It speaks, streaming (server-sent events, chunked) or not, as the request's
"stream" field asks:
  POST /v1/messages              Anthropic Messages (message_start, ping,
                                 content_block_*, message_delta, message_stop)
  POST /v1/messages/count_tokens {"input_tokens": N}
  POST /v1/responses             OpenAI Responses (response.created ...
                                 response.completed with usage)
  POST /v1/chat/completions      OpenAI Chat Completions (chunks, the usage
                                 chunk when stream_options.include_usage, [DONE])
  GET  /v1/models                one model
With --key, a request without that key (x-api-key, or Authorization: Bearer)
gets 401 in the provider's error shape. Every request is recorded with its
headers, so a test can check which key arrived.

Usage reported (unless changed): Anthropic input_tokens 120,
cache_creation_input_tokens 500, cache_read_input_tokens 3000, output_tokens
42 (message_start carries the input side, message_delta the output); OpenAI
input_tokens 3120 of which cached 3000, output_tokens 42 (reasoning 10).

Behaviour per request, from x-fake-* request headers (which the gateway
forwards), or for every request from POST /_fake/config with the same names
without the prefix (for real CLIs, which send no such headers):
  x-fake-events: N       the answer's text in N deltas (default 3)
  x-fake-delay-ms: D     sleep D ms between events
  x-fake-stall-after: N  after N events (a streamed answer; 0 = right after the
                         head) or before the head (not streamed), sleep
  x-fake-stall-ms: D     that long (default 60000), then go on
  x-fake-chunk-bytes: B  write the whole stream in pieces of B bytes, each
                         flushed on its own, so they arrive cut anywhere
  x-fake-stamp: 1        before each event a comment ": t=NS" with the send
                         time on CLOCK_MONOTONIC (time.monotonic_ns)
  x-fake-status: S       answer S with the provider's error body instead
  x-fake-echo-auth: 1    put the credentials received into the answer's text
                         and an x-fake-echo header (a leaking upstream)
  x-fake-text: T         the answer's text
  x-fake-usage: {...}    JSON merged over the default usage numbers
  x-fake-script: 1       the scripted exchange below
Scripted exchange (--script, or "script": true): the first answer is one tool
call that writes a file (Anthropic: "Write" {"file_path", "content"}; OpenAI:
"shell" {"command": ["bash", "-lc", "printf ... > FILE"]}; both can be
changed with "tool" in /_fake/config: {"anthropic": {"name", "input"},
"openai": {"name", "arguments"}}); once the conversation carries that tool's
result (tool_result, function_call_output, a "tool" message), the answer is a
final text; so is the answer to a request whose "tools" is an empty list (a
side request, such as opencode's title). So a real CLI can be driven through
one tool round.

Control endpoints (no key needed):
  GET    /_fake/requests   every request: seq, method, path, query, headers
                           (lower-case names), body (parsed JSON when it is),
                           status, completed, aborted (the client went away)
  DELETE /_fake/requests   forget them
  POST   /_fake/config     defaults as above, plus "script", "file_path",
                           "content", "final_text", "tool"; {"reset": true}
                           first restores the defaults
  GET    /_fake/config     the current defaults
"""
import argparse
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

DEFAULT_USAGE = {"input": 120, "cache_write": 500, "cache_read": 3000, "output": 42,
                 "reasoning": 10}
DEFAULTS = {
    "events": 3, "delay_ms": 0, "stall_after": -1, "stall_ms": 60000, "chunk_bytes": 0,
    "stamp": 0, "status": 0, "echo_auth": 0, "text": "Hello from the fake model.",
    "usage": {}, "script": 0, "file_path": "/tmp/farm-fake-model-output.txt",
    "content": "written by the fake model\n", "final_text": "Done: the file is written.",
    "tool": {},
}

lock = threading.Lock()
requests = []
config = json.loads(json.dumps(DEFAULTS))
expected_key = None


def now_ns():
    return time.monotonic_ns()


def split_text(text, n):
    n = max(1, int(n))
    size = max(1, -(-len(text) // n))
    parts = [text[i:i + size] for i in range(0, len(text), size)] or [""]
    while len(parts) < n:
        parts.append("")
    return parts


def sse(event, data):
    head = "event: %s\n" % event if event else ""
    return (head + "data: " + json.dumps(data, separators=(",", ":")) + "\n\n").encode()


class Exchange:
    """What one request asks for, and the options that shape the answer."""

    def __init__(self, handler, body):
        self.h = handler
        self.body = body if isinstance(body, dict) else {}
        self.seq = handler.record["seq"]
        with lock:
            opts = json.loads(json.dumps(config))
        hdr = handler.headers
        for name in ("events", "delay_ms", "stall_after", "stall_ms", "chunk_bytes", "stamp",
                     "status", "echo_auth", "script"):
            v = hdr.get("x-fake-" + name.replace("_", "-"))
            if v is not None:
                opts[name] = int(v)
        if hdr.get("x-fake-text") is not None:
            opts["text"] = hdr.get("x-fake-text")
        usage = dict(DEFAULT_USAGE)
        usage.update(opts.get("usage") or {})
        if hdr.get("x-fake-usage"):
            usage.update(json.loads(hdr.get("x-fake-usage")))
        self.usage = usage
        self.o = opts
        self.model = self.body.get("model") or "fake-model"
        self.stream = bool(self.body.get("stream"))
        text = opts["text"]
        if opts["echo_auth"]:
            text += " auth=" + handler.credentials()
        self.text = text

    def scripted_tool_turn(self, finished):
        # a request that offers no tools (opencode's title request) gets the final text
        tools = self.body.get("tools")
        return bool(self.o["script"]) and not finished and (tools is None or bool(tools))

    def shell_command(self):
        content = self.o["content"].replace("'", "'\\''")
        return ["bash", "-lc", "printf '%%s' '%s' > '%s'" % (content, self.o["file_path"])]

    def anthropic_tool(self):
        t = (self.o.get("tool") or {}).get("anthropic") or {}
        return (t.get("name", "Write"),
                t.get("input", {"file_path": self.o["file_path"], "content": self.o["content"]}))

    def openai_tool(self):
        t = (self.o.get("tool") or {}).get("openai") or {}
        return (t.get("name", "shell"),
                json.dumps(t.get("arguments", {"command": self.shell_command()})))


# ---- Anthropic Messages --------------------------------------------------------

def anthropic_finished(body):
    msgs = body.get("messages") or []
    for m in msgs[-1:]:
        content = m.get("content")
        if isinstance(content, list) and any(isinstance(c, dict) and c.get("type") == "tool_result"
                                             for c in content):
            return True
    return False


def anthropic_answer(x):
    u = x.usage
    if x.scripted_tool_turn(anthropic_finished(x.body)):
        name, inp = x.anthropic_tool()
        blocks = [{"type": "tool_use", "id": "toolu_fake_%d" % x.seq, "name": name, "input": inp}]
        stop = "tool_use"
    else:
        text = x.o["final_text"] if x.o["script"] else x.text
        blocks = [{"type": "text", "text": text}]
        stop = "end_turn"
    usage_in = {"input_tokens": u["input"], "cache_creation_input_tokens": u["cache_write"],
                "cache_read_input_tokens": u["cache_read"]}
    if "cache_write_1h" in u:
        usage_in["cache_creation"] = {"ephemeral_5m_input_tokens":
                                      u["cache_write"] - u["cache_write_1h"],
                                      "ephemeral_1h_input_tokens": u["cache_write_1h"]}
    message = {"id": "msg_fake_%d" % x.seq, "type": "message", "role": "assistant",
               "model": x.model, "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": dict(usage_in, output_tokens=1)}
    if not x.stream:
        message.update(content=blocks, stop_reason=stop,
                       usage=dict(usage_in, output_tokens=u["output"]))
        return message
    events = [sse("message_start", {"type": "message_start", "message": message}),
              sse("ping", {"type": "ping"})]
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            events.append(sse("content_block_start", {"type": "content_block_start", "index": i,
                                                      "content_block": {"type": "text", "text": ""}}))
            for piece in split_text(b["text"], x.o["events"]):
                events.append(sse("content_block_delta", {
                    "type": "content_block_delta", "index": i,
                    "delta": {"type": "text_delta", "text": piece}}))
        else:
            start = dict(b, input={})
            events.append(sse("content_block_start", {"type": "content_block_start", "index": i,
                                                      "content_block": start}))
            for piece in split_text(json.dumps(b["input"]), 3):
                events.append(sse("content_block_delta", {
                    "type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}))
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(sse("message_delta", {"type": "message_delta",
                                        "delta": {"stop_reason": stop, "stop_sequence": None},
                                        "usage": {"output_tokens": u["output"]}}))
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events


# ---- OpenAI Responses ----------------------------------------------------------

def responses_finished(body):
    inp = body.get("input")
    return isinstance(inp, list) and any(
        isinstance(i, dict) and i.get("type") in ("function_call_output", "custom_tool_call_output")
        for i in inp)


def openai_usage(u, chat=False):
    total_in = u["input"] + u["cache_read"]
    if chat:
        return {"prompt_tokens": total_in, "completion_tokens": u["output"],
                "total_tokens": total_in + u["output"],
                "prompt_tokens_details": {"cached_tokens": u["cache_read"]},
                "completion_tokens_details": {"reasoning_tokens": u["reasoning"]}}
    return {"input_tokens": total_in, "input_tokens_details": {"cached_tokens": u["cache_read"]},
            "output_tokens": u["output"],
            "output_tokens_details": {"reasoning_tokens": u["reasoning"]},
            "total_tokens": total_in + u["output"]}


def responses_answer(x):
    resp = {"id": "resp_fake_%d" % x.seq, "object": "response", "created_at": int(time.time()),
            "status": "in_progress", "model": x.model, "output": [], "usage": None,
            "error": None, "incomplete_details": None}
    tool = x.scripted_tool_turn(responses_finished(x.body))
    if tool:
        name, args = x.openai_tool()
        item = {"id": "fc_fake_%d" % x.seq, "type": "function_call", "status": "completed",
                "call_id": "call_fake_%d" % x.seq, "name": name, "arguments": args}
    else:
        text = x.o["final_text"] if x.o["script"] else x.text
        item = {"id": "msg_fake_%d" % x.seq, "type": "message", "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}
    done = dict(resp, status="completed", output=[item], usage=openai_usage(x.usage))
    if not x.stream:
        return done
    seq = [0]

    def ev(kind, **fields):
        d = {"type": kind, "sequence_number": seq[0]}
        d.update(fields)
        seq[0] += 1
        return sse(kind, d)

    events = [ev("response.created", response=resp), ev("response.in_progress", response=resp)]
    if tool:
        events.append(ev("response.output_item.added", output_index=0,
                         item=dict(item, status="in_progress", arguments="")))
        for piece in split_text(item["arguments"], 3):
            events.append(ev("response.function_call_arguments.delta", item_id=item["id"],
                             output_index=0, delta=piece))
        events.append(ev("response.function_call_arguments.done", item_id=item["id"],
                         output_index=0, arguments=item["arguments"]))
    else:
        text = item["content"][0]["text"]
        events.append(ev("response.output_item.added", output_index=0,
                         item=dict(item, status="in_progress", content=[])))
        events.append(ev("response.content_part.added", item_id=item["id"], output_index=0,
                         content_index=0,
                         part={"type": "output_text", "text": "", "annotations": []}))
        for piece in split_text(text, x.o["events"]):
            events.append(ev("response.output_text.delta", item_id=item["id"], output_index=0,
                             content_index=0, delta=piece))
        events.append(ev("response.output_text.done", item_id=item["id"], output_index=0,
                         content_index=0, text=text))
        events.append(ev("response.content_part.done", item_id=item["id"], output_index=0,
                         content_index=0, part=item["content"][0]))
    events.append(ev("response.output_item.done", output_index=0, item=item))
    events.append(ev("response.completed", response=done))
    return events


# ---- OpenAI Chat Completions ---------------------------------------------------

def chat_finished(body):
    return any(isinstance(m, dict) and m.get("role") == "tool" for m in body.get("messages") or [])


def chat_answer(x):
    base = {"id": "chatcmpl-fake-%d" % x.seq, "created": int(time.time()), "model": x.model,
            "system_fingerprint": None}
    tool = x.scripted_tool_turn(chat_finished(x.body))
    if tool:
        name, args = x.openai_tool()
        call = {"id": "call_fake_%d" % x.seq, "type": "function",
                "function": {"name": name, "arguments": args}}
        message, finish = {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
    else:
        text = x.o["final_text"] if x.o["script"] else x.text
        message, finish = {"role": "assistant", "content": text}, "stop"
    if not x.stream:
        return dict(base, object="chat.completion",
                    choices=[{"index": 0, "message": message, "finish_reason": finish}],
                    usage=openai_usage(x.usage, chat=True))
    with_usage = bool((x.body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta, finish_reason=None, choices=True):
        d = dict(base, object="chat.completion.chunk")
        d["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason}] \
            if choices else []
        if with_usage:
            d["usage"] = None
        return sse(None, d)

    events = [chunk({"role": "assistant", "content": ""})]
    if tool:
        c = message["tool_calls"][0]
        events.append(chunk({"tool_calls": [{"index": 0, "id": c["id"], "type": "function",
                                             "function": {"name": c["function"]["name"],
                                                          "arguments": ""}}]}))
        for piece in split_text(c["function"]["arguments"], 3):
            events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    else:
        for piece in split_text(message["content"], x.o["events"]):
            events.append(chunk({"content": piece}))
    events.append(chunk({}, finish))
    if with_usage:
        d = dict(base, object="chat.completion.chunk", choices=[],
                 usage=openai_usage(x.usage, chat=True))
        events.append(sse(None, d))
    events.append(b"data: [DONE]\n\n")
    return events


# ---- the server ----------------------------------------------------------------

def error_body(anthropic, status, message):
    kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "not_found_error", 429: "rate_limit_error", 500: "api_error",
             529: "overloaded_error"}
    if anthropic:
        return {"type": "error", "error": {"type": kinds.get(status, "api_error"),
                                           "message": message}}
    code = "invalid_api_key" if status == 401 else None
    return {"error": {"message": message, "type": "invalid_request_error" if status < 500
                      else "server_error", "param": None, "code": code}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-model/1"

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def credentials(self):
        return self.headers.get("x-api-key") or self.headers.get("authorization") or ""

    def read_body(self):
        if (self.headers.get("transfer-encoding") or "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def begin(self):
        raw = self.read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        u = urlsplit(self.path)
        with lock:
            self.record = {"seq": len(requests) + 1, "method": self.command, "path": u.path,
                           "query": u.query, "headers": {k.lower(): v for k, v in
                                                         self.headers.items()},
                           "body": body, "status": None, "completed": False, "aborted": False}
            if not u.path.startswith("/_fake/"):
                requests.append(self.record)
        return u.path, body

    def send_json(self, status, obj, extra=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.record["status"] = status

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def stream(self, x, events, extra):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.record["status"] = 200
        o = x.o
        if o["chunk_bytes"] > 0:
            whole = b"".join(events)
            for i in range(0, len(whole), o["chunk_bytes"]):
                self.write_chunk(whole[i:i + o["chunk_bytes"]])
                time.sleep(0.002)
        else:
            for i, e in enumerate(events):
                if o["stall_after"] == i:
                    time.sleep(o["stall_ms"] / 1000.0)
                elif i > 0 and o["delay_ms"]:
                    time.sleep(o["delay_ms"] / 1000.0)
                if o["stamp"]:
                    e = b": t=%d\n" % now_ns() + e
                self.write_chunk(e)
        self.wfile.write(b"0\r\n\r\n")

    def serve_api(self, path, body):
        anthropic = path.startswith("/v1/messages")
        if expected_key is not None:
            given = self.headers.get("x-api-key") if anthropic else None
            auth = self.headers.get("authorization") or ""
            if given != expected_key and auth != "Bearer " + expected_key:
                return self.send_json(401, error_body(anthropic, 401, "invalid x-api-key"))
        if path == "/v1/models":
            return self.send_json(200, {"object": "list", "data": [
                {"id": "fake-model", "object": "model", "type": "model"}]})
        if path == "/v1/messages/count_tokens":
            return self.send_json(200, {"input_tokens": 1234})
        x = Exchange(self, body)
        if x.o["status"]:
            return self.send_json(x.o["status"], error_body(anthropic, x.o["status"], "fake error"))
        answer = {"/v1/messages": anthropic_answer, "/v1/responses": responses_answer,
                  "/v1/chat/completions": chat_answer}.get(path)
        if not answer:
            return self.send_json(404, error_body(anthropic, 404, "no such path: " + path))
        extra = {"x-fake-echo": self.credentials()} if x.o["echo_auth"] else {}
        extra["request-id"] = "req_fake_%d" % x.seq
        result = answer(x)
        if not x.stream:
            if x.o["stall_after"] >= 0:
                time.sleep(x.o["stall_ms"] / 1000.0)
            return self.send_json(200, result, extra)
        self.stream(x, result, extra)

    def serve_control(self, path, body):
        global config
        if path == "/_fake/requests" and self.command == "GET":
            with lock:
                return self.send_json(200, list(requests))
        if path == "/_fake/requests" and self.command == "DELETE":
            with lock:
                requests.clear()
            return self.send_json(200, {"ok": True})
        if path == "/_fake/config":
            if self.command == "POST" and isinstance(body, dict):
                with lock:
                    if body.get("reset"):
                        config = json.loads(json.dumps(DEFAULTS))
                    config.update({k: v for k, v in body.items() if k != "reset"})
            with lock:
                return self.send_json(200, config)
        return self.send_json(404, {"error": "no such control endpoint"})

    def handle_any(self):
        path, body = self.begin()
        try:
            if path.startswith("/_fake/"):
                self.serve_control(path, body)
            else:
                self.serve_api(path, body)
            self.record["completed"] = True
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.record["aborted"] = True
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


def main():
    global expected_key
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", help="the only key accepted (default: any)")
    ap.add_argument("--script", action="store_true", help="tool call, then a final answer")
    ap.add_argument("--file-path", help="the file the scripted tool call writes")
    ap.add_argument("--content", help="what it writes there")
    args = ap.parse_args()
    expected_key = args.key
    config["script"] = 1 if args.script else 0
    if args.file_path:
        config["file_path"] = args.file_path
    if args.content is not None:
        config["content"] = args.content
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    srv = ThreadingHTTPServer((args.host, args.port), Handler)
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
