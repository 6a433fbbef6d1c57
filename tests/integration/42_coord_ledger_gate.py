"""Coordinator ledger and enrollment gate. The ledger's cmocka test runs against a fresh migrated
coordinator database, and every chained record is then checked again here, independently: Python's
json.dumps of the record's fields (as JSON.stringify writes them) hashed with hashlib, and the
prev_hash links. The gate's cmocka test runs in its stand-in mode against
tests/fakes/portal_standin.py over mTLS: active, email unverified, pending approval, unknown token,
unknown node, wrong node kind, wrong service token; the portal down (cached agent allowed, unknown
refused); the portal hanging (decided within the gate's deadline)."""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import unittest

import grpc

import harness

BIN_DIR = os.path.dirname(harness.BINARY)
UNIT_LEDGER = os.path.join(BIN_DIR, "unit_coord_test_ledger")
UNIT_GATE = os.path.join(BIN_DIR, "unit_coord_test_gate")
STANDIN = os.path.join(harness.ROOT, "tests", "fakes", "portal_standin.py")
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
SERVICE_TOKEN = "standin-service-token-0123456789"
# The node table test_gate.c's stand-in cases expect (STANDIN_NODES there).
NODES = {"nodes": [
    {"nodeId": "agent-active", "nodeKind": "agent", "registrationToken": "tok-active",
     "ownerEmail": "active@example.com", "emailVerified": True, "nodeApproved": True},
    {"nodeId": "agent-unverified", "nodeKind": "agent", "registrationToken": "tok-unverified",
     "ownerEmail": "u@example.com", "emailVerified": False, "nodeApproved": True},
    {"nodeId": "agent-pending", "nodeKind": "agent", "registrationToken": "tok-pending",
     "ownerEmail": "p@example.com", "emailVerified": True, "nodeApproved": False},
    {"nodeId": "coord-1", "nodeKind": "coordinator", "registrationToken": "tok-coord",
     "ownerEmail": "c@example.com", "emailVerified": True, "nodeApproved": True},
]}


def run_unit(path, env, timeout=300):
    if not os.path.exists(path):
        raise AssertionError("%s is not built" % path)
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    full.update(SANITIZER_ENV)
    full.update(env)
    p = subprocess.run([path], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


class StandIn:
    """portal_standin.py as a process; its JSON stdout lines are collected as they come."""

    def __init__(self, certs, cert, mode="ok"):
        nodes = os.path.join(certs.dir, "nodes.json")
        with open(nodes, "w") as f:
            json.dump(NODES, f)
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", STANDIN, "--port", "0", "--ca", certs.ca, "--cert", cert[0],
             "--key", cert[1], "--nodes", nodes, "--mode", mode],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                 "PORTAL_SERVICE_TOKEN": SERVICE_TOKEN},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines, self.raw = [], []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()
        if not self.ready.wait(30):
            self.stop()
            raise AssertionError("the stand-in did not start: %s" % self.proc.stderr.read())
        self.target = "127.0.0.1:%d" % self.port

    def read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            self.raw.append(line)
            obj = json.loads(line)
            self.lines.append(obj)
            if obj.get("event") == "listening":
                self.port = obj["port"]
                self.ready.set()

    def calls(self):
        return [l for l in self.lines if l.get("event") == "call"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        return "".join(self.raw)


class LedgerTest(unittest.TestCase):

    def test_ledger_against_database(self):
        pg = harness.postgres()
        name = "ledger_%d" % os.getpid()
        url = pg.create_db(name, "coordinator")
        code, out = run_unit(UNIT_LEDGER, {"EC_TEST_DATABASE_URL": url})
        self.assertEqual(code, 0, out[-6000:])
        self.assertIn("OK ] test_concurrent_recording_two_chainers", out)
        self.assertNotIn("Sanitizer", out)

        # The last test left 4,000 chained records: hash each one again here, as the original's
        # JSON.stringify would, and follow the links.
        rows = json.loads(pg.psql(
            "SELECT coalesce(json_agg(r ORDER BY sequence), '[]') FROM ledger_records r", name))
        self.assertEqual(len(rows), 4000)
        self.assertEqual(pg.psql("SELECT count(*) FROM ledger_pending", name), "0")
        prev = "GENESIS"
        for i, r in enumerate(rows):
            self.assertEqual(r["sequence"], i + 1)
            self.assertEqual(r["prev_hash"], prev)
            fields = [("eventType", r["event_type"]), ("taskId", r["task_id"]),
                      ("subtaskId", r["subtask_id"]), ("actorId", r["actor_id"]),
                      ("sequence", r["sequence"]), ("issuedAtMs", r["issued_at_ms"]),
                      ("prevHash", r["prev_hash"]), ("coordinatorId", r["coordinator_id"]),
                      ("checkpointHeight", r["checkpoint_height"]),
                      ("checkpointHash", r["checkpoint_hash"]),
                      ("payloadJson", r["payload_json"])]
            text = json.dumps({k: v for k, v in fields if v is not None}, separators=(",", ":"),
                              ensure_ascii=False)
            self.assertEqual(hashlib.sha256(text.encode()).hexdigest(), r["hash"], text)
            self.assertEqual(len(r["signature"]), 88)
            prev = r["hash"]


class GateTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.certs = harness.DevCerts()
        cls.portal_cert = cls.certs.issue("portal", role="portal", ident="standin")
        cls.coord_cert = cls.certs.issue("coord", role="coordinator", ident="gate-client")
        cls.agent_cert = cls.certs.issue("agent", role="agent", ident="agent-1")

    def run_gate(self, target, mode, timeout_ms=5000):
        return run_unit(UNIT_GATE, {
            "EC_TEST_PORTAL_TARGET": target, "EC_TEST_PORTAL_MODE": mode,
            "EC_TEST_PORTAL_TIMEOUT_MS": str(timeout_ms),
            "EC_TEST_PORTAL_CA": self.certs.ca, "EC_TEST_PORTAL_CERT": self.coord_cert[0],
            "EC_TEST_PORTAL_KEY": self.coord_cert[1],
            "EC_TEST_PORTAL_SERVICE_TOKEN": SERVICE_TOKEN})

    def test_decisions_from_the_standin(self):
        s = StandIn(self.certs, self.portal_cert)
        try:
            code, out = self.run_gate(s.target, "up")
        finally:
            log = s.stop()
        self.assertEqual(code, 0, out[-6000:] + log[-3000:])
        self.assertIn("OK ] test_standin", out)
        calls = s.calls()
        self.assertEqual(len(calls), 7, log)
        first = calls[0]
        self.assertEqual(first["method"], "ValidateNode")
        self.assertEqual(first["requestId"], "req-standin-1")
        self.assertEqual(first["sourceIp"], "198.51.100.7")
        self.assertEqual(first["nodeKind"], "agent")
        self.assertEqual(first["peer"], "spiffe://edgecoder/coordinator/gate-client")
        self.assertEqual((first["allowed"], first["reason"]), (True, "ok"))
        self.assertEqual([c["serviceToken"] for c in calls], ["ok"] * 6 + ["wrong"])
        self.assertEqual(calls[-1]["code"], "UNAUTHENTICATED")
        self.assertEqual([c.get("reason") for c in calls[1:6]],
                         ["email_unverified", "node_pending_coordinator_approval",
                          "registration_token_invalid", "node_not_enrolled",
                          "node_kind_mismatch"])
        for secret in (SERVICE_TOKEN, "tok-active", "tok-pending", "wrong-service-token"):
            self.assertNotIn(secret, log + out)

    def test_portal_down(self):
        started = time.monotonic()
        code, out = self.run_gate("127.0.0.1:%d" % harness.free_port(), "down", 3000)
        self.assertEqual(code, 0, out[-6000:])
        self.assertIn("OK ] test_standin", out)
        self.assertLess(time.monotonic() - started, 30)

    def test_portal_hanging(self):
        s = StandIn(self.certs, self.portal_cert, mode="hang")
        try:
            code, out = self.run_gate(s.target, "hang", 700)
        finally:
            log = s.stop()
        self.assertEqual(code, 0, out[-6000:] + log[-3000:])
        self.assertIn("OK ] test_standin", out)
        self.assertIn("hang: two decisions in", out)
        self.assertEqual([c["code"] for c in s.calls()], ["DEADLINE_EXCEEDED"] * 2, log)

    def test_standin_checks_role_and_token(self):
        """The stand-in holds callers to what the real portal will: a coordinator or control-plane
        certificate and the service token."""
        s = StandIn(self.certs, self.portal_cert)
        spec = importlib.util.spec_from_file_location("portal_standin", STANDIN)
        standin = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(standin)
        pb = standin.load_messages()
        try:
            def call(cert, md):
                with open(self.certs.ca, "rb") as f:
                    ca = f.read()
                with open(cert[0], "rb") as f:
                    crt = f.read()
                with open(cert[1], "rb") as f:
                    key = f.read()
                creds = grpc.ssl_channel_credentials(ca, key, crt)
                with grpc.secure_channel(s.target, creds) as ch:
                    rpc = ch.unary_unary("/edgecoder.v1.PortalInternal/ValidateNode",
                                         request_serializer=pb.ValidateNodeRequest.SerializeToString,
                                         response_deserializer=pb.ValidateNodeReply.FromString)
                    req = pb.ValidateNodeRequest(node_id="agent-active", node_kind="agent",
                                                 registration_token="tok-active", source_ip="x")
                    return rpc(req, metadata=md, timeout=10)

            good = (("x-portal-service-token", SERVICE_TOKEN),)
            self.assertTrue(call(self.coord_cert, good).active)
            with self.assertRaises(grpc.RpcError) as e:
                call(self.agent_cert, good)
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
            with self.assertRaises(grpc.RpcError) as e:
                call(self.coord_cert, ())
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
            self.assertEqual(dict(e.exception.trailing_metadata()).get("x-error-code"),
                             "unauthorized")
        finally:
            s.stop()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    unittest.main()
