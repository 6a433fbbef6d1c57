"""PostgreSQL layer: `edgecoder migrate` against a throwaway cluster (apply, no-op re-run,
concurrent runs, a failing file, tampering, a newer database, config and usage errors), and the
C pool's cmocka test run against a real database, including a server stop/start under load."""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import harness

ROOT = harness.ROOT
UNIT_PG = os.path.join(os.path.dirname(harness.BINARY), "unit_common_test_pg")
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}

_db_seq = 0


def fresh_db(prefix="mig"):
    """An empty database (no migrations applied) of its own."""
    global _db_seq
    _db_seq += 1
    name = "%s_%d_%d" % (prefix, os.getpid(), _db_seq)
    return name, harness.postgres().create_db(name)


def migrate(*args, env=None, timeout=60):
    code, out, err = harness.run(["migrate"] + list(args), env=env, timeout=timeout)
    assert "Sanitizer" not in err and "runtime error:" not in err, err
    summary = None
    for line in out.splitlines():
        if line.startswith("{"):
            summary = json.loads(line)
    return code, summary, err


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class MigrationDir:
    """A temporary --dir of migration files."""

    def __init__(self, files):
        self.path = tempfile.mkdtemp(prefix="ec-mig-")
        for name, body in files.items():
            self.write(name, body)

    def write(self, name, body):
        with open(os.path.join(self.path, name), "w") as f:
            f.write(body)

    def remove(self, name):
        os.unlink(os.path.join(self.path, name))

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


class MigrateTest(harness.TestCase):

    def setUp(self):
        super().setUp()
        self.pg = harness.postgres()

    def versions(self, db):
        out = self.pg.psql("SELECT coalesce(string_agg(version::text, ',' ORDER BY version), '') "
                           "FROM schema_migrations", db)
        return [int(v) for v in out.split(",") if v]

    def test_embedded_migrations_apply_then_noop(self):
        for kind in ("coordinator", "portal"):
            name, url = fresh_db(kind[:4])
            code, summary, err = migrate("--db", kind, "--url", url)
            self.assertEqual(code, 0, err)
            self.assertEqual(summary["ok"], True)
            self.assertEqual(summary["database"], kind)
            self.assertIn("0001_service_meta.sql", summary["applied"])
            current = summary["current"]
            self.assertGreaterEqual(current, 1)
            self.assertIn('"msg":"migration applied"', err)

            row = self.pg.psql("SELECT name || ' ' || checksum FROM schema_migrations "
                               "WHERE version = 1", name)
            want = sha256_file(os.path.join(ROOT, "db", kind, "0001_service_meta.sql"))
            self.assertEqual(row, "0001_service_meta.sql " + want)
            self.assertEqual(self.pg.psql("SELECT value FROM service_meta WHERE key = 'created_by'",
                                          name), "edgecoder migrate")

            # The URL may also come from the environment.
            env_name = "DATABASE_URL" if kind == "coordinator" else "PORTAL_DATABASE_URL"
            code, summary, err = migrate("--db", kind, env={env_name: url})
            self.assertEqual(code, 0, err)
            self.assertEqual(summary, {"ok": True, "database": kind, "applied": [],
                                       "current": current})

    def test_concurrent_migrators_apply_once(self):
        mdir = MigrationDir({
            "0001_hits.sql": "CREATE TABLE hits (version int NOT NULL);\n"
                             "INSERT INTO hits VALUES (1);\n",
            # Slow, so that the second migrator arrives while the first holds the lock.
            "0002_slow.sql": "SELECT pg_sleep(0.5);\nINSERT INTO hits VALUES (2);\n",
            "0003_more.sql": "INSERT INTO hits VALUES (3);\n",
        })
        self.addCleanup(mdir.cleanup)
        name, url = fresh_db("conc")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        args = [harness.BINARY, "migrate", "--db", "coordinator", "--url", url, "--dir", mdir.path]
        procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(3)]
        results = [p.communicate(timeout=60) for p in procs]
        applied = []
        for p, (out, err) in zip(procs, results):
            self.assertEqual(p.returncode, 0, err.decode())
            summary = json.loads(out.decode().strip().splitlines()[-1])
            self.assertEqual(summary["current"], 3)
            applied += summary["applied"]
        self.assertEqual(sorted(applied), ["0001_hits.sql", "0002_slow.sql", "0003_more.sql"])
        self.assertEqual(self.pg.psql("SELECT string_agg(version::text, ',' ORDER BY version) "
                                      "FROM hits", name), "1,2,3")
        self.assertEqual(self.versions(name), [1, 2, 3])

    def test_failing_migration_stops_and_names_the_file(self):
        mdir = MigrationDir({
            "0001_a.sql": "CREATE TABLE a (x int);\n",
            "0002_bad.sql": "CREATE TABLE b (x int);\n\nSELEC oops FROM nowhere;\n",
            "0003_c.sql": "CREATE TABLE c (x int);\n",
        })
        self.addCleanup(mdir.cleanup)
        name, url = fresh_db("bad")
        code, summary, err = migrate("--db", "portal", "--url", url, "--dir", mdir.path)
        self.assertEqual(code, 1)
        self.assertIn("0002_bad.sql", err)
        self.assertIn("line 3", err)
        self.assertIn("syntax error", err)
        self.assertEqual(summary["ok"], False)
        self.assertEqual(summary["applied"], ["0001_a.sql"])
        self.assertEqual(self.versions(name), [1])
        # 0002 ran in one transaction with its record: its first statement was rolled back too.
        self.assertEqual(self.pg.psql("SELECT to_regclass('b') IS NULL", name), "t")
        self.assertEqual(self.pg.psql("SELECT to_regclass('c') IS NULL", name), "t")

        mdir.write("0002_bad.sql", "CREATE TABLE b (x int);\n")
        code, summary, err = migrate("--db", "portal", "--url", url, "--dir", mdir.path)
        self.assertEqual(code, 0, err)
        self.assertEqual(summary["applied"], ["0002_bad.sql", "0003_c.sql"])
        self.assertEqual(self.versions(name), [1, 2, 3])

    def test_tampered_migration_is_refused(self):
        mdir = MigrationDir({"0001_a.sql": "CREATE TABLE a (x int);\n"})
        self.addCleanup(mdir.cleanup)
        name, url = fresh_db("tamper")
        code, summary, err = migrate("--db", "coordinator", "--url", url, "--dir", mdir.path)
        self.assertEqual(code, 0, err)
        mdir.write("0001_a.sql", "CREATE TABLE a (x bigint);\n")
        mdir.write("0002_b.sql", "CREATE TABLE b (x int);\n")
        code, summary, err = migrate("--db", "coordinator", "--url", url, "--dir", mdir.path)
        self.assertEqual(code, 1)
        self.assertIn("0001_a.sql", err)
        self.assertIn("changed after it was applied", err)
        self.assertEqual(summary["applied"], [])
        self.assertEqual(self.versions(name), [1])  # nothing applied, not even the new 0002
        self.assertEqual(self.pg.psql("SELECT to_regclass('b') IS NULL", name), "t")

    def test_newer_database_is_refused(self):
        name, url = fresh_db("newer")
        code, summary, err = migrate("--db", "coordinator", "--url", url)
        self.assertEqual(code, 0, err)
        self.pg.psql("INSERT INTO schema_migrations (version, name, checksum) "
                     "VALUES (999999, '999999_future.sql', 'x')", name)
        code, summary, err = migrate("--db", "coordinator", "--url", url)
        self.assertEqual(code, 1)
        self.assertIn("999999", err)
        self.assertIn("newer than this binary", err)
        self.assertEqual(summary["error"], "conflict")

    def test_older_unapplied_migration_is_refused(self):
        mdir = MigrationDir({"0001_a.sql": "CREATE TABLE a (x int);\n",
                             "0003_c.sql": "CREATE TABLE c (x int);\n"})
        self.addCleanup(mdir.cleanup)
        name, url = fresh_db("gap")
        code, summary, err = migrate("--db", "portal", "--url", url, "--dir", mdir.path)
        self.assertEqual(code, 0, err)  # a gap is allowed
        mdir.write("0002_b.sql", "CREATE TABLE b (x int);\n")
        code, summary, err = migrate("--db", "portal", "--url", url, "--dir", mdir.path)
        self.assertEqual(code, 1)
        self.assertIn("0002_b.sql", err)
        self.assertEqual(self.versions(name), [1, 3])

    def test_bad_file_names_are_rejected(self):
        name, url = fresh_db("names")
        for files, named in (({"0001_a.sql": "SELECT 1;", "2_short.sql": "SELECT 1;"},
                              ["2_short.sql"]),
                             ({"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 1;"},
                              ["0001_a.sql", "0001_b.sql"])):
            mdir = MigrationDir(files)
            self.addCleanup(mdir.cleanup)
            code, summary, err = migrate("--db", "portal", "--url", url, "--dir", mdir.path)
            self.assertEqual(code, 1)
            for f in named:
                self.assertIn(f, err)
        self.assertEqual(self.pg.psql("SELECT to_regclass('schema_migrations') IS NULL", name), "t")

    def test_config_and_usage_errors(self):
        code, out, err = harness.run(["migrate", "--db", "coordinator"])
        self.assertEqual(code, 78, err)
        self.assertIn("DATABASE_URL", err)
        code, out, err = harness.run(["migrate", "--db", "portal"],
                                     env={"DATABASE_URL": "postgresql://x/y"})
        self.assertEqual(code, 78, err)
        self.assertIn("PORTAL_DATABASE_URL", err)
        for args in (["migrate"], ["migrate", "--db", "nosuch", "--url", "x"],
                     ["migrate", "--db", "portal", "--bogus"], ["migrate", "--db"]):
            code, out, err = harness.run(args)
            self.assertEqual(code, 64, (args, err))
        code, out, err = harness.run(["migrate", "--help"])
        self.assertEqual(code, 0)
        self.assertIn("--db coordinator|portal", out)

    def test_unreachable_database(self):
        started = time.monotonic()
        code, summary, err = migrate("--db", "coordinator", "--url",
                                     "postgresql://postgres@127.0.0.1:%d/x" % harness.free_port())
        self.assertEqual(code, 1)
        self.assertEqual(summary["error"], "database_unavailable")
        self.assertIn("cannot connect", err)
        self.assertLess(time.monotonic() - started, 10)
        # A password in the URL never reaches the output.
        code, summary, err = migrate("--db", "coordinator", "--url",
                                     "postgresql://u:hunter2@127.0.0.1:%d/x?bogus=1"
                                     % harness.free_port())
        self.assertEqual(code, 1)
        self.assertNotIn("hunter2", err + json.dumps(summary))


class PoolTest(harness.TestCase):
    """The C pool's cmocka test (tests/unit/common/test_pg.c) against a real database."""

    def setUp(self):
        super().setUp()
        self.pg = harness.postgres()
        if not os.path.exists(UNIT_PG):
            self.fail("%s is not built" % UNIT_PG)

    def run_unit(self, env, timeout=120):
        full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        full.update(SANITIZER_ENV)
        full.update(env)
        return subprocess.run([UNIT_PG], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout)

    def test_pool_against_database(self):
        name, url = fresh_db("pool")
        p = self.run_unit({"EC_TEST_DATABASE_URL": url})
        out = p.stdout.decode() + p.stderr.decode()
        self.assertEqual(p.returncode, 0, out[-6000:])
        self.assertIn("OK ] test_tx_retry", out)  # the database group ran, not only the pure one
        self.assertNotIn("Sanitizer", out)

    def test_pool_survives_restart(self):
        name, url = fresh_db("restart")
        full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EC_TEST_DATABASE_URL": url,
                "EC_TEST_PG_RESTART": "1"}
        full.update(SANITIZER_ENV)
        proc = subprocess.Popen([UNIT_PG], env=full, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        lines, ready = [], threading.Event()

        def read_stdout():
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                if line == "restart-ready":
                    ready.set()

        reader = threading.Thread(target=read_stdout, daemon=True)
        reader.start()
        stopped = False
        try:
            self.assertTrue(ready.wait(30), "the pool test never got going: %s" % lines)
            time.sleep(0.3)
            t0 = time.monotonic()
            self.pg.stop()
            stopped = True
            stop_s = time.monotonic() - t0
            time.sleep(2.0)
            t1 = time.monotonic()
            self.pg.start()
            stopped = False
            start_s = time.monotonic() - t1
            stderr = proc.stderr.read().decode("utf-8", "replace")
            proc.wait(60)
        finally:
            if stopped:
                self.pg.start()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(5)
        out = "\n".join(lines)
        self.assertEqual(proc.returncode, 0, out[-4000:] + stderr[-4000:])
        self.assertNotIn("Sanitizer", stderr)
        stats = None
        for line in lines:
            if line.startswith("restart-stats "):
                stats = json.loads(line[len("restart-stats "):])
        self.assertIsNotNone(stats, out)
        self.assertEqual(stats["other"], 0)
        self.assertGreater(stats["unavailable"], 0)
        self.assertLess(stats["slowest_fail_ms"], 100)
        # Back within the breaker's longest back-off (2 s) of the server accepting again.
        self.assertLess(stats["outage_ms"], (stop_s + 2.0 + start_s + 2.5) * 1000)
        # One log line when the database went away and one when it came back.
        logs = [json.loads(l) for l in stderr.splitlines() if l.startswith("{")]
        self.assertEqual([l["msg"] for l in logs if l["msg"].startswith("database ")],
                         ["database unavailable", "database available"], stderr[-4000:])
        print("\n  restart: stop %.2fs, down 2.0s, start %.2fs; pool: %s"
              % (stop_s, start_s, json.dumps(stats)))
