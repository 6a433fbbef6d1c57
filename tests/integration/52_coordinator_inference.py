"""The coordinator's /submit through the real inference service (mTLS, x-inference-token, signed
Decompose) and the fake Ollama: a scripted answer becomes the task's subtasks end to end; the
service's own fallback is stored as such; a wrong token, an untrusted coordinator key or an
unreachable service leave the coordinator to fall back to one subtask holding the prompt, and say
so in its log; resubmitting the same task answers the stored subtask ids."""

import json
import time
import unittest

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import harness

MESH = "mesh-token-52-0123456789abcdef"
INF_TOKEN = "inference-token-52-0123456789ab"
SHA = "0123456789abcdef0123456789abcdef01234567"
PLAN = ("Here you go:\n```json\n[\n"
        "  {\"input\": \"Write a function add(a, b) that returns a + b\", \"language\": \"python\"},\n"
        "  {\"input\": \"Write a test that checks add(2, 3) == 5\", \"language\": \"python\"},\n"
        "  {\"input\": \"Print add(2, 3) from a Node script\", \"language\": \"javascript\"},\n"
        "]\n```")
SCRIPT = {"models": ["qwen2.5:7b"],
          "rules": [{"pattern": "adder service", "response": PLAN},
                    {"pattern": "unsplittable", "response": "I cannot split this."},
                    {"pattern": "oversized split", "response": json.dumps(
                        [{"input": "x" * 300000}, {"input": "print(2)"}])}],
          "default": {"response": "[]"}}


def pem_private(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def pem_public(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class CoordinatorInference(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.postgres()
        cls.certs = harness.DevCerts()
        cls.inf_cert = cls.certs.issue("inference", role="inference", ident="inf-1")
        cls.coord_cert = cls.certs.issue("coord", role="coordinator", ident="coord-a")
        cls.key = Ed25519PrivateKey.generate()
        cls.fake = harness.FakeOllama(SCRIPT)
        cls.inf_port, http_port = harness.free_port(), harness.free_port()
        cls.inf = harness.Proc(["inference"], port=cls.inf_port, env={
            "INFERENCE_PORT": str(http_port), "INFERENCE_GRPC_PORT": str(cls.inf_port),
            "OLLAMA_HOST": cls.fake.url, "INFERENCE_AUTH_TOKEN": INF_TOKEN,
            "INFERENCE_REQUIRE_SIGNED_COORDINATOR_REQUESTS": "true",
            "INFERENCE_COORDINATOR_PEER_ID": "coord-a",
            "INFERENCE_COORDINATOR_PUBLIC_KEY_PEM": pem_public(cls.key),
            "EDGECODER_TLS_CA": cls.certs.ca, "EDGECODER_TLS_CERT": cls.inf_cert[0],
            "EDGECODER_TLS_KEY": cls.inf_cert[1]})
        harness.wait_port(http_port, proc=cls.inf.proc)

    @classmethod
    def tearDownClass(cls):
        rc = cls.inf.stop()
        cls.fake.kill()
        assert rc == 0, "inference exited %s:\n%s" % (rc, cls.inf.output()[-3000:])

    def coordinator(self, name, **env):
        db = "c52_%s_%d" % (name, int(time.time() * 1000) % 100000000)
        self.pg.create_db(db, "coordinator")
        port = harness.free_port()
        base = {"DATABASE_URL": self.pg.url(db), "COORDINATOR_PORT": str(port),
                "COORDINATOR_GRPC_PORT": str(harness.free_port()), "MESH_AUTH_TOKEN": MESH,
                "COORDINATOR_PEER_ID": "coord-a",
                "COORDINATOR_PRIVATE_KEY_PEM": pem_private(self.key),
                "INFERENCE_URL": "grpcs://localhost:%d" % self.inf_port,
                "INFERENCE_AUTH_TOKEN": INF_TOKEN,
                "EDGECODER_TLS_CA": self.certs.ca, "EDGECODER_TLS_CERT": self.coord_cert[0],
                "EDGECODER_TLS_KEY": self.coord_cert[1],
                "OLLAMA_HOST": self.fake.url}
        base.update(env)
        proc = self.spawn(["coordinator"], port=port, env=base)
        return proc, "http://127.0.0.1:%d" % port

    def submit(self, base, task_id, prompt, language="python"):
        return harness.request("POST", base + "/submit", {
            "taskId": task_id, "prompt": prompt, "language": language, "snapshotRef": SHA},
            headers={"x-mesh-token": MESH})

    def task(self, base, task_id):
        r = harness.request("GET", base + "/tasks/" + task_id, headers={"x-mesh-token": MESH})
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def inputs(self, task):
        subs = sorted(task["subtasks"], key=lambda s: s.get("index", s.get("subtaskIndex", 0)))
        return [(s["input"], s["language"]) for s in subs]

    def test_scripted_decomposition_becomes_the_subtasks(self):
        _, base = self.coordinator("ok")
        r = self.submit(base, "adder-1", "Build an adder service with tests")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(len(r.json()["subtasks"]), 3)
        t = self.task(base, "adder-1")
        self.assertEqual(self.inputs(t), [
            ("Write a function add(a, b) that returns a + b", "python"),
            ("Write a test that checks add(2, 3) == 5", "python"),
            ("Print add(2, 3) from a Node script", "javascript")])
        self.assertFalse(t["task"]["decompositionFallback"] if "task" in t
                         else t["decompositionFallback"])
        # The request reached Ollama through the service, with the task's prompt in it.
        prompts = [q.get("prompt") or "" for q in self.fake.requests()
                   if q["path"] in ("/api/generate", "/api/chat")]
        self.assertTrue(any("Build an adder service" in p for p in prompts), prompts)
        # The same submission again answers the stored ids, without a conflict.
        again = self.submit(base, "adder-1", "Build an adder service with tests")
        self.assertEqual(again.status, 200, again.body)
        self.assertEqual(again.json()["subtasks"], r.json()["subtasks"])
        # A different body under the same id is a conflict.
        other = self.submit(base, "adder-1", "Something else entirely")
        self.assertEqual(other.status, 409, other.body)

    def test_service_fallback_is_stored_as_fallback(self):
        _, base = self.coordinator("svcfb")
        r = self.submit(base, "unsplit-1", "An unsplittable request")
        self.assertEqual(r.status, 200, r.body)
        t = self.task(base, "unsplit-1")
        self.assertEqual(self.inputs(t), [("An unsplittable request", "python")])
        self.assertTrue(t["task"]["decompositionFallback"] if "task" in t
                        else t["decompositionFallback"])

    def assert_local_fallback(self, proc, base, task_id, code):
        r = self.submit(base, task_id, "Build an adder service with tests", "javascript")
        self.assertEqual(r.status, 200, r.body)
        t = self.task(base, task_id)
        self.assertEqual(self.inputs(t), [("Build an adder service with tests", "javascript")])
        lines = [l for l in proc.log_lines() if l.get("msg", "").startswith("decomposition failed")]
        self.assertTrue(lines, proc.output()[-2000:])
        self.assertEqual(lines[-1].get("code"), code, lines[-1])
        self.assertNotIn(INF_TOKEN, proc.output())

    def test_oversized_subtask_never_refuses_the_submission(self):
        # A model's 300 KB subtask is over what the queue stores (256 KiB): the service drops it
        # and the rest of the split is stored; the submitter is not answered with a 400.
        _, base = self.coordinator("big")
        r = self.submit(base, "big-1", "An oversized split please")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.inputs(self.task(base, "big-1")), [("print(2)", "python")])

    def test_wrong_token_falls_back_locally(self):
        proc, base = self.coordinator("tok", INFERENCE_AUTH_TOKEN="not-the-token-0123456789")
        self.assert_local_fallback(proc, base, "tok-1", "inference_unauthorized")

    def test_untrusted_key_falls_back_locally(self):
        other = Ed25519PrivateKey.generate()
        proc, base = self.coordinator("key", COORDINATOR_PRIVATE_KEY_PEM=pem_private(other))
        self.assert_local_fallback(proc, base, "key-1", "inference_signature_invalid")

    def test_unreachable_service_falls_back_locally(self):
        proc, base = self.coordinator(
            "down", INFERENCE_URL="grpcs://localhost:%d" % harness.free_port(),
            COORDINATOR_INFERENCE_TIMEOUT_MS="3000")
        self.assert_local_fallback(proc, base, "down-1", "unavailable")


if __name__ == "__main__":
    unittest.main()
