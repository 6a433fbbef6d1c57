"""A third-party client drives the mesh server: Debian's python3-grpcio + python3-protobuf with no
generated code for our protos. It lists services and fetches descriptors through reflection (v1 and
v1alpha), builds message classes from them, calls Demo.Echo (unary) and Demo.Count (server
streaming) with the generic API, and checks health."""

import os
import sys
import unittest

import grpc

import harness

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc_reflect_client as grc  # noqa: E402

EXPECTED_SERVICES = {
    "edgecoder.v1.Demo",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}



class MeshThirdParty(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        grc.reflection_modules()  # runs protoc before any gRPC channel exists
        cls.certs = harness.DevCerts()
        server = cls.certs.issue("server", role="coordinator", ident="server-1")
        cls.coord = cls.certs.issue("coord", role="coordinator", ident="py-client")
        cls.portal = cls.certs.issue("portal", role="portal", ident="py-portal")
        cls.port = harness.free_port()
        cls.server = harness.Proc(["mesh-demo"], port=cls.port, env={
            "EDGECODER_TLS_CA": cls.certs.ca, "EDGECODER_TLS_CERT": server[0],
            "EDGECODER_TLS_KEY": server[1], "MESH_DEMO_PORT": str(cls.port)})
        cls.target = "127.0.0.1:%d" % cls.port
        cls.channel = grc.mtls_channel(cls.target, cls.certs.ca, *cls.coord)
        cls.demo_pool = grc.ReflectionClient(cls.channel).pool_for("edgecoder.v1.Demo")

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        try:
            assert cls.server.stop() == 0, cls.server.output()[-4000:]
        finally:
            if cls.server.proc.poll() is None:
                cls.server.proc.kill()

    def test_list_services_v1_and_v1alpha(self):
        for version in grc.VERSIONS:
            names = grc.ReflectionClient(self.channel, version).list_services()
            self.assertEqual(set(names), EXPECTED_SERVICES, version)

    def test_descriptors_by_symbol_and_file(self):
        for version in grc.VERSIONS:
            rc = grc.ReflectionClient(self.channel, version)
            pool = rc.pool_for("edgecoder.v1.Demo")
            demo = pool.FindServiceByName("edgecoder.v1.Demo")
            self.assertEqual([m.name for m in demo.methods], ["Echo", "Count"])
            self.assertTrue(demo.methods_by_name["Count"].server_streaming)
            echo_req = pool.FindMessageTypeByName("edgecoder.v1.EchoRequest")
            # demo.proto imports common.proto: the answer carried the dependency too.
            self.assertEqual(echo_req.fields_by_name["fail"].message_type.full_name,
                             "edgecoder.v1.ErrorReply")
            files = rc.files(file_by_filename="edgecoder/v1/demo.proto")
            self.assertGreaterEqual(len(files), 2)
            self.assertEqual(len(rc.files(file_containing_symbol="edgecoder.v1.Demo.Echo")),
                             len(files))
            self.assertEqual(len(rc.files(file_containing_symbol="edgecoder.v1.EchoReply")),
                             len(files))
            for question in ({"file_containing_symbol": "edgecoder.v1.Nope"},
                             {"file_by_filename": "nope.proto"}):
                with self.assertRaises(grc.ReflectionError) as ctx:
                    rc.files(**question)
                self.assertEqual(ctx.exception.code, 5)  # NOT_FOUND

    def test_extension_questions(self):
        rc = grc.ReflectionClient(self.channel)
        pb = grc.reflection_modules()["v1"]
        answers = rc.ask_all([
            {"all_extension_numbers_of_type": "edgecoder.v1.EchoRequest"},
            {"all_extension_numbers_of_type": "edgecoder.v1.Nope"},
            {"file_containing_extension": pb.ExtensionRequest(
                containing_type="edgecoder.v1.EchoRequest", extension_number=100)},
            {"list_services": ""},
        ])
        self.assertEqual(answers[0].all_extension_numbers_response.base_type_name,
                         "edgecoder.v1.EchoRequest")
        self.assertEqual(list(answers[0].all_extension_numbers_response.extension_number), [])
        self.assertEqual(answers[1].error_response.error_code, 5)
        self.assertEqual(answers[2].error_response.error_code, 5)
        self.assertEqual(len(answers[3].list_services_response.service), 4)
        self.assertEqual(answers[0].original_request.all_extension_numbers_of_type,
                         "edgecoder.v1.EchoRequest")

    def test_unary_from_reflected_descriptors(self):
        echo, req_cls, _, _ = grc.method_stub(self.channel, self.demo_pool,
                                              "edgecoder.v1.Demo.Echo")
        reply, call = echo.with_call(req_cls(text="from python"), timeout=10,
                                     metadata=[("x-request-id", "py-1")])
        self.assertEqual(reply.text, "from python")
        self.assertEqual(reply.peer_spiffe_id, "spiffe://edgecoder/coordinator/py-client")
        self.assertEqual(reply.peer_role, "coordinator")
        self.assertEqual(reply.request_id, "py-1")
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        # An error's stable code travels in the x-error-code trailer, the message in details.
        req = req_cls(text="x")
        req.fail.error = "not_found"
        with self.assertRaises(grpc.RpcError) as ctx:
            echo(req, timeout=10)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertIn(("x-error-code", "not_found"), ctx.exception.trailing_metadata())
        self.assertEqual(ctx.exception.details(), "failing as asked (not_found)")
        with self.assertRaises(grpc.RpcError) as ctx:
            echo(req_cls(text="slow", delay_ms=3000), timeout=0.3)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)

    def test_server_stream_from_reflected_descriptors(self):
        count, req_cls, _, md = grc.method_stub(self.channel, self.demo_pool,
                                                "edgecoder.v1.Demo.Count")
        self.assertTrue(md.server_streaming)
        self.assertEqual([r.i for r in count(req_cls(n=300), timeout=10)], list(range(1, 301)))
        self.assertEqual([r.i for r in count(req_cls(n=5, interval_ms=10), timeout=10)],
                         [1, 2, 3, 4, 5])

    def test_wrong_role_and_unknown_method(self):
        with grc.mtls_channel(self.target, self.certs.ca, *self.portal) as ch:
            echo, req_cls, _, _ = grc.method_stub(ch, self.demo_pool, "edgecoder.v1.Demo.Echo")
            with self.assertRaises(grpc.RpcError) as ctx:
                echo(req_cls(text="x"), timeout=10)
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
            self.assertIn(("x-error-code", "role_not_allowed"),
                          ctx.exception.trailing_metadata())
            # Reflection is open to any verified peer.
            self.assertIn("edgecoder.v1.Demo", grc.ReflectionClient(ch).list_services())
        nope = self.channel.unary_unary("/edgecoder.v1.Demo/Nope")
        with self.assertRaises(grpc.RpcError) as ctx:
            nope(b"", timeout=10)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_health_check(self):
        pool = grc.ReflectionClient(self.channel, "v1alpha").pool_for("grpc.health.v1.Health")
        check, req_cls, resp_cls, _ = grc.method_stub(self.channel, pool,
                                                      "grpc.health.v1.Health.Check")
        serving = resp_cls.DESCRIPTOR.enum_types_by_name["ServingStatus"].values_by_name[
            "SERVING"].number
        self.assertEqual(check(req_cls(service=""), timeout=10).status, serving)
        self.assertEqual(check(req_cls(service="edgecoder.v1.Demo"), timeout=10).status, serving)
        with self.assertRaises(grpc.RpcError) as ctx:
            check(req_cls(service="no.such.Service"), timeout=10)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.NOT_FOUND)
        watch, req_cls, _, _ = grc.method_stub(self.channel, pool, "grpc.health.v1.Health.Watch")
        stream = watch(req_cls(service=""), timeout=10)
        self.assertEqual(next(stream).status, serving)
        stream.cancel()  # the server's Watch ends when the caller goes


if __name__ == "__main__":
    unittest.main()
