"""`edgecoder certs init|issue` and `edgecoder keygen` as a user runs them: the CA and leaves verify
with the openssl CLI and carry the SPIFFE URI and SANs, two issued leaves complete a mutually
authenticated TLS handshake, keys are 0600, nothing is overwritten unless asked, bad input is a
usage error naming the option, and keygen's PEMs work with `openssl pkeyutl`."""

import base64
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import threading

import harness


def openssl_out(*args, input=None):
    p = subprocess.run(["openssl"] + list(args), input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class Base(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="ec-certs12-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def ec(self, *args, ok=True):
        """Runs the binary; with ok, asserts exit 0 and returns the parsed JSON line."""
        code, out, err = harness.run(list(args))
        self.assertNotIn("Sanitizer", err)
        self.assertNotIn("runtime error:", err)
        if not ok:
            return code, out, err
        self.assertEqual(code, 0, "%s failed (%d):\n%s" % (" ".join(args), code, err))
        lines = out.strip().splitlines()
        self.assertEqual(len(lines), 1, out)
        return json.loads(lines[0])

    def init_ca(self, *extra):
        return self.ec("certs", "init", "--dir", self.path("ca"), *extra)

    def issue(self, role, ident, *extra):
        return self.ec("certs", "issue", "--dir", self.path("ca"), "--role", role, "--id", ident,
                       *extra)


class CertsTest(Base):
    def test_init_and_issue_verify(self):
        ca = self.init_ca()
        self.assertEqual(ca["cert"], self.path("ca", "ca.pem"))
        self.assertEqual(ca["key"], self.path("ca", "ca.key"))
        self.assertEqual(mode(ca["key"]), 0o600)
        self.assertEqual(mode(self.path("ca")), 0o700)
        code, text, _ = openssl_out("x509", "-in", ca["cert"], "-noout", "-text")
        self.assertEqual(code, 0)
        self.assertIn("Subject: CN = EdgeCoder CA", text)
        self.assertIn("CA:TRUE, pathlen:0", text)
        self.assertIn("Certificate Sign, CRL Sign", text)
        self.assertIn("X509v3 Subject Key Identifier", text)

        leaf = self.issue("coordinator", "coord-1", "--dns", "localhost", "--dns",
                          "coord.internal", "--ip", "127.0.0.1", "--ip", "::1", "--days", "30")
        self.assertEqual(leaf["spiffe"], "spiffe://edgecoder/coordinator/coord-1")
        self.assertEqual(leaf["cert"], self.path("ca", "coordinator-coord-1.pem"))
        self.assertEqual(leaf["key"], self.path("ca", "coordinator-coord-1.key"))
        self.assertRegex(leaf["notAfter"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(mode(leaf["key"]), 0o600)

        code, out, err = openssl_out("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile",
                                     ca["cert"], leaf["cert"])
        self.assertEqual(code, 0, out + err)
        self.assertIn(": OK", out)
        code, out, err = openssl_out("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile",
                                     ca["cert"], leaf["cert"])
        self.assertEqual(code, 0, out + err)

        code, text, _ = openssl_out("x509", "-in", leaf["cert"], "-noout", "-text")
        self.assertEqual(code, 0)
        self.assertIn("URI:spiffe://edgecoder/coordinator/coord-1", text)
        self.assertIn("DNS:localhost", text)
        self.assertIn("DNS:coord.internal", text)
        self.assertIn("IP Address:127.0.0.1", text)
        self.assertIn("IP Address:0:0:0:0:0:0:0:1", text)
        self.assertIn("CN = coordinator/coord-1", text)
        self.assertIn("CA:FALSE", text)
        self.assertIn("Digital Signature, Key Agreement", text)
        self.assertIn("TLS Web Server Authentication, TLS Web Client Authentication", text)
        self.assertIn("X509v3 Authority Key Identifier", text)
        # the key is the certificate's
        _, cert_pub, _ = openssl_out("x509", "-in", leaf["cert"], "-noout", "-pubkey")
        _, key_pub, _ = openssl_out("pkey", "-in", leaf["key"], "-pubout")
        self.assertEqual(cert_pub, key_pub)

    def test_init_refuses_overwrite_unless_forced(self):
        self.init_ca()
        with open(self.path("ca", "ca.pem")) as f:
            first = f.read()
        leaf = self.issue("agent", "a1")
        code, out, err = self.ec("certs", "init", "--dir", self.path("ca"), ok=False)
        self.assertNotEqual(code, 0)
        self.assertEqual(out, "")
        self.assertIn("already exists", err)
        self.assertIn("--force", err)
        with open(self.path("ca", "ca.pem")) as f:
            self.assertEqual(f.read(), first)
        # --force makes a new CA; the old leaf no longer verifies against it
        self.init_ca("--force", "--days", "10")
        with open(self.path("ca", "ca.pem")) as f:
            self.assertNotEqual(f.read(), first)
        self.assertEqual(mode(self.path("ca", "ca.key")), 0o600)
        code, _, _ = openssl_out("verify", "-CAfile", self.path("ca", "ca.pem"), leaf["cert"])
        self.assertNotEqual(code, 0)
        self.assertEqual(sorted(os.listdir(self.path("ca"))),
                         ["agent-a1.key", "agent-a1.pem", "ca.key", "ca.pem"])

    def test_issue_out_prefix_and_overwrite(self):
        self.init_ca()
        prefix = self.path("elsewhere")
        leaf = self.issue("inference", "gpu.0", "--out", prefix)
        self.assertEqual(leaf["cert"], prefix + ".pem")
        self.assertEqual(leaf["key"], prefix + ".key")
        self.assertEqual(mode(prefix + ".key"), 0o600)
        with open(prefix + ".key") as f:
            key = f.read()
        code, _, err = self.ec("certs", "issue", "--dir", self.path("ca"), "--role", "inference",
                               "--id", "gpu.0", "--out", prefix, ok=False)
        self.assertNotEqual(code, 0)
        self.assertIn("already exists", err)
        with open(prefix + ".key") as f:
            self.assertEqual(f.read(), key)
        self.issue("inference", "gpu.0", "--out", prefix, "--force")
        with open(prefix + ".key") as f:
            self.assertNotEqual(f.read(), key)
        self.assertEqual(mode(prefix + ".key"), 0o600)

    def test_issue_without_ca(self):
        code, _, err = self.ec("certs", "issue", "--dir", self.path("none"), "--role", "agent",
                               "--id", "a", ok=False)
        self.assertNotEqual(code, 0)
        self.assertIn("certs init", err)

    def test_bad_input_is_a_usage_error_naming_the_option(self):
        self.init_ca("--days", "100")
        base = ["certs", "issue", "--dir", self.path("ca"), "--role", "agent", "--id", "a1"]
        cases = [
            (["--role", "wizard"], "--role", '"wizard"'),
            (["--id", "a/b"], "--id", '"a/b"'),
            (["--id", ".."], "--id", '".."'),
            (["--ip", "999.1.1.1"], "--ip", '"999.1.1.1"'),
            (["--ip", "localhost"], "--ip", '"localhost"'),
            (["--dns", "bad_host"], "--dns", '"bad_host"'),
            (["--dns", "10.0.0.1"], "--dns", '"10.0.0.1"'),
            (["--days", "0"], "--days", '"0"'),
            (["--days", "3651"], "--days", '"3651"'),
            (["--days", "ten"], "--days", '"ten"'),
            (["--days", "101"], "--days", "after the CA expires"),
        ]
        for extra, option, detail in cases:
            with self.subTest(extra=extra):
                code, out, err = self.ec(*(base + extra), ok=False)
                self.assertEqual(code, 64, err)
                self.assertEqual(out, "")
                self.assertIn(option, err)
                self.assertIn(detail, err)
        for args, option in [(["certs", "issue", "--dir", self.path("ca"), "--id", "x"], "--role"),
                             (["certs", "issue", "--dir", self.path("ca"), "--role", "agent"],
                              "--id"),
                             (["certs", "issue", "--role", "agent", "--id", "x"], "--dir"),
                             (["certs", "init"], "--dir"),
                             (["certs", "init", "--dir", self.path("x"), "--days", "-1"],
                              "--days"),
                             (["certs", "issue", "--nope"], "--nope"),
                             (["certs", "frobnicate"], "frobnicate"),
                             (["keygen"], "--out")]:
            with self.subTest(args=args):
                code, _, err = self.ec(*args, ok=False)
                self.assertEqual(code, 64, err)
                self.assertIn(option, err)
        # nothing but the CA was written
        self.assertEqual(sorted(os.listdir(self.path("ca"))), ["ca.key", "ca.pem"])

    def test_help(self):
        for args in (["certs", "--help"], ["certs", "init", "--help"],
                     ["certs", "issue", "--help"], ["keygen", "--help"]):
            with self.subTest(args=args):
                code, out, err = self.ec(*args, ok=False)
                self.assertEqual(code, 0, err)
                self.assertTrue(out.startswith("usage: edgecoder"), out)
        code, out, _ = self.ec("--help", ok=False)
        self.assertIn("certs", out)
        self.assertIn("keygen", out)


class TlsTest(Base):
    """Two leaves of one CA authenticate each other in a real TLS handshake."""

    def setUp(self):
        super().setUp()
        self.ca = self.init_ca()["cert"]
        self.server = self.issue("coordinator", "c1", "--dns", "localhost", "--ip", "127.0.0.1")
        self.client = self.issue("agent", "a1")

    def serve_once(self, ctx):
        """Accepts one connection in a thread; returns (port, result dict, thread)."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        sock.settimeout(10)
        result = {}

        def run():
            try:
                conn, _ = sock.accept()
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    result["peer"] = tls.getpeercert()
                    result["got"] = tls.recv(4)
                    tls.sendall(b"pong")
            except (OSError, ssl.SSLError) as e:
                result["error"] = e
            finally:
                sock.close()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return sock.getsockname()[1], result, t

    def server_ctx(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server["cert"], self.server["key"])
        ctx.load_verify_locations(self.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        return ctx

    def client_ctx(self, with_cert=True):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.ca)
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        if with_cert:
            ctx.load_cert_chain(self.client["cert"], self.client["key"])
        return ctx

    def test_mutual_tls_python(self):
        for host in ("localhost", "127.0.0.1"):  # the DNS and the IP SAN
            port, result, t = self.serve_once(self.server_ctx())
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with self.client_ctx().wrap_socket(raw, server_hostname=host) as tls:
                    server_sans = tls.getpeercert()["subjectAltName"]
                    tls.sendall(b"ping")
                    self.assertEqual(tls.recv(4), b"pong")
            t.join(10)
            self.assertNotIn("error", result)
            self.assertEqual(result["got"], b"ping")
            self.assertIn(("URI", "spiffe://edgecoder/agent/a1"), result["peer"]["subjectAltName"])
            self.assertIn(("URI", "spiffe://edgecoder/coordinator/c1"), server_sans)

    def test_client_without_certificate_refused(self):
        port, result, t = self.serve_once(self.server_ctx())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with self.assertRaises((ssl.SSLError, ConnectionError)):
                with self.client_ctx(with_cert=False).wrap_socket(
                        raw, server_hostname="localhost") as tls:
                    tls.sendall(b"ping")
                    if tls.recv(4) == b"":
                        raise ConnectionError("closed")
        t.join(10)
        self.assertIn("error", result)

    def test_mutual_tls_openssl_cli(self):
        port = harness.free_port()
        server = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-cert", self.server["cert"],
             "-key", self.server["key"], "-CAfile", self.ca, "-Verify", "1",
             "-verify_return_error", "-x509_strict", "-naccept", "1"],
            # stdin stays open: s_server ends the connection when its stdin reaches EOF
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            # Not harness.wait_port: its probe would be the one connection -naccept 1 serves.
            lines = []
            for line in server.stdout:
                lines.append(line)
                if line.strip() == b"ACCEPT":
                    break
            client = subprocess.run(
                ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", self.ca,
                 "-cert", self.client["cert"], "-key", self.client["key"], "-verify_return_error",
                 "-verify_hostname", "localhost", "-x509_strict"],
                input=b"ping\n", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
            rest, _ = server.communicate(timeout=20)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        client_out = client.stdout.decode("utf-8", "replace")
        server_out = b"".join(lines + [rest]).decode("utf-8", "replace")
        self.assertEqual(client.returncode, 0, client_out + server_out)
        self.assertIn("subject=CN = coordinator/c1", client_out)
        self.assertIn("Verify return code: 0 (ok)", client_out)
        # the server asked for the agent's certificate, verified it, then read the data
        self.assertIn("depth=0 CN = agent/a1\nverify return:1", server_out)
        self.assertIn("subject=CN = agent/a1", server_out)
        self.assertIn("\nping\n", server_out)


class KeygenTest(Base):
    def test_ed25519_pair_signs_with_openssl(self):
        prefix = self.path("coord")
        out = self.ec("keygen", "--out", prefix)
        self.assertEqual(out["alg"], "ed25519")
        self.assertEqual(out["key"], prefix + ".key")
        self.assertEqual(out["pub"], prefix + ".pub")
        self.assertEqual(mode(prefix + ".key"), 0o600)
        with open(prefix + ".key") as f:
            self.assertTrue(f.read().startswith("-----BEGIN PRIVATE KEY-----"))
        with open(prefix + ".pub") as f:
            self.assertTrue(f.read().startswith("-----BEGIN PUBLIC KEY-----"))
        # publicKey is the raw key: the last 32 bytes of the SPKI DER
        der = subprocess.run(["openssl", "pkey", "-pubin", "-in", prefix + ".pub", "-outform",
                              "DER"], check=True, stdout=subprocess.PIPE).stdout
        self.assertEqual(base64.b64decode(out["publicKey"], validate=True), der[-32:])

        msg = self.path("msg")
        sig = self.path("sig")
        with open(msg, "wb") as f:
            f.write(b"blacklist record 42")
        subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", prefix + ".key", "-in",
                        msg, "-out", sig], check=True, stderr=subprocess.PIPE)
        with open(sig, "rb") as f:
            self.assertEqual(len(f.read()), 64)
        code, verdict, err = openssl_out("pkeyutl", "-verify", "-rawin", "-pubin", "-inkey",
                                         prefix + ".pub", "-in", msg, "-sigfile", sig)
        self.assertEqual(code, 0, err)
        self.assertIn("Signature Verified Successfully", verdict)
        with open(msg, "wb") as f:
            f.write(b"blacklist record 43")
        code, _, _ = openssl_out("pkeyutl", "-verify", "-rawin", "-pubin", "-inkey",
                                 prefix + ".pub", "-in", msg, "-sigfile", sig)
        self.assertNotEqual(code, 0)

    def test_refuses_overwrite(self):
        prefix = self.path("k")
        self.ec("keygen", "--out", prefix)
        with open(prefix + ".key") as f:
            key = f.read()
        code, out, err = self.ec("keygen", "--out", prefix, ok=False)
        self.assertNotEqual(code, 0)
        self.assertEqual(out, "")
        self.assertIn("already exists", err)
        with open(prefix + ".key") as f:
            self.assertEqual(f.read(), key)
        # an existing .pub alone is enough to refuse, and no .key is left behind
        other = self.path("lonely")
        with open(other + ".pub", "w") as f:
            f.write("x")
        code, _, _ = self.ec("keygen", "--out", other, ok=False)
        self.assertNotEqual(code, 0)
        self.assertFalse(os.path.exists(other + ".key"))

    def test_x25519_pairs_agree(self):
        a = self.ec("keygen", "--out", self.path("a"), "--x25519")
        b = self.ec("keygen", "--out", self.path("b"), "--x25519")
        self.assertEqual(a["alg"], "x25519")
        self.assertEqual(mode(a["key"]), 0o600)
        code, text, _ = openssl_out("pkey", "-in", a["key"], "-noout", "-text")
        self.assertEqual(code, 0)
        self.assertIn("X25519 Private-Key", text)
        secrets = []
        for mine, theirs in ((a, b), (b, a)):
            p = subprocess.run(["openssl", "pkeyutl", "-derive", "-inkey", mine["key"], "-peerkey",
                                theirs["pub"]], check=True, stdout=subprocess.PIPE)
            secrets.append(p.stdout)
        self.assertEqual(len(secrets[0]), 32)
        self.assertEqual(secrets[0], secrets[1])
