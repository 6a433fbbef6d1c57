"""`edgecoder agent` with LOCAL_MODEL_PROVIDER=ollama-local against the real coordinator and the
fake Ollama (tests/fakes/fake_ollama.py): plan -> code -> run -> reflect, at most two iterations,
Python and JavaScript, two subtasks at a time; while Ollama does not answer the agent takes no work,
and takes it once Ollama is up, without a restart; a model error mid-task is a failed result that
says so, not a hang."""

import os
import tempfile
import time
import unittest

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import harness

MESH = "agent-ollama-mesh-token-0123"
SHA = "0123456789abcdef0123456789abcdef01234567"
MODEL = "qwen2.5:7b"

SCRIPT = {
    "version": "0.5.7",
    "models": [MODEL],
    "rules": [
        # The plan step, for every task.
        {"pattern": "Write a short numbered plan", "response": "1. Compute it.\n2. Print it."},
        # PYFIX: the first program fails, the reflection fixes it.
        {"pattern": r"(?s)failed\. Find the mistake.*PYFIX",
         "response": "Here it is:\n```python\nprint(40 + 2)\n```\n"},
        {"pattern": r"(?s)Write one complete python program.*PYFIX",
         "response": "```python\nprint(undefined_name)\n```"},
        # JSOK: right the first time.
        {"pattern": r"(?s)Write one complete javascript program.*JSOK",
         "response": "```js\nconsole.log([3, 4].map(function (x) { return x * x; }).join(','))\n```"},
        # NEVER: wrong twice; the agent stops after two iterations.
        {"pattern": r"(?s)failed\. Find the mistake.*NEVER",
         "response": "```python\nprint(still_undefined)\n```"},
        {"pattern": r"(?s)Write one complete python program.*NEVER",
         "response": "```python\nprint(undefined_name)\n```"},
    ],
    "default": {"response": "```python\nprint('default')\n```"},
}


def coordinator_key_pem():
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


class AgentOllama(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.postgres()

    def setUp(self):
        super().setUp()
        self.db = "agent62_%d" % (int(time.time() * 1000) % 100000000)
        self.pg.create_db(self.db, "coordinator")
        self.port = harness.free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.coord = self.spawn(["coordinator"], port=self.port, env={
            "DATABASE_URL": self.pg.url(self.db), "COORDINATOR_PORT": str(self.port),
            "COORDINATOR_GRPC_PORT": str(harness.free_port()), "MESH_AUTH_TOKEN": MESH,
            "COORDINATOR_PRIVATE_KEY_PEM": coordinator_key_pem(),
            "OLLAMA_HOST": "http://127.0.0.1:%d" % harness.free_port()})

    def agent(self, ollama_host):
        state = os.path.join(tempfile.mkdtemp(prefix="ec-agent62-"), "state")
        return self.spawn(["agent"], env={
            "AGENT_STATE_DIR": state, "COORDINATOR_URL": self.base, "MAX_CONCURRENT_TASKS": "2",
            "LOCAL_MODEL_PROVIDER": "ollama-local", "OLLAMA_HOST": ollama_host,
            "OLLAMA_MODEL": MODEL, "SANDBOX_MODE": "bubblewrap", "AGENT_POLL_INTERVAL_MS": "100",
            "AGENT_HEARTBEAT_INTERVAL_MS": "1000", "EDGECODER_LOG_FLUSH_MS": "0"})

    def submit(self, task_id, prompt, language="python"):
        r = harness.request("POST", self.base + "/submit", headers={"x-mesh-token": MESH},
                            body={"taskId": task_id, "prompt": prompt, "language": language,
                                  "snapshotRef": SHA})
        self.assertEqual(r.status, 200, r.body)

    def result(self, task_id):
        r = harness.request("GET", self.base + "/tasks/" + task_id,
                            headers={"x-mesh-token": MESH})
        t = r.json()
        return t["subtasks"][0]["result"] if t["status"] in ("completed", "failed") else None

    def wait_results(self, ids, agent, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = {i: self.result(i) for i in ids}
            if all(got.values()):
                return got
            if agent.proc.poll() is not None:
                self.fail("the agent exited:\n" + agent.output()[-3000:])
            time.sleep(0.1)
        self.fail("timed out; agent log:\n" + agent.output()[-3000:])

    def test_plan_code_run_reflect(self):
        fake = harness.FakeOllama(SCRIPT)
        self.addCleanup(fake.stop)
        self.submit("o-py", "Add forty and two. PYFIX")
        self.submit("o-js", "Square three and four. JSOK", language="javascript")
        self.submit("o-never", "Print a name. NEVER")
        agent = self.agent(fake.url)
        res = self.wait_results(["o-py", "o-js", "o-never"], agent)
        self.assertEqual((res["o-py"]["ok"], res["o-py"]["output"]), (True, "42\n"))
        self.assertEqual((res["o-js"]["ok"], res["o-js"]["output"]), (True, "9,16\n"))
        self.assertFalse(res["o-never"]["ok"])
        self.assertIn("still_undefined", res["o-never"]["error"])  # the second program's stderr
        prompts = [r.get("prompt") or "" for r in fake.requests() if r["path"] == "/api/generate"]
        per_task = {k: [p for p in prompts if k in p] for k in ("PYFIX", "JSOK", "NEVER")}
        # plan, code, reflect; plan, code; plan, code, reflect (never a third program).
        self.assertEqual([len(per_task[k]) for k in ("PYFIX", "JSOK", "NEVER")], [3, 2, 3],
                         per_task)
        self.assertIn("numbered plan", per_task["PYFIX"][0])
        self.assertIn("Plan:\n1. Compute it.", per_task["PYFIX"][1])
        self.assertIn("print(undefined_name)", per_task["PYFIX"][2])  # reflect sees the code
        self.assertIn("NameError", per_task["PYFIX"][2])  # ... and its error
        self.assertTrue(all(r.get("model") == MODEL for r in fake.requests()
                            if r["path"] == "/api/generate"))
        self.assertEqual(agent.stop(), 0)
        self.assertEqual(self.coord.stop(), 0)

    def task(self, task_id):
        return harness.request("GET", self.base + "/tasks/" + task_id,
                               headers={"x-mesh-token": MESH}).json()

    def test_model_down_takes_no_work_until_it_answers(self):
        port = harness.free_port()
        self.submit("o-down", "Add forty and two. PYFIX")
        agent = self.agent("http://127.0.0.1:%d" % port)
        deadline = time.time() + 20
        while time.time() < deadline and not [
                l for l in agent.log_lines()
                if l.get("msg", "").startswith("the local model does not answer")]:
            time.sleep(0.1)
        time.sleep(1.0)  # a few pull intervals: still nothing taken
        sub = self.task("o-down")["subtasks"][0]
        self.assertEqual((sub["state"], sub["attempts"]), ("queued", []), sub)
        # Ollama comes up: the same agent, without a restart, takes the work and does it.
        fake = harness.FakeOllama(SCRIPT, port=port)
        self.addCleanup(fake.stop)
        res = self.wait_results(["o-down"], agent)["o-down"]
        self.assertEqual((res["ok"], res["output"]), (True, "42\n"), res)
        self.assertTrue([l for l in agent.log_lines()
                         if l.get("msg") == "the local model answers: taking work again"])
        self.assertEqual(agent.stop(), 0)
        self.assertEqual(self.coord.stop(), 0)

    def test_model_error_mid_task_is_a_failed_result(self):
        script = dict(SCRIPT, rules=[{"pattern": "BOOM", "status": 500,
                                      "error": "model runner crashed"}] + SCRIPT["rules"])
        fake = harness.FakeOllama(script)
        self.addCleanup(fake.stop)
        self.submit("o-boom", "Print a name. BOOM")
        agent = self.agent(fake.url)
        res = self.wait_results(["o-boom"], agent)["o-boom"]
        self.assertFalse(res["ok"])
        self.assertTrue(res["error"].startswith("ollama_unavailable: "), res)
        self.assertIn("model runner crashed", res["error"])
        self.assertEqual(agent.stop(), 0)
        self.assertEqual(self.coord.stop(), 0)

if __name__ == "__main__":
    unittest.main()
