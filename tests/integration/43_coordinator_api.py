"""`edgecoder coordinator` against a real PostgreSQL and the stand-in portal
(tests/fakes/portal_standin.py): the mesh-token gate, the whole agent lifecycle signed, replayed /
tampered / unsigned requests, the enrollment gate's refusals, bad input as 400s naming the field,
lease refusals, sealed work, key changes, diagnostics, the gRPC Coordinator service and the
configuration errors."""

import json
import os
import signal
import subprocess
import threading
import time
import unittest

import grpc

import harness
from coordinator_agent import Agent

MESH = "mesh-token-0123456789abcdef"
SVC = "portal-service-token-0123456789"
STANDIN = os.path.join(harness.ROOT, "tests", "fakes", "portal_standin.py")
REMOTE = {"fly-client-ip": "198.51.100.7"}  # a client seen through the trusted proxy
SHA = "0123456789abcdef0123456789abcdef01234567"
NODES = {"nodes": [
    {"nodeId": "agent-ok", "nodeKind": "agent", "registrationToken": "tok-ok",
     "ownerEmail": "ok@example.com", "emailVerified": True, "nodeApproved": True},
    {"nodeId": "agent-ok2", "nodeKind": "agent", "registrationToken": "tok-ok2",
     "ownerEmail": "ok2@example.com", "emailVerified": True, "nodeApproved": True},
    {"nodeId": "agent-keyed", "nodeKind": "agent", "registrationToken": "tok-keyed",
     "ownerEmail": "k@example.com", "emailVerified": True, "nodeApproved": True},
    {"nodeId": "agent-pending", "nodeKind": "agent", "registrationToken": "tok-pending",
     "ownerEmail": "p@example.com", "emailVerified": True, "nodeApproved": False},
    {"nodeId": "agent-unverified", "nodeKind": "agent", "registrationToken": "tok-unv",
     "ownerEmail": "u@example.com", "emailVerified": False, "nodeApproved": True},
    {"nodeId": "agent-revoke", "nodeKind": "agent", "registrationToken": "tok-revoke",
     "ownerEmail": "r@example.com", "emailVerified": True, "nodeApproved": True},
    {"nodeId": "agent-legacy", "nodeKind": "agent", "registrationToken": "tok-legacy",
     "ownerEmail": "l@example.com", "emailVerified": True, "nodeApproved": True},
    {"nodeId": "coord-node", "nodeKind": "coordinator", "registrationToken": "tok-coord",
     "ownerEmail": "c@example.com", "emailVerified": True, "nodeApproved": True},
]}


class StandIn:
    def __init__(self, certs, cert, key):
        nodes = os.path.join(certs.dir, "nodes.json")
        with open(nodes, "w") as f:
            json.dump(NODES, f)
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", STANDIN, "--port", "0", "--ca", certs.ca, "--cert", cert,
             "--key", key, "--nodes", nodes],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORTAL_SERVICE_TOKEN": SVC},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.calls = []
        self.port = None
        ready = threading.Event()

        def read():
            for raw in self.proc.stdout:
                obj = json.loads(raw)
                if obj.get("event") == "listening":
                    self.port = obj["port"]
                    ready.set()
                elif obj.get("event") == "call":
                    self.calls.append(obj)
        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30):
            self.proc.kill()
            raise AssertionError("the portal stand-in did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def coordinator_env(db_url, port, gport, certs, cert, key, portal_port, **extra):
    env = {"DATABASE_URL": db_url, "COORDINATOR_PORT": str(port),
           "COORDINATOR_GRPC_PORT": str(gport), "MESH_AUTH_TOKEN": MESH,
           "PORTAL_SERVICE_URL": "grpcs://127.0.0.1:%d" % portal_port,
           "PORTAL_SERVICE_TOKEN": SVC, "EDGECODER_TLS_CA": certs.ca,
           "EDGECODER_TLS_CERT": cert, "EDGECODER_TLS_KEY": key,
           "EDGECODER_TRUST_PROXY_HEADER": "fly-client-ip",
           "AGENT_RATE_LIMIT_MAX": "1000", "OLLAMA_HOST": "http://127.0.0.1:%d" % harness.free_port(),
           "EDGECODER_HTTP_THREADS": "32"}
    env.update(extra)
    return env


class CoordinatorApi(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.postgres()
        cls.db = cls.pg.create_db("coord_api", "coordinator")
        cls.certs = harness.DevCerts()
        cls.coord_cert = cls.certs.issue("coordinator", role="coordinator", ident="coord-test")
        cls.portal_cert = cls.certs.issue("portal", role="portal", ident="portal-test")
        cls.cp_cert = cls.certs.issue("control", role="control-plane", ident="cp-test")
        cls.standin = StandIn(cls.certs, *cls.portal_cert)
        cls.port, cls.gport = harness.free_port(), harness.free_port()
        cls.proc = harness.Proc(["coordinator"], env=coordinator_env(
            cls.db, cls.port, cls.gport, cls.certs, cls.coord_cert[0], cls.coord_cert[1],
            cls.standin.port), port=cls.port)
        harness.wait_port(cls.gport, proc=cls.proc.proc)
        cls.base = "http://127.0.0.1:%d" % cls.port
        cls.pb = harness.load_pb("coordinator")

    @classmethod
    def tearDownClass(cls):
        code = cls.proc.stop()
        cls.standin.stop()
        assert code == 0, cls.proc.output()[-4000:]

    def get(self, path, token=MESH, headers=None):
        h = dict(headers or {})
        if token is not None:
            h["x-mesh-token"] = token
        return harness.request("GET", self.base + path, headers=h)

    def post(self, path, body, token=MESH, headers=None):
        h = dict(headers or {})
        if token is not None:
            h["x-mesh-token"] = token
        return harness.request("POST", self.base + path, body=body, headers=h)

    def agent(self, agent_id, token="tok-ok", x25519=False, remote=True):
        a = Agent(self.base, agent_id, mesh_token=MESH, x25519=x25519,
                  extra_headers=REMOTE if remote else None)
        r = a.register(token=token)
        self.assertEqual(r.status, 200, r.body)
        return a

    def submit(self, task_id, **fields):
        body = {"taskId": task_id, "prompt": "print(%r)" % task_id, "language": "python",
                "snapshotRef": SHA}
        body.update(fields)
        r = self.post("/submit", body)
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def pull_until(self, agent, subtask_id, tries=50):
        """Pulls until `subtask_id` comes (other tests' work is answered on the way)."""
        for _ in range(tries):
            r, sub = agent.pull()
            self.assertEqual(r.status, 200, r.body)
            if sub is None:
                time.sleep(0.05)
                continue
            if sub["id"] == subtask_id:
                return sub
            self.assertEqual(agent.result(sub, output="other").status, 200)
        self.fail("%s never came" % subtask_id)

    # --- the mesh token ----------------------------------------------------------------------

    def test_mesh_token_on_every_route(self):
        r = self.get("/status", token=None)
        self.assertEqual((r.status, r.json()), (401, {"error": "mesh_unauthorized"}))
        self.assertEqual(self.get("/status", token="wrong-token").status, 401)
        self.assertEqual(self.get("/status", token="").status, 401)
        for path in ("/capacity", "/identity", "/features", "/models/available", "/ledger/verify",
                     "/ledger/snapshot", "/tasks/x", "/metrics", "/no/such/route",
                     "/health/runtime/x", "/register"):
            r = self.get(path, token=None)
            self.assertEqual((r.status, r.json()), (401, {"error": "mesh_unauthorized"}), path)
        for path in ("/heartbeat", "/pull", "/result", "/submit", "/agent/diagnostics", "/nope"):
            r = self.post(path, {"agentId": "x"}, token=None)
            self.assertEqual((r.status, r.json()["error"]), (401, "mesh_unauthorized"), path)
        # Only POST /register and GET /health/runtime are open.
        r = self.post("/register", {}, token=None)
        self.assertEqual(r.status, 400, r.body)
        r = self.get("/health/runtime", token=None)
        self.assertEqual(r.status, 200, r.body)
        h = r.json()
        self.assertEqual(h["ollama"]["reachable"], False)
        self.assertEqual(set(h["coordinator"]) >= {"provider", "queued", "agents", "results"}, True)
        self.assertEqual(self.get("/status").status, 200)
        self.assertEqual(self.get("/metrics").status, 200)

    # --- the lifecycle, signed ---------------------------------------------------------------

    def test_lifecycle_signed(self):
        a = self.agent("agent-ok")
        self.assertEqual(a.mesh_token, MESH)  # provisioned by /register
        r = a.heartbeat(activeModel="qwen2.5:7b", activeModelParamSize="7B",
                        powerTelemetry={"onExternalPower": True})
        self.assertEqual(r.status, 200, r.body)
        hb = r.json()
        self.assertEqual(hb["ok"], True)
        for key in ("requeued", "policy", "orchestration", "tunnelInvites", "blacklist"):
            self.assertIn(key, hb)
        ids = self.submit("life-1")["subtasks"]
        self.assertEqual(ids, ["life-1:0"])
        sub = self.pull_until(a, "life-1:0")
        self.assertEqual(sub["attempt"], 1)
        self.assertEqual(sub["snapshotRef"], SHA)
        self.assertEqual(sub["projectMeta"]["projectId"], "default")
        r = a.result(sub, output="life-1 done", attempt=sub["attempt"])
        self.assertEqual((r.status, r.json()), (200, {"ok": True}))
        task = self.get("/tasks/life-1").json()
        self.assertEqual(task["status"], "completed")
        res = task["subtasks"][0]["result"]
        self.assertEqual((res["ok"], res["output"], res["agentId"]), (True, "life-1 done", "agent-ok"))
        # The same answer again is idempotent.
        self.assertEqual(a.result(sub, output="life-1 done", attempt=1).status, 200)
        cap = self.get("/capacity").json()
        me = [x for x in cap["agents"] if x["agentId"] == "agent-ok"]
        self.assertEqual(len(me), 1)
        self.assertEqual(me[0]["powerTelemetry"], {"onExternalPower": True})
        self.assertNotIn("ownerEmail", me[0])
        self.assertGreaterEqual(cap["totals"]["agentsConnected"], 1)
        models = self.get("/models/available").json()
        self.assertIn("qwen2.5:7b", [m["model"] for m in models])
        # The portal was asked, with the proxy's client IP, and recorded as a ledger event.
        calls = [c for c in self.standin.calls if c.get("nodeId") == "agent-ok"]
        self.assertTrue(calls and calls[-1]["sourceIp"] == "198.51.100.7", calls)
        self.assertEqual(calls[-1]["serviceToken"], "ok")
        deadline = time.time() + 10
        while time.time() < deadline:
            snap = self.get("/ledger/snapshot?limit=5000").json()
            kinds = {r["eventType"] for r in snap["records"]}
            if {"node_validation", "node_approval", "task_enqueue", "task_claim",
                    "task_complete"} <= kinds:
                break
            time.sleep(0.2)
        self.assertTrue({"node_validation", "task_claim", "task_complete"} <= kinds, kinds)
        self.assertEqual(self.get("/ledger/verify").json()["ok"], True)
        status = self.get("/status").json()
        for key in ("queued", "agents", "results"):
            self.assertIn(key, status)
        # Other machines read the model from the database: a change is written at the next
        # liveness flush (every second), plain liveness at most every 10 s.
        self.assertEqual(a.heartbeat(activeModel="qwen2.5:0.5b").status, 200)
        sql = "SELECT active_model FROM agents WHERE agent_id = 'agent-ok'"
        deadline = time.time() + 5
        while time.time() < deadline and self.pg.psql(sql, "coord_api") != "qwen2.5:0.5b":
            time.sleep(0.1)
        self.assertEqual(self.pg.psql(sql, "coord_api"), "qwen2.5:0.5b")

    def test_replay_tampered_unsigned_refused(self):
        a = self.agent("agent-ok2", token="tok-ok2")
        body = json.dumps({"agentId": "agent-ok2"}).encode()
        h = a.headers()
        h.update(a.sign("/heartbeat", body))
        self.assertEqual(a.send("/heartbeat", body, h).status, 200)
        r = a.send("/heartbeat", body, h)  # replay
        self.assertEqual((r.status, r.json()["error"]), (401, "signature_invalid"))
        # A different body under valid headers for the first body.
        h = a.headers()
        h.update(a.sign("/heartbeat", body))
        tampered = json.dumps({"agentId": "agent-ok2", "activeModel": "evil"}).encode()
        r = a.send("/heartbeat", tampered, h)
        self.assertEqual((r.status, r.json()["error"]), (401, "signature_invalid"))
        # The same body with a forged x-body-sha256 of the tampered body.
        h["x-body-sha256"] = __import__("hashlib").sha256(tampered).hexdigest()
        self.assertEqual(a.send("/heartbeat", tampered, h).status, 401)
        # Unsigned, from an agent that registered a key.
        for path in ("/heartbeat", "/pull", "/result"):
            r = a.post(path, {"agentId": "agent-ok2", "subtaskId": "x:0", "ok": True},
                       signed=False)
            self.assertEqual((r.status, r.json()["error"]), (401, "signature_invalid"), path)
        # Only some of the headers.
        h = a.headers()
        sig = a.sign("/heartbeat", body)
        del sig["x-nonce"]
        h.update(sig)
        self.assertEqual(a.send("/heartbeat", body, h).status, 401)
        # Signed for another path.
        h = a.headers()
        h.update(a.sign("/pull", body))
        self.assertEqual(a.send("/heartbeat", body, h).status, 401)
        # A timestamp outside the skew window.
        h = a.headers()
        h.update(a.sign("/heartbeat", body, ts=int(time.time() * 1000) - 10 * 60 * 1000))
        self.assertEqual(a.send("/heartbeat", body, h).status, 401)
        # Signed by a key that is not the registered one.
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        h = a.headers()
        h.update(a.sign("/heartbeat", body, key=Ed25519PrivateKey.generate()))
        self.assertEqual(a.send("/heartbeat", body, h).status, 401)
        # The body names another agent than x-agent-id.
        other = json.dumps({"agentId": "agent-ok"}).encode()
        h = a.headers()
        h.update(a.sign("/heartbeat", other))
        r = a.send("/heartbeat", other, h)
        self.assertEqual((r.status, r.json()["error"]), (401, "agent_id_mismatch"))
        self.assertEqual(a.heartbeat().status, 200)  # still fine afterwards

    def test_unknown_agent(self):
        r = self.post("/heartbeat", {"agentId": "never-registered"})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json(), {"error": "mesh_unauthorized", "reason": "agent_not_registered"})
        ghost = Agent(self.base, "ghost-signed", mesh_token=MESH)
        r = ghost.heartbeat()
        self.assertEqual((r.status, r.json()["error"]), (401, "signature_invalid"))

    # --- the enrollment gate -----------------------------------------------------------------

    def test_enrollment_refusals(self):
        cases = [("agent-pending", "tok-pending", "node_pending_coordinator_approval"),
                 ("agent-unverified", "tok-unv", "email_unverified"),
                 ("agent-ok", "wrong-token", "registration_token_invalid"),
                 ("agent-unknown", "tok-x", "node_not_enrolled"),
                 ("coord-node", "tok-coord", "node_kind_mismatch"),
                 ("agent-new", None, "registration_token_required")]
        for agent_id, token, reason in cases:
            a = Agent(self.base, agent_id, extra_headers=REMOTE)
            r = a.register(token=token)
            self.assertEqual(r.status, 403, (agent_id, r.body))
            self.assertEqual(r.json(), {"error": "node_not_activated", "reason": reason})
            self.assertIsNone(a.mesh_token)
        # A spoofed proxy header cannot claim loopback: only the socket address may.
        a = Agent(self.base, "agent-spoof", extra_headers={"fly-client-ip": "127.0.0.1"})
        r = a.register()
        self.assertEqual((r.status, r.json().get("reason")), (403, "registration_token_required"))
        # The socket address is loopback (no proxy header): the original's self-registration.
        a = Agent(self.base, "agent-local")
        r = a.register()
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["meshToken"], MESH)

    def test_key_change_needs_the_portal(self):
        a = self.agent("agent-keyed", token="tok-keyed")
        self.assertEqual(a.heartbeat().status, 200)
        # Without a token the gate passes a known agent ("cached agent"), but not a new key.
        thief = Agent(self.base, "agent-keyed", mesh_token=MESH, extra_headers=REMOTE)
        r = thief.register()
        self.assertEqual((r.status, r.json().get("reason")), (403, "registration_token_required"))
        self.assertEqual(thief.heartbeat().status, 401)
        self.assertEqual(a.heartbeat().status, 200)
        # Re-registering with the same key and no token is the cached-agent pass.
        self.assertEqual(a.register().status, 200)
        # With the portal's yes, a restarted agent's fresh key replaces the old one.
        b = Agent(self.base, "agent-keyed", mesh_token=MESH, extra_headers=REMOTE)
        self.assertEqual(b.register(token="tok-keyed").status, 200)
        self.assertEqual(b.heartbeat().status, 200)
        self.assertEqual(a.heartbeat().status, 401)

    def test_portal_unreachable(self):
        """Known agents keep working while the portal cannot answer; unknown ones are refused."""
        a = self.agent("agent-ok", token="tok-ok")
        self.standin.proc.send_signal(signal.SIGUSR2)  # the stand-in answers UNAVAILABLE
        try:
            time.sleep(0.5)
            # A changed profile is a new decision (an identical /register is answered from the
            # coordinator's memory for a minute).
            r = a.register(token="tok-ok", version="9.9.9")
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(self.standin.calls[-1]["code"], "UNAVAILABLE", self.standin.calls[-1])
            self.assertEqual(a.heartbeat().status, 200)
            stranger = Agent(self.base, "agent-ok2-stranger", extra_headers=REMOTE)
            r = stranger.register(token="tok-whatever")
            self.assertEqual(r.json(), {"error": "node_not_activated",
                                        "reason": "portal_validation_unreachable"})
        finally:
            self.standin.proc.send_signal(signal.SIGUSR2)
            time.sleep(0.5)

    def test_register_again_from_memory(self):
        """The original's workers register every loop: the same /register again soon is
        answered without asking the portal again."""
        a = self.agent("agent-ok2", token="tok-ok2")
        before = len([c for c in self.standin.calls if c.get("nodeId") == "agent-ok2"])
        for _ in range(3):
            self.assertEqual(a.register(token="tok-ok2").status, 200)
        after = len([c for c in self.standin.calls if c.get("nodeId") == "agent-ok2"])
        self.assertEqual(before, after)
        self.assertEqual(a.register(token="tok-ok2", maxConcurrentTasks=2).status, 200)
        time.sleep(0.2)
        self.assertEqual(len([c for c in self.standin.calls if c.get("nodeId") == "agent-ok2"]),
                         after + 1)

    def test_unkeyed_agent_cannot_be_claimed(self):
        """An agent that never registered a key works unsigned, as the original's did; nobody
        may then register a key for it without the portal's fresh yes."""
        legacy = Agent(self.base, "agent-legacy", mesh_token=MESH, extra_headers=REMOTE)
        r = legacy.register(token="tok-legacy", signed=False, publicKeyPem=None)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(legacy.post("/heartbeat", {"agentId": "agent-legacy"}, signed=False).status,
                         200)
        thief = Agent(self.base, "agent-legacy", mesh_token=MESH, extra_headers=REMOTE)
        r = thief.register()  # no token: the cached-agent pass, but a key would be added
        self.assertEqual((r.status, r.json().get("reason")), (403, "registration_token_required"))
        self.assertEqual(legacy.post("/heartbeat", {"agentId": "agent-legacy"}, signed=False).status,
                         200)

    def set_approval(self, node_id, approved):
        pp = harness.load_pb("portal_internal")
        with open(self.certs.ca, "rb") as f:
            ca = f.read()
        with open(self.cp_cert[0], "rb") as f:
            crt = f.read()
        with open(self.cp_cert[1], "rb") as f:
            key = f.read()
        creds = grpc.ssl_channel_credentials(ca, key, crt)
        with grpc.secure_channel("localhost:%d" % self.standin.port, creds) as ch:
            fn = ch.unary_unary("/edgecoder.v1.PortalInternal/SetNodeApproval",
                                request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=pp.SetNodeApprovalReply.FromString)
            fn(pp.SetNodeApprovalRequest(node_id=node_id, approved=approved, actor="test"),
               metadata=(("x-portal-service-token", SVC),), timeout=10)

    def test_withdrawn_approval_cuts_the_agent_off(self):
        a = self.agent("agent-revoke", token="tok-revoke")
        self.assertEqual(a.heartbeat().status, 200)
        self.set_approval("agent-revoke", False)
        # Its next registration (the original's workers register every loop) hears the portal.
        r = a.register(token="tok-revoke", version="0.2.0")
        self.assertEqual(r.json(), {"error": "node_not_activated",
                                    "reason": "node_pending_coordinator_approval"})
        for r in (a.heartbeat(), a.pull()[0]):
            self.assertEqual(r.status, 403, r.body)
            self.assertEqual(r.json()["error"], "node_not_activated")
        # A wrong token from anyone else revokes nothing.
        other = Agent(self.base, "agent-ok", mesh_token=MESH, extra_headers=REMOTE)
        self.assertEqual(other.register(token="bad-token").json()["reason"],
                         "registration_token_invalid")
        self.set_approval("agent-revoke", True)
        self.assertEqual(a.register(token="tok-revoke", version="0.2.0").status, 200)
        self.assertEqual(a.heartbeat().status, 200)

    # --- bad input ---------------------------------------------------------------------------

    def test_bad_input_names_the_field(self):
        base = {"agentId": "bad-1", "os": "linux", "version": "1", "mode": "swarm-only"}

        def reg(**changes):
            body = dict(base)
            for k, v in changes.items():
                if v is None:
                    body.pop(k, None)
                else:
                    body[k] = v
            return self.post("/register", body, token=None)

        for field, change in [("os", {"os": None}), ("os", {"os": "x"}),
                              ("mode", {"mode": "turbo"}), ("agentId", {"agentId": None}),
                              ("agentId", {"agentId": 7}), ("agentId", {"agentId": "has space"}),
                              ("maxConcurrentTasks", {"maxConcurrentTasks": 0}),
                              ("maxConcurrentTasks", {"maxConcurrentTasks": "2"}),
                              ("sandboxMode", {"sandboxMode": "chroot"}),
                              ("publicKeyPem", {"publicKeyPem": "not a pem"}),
                              ("x25519PublicKey", {"x25519PublicKey": "AAAA"}),
                              ("deviceId", {"deviceId": "x"}),
                              ("powerTelemetry", {"powerTelemetry": [1]})]:
            r = reg(**change)
            self.assertEqual(r.status, 400, (field, r.body))
            self.assertTrue(r.json()["reason"].startswith(field + ":"), (field, r.json()))
        r = harness.request("POST", self.base + "/register", body=b"{not json",
                            headers={"content-type": "application/json"})
        self.assertEqual((r.status, r.json()["error"]), (400, "invalid_json"))
        r = self.post("/register", [1, 2], token=None)
        self.assertEqual(r.status, 400)
        sub = {"taskId": "bad-t", "prompt": "x", "snapshotRef": SHA}
        for field, change in [("snapshotRef", {"snapshotRef": "main"}),
                              ("snapshotRef", {"snapshotRef": "http://example.com/x"}),
                              ("priority", {"priority": 101}), ("prompt", {"prompt": ""}),
                              ("taskId", {"taskId": ""}), ("language", {"language": "cobol"}),
                              ("resourceClass", {"resourceClass": "tpu"})]:
            body = dict(sub)
            body.update(change)
            r = self.post("/submit", body)
            self.assertEqual(r.status, 400, (field, r.body))
            self.assertTrue(r.json()["reason"].startswith(field + ":"), (field, r.json()))
        self.assertEqual(self.post("/submit", dict(sub, snapshotRef="https://git.example/x")).status, 200)
        a = self.agent("agent-local-bad", remote=False)
        r = a.heartbeat(activeModel=5)
        self.assertEqual((r.status, r.json()["reason"].split(":")[0]), (400, "activeModel"))
        r = a.post("/result", {"agentId": a.agent_id, "ok": True})
        self.assertEqual((r.status, r.json()["reason"].split(":")[0]), (400, "subtaskId"))
        r = a.post("/result", {"agentId": a.agent_id, "subtaskId": "x:0"})
        self.assertEqual((r.status, r.json()["reason"].split(":")[0]), (400, "ok"))
        r = self.post("/agent/diagnostics", {"agentId": a.agent_id, "events": [{"message": ""}]})
        self.assertEqual((r.status, r.json()["reason"].split(":")[0]), (400, "events[0].message"))
        r = self.post("/agent/diagnostics", {"agentId": a.agent_id, "events": "x"})
        self.assertEqual((r.status, r.json()["reason"].split(":")[0]), (400, "events"))
        r = self.get("/ledger/snapshot?limit=0")
        self.assertEqual((r.status, r.json()["reason"].split(":")[0]), (400, "limit"))
        # Oversized bodies are refused before anything reads them.
        r = self.post("/heartbeat", {"agentId": "x", "pad": "y" * 40000})
        self.assertEqual(r.status, 413)

    # --- leases and results ------------------------------------------------------------------

    def test_result_refusals(self):
        a = self.agent("agent-local-r1", remote=False)
        b = self.agent("agent-local-r2", remote=False)
        self.submit("lease-1")
        sub = self.pull_until(a, "lease-1:0")
        r = b.result(sub, output="not mine")
        self.assertEqual((r.status, r.json()["error"]), (409, "lease_not_held"))
        r = a.result(sub, output="wrong attempt", attempt=sub["attempt"] + 1)
        self.assertEqual((r.status, r.json()["error"]), (409, "lease_not_held"))
        r = a.result({"id": "no-such-task:0"}, output="x")
        self.assertEqual((r.status, r.json()["error"]), (404, "subtask_not_found"))
        self.assertEqual(a.result(sub, output="mine", attempt=sub["attempt"]).status, 200)
        self.assertEqual(a.result(sub, output="mine", attempt=sub["attempt"]).status, 200)
        r = a.result(sub, output="changed")
        self.assertEqual(r.status, 409, r.body)

    def test_sealed_work(self):
        a = self.agent("agent-local-x", x25519=True, remote=False)
        self.submit("sealed-1", prompt="print('sealed')")
        sub = self.pull_until(a, "sealed-1:0")
        reply = a.last_reply
        self.assertIsNone(reply["subtask"])
        env = reply["envelope"]
        self.assertEqual(env["metadata"]["attempt"], 1)
        self.assertEqual((sub["input"], sub["snapshotRef"], sub["language"]),
                         ("print('sealed')", SHA, "python"))
        # A broken tag is 400 envelope_decrypt_failed.
        from coordinator_agent import seal
        body = {"subtaskId": sub["id"], "taskId": "sealed-1", "agentId": a.agent_id}
        sealed = seal(a.keys[sub["id"]], {"ok": True, "output": "x", "durationMs": 1})
        sealed["tag"] = "00" * 16
        body.update(sealed)
        r = a.post("/result", body)
        self.assertEqual((r.status, r.json()["error"]), (400, "envelope_decrypt_failed"))
        r = a.result(sub, output="sealed ok")
        self.assertEqual(r.status, 200, r.body)
        res = self.get("/tasks/sealed-1").json()["subtasks"][0]["result"]
        self.assertEqual(res["output"], "sealed ok")

    def test_diagnostics(self):
        a = self.agent("agent-local-d", remote=False)
        r = self.post("/agent/diagnostics", {"agentId": a.agent_id, "source": "worker",
                                             "events": [{"message": "one", "eventAtMs": 5},
                                                        {"message": "two"}]})
        self.assertEqual((r.status, r.json()), (200, {"ok": True, "stored": 2}))
        r = self.post("/agent/diagnostics", {"agentId": "nobody", "events": [{"message": "x"}]})
        self.assertEqual((r.status, r.json()["error"]), (401, "agent_not_registered"))
        r = self.get("/agent/diagnostics/" + a.agent_id)
        j = r.json()
        self.assertEqual((j["count"], j["events"][0]["message"]), (2, "two"))
        r = self.get("/agent/diagnostics/" + a.agent_id, token=None,
                     headers={"x-portal-service-token": SVC})
        self.assertEqual(r.status, 200)
        r = self.get("/agent/diagnostics/" + a.agent_id, token=None,
                     headers={"x-portal-service-token": "wrong"})
        self.assertEqual(r.status, 401)

    # --- gRPC ---------------------------------------------------------------------------------

    def channel(self, cert):
        with open(self.certs.ca, "rb") as f:
            ca = f.read()
        with open(cert[0], "rb") as f:
            crt = f.read()
        with open(cert[1], "rb") as f:
            key = f.read()
        creds = grpc.ssl_channel_credentials(ca, key, crt)
        return grpc.secure_channel("localhost:%d" % self.gport, creds)

    def call(self, ch, method, req, resp_cls, md=(("x-mesh-token", MESH),)):
        fn = ch.unary_unary("/edgecoder.v1.Coordinator/" + method,
                            request_serializer=lambda m: m.SerializeToString(),
                            response_deserializer=resp_cls.FromString)
        return fn(req, metadata=md, timeout=10)

    def test_grpc_coordinator(self):
        pb = self.pb
        a = self.agent("agent-local-g", remote=False)
        self.assertEqual(a.heartbeat().status, 200)
        self.submit("grpc-1")
        with self.channel(self.cp_cert) as ch:
            deadline = time.time() + 5  # the counts are refreshed four times a second
            while True:
                st = self.call(ch, "GetStatus", pb.GetStatusRequest(), pb.StatusReply)
                if st.queued + st.leased + st.results >= 1 or time.time() > deadline:
                    break
                time.sleep(0.1)
            self.assertGreaterEqual(st.queued + st.leased + st.results, 1)
            agents = self.call(ch, "ListAgents", pb.ListAgentsRequest(), pb.ListAgentsReply)
            me = [x for x in agents.agents if x.agent_id == "agent-local-g"]
            self.assertEqual(len(me), 1)
            self.assertTrue(me[0].signing_key_registered)
            cap = self.call(ch, "GetCapacity", pb.GetCapacityRequest(), pb.CapacityReply)
            self.assertGreaterEqual(cap.totals.agents_connected, 1)
            task = self.call(ch, "GetTask", pb.GetTaskRequest(task_id="grpc-1"), pb.TaskReply)
            self.assertEqual((task.task_id, task.subtasks[0].subtask_id), ("grpc-1", "grpc-1:0"))
            with self.assertRaises(grpc.RpcError) as e:
                self.call(ch, "GetTask", pb.GetTaskRequest(task_id="nope"), pb.TaskReply)
            self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
            with self.assertRaises(grpc.RpcError) as e:
                self.call(ch, "GetStatus", pb.GetStatusRequest(), pb.StatusReply, md=())
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        with self.channel(self.coord_cert) as ch:  # a coordinator is not the control plane
            with self.assertRaises(grpc.RpcError) as e:
                self.call(ch, "GetStatus", pb.GetStatusRequest(), pb.StatusReply)
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)


class CoordinatorConfig(unittest.TestCase):
    def test_config_errors_exit_78(self):
        code, out, err = harness.run(["coordinator"], env={"COORDINATOR_PORT": "x"})
        self.assertEqual(code, 78, err)
        self.assertIn("DATABASE_URL", err)
        self.assertIn("COORDINATOR_PORT", err)
        code, out, err = harness.run(["coordinator"], env={
            "EDGECODER_ENV": "production", "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
            "PORTAL_SERVICE_URL": "http://portal.example", "INFERENCE_URL": "grpc://inf:1"})
        self.assertEqual(code, 78, err)
        for var in ("MESH_AUTH_TOKEN", "COORDINATOR_PRIVATE_KEY_PEM", "PORTAL_SERVICE_URL",
                    "PORTAL_SERVICE_TOKEN", "INFERENCE_URL", "EDGECODER_TLS_CERT"):
            self.assertIn(var, err)
        self.assertNotIn("postgresql://x", err)
        code, out, err = harness.run(["coordinator", "--help-config"])
        self.assertEqual(code, 0)
        for var in ("COORDINATOR_PORT", "COORDINATOR_GRPC_PORT", "MESH_AUTH_TOKEN",
                    "PORTAL_SERVICE_URL", "OLLAMA_HOST", "SECURITY_MAX_SKEW_MS",
                    "EDGECODER_HTTP_THREADS", "EDGECODER_LOG_LEVEL"):
            self.assertIn(var, out)


if __name__ == "__main__":
    unittest.main()
