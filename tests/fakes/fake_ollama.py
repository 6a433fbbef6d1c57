#!/usr/bin/python3
"""A fake Ollama for tests: speaks Ollama's real HTTP API (GET /api/version, GET /api/tags,
POST /api/generate whole or NDJSON-streamed, POST /api/chat streamed, POST /api/pull with
progress) with scripted answers. Python 3 standard library only.

    fake_ollama.py --port 0 [--script script.json]     # prints "PORT <n>" once listening

The script (a JSON file, the FAKE_OLLAMA_SCRIPT environment variable holding JSON, or POSTed to
/_fake/script at run time) looks like:

    {"version": "0.5.7",
     "models": ["qwen2.5:7b", {"name": "qwen2.5:0.5b", "size": 397821319}],
     "token_delay_ms": 0,
     "rules": [
       {"model": "qwen2.5:7b", "pattern": "fizz", "response": "[{\\"input\\": \\"a\\"}]"},
       {"pattern": "boom", "status": 500, "error": "model runner crashed"},
       {"pattern": "stall", "hang_after": 3, "hang_ms": 600000},
       {"pattern": "cut", "disconnect_after": 3},
       {"pattern": "slow-start", "hang_ms": 5000},
       {"pattern": "bench", "response": "tok ", "repeat": 20000}
     ],
     "default": {"response": "Hello from the fake."},
     "pull": {"steps": 3, "fail": ["broken:model"]}}

A rule matches when its "model" (if any) equals the request's model and its "pattern" (a Python
regular expression, if any) is found in the prompt (generate) or the last message (chat). The
answer's text is cut into tokens (a word and its trailing space each) and streamed one NDJSON line
per token, token_delay_ms apart ("repeat" repeats the text). "hang_ms" before the answer (or after
"hang_after" tokens) stalls the connection; "disconnect_after" N tokens closes it mid-stream;
"status"+"error" answers an HTTP error like Ollama's {"error": "..."}. An unknown model gets
Ollama's 404. GET /_fake/requests lists the requests seen (path, model, prompt), newest last.
"""

import argparse
import json
import os
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_SCRIPT = {
    "version": "0.5.7",
    "models": ["qwen2.5:7b", "qwen2.5:0.5b"],
    "token_delay_ms": 0,
    "rules": [],
    "default": {"response": "Hello from the fake Ollama."},
    "pull": {"steps": 3, "fail": []},
}
MAX_BODY = 8 << 20
TOKEN_RE = re.compile(r"\S+\s*|\s+")


class State:
    def __init__(self, script):
        self.lock = threading.Lock()
        self.requests = []
        self.set_script(script)

    def set_script(self, script):
        merged = dict(DEFAULT_SCRIPT)
        merged.update(script or {})
        with self.lock:
            self.script = merged
            self.models = [self._model_entry(m) for m in merged["models"]]

    @staticmethod
    def _model_entry(m):
        if isinstance(m, str):
            m = {"name": m}
        name = m["name"]
        return {"name": name, "model": name, "modified_at": "2025-01-01T00:00:00Z",
                "size": m.get("size", 4683087332), "digest": m.get("digest", "sha256:" + "ab" * 32),
                "details": {"format": "gguf", "family": "qwen2",
                            "parameter_size": m.get("parameter_size", "7.6B"),
                            "quantization_level": m.get("quantization_level", "Q4_K_M")}}

    def has_model(self, name):
        with self.lock:
            names = [m["name"] for m in self.models]
        return name in names or (":" not in name and name + ":latest" in names)

    def add_model(self, name):
        with self.lock:
            if name not in [m["name"] for m in self.models]:
                self.models.append(self._model_entry(name))

    def rule_for(self, model, text):
        with self.lock:
            rules = list(self.script.get("rules", []))
            default = dict(self.script.get("default", {}))
        for r in rules:
            if "model" in r and r["model"] != model:
                continue
            if "pattern" in r and not re.search(r["pattern"], text or "", re.S):
                continue
            return r
        return default

    def log(self, entry):
        with self.lock:
            self.requests.append(entry)
            del self.requests[:-200]


def now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-ollama"

    def log_message(self, fmt, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle and delayed ACKs
        # add 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def state(self):
        return self.server.state

    # --- plumbing ---------------------------------------------------------------------------

    def read_json(self):
        n = int(self.headers.get("content-length") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large")
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw.decode() or "{}")

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def cut(self):
        """A mid-stream disconnect: the socket closes without the chunked terminator."""
        self.wfile.flush()
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True

    # --- routes -----------------------------------------------------------------------------

    def do_GET(self):
        if self.path == "/api/version":
            self.send_json(200, {"version": self.state.script.get("version", "0.5.7")})
        elif self.path == "/api/tags":
            with self.state.lock:
                models = list(self.state.models)
            self.send_json(200, {"models": models})
        elif self.path == "/_fake/requests":
            with self.state.lock:
                reqs = list(self.state.requests)
            self.send_json(200, {"requests": reqs})
        elif self.path == "/":
            body = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_json(404, {"error": "404 page not found"})

    def do_POST(self):
        try:
            body = self.read_json()
        except ValueError as e:
            self.send_json(400, {"error": "invalid request: %s" % e})
            return
        if self.path == "/_fake/script":
            self.state.set_script(body)
            self.send_json(200, {"ok": True})
        elif self.path == "/api/generate":
            self.generate(body, chat=False)
        elif self.path == "/api/chat":
            self.generate(body, chat=True)
        elif self.path == "/api/pull":
            self.pull(body)
        else:
            self.send_json(404, {"error": "404 page not found"})

    def generate(self, body, chat):
        model = body.get("model") or ""
        if chat:
            msgs = body.get("messages") or []
            text = msgs[-1].get("content", "") if msgs else ""
        else:
            text = body.get("prompt", "")
        self.state.log({"path": self.path, "model": model, "prompt": text,
                        "stream": body.get("stream", True), "options": body.get("options"),
                        "format": body.get("format")})
        if not model:
            self.send_json(400, {"error": "model is required"})
            return
        if not self.state.has_model(model):
            self.send_json(404, {"error": "model \"%s\" not found, try pulling it first" % model})
            return
        rule = self.state.rule_for(model, text)
        hang_after = rule.get("hang_after")
        if rule.get("hang_ms") and hang_after is None:
            time.sleep(rule["hang_ms"] / 1000.0)
        if "error" in rule:
            self.send_json(int(rule.get("status", 500)), {"error": rule["error"]})
            return
        response = rule.get("response", "") * int(rule.get("repeat", 1))
        if not body.get("stream", True):
            out = {"model": model, "created_at": now_iso(), "done": True, "done_reason": "stop",
                   "total_duration": 1000, "eval_count": len(TOKEN_RE.findall(response))}
            if chat:
                out["message"] = {"role": "assistant", "content": response}
            else:
                out["response"] = response
            self.send_json(200, out)
            return
        self.stream_tokens(model, response, rule, chat)

    def token_line(self, model, tok, chat):
        # The same bytes json.dumps would give, without its cost per token (the bench streams
        # tens of thousands): the fixed part is formatted once per stream.
        key = (model, chat)
        cache = self.__dict__.setdefault("_line_cache", {})
        if key not in cache:
            head = '{"model": %s, "created_at": "%s", "done": false, ' % (json.dumps(model),
                                                                         now_iso())
            cache[key] = (head + ('"message": {"role": "assistant", "content": ' if chat
                                  else '"response": '), "}}\n" if chat else "}\n", {})
        head, tail, toks = cache[key]
        if tok not in toks:
            toks[tok] = (head + json.dumps(tok) + tail).encode()
        return toks[tok]

    def stream_tokens(self, model, response, rule, chat):
        tokens = TOKEN_RE.findall(response)
        delay = rule.get("token_delay_ms", self.state.script.get("token_delay_ms", 0)) / 1000.0
        cut_at = rule.get("disconnect_after")
        hang_after = rule.get("hang_after")
        self.start_stream()
        if delay == 0 and cut_at is None and hang_after is None:
            # As fast as possible: many lines per write, so the fake is not the bottleneck.
            batch = []
            for tok in tokens:
                batch.append(self.token_line(model, tok, chat))
                if len(batch) >= 256:
                    self.chunk(b"".join(batch))
                    batch = []
            if batch:
                self.chunk(b"".join(batch))
        else:
            for i, tok in enumerate(tokens):
                if cut_at is not None and i >= cut_at:
                    self.cut()
                    return
                if hang_after is not None and i >= hang_after:
                    self.wfile.flush()
                    time.sleep(rule.get("hang_ms", 3600000) / 1000.0)
                    self.cut()
                    return
                self.chunk(self.token_line(model, tok, chat))
                self.wfile.flush()
                if delay:
                    time.sleep(delay)
            if cut_at is not None and cut_at >= len(tokens):
                self.cut()
                return
        final = {"model": model, "created_at": now_iso(), "done": True, "done_reason": "stop",
                 "total_duration": 1000, "eval_count": len(tokens)}
        if chat:
            final["message"] = {"role": "assistant", "content": ""}
        else:
            final["response"] = ""
        self.chunk((json.dumps(final) + "\n").encode())
        self.end_stream()

    def pull(self, body):
        name = body.get("model") or body.get("name") or ""
        self.state.log({"path": self.path, "model": name})
        if not name:
            self.send_json(400, {"error": "model is required"})
            return
        conf = self.state.script.get("pull", {})
        stream = body.get("stream", True)
        if name in conf.get("fail", []):
            err = {"error": "pull model manifest: file does not exist"}
            if not stream:
                self.send_json(500, err)
                return
            self.start_stream()
            self.chunk((json.dumps({"status": "pulling manifest"}) + "\n").encode())
            self.chunk((json.dumps(err) + "\n").encode())
            self.end_stream()
            return
        steps = int(conf.get("steps", 3))
        total = 1000 * steps
        lines = [{"status": "pulling manifest"}]
        for i in range(1, steps + 1):
            lines.append({"status": "pulling %s" % ("ab" * 6), "digest": "sha256:" + "ab" * 32,
                          "total": total, "completed": 1000 * i})
        lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"},
                  {"status": "success"}]
        self.state.add_model(name)
        if not stream:
            self.send_json(200, {"status": "success"})
            return
        self.start_stream()
        for line in lines:
            self.chunk((json.dumps(line) + "\n").encode())
            self.wfile.flush()
        self.end_stream()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description="A fake Ollama speaking the real HTTP API.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=11434)
    ap.add_argument("--script", help="JSON script file (else $FAKE_OLLAMA_SCRIPT, else defaults)")
    args = ap.parse_args()
    script = None
    if args.script:
        with open(args.script) as f:
            script = json.load(f)
    elif os.environ.get("FAKE_OLLAMA_SCRIPT"):
        script = json.loads(os.environ["FAKE_OLLAMA_SCRIPT"])
    srv = Server((args.host, args.port), Handler)
    srv.state = State(script)
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
