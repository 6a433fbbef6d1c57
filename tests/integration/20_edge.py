"""The HTTP edge through `edgecoder edge-demo`, over plain HTTP and real HTTPS: routing and error
bodies, body limits (Content-Length and chunked), JSON errors, request ids, the access log,
/metrics, auth, keep-alive, static files with ETags, TLS versions, client IP trust, graceful stop
and config errors."""

import json
import os
import re
import signal
import socket
import ssl
import threading
import time
import unittest
import warnings

import harness

CERTS = harness.DevCerts()
CERT, KEY = CERTS.issue("edge", role="coordinator", ident="edge-test")
TOKEN = "demo-token-0123456789"
CREATED_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{12}$")


def demo_env(port, tls, **extra):
    env = {"EDGE_DEMO_PORT": str(port), "EDGE_DEMO_TOKEN": TOKEN, "EDGECODER_HTTP_THREADS": "16"}
    if tls:
        env["EDGECODER_HTTP_TLS_CERT"] = CERT
        env["EDGECODER_HTTP_TLS_KEY"] = KEY
    env.update(extra)
    return env


def metric_value(text, name, **labels):
    """The sample of `name` whose labels are exactly `labels`, or 0 when there is none."""
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    line = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(name), re.escape(want)), text, re.M)
    return float(line.group(1)) if line else 0.0


class EdgeChecks:
    """Checks run against one shared server per scheme (subclasses set TLS)."""

    TLS = False

    @classmethod
    def setUpClass(cls):
        cls.port = harness.free_port()
        cls.proc = harness.Proc(["edge-demo"], env=demo_env(cls.port, cls.TLS), port=cls.port)
        cls.base = "%s://127.0.0.1:%d" % ("https" if cls.TLS else "http", cls.port)
        cls.ctx = harness.tls_client_context(ca=CERTS.ca) if cls.TLS else None

    @classmethod
    def tearDownClass(cls):
        assert cls.proc.stop() == 0, cls.proc.output()[-4000:]

    def req(self, method, path, **kw):
        return harness.request(method, self.base + path, ctx=self.ctx, **kw)

    def raw(self, data, read_until_close=True, timeout=10.0):
        """Sends raw bytes on a fresh connection and returns everything read back."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.TLS:
            sock = self.ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        try:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
                # The server may answer (431/413) and close before it read everything; its
                # answer is still there to read.
                pass
            out = b""
            while True:
                try:
                    chunk = sock.recv(65536)
                except (ConnectionResetError, ssl.SSLError):
                    break
                if not chunk:
                    break
                out += chunk
                if not read_until_close and b"\r\n\r\n" in out:
                    head, _, body = out.partition(b"\r\n\r\n")
                    m = re.search(rb"content-length: (\d+)", head, re.I)
                    if m and len(body) >= int(m.group(1)):
                        break
            return out
        finally:
            sock.close()

    def metrics(self):
        r = self.req("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("content-type").startswith("text/plain"))
        return r.body.decode()

    # --- routing and error bodies ------------------------------------------------------------

    def test_hello(self):
        r = self.req("GET", "/demo/hello")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"ok": True, "message": "hello"})
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertEqual(r.header("cache-control"), "no-store")
        h = self.req("HEAD", "/demo/hello")
        self.assertEqual(h.status, 200)
        self.assertEqual(h.body, b"")
        self.assertEqual(h.header("content-length"), str(len(r.body)))

    def test_not_found_and_method_not_allowed(self):
        r = self.req("GET", "/demo/nope")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json(), {"error": "not_found"})
        r = self.req("GET", "/demo/hello/")  # a trailing slash is another path
        self.assertEqual(r.status, 404)
        r = self.req("DELETE", "/demo/hello")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.json(), {"error": "method_not_allowed"})
        self.assertEqual(r.header("allow"), "GET, HEAD")
        r = self.req("GET", "/demo/echo")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "POST")
        r = self.req("POST", "/index.html", body=b"x")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "GET, HEAD")

    def test_params_and_bad_paths(self):
        r = self.req("GET", "/demo/items/4%32")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["id"], 42)
        r = self.req("GET", "/demo/items/abc")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json(), {"error": "item_not_found"})
        for path in ("/demo/%2e%2e/demo/hello", "/demo/../demo/hello", "/demo/items/1%00",
                     "/demo/items/%zz"):
            r = self.req("GET", path)
            self.assertEqual(r.status, 400, path)
            self.assertEqual(r.json()["error"], "invalid_path", path)

    def test_slow_validates_its_query(self):
        r = self.req("GET", "/demo/slow?ms=abc")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"], "invalid_request")
        self.assertIn('"abc"', r.json()["reason"])
        r = self.req("GET", "/demo/slow?ms=5")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"ok": True, "sleptMs": 5})

    # --- bodies ------------------------------------------------------------------------------

    def test_echo(self):
        doc = {"a": [1, 2, {"b": "c"}], "n": 9007199254740993}
        r = self.req("POST", "/demo/echo", body=doc)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), doc)

    def test_malformed_json_names_line_and_column(self):
        r = self.req("POST", "/demo/echo", body='{\n  "a": 1,\n  "b": }',
                     headers={"content-type": "application/json"})
        self.assertEqual(r.status, 400)
        body = r.json()
        self.assertEqual(body["error"], "invalid_json")
        self.assertRegex(body["reason"], r" at line 3 column \d+$")
        r = self.req("POST", "/demo/echo", body=b"")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"], "invalid_json")

    def test_body_over_limit_with_content_length(self):
        r = self.req("POST", "/demo/echo", body=json.dumps({"x": "y" * 1100}))
        self.assertEqual(r.status, 413)
        self.assertEqual(r.json()["error"], "payload_too_large")
        self.assertEqual(r.header("connection"), "close")
        # Exactly the limit is fine.
        doc = json.dumps({"x": "y" * (1024 - 9)})
        self.assertEqual(len(doc), 1024)
        self.assertEqual(self.req("POST", "/demo/echo", body=doc).status, 200)
        # A huge Content-Length is refused at once, without waiting for (or reading) the body.
        started = time.monotonic()
        out = self.raw(b"POST /demo/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n"
                       b"Content-Type: application/json\r\n\r\n{", read_until_close=False)
        self.assertLess(time.monotonic() - started, 3.0)
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:200])
        self.assertIn(b'"error":"payload_too_large"', out)

    def test_body_over_limit_chunked(self):
        conn = harness.connect(self.base, ctx=self.ctx)
        try:
            chunks = [b'{"x":"' + b"y" * 600, b"y" * 600 + b'"}']
            conn.request("POST", "/demo/echo", body=iter(chunks), encode_chunked=True,
                         headers={"Transfer-Encoding": "chunked", "content-type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            self.assertEqual(r.status, 413)
            self.assertEqual(json.loads(body)["error"], "payload_too_large")
        finally:
            conn.close()
        # Chunked and under the limit: read in full.
        conn = harness.connect(self.base, ctx=self.ctx)
        try:
            conn.request("POST", "/demo/echo", body=iter([b'{"a":', b"[1,2", b",3]}"]),
                         encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(json.loads(r.read()), {"a": [1, 2, 3]})
        finally:
            conn.close()

    def test_malformed_requests_get_a_json_error(self):
        # Headers over max_request_size: civetweb 1.15 calls that a malformed message (400).
        out = self.raw(b"GET /demo/hello HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertIn(int(head.split(b" ", 2)[1]), (400, 413, 431))
        self.assertIn(b"connection: close", head.lower())
        self.assertIn(json.loads(body)["error"], ("invalid_request", "request_too_large"))
        out = self.raw(b"GET /demo/hello HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 4"), head)
        self.assertIn("error", json.loads(body))
        # The server is still fine.
        self.assertEqual(self.req("GET", "/demo/hello").status, 200)

    # --- request ids and the access log ----------------------------------------------------

    def test_request_id(self):
        r = self.req("GET", "/demo/items/7", headers={"x-request-id": "caller-id.1:A_b"})
        self.assertEqual(r.header("x-request-id"), "caller-id.1:A_b")
        self.assertEqual(r.json(), {"id": 7, "requestId": "caller-id.1:A_b"})
        r = self.req("GET", "/demo/hello")
        self.assertRegex(r.header("x-request-id"), CREATED_ID)
        for bad in ("has space", "a" * 65, "semi;colon", "quote\"d"):
            r = self.req("GET", "/demo/items/8", headers={"x-request-id": bad})
            self.assertRegex(r.header("x-request-id"), CREATED_ID, bad)
            self.assertEqual(r.json()["requestId"], r.header("x-request-id"))
        # Errors carry one too.
        r = self.req("GET", "/demo/nope", headers={"x-request-id": "err-1"})
        self.assertEqual(r.header("x-request-id"), "err-1")

    def test_access_log(self):
        secret_header = "hdr-value-never-logged-4711"
        rid = "log-check-%d" % self.port
        r = self.req("GET", "/demo/items/99", headers={"x-request-id": rid, "x-custom": secret_header,
                                                       "x-demo-token": "wrong-token-value-xyz"})
        self.assertEqual(r.status, 200)
        item_bytes = len(r.body)
        r = self.req("GET", "/demo/secret", headers={"x-request-id": rid + "-s",
                                                     "x-demo-token": TOKEN})
        self.assertEqual(r.status, 200)
        r = self.req("POST", "/demo/echo", body='{"body-secret": "never-logged-body-0815"}')
        self.assertEqual(r.status, 200)
        deadline = time.monotonic() + 5
        while True:
            lines = [l for l in self.proc.log_lines() if l.get("msg") == "http request"]
            mine = [l for l in lines if l.get("req_id") == rid]
            if mine or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(len(mine), 1, lines[-5:])
        line = mine[0]
        self.assertEqual(line["method"], "GET")
        self.assertEqual(line["route"], "/demo/items/:id")  # the pattern, not the path
        self.assertEqual(line["status"], 200)
        self.assertIsInstance(line["dur_ms"], float)
        self.assertEqual(line["bytes"], item_bytes)
        self.assertEqual(line["client_ip"], "127.0.0.1")
        self.assertEqual(line["lvl"], "info")
        out = self.proc.output()
        for never in (secret_header, "wrong-token-value-xyz", TOKEN, "never-logged-body-0815"):
            self.assertNotIn(never, out)

    # --- metrics -----------------------------------------------------------------------------

    def test_metrics(self):
        before = self.metrics()
        for _ in range(5):
            self.assertEqual(self.req("GET", "/demo/hello").status, 200)
        self.assertEqual(self.req("GET", "/demo/items/x").status, 404)
        for _ in range(2):
            self.assertEqual(self.req("GET", "/no/such/path").status, 404)
        self.assertEqual(self.req("PUT", "/demo/hello", body=b"{}").status, 405)
        after = self.metrics()

        def delta(name, **labels):
            return metric_value(after, name, **labels) - metric_value(before, name, **labels)

        total = "edgecoder_http_requests_total"
        self.assertEqual(delta(total, route="/demo/hello", method="GET", status="200"), 5)
        self.assertEqual(delta(total, route="/demo/items/:id", method="GET", status="404"), 1)
        self.assertEqual(delta(total, route="unmatched", method="GET", status="404"), 2)
        self.assertEqual(delta(total, route="unmatched", method="PUT", status="405"), 1)
        self.assertEqual(delta(total, route="/metrics", method="GET", status="200"), 1)
        hist = "edgecoder_http_request_duration_seconds"
        self.assertEqual(delta(hist + "_count", route="/demo/hello"), 5)
        self.assertEqual(delta(hist + "_bucket", route="/demo/hello", le="+Inf"), 5)
        self.assertGreater(delta(hist + "_sum", route="/demo/hello"), 0)
        self.assertGreaterEqual(metric_value(after, hist + "_bucket", route="/demo/hello", le="10"),
                                metric_value(after, hist + "_bucket", route="/demo/hello", le="0.001"))
        # The scrape itself is in flight while it renders.
        self.assertRegex(after, r"(?m)^edgecoder_http_requests_in_flight 1$")
        self.assertIn("# TYPE edgecoder_http_request_duration_seconds histogram", after)

    # --- auth --------------------------------------------------------------------------------

    def test_auth(self):
        r = self.req("GET", "/demo/secret")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json(), {"error": "unauthorized"})
        for wrong in ("x", TOKEN[:-1] + "X", TOKEN + "X", ""):
            r = self.req("GET", "/demo/secret", headers={"x-demo-token": wrong})
            self.assertEqual(r.status, 401, wrong)
            self.assertEqual(r.json(), {"error": "unauthorized"})
        r = self.req("GET", "/demo/secret", headers={"x-demo-token": TOKEN})
        self.assertEqual(r.status, 200)
        self.assertTrue(r.json()["ok"])

    # --- connections -------------------------------------------------------------------------

    def test_keep_alive(self):
        conn = harness.connect(self.base, ctx=self.ctx)
        try:
            r = harness.request("GET", self.base + "/demo/hello", conn=conn)
            self.assertEqual(r.header("connection"), "keep-alive")
            sock = conn.sock
            for i in range(200):
                path = "/demo/hello" if i % 2 else "/demo/items/%d" % i
                r = harness.request("GET", self.base + path, conn=conn)
                self.assertEqual(r.status, 200)
            # Errors keep the connection too.
            self.assertEqual(harness.request("GET", self.base + "/nope", conn=conn).status, 404)
            self.assertEqual(harness.request("GET", self.base + "/demo/hello", conn=conn).status, 200)
            self.assertIs(conn.sock, sock, "the connection was reopened")
        finally:
            conn.close()

    # --- static files ------------------------------------------------------------------------

    def test_static_and_etag(self):
        r = self.req("GET", "/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
        with open(os.path.join(harness.ROOT, "assets", "demo", "index.html"), "rb") as f:
            self.assertEqual(r.body, f.read())
        etag = r.header("etag")
        self.assertRegex(etag, r'^"[0-9a-f]{16}"$')
        self.assertEqual(r.header("cache-control"), "no-cache")
        self.assertEqual(self.req("GET", "/index.html").header("etag"), etag)
        r = self.req("GET", "/", headers={"if-none-match": etag})
        self.assertEqual(r.status, 304)
        self.assertEqual(r.body, b"")
        self.assertEqual(r.header("etag"), etag)
        r = self.req("GET", "/", headers={"if-none-match": '"other", W/' + etag})
        self.assertEqual(r.status, 304)
        r = self.req("GET", "/", headers={"if-none-match": '"other"'})
        self.assertEqual(r.status, 200)
        self.assertEqual(self.req("GET", "/missing.css").status, 404)


class PlainHTTP(EdgeChecks, harness.TestCase):
    TLS = False


class HTTPS(EdgeChecks, harness.TestCase):
    TLS = True

    def test_tls_versions(self):
        def handshake(version):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            # Let this client offer old versions, so that any refusal is the server's.
            ctx.set_ciphers("ALL:@SECLEVEL=0")
            ctx.minimum_version = version
            ctx.maximum_version = version
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
                with ctx.wrap_socket(raw) as tls:
                    return tls.version()

        self.assertEqual(handshake(ssl.TLSVersion.TLSv1_2), "TLSv1.2")
        self.assertEqual(handshake(ssl.TLSVersion.TLSv1_3), "TLSv1.3")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 itself
            for old in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
                with self.assertRaises(ssl.SSLError) as cm:
                    handshake(old)
                # The server's protocol_version alert, not this client declining to offer it.
                self.assertIn("ALERT_PROTOCOL_VERSION", str(cm.exception))

    def test_certificate_verifies(self):
        ctx = harness.tls_client_context(ca=CERTS.ca)
        r = harness.request("GET", "https://localhost:%d/demo/hello" % self.port, ctx=ctx)
        self.assertEqual(r.status, 200)
        foreign = harness.DevCerts()
        with self.assertRaises(ssl.SSLCertVerificationError):
            harness.request("GET", self.base + "/demo/hello",
                            ctx=harness.tls_client_context(ca=foreign.ca))

    def test_plain_http_to_tls_port_fails_cleanly(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"GET /demo/hello HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b""
            self.assertFalse(data.startswith(b"HTTP/1.1 200"))
        self.assertEqual(self.req("GET", "/demo/hello").status, 200)


class Database(harness.TestCase):
    """GET /demo/db through the PostgreSQL pool, and a 503 while the database is down."""

    def test_db_route_and_outage(self):
        pg = harness.postgres()
        url = pg.create_db("edge_demo_db")
        port = harness.free_port()
        proc = self.spawn(["edge-demo"], env=demo_env(port, False, DATABASE_URL=url), port=port)
        base = "http://127.0.0.1:%d" % port
        r = harness.request("GET", base + "/demo/db?n=41")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json(), {"ok": True, "value": 42})
        r = harness.request("GET", base + "/demo/db?n=1%3B%20DROP%20TABLE%20x")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"], "invalid_request")
        pg.stop()
        try:
            r = harness.request("GET", base + "/demo/db?n=1", headers={"x-request-id": "db-down"})
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json(), {"error": "database_unavailable"})  # no internals
            self.assertEqual(r.header("retry-after"), "1")
            # The breaker is open: the next one fails fast.
            started = time.monotonic()
            self.assertEqual(harness.request("GET", base + "/demo/db?n=1").status, 503)
            self.assertLess(time.monotonic() - started, 1.5)
            # Other routes do not care.
            self.assertEqual(harness.request("GET", base + "/demo/hello").status, 200)
        finally:
            pg.start()
        deadline = time.monotonic() + 15
        while True:
            r = harness.request("GET", base + "/demo/db?n=1")
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["value"], 2)
        self.assertEqual(proc.stop(), 0)
        failed = [l for l in proc.log_lines() if l.get("msg") == "request failed"]
        self.assertTrue(any(l.get("req_id") == "db-down" and l.get("error") == "database_unavailable"
                            and l.get("reason") for l in failed), failed)
        self.assertNotIn(url, proc.output())

    def test_db_outage_under_load(self):
        """PostgreSQL stopped and started while 8 keep-alive clients hammer the DB route: every
        answer is 200 or 503 database_unavailable (never another status, never a dropped
        connection), the outage shows as 503s, and everything succeeds again afterwards."""
        pg = harness.postgres()
        url = pg.create_db("edge_demo_load")
        port = harness.free_port()
        proc = self.spawn(["edge-demo"], env=demo_env(port, False, DATABASE_URL=url), port=port)
        base = "http://127.0.0.1:%d" % port
        stop = threading.Event()
        phase = {"name": "before"}
        seen = {}  # (phase, status) -> count
        problems = []
        lock = threading.Lock()

        def client(n):
            conn = harness.connect(base)
            i = 0
            while not stop.is_set():
                i += 1
                name = phase["name"]
                try:
                    r = harness.request("GET", base + "/demo/db?n=%d" % i, conn=conn)
                except Exception as e:  # a dropped connection is a failure of the edge
                    with lock:
                        problems.append("client %d: %r" % (n, e))
                    conn.close()
                    conn = harness.connect(base)
                    continue
                ok = (r.status == 200 and r.json()["value"] == i + 1) or (
                    r.status == 503 and r.json() == {"error": "database_unavailable"})
                with lock:
                    seen[(name, r.status)] = seen.get((name, r.status), 0) + 1
                    if not ok:
                        problems.append("client %d: %d %r" % (n, r.status, r.body[:200]))
            conn.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            phase["name"] = "down"
            pg.stop()
            time.sleep(2.0)
        finally:
            pg.start()
            phase["name"] = "recovering"
        # Recovery: within the breaker's longest back-off plus slack, answers are 200 again.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if harness.request("GET", base + "/demo/db?n=1").status == 200:
                break
            time.sleep(0.1)
        phase["name"] = "after"
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(30)
        self.assertEqual(problems, [])
        self.assertGreater(seen.get(("before", 200), 0), 0, seen)
        self.assertGreater(seen.get(("down", 503), 0), 0, seen)
        self.assertGreater(seen.get(("after", 200), 0), 0, seen)
        self.assertEqual(seen.get(("after", 503), 0), 0, seen)
        self.assertEqual(proc.stop(), 0)

    def test_db_route_without_database_url(self):
        port = harness.free_port()
        proc = self.spawn(["edge-demo"], env=demo_env(port, False), port=port)
        r = harness.request("GET", "http://127.0.0.1:%d/demo/db" % port)
        self.assertEqual(r.status, 503)
        self.assertEqual(r.json(), {"error": "database_unavailable"})
        self.assertEqual(proc.stop(), 0)


class Lifecycle(harness.TestCase):
    """Each test runs its own server."""

    def test_graceful_stop_finishes_in_flight_requests(self):
        for tls in (False, True):
            port = harness.free_port()
            proc = self.spawn(["edge-demo"], env=demo_env(port, tls), port=port)
            base = "%s://127.0.0.1:%d" % ("https" if tls else "http", port)
            ctx = harness.tls_client_context(ca=CERTS.ca) if tls else None
            result = {}

            def slow():
                try:
                    result["r"] = harness.request("GET", base + "/demo/slow?ms=1500", ctx=ctx,
                                                  timeout=20)
                except Exception as e:  # reported below
                    result["e"] = e

            t = threading.Thread(target=slow)
            t.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # until the slow request is being handled
                text = harness.request("GET", base + "/metrics", ctx=ctx).body.decode()
                if re.search(r"(?m)^edgecoder_http_requests_in_flight 2$", text):
                    break
                time.sleep(0.02)
            stop_sent = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            t.join(20)
            self.assertNotIn("e", result)
            self.assertEqual(result["r"].status, 200)
            self.assertEqual(result["r"].json(), {"ok": True, "sleptMs": 1500})
            self.assertEqual(proc.stop(), 0)
            self.assertLess(time.monotonic() - stop_sent, 15)
            msgs = [l.get("msg") for l in proc.log_lines()]
            self.assertIn("http edge stopped", msgs)
            slow_lines = [l for l in proc.log_lines() if l.get("route") == "/demo/slow"]
            self.assertEqual(slow_lines[0]["status"], 200)
            self.assertGreaterEqual(slow_lines[0]["dur_ms"], 1500)
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()

    def test_sigint_stops_cleanly(self):
        port = harness.free_port()
        proc = self.spawn(["edge-demo"], env=demo_env(port, False), port=port)
        self.assertEqual(harness.request("GET", "http://127.0.0.1:%d/demo/hello" % port).status, 200)
        self.assertEqual(proc.stop(signal.SIGINT), 0)

    def test_trusted_proxy_header(self):
        port = harness.free_port()
        proc = self.spawn(["edge-demo"], port=port,
                          env=demo_env(port, False, EDGECODER_TRUST_PROXY_HEADER="fly-client-ip"))
        base = "http://127.0.0.1:%d" % port
        harness.request("GET", base + "/demo/hello",
                        headers={"fly-client-ip": "203.0.113.7", "x-request-id": "proxied"})
        harness.request("GET", base + "/demo/hello",
                        headers={"fly-client-ip": "not an ip", "x-request-id": "garbage"})
        harness.request("GET", base + "/demo/hello",
                        headers={"x-forwarded-for": "198.51.100.1", "x-request-id": "other-hdr"})
        self.assertEqual(proc.stop(), 0)
        ips = {l["req_id"]: l["client_ip"] for l in proc.log_lines() if l.get("msg") == "http request"}
        self.assertEqual(ips["proxied"], "203.0.113.7")
        self.assertEqual(ips["garbage"], "127.0.0.1")
        self.assertEqual(ips["other-hdr"], "127.0.0.1")

    def test_untrusted_proxy_header_is_ignored(self):
        port = harness.free_port()
        proc = self.spawn(["edge-demo"], env=demo_env(port, False), port=port)
        harness.request("GET", "http://127.0.0.1:%d/demo/hello" % port,
                        headers={"fly-client-ip": "203.0.113.7", "x-request-id": "spoof"})
        self.assertEqual(proc.stop(), 0)
        ips = {l["req_id"]: l["client_ip"] for l in proc.log_lines() if l.get("msg") == "http request"}
        self.assertEqual(ips["spoof"], "127.0.0.1")

    def test_pem_file_not_left_behind(self):
        tmp = os.path.join(CERTS.dir, "tmp")
        os.makedirs(tmp, exist_ok=True)
        port = harness.free_port()
        proc = self.spawn(["edge-demo"], env=demo_env(port, True, TMPDIR=tmp), port=port)
        self.assertEqual(harness.request("GET", "https://127.0.0.1:%d/demo/hello" % port).status, 200)
        self.assertEqual(os.listdir(tmp), [])  # removed once civetweb loaded it
        self.assertEqual(proc.stop(), 0)

    def test_config_errors_exit_78_listing_every_problem(self):
        rc, out, err = harness.run(["edge-demo"], env={"EDGECODER_HTTP_THREADS": "abc",
                                                       "EDGE_DEMO_PORT": "99999"})
        self.assertEqual(rc, 78, err)
        self.assertIn("EDGECODER_HTTP_THREADS", err)
        self.assertIn('"abc"', err)
        self.assertIn("EDGE_DEMO_PORT", err)
        self.assertIn("99999", err)
        self.assertIn("2 problems", err)
        rc, out, err = harness.run(["edge-demo"], env={"EDGECODER_HTTP_TLS_CERT": CERT,
                                                       "EDGE_DEMO_TOKEN": "s3cret-config"})
        self.assertEqual(rc, 78)
        self.assertIn("EDGECODER_HTTP_TLS_KEY", err)
        self.assertNotIn("s3cret-config", err)

    def test_port_in_use_fails(self):
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            s.listen(1)
            port = s.getsockname()[1]
            rc, out, err = harness.run(["edge-demo"], env=demo_env(port, False))
            self.assertEqual(rc, 1)
            self.assertIn("cannot start the edge", err)

    def test_help_config(self):
        rc, out, err = harness.run(["edge-demo", "--help-config"], env={"EDGE_DEMO_TOKEN": "zzz-secret"})
        self.assertEqual(rc, 0)
        for var in ("EDGE_DEMO_PORT", "EDGECODER_HTTP_TLS_CERT", "EDGECODER_HTTP_TLS_KEY",
                    "EDGECODER_HTTP_THREADS", "EDGECODER_TRUST_PROXY_HEADER", "EDGE_DEMO_TOKEN"):
            self.assertIn(var, out)
        self.assertIn("(secret)", out)
        self.assertNotIn("zzz-secret", out)


if __name__ == "__main__":
    unittest.main()
