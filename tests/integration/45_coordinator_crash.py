"""Crash safety of `edgecoder coordinator`: 200 subtasks worked by 4 signing agents while the
coordinator is killed with SIGKILL and started again: every subtask completes exactly once (in the
database and in GET /tasks), none lost, none duplicated, and the ledger chain continues. A late
result from an expired lease is refused (409 lease_not_held); a subtask out of attempts fails for
good and stays visible. PostgreSQL stopped under a running coordinator: 503 database_unavailable
meanwhile (heartbeats of known agents keep working from memory), recovery without a restart."""

import random
import signal
import threading
import time
import unittest

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import harness
from coordinator_agent import Agent

MESH = "crash-mesh-token-0123456789"
SHA = "89abcdef0123456789abcdef0123456789abcdef"
N_TASKS = 200
N_AGENTS = 4


def coordinator_key_pem():
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


class Worker(threading.Thread):
    """An agent loop that survives the coordinator going away: heartbeat, pull, work a little,
    post the result, retrying the same result until the coordinator gives a definite answer."""

    def __init__(self, base, agent_id, stop):
        super().__init__(daemon=True)
        self.agent = Agent(base, agent_id, mesh_token=MESH, timeout=5)
        self.stop = stop
        self.accepted = []    # subtask ids accepted fresh
        self.duplicates = []  # accepted as a repeat of what was already stored
        self.refused = []     # (subtask id, status, error)
        self.errors = 0
        self.failure = None

    def call(self, fn, *args, **kw):
        while not self.stop.is_set():
            try:
                return fn(*args, **kw)
            except OSError:
                self.errors += 1
                self.agent.close()
                time.sleep(0.1)
        return None

    def answer(self, sub):
        while not self.stop.is_set():
            r = self.call(self.agent.result, sub, output="out:" + sub["id"],
                          attempt=sub["attempt"])
            if r is None:
                return
            if r.status == 200:
                (self.duplicates if r.json().get("duplicate") else self.accepted).append(sub["id"])
                return
            if r.status in (404, 409):
                self.refused.append((sub["id"], r.status, r.json().get("error")))
                return
            time.sleep(0.1)  # 503 while the coordinator's database is away, or it restarts

    def run(self):
        try:
            r = self.call(self.agent.register)
            if r is None or r.status != 200:
                self.failure = "register: %r" % (r and r.body)
                return
            while not self.stop.is_set():
                r = self.call(self.agent.heartbeat)
                if r is None:
                    return
                r, sub = self.call(self.agent.pull) or (None, None)
                if r is None or r.status != 200 or sub is None:
                    time.sleep(0.05)
                    continue
                time.sleep(random.uniform(0.002, 0.02))  # the work
                self.answer(sub)
        except Exception as e:  # reported by the test, not lost in a thread
            self.failure = repr(e)


class CrashSafety(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.postgres()

    def start(self, db, port, **extra):
        env = {"DATABASE_URL": self.pg.url(db), "COORDINATOR_PORT": str(port),
               "COORDINATOR_GRPC_PORT": str(harness.free_port()), "MESH_AUTH_TOKEN": MESH,
               "COORDINATOR_PRIVATE_KEY_PEM": self.key_pem, "COORDINATOR_PEER_ID": "coord-crash",
               "AGENT_RATE_LIMIT_MAX": "100000", "COORDINATOR_LEASE_GRACE_MS": "1000",
               "EDGECODER_HTTP_THREADS": "32"}
        env.update(extra)
        return self.spawn(["coordinator"], env=env, port=port)

    def setUp(self):
        super().setUp()
        self.key_pem = coordinator_key_pem()

    def get(self, base, path):
        return harness.request("GET", base + path, headers={"x-mesh-token": MESH})

    def submit(self, base, task_id):
        r = harness.request("POST", base + "/submit", headers={"x-mesh-token": MESH},
                            body={"taskId": task_id, "prompt": "print(%r)" % task_id,
                                  "snapshotRef": SHA, "projectId": "p%d" % (hash(task_id) % 3)})
        self.assertEqual(r.status, 200, r.body)

    def wait_for(self, what, fn, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = fn()
            if v:
                return v
            time.sleep(0.2)
        self.fail("timed out waiting for " + what)

    def completed(self, db):
        return int(self.pg.psql("SELECT count(*) FROM subtasks WHERE state = 'completed'", db))

    def test_kill_9_mid_run(self):
        db = "coord_crash"
        self.pg.create_db(db, "coordinator")
        port = harness.free_port()
        base = "http://127.0.0.1:%d" % port
        proc = self.start(db, port)
        for i in range(N_TASKS):
            self.submit(base, "crash-%03d" % i)
        stop = threading.Event()
        workers = [Worker(base, "crash-agent-%d" % i, stop) for i in range(N_AGENTS)]
        for w in workers:
            w.start()
        self.wait_for("a quarter of the work", lambda: self.completed(db) >= N_TASKS // 4)
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait()
        at_kill = self.completed(db)
        self.assertLess(at_kill, N_TASKS, "the run finished before the kill")
        time.sleep(0.5)
        second = self.start(db, port)  # same database, same key, same port
        # A lease taken just before the kill whose reply was lost expires after timeoutMs (30 s)
        # + grace (1 s) and goes to another agent: at most about 32 s of waiting.
        self.wait_for("every subtask", lambda: self.completed(db) == N_TASKS, timeout=120)
        stop.set()
        for w in workers:
            w.join(30)
            self.assertIsNone(w.failure, w.failure)

        # The database: one result per subtask, one completed attempt per subtask, none failed.
        self.assertEqual(self.pg.psql("SELECT count(*) FROM results", db), str(N_TASKS))
        self.assertEqual(self.pg.psql(
            "SELECT count(*) FROM (SELECT subtask_id FROM subtask_attempts WHERE outcome = "
            "'completed' GROUP BY subtask_id HAVING count(*) = 1) x", db), str(N_TASKS))
        self.assertEqual(self.pg.psql(
            "SELECT count(*) FROM subtask_attempts WHERE outcome = 'completed'", db), str(N_TASKS))
        self.assertEqual(self.pg.psql("SELECT count(*) FROM subtasks WHERE state <> 'completed'",
                                      db), "0")
        # The agents: no subtask accepted fresh twice; every one answered.
        fresh = [s for w in workers for s in w.accepted]
        self.assertEqual(len(fresh), len(set(fresh)), "a subtask was accepted twice")
        answered = set(fresh) | {s for w in workers for s in w.duplicates}
        self.assertEqual(answered, {"crash-%03d:0" % i for i in range(N_TASKS)})
        self.assertTrue(sum(w.errors for w in workers) > 0, "the agents never saw the crash")
        # GET /tasks agrees, for every task.
        for i in range(N_TASKS):
            t = self.get(base, "/tasks/crash-%03d" % i).json()
            sub = t["subtasks"][0]
            self.assertEqual((t["status"], sub["state"]), ("completed", "completed"), t)
            self.assertEqual(sub["result"]["output"], "out:crash-%03d:0" % i)
            self.assertEqual(len([a for a in sub["attempts"] if a["outcome"] == "completed"]), 1)
        # The ledger continued across the restart and verifies from the database.
        v = self.wait_for("the ledger", lambda: self.get(base, "/ledger/verify").json())
        self.assertEqual(v["ok"], True, v)
        self.assertGreaterEqual(v["count"], 2 * N_TASKS)
        status = self.wait_for("the counts", lambda: (lambda s: s if s["results"] == N_TASKS
                                                        else None)(self.get(base, "/status").json()))
        self.assertEqual((status["queued"], status["results"]), (0, N_TASKS))
        self.assertEqual(second.stop(), 0)

    def test_late_result_from_expired_lease(self):
        db = "coord_late"
        self.pg.create_db(db, "coordinator")
        port = harness.free_port()
        base = "http://127.0.0.1:%d" % port
        self.start(db, port)
        a = Agent(base, "late-a", mesh_token=MESH)
        b = Agent(base, "late-b", mesh_token=MESH)
        self.assertEqual(a.register().status, 200)
        self.assertEqual(b.register().status, 200)
        self.submit(base, "late-1")
        r, sub = a.pull()
        self.assertEqual(sub["id"], "late-1:0")
        # Time passes: the lease's expiry is moved into the past; the sweeper requeues it.
        self.pg.psql("UPDATE subtasks SET lease_expires_at_ms = 1 WHERE subtask_id = 'late-1:0'",
                     db)
        self.wait_for("the requeue", lambda: self.pg.psql(
            "SELECT state FROM subtasks WHERE subtask_id = 'late-1:0'", db) == "queued")
        r = a.result(sub, output="too late", attempt=1)
        self.assertEqual((r.status, r.json()["error"]), (409, "lease_not_held"))
        r2, sub2 = b.pull()
        self.assertEqual((sub2["id"], sub2["attempt"]), ("late-1:0", 2))
        r = a.result(sub, output="too late")  # without the attempt: still not its lease
        self.assertEqual((r.status, r.json()["error"]), (409, "lease_not_held"))
        self.assertEqual(b.result(sub2, output="on time", attempt=2).status, 200)
        t = self.get(base, "/tasks/late-1").json()["subtasks"][0]
        self.assertEqual((t["result"]["output"], t["result"]["attempt"]), ("on time", 2))
        self.assertEqual([x["outcome"] for x in t["attempts"]], ["expired", "completed"])

        # Out of attempts: failed for good, and visible.
        self.submit(base, "late-2")
        for attempt in (1, 2, 3):
            r, sub = a.pull()
            self.assertEqual((sub["id"], sub["attempt"]), ("late-2:0", attempt))
            self.pg.psql("UPDATE subtasks SET lease_expires_at_ms = 1 "
                         "WHERE subtask_id = 'late-2:0'", db)
            self.wait_for("the expiry", lambda: self.pg.psql(
                "SELECT state FROM subtasks WHERE subtask_id = 'late-2:0'", db) != "leased")
        t = self.get(base, "/tasks/late-2").json()
        self.assertEqual((t["status"], t["subtasks"][0]["state"]), ("failed", "failed"))
        self.assertEqual(t["subtasks"][0]["failReason"], "attempts_exhausted")
        r, sub = a.pull()
        self.assertIsNone(sub)
        self.wait_for("the failed count",
                      lambda: self.get(base, "/status").json()["failed"] == 1, timeout=10)

    def test_database_outage(self):
        db = "coord_outage"
        self.pg.create_db(db, "coordinator")
        port = harness.free_port()
        base = "http://127.0.0.1:%d" % port
        proc = self.start(db, port)
        a = Agent(base, "outage-a", mesh_token=MESH)
        self.assertEqual(a.register().status, 200)
        self.submit(base, "outage-1")
        self.pg.stop()
        try:
            r = harness.request("POST", base + "/submit", headers={"x-mesh-token": MESH},
                                body={"taskId": "outage-2", "prompt": "x", "snapshotRef": SHA})
            self.assertEqual((r.status, r.json()), (503, {"error": "database_unavailable"}))
            self.assertEqual(r.header("retry-after"), "1")
            r, _ = a.pull()
            self.assertEqual((r.status, r.json()["error"]), (503, "database_unavailable"))
            self.assertEqual(a.heartbeat().status, 200)  # liveness lives in memory
            self.wait_for("/status to notice", lambda: self.get(base, "/status").status == 503,
                          timeout=15)
            self.assertEqual(self.get(base, "/status").json()["error"], "database_unavailable")
            h = harness.request("GET", base + "/health/runtime").json()
            self.assertEqual((h["ok"], h["database"]["reachable"]), (False, False))
        finally:
            self.pg.start()
        self.wait_for("recovery", lambda: harness.request(
            "POST", base + "/submit", headers={"x-mesh-token": MESH},
            body={"taskId": "outage-2", "prompt": "x", "snapshotRef": SHA}).status == 200,
            timeout=30)
        self.wait_for("/status", lambda: self.get(base, "/status").status == 200, timeout=15)
        r, sub = a.pull()
        self.assertEqual(r.status, 200)
        self.assertIn(sub["id"], ("outage-1:0", "outage-2:0"))
        self.assertEqual(a.result(sub, output="after").status, 200)
        self.assertEqual(proc.stop(), 0)


if __name__ == "__main__":
    unittest.main()
