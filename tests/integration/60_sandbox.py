"""`edgecoder sandbox` as the agent uses it: Python and JavaScript run in bubblewrap and print;
the boundary holds (no network, no host files read or written, a fork bomb contained and leaving
nothing behind, an endless loop killed at the timeout, a memory hog killed at its limit, output
capped); the subset checks refuse what they should without running it; bad usage exits 64; the
docker mode's probe says clearly when no daemon is reachable.

Boundary tests pass --no-subset-check: the subset check is defence in depth and would refuse
most of these programs before they ran; here the namespaces and limits must stop them."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import harness

SANDBOX_UID_BASE = 2000000000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def uptime():
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def processes():
    """{pid: (ppid, uid, state, start seconds since boot)} of every process now."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
            uid = os.stat("/proc/" + name).st_uid
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(name)] = (int(fields[1]), uid, fields[0], int(fields[19]) / CLK_TCK)
    return out


def descendants(procs, root):
    children = {}
    for pid, (ppid, _, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Base(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="ec-sbx60-")
        os.chmod(self.dir, 0o755)
        self.addCleanup(shutil.rmtree, self.dir, True)

    def sandbox(self, language, code, *args, expect_exit=0):
        """Runs `edgecoder sandbox run` on code; returns the parsed result."""
        path = os.path.join(self.dir, "prog")
        with open(path, "w") as f:
            f.write(code)
        rc, out, err = harness.run(["sandbox", "run", "--language", language] + list(args) + [path],
                                   timeout=120)
        self.assertNotIn("Sanitizer", err)
        self.assertEqual(rc, expect_exit, "stdout %r stderr %r" % (out, err))
        return json.loads(out)


class HelloWorld(Base):
    def test_python(self):
        r = self.sandbox("python", "def sq(x):\n    return x * x\nprint('hello', [sq(i) for i in range(4)])\n")
        self.assertEqual(r["stdout"], "hello [0, 1, 4, 9]\n")
        self.assertTrue(r["ok"])
        self.assertEqual(r["exitCode"], 0)
        self.assertFalse(r["timedOut"] or r["rejected"] or r["stdoutTruncated"])
        self.assertEqual(r["mode"], "bubblewrap")
        self.assertEqual(r["language"], "python")
        self.assertGreater(r["durationMs"], 0)

    def test_javascript(self):
        r = self.sandbox("javascript", "const xs = [1, 2, 3].map((x) => x * 2);\n"
                                       "console.log(`hello ${xs.join(',')}`, /a+/.test('caa'));\n")
        self.assertEqual(r["stdout"], "hello 2,4,6 true\n")
        self.assertTrue(r["ok"])

    def test_failing_program_reports_its_exit_and_stderr(self):
        r = self.sandbox("python", "print('before')\nraise ValueError('boom')\n")
        self.assertFalse(r["ok"])
        self.assertEqual(r["exitCode"], 1)
        self.assertEqual(r["stdout"], "before\n")
        self.assertIn("ValueError: boom", r["stderr"])
        self.assertFalse(r["rejected"])

    def test_runs_in_parallel(self):
        """Concurrent runs each get their own uid slot, work dir and tree."""
        path = os.path.join(self.dir, "par.py")
        with open(path, "w") as f:
            f.write("print(sum(range(1000)))\n")
        procs = [subprocess.Popen([harness.BINARY, "sandbox", "run", "--language", "python", path],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={"PATH": "/usr/bin:/bin", "LSAN_OPTIONS": harness.LSAN_OPTIONS})
                 for _ in range(4)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, err)
            self.assertEqual(json.loads(out)["stdout"], "499500\n")


class Network(Base):
    def setUp(self):
        super().setUp()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.accepted = []
        self.server.settimeout(0.2)
        self.stop = False

        def serve():
            while not self.stop:
                try:
                    conn, _ = self.server.accept()
                except OSError:
                    continue
                self.accepted.append(conn)
                conn.close()
        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

        def done():
            self.stop = True
            self.thread.join()
            self.server.close()
        self.addCleanup(done)

    PY = ("import socket\n"
          "for addr in [('127.0.0.1', %d), ('1.1.1.1', 80), ('8.8.8.8', 53)]:\n"
          "    s = socket.socket()\n"
          "    s.settimeout(3)\n"
          "    try:\n"
          "        s.connect(addr)\n"
          "        print('connected', addr[0])\n"
          "    except OSError as e:\n"
          "        print('failed', addr[0], e.errno)\n")

    def test_python_cannot_connect(self):
        r = self.sandbox("python", self.PY % self.port, "--no-subset-check")
        self.assertTrue(r["ok"], r)
        self.assertNotIn("connected", r["stdout"])
        self.assertEqual(r["stdout"].count("failed"), 3, r["stdout"])
        self.assertEqual(self.accepted, [])

    def test_javascript_cannot_connect(self):
        code = ("const net = require('net');\n"
                "let pending = 2;\n"
                "for (const [host, port] of [['127.0.0.1', %d], ['1.1.1.1', 80]]) {\n"
                "  const s = net.connect({host, port, timeout: 3000});\n"
                "  s.on('connect', () => { console.log('connected', host); s.destroy(); });\n"
                "  s.on('error', (e) => console.log('failed', host, e.code));\n"
                "  s.on('timeout', () => { console.log('failed', host, 'timeout'); s.destroy(); });\n"
                "}\n") % self.port
        r = self.sandbox("javascript", code, "--no-subset-check")
        self.assertNotIn("connected", r["stdout"])
        self.assertEqual(r["stdout"].count("failed"), 2, r)
        self.assertEqual(self.accepted, [])

    def test_the_server_is_reachable_without_the_sandbox(self):
        """The negative tests above mean something: on the host, the same program connects."""
        r = self.sandbox("python", (self.PY % self.port).replace(", ('1.1.1.1', 80), ('8.8.8.8', 53)", ""),
                         "--no-subset-check", "--mode", "none")
        self.assertIn("connected 127.0.0.1", r["stdout"])


class Files(Base):
    def secrets(self):
        """Secret files in a host temp dir (world-readable), in the repository and under /root."""
        paths = [os.path.join(self.dir, "secret.txt"),
                 os.path.join(harness.ROOT, "build", "ec-sbx60-secret-%d.txt" % os.getpid())]
        if os.path.isdir("/root") and os.access("/root", os.W_OK):
            paths.append("/root/ec-sbx60-secret-%d.txt" % os.getpid())
        for p in paths:
            with open(p, "w") as f:
                f.write("TOPSECRET-%d\n" % os.getpid())
            os.chmod(p, 0o644)
            self.addCleanup(lambda q=p: os.path.exists(q) and os.unlink(q))
        return paths

    def test_reading_outside_fails(self):
        paths = self.secrets() + ["/etc/passwd", "/etc/shadow", os.path.join(harness.ROOT, "README.md")]
        code = ("for p in %r:\n"
                "    try:\n"
                "        with open(p) as f:\n"
                "            print('read', p, f.read(40))\n"
                "    except OSError as e:\n"
                "        print('denied', p, e.errno)\n") % (paths,)
        r = self.sandbox("python", code, "--no-subset-check")
        self.assertTrue(r["ok"], r)
        self.assertNotIn("TOPSECRET", r["stdout"])
        self.assertNotIn("read ", r["stdout"])
        self.assertEqual(r["stdout"].count("denied"), len(paths), r["stdout"])

    def test_javascript_reading_outside_fails(self):
        paths = self.secrets()
        code = ("const fs = require('fs');\n"
                "for (const p of %s) {\n"
                "  try { console.log('read', p, fs.readFileSync(p, 'utf8')); }\n"
                "  catch (e) { console.log('denied', p, e.code); }\n"
                "}\n") % json.dumps(paths)
        r = self.sandbox("javascript", code, "--no-subset-check")
        self.assertNotIn("TOPSECRET", r["stdout"])
        self.assertEqual(r["stdout"].count("denied"), len(paths), r)

    def test_the_secret_is_readable_without_the_sandbox(self):
        path = self.secrets()[0]
        r = self.sandbox("python", "print(open(%r).read())" % path, "--no-subset-check", "--mode", "none")
        self.assertIn("TOPSECRET", r["stdout"])

    def test_writing_outside_the_work_dir_fails(self):
        open_dir = os.path.join(self.dir, "open")
        os.mkdir(open_dir)
        os.chmod(open_dir, 0o777)  # writable by anyone who can see it
        targets = [os.path.join(open_dir, "planted"), "/tmp/ec-sbx60-planted-%d" % os.getpid(),
                   os.path.join(harness.ROOT, "ec-sbx60-planted"), "/usr/ec-sbx60-planted",
                   "/etc/ec-sbx60-planted", "/ec-sbx60-planted", "/dev/shm/ec-sbx60-planted"]
        code = ("import os\n"
                "for p in %r:\n"
                "    try:\n"
                "        with open(p, 'w') as f:\n"
                "            f.write('x')\n"
                "        print('wrote', p)\n"
                "    except OSError as e:\n"
                "        print('denied', p, e.errno)\n"
                "with open('/sandbox/mine.txt', 'w') as f:\n"
                "    f.write('ok')\n"
                "print('work dir', open('/sandbox/mine.txt').read(), os.getcwd())\n") % (targets,)
        r = self.sandbox("python", code, "--no-subset-check")
        self.assertTrue(r["ok"], r)
        self.assertNotIn("wrote", r["stdout"])
        self.assertEqual(r["stdout"].count("denied"), len(targets), r["stdout"])
        self.assertIn("work dir ok /sandbox", r["stdout"])
        for t in targets:
            self.assertFalse(os.path.exists(t), t)

    def test_the_program_file_is_read_only(self):
        r = self.sandbox("python", "import os\ntry:\n    open(__file__, 'a').write('x')\n    print('changed')\n"
                                   "except OSError as e:\n    print('denied', e.errno)\n", "--no-subset-check")
        self.assertEqual(r["stdout"].split()[0], "denied", r)

    def test_runs_as_an_unprivileged_user(self):
        r = self.sandbox("python", "import os\nprint(os.getuid(), os.getgid(), os.getgroups())\n"
                                   "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n",
                         "--no-subset-check")
        uid, gid = r["stdout"].split()[0:2]
        if harness.IS_ROOT:
            self.assertGreaterEqual(int(uid), SANDBOX_UID_BASE)
            self.assertEqual(uid, gid)
        self.assertNotEqual(uid, "0")
        self.assertEqual(r["stdout"].splitlines()[1], "0000000000000000")  # no capabilities


class Limits(Base):
    BOMB = ("import os\n"
            "while True:\n"
            "    try:\n"
            "        os.fork()\n"
            "    except OSError:\n"
            "        pass\n")

    def test_fork_bomb_is_contained_and_leaves_nothing(self):
        before = len(processes())
        path = os.path.join(self.dir, "bomb.py")
        with open(path, "w") as f:
            f.write(self.BOMB)
        started = time.monotonic()
        p = subprocess.Popen([harness.BINARY, "sandbox", "run", "--language", "python", "--no-subset-check",
                              "--timeout-ms", "3000", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={"PATH": "/usr/bin:/bin", "LSAN_OPTIONS": harness.LSAN_OPTIONS})
        peak, uids = 0, set()
        while p.poll() is None:
            procs = processes()
            tree = [pid for pid in descendants(procs, p.pid) if pid in procs]
            live = [pid for pid in tree if procs[pid][2] != "Z"]
            peak = max(peak, len(live))
            uids.update(procs[pid][1] for pid in tree)
            time.sleep(0.05)
        out, err = p.communicate()
        ended_at = uptime()
        elapsed = time.monotonic() - started
        self.assertEqual(p.returncode, 0, err)
        self.assertNotIn("Sanitizer", err.decode())
        r = json.loads(out)
        self.assertTrue(r["timedOut"], r)
        self.assertEqual(r["exitCode"], 124)
        self.assertLess(elapsed, 3.0 + 4.0)
        # Contained: the sandbox's processes never pass the process limit (64, bwrap included)
        # plus the sweeper that may be running at the end.
        self.assertGreater(peak, 10, "the bomb never forked: the test proves nothing")
        self.assertLessEqual(peak, 64 + 2)
        if harness.IS_ROOT:
            self.assertTrue(uids and all(u >= SANDBOX_UID_BASE for u in uids - {0}), uids)
        # Nothing left: no process of the run's uid that started before the run ended (later
        # ones would be another run reusing the slot), and the host's count is back to normal.
        time.sleep(0.2)
        procs = processes()
        left = [pid for pid, (_, uid, _, start) in procs.items()
                if uid in uids - {0} and start <= ended_at]
        self.assertEqual(left, [], "left behind: %r" % [(pid, procs[pid]) for pid in left])
        self.assertLess(len(procs), before + 40)

    def test_infinite_loop_dies_at_the_timeout(self):
        for language, code in (("python", "while True:\n    pass\n"), ("javascript", "for (;;) {}\n")):
            started = time.monotonic()
            r = self.sandbox(language, code, "--timeout-ms", "1500")
            elapsed = time.monotonic() - started
            self.assertTrue(r["timedOut"], r)
            self.assertEqual(r["exitCode"], 124)
            self.assertFalse(r["ok"])
            self.assertGreaterEqual(r["durationMs"], 1500)
            self.assertLess(r["durationMs"], 1500 + 500, r)
            self.assertLess(elapsed, 1.5 + 2.0, language)

    def test_sleeping_program_dies_at_the_timeout_too(self):
        r = self.sandbox("python", "import time\ntime.sleep(60)\n", "--no-subset-check", "--timeout-ms", "1000")
        self.assertTrue(r["timedOut"])
        self.assertLess(r["durationMs"], 1500)

    def test_background_children_do_not_outlive_the_program(self):
        code = ("import os, time\n"
                "if os.fork() == 0:\n"
                "    os.setsid()\n"
                "    time.sleep(30)\n"
                "    os._exit(0)\n"
                "print('parent done', os.getuid())\n")
        r = self.sandbox("python", code, "--no-subset-check")
        ended_at = uptime()
        words = r["stdout"].split()
        self.assertEqual(words[:2], ["parent", "done"], r)
        self.assertLess(r["durationMs"], 5000)
        time.sleep(0.1)
        procs = processes()
        # Processes of the run's uid that started before it ended are the run's; none may remain.
        left = [pid for pid, (_, uid, _, start) in procs.items() if uid == int(words[2]) and start <= ended_at]
        self.assertEqual(left, [], [procs[pid] for pid in left])

    def test_memory_hog_dies_at_its_limit(self):
        r = self.sandbox("python", "x = []\nwhile True:\n    x.append('y' * (1 << 20))\n")
        self.assertFalse(r["ok"])
        self.assertFalse(r["timedOut"], r)
        self.assertNotEqual(r["exitCode"], 0)
        self.assertIn("MemoryError", r["stderr"])
        self.assertLess(r["durationMs"], 8000)

    def test_javascript_memory_hog_dies_at_its_limit(self):
        r = self.sandbox("javascript", "const a = [];\nwhile (true) a.push(Array(1e6).fill(1.5));\n")
        self.assertFalse(r["ok"])
        self.assertFalse(r["timedOut"], r)
        self.assertNotEqual(r["exitCode"], 0)
        self.assertIn("out of memory", r["stderr"].lower())

    def test_memory_limit_is_the_one_asked_for(self):
        code = "x = 'y' * (%d << 20)\nprint(len(x) >> 20)\n"
        small = self.sandbox("python", code % 100, "--memory-mb", "64")
        self.assertIn("MemoryError", small["stderr"])
        big = self.sandbox("python", code % 100, "--memory-mb", "512")
        self.assertEqual(big["stdout"], "100\n", big)

    def test_stdout_over_the_cap_is_truncated_and_flagged(self):
        r = self.sandbox("python", "for i in range(100000):\n    print('x' * 99)\n", "--output-bytes", "1000")
        self.assertTrue(r["ok"], r)
        self.assertTrue(r["stdoutTruncated"])
        self.assertFalse(r["stderrTruncated"])
        self.assertEqual(len(r["stdout"]), 1000)
        self.assertEqual(r["stdout"], ("x" * 99 + "\n") * 10)

    def test_stderr_over_the_cap_is_truncated_and_flagged(self):
        r = self.sandbox("javascript", "for (let i = 0; i < 20000; i++) console.error('e'.repeat(99));\n",
                         "--output-bytes", "500")
        self.assertTrue(r["stderrTruncated"])
        self.assertEqual(len(r["stderr"]), 500)

    def test_invalid_utf8_output_is_replaced(self):
        r = self.sandbox("python", "import sys\nsys.stdout.buffer.write(b'a\\xff\\x00b\\n')\n", "--no-subset-check")
        self.assertEqual(r["stdout"], "a\ufffd\ufffdb\n")


class SubsetCheck(Base):
    def assert_rejected(self, language, code, why):
        r = self.sandbox(language, code)
        self.assertTrue(r["rejected"], "%r was run: %r" % (code, r))
        self.assertFalse(r["ok"])
        self.assertEqual(r["exitCode"], 126)
        self.assertEqual(r["stdout"], "", "a rejected program must not run")
        self.assertTrue(r["stderr"].startswith("outside_subset: "), r["stderr"])
        self.assertIn(why, r["stderr"])

    def test_python_denylist(self):
        for code, why in (("print('ran')\nexec('1')\n", '"exec("'), ("print('ran')\nx = eval('1')\n", '"eval("'),
                          ("compile('1', 'f', 'eval')\n", '"compile("'), ("__import__('os')\n", "__import__"),
                          ("import os\n", '"import os"'), ("import subprocess\n", '"import subprocess"'),
                          ("print('ran')\nf = open ('/etc/passwd')\n", '"open("'), ("s = socket\n", '"socket"')):
            self.assert_rejected("python", code, why)

    def test_javascript_denylist(self):
        for code, why in (("console.log('ran'); eval('1');\n", '"eval("'), ("Function('return 1')();\n", '"Function("'),
                          ("console.log('ran'); require('fs');\n", '"require("'), ("process.exit(3);\n", '"process."'),
                          ("fs.readFileSync('/etc/passwd');\n", '"fs."'), ("const x = 'child_process';\n", '"child_process"')):
            self.assert_rejected("javascript", code, why)

    def test_python_ast_allowlist(self):
        for code, why in (("print('ran')\nimport math\n", "Import is not allowed (line 2)"),
                          ("from math import pi\n", "ImportFrom"), ("class A:\n    pass\n", "ClassDef"),
                          ("try:\n    x = 1\nexcept Exception:\n    pass\n", "Try"),
                          ("with x:\n    pass\n", "With"), ("async def f():\n    pass\n", "AsyncFunctionDef"),
                          ("print('ran')\nx = getattr(1, 'real')\n", '"getattr"'), ("g = globals()\n", '"globals"'),
                          ("b = bytearray(10)\n", '"bytearray"'), ("x = ().__class__.__bases__\n", "dunder"),
                          ("f = input\n", '"input"')):
            self.assert_rejected("python", code, why)

    def test_python_allowlist_lets_ordinary_code_run(self):
        code = ("def fib(n):\n"
                "    a, b = 0, 1\n"
                "    for _ in range(n):\n"
                "        a, b = b, a + b\n"
                "    return a\n"
                "squares = {i: i * i for i in range(5) if i % 2 == 0}\n"
                "total = sum(x for x in squares.values())\n"
                "name = 'world'\n"
                "if __name__ == '__main__':\n"
                "    print(f'{fib(10)} {sorted(squares)} {total} {name.upper()}', (lambda v: -v)(3))\n")
        r = self.sandbox("python", code)
        self.assertEqual(r["stdout"], "55 [0, 2, 4] 20 WORLD -3\n", r)

    def test_python_syntax_error_is_a_failing_run_not_a_rejection(self):
        r = self.sandbox("python", "print('x'\n")
        self.assertFalse(r["rejected"])
        self.assertEqual(r["exitCode"], 1)
        self.assertIn("SyntaxError", r["stderr"])

    def test_javascript_token_check(self):
        for code, why in (("const m = new Map();\n", '"new"'), ("class A {}\n", '"class"'),
                          ("const g = globalThis;\n", '"globalThis"'), ("[].map.constructor('return 1')();\n", '"constructor"'),
                          ("async function f() {}\n", '"async"'), ("console.log(this);\n", '"this"'),
                          ("const r = Reflect;\n", '"Reflect"'), ("\\u0065val('1');\n", "escape sequences")):
            self.assert_rejected("javascript", code, why)

    def test_javascript_words_in_strings_and_comments_are_fine(self):
        code = ("// new class this\n"
                "const s = 'new this class';\n"
                "const t = `template ${s.length} new`;\n"
                "/* globalThis */ const o = { a: 1 };\n"
                "console.log(s, t, o.a, /new/.test(s));\n")
        r = self.sandbox("javascript", code)
        self.assertEqual(r["stdout"], "new this class template 14 new 1 true\n", r)


class Usage(Base):
    def run_usage(self, *args):
        rc, out, err = harness.run(["sandbox"] + list(args))
        self.assertNotIn("Sanitizer", err)
        return rc, out, err

    def test_bad_language(self):
        rc, out, err = self.run_usage("run", "--language", "cobol", "-")
        self.assertEqual(rc, 64)
        self.assertIn('unknown language "cobol"', err)
        self.assertEqual(out, "")

    def test_bad_mode(self):
        rc, _, err = self.run_usage("run", "--language", "python", "--mode", "vm", "-")
        self.assertEqual(rc, 64)
        self.assertIn('unknown mode "vm"', err)
        rc, _, err = self.run_usage("probe", "--mode", "chroot")
        self.assertEqual(rc, 64)
        self.assertIn('unknown mode "chroot"', err)

    def test_missing_language_and_bad_numbers(self):
        rc, _, err = self.run_usage("run", "-")
        self.assertEqual(rc, 64)
        self.assertIn("--language is required", err)
        rc, _, err = self.run_usage("run", "--language", "python", "--timeout-ms", "soon", "-")
        self.assertEqual(rc, 64)
        self.assertIn("--timeout-ms", err)
        rc, _, err = self.run_usage("jump")
        self.assertEqual(rc, 64)
        rc, _, err = self.run_usage("run", "--language", "python", "/nonexistent/prog.py")
        self.assertEqual(rc, 66)
        self.assertIn("/nonexistent/prog.py", err)


class Probe(Base):
    def test_bubblewrap_probe(self):
        rc, out, err = harness.run(["sandbox", "probe"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"mode": "bubblewrap", "ok": True})

    def test_docker(self):
        have_daemon = shutil.which("docker") is not None and subprocess.run(
            ["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60).returncode == 0
        rc, out, err = harness.run(["sandbox", "probe", "--mode", "docker"], timeout=120)
        self.assertNotIn("Sanitizer", err)
        r = json.loads(out)
        self.assertEqual(r["mode"], "docker")
        if have_daemon:
            # A daemon here: the probe must pass (or name the missing image) and a run must work.
            if not r["ok"]:
                self.assertIn("docker pull", r["error"])
                return
            res = self.sandbox("python", "print(6 * 7)\n", "--mode", "docker")
            self.assertEqual(res["stdout"], "42\n")
        else:
            self.assertEqual(rc, 69)
            self.assertFalse(r["ok"])
            self.assertTrue("docker daemon is not reachable" in r["error"] or "docker is not installed" in r["error"],
                            r["error"])
            self.assertIn("cannot run here", err)
            # A run fails the same clear way instead of pretending.
            path = os.path.join(self.dir, "p.py")
            with open(path, "w") as f:
                f.write("print(1)\n")
            rc, out, err = harness.run(["sandbox", "run", "--language", "python", "--mode", "docker", path],
                                       timeout=120)
            self.assertEqual(rc, 69)
            self.assertIn("docker", err)
