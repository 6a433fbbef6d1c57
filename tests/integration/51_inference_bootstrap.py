"""`edgecoder bootstrap coordinator` against a throwaway PostgreSQL and the fake Ollama: the
migrations applied (and idempotent), OLLAMA_MODEL pulled through /api/pull only when
OLLAMA_AUTO_INSTALL=true and not installed already, failures reported in the JSON summary, and
no installer ever run."""

import json
import unittest

import harness



class BootstrapCoordinator(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.postgres()
        cls.fake = harness.FakeOllama({"models": ["qwen2.5:0.5b"], "pull": {"steps": 2,
                                                                    "fail": ["broken:model"]}})

    @classmethod
    def tearDownClass(cls):
        cls.fake.kill()

    def bootstrap(self, db, **env):
        full = {"DATABASE_URL": self.pg.create_db(db) if db else "",
                "OLLAMA_HOST": "127.0.0.1:%d" % self.fake.port,
                # An installer on PATH would be found: there is none, and none may be fetched.
                "PATH": "/nonexistent"}
        full.update(env)
        rc, out, err = harness.run(["bootstrap", "coordinator"], env=full)
        return rc, (json.loads(out) if out.strip() else None), err

    def test_migrates_and_skips_model_without_auto_install(self):
        rc, summary, err = self.bootstrap("boot_a")
        self.assertEqual(rc, 0, err)
        self.assertTrue(summary["ok"])
        self.assertTrue(summary["database"]["ok"])
        self.assertGreater(len(summary["database"]["applied"]), 0)
        self.assertEqual(summary["modelBootstrap"]["action"], "skipped")
        self.assertFalse(summary["modelBootstrap"]["autoInstall"])
        tables = self.pg.psql("SELECT count(*) FROM schema_migrations", db="boot_a")
        self.assertEqual(int(tables), len(summary["database"]["applied"]))

    def test_pulls_model_once_with_auto_install(self):
        rc, summary, err = self.bootstrap("boot_b", OLLAMA_AUTO_INSTALL="true",
                                          OLLAMA_MODEL="llama3.2:1b")
        self.assertEqual(rc, 0, err)
        self.assertEqual(summary["modelBootstrap"]["action"], "pulled")
        self.assertEqual(summary["modelBootstrap"]["model"], "llama3.2:1b")
        pulls = [r for r in self.fake.requests() if r["path"] == "/api/pull"]
        self.assertEqual(pulls[-1]["model"], "llama3.2:1b")
        # Second run: nothing left to migrate, and the model is already there.
        full = {"DATABASE_URL": self.pg.url("boot_b"), "OLLAMA_AUTO_INSTALL": "true",
                "OLLAMA_MODEL": "llama3.2:1b", "OLLAMA_HOST": "127.0.0.1:%d" % self.fake.port}
        rc, out, err = harness.run(["bootstrap", "coordinator"], env=full)
        summary = json.loads(out)
        self.assertEqual(rc, 0, err)
        self.assertEqual(summary["database"]["applied"], [])
        self.assertEqual(summary["modelBootstrap"]["action"], "present")

    def test_failures_are_reported(self):
        rc, summary, _ = self.bootstrap("boot_c", OLLAMA_AUTO_INSTALL="true",
                                        OLLAMA_MODEL="broken:model")
        self.assertEqual(rc, 1)
        self.assertFalse(summary["ok"])
        self.assertTrue(summary["database"]["ok"])
        self.assertEqual(summary["modelBootstrap"]["error"], "ollama_unavailable")
        self.assertIn("file does not exist", summary["modelBootstrap"]["message"])
        # Ollama not running: reported, never installed.
        rc, summary, _ = self.bootstrap("boot_d", OLLAMA_AUTO_INSTALL="true",
                                        OLLAMA_HOST="127.0.0.1:%d" % harness.free_port())
        self.assertEqual(rc, 1)
        self.assertEqual(summary["modelBootstrap"]["action"], "failed")
        # A database that cannot be reached: the model is not attempted.
        rc, summary, _ = self.bootstrap(None, DATABASE_URL="postgresql://postgres@127.0.0.1:%d/x"
                                        % harness.free_port(), OLLAMA_AUTO_INSTALL="true")
        self.assertEqual(rc, 1)
        self.assertFalse(summary["database"]["ok"])
        self.assertEqual(summary["modelBootstrap"]["action"], "not attempted")
        rc, _, _ = self.bootstrap(None)
        self.assertEqual(rc, 78)

    def test_usage(self):
        rc, _, _ = harness.run(["bootstrap"])
        self.assertEqual(rc, 64)
        rc, _, _ = harness.run(["bootstrap", "portal"])
        self.assertEqual(rc, 64)


if __name__ == "__main__":
    unittest.main()
