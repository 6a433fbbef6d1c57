#!/usr/bin/python3
"""A stand-in for the control plane's discovery registry, until the control plane exists.

It serves GET /network/coordinators exactly as the original control plane did
(original-system.md §2.3, §10): public, JSON {generatedAt, count, coordinators:[{peerId,
coordinatorUrl, source}]}, the first entry the "bootstrap" one. The coordinators come from the
command line and can be replaced at run time.

    /usr/bin/python3 tests/fakes/registry_standin.py --port 0 \\
        --coordinator bootstrap=http://127.0.0.1:4301 --coordinator coord-b=http://...:4302

Stdout: {"event":"listening","port":N} once serving, then {"event":"call","path":...} per
request. Stdin: one JSON line {"coordinators":[{"peerId":..,"coordinatorUrl":..,"source":..}]}
replaces the list; {"mode":"down"} answers 503 to everything, {"mode":"ok"} restores."""

import argparse
import datetime
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_lock = threading.Lock()
_state = {"coordinators": [], "mode": "ok"}


def emit(obj):
    with _lock:
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        emit({"event": "call", "method": "GET", "path": self.path})
        with _lock:
            mode = _state["mode"]
            coordinators = list(_state["coordinators"])
        if mode != "ok":
            return self.reply(503, {"error": "registry_unavailable"})
        if self.path.split("?")[0] != "/network/coordinators":
            return self.reply(404, {"error": "not_found"})
        now = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
        self.reply(200, {"generatedAt": now, "count": len(coordinators),
                         "coordinators": coordinators})


def read_stdin():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        obj = json.loads(line)
        with _lock:
            if "coordinators" in obj:
                _state["coordinators"] = obj["coordinators"]
            if "mode" in obj:
                _state["mode"] = obj["mode"]
        emit({"event": "updated"})


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--coordinator", action="append", default=[],
                    help="peerId=url; the first is the bootstrap entry")
    args = ap.parse_args(argv)
    for i, spec in enumerate(args.coordinator):
        peer, _, url = spec.partition("=")
        _state["coordinators"].append({"peerId": peer, "coordinatorUrl": url,
                                       "source": "bootstrap" if i == 0 else "mesh"})
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=read_stdin, daemon=True).start()
    emit({"event": "listening", "port": server.server_address[1]})
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
