"""A signing agent for the coordinator's integration tests (43, 45): Ed25519 request signatures
and X25519 + HKDF-SHA256 + AES-256-GCM envelopes as original-system.md sections 5.3 and 5.7
describe them, over keep-alive HTTP. Python standard library plus python3-cryptography."""

import base64
import hashlib
import http.client
import json
import os
import time
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import harness


def b64(b):
    return base64.b64encode(b).decode()


def envelope_key(x25519_private, ephemeral_b64, subtask_id):
    shared = x25519_private.exchange(X25519PublicKey.from_public_bytes(base64.b64decode(ephemeral_b64)))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=subtask_id.encode(),
                info=b"edgecoder-envelope").derive(shared)


def open_envelope(key, env):
    ct = base64.b64decode(env["encryptedPayload"]) + bytes.fromhex(env["tag"])
    return json.loads(AESGCM(key).decrypt(bytes.fromhex(env["nonce"]), ct, None))


def seal(key, obj):
    nonce = os.urandom(12)
    ct = AESGCM(key).encrypt(nonce, json.dumps(obj).encode(), None)
    return {"encryptedPayload": b64(ct[:-16]), "nonce": nonce.hex(), "tag": ct[-16:].hex()}


class Agent:
    def __init__(self, base, agent_id, mesh_token=None, x25519=False, extra_headers=None,
                 timeout=10.0):
        self.base = base
        self.agent_id = agent_id
        self.mesh_token = mesh_token
        self.ed = Ed25519PrivateKey.generate()
        self.x = X25519PrivateKey.generate() if x25519 else None
        self.extra_headers = dict(extra_headers or {})
        self.timeout = timeout
        self.conn = None
        self.keys = {}  # subtaskId -> envelope key

    def public_pem(self):
        return self.ed.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def x25519_b64(self):
        return b64(self.x.public_key().public_bytes(serialization.Encoding.Raw,
                                                     serialization.PublicFormat.Raw))

    def sign(self, path, body, agent_id=None, ts=None, nonce=None, key=None):
        ts = str(ts if ts is not None else int(time.time() * 1000))
        nonce = nonce or str(uuid.uuid4())
        digest = hashlib.sha256(body).hexdigest()
        canonical = "%s\n%s\nPOST\n%s\n%s" % (ts, nonce, path, digest)
        sig = (key or self.ed).sign(canonical.encode())
        return {"x-agent-id": agent_id or self.agent_id, "x-timestamp-ms": ts, "x-nonce": nonce,
                "x-body-sha256": digest, "x-signature": b64(sig)}

    def headers(self, extra=None):
        h = {"content-type": "application/json"}
        if self.mesh_token:
            h["x-mesh-token"] = self.mesh_token
        h.update(self.extra_headers)
        h.update(extra or {})
        return h

    def send(self, path, body_bytes, headers):
        """One POST on the agent's keep-alive connection (reopened after an error)."""
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = harness.connect(self.base, timeout=self.timeout)
            try:
                self.conn.request("POST", path, body=body_bytes, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                if (r.getheader("connection") or "").lower() == "close":
                    self.close()
                return harness.Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise
            except Exception:
                self.close()
                raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def post(self, path, obj, signed=True, extra=None):
        body = json.dumps(obj).encode()
        h = self.headers(extra)
        if signed:
            h.update(self.sign(path, body))
        return self.send(path, body, h)

    def register(self, token=None, signed=True, **fields):
        body = {"agentId": self.agent_id, "os": "linux", "version": "0.1.0", "mode": "swarm-only",
                "localModelProvider": "edgecoder-local", "clientType": "edgecoder-native",
                "maxConcurrentTasks": 1, "sandboxMode": "docker", "publicKeyPem": self.public_pem()}
        if self.x is not None:
            body["x25519PublicKey"] = self.x25519_b64()
        if token is not None:
            body["registrationToken"] = token
        body.update(fields)
        r = self.post("/register", body, signed=signed)
        if r.status == 200 and r.json().get("meshToken"):
            self.mesh_token = r.json()["meshToken"]
        return r

    def heartbeat(self, **fields):
        body = {"agentId": self.agent_id}
        body.update(fields)
        return self.post("/heartbeat", body)

    def pull(self):
        """(response, subtask or None); an envelope is opened into a subtask-like dict."""
        r = self.post("/pull", {"agentId": self.agent_id})
        if r.status != 200:
            return r, None
        j = r.json()
        self.last_reply = j
        if j.get("envelope"):
            env = j["envelope"]
            key = envelope_key(self.x, env["ephemeralPublicKey"], env["subtaskId"])
            self.keys[env["subtaskId"]] = key
            inner = open_envelope(key, env)
            sub = {"id": env["subtaskId"], "taskId": env["subtaskId"].split(":")[0],
                   "input": inner["input"], "snapshotRef": inner["snapshotRef"],
                   "language": inner["kind"], "sealed": True,
                   "attempt": env["metadata"].get("attempt")}
            return r, sub
        return r, j.get("subtask")

    def result(self, sub, ok=True, output="", error=None, duration_ms=7, attempt=None,
               sealed=None):
        answer = {"ok": ok, "output": output, "durationMs": duration_ms}
        if error is not None:
            answer["error"] = error
        body = {"subtaskId": sub["id"], "taskId": sub.get("taskId", sub["id"].split(":")[0]),
                "agentId": self.agent_id}
        if attempt is not None:
            body["attempt"] = attempt
        if sealed if sealed is not None else sub.get("sealed"):
            body.update(seal(self.keys[sub["id"]], answer))
        else:
            body.update(answer)
        return self.post("/result", body)
