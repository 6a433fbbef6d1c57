"""The mesh RPC runtime over mutual TLS, with real processes and real certificates: caller roles
from SPIFFE ids, refused certificates, deadlines, streaming, graceful shutdown under ASan, and a
load of 4 threads x 1,000 concurrent calls. The client is our own (`edgecoder mesh-demo --call`
and `--bench`), so its error messages are checked too."""

import json
import os
import signal
import subprocess
import time
import unittest

import harness


def issue_expired(certs, name, role, ident):
    """A leaf signed by `certs`' CA whose validity ended in 2020 (`openssl x509 -req` cannot
    backdate in OpenSSL 3.0; `openssl ca -startdate/-enddate` can)."""
    d = os.path.join(certs.dir, "expired-ca")
    os.makedirs(os.path.join(d, "newcerts"), exist_ok=True)
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")
    cnf = os.path.join(d, "ca.cnf")
    with open(cnf, "w") as f:
        f.write("[ca]\ndefault_ca=dev\n[dev]\ndatabase=%s/index.txt\nnew_certs_dir=%s/newcerts\n"
                "serial=%s/serial\ndefault_md=sha256\npolicy=any\nunique_subject=no\n"
                "[any]\ncommonName=supplied\n[leaf]\n"
                "subjectAltName=URI:spiffe://edgecoder/%s/%s,DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth,clientAuth\n" % (d, d, d, role, ident))
    key = os.path.join(certs.dir, name + ".key")
    csr = os.path.join(certs.dir, name + ".csr")
    crt = os.path.join(certs.dir, name + ".pem")
    harness.openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    harness.openssl("ca", "-batch", "-config", cnf, "-cert", certs.ca, "-keyfile", certs.ca_key,
                    "-in", csr, "-out", crt, "-startdate", "20200101000000Z",
                    "-enddate", "20200102000000Z", "-extensions", "leaf", "-notext")
    return crt, key



def vm_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


class MeshMtls(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = harness.DevCerts()
        cls.server_cert = cls.certs.issue("server", role="coordinator", ident="server-1")
        cls.coord = cls.certs.issue("coord", role="coordinator", ident="coord-a")
        cls.control = cls.certs.issue("cp", role="control-plane", ident="cp-1")
        cls.portal = cls.certs.issue("portal", role="portal", ident="portal-1")
        cls.expired = issue_expired(cls.certs, "old", "coordinator", "old-1")
        cls.foreign = harness.DevCerts()
        cls.foreign_coord = cls.foreign.issue("coord", role="coordinator", ident="intruder")

    def serve(self, **extra):
        self.port = harness.free_port()
        env = {"EDGECODER_TLS_CA": self.certs.ca, "EDGECODER_TLS_CERT": self.server_cert[0],
               "EDGECODER_TLS_KEY": self.server_cert[1], "MESH_DEMO_PORT": str(self.port)}
        env.update(extra)
        self.server = harness.Proc(["mesh-demo"], env=env, port=self.port)
        self._procs.append(self.server)
        return self.server

    def client_env(self, cert=None, ca=None):
        env = {"EDGECODER_TLS_CA": ca or self.certs.ca}
        if cert is not None:
            env["EDGECODER_TLS_CERT"], env["EDGECODER_TLS_KEY"] = cert
        return env

    def call(self, *args, cert=None, ca=None, expect_ok=True):
        cert = self.coord if cert is None else cert
        code, out, err = harness.run(["mesh-demo", "--call", "127.0.0.1:%d" % self.port] +
                                     list(args), env=self.client_env(cert or None, ca))
        self.assertNotIn("Sanitizer", err)
        self.assertNotIn("runtime error:", err)
        lines = [l for l in out.splitlines() if l.startswith("{")]
        self.assertTrue(lines, "no JSON from the client (exit %d): %s %s" % (code, out, err))
        result = json.loads(lines[-1])
        self.assertEqual(result["ok"], expect_ok, result)
        self.assertEqual(code, 0 if expect_ok else 1, result)
        return result

    def test_right_role_and_identity(self):
        self.serve()
        r = self.call("echo", "hello", "--request-id", "req-7")
        self.assertEqual(r["text"], "hello")
        self.assertEqual(r["peer_spiffe_id"], "spiffe://edgecoder/coordinator/coord-a")
        self.assertEqual(r["peer_role"], "coordinator")
        self.assertEqual(r["peer_id"], "coord-a")
        self.assertEqual(r["request_id"], "req-7")
        self.assertTrue(0 < r["deadline_ms"] <= 10000, r)
        r = self.call("echo", "cp", cert=self.control)
        self.assertEqual(r["peer_spiffe_id"], "spiffe://edgecoder/control-plane/cp-1")
        self.assertEqual(self.server.stop(), 0)

    def test_wrong_role_is_permission_denied(self):
        self.serve()
        r = self.call("echo", "hi", cert=self.portal, expect_ok=False)
        self.assertEqual(r["grpc_code"], 7)
        self.assertEqual(r["code"], "role_not_allowed")
        self.assertIn('role "portal" may not call /edgecoder.v1.Demo/Echo', r["message"])
        # Health is open to any verified peer, whatever its role.
        self.assertEqual(self.call("health", cert=self.portal)["status"], 1)
        self.assertEqual(self.server.stop(), 0)
        refused = [l for l in self.server.log_lines() if l["msg"] == "rpc caller role refused"]
        self.assertEqual(refused[0]["peer"], "spiffe://edgecoder/portal/portal-1")

    def assert_tls_refused(self, r, server_says):
        self.assertEqual(r["grpc_code"], 14, r)
        self.assertTrue(r["message"].startswith("UNAVAILABLE: "), r)
        self.assertIn("handshake", r["message"].lower())
        deadline = time.monotonic() + 5
        while server_says not in self.server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn(server_says, self.server.output())

    def test_refused_certificates(self):
        self.serve()
        self.assert_tls_refused(self.call("echo", "x", cert=False, expect_ok=False),
                                "peer did not return a certificate")
        self.assert_tls_refused(self.call("echo", "x", cert=self.foreign_coord, expect_ok=False),
                                "certificate verify failed")
        before = self.server.output().count("certificate verify failed")
        self.assert_tls_refused(self.call("echo", "x", cert=self.expired, expect_ok=False),
                                "certificate verify failed")
        self.assertGreater(self.server.output().count("certificate verify failed"), before)
        # The client refuses a server its CA did not sign, and says why.
        r = self.call("echo", "x", ca=self.foreign.ca, expect_ok=False)
        self.assertEqual(r["grpc_code"], 14)
        self.assertIn("certificate verify failed", r["message"])
        self.assertIn("handshake", r["message"].lower())
        # Nothing of that reached a handler; a good client still gets through.
        self.assertEqual(self.call("echo", "still")["text"], "still")
        self.assertEqual(self.server.stop(), 0)

    def test_deadline_and_errors(self):
        self.serve()
        started = time.monotonic()
        r = self.call("echo", "slow", "--delay-ms", "3000", "--timeout-ms", "300",
                      expect_ok=False)
        self.assertEqual(r["grpc_code"], 4, r)
        self.assertLess(time.monotonic() - started, 2.9)
        r = self.call("echo", "x", "--fail", "demo_refused", expect_ok=False)
        self.assertEqual((r["grpc_code"], r["code"]), (7, "demo_refused"))
        r = self.call("echo", "x", "--fail", "conflict", expect_ok=False)
        self.assertEqual((r["grpc_code"], r["code"]), (9, "conflict"))
        r = self.call("health", "no.such.Service", expect_ok=False)
        self.assertEqual((r["grpc_code"], r["code"]), (5, "service_unknown"))
        self.assertEqual(self.call("health", "edgecoder.v1.Demo")["status"], 1)
        self.assertEqual(self.server.stop(), 0)

    def test_server_streaming_in_order(self):
        self.serve()
        self.assertEqual(self.call("count", "500")["values"], list(range(1, 501)))
        self.assertEqual(self.call("count", "20", "--interval-ms", "5")["values"],
                         list(range(1, 21)))
        self.assertEqual(self.call("count", "0")["values"], [])
        r = self.call("count", "1000", "--interval-ms", "50", "--timeout-ms", "500",
                      expect_ok=False)
        self.assertEqual(r["grpc_code"], 4)
        self.assertEqual(r["values"], list(range(1, len(r["values"]) + 1)))
        r = self.call("count", "5", cert=self.portal, expect_ok=False)
        self.assertEqual((r["grpc_code"], r["values"]), (7, []))
        self.assertEqual(self.server.stop(), 0)

    def test_shutdown_with_calls_in_flight(self):
        self.serve(MESH_DEMO_SHUTDOWN_GRACE_MS="6000")
        base = [harness.BINARY, "mesh-demo", "--call", "127.0.0.1:%d" % self.port]
        env = dict(self.client_env(self.coord), PATH=os.environ.get("PATH", "/usr/bin:/bin"),
                   LSAN_OPTIONS=harness.LSAN_OPTIONS)
        calls = {
            "finishes": ["echo", "in-grace", "--delay-ms", "4000", "--timeout-ms", "30000"],
            "stream_cut": ["count", "100000", "--interval-ms", "50", "--timeout-ms", "60000"],
            "echo_cut": ["echo", "too-slow", "--delay-ms", "30000", "--timeout-ms", "60000"],
        }
        procs = {k: subprocess.Popen(base + v, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE) for k, v in calls.items()}
        try:
            self.call("health")
            # Wait until the stream is flowing (the clients are connected and served, however
            # loaded the machine), then a little more for the unary calls started with it.
            deadline = time.monotonic() + 30
            seen = 0
            while seen < 6 and time.monotonic() < deadline:
                line = procs["stream_cut"].stderr.readline()
                if not line:
                    break
                if line.startswith(b'{"progress"'):
                    seen = json.loads(line)["progress"]
            self.assertGreaterEqual(seen, 6, "the stream never got going")
            time.sleep(1.0)
            self.server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            r = self.call("echo", "late", expect_ok=False)  # no new calls once shutdown began
            self.assertEqual(r["grpc_code"], 14)
            results = {}
            for k, p in procs.items():
                out, _ = p.communicate(timeout=30)
                results[k] = json.loads(out.decode().strip().splitlines()[-1])
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()
        self.assertTrue(results["finishes"]["ok"], results)
        self.assertFalse(results["stream_cut"]["ok"])
        self.assertEqual(results["stream_cut"]["grpc_code"], 14)
        self.assertGreater(len(results["stream_cut"]["values"]), 5)
        self.assertFalse(results["echo_cut"]["ok"])
        self.assertEqual(self.server.stop(), 0)  # exit 0, no ASan/LSan/UBSan report
        stopped = [l for l in self.server.log_lines() if l["msg"] == "rpc server stopped"]
        self.assertEqual(stopped[0]["graceful"], False)

    def bench(self, seconds):
        code, out, err = harness.run(
            ["mesh-demo", "--bench", "127.0.0.1:%d" % self.port, "--threads", "4",
             "--inflight", "1000", "--seconds", str(seconds), "--timeout-ms", "60000"],
            env=self.client_env(self.coord), timeout=180)
        self.assertNotIn("Sanitizer", err)
        result = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(result["errors"], 0, result)
        self.assertEqual(code, 0)
        self.assertGreaterEqual(result["calls"], 4000, result)
        return result

    def test_load_4_threads_x_1000_concurrent(self):
        # A small ASan quarantine so RSS tracks live memory rather than freed blocks.
        self.serve(ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:"
                                "quarantine_size_mb=16",
                   MESH_DEMO_MAX_STREAMS="64")
        pid = self.server.proc.pid
        self.bench(2)  # warm-up: connections, pools, allocator arenas
        warm = vm_kb(pid, "VmRSS")
        calls = 0
        for _ in range(3):
            calls += self.bench(3)["calls"]
        after = vm_kb(pid, "VmRSS")
        print("load: %d calls after warm-up; server RSS %d kB -> %d kB (peak %d kB)"
              % (calls, warm, after, vm_kb(pid, "VmHWM")))
        self.assertLess(after, warm * 1.5 + 64 * 1024, "server RSS grew under load")
        self.assertEqual(self.server.stop(), 0)  # LeakSanitizer runs at exit


if __name__ == "__main__":
    unittest.main()
