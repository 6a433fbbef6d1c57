"""`edgecoder agent` against the real coordinator (PostgreSQL, the stand-in portal, the stand-in
discovery registry): Python and JavaScript subtasks with the right outputs, two at a time, over
HTTPS with sealed envelopes; the coordinator killed and restarted mid-run (and the agent stopped
meanwhile) with nothing lost and nothing duplicated; failover from a dead coordinator to a second
one; a node that is not approved stays dormant and becomes active when approved, without a
restart; coordinator choice through the registry and then its cache; the identity kept across
restarts."""

import datetime
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import harness

MESH = "agent-mesh-token-0123456789ab"
SVC = "agent-portal-service-token-0123"
SHA = "0123456789abcdef0123456789abcdef01234567"
LABEL = "[edgecoder-local: deterministic offline provider, no model]\n"
STANDIN = os.path.join(harness.ROOT, "tests", "fakes", "portal_standin.py")
REGISTRY = os.path.join(harness.ROOT, "tests", "fakes", "registry_standin.py")
NODES = {"nodes": [
    {"nodeId": "agent-61-pending", "nodeKind": "agent", "registrationToken": "tok-61-pending",
     "ownerEmail": "p61@example.com", "emailVerified": True, "nodeApproved": False},
]}


def coordinator_key_pem():
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


def py_loop(n, m=1000003):
    return ("s = 0\nfor i in range(%d):\n    s = (s + i) %% %d\nprint(s)\n" % (n, m),
            str(sum(range(n)) % m))


def js_loop(n, m=1000003):
    return ("let s = 0;\nfor (let i = 0; i < %d; i++) {\n    s = (s + i) %% %d;\n}\n"
            "console.log(s);\n" % (n, m), str(sum(range(n)) % m))


class JsonLines:
    """A helper process that prints JSON lines, the first {"event":"listening","port":N}."""

    def __init__(self, args, env=None):
        self.proc = subprocess.Popen(["/usr/bin/python3"] + args, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.events = []
        self.port = None
        ready = threading.Event()

        def read():
            for raw in self.proc.stdout:
                obj = json.loads(raw)
                if obj.get("event") == "listening":
                    self.port = obj["port"]
                    ready.set()
                else:
                    self.events.append(obj)
        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30):
            self.proc.kill()
            raise AssertionError("%s did not start" % args[0])

    def send(self, obj):
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class FlyProxy:
    """What Fly's edge does for the coordinator: forwards each request and adds fly-client-ip,
    so the coordinator (EDGECODER_TRUST_PROXY_HEADER=fly-client-ip) sees a remote agent and the
    enrollment gate asks the portal, as it would for any agent that is not on its machine."""

    def __init__(self, upstream_port, client_ip="198.51.100.61"):
        upstream = upstream_port

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def forward(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                headers["fly-client-ip"] = client_ip
                try:
                    c = http.client.HTTPConnection("127.0.0.1", upstream, timeout=10)
                    c.request(self.command, self.path, body=body, headers=headers)
                    r = c.getresponse()
                    data = r.read()
                    c.close()
                except OSError:
                    self.send_response(502)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("connection", "content-length", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class AgentTests(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.postgres()
        cls.certs = harness.DevCerts()
        cls.http_cert = cls.certs.issue("coord-http", role="coordinator", ident="coord-61")
        cls.key_pem = coordinator_key_pem()

    # --- processes -----------------------------------------------------------------------------

    def coordinator(self, db, port, https=False, **extra):
        env = {"DATABASE_URL": self.pg.url(db), "COORDINATOR_PORT": str(port),
               "COORDINATOR_GRPC_PORT": str(harness.free_port()), "MESH_AUTH_TOKEN": MESH,
               "COORDINATOR_PRIVATE_KEY_PEM": self.key_pem, "COORDINATOR_PEER_ID": "coord-61",
               "COORDINATOR_LEASE_GRACE_MS": "1000", "EDGECODER_HTTP_THREADS": "16",
               "OLLAMA_HOST": "http://127.0.0.1:%d" % harness.free_port()}
        if https:
            env["EDGECODER_HTTP_TLS_CERT"], env["EDGECODER_HTTP_TLS_KEY"] = self.http_cert
        env.update(extra)
        return self.spawn(["coordinator"], env=env, port=port)

    def agent(self, state_dir, urls, **extra):
        env = {"AGENT_STATE_DIR": state_dir, "COORDINATOR_URL": urls,
               "MAX_CONCURRENT_TASKS": "2", "SANDBOX_MODE": "bubblewrap",
               "AGENT_POLL_INTERVAL_MS": "100", "AGENT_HEARTBEAT_INTERVAL_MS": "1000",
               "AGENT_BACKOFF_BASE_MS": "100", "AGENT_BACKOFF_MAX_MS": "800",
               "AGENT_FAILOVER_AFTER": "2", "AGENT_HTTP_TIMEOUT_MS": "3000",
               "EDGECODER_LOG_FLUSH_MS": "0", "HOME": state_dir}
        env.update(extra)
        return self.spawn(["agent"], env=env)

    def state_dir(self):
        d = tempfile.mkdtemp(prefix="ec-agent-")
        return os.path.join(d, "state")

    # --- coordinator helpers -------------------------------------------------------------------

    def get(self, base, path, ctx=None):
        return harness.request("GET", base + path, headers={"x-mesh-token": MESH}, ctx=ctx)

    def submit(self, base, task_id, prompt, language="python", ctx=None):
        r = harness.request("POST", base + "/submit", headers={"x-mesh-token": MESH}, ctx=ctx,
                            body={"taskId": task_id, "prompt": prompt, "language": language,
                                  "snapshotRef": SHA})
        self.assertEqual(r.status, 200, r.body)
        return r.json()["subtasks"][0]

    def task(self, base, task_id, ctx=None):
        r = self.get(base, "/tasks/" + task_id, ctx=ctx)
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def wait_for(self, what, fn, timeout=60, proc=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = fn()
            if v:
                return v
            if proc is not None and proc.proc.poll() is not None:
                self.fail("the agent exited while waiting for %s:\n%s"
                          % (what, proc.output()[-3000:]))
            time.sleep(0.1)
        self.fail("timed out waiting for %s%s" % (
            what, ("\nagent log:\n" + proc.output()[-3000:]) if proc else ""))

    def completed(self, base, task_ids, ctx=None):
        try:
            return all(self.task(base, t, ctx)["status"] == "completed" for t in task_ids)
        except (OSError, AssertionError):
            return False

    def log_has(self, proc, msg, **fields):
        return [l for l in proc.log_lines() if l.get("msg") == msg and
                all(l.get(k) == v for k, v in fields.items())]

    def assert_exactly_once(self, db, n):
        self.assertEqual(self.pg.psql("SELECT count(*) FROM results", db), str(n))
        self.assertEqual(self.pg.psql(
            "SELECT count(*) FROM subtask_attempts WHERE outcome = 'completed'", db), str(n))
        self.assertEqual(self.pg.psql(
            "SELECT count(*) FROM (SELECT subtask_id FROM subtask_attempts WHERE outcome = "
            "'completed' GROUP BY subtask_id HAVING count(*) > 1) x", db), "0")
        self.assertEqual(self.pg.psql("SELECT count(*) FROM subtasks WHERE state <> 'completed'",
                                      db), "0")

    def outbox(self, state):
        d = os.path.join(state, "outbox")
        return sorted(f for f in os.listdir(d) if f.startswith("r-")) if os.path.isdir(d) else []

    # --- the tests -----------------------------------------------------------------------------

    def test_python_and_javascript_two_at_a_time(self):
        db = "agent61_work"
        self.pg.create_db(db, "coordinator")
        port = harness.free_port()
        base = "https://127.0.0.1:%d" % port
        ctx = harness.tls_client_context(self.certs.ca)
        coord = self.coordinator(db, port, https=True)
        tasks = {}
        for i in range(2):
            code, out = py_loop(2500000 + i)
            tasks["w-py-%d" % i] = ("python", code, out)
            code, out = js_loop(60000000 + i)
            tasks["w-js-%d" % i] = ("javascript", code, out)
        tasks["w-prose"] = ("python", "Write a function that reverses a string", None)
        for tid, (lang, code, _) in sorted(tasks.items()):
            self.submit(base, tid, code, language=lang, ctx=ctx)
        state = self.state_dir()
        agent = self.agent(state, base, COORDINATOR_TLS_CA=self.certs.ca)
        pid = agent.proc.pid
        rss = []

        def sample():
            while agent.proc.poll() is None and not done.is_set():
                try:
                    with open("/proc/%d/status" % pid) as f:
                        for line in f:
                            if line.startswith("VmRSS:"):
                                rss.append(int(line.split()[1]))
                except OSError:
                    return
                time.sleep(0.05)
        done = threading.Event()
        threading.Thread(target=sample, daemon=True).start()
        self.wait_for("every task", lambda: self.completed(base, tasks, ctx), timeout=120,
                      proc=agent)
        done.set()
        intervals = []
        for tid, (lang, code, expected) in tasks.items():
            t = self.task(base, tid, ctx)
            sub = t["subtasks"][0]
            res = sub["result"]
            self.assertTrue(res["ok"], (tid, res))
            if expected is None:  # prose: the labelled template program ran
                self.assertTrue(res["output"].startswith(LABEL + "template program"), res)
            else:
                self.assertEqual(res["output"], LABEL + expected + "\n", (tid, res))
            att = [a for a in sub["attempts"] if a["outcome"] == "completed"]
            self.assertEqual(len(att), 1, sub["attempts"])
            intervals.append((att[0]["claimedAtMs"], att[0]["endedAtMs"], tid))
        # Two at a time: some leases overlap (the coordinator's clock), and the agent never runs
        # more than two at once (its own log: a result's delivery may trail its run by a few
        # milliseconds, while the freed worker already takes the next subtask).
        overlapping = [(a[2], b[2]) for i, a in enumerate(intervals) for b in intervals[i + 1:]
                       if max(a[0], b[0]) < min(a[1], b[1])]
        self.assertTrue(overlapping, "no two subtasks ran at once: %r" % intervals)
        runs = {}
        for line in agent.log_lines():
            if line.get("msg") in ("subtask taken", "subtask done"):
                ms = datetime.datetime.strptime(line["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
                runs.setdefault(line["subtask_id"], {})[line["msg"]] = ms
        self.assertEqual(len(runs), len(tasks), runs)
        for r in runs.values():
            live = [x for x in runs.values()
                    if x["subtask taken"] <= r["subtask taken"] < x["subtask done"]]
            self.assertLessEqual(len(live), 2, runs)
        # Sealed both ways: the agent registered its X25519 key, so every lease was an envelope.
        self.assertEqual(self.pg.psql(
            "SELECT count(*) FROM agents WHERE x25519_public_key IS NOT NULL", db), "1")
        self.assertTrue(self.log_has(agent, "subtask taken", sealed=True))
        # It told the coordinator which sandbox it runs code in.
        self.assertEqual(self.pg.psql("SELECT sandbox_mode FROM agents", db), "bubblewrap")
        sys.stderr.write("\n[61] agent VmRSS max %d KiB over %d samples (this build)\n"
                         % (max(rss) if rss else -1, len(rss)))
        self.assertEqual(agent.stop(), 0)
        self.assertEqual(self.outbox(state), [])
        self.assertEqual(coord.stop(), 0)

    def test_coordinator_killed_and_restarted_mid_run(self):
        db = "agent61_crash"
        self.pg.create_db(db, "coordinator")
        port = harness.free_port()
        base = "http://127.0.0.1:%d" % port
        coord = self.coordinator(db, port)
        ids = ["c-%02d" % i for i in range(8)]
        for i, tid in enumerate(ids):
            self.submit(base, tid, py_loop(3000000 + i)[0])
        state = self.state_dir()
        agent = self.agent(state, base)
        # Kill -9 while two subtasks run: their results find no coordinator.
        self.wait_for("work in flight", lambda: int(self.pg.psql(
            "SELECT count(*) FROM subtasks WHERE state = 'leased'", db)) == 2 and int(
            self.pg.psql("SELECT count(*) FROM subtasks WHERE state = 'completed'", db)) >= 1,
            proc=agent)
        coord.proc.send_signal(signal.SIGKILL)
        coord.proc.wait()
        self.wait_for("results buffered in the outbox", lambda: len(self.outbox(state)) >= 1,
                      proc=agent)
        # The agent stops too (SIGTERM) with results still undelivered: they stay on disk.
        time.sleep(1.5)
        self.assertEqual(agent.stop(), 0)
        buffered = self.outbox(state)
        self.assertTrue(buffered)
        self.assertTrue(self.log_has(agent, "result not delivered; kept in the outbox"))
        # Both come back; the buffered results are delivered, the rest of the work done.
        coord2 = self.coordinator(db, port)
        agent2 = self.agent(state, base)
        self.wait_for("every task", lambda: self.completed(base, ids), timeout=120, proc=agent2)
        self.wait_for("an empty outbox", lambda: self.outbox(state) == [], proc=agent2)
        self.assertTrue(self.log_has(agent2, "results waiting in the outbox"))
        self.assertTrue(self.log_has(agent2, "result delivered"))
        self.assert_exactly_once(db, len(ids))
        for i, tid in enumerate(ids):
            res = self.task(base, tid)["subtasks"][0]["result"]
            self.assertEqual(res["output"], LABEL + py_loop(3000000 + i)[1] + "\n", res)
        self.assertEqual(agent2.stop(), 0)
        self.assertEqual(coord2.stop(), 0)

    def test_failover_to_the_second_coordinator(self):
        db = "agent61_failover"
        self.pg.create_db(db, "coordinator")
        pa, pb = harness.free_port(), harness.free_port()
        a_base, b_base = "http://127.0.0.1:%d" % pa, "http://127.0.0.1:%d" % pb
        first = self.coordinator(db, pa)
        second = self.coordinator(db, pb)  # a second machine of the same app (same database)
        state = self.state_dir()
        agent = self.agent(state, "%s, %s" % (a_base, b_base))
        self.submit(a_base, "f-1", "print(6 * 7)")
        self.wait_for("f-1", lambda: self.completed(a_base, ["f-1"]), proc=agent)
        self.assertTrue(self.log_has(agent, "agent registered", coordinator=a_base))
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        self.submit(b_base, "f-2", "print(2 ** 10)")
        self.submit(b_base, "f-3", "console.log([1, 2, 3].map(function (x) { return x * 2; }))",
                    language="javascript")
        self.wait_for("f-2 and f-3", lambda: self.completed(b_base, ["f-2", "f-3"]), proc=agent)
        self.assertTrue(self.log_has(agent, "coordinator unreachable; failing over", to=b_base))
        self.assertTrue(self.log_has(agent, "agent registered", coordinator=b_base))
        self.assertEqual(self.task(b_base, "f-2")["subtasks"][0]["result"]["output"],
                         LABEL + "1024\n")
        self.assertEqual(self.task(b_base, "f-3")["subtasks"][0]["result"]["output"],
                         LABEL + "[ 2, 4, 6 ]\n")
        self.assert_exactly_once(db, 3)
        self.assertEqual(agent.stop(), 0)
        self.assertEqual(second.stop(), 0)

    def test_dormant_until_approved(self):
        db = "agent61_dormant"
        self.pg.create_db(db, "coordinator")
        portal_cert = self.certs.issue("portal61", role="portal", ident="portal-61")
        coord_cert = self.certs.issue("coord61", role="coordinator", ident="coord-61")
        cp_cert = self.certs.issue("cp61", role="control-plane", ident="cp-61")
        nodes = os.path.join(self.certs.dir, "nodes61.json")
        with open(nodes, "w") as f:
            json.dump(NODES, f)
        portal = JsonLines([STANDIN, "--port", "0", "--ca", self.certs.ca, "--cert",
                            portal_cert[0], "--key", portal_cert[1], "--nodes", nodes],
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                "PORTAL_SERVICE_TOKEN": SVC})
        self.addCleanup(portal.stop)
        port = harness.free_port()
        base = "http://127.0.0.1:%d" % port
        coord = self.coordinator(
            db, port, PORTAL_SERVICE_URL="grpcs://127.0.0.1:%d" % portal.port,
            PORTAL_SERVICE_TOKEN=SVC, EDGECODER_TLS_CA=self.certs.ca,
            EDGECODER_TLS_CERT=coord_cert[0], EDGECODER_TLS_KEY=coord_cert[1],
            EDGECODER_TRUST_PROXY_HEADER="fly-client-ip")
        proxy = FlyProxy(port)
        self.addCleanup(proxy.stop)
        self.submit(base, "d-1", "print('approved at last')")
        state = self.state_dir()
        agent = self.agent(state, "http://127.0.0.1:%d" % proxy.port, AGENT_ID="agent-61-pending",
                           AGENT_REGISTRATION_TOKEN="tok-61-pending")
        self.wait_for("the dormant log line", lambda: self.log_has(
            agent, "node not activated: dormant until an operator approves it; retrying with "
            "back-off", reason="node_pending_coordinator_approval"), proc=agent)

        def validations():
            return [e for e in portal.events if e.get("method") == "ValidateNode"
                    and e.get("nodeId") == "agent-61-pending"]
        self.wait_for("registration retries", lambda: len(validations()) >= 3, proc=agent)
        self.assertEqual(self.task(base, "d-1")["status"], "queued")
        self.assertEqual(len(self.log_has(agent, "node not activated: dormant until an operator "
                                          "approves it; retrying with back-off")), 1)
        # The operator approves; the same process goes to work.
        pp = harness.load_pb("portal_internal")
        with open(self.certs.ca, "rb") as f:
            ca = f.read()
        with open(cp_cert[0], "rb") as f:
            crt = f.read()
        with open(cp_cert[1], "rb") as f:
            key = f.read()
        with grpc.secure_channel("localhost:%d" % portal.port,
                                 grpc.ssl_channel_credentials(ca, key, crt)) as ch:
            fn = ch.unary_unary("/edgecoder.v1.PortalInternal/SetNodeApproval",
                                request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=pp.SetNodeApprovalReply.FromString)
            fn(pp.SetNodeApprovalRequest(node_id="agent-61-pending", approved=True, actor="test"),
               metadata=(("x-portal-service-token", SVC),), timeout=10)
        self.wait_for("d-1", lambda: self.completed(base, ["d-1"]), proc=agent)
        self.assertIsNone(agent.proc.poll())
        self.assertTrue(self.log_has(agent, "node approved: agent active"))
        res = self.task(base, "d-1")["subtasks"][0]["result"]
        self.assertEqual((res["agentId"], res["output"]),
                         ("agent-61-pending", LABEL + "approved at last\n"))
        out = agent.output()
        self.assertNotIn("tok-61-pending", out)
        self.assertNotIn(MESH, out)
        self.assertEqual(agent.stop(), 0)
        self.assertEqual(coord.stop(), 0)

    def test_discovery_registry_then_cache(self):
        db = "agent61_registry"
        self.pg.create_db(db, "coordinator")
        port = harness.free_port()
        base = "http://127.0.0.1:%d" % port
        coord = self.coordinator(db, port)
        registry = JsonLines([REGISTRY, "--port", "0", "--coordinator", "bootstrap=" + base])
        self.addCleanup(registry.stop)
        dead = "http://127.0.0.1:%d" % harness.free_port()
        state = self.state_dir()
        self.submit(base, "r-1", "print('via the registry')")
        agent = self.agent(state, dead, CONTROL_PLANE_URL="http://127.0.0.1:%d" % registry.port)
        self.wait_for("r-1", lambda: self.completed(base, ["r-1"]), proc=agent)
        self.assertTrue(self.log_has(agent, "coordinator chosen", source="registry", url=base))
        self.assertTrue([e for e in registry.events if e.get("path") == "/network/coordinators"])
        with open(os.path.join(state, "coordinator-cache.json")) as f:
            self.assertEqual(json.load(f)["coordinatorUrl"], base)
        self.assertEqual(agent.stop(), 0)
        # The registry is gone: the cache names the coordinator.
        registry.stop()
        self.submit(base, "r-2", "console.log('via the cache')", language="javascript")
        agent2 = self.agent(state, dead, CONTROL_PLANE_URL="http://127.0.0.1:%d" % registry.port)
        self.wait_for("r-2", lambda: self.completed(base, ["r-2"]), proc=agent2)
        self.assertTrue(self.log_has(agent2, "coordinator chosen", source="cache", url=base))
        self.assertEqual(self.task(base, "r-2")["subtasks"][0]["result"]["output"],
                         LABEL + "via the cache\n")
        self.assertEqual(agent2.stop(), 0)
        self.assertEqual(coord.stop(), 0)

    def test_no_work_without_a_working_sandbox(self):
        db = "agent61_nosandbox"
        self.pg.create_db(db, "coordinator")
        port = harness.free_port()
        base = "http://127.0.0.1:%d" % port
        coord = self.coordinator(db, port)
        self.submit(base, "s-1", "print(1)")
        daemon = subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, timeout=60).returncode == 0 \
            if shutil.which("docker") else False
        agent = self.agent(self.state_dir(), base, SANDBOX_MODE="docker")
        if daemon:  # docker works here: the agent says so when it registers
            self.wait_for("registration", lambda: self.log_has(agent, "agent registered"),
                          proc=agent)
            self.assertEqual(self.pg.psql("SELECT sandbox_mode FROM agents", db), "docker")
        else:  # no daemon: no registration, no lease, a clear line
            self.wait_for("the sandbox log line", lambda: self.log_has(
                agent, "the sandbox cannot run here: taking no work until it can"), proc=agent)
            time.sleep(1.5)
            self.assertEqual(self.task(base, "s-1")["status"], "queued")
            self.assertEqual(self.pg.psql("SELECT count(*) FROM agents", db), "0")
        self.assertEqual(agent.stop(), 0)
        self.assertEqual(coord.stop(), 0)

    def test_identity_survives_restarts(self):
        db = "agent61_identity"
        self.pg.create_db(db, "coordinator")
        port = harness.free_port()
        base = "http://127.0.0.1:%d" % port
        coord = self.coordinator(db, port)
        state = self.state_dir()
        keys = {}
        for run in (1, 2):
            agent = self.agent(state, base)
            self.wait_for("registration", lambda: self.log_has(agent, "agent registered"),
                          proc=agent)
            rows = self.pg.psql("SELECT agent_id, public_key_pem FROM agents", db).split("|", 1)
            keys[run] = rows
            self.assertEqual(agent.stop(), 0)
        self.assertEqual(keys[1], keys[2])
        self.assertTrue(keys[1][0].startswith("agent-"), keys[1])
        for name in ("identity-ed25519.pem", "identity-x25519.pem"):
            mode = os.stat(os.path.join(state, name)).st_mode & 0o777
            self.assertEqual(mode, 0o600, name)
        self.assertEqual(os.stat(state).st_mode & 0o777, 0o700)
        # A key file others can read is refused, as ssh refuses one.
        os.chmod(os.path.join(state, "identity-ed25519.pem"), 0o644)
        agent = self.agent(state, base)
        agent.proc.wait(20)
        self.assertEqual(agent.stop(), 1)
        self.assertIn("chmod 600", agent.output())
        self.assertEqual(coord.stop(), 0)


if __name__ == "__main__":
    unittest.main()
