"""Shared harness for the integration tests: a throwaway PostgreSQL, dev certificates, real
processes of the real binary, and small HTTP(S) helpers. Python 3 standard library only
(python3-grpcio where a test speaks gRPC)."""

import atexit
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("EC_BINARY", os.path.join(ROOT, "build", "asan", "edgecoder"))
PG_BIN = os.environ.get("EC_PG_BIN", "/usr/lib/postgresql/15/bin")
IS_ROOT = os.geteuid() == 0
# See tests/lsan.supp: leaks inside gRPC's asynchronous TLS teardown at exit, not ours.
LSAN_OPTIONS = "suppressions=%s:print_suppressions=0" % os.path.join(ROOT, "tests", "lsan.supp")
os.environ["LSAN_OPTIONS"] = LSAN_OPTIONS  # for tests that start processes themselves


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, host="127.0.0.1", timeout=20.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening on %d" % (proc.returncode, port))
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listening on %s:%d after %.0fs" % (host, port, timeout))


def _as_postgres(cmd, **kw):
    if IS_ROOT:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


class Postgres:
    """A private PostgreSQL 15 cluster in a temp dir on a free port, fsync off. Databases for a
    test module are copied from a migrated template (CREATE DATABASE ... TEMPLATE)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ec-pg-")
        if IS_ROOT:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.templates = {}
        _as_postgres([PG_BIN + "/initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--no-locale", "--no-sync"])
        self.start()

    def start(self):
        opts = ("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200" % (self.port, self.dir))
        _as_postgres([PG_BIN + "/pg_ctl", "-D", self.data, "-w", "-l", os.path.join(self.dir, "log"),
                      "-o", opts, "start"])

    def stop(self, mode="fast"):
        _as_postgres([PG_BIN + "/pg_ctl", "-D", self.data, "-w", "-m", mode, "stop"])

    def destroy(self):
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db="postgres"):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def psql(self, sql, db="postgres"):
        out = subprocess.run([PG_BIN + "/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-d", self.url(db), "-c", sql],
                             check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return out.stdout.decode().strip()

    def template(self, kind):
        """A template database with the `kind` (coordinator|portal) migrations applied once."""
        if kind not in self.templates:
            name = "tpl_" + kind
            self.psql("CREATE DATABASE %s" % name)
            subprocess.run([BINARY, "migrate", "--db", kind, "--url", self.url(name)], check=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.templates[kind] = name
        return self.templates[kind]

    def create_db(self, name, kind=None):
        tpl = " TEMPLATE %s" % self.template(kind) if kind else ""
        self.psql("DROP DATABASE IF EXISTS %s" % name)
        self.psql("CREATE DATABASE %s%s" % (name, tpl))
        return self.url(name)


_pg = None


def postgres():
    """The run's one PostgreSQL, started on first use and destroyed at exit."""
    global _pg
    if _pg is None:
        _pg = Postgres()
        atexit.register(_pg.destroy)
    return _pg


def openssl(*args, cwd=None):
    subprocess.run(["openssl"] + list(args), check=True, cwd=cwd,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class DevCerts:
    """A throwaway CA (EC P-256) and leaf certificates with SPIFFE URI SANs, made with the
    openssl CLI so the tests do not depend on the code under test to make their own trust."""

    def __init__(self, dirpath=None):
        self.dir = dirpath or tempfile.mkdtemp(prefix="ec-certs-")
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.ca = os.path.join(self.dir, "ca.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.ca_key, "-out", self.ca, "-days", "3", "-subj", "/CN=edgecoder test CA")

    def issue(self, name, role="coordinator", ident="test", days=2, dns=("localhost",),
              ips=("127.0.0.1",)):
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        crt = os.path.join(self.dir, name + ".pem")
        ext = os.path.join(self.dir, name + ".ext")
        sans = ["URI:spiffe://edgecoder/%s/%s" % (role, ident)]
        sans += ["DNS:" + d for d in dns] + ["IP:" + i for i in ips]
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n" % ",".join(sans))
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=%s" % name)
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                "-CAcreateserial", "-out", crt, "-days", str(days), "-extfile", ext)
        return crt, key


class Proc:
    """A real process of the binary under test. Output goes to a log file that the test can read;
    stop() asserts a clean exit and no sanitizer report."""

    def __init__(self, args, env=None, port=None, binary=None, timeout=20.0):
        self.args = [binary or BINARY] + list(args)
        self.log_path = tempfile.mktemp(prefix="ec-proc-", suffix=".log")
        self.log = open(self.log_path, "wb")
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
                    "LSAN_OPTIONS": LSAN_OPTIONS,
                    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
        full_env.update(env or {})
        self.proc = subprocess.Popen(self.args, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)
        if port is not None:
            try:
                wait_port(port, proc=self.proc, timeout=timeout)
            except RuntimeError:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("%s did not start:\n%s" % (" ".join(self.args), self.output()))

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_lines(self):
        """The JSON log lines the process wrote (other lines skipped)."""
        out = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("process did not exit within %.0fs of signal %d:\n%s"
                                     % (timeout, sig, self.output()[-4000:]))
        self.log.close()
        out = self.output()
        if "Sanitizer" in out or "runtime error:" in out:
            raise AssertionError("sanitizer report:\n" + out[-8000:])
        return self.proc.returncode


def run(args, env=None, binary=None, timeout=60):
    """Runs the binary to completion; returns (exit code, stdout, stderr) as text."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LSAN_OPTIONS": LSAN_OPTIONS}
    full_env.update(env or {})
    p = subprocess.run([binary or BINARY] + list(args), env=full_env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def tls_client_context(ca=None, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=ca) if ca else ssl._create_unverified_context()
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name):
        return self.headers.get(name.lower())


def request(method, url, body=None, headers=None, ctx=None, timeout=10.0, conn=None):
    """One HTTP(S) request. `body` may be bytes, str or a JSON-able object. Pass `conn` (from
    connect()) to reuse a keep-alive connection."""
    from urllib.parse import urlsplit
    u = urlsplit(url)
    own = conn is None
    if own:
        conn = connect(url, ctx=ctx, timeout=timeout)
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs.setdefault("content-type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        if own:
            conn.close()


def connect(url, ctx=None, timeout=10.0):
    from urllib.parse import urlsplit
    u = urlsplit(url)
    if u.scheme == "https":
        return http.client.HTTPSConnection(u.hostname, u.port, context=ctx or tls_client_context(),
                                           timeout=timeout)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)


class TestCase(unittest.TestCase):
    """Base class: tracks processes so a failing test never leaves one running."""

    def setUp(self):
        self._procs = []

    def spawn(self, args, **kw):
        p = Proc(args, **kw)
        self._procs.append(p)
        return p

    def tearDown(self):
        for p in self._procs:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()


# --- shared fixtures ---------------------------------------------------------------------------

def load_pb(name):
    """The Python protobuf module of proto/edgecoder/v1/<name>.proto, compiled by Debian's protoc
    into a temp dir (the generated code is never committed)."""
    out = tempfile.mkdtemp(prefix="ec-pb-")
    subprocess.run(["/usr/bin/protoc", "-I" + os.path.join(ROOT, "proto"),
                    "--python_out=" + out, "edgecoder/v1/%s.proto" % name], check=True)
    path = os.path.join(out, "edgecoder", "v1", name + "_pb2.py")
    spec = importlib.util.spec_from_file_location("ec_%s_pb2" % name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class FakeOllama:
    """tests/fakes/fake_ollama.py on a free port, driven by a script (see that file)."""

    PATH = os.path.join(ROOT, "tests", "fakes", "fake_ollama.py")

    def __init__(self, script, port=0):
        # A file rather than the environment: a script may hold answers over the 128 KiB an
        # environment variable can carry.
        fd, path = tempfile.mkstemp(prefix="ec-fake-ollama-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(script, f)
        self.proc = subprocess.Popen(["/usr/bin/python3", self.PATH, "--port", str(port),
                                      "--script", path],
                                     env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("PORT "), line
        self.port = int(line.split()[1])
        self.url = "http://127.0.0.1:%d" % self.port

    def requests(self):
        """Every request the fake has answered, oldest first."""
        return request("GET", self.url + "/_fake/requests").json()["requests"]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
