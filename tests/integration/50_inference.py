"""`edgecoder inference` against the fake Ollama (tests/fakes/fake_ollama.py) over mTLS: signed
coordinator calls accepted; a replay, an unknown key, a wrong body hash, an expired timestamp, a
missing token and a non-coordinator certificate each refused with its code; scripted
decomposition, every malformed answer falling back (and counted in /metrics); the streams, an
Ollama that stalls or is killed mid-stream ending them with UNAVAILABLE; the C client's signing
path end to end; configuration errors."""

import base64
import hashlib
import json
import time
import unittest
import uuid

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import harness

TOKEN = "inference-token-0123456789abcdef"
SVC = "/edgecoder.v1.Inference/"

MULTI = ("Sure! Here is the plan:\n```json\n[\n"
         "  {\"input\": \"Write a function add(a, b)\", \"language\": \"python\"},\n"
         "  {\"input\": \"Write tests for add\", \"language\": \"py\"},\n"
         "  {\"input\": \"" + "x" * 120 + "\", \"language\": \"js\"},\n"
         "]\n```\nLet me know if you need more.")
ELEVEN = json.dumps([{"input": "step %d" % i} for i in range(14)])
MALFORMED = {
    "mal-empty": "",
    "mal-prose": "I am sorry, I cannot split this task.",
    "mal-object": "{\"input\": \"just one\"}",
    "mal-unclosed": "[{\"input\": \"x\"}, {\"input\": ",
    "mal-noinput": "[{\"task\": \"x\"}, {\"description\": \"y\"}]",
    "mal-blank": "[{\"input\": \"   \"}, {\"input\": 5}]",
    "mal-garbage": "```\n[not json at all,,]\n```",
}
SCRIPT = {
    "models": ["qwen2.5:7b", "qwen2.5:0.5b"],
    "rules": [{"pattern": "build a calculator", "response": MULTI},
              {"pattern": "fourteen steps", "response": ELEVEN},
              {"pattern": "Fix the code", "response": json.dumps(
                  {"improvedCode": "print(1)", "explanation": "fixed the typo"})},
              {"pattern": "stall-now", "hang_after": 2, "hang_ms": 600000,
               "response": "never gets past here"},
              {"pattern": "cut-now", "disconnect_after": 3, "response": "a b c d e f g"},
              {"pattern": "boom", "status": 500, "error": "model runner crashed"},
              {"pattern": "slow-tokens", "response": "one two three four five six seven eight",
               "token_delay_ms": 300}]
    + [{"pattern": k, "response": v} for k, v in MALFORMED.items()],
    "default": {"response": "Hello from the fake Ollama."},
    "pull": {"steps": 3, "fail": ["broken:model"]},
}


pb = harness.load_pb("inference")


def pem_private(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def signature_md(method, body, key, peer, ts=None, nonce=None, body_hash=None):
    """The x-inference-* metadata, built independently of the C code from docs/inference.md."""
    ts = int(time.time() * 1000) if ts is None else ts
    nonce = nonce or uuid.uuid4().hex
    body_hash = body_hash or hashlib.sha256(body).hexdigest()
    payload = ('{"peerId":%s,"method":"POST","path":%s,"timestampMs":%d,"nonce":%s,'
               '"bodySha256":%s}' % (json.dumps(peer), json.dumps(SVC + method), ts,
                                     json.dumps(nonce), json.dumps(body_hash)))
    sig = base64.b64encode(key.sign(payload.encode())).decode()
    return [("x-coordinator-peer-id", peer), ("x-inference-timestamp-ms", str(ts)),
            ("x-inference-nonce", nonce), ("x-inference-body-sha256", body_hash),
            ("x-inference-signature", sig)]


def error_code(e):
    for k, v in e.trailing_metadata() or ():
        if k == "x-error-code":
            return v
    return None


class InferenceService(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = harness.DevCerts()
        cls.srv_cert = cls.certs.issue("inference", role="inference", ident="inf-1")
        cls.coord_cert = cls.certs.issue("coord", role="coordinator", ident="coord-a")
        cls.portal_cert = cls.certs.issue("portal", role="portal", ident="portal-1")
        cls.agent_cert = cls.certs.issue("agent", role="agent", ident="agent-1")
        cls.key_a = Ed25519PrivateKey.generate()
        cls.key_b = Ed25519PrivateKey.generate()
        cls.key_unknown = Ed25519PrivateKey.generate()
        cls.fake = harness.FakeOllama(SCRIPT)
        cls.procs = []
        cls.inf, cls.http_port, cls.grpc_port = cls.start_inference(
            "127.0.0.1:%d" % cls.fake.port)  # "host:port" without a scheme, as Ollama allows
        cls.channels = {}

    @classmethod
    def start_inference(cls, ollama_host, extra=None):
        http_port, grpc_port = harness.free_port(), harness.free_port()
        env = {"INFERENCE_PORT": str(http_port), "INFERENCE_GRPC_PORT": str(grpc_port),
               "OLLAMA_HOST": ollama_host, "INFERENCE_AUTH_TOKEN": TOKEN,
               "INFERENCE_COORDINATOR_PEER_ID": "coord-a",
               "INFERENCE_COORDINATOR_PUBLIC_KEY_PEM": pem_public(cls.key_a),
               "INFERENCE_TRUSTED_COORDINATOR_KEYS_JSON": json.dumps({"coord-b":
                                                                      pem_public(cls.key_b)}),
               "OLLAMA_IDLE_TIMEOUT_MS": "1500",
               "EDGECODER_TLS_CA": cls.certs.ca, "EDGECODER_TLS_CERT": cls.srv_cert[0],
               "EDGECODER_TLS_KEY": cls.srv_cert[1]}
        env.update(extra or {})
        p = harness.Proc(["inference"], env=env, port=grpc_port)
        harness.wait_port(http_port, proc=p.proc)
        cls.procs.append(p)
        return p, http_port, grpc_port

    @classmethod
    def tearDownClass(cls):
        for ch in cls.channels.values():
            ch.close()
        cls.fake.kill()
        for p in cls.procs:
            rc = p.stop()
            assert rc == 0, "inference exited %s:\n%s" % (rc, p.output()[-3000:])

    def channel(self, who="coord", port=None):
        port = port or self.grpc_port
        key = (who, port)
        if key not in self.channels:
            cert, k = {"coord": self.coord_cert, "portal": self.portal_cert,
                       "agent": self.agent_cert}[who]
            creds = grpc.ssl_channel_credentials(open(self.certs.ca, "rb").read(),
                                                 open(k, "rb").read(), open(cert, "rb").read())
            self.channels[key] = grpc.secure_channel("localhost:%d" % port, creds)
        return self.channels[key]

    def unary(self, method, body, md, reply_cls, who="coord", port=None, timeout=20):
        call = self.channel(who, port).unary_unary(SVC + method, request_serializer=lambda b: b,
                                                   response_deserializer=reply_cls.FromString)
        return call(body, metadata=md, timeout=timeout)

    def stream(self, method, body, md, who="coord", port=None, timeout=20):
        call = self.channel(who, port).unary_stream(
            SVC + method, request_serializer=lambda b: b,
            response_deserializer=(pb.PullProgress if method == "PullModel"
                                   else pb.TokenChunk).FromString)
        return call(body, metadata=md, timeout=timeout)

    def signed(self, method, body, key=None, peer="coord-a", **kw):
        return [("x-inference-token", TOKEN)] + signature_md(method, body, key or self.key_a,
                                                             peer, **kw)

    def decompose(self, prompt, port=None, **kw):
        body = pb.DecomposeRequest(task_id="task-1", prompt=prompt, language="python",
                                   snapshot_ref="snap-1").SerializeToString()
        return self.unary("Decompose", body, self.signed("Decompose", body, **kw),
                          pb.DecomposeReply, port=port)

    def refused(self, method, body, md, who="coord", reply=None):
        with self.assertRaises(grpc.RpcError) as ctx:
            self.unary(method, body, md, reply or pb.DecomposeReply, who=who)
        return ctx.exception.code(), error_code(ctx.exception)

    def metric(self, name):
        text = harness.request("GET", "http://127.0.0.1:%d/metrics" % self.http_port).body.decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return int(float(line.split()[1]))
        self.fail("no %s in /metrics" % name)

    # --- accepted ---------------------------------------------------------------------------

    def test_health(self):
        r = harness.request("GET", "http://127.0.0.1:%d/health" % self.http_port)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.json()["ok"])

    def test_scripted_multi_subtask_decomposition(self):
        reply = self.decompose("Please build a calculator")
        self.assertFalse(reply.fallback)
        self.assertEqual(len(reply.subtasks), 3)
        self.assertEqual([s.input for s in reply.subtasks],
                         ["Write a function add(a, b)", "Write tests for add", "x" * 120])
        self.assertEqual([s.language for s in reply.subtasks], ["python", "python", "javascript"])
        self.assertEqual([s.timeout_ms for s in reply.subtasks], [5000, 5000, 7000])
        for s in reply.subtasks:
            self.assertEqual((s.task_id, s.kind, s.snapshot_ref), ("task-1", "micro_loop",
                                                                  "snap-1"))
        seen = [r for r in self.fake.requests() if "build a calculator" in r.get("prompt", "")]
        self.assertEqual(seen[-1]["model"], "qwen2.5:7b")  # OLLAMA_COORDINATOR_MODEL's default
        self.assertFalse(seen[-1]["stream"])

    def test_at_most_ten_subtasks(self):
        reply = self.decompose("do it in fourteen steps")
        self.assertFalse(reply.fallback)
        self.assertEqual([s.input for s in reply.subtasks], ["step %d" % i for i in range(10)])

    def test_second_trusted_coordinator_from_json(self):
        reply = self.decompose("build a calculator", key=self.key_b, peer="coord-b")
        self.assertEqual(len(reply.subtasks), 3)

    def test_escalate_signed(self):
        body = pb.EscalateRequest(task="sum a list", failed_code="print(sum(1)",
                                  error_history=["SyntaxError"], language="python",
                                  task_id="t-9").SerializeToString()
        reply = self.unary("Escalate", body, self.signed("Escalate", body), pb.EscalateReply)
        self.assertEqual(reply.improved_code, "print(1)")
        self.assertEqual(reply.explanation, "fixed the typo")
        unsigned = [("x-inference-token", TOKEN)]
        self.assertEqual(self.refused("Escalate", body, unsigned, reply=pb.EscalateReply),
                         (grpc.StatusCode.UNAUTHENTICATED, "inference_signature_missing"))

    # --- refused ----------------------------------------------------------------------------

    def body(self, prompt="build a calculator"):
        return pb.DecomposeRequest(task_id="t", prompt=prompt).SerializeToString()

    def test_replay_refused(self):
        body = self.body()
        md = self.signed("Decompose", body)
        self.unary("Decompose", body, md, pb.DecomposeReply)
        self.assertEqual(self.refused("Decompose", body, md),
                         (grpc.StatusCode.UNAUTHENTICATED, "inference_signature_replay"))

    def test_unknown_peer_and_wrong_key_refused(self):
        body = self.body()
        self.assertEqual(self.refused("Decompose", body, self.signed(
            "Decompose", body, key=self.key_unknown, peer="coord-x")),
            (grpc.StatusCode.UNAUTHENTICATED, "inference_signature_untrusted_peer"))
        self.assertEqual(self.refused("Decompose", body, self.signed(
            "Decompose", body, key=self.key_unknown, peer="coord-a")),
            (grpc.StatusCode.UNAUTHENTICATED, "inference_signature_invalid"))

    def test_wrong_body_hash_refused(self):
        body = self.body()
        other = hashlib.sha256(self.body("something else")).hexdigest()
        self.assertEqual(self.refused("Decompose", body, self.signed("Decompose", body,
                                                                     body_hash=other)),
                         (grpc.StatusCode.UNAUTHENTICATED, "inference_signature_body_mismatch"))
        # Signed for one body, sent with another: the hash no longer matches.
        md = self.signed("Decompose", self.body("the signed one"))
        self.assertEqual(self.refused("Decompose", body, md),
                         (grpc.StatusCode.UNAUTHENTICATED, "inference_signature_body_mismatch"))

    def test_expired_and_bad_timestamps_refused(self):
        body = self.body()
        old = int(time.time() * 1000) - 10 * 60 * 1000
        self.assertEqual(self.refused("Decompose", body, self.signed("Decompose", body, ts=old)),
                         (grpc.StatusCode.UNAUTHENTICATED, "inference_signature_expired"))
        future = int(time.time() * 1000) + 10 * 60 * 1000
        self.assertEqual(self.refused("Decompose", body,
                                      self.signed("Decompose", body, ts=future)),
                         (grpc.StatusCode.UNAUTHENTICATED, "inference_signature_expired"))
        md = [(k, "12abc" if k == "x-inference-timestamp-ms" else v)
              for k, v in self.signed("Decompose", body)]
        self.assertEqual(self.refused("Decompose", body, md),
                         (grpc.StatusCode.UNAUTHENTICATED, "inference_signature_invalid_timestamp"))

    def test_signature_for_another_method_refused(self):
        body = self.body()
        md = [("x-inference-token", TOKEN)] + signature_md("Escalate", body, self.key_a, "coord-a")
        self.assertEqual(self.refused("Decompose", body, md),
                         (grpc.StatusCode.UNAUTHENTICATED, "inference_signature_invalid"))

    def test_missing_token_and_signature_refused(self):
        body = self.body()
        sig = signature_md("Decompose", body, self.key_a, "coord-a")
        self.assertEqual(self.refused("Decompose", body, sig),
                         (grpc.StatusCode.UNAUTHENTICATED, "inference_unauthorized"))
        wrong = [("x-inference-token", TOKEN[:-1] + "X")] + signature_md("Decompose", body,
                                                                         self.key_a, "coord-a")
        self.assertEqual(self.refused("Decompose", body, wrong),
                         (grpc.StatusCode.UNAUTHENTICATED, "inference_unauthorized"))
        self.assertEqual(self.refused("Decompose", body, [("x-inference-token", TOKEN)]),
                         (grpc.StatusCode.UNAUTHENTICATED, "inference_signature_missing"))
        partial = [m for m in self.signed("Decompose", body) if m[0] != "x-inference-nonce"]
        self.assertEqual(self.refused("Decompose", body, partial),
                         (grpc.StatusCode.UNAUTHENTICATED, "inference_signature_missing"))

    def test_non_coordinator_certificates_refused(self):
        body = self.body()
        for who in ("agent", "portal"):
            code, _ = self.refused("Decompose", body, self.signed("Decompose", body), who=who)
            self.assertEqual(code, grpc.StatusCode.PERMISSION_DENIED, who)
        # The portal may Chat (token only: it has no coordinator key); an agent may not.
        chat = pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="hi")])
        chat = chat.SerializeToString()
        chunks = list(self.stream("Chat", chat, [("x-inference-token", TOKEN)], who="portal"))
        self.assertEqual("".join(c.content for c in chunks), "Hello from the fake Ollama.")
        with self.assertRaises(grpc.RpcError) as ctx:
            list(self.stream("Chat", chat, [("x-inference-token", TOKEN)], who="agent"))
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        with self.assertRaises(grpc.RpcError) as ctx:
            list(self.stream("Chat", chat, [], who="portal"))
        self.assertEqual(error_code(ctx.exception), "inference_unauthorized")

    def test_bad_input_is_invalid_argument(self):
        body = pb.DecomposeRequest(task_id="t", prompt="").SerializeToString()
        code, _ = self.refused("Decompose", body, self.signed("Decompose", body))
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        body = pb.DecomposeRequest(task_id="t", prompt="x", language="cobol").SerializeToString()
        code, _ = self.refused("Decompose", body, self.signed("Decompose", body))
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)

    # --- fallback ---------------------------------------------------------------------------

    def test_malformed_answers_fall_back(self):
        before = self.metric("inference_decompose_fallbacks_total")
        for pattern in MALFORMED:
            prompt = "task %s please" % pattern
            reply = self.decompose(prompt)
            self.assertTrue(reply.fallback, pattern)
            self.assertEqual(len(reply.subtasks), 1, pattern)
            self.assertEqual(reply.subtasks[0].input, prompt)
            self.assertEqual(reply.subtasks[0].timeout_ms, 30000)
            self.assertTrue(reply.HasField("fallback_reason"))
            self.assertIn("decompose_unusable", reply.fallback_reason)
        reply = self.decompose("boom goes the model")
        self.assertTrue(reply.fallback)
        self.assertIn("model runner crashed", reply.fallback_reason)
        self.assertEqual(self.metric("inference_decompose_fallbacks_total"),
                         before + len(MALFORMED) + 1)

    # --- streams ----------------------------------------------------------------------------

    def test_generate_chat_list_pull(self):
        body = pb.GenerateRequest(model="qwen2.5:0.5b", prompt="hello").SerializeToString()
        chunks = list(self.stream("Generate", body, self.signed("Generate", body)))
        self.assertEqual("".join(c.content for c in chunks), "Hello from the fake Ollama.")
        self.assertTrue(chunks[-1].done)
        self.assertEqual(chunks[-1].eval_count, 5)
        self.assertEqual(chunks[0].model, "qwen2.5:0.5b")
        body = pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="hi")])
        body = body.SerializeToString()
        chunks = list(self.stream("Chat", body, self.signed("Chat", body)))
        # Five tokens and the done line; tokens that queue up during a send travel together.
        self.assertEqual(sum(c.tokens for c in chunks), 6)
        self.assertEqual("".join(c.content for c in chunks), "Hello from the fake Ollama.")
        last = [r for r in self.fake.requests() if r["path"] == "/api/chat"][-1]
        self.assertEqual(last["options"], {"temperature": 0.7, "num_predict": 4096})
        body = pb.ListModelsRequest().SerializeToString()
        models = self.unary("ListModels", body, self.signed("ListModels", body),
                            pb.ListModelsReply)
        self.assertIn("qwen2.5:7b", [m.name for m in models.models])
        self.assertEqual(models.models[0].parameter_size, "7.6B")
        body = pb.PullModelRequest(model="llama3.2:1b").SerializeToString()
        progress = list(self.stream("PullModel", body, self.signed("PullModel", body)))
        self.assertEqual(progress[-1].status, "success")
        self.assertEqual(progress[1].total, 3000)
        body = pb.PullModelRequest(model="broken:model").SerializeToString()
        with self.assertRaises(grpc.RpcError) as ctx:
            list(self.stream("PullModel", body, self.signed("PullModel", body)))
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("file does not exist", ctx.exception.details())

    def test_unknown_model_and_cut_and_stall_end_unavailable(self):
        body = pb.GenerateRequest(model="nope:1b", prompt="hi").SerializeToString()
        with self.assertRaises(grpc.RpcError) as ctx:
            list(self.stream("Generate", body, self.signed("Generate", body)))
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("not found", ctx.exception.details())
        body = pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="cut-now")])
        body = body.SerializeToString()
        got = []
        with self.assertRaises(grpc.RpcError) as ctx:
            for c in self.stream("Chat", body, self.signed("Chat", body)):
                got.append(c.content)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual("".join(got), "a b c ")
        body = pb.GenerateRequest(prompt="stall-now please").SerializeToString()
        started = time.monotonic()
        with self.assertRaises(grpc.RpcError) as ctx:
            list(self.stream("Generate", body, self.signed("Generate", body)))
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertLess(time.monotonic() - started, 10)  # OLLAMA_IDLE_TIMEOUT_MS is 1.5 s

    def test_ollama_killed_mid_stream_and_down(self):
        fake = harness.FakeOllama(SCRIPT)
        try:
            proc, http_port, grpc_port = self.start_inference("http://127.0.0.1:%d" % fake.port)
            body = pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="slow-tokens")])
            body = body.SerializeToString()
            got = []
            started = time.monotonic()
            with self.assertRaises(grpc.RpcError) as ctx:
                for c in self.stream("Chat", body, self.signed("Chat", body), port=grpc_port):
                    got.append(c.content)  # 300 ms apart: each token alone, as it arrives
                    self.assertEqual(c.tokens, 1)
                    if len(got) == 2:
                        fake.kill()
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertEqual(got, ["one ", "two "])
            self.assertLess(time.monotonic() - started, 10)
            # Ollama now down: Decompose falls back and says so; Chat is UNAVAILABLE at once.
            reply = self.decompose("build a calculator", port=grpc_port)
            self.assertTrue(reply.fallback)
            self.assertIn("ollama_unavailable", reply.fallback_reason)
            self.assertEqual(reply.subtasks[0].input, "build a calculator")
            with self.assertRaises(grpc.RpcError) as ctx:
                list(self.stream("Chat", body, self.signed("Chat", body), port=grpc_port))
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
        finally:
            fake.kill()

    # --- the C client's signing path --------------------------------------------------------

    def client_env(self, key, peer="coord-a", token=TOKEN):
        return {"INFERENCE_URL": "grpcs://localhost:%d" % self.grpc_port,
                "EDGECODER_TLS_CA": self.certs.ca, "EDGECODER_TLS_CERT": self.coord_cert[0],
                "EDGECODER_TLS_KEY": self.coord_cert[1], "INFERENCE_AUTH_TOKEN": token,
                "COORDINATOR_PEER_ID": peer, "COORDINATOR_PRIVATE_KEY_PEM": pem_private(key)}

    def test_c_client_signs_decompose_and_escalate(self):
        rc, out, err = harness.run(["inference", "client", "decompose", "--prompt",
                                    "build a calculator", "--task-id", "t-c", "--count", "3"],
                                   env=self.client_env(self.key_a))
        self.assertEqual(rc, 0, out + err)
        got = json.loads(out)
        self.assertFalse(got["fallback"])
        self.assertEqual([s["timeoutMs"] for s in got["subtasks"]], [5000, 5000, 7000])
        rc, out, _ = harness.run(["inference", "client", "escalate", "--task", "t",
                                  "--failed-code", "x", "--error", "boom"],
                                 env=self.client_env(self.key_a))
        self.assertEqual(rc, 0, out)
        self.assertEqual(json.loads(out)["improvedCode"], "print(1)")
        rc, out, _ = harness.run(["inference", "client", "decompose", "--prompt", "x"],
                                 env=self.client_env(self.key_unknown))
        self.assertEqual(rc, 1)
        self.assertEqual(json.loads(out)["error"], "inference_signature_invalid")
        rc, out, _ = harness.run(["inference", "client", "decompose", "--prompt", "x"],
                                 env=self.client_env(self.key_a, token="wrong"))
        self.assertEqual(json.loads(out)["error"], "inference_unauthorized")


class InferenceConfig(unittest.TestCase):
    def run_inference(self, env):
        return harness.run(["inference"], env=env, timeout=30)

    def test_configuration_errors_exit_78(self):
        rc, _, err = self.run_inference({"INFERENCE_REQUIRE_SIGNED_COORDINATOR_REQUESTS": "true",
                                         "OLLAMA_HOST": "ftp://x", "INFERENCE_PORT": "1",
                                         "INFERENCE_GRPC_PORT": "1",
                                         "INFERENCE_COORDINATOR_PEER_ID": "coord-a"})
        self.assertEqual(rc, 78, err)
        for name in ("INFERENCE_REQUIRE_SIGNED_COORDINATOR_REQUESTS", "OLLAMA_HOST",
                     "INFERENCE_GRPC_PORT", "INFERENCE_COORDINATOR_PUBLIC_KEY_PEM"):
            self.assertIn(name, err)
        rc, _, err = self.run_inference({"EDGECODER_ENV": "production"})
        self.assertEqual(rc, 78)
        self.assertIn("INFERENCE_AUTH_TOKEN", err)
        self.assertIn("EDGECODER_TLS_CERT", err)

    def test_help_config_lists_every_variable(self):
        rc, out, _ = harness.run(["inference", "--help-config"])
        self.assertEqual(rc, 0)
        for name in ("OLLAMA_HOST", "OLLAMA_COORDINATOR_MODEL", "INFERENCE_AUTH_TOKEN",
                     "INFERENCE_TRUSTED_COORDINATOR_KEYS_JSON", "OLLAMA_FIRST_BYTE_TIMEOUT_MS"):
            self.assertIn(name, out)


if __name__ == "__main__":
    unittest.main()
