"""Wire compatibility of signed agent requests and envelope encryption with an independent
implementation: python3-cryptography plays a Node agent and the original coordinator exactly as
original-system.md sections 5.3 and 5.7 describe them (JSON.stringify bodies, the canonical string,
base64 Ed25519 signatures; X25519 + HKDF-SHA256 + AES-256-GCM with the tag split off), and the C
code checks those vectors and produces its own for Python to check. The C side runs inside the unit
test programs (unit_coord_test_auth, unit_coord_test_envelope) in their EC_COMPAT_VECTORS mode."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import uuid

import harness

# Debian's python3-cryptography (tools/setup installs it): a missing module fails the module.
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

BUILD_DIR = os.environ.get("EC_UNIT_DIR", os.path.dirname(harness.BINARY))
RAW = serialization.Encoding.Raw


def b64(data):
    return base64.b64encode(data).decode()


def raw_public(key):
    return key.public_key().public_bytes(RAW, serialization.PublicFormat.Raw)


# --- The original's side, written from original-system.md alone ---------------------------------

def json_stringify(obj):
    """JSON.stringify: no spaces, non-ASCII kept as UTF-8."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def agent_sign(key, agent_id, path, body, ts_ms, nonce=None):
    """A Node agent's signed headers for POST <path> with the body string it sends."""
    nonce = nonce or str(uuid.uuid4())
    body_sha = hashlib.sha256(body.encode()).hexdigest()
    canonical = "%d\n%s\nPOST\n%s\n%s" % (ts_ms, nonce, path, body_sha)
    return {"agent_id": agent_id, "timestamp_ms": str(ts_ms), "nonce": nonce,
            "body_sha256": body_sha, "signature": b64(key.sign(canonical.encode())),
            "path": path, "body": body}


def envelope_key(private, peer_public_raw, subtask_id):
    shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public_raw))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=subtask_id.encode(),
                info=b"edgecoder-envelope").derive(shared)


def gcm_seal(key, plaintext):
    """Node: createCipheriv('aes-256-gcm'), base64 ciphertext, hex IV, getAuthTag() hex."""
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plaintext.encode(), None)
    return {"encrypted_payload": b64(sealed[:-16]), "nonce": iv.hex(), "tag": sealed[-16:].hex()}


def gcm_open(key, payload_b64, nonce_hex, tag_hex):
    return AESGCM(key).decrypt(bytes.fromhex(nonce_hex), base64.b64decode(payload_b64, validate=True)
                               + bytes.fromhex(tag_hex), None).decode()


def coordinator_seal(agent_public_raw, subtask_id, plaintext):
    """The original coordinator on /pull: an ephemeral X25519 key per envelope."""
    ephemeral = X25519PrivateKey.generate()
    key = envelope_key(ephemeral, agent_public_raw, subtask_id)
    env = gcm_seal(key, plaintext)
    env.update({"ephemeral_public_key": b64(raw_public(ephemeral)), "key_hex": key.hex()})
    return env


class CompatVectors(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="ec-compat41-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def run_c(self, program, vectors, tag):
        """Runs a unit test program in its vectors mode; returns what it wrote back."""
        path = os.path.join(BUILD_DIR, program)
        self.assertTrue(os.access(path, os.X_OK), "%s is not built" % path)
        vin, vout = os.path.join(self.dir, tag + "-in.json"), os.path.join(self.dir, tag + "-out.json")
        with open(vin, "w") as f:
            json.dump(vectors, f)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EC_COMPAT_VECTORS": vin,
               "EC_COMPAT_OUT": vout, "ASAN_OPTIONS": "detect_leaks=1",
               "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
        p = subprocess.run([path], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120)
        out = p.stdout.decode("utf-8", "replace")
        self.assertNotIn("Sanitizer", out)
        self.assertNotIn("runtime error:", out)
        self.assertEqual(p.returncode, 0, "%s found incompatibilities:\n%s" % (program, out))
        with open(vout) as f:
            return json.load(f)

    def test_signed_requests(self):
        key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        now = int(time.time() * 1000)
        hb = json_stringify({"agentId": "node-agent", "powerTelemetry": {"onExternalPower": True}})
        res = json_stringify({"subtaskId": "s-1", "taskId": "t-1", "agentId": "node-agent",
                              "ok": True, "output": "héllo ✓ 日本", "durationMs": 12})
        cases = []

        def case(name, expect, req, body_agent_id="node-agent", reason=None):
            req = dict(req, name=name, expect=expect, body_agent_id=body_agent_id)
            if reason:
                req["reason"] = reason
            cases.append(req)

        ok = agent_sign(key, "node-agent", "/heartbeat", hb, now - 1500)
        case("heartbeat", "ok", ok)
        case("result_utf8_body", "ok", agent_sign(key, "node-agent", "/result", res, now + 900))
        case("replayed", "signature_invalid", ok, reason="replay")
        tampered = agent_sign(key, "node-agent", "/heartbeat", hb, now)
        case("body_tampered_hash_kept", "signature_invalid",
             dict(tampered, body=hb.replace("true", "false")), reason="body_hash_mismatch")
        rehashed = dict(tampered, body=hb.replace("true", "false"), nonce=str(uuid.uuid4()))
        rehashed["body_sha256"] = hashlib.sha256(rehashed["body"].encode()).hexdigest()
        case("body_and_hash_tampered", "signature_invalid", rehashed, reason="signature_mismatch")
        case("other_key", "signature_invalid", agent_sign(other, "node-agent", "/heartbeat", hb, now))
        case("other_path", "signature_invalid",
             dict(agent_sign(key, "node-agent", "/pull", hb, now), path="/heartbeat"))
        case("too_old", "signature_invalid",
             agent_sign(key, "node-agent", "/heartbeat", hb, now - 121000), reason="timestamp_skew")
        case("agent_id_mismatch", "agent_id_mismatch",
             agent_sign(key, "node-agent", "/pull", hb, now), body_agent_id="someone-else")
        pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        out = self.run_c("unit_coord_test_auth",
                         {"auth": {"public_key_pem": pem.decode(), "now_ms": now, "cases": cases}},
                         "auth")

        # The C agent side, checked the way the original coordinator would (plus the body hash).
        c = out["auth_c"]
        c_key = serialization.load_pem_public_key(c["public_key_pem"].encode())
        self.assertEqual(len(c["cases"]), 3)
        for r in c["cases"]:
            self.assertRegex(r["nonce"], r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
            self.assertRegex(r["timestamp_ms"], r"^[0-9]{13}$")
            self.assertEqual(r["body_sha256"], hashlib.sha256(r["body"].encode()).hexdigest())
            sig = base64.b64decode(r["signature"], validate=True)
            self.assertEqual(len(sig), 64)
            canonical = "%s\n%s\nPOST\n%s\n%s" % (r["timestamp_ms"], r["nonce"], r["path"],
                                                  r["body_sha256"])
            c_key.verify(sig, canonical.encode())  # raises InvalidSignature on a mismatch

    def test_envelopes(self):
        task = json_stringify({"input": "def f(x):\n    return x * 2\n", "snapshotRef":
                               "0123456789abcdef0123456789abcdef01234567", "kind": "python"})
        subtask_ids = [str(uuid.uuid4()), "task-7:2", "tâche-ü:1"]
        plaintexts = [task, "", "x" * 100000]
        agent = X25519PrivateKey.generate()
        node_sealed = []
        for sid, pt in zip(subtask_ids, plaintexts):
            env = coordinator_seal(raw_public(agent), sid, pt)
            raw_priv = agent.private_bytes(RAW, serialization.PrivateFormat.Raw,
                                           serialization.NoEncryption())
            node_sealed.append(dict(env, subtask_id=sid, plaintext=pt,
                                    agent_private_hex=raw_priv.hex()))
        # Results sealed by a Node agent with the key of node_sealed[0], some of them damaged.
        key0 = node_sealed[0]["key_hex"]
        result = json_stringify({"ok": True, "output": "[2, 4]", "durationMs": 31})
        good = dict(gcm_seal(bytes.fromhex(key0), result), key_hex=key0, plaintext=result)
        node_results = [dict(good, name="ok", expect="ok")]
        bad_tag = "%02x" % (int(good["tag"][:2], 16) ^ 1) + good["tag"][2:]
        node_results.append(dict(good, name="tag_flipped", tag=bad_tag,
                                 expect="envelope_decrypt_failed"))
        node_results.append(dict(good, name="tag_truncated", tag=good["tag"][:16],
                                 expect="envelope_decrypt_failed"))
        node_results.append(dict(good, name="nonce_not_hex", nonce="zz" + good["nonce"][2:],
                                 expect="envelope_decrypt_failed"))
        node_results.append(dict(good, name="payload_not_base64",
                                 encrypted_payload="*" + good["encrypted_payload"][1:],
                                 expect="envelope_decrypt_failed"))
        node_results.append(dict(good, name="other_subtask_key", expect="envelope_decrypt_failed",
                                 key_hex=node_sealed[1]["key_hex"]))
        agents = [X25519PrivateKey.generate() for _ in range(2)]
        seal_for = [{"agent_public_b64": b64(raw_public(a)), "subtask_id": sid, "plaintext": task}
                    for a, sid in zip(agents, subtask_ids)]
        out = self.run_c("unit_coord_test_envelope", {"node_sealed": node_sealed,
                                                      "node_results": node_results,
                                                      "seal_for": seal_for}, "env1")

        # Results the C agent sealed for the Node coordinator, which kept its keys.
        self.assertEqual(len(out["agent_results"]), len(node_sealed))
        for sealed, r in zip(node_sealed, out["agent_results"]):
            self.assertEqual(gcm_open(bytes.fromhex(sealed["key_hex"]), r["encrypted_payload"],
                                      r["nonce"], r["tag"]), r["plaintext"])
        # Tasks the C coordinator sealed, opened by Node agents.
        self.assertEqual(len(out["sealed"]), len(agents))
        phase2 = []
        for a, s in zip(agents, out["sealed"]):
            eph = base64.b64decode(s["ephemeral_public_key"], validate=True)
            self.assertEqual(len(eph), 32)
            self.assertRegex(s["nonce"], r"^[0-9a-f]{24}$")
            self.assertRegex(s["tag"], r"^[0-9a-f]{32}$")
            self.assertEqual(len(base64.b64decode(s["encrypted_payload"], validate=True)),
                             len(task.encode()))
            key = envelope_key(a, eph, s["subtask_id"])
            self.assertEqual(key.hex(), s["key_hex"])
            self.assertEqual(gcm_open(key, s["encrypted_payload"], s["nonce"], s["tag"]), task)
            with self.assertRaises(InvalidTag):
                gcm_open(envelope_key(a, eph, s["subtask_id"] + "x"), s["encrypted_payload"],
                         s["nonce"], s["tag"])
            res = json_stringify({"ok": False, "output": "", "error": "boom ✗", "durationMs": 5})
            phase2.append(dict(gcm_seal(key, res), key_hex=s["key_hex"], plaintext=res,
                               name="agent_result_" + s["subtask_id"][:8], expect="ok"))
        # The Node agents' results, opened by the C coordinator with the keys it kept.
        self.run_c("unit_coord_test_envelope", {"node_results": phase2}, "env2")


if __name__ == "__main__":
    unittest.main()
