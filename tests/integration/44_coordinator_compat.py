"""Original-protocol compatibility: an agent written from ../shared/reference/original-system.md
alone (sections 2.1, 4.1, 5.3, 5.7: field names, the signing string, the envelope format), with
nothing taken from this code base, runs the original worker's loop against `edgecoder
coordinator`: register (every loop, adopting meshToken), heartbeat, pull an encrypted task,
decrypt it, post an encrypted result with a report signature. Standard library plus
python3-cryptography, as the original's Node crypto calls map onto it."""

import base64
import hashlib
import http.client
import json
import os
import time
import unittest
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import harness

MESH = "compat-mesh-token-0123456789"


def js(obj):
    """JSON.stringify: no spaces."""
    return json.dumps(obj, separators=(",", ":"))


class OriginalWorker:
    """The original worker (worker-runner.ts) as the reference describes it."""

    def __init__(self, coordinator_url, agent_id, registration_token):
        self.url = coordinator_url
        self.agent_id = agent_id
        self.registration_token = registration_token
        self.mesh_token = None  # learnt from /register ("managed enrollment")
        # Ephemeral Ed25519 and X25519 key pairs, made at every start (section 4.1).
        self.signing = Ed25519PrivateKey.generate()
        self.x25519 = X25519PrivateKey.generate()
        self.envelope_keys = {}
        host, port = coordinator_url.split("//")[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=15)

    def public_key_pem(self):  # PEM SPKI
        return self.signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def x25519_public_key(self):  # base64 raw 32 bytes
        return base64.b64encode(self.x25519.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()

    def signed_headers(self, path, body):
        # x-agent-id, x-timestamp-ms, x-nonce (UUID), x-body-sha256 (hex sha256 of the JSON body
        # string), x-signature (base64 Ed25519 over "<ts>\n<nonce>\nPOST\n<path>\n<bodySha256>").
        ts = str(int(time.time() * 1000))
        nonce = str(uuid.uuid4())
        body_sha = hashlib.sha256(body.encode()).hexdigest()
        sig = self.signing.sign(("%s\n%s\nPOST\n%s\n%s" % (ts, nonce, path, body_sha)).encode())
        return {"x-agent-id": self.agent_id, "x-timestamp-ms": ts, "x-nonce": nonce,
                "x-body-sha256": body_sha, "x-signature": base64.b64encode(sig).decode()}

    def post(self, path, payload):
        body = js(payload)
        headers = {"content-type": "application/json"}
        if self.mesh_token:
            headers["x-mesh-token"] = self.mesh_token
        headers.update(self.signed_headers(path, body))
        self.conn.request("POST", path, body=body.encode(), headers=headers)
        r = self.conn.getresponse()
        return r.status, json.loads(r.read() or b"null")

    def register(self):
        return self.post("/register", {
            "agentId": self.agent_id, "os": "linux", "version": "0.1.0", "mode": "swarm-only",
            "registrationToken": self.registration_token, "localModelProvider": "edgecoder-local",
            "clientType": "edgecoder-native", "maxConcurrentTasks": 1,
            "powerTelemetry": {"deviceType": "desktop", "onExternalPower": True},
            "publicKeyPem": self.public_key_pem(), "x25519PublicKey": self.x25519_public_key(),
            "sandboxMode": "none"})

    def heartbeat(self):
        return self.post("/heartbeat", {"agentId": self.agent_id,
                                        "powerTelemetry": {"deviceType": "desktop"},
                                        "sandboxMode": "none"})

    def open_envelope(self, env):
        # ECDH with the ephemeral key, HKDF-SHA256(salt = subtaskId, info "edgecoder-envelope"),
        # AES-256-GCM with the hex nonce and the separate hex tag.
        shared = self.x25519.exchange(
            X25519PublicKey.from_public_bytes(base64.b64decode(env["ephemeralPublicKey"])))
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=env["subtaskId"].encode(),
                   info=b"edgecoder-envelope").derive(shared)
        self.envelope_keys[env["subtaskId"]] = key
        plain = AESGCM(key).decrypt(bytes.fromhex(env["nonce"]),
                                    base64.b64decode(env["encryptedPayload"]) +
                                    bytes.fromhex(env["tag"]), None)
        return json.loads(plain)  # {input, snapshotRef, kind:<language>}

    def encrypted_result(self, subtask_id, ok, output, duration_ms):
        key = self.envelope_keys[subtask_id]
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, js({"ok": ok, "output": output,
                                                "durationMs": duration_ms}).encode(), None)
        report_nonce = str(uuid.uuid4())
        # The quirk of section 5.7: taskId rebuilt from subtaskId.split(":")[0].
        task_id = subtask_id.split(":")[0]
        report = js({"subtaskId": subtask_id, "taskId": task_id, "agentId": self.agent_id,
                     "ok": ok, "durationMs": duration_ms, "reportNonce": report_nonce})
        return self.post("/result", {
            "subtaskId": subtask_id, "encryptedPayload": base64.b64encode(sealed[:-16]).decode(),
            "nonce": nonce.hex(), "tag": sealed[-16:].hex(), "taskId": task_id,
            "agentId": self.agent_id, "reportNonce": report_nonce,
            "reportSignature": base64.b64encode(self.signing.sign(report.encode())).decode()})

    def loop_once(self, run):
        """One online iteration (section 4.1 steps 2, 3, 6). Returns what it did."""
        status, reg = self.register()
        if status != 200:
            return ("register", status, reg)
        self.mesh_token = reg.get("meshToken") or self.mesh_token
        status, hb = self.heartbeat()
        if status != 200 or not hb.get("ok"):
            return ("heartbeat", status, hb)
        status, pulled = self.post("/pull", {"agentId": self.agent_id})
        if status != 200:
            return ("pull", status, pulled)
        if pulled.get("envelope"):
            env = pulled["envelope"]
            inner = self.open_envelope(env)
            ok, output = run(inner["input"], inner["kind"], inner["snapshotRef"])
            status, res = self.encrypted_result(env["subtaskId"], ok, output, 12)
            return ("result", status, res, env)
        if pulled.get("subtask"):
            return ("plain", 200, pulled)
        return ("idle", 200, pulled)


class OriginalProtocol(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        db = harness.postgres().create_db("coord_compat", "coordinator")
        cls.port = harness.free_port()
        cls.proc = harness.Proc(["coordinator"], env={
            "DATABASE_URL": db, "COORDINATOR_PORT": str(cls.port),
            "COORDINATOR_GRPC_PORT": str(harness.free_port()), "MESH_AUTH_TOKEN": MESH,
            "AGENT_RATE_LIMIT_MAX": "30"}, port=cls.port)
        cls.url = "http://127.0.0.1:%d" % cls.port

    @classmethod
    def tearDownClass(cls):
        assert cls.proc.stop() == 0, cls.proc.output()[-4000:]

    def submit(self, task_id, prompt):
        # The original /submit fields (section 2.1).
        return harness.request("POST", self.url + "/submit", headers={"x-mesh-token": MESH}, body={
            "taskId": task_id, "prompt": prompt, "language": "python",
            "snapshotRef": "https://github.com/example/repo/commit/abc",
            "submitterAccountId": "anonymous", "projectId": "compat", "resourceClass": "cpu",
            "priority": 60, "sandboxRequired": False})

    def test_original_worker_loop(self):
        r = self.submit("compat-task", "print(6 * 7)")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json(), {"taskId": "compat-task", "subtasks": ["compat-task:0"]})
        worker = OriginalWorker(self.url, "compat-worker", "enrollment-token-unused")
        ran = []

        def run(code, language, snapshot_ref):
            ran.append((code, language, snapshot_ref))
            return True, "42\n"

        did = None
        for _ in range(20):
            did = worker.loop_once(run)
            if did[0] == "result":
                break
            self.assertEqual(did[0], "idle", did)
            time.sleep(0.1)
        self.assertEqual(did[0], "result", did)
        self.assertEqual((did[1], did[2]), (200, {"ok": True}))
        env = did[3]
        self.assertEqual(env["subtaskId"], "compat-task:0")
        self.assertEqual(env["metadata"]["resourceClass"], "cpu")
        self.assertEqual(env["metadata"]["priority"], 60)
        self.assertEqual(env["metadata"]["language"], "python")
        self.assertEqual(ran, [("print(6 * 7)", "python",
                                "https://github.com/example/repo/commit/abc")])
        self.assertEqual(worker.mesh_token, MESH)
        # The next loop finds nothing, and re-registering every loop keeps working.
        self.assertEqual(worker.loop_once(run)[0], "idle")
        # What the original could not do: read the result back.
        task = harness.request("GET", self.url + "/tasks/compat-task",
                               headers={"x-mesh-token": MESH}).json()
        sub = task["subtasks"][0]
        self.assertEqual((task["status"], sub["result"]["ok"], sub["result"]["output"]),
                         ("completed", True, "42\n"))
        self.assertEqual(sub["result"]["agentId"], "compat-worker")

    def test_restarted_worker_new_keys(self):
        """A restarted original worker has fresh ephemeral keys; with the gate open (no
        PORTAL_SERVICE_URL, the original's development mode) it registers them again."""
        first = OriginalWorker(self.url, "compat-restart", "tok")
        self.assertEqual(first.loop_once(lambda *a: (True, ""))[0], "idle")
        second = OriginalWorker(self.url, "compat-restart", "tok")
        self.assertEqual(second.loop_once(lambda *a: (True, ""))[0], "idle")
        status, body = first.heartbeat()  # the old key no longer signs for it
        self.assertEqual((status, body["error"]), (401, "signature_invalid"))

    def test_original_error_strings(self):
        worker = OriginalWorker(self.url, "compat-errors", "tok")
        status, body = worker.heartbeat()  # no mesh token yet
        self.assertEqual((status, body), (401, {"error": "mesh_unauthorized"}))
        worker.mesh_token = MESH
        status, body = worker.heartbeat()  # not registered yet: signed with an unknown key
        self.assertEqual((status, body["error"]), (401, "signature_invalid"))
        r = harness.request("GET", self.url + "/status")
        self.assertEqual((r.status, r.json()), (401, {"error": "mesh_unauthorized"}))
        r = harness.request("GET", self.url + "/status", headers={"x-mesh-token": MESH})
        self.assertEqual(set(r.json()) >= {"queued", "agents", "results"}, True)


if __name__ == "__main__":
    unittest.main()
