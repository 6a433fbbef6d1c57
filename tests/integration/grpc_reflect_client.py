#!/usr/bin/python3
"""A grpcurl-style client built only from Debian's python3-grpcio and python3-protobuf: it knows
nothing of our protos and learns every message through server reflection. The integration tests
use it as a third-party client; people can use it too:

    /usr/bin/python3 tests/integration/grpc_reflect_client.py 127.0.0.1:4499 \\
        --cacert ca.pem --cert client.pem --key client.key list
    ... describe edgecoder.v1.Demo
    ... call edgecoder.v1.Demo.Echo '{"text": "hi"}'

The reflection messages themselves come from the system `protoc --python_out` (not
python3-grpc-tools' old protoc), generated into a temp dir and loaded through importlib: their
`grpc/...` module path would clash with the grpc package."""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

GRPC_PROTO_DIR = "/usr/share/grpc-proto"
VERSIONS = ("v1", "v1alpha")
_modules = None


def reflection_modules():
    """{"v1": module, "v1alpha": module} with ServerReflectionRequest/Response, generated once."""
    global _modules
    if _modules is None:
        out = tempfile.mkdtemp(prefix="ec-reflect-py-")
        protos = ["grpc/reflection/%s/reflection.proto" % v for v in VERSIONS]
        subprocess.run(["/usr/bin/protoc", "-I" + GRPC_PROTO_DIR, "--python_out=" + out] + protos,
                       check=True)
        _modules = {}
        for v in VERSIONS:
            path = os.path.join(out, "grpc", "reflection", v, "reflection_pb2.py")
            spec = importlib.util.spec_from_file_location("ec_reflection_%s_pb2" % v, path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            _modules[v] = mod
    return _modules


class ReflectionError(LookupError):
    def __init__(self, code, message):
        super().__init__("%d: %s" % (code, message))
        self.code = code


class ReflectionClient:
    def __init__(self, channel, version="v1", timeout=10.0):
        self.pb = reflection_modules()[version]
        self.timeout = timeout
        self.rpc = channel.stream_stream(
            "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % version,
            request_serializer=self.pb.ServerReflectionRequest.SerializeToString,
            response_deserializer=self.pb.ServerReflectionResponse.FromString)

    def ask_all(self, requests):
        """Several questions on one bidi stream; one answer each, in order."""
        reqs = [self.pb.ServerReflectionRequest(host="", **kw) for kw in requests]
        return list(self.rpc(iter(reqs), timeout=self.timeout))

    def ask(self, **question):
        return self.ask_all([question])[0]

    def list_services(self):
        return [s.name for s in self.ask(list_services="*").list_services_response.service]

    def files(self, **question):
        """The serialized FileDescriptorProtos answering file_by_filename or
        file_containing_symbol (the file and what it imports)."""
        r = self.ask(**question)
        if r.HasField("error_response"):
            raise ReflectionError(r.error_response.error_code, r.error_response.error_message)
        return list(r.file_descriptor_response.file_descriptor_proto)

    def pool_for(self, symbol):
        """A fresh DescriptorPool holding the file that defines symbol and its imports."""
        pool = descriptor_pool.DescriptorPool()
        known = {}
        for raw in self.files(file_containing_symbol=symbol):
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            known[fd.name] = (fd, raw)
        added = set()

        def add(name):
            if name in added:
                return
            if name not in known:
                raw = self.files(file_by_filename=name)[0]
                known[name] = (descriptor_pb2.FileDescriptorProto.FromString(raw), raw)
            fd, raw = known[name]
            for dep in fd.dependency:
                add(dep)
            pool.AddSerializedFile(raw)
            added.add(name)

        for name in list(known):
            add(name)
        return pool


def method_stub(channel, pool, full_method):
    """(callable, request class, response class, descriptor) for "pkg.Service.Method"."""
    service, method = full_method.rsplit(".", 1)
    md = pool.FindServiceByName(service).FindMethodByName(method)
    factory = message_factory.MessageFactory(pool)
    req_cls = factory.GetPrototype(md.input_type)
    resp_cls = factory.GetPrototype(md.output_type)
    path = "/%s/%s" % (service, method)
    if md.client_streaming:
        raise ValueError("client streaming is not supported: " + full_method)
    make = channel.unary_stream if md.server_streaming else channel.unary_unary
    return (make(path, request_serializer=req_cls.SerializeToString,
                 response_deserializer=resp_cls.FromString), req_cls, resp_cls, md)


def mtls_channel(target, cacert, cert=None, key=None):
    def read(p):
        with open(p, "rb") as f:
            return f.read()
    creds = grpc.ssl_channel_credentials(read(cacert), read(key) if key else None,
                                         read(cert) if cert else None)
    return grpc.secure_channel(target, creds)


def main(argv):
    ap = argparse.ArgumentParser(description="grpcurl-style client driven by server reflection")
    ap.add_argument("target")
    ap.add_argument("--cacert", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--alpha", action="store_true", help="use grpc.reflection.v1alpha")
    ap.add_argument("command", choices=["list", "describe", "call"])
    ap.add_argument("args", nargs="*")
    a = ap.parse_args(argv)
    with mtls_channel(a.target, a.cacert, a.cert, a.key) as channel:
        rc = ReflectionClient(channel, "v1alpha" if a.alpha else "v1")
        if a.command == "list":
            print("\n".join(sorted(rc.list_services())))
        elif a.command == "describe":
            pool = rc.pool_for(a.args[0])
            try:
                d = pool.FindServiceByName(a.args[0])
                for m in d.methods:
                    print("rpc %s(%s) returns (%s%s)" % (m.name, m.input_type.full_name,
                          "stream " if m.server_streaming else "", m.output_type.full_name))
            except KeyError:
                d = pool.FindMessageTypeByName(a.args[0])
                for f in d.fields:
                    print("%s = %d;" % (f.name, f.number))
        else:
            pool = rc.pool_for(a.args[0].rsplit(".", 1)[0])
            call, req_cls, _, md = method_stub(channel, pool, a.args[0])
            req = json_format.Parse(a.args[1] if len(a.args) > 1 else "{}", req_cls())
            replies = call(req, timeout=10) if md.server_streaming else [call(req, timeout=10)]
            for r in replies:
                print(json_format.MessageToJson(r, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
