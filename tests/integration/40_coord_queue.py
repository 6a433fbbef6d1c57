"""The coordinator's durable queue against a real PostgreSQL: its cmocka tests
(tests/unit/coord/test_queue.c, test_queue_load.c) on a fresh coordinator database, then several
processes claiming at once (none ever gets a subtask another holds, each subtask is answered
exactly once), and a worker killed with SIGKILL mid-run whose leases expire and are finished by
others."""

import os
import signal
import subprocess
import threading
import time

import harness

BIN_DIR = os.path.dirname(harness.BINARY)
UNIT_QUEUE = os.path.join(BIN_DIR, "unit_coord_test_queue")
UNIT_LOAD = os.path.join(BIN_DIR, "unit_coord_test_queue_load")
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}

_db_seq = 0


def fresh_db(prefix):
    """A migrated coordinator database of its own."""
    global _db_seq
    _db_seq += 1
    name = "%s_%d_%d" % (prefix, os.getpid(), _db_seq)
    return name, harness.postgres().create_db(name, "coordinator")


def unit_env(url, **extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EC_TEST_DATABASE_URL": url}
    env.update(SANITIZER_ENV)
    env.update(extra)
    return env


class QueueTest(harness.TestCase):

    def setUp(self):
        super().setUp()
        self.pg = harness.postgres()
        for path in (UNIT_QUEUE, UNIT_LOAD):
            if not os.path.exists(path):
                self.fail("%s is not built" % path)

    def run_unit(self, path, url, timeout=300, **extra):
        p = subprocess.run([path], env=unit_env(url, **extra), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def sql(self, db, query):
        return self.pg.psql(query, db)

    def test_queue_against_database(self):
        name, url = fresh_db("queue")
        code, out, err = self.run_unit(UNIT_QUEUE, url)
        self.assertEqual(code, 0, (out + err)[-6000:])
        self.assertIn("OK ] test_task_json", out)  # the database group ran
        self.assertIn("OK ] test_expiry_and_attempts", out)
        self.assertNotIn("Sanitizer", err)

    def test_load_plans_and_bench(self):
        name, url = fresh_db("qload")
        code, out, err = self.run_unit(UNIT_LOAD, url, timeout=600)
        self.assertEqual(code, 0, (out + err)[-6000:])
        self.assertIn("OK ] test_big_queue", out)
        self.assertNotIn("Sanitizer", err)
        for line in out.splitlines():
            if line.startswith(("concurrent:", "big queue:", "bench:")):
                print("\n  " + line, end="")
        print()

    def start_worker(self, url, threads, n):
        """A process of threads that claim and answer until nothing is left; returns (proc,
        reader thread, the list of its stdout lines as they come)."""
        proc = subprocess.Popen([UNIT_LOAD], env=unit_env(url, EC_TEST_QUEUE_STRESS="work",
                                                          EC_TEST_QUEUE_THREADS=str(threads),
                                                          EC_TEST_QUEUE_STRESS_N=str(n)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = []

        def read():
            for raw in proc.stdout:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        return proc, reader, lines

    def seed(self, url, n):
        code, out, err = self.run_unit(UNIT_LOAD, url, EC_TEST_QUEUE_STRESS="seed",
                                       EC_TEST_QUEUE_STRESS_N=str(n))
        self.assertEqual(code, 0, out + err)
        self.assertIn("seeded %d" % n, out)

    @staticmethod
    def claims(lines):
        return [tuple(l.split()[1:3]) for l in lines if l.startswith("claimed ")]

    def finish(self, worker):
        proc, reader, lines = worker
        proc.wait(timeout=300)
        reader.join(10)
        err = proc.stderr.read().decode()
        self.assertNotIn("Sanitizer", err)
        return proc.returncode, lines, err

    def test_processes_never_share_a_subtask(self):
        name, url = fresh_db("qconc")
        n = 500
        self.seed(url, n)
        workers = [self.start_worker(url, 4, n) for _ in range(3)]
        claimed = []
        for w in workers:
            code, lines, err = self.finish(w)
            self.assertEqual(code, 0, err[-4000:])
            self.assertIn("worker-done", "\n".join(lines))
            claimed += self.claims(lines)
        self.assertEqual(len(set(c[0] for c in claimed)), n)
        self.assertEqual(len(claimed), n, "a subtask was claimed twice")
        self.assertTrue(all(c[1] == "1" for c in claimed))
        self.check_exactly_once(name, n, len(claimed))
        print("\n  3 processes x 4 threads: %s claims" %
              [len(self.claims(w[2])) for w in workers])

    def test_killed_worker_leases_expire(self):
        name, url = fresh_db("qkill")
        n = 300
        self.seed(url, n)
        victim = self.start_worker(url, 4, n)
        # Let it claim a share, then kill it without warning: some leases stay open.
        deadline = time.monotonic() + 60
        while len(self.claims(victim[2])) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        victim[0].send_signal(signal.SIGKILL)
        self.finish(victim)
        open_leases = int(self.sql(name, "SELECT count(*) FROM subtasks WHERE state = 'leased'"))
        survivor = self.start_worker(url, 4, n)
        code, lines, err = self.finish(survivor)
        self.assertEqual(code, 0, err[-4000:])
        # The survivor finished everything it could claim; the dead worker's leases remain.
        self.assertEqual(self.sql(name, "SELECT count(*) FROM subtasks WHERE state = 'leased'"),
                         str(open_leases))
        code, out, err = self.run_unit(UNIT_LOAD, url, EC_TEST_QUEUE_STRESS="expire")
        self.assertEqual(code, 0, out + err)
        self.assertIn("expired %d failed 0" % open_leases, out)
        last = self.start_worker(url, 2, n)
        code, lines2, err = self.finish(last)
        self.assertEqual(code, 0, err[-4000:])
        retried = [c for c in self.claims(lines2) if c[1] == "2"]
        self.assertEqual(len(retried), open_leases)
        self.check_exactly_once(name, n, None)
        self.assertEqual(self.sql(name, "SELECT count(*) FROM subtask_attempts "
                                        "WHERE outcome = 'expired'"), str(open_leases))
        self.assertEqual(self.sql(name, "SELECT count(*) FROM ledger_pending "
                                        "WHERE event_type = 'task_requeue'"), str(open_leases))
        print("\n  killed after %d claims, %d leases open; all %d answered once"
              % (len(self.claims(victim[2])), open_leases, n))

    def check_exactly_once(self, name, n, n_claims):
        """Every subtask completed once, answered by the attempt that completed it."""
        q = lambda query: self.sql(name, query)
        self.assertEqual(q("SELECT count(*) FROM subtasks"), str(n))
        self.assertEqual(q("SELECT count(*) FROM subtasks WHERE state <> 'completed'"), "0")
        self.assertEqual(q("SELECT count(*) FROM results"), str(n))
        self.assertEqual(q("SELECT count(*) FROM subtask_attempts WHERE outcome = 'completed'"),
                         str(n))
        self.assertEqual(q("SELECT count(*) FROM subtask_attempts WHERE outcome = 'leased'"), "0")
        self.assertEqual(q("SELECT count(*) FROM results r JOIN subtask_attempts a "
                           "ON a.subtask_id = r.subtask_id AND a.attempt = r.attempt "
                           "AND a.agent_id = r.agent_id AND a.outcome = 'completed'"), str(n))
        attempts = q("SELECT count(*) FROM subtask_attempts")
        if n_claims is not None:
            self.assertEqual(attempts, str(n_claims))
        self.assertEqual(q("SELECT count(*) FROM ledger_pending WHERE event_type = 'task_claim'"),
                         attempts)
        self.assertEqual(q("SELECT count(*) FROM ledger_pending "
                           "WHERE event_type = 'task_complete'"), str(n))
        self.assertEqual(q("SELECT sum(completions) FROM project_completions"), str(n))
