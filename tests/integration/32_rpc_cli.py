"""`edgecoder rpc`, the grpcurl-style debugger, against a real `edgecoder mesh-demo` over mTLS:
list and describe through server reflection, calls with JSON in and out built from the reflected
descriptors alone (unary, server-streaming, health), and the errors a person sees: a refused
role, malformed JSON, an unknown method, usage mistakes."""

import json
import os
import subprocess
import unittest
from concurrent import futures

import grpc

import harness


class V1alphaProxy(grpc.GenericRpcHandler):
    """A plaintext server with only grpc.reflection.v1alpha (v1 is UNIMPLEMENTED, as on older
    servers) and Demo.Echo, forwarding raw bytes to the mesh-demo server over mTLS."""

    PATHS = ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
             "/edgecoder.v1.Demo/Echo")

    def __init__(self, channel):
        self.channel = channel

    def service(self, details):
        if details.method == self.PATHS[0]:
            upstream = self.channel.stream_stream(details.method)
            return grpc.stream_stream_rpc_method_handler(lambda reqs, ctx: upstream(reqs))
        if details.method == self.PATHS[1]:
            upstream = self.channel.unary_unary(details.method)
            return grpc.unary_unary_rpc_method_handler(lambda req, ctx: upstream(req))
        return None


ECHO_REQUEST = """edgecoder.v1.EchoRequest is a message:
message EchoRequest {
  string text = 1;
  oneof delay_present {
    uint32 delay_ms = 2;
  }
  .edgecoder.v1.ErrorReply fail = 3;
}
"""

DEMO = """edgecoder.v1.Demo is a service:
service Demo {
  rpc Echo(.edgecoder.v1.EchoRequest) returns (.edgecoder.v1.EchoReply);
  rpc Count(.edgecoder.v1.CountRequest) returns (stream .edgecoder.v1.CountReply);
}
"""


class RpcCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = harness.DevCerts()
        server = cls.certs.issue("server", role="coordinator", ident="server-1")
        cls.coord = cls.certs.issue("coord", role="coordinator", ident="coord-a")
        cls.control = cls.certs.issue("cp", role="control-plane", ident="cp-1")
        cls.portal = cls.certs.issue("portal", role="portal", ident="portal-1")
        cls.port = harness.free_port()
        cls.addr = "127.0.0.1:%d" % cls.port
        cls.server = harness.Proc(["mesh-demo"], port=cls.port,
                          env={"EDGECODER_TLS_CA": cls.certs.ca, "EDGECODER_TLS_CERT": server[0],
                               "EDGECODER_TLS_KEY": server[1], "MESH_DEMO_PORT": str(cls.port)})

    @classmethod
    def tearDownClass(cls):
        # A clean exit with no ASan/LSan/UBSan report from the server after all of it.
        assert cls.server.stop() == 0, cls.server.output()[-4000:]

    def rpc(self, *args, cert=None, env=None, expect=0):
        """Runs `edgecoder rpc ADDR args...` with TLS from the environment (a coordinator
        certificate unless cert says otherwise); returns (stdout, stderr)."""
        cert = self.coord if cert is None else cert
        full_env = {"EDGECODER_TLS_CA": self.certs.ca}
        if cert:
            full_env["EDGECODER_TLS_CERT"], full_env["EDGECODER_TLS_KEY"] = cert
        full_env.update(env or {})
        code, out, err = harness.run(["rpc", self.addr] + list(args), env=full_env)
        self.assertNotIn("Sanitizer", err)
        self.assertNotIn("runtime error:", err)
        self.assertEqual(code, expect, "exit %d for %s:\n%s%s" % (code, args, out, err))
        return out, err

    def call(self, method, body, *opts, cert=None):
        out, _ = self.rpc("call", method, body, *opts, cert=cert)
        return [json.loads(line) for line in out.splitlines()]

    def error_of(self, *args, cert=None, expect=1):
        out, err = self.rpc(*args, cert=cert, expect=expect)
        lines = [l for l in err.splitlines() if l.startswith("ERROR: ")]
        self.assertEqual(len(lines), 1, err)
        return lines[0]

    # --- list and describe ---------------------------------------------------------------

    def test_list_services_and_methods(self):
        out, _ = self.rpc("list")
        self.assertEqual(out.splitlines(), ["edgecoder.v1.Demo", "grpc.health.v1.Health",
                                            "grpc.reflection.v1.ServerReflection",
                                            "grpc.reflection.v1alpha.ServerReflection"])
        out, _ = self.rpc("list", "edgecoder.v1.Demo")
        self.assertEqual(out.splitlines(), ["edgecoder.v1.Demo.Echo", "edgecoder.v1.Demo.Count"])
        out, _ = self.rpc("list", "grpc.health.v1.Health")
        self.assertEqual(out.splitlines(), ["grpc.health.v1.Health.Check",
                                            "grpc.health.v1.Health.Watch"])
        # Reflection is open to any verified caller, whatever its role.
        out, _ = self.rpc("list", cert=self.portal)
        self.assertIn("edgecoder.v1.Demo", out.splitlines())

    def test_tls_files_from_flags(self):
        code, out, err = harness.run(["rpc", "--cacert", self.certs.ca, "--cert", self.coord[0],
                                      "--key", self.coord[1], self.addr, "list"], env={})
        self.assertEqual(code, 0, err)
        self.assertIn("grpc.health.v1.Health", out.splitlines())

    def test_describe(self):
        self.assertEqual(self.rpc("describe", "edgecoder.v1.Demo")[0], DEMO)
        self.assertEqual(self.rpc("describe", ".edgecoder.v1.EchoRequest")[0], ECHO_REQUEST)
        out, _ = self.rpc("describe", "grpc.health.v1.HealthCheckResponse")
        self.assertIn("  .grpc.health.v1.HealthCheckResponse.ServingStatus status = 1;\n", out)
        self.assertIn("  enum ServingStatus {\n    UNKNOWN = 0;\n    SERVING = 1;\n", out)
        out, _ = self.rpc("describe", "grpc.health.v1.HealthCheckResponse.ServingStatus")
        self.assertTrue(out.startswith("grpc.health.v1.HealthCheckResponse.ServingStatus is an "
                                       "enum:\nenum ServingStatus {\n"), out)
        out, _ = self.rpc("describe", "edgecoder.v1.Demo.Count")
        self.assertEqual(out, "edgecoder.v1.Demo.Count is a method:\nrpc Count("
                              ".edgecoder.v1.CountRequest) returns (stream "
                              ".edgecoder.v1.CountReply);\n")
        out, _ = self.rpc("describe", "edgecoder.v1.EchoReply.deadline_ms")
        self.assertEqual(out, "edgecoder.v1.EchoReply.deadline_ms is a field:\n"
                              "int64 deadline_ms = 6;\n")
        # The bidi reflection method shows both streaming flags.
        out, _ = self.rpc("describe", "grpc.reflection.v1.ServerReflection")
        self.assertIn("rpc ServerReflectionInfo(stream .grpc.reflection.v1.ServerReflectionRequest)"
                      " returns (stream .grpc.reflection.v1.ServerReflectionResponse);", out)
        # Without a symbol: every service.
        out, _ = self.rpc("describe")
        self.assertIn(DEMO, out)
        self.assertIn("grpc.health.v1.Health is a service:", out)
        line = self.error_of("describe", "edgecoder.v1.Nope")
        self.assertEqual(line, 'ERROR: NOT_FOUND: symbol "edgecoder.v1.Nope" not found '
                               '(code not_found)')

    # --- calls ---------------------------------------------------------------------------

    def test_call_echo_reports_caller(self):
        replies = self.call("/edgecoder.v1.Demo/Echo", '{"text":"hello"}',
                            "-H", "X-Request-Id: req-32", "--timeout", "5000")
        self.assertEqual(len(replies), 1)
        r = replies[0]
        self.assertEqual(r["text"], "hello")
        self.assertEqual(r["peerSpiffeId"], "spiffe://edgecoder/coordinator/coord-a")
        self.assertEqual(r["peerRole"], "coordinator")
        self.assertEqual(r["peerId"], "coord-a")
        self.assertEqual(r["requestId"], "req-32")
        self.assertTrue(0 < int(r["deadlineMs"]) <= 5100, r)  # the deadline went with the call
        # The other spellings of the method, and another caller.
        for method in ("edgecoder.v1.Demo/Echo", "edgecoder.v1.Demo.Echo"):
            r = self.call(method, '{"text":"cp"}', cert=self.control)[0]
            self.assertEqual((r["text"], r["peerSpiffeId"]),
                             ("cp", "spiffe://edgecoder/control-plane/cp-1"))
        # Defaults appear on request; a nested message and a oneof member go through.
        r = self.call("/edgecoder.v1.Demo/Echo", '{"delayMs":1}', "--emit-defaults")[0]
        self.assertEqual(r["text"], "")
        self.assertEqual(r["requestId"], "")

    def test_call_from_stdin(self):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EDGECODER_TLS_CA": self.certs.ca,
               "EDGECODER_TLS_CERT": self.coord[0], "EDGECODER_TLS_KEY": self.coord[1]}
        p = subprocess.run([harness.BINARY, "rpc", self.addr, "call", "/edgecoder.v1.Demo/Echo",
                            "-"], input=b'{"text": "from stdin"}', env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["text"], "from stdin")

    def test_call_count_streams_in_order(self):
        replies = self.call("/edgecoder.v1.Demo/Count", '{"n":200}')
        self.assertEqual([r["i"] for r in replies], list(range(1, 201)))
        self.assertEqual(self.call("/edgecoder.v1.Demo/Count", '{"n":5,"intervalMs":10}'),
                         [{"i": i} for i in range(1, 6)])
        self.assertEqual(self.call("edgecoder.v1.Demo.Count", "{}"), [])
        # A deadline in the middle of the stream: what came is printed, in order, then the error.
        out, err = self.rpc("call", "/edgecoder.v1.Demo/Count", '{"n":1000,"intervalMs":50}',
                            "--timeout", "600", expect=1)
        got = [json.loads(l)["i"] for l in out.splitlines()]
        self.assertTrue(0 < len(got) < 1000, got)
        self.assertEqual(got, list(range(1, len(got) + 1)))
        self.assertIn("ERROR: DEADLINE_EXCEEDED: ", err)

    def test_call_health(self):
        self.assertEqual(self.call("/grpc.health.v1.Health/Check", "{}"), [{"status": "SERVING"}])
        self.assertEqual(self.call("grpc.health.v1.Health/Check", '{"service":"edgecoder.v1.Demo"}',
                                   cert=self.portal), [{"status": "SERVING"}])
        line = self.error_of("call", "/grpc.health.v1.Health/Check", '{"service":"no.Such"}')
        self.assertTrue(line.startswith("ERROR: NOT_FOUND: "), line)
        self.assertTrue(line.endswith("(code service_unknown)"), line)

    # --- errors --------------------------------------------------------------------------

    def test_wrong_role_is_permission_denied(self):
        line = self.error_of("call", "/edgecoder.v1.Demo/Echo", '{"text":"hi"}', cert=self.portal)
        self.assertEqual(line, 'ERROR: PERMISSION_DENIED: role "portal" may not call '
                               '/edgecoder.v1.Demo/Echo (code role_not_allowed)')
        out, err = self.rpc("call", "/edgecoder.v1.Demo/Count", '{"n":3}', cert=self.portal,
                            expect=1)
        self.assertEqual(out, "")
        self.assertIn("ERROR: PERMISSION_DENIED: ", err)

    def test_server_errors_and_deadline(self):
        line = self.error_of("call", "/edgecoder.v1.Demo/Echo", '{"fail":{"error":"conflict"}}')
        self.assertTrue(line.startswith("ERROR: FAILED_PRECONDITION: "), line)
        self.assertTrue(line.endswith("(code conflict)"), line)
        line = self.error_of("call", "/edgecoder.v1.Demo/Echo", '{"delayMs":3000}',
                             "--timeout", "300")
        self.assertTrue(line.startswith("ERROR: DEADLINE_EXCEEDED: "), line)

    def test_malformed_json(self):
        line = self.error_of("call", "/edgecoder.v1.Demo/Echo", '{"text":')
        self.assertTrue(line.startswith("ERROR: INVALID_ARGUMENT: bad request for "
                                        "edgecoder.v1.EchoRequest: malformed JSON"), line)
        line = self.error_of("call", "/edgecoder.v1.Demo/Echo", '{"text":5}')
        self.assertIn("text: expected a string", line)
        line = self.error_of("call", "/edgecoder.v1.Demo/Echo", '{"txt":"x"}')
        self.assertIn('unknown field "txt"', line)
        line = self.error_of("call", "/edgecoder.v1.Demo/Count", '{"n":-1}')
        self.assertIn("n: ", line)

    def test_unknown_method(self):
        line = self.error_of("call", "/edgecoder.v1.Demo/Nope", "{}")
        self.assertEqual(line, 'ERROR: NOT_FOUND: service edgecoder.v1.Demo has no method "Nope" '
                               '(it has: Echo, Count) (code not_found)')
        line = self.error_of("call", "/edgecoder.v1.Nope/Echo", "{}")
        self.assertEqual(line, 'ERROR: NOT_FOUND: symbol "edgecoder.v1.Nope" not found '
                               '(code not_found)')
        line = self.error_of("call", "/edgecoder.v1.EchoRequest/Echo", "{}")
        self.assertIn('"edgecoder.v1.EchoRequest" is not a service', line)
        line = self.error_of("call", "Echo", "{}")
        self.assertIn('cannot read "Echo" as a method', line)

    def test_usage_errors(self):
        a = self.addr
        for args in ([], ["list"], [a], [a, "frob"], [a, "call"], [a, "call", "/a.B/C", "{}", "x"],
                     [a, "list", "--timeout", "0"], [a, "list", "-H", "novalue"],
                     [a, "list", "--bogus"], [a, "list", "--cacert"]):
            code, _, err = harness.run(["rpc"] + args, env={"EDGECODER_TLS_CA": self.certs.ca})
            self.assertEqual(code, 64, (args, err))
            self.assertIn("usage: edgecoder rpc", err)
        code, _, err = harness.run(["rpc", self.addr, "list"], env={})
        self.assertEqual(code, 64)
        self.assertIn("no CA certificate", err)
        code, _, err = harness.run(["rpc", self.addr, "list"], env={
            "EDGECODER_TLS_CA": self.certs.ca, "EDGECODER_TLS_CERT": self.coord[0]})
        self.assertEqual(code, 64)
        self.assertIn("--cert and --key go together", err)
        code, out, _ = harness.run(["rpc", "--help"])
        self.assertEqual(code, 0)
        self.assertIn("usage: edgecoder rpc", out)

    def test_v1alpha_fallback_over_plaintext(self):
        def read(path):
            with open(path, "rb") as f:
                return f.read()
        creds = grpc.ssl_channel_credentials(read(self.certs.ca), read(self.coord[1]),
                                             read(self.coord[0]))
        channel = grpc.secure_channel(self.addr, creds)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((V1alphaProxy(channel),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            proxy = "127.0.0.1:%d" % port
            code, out, err = harness.run(["rpc", "--plaintext", proxy, "list"])
            self.assertEqual(code, 0, err)
            self.assertIn("edgecoder.v1.Demo", out.splitlines())
            code, out, err = harness.run(["rpc", proxy, "--plaintext", "call",
                                          "/edgecoder.v1.Demo/Echo", '{"text":"via alpha"}'])
            self.assertEqual(code, 0, err)
            r = json.loads(out)
            self.assertEqual((r["text"], r["peerId"]), ("via alpha", "coord-a"))
            code, out, err = harness.run(["rpc", proxy, "--plaintext", "call",
                                          "/edgecoder.v1.Demo/Count", '{"n":1}'])
            self.assertEqual(code, 1)
            self.assertIn("ERROR: UNIMPLEMENTED: ", err)
            self.assertNotIn("Sanitizer", err)
        finally:
            server.stop(None)
            channel.close()

    def test_no_client_certificate_is_refused(self):
        line = self.error_of("call", "/edgecoder.v1.Demo/Echo", "{}", cert=False)
        self.assertTrue(line.startswith("ERROR: UNAVAILABLE: "), line)
        self.assertIn("handshake", line.lower())


if __name__ == "__main__":
    unittest.main()
