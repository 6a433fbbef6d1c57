#!/usr/bin/python3
"""A stand-in for the portal's gRPC PortalInternal service, until the real portal exists.

It serves proto/edgecoder/v1/portal_internal.proto over mTLS (Debian's python3-grpcio; the message
classes come from the system `protoc --python_out`, generated into a temp dir at start), answers
from a table of enrolled nodes, and decides as the original portal's /internal/nodes/validate did:
node_not_enrolled, node_kind_mismatch, registration_token_invalid, then active = approved AND
verified with reason email_unverified | node_pending_coordinator_approval | ok.

    /usr/bin/python3 tests/fakes/portal_standin.py --port 0 --ca ca.pem --cert portal.pem \\
        --key portal.key --service-token TOKEN --nodes nodes.json [--mode ok|hang|unavailable]

nodes.json: {"nodes": [{"nodeId": "agent-1", "nodeKind": "agent", "registrationToken": "...",
  "ownerEmail": "a@example.com", "emailVerified": true, "nodeApproved": true,
  "grpcError": {"code": "INTERNAL", "errorCode": "x"}  (optional: fail calls about this node)}]}
Only sha256 of each token is kept. The service token may come from PORTAL_SERVICE_TOKEN instead.

Every call needs the x-portal-service-token metadata and a client certificate whose SPIFFE role is
coordinator or control-plane. --mode hang holds every call until the caller's deadline (a portal
that accepts connections and never answers); --mode unavailable fails calls with UNAVAILABLE. At
run time SIGUSR1 toggles hang and SIGUSR2 toggles unavailable. "Down" is simply not running it.

Stdout: one JSON line {"event":"listening","port":N} once serving, then one JSON line per call:
method, peer, requestId, nodeId, nodeKind, sourceIp, serviceToken ("ok"|"missing"|"wrong"),
code, allowed, reason. Tokens are never written."""

import argparse
import hashlib
import hmac
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
from cryptography import x509

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO = "edgecoder/v1/portal_internal.proto"
SERVICE = "edgecoder.v1.PortalInternal"
ALLOWED_ROLES = ("coordinator", "control-plane")
MAX_NODE_ID = 128
MAX_LOOKUP = 500

_out_lock = threading.Lock()


def emit(obj):
    with _out_lock:
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()


def load_messages():
    out = tempfile.mkdtemp(prefix="ec-portal-standin-")
    subprocess.run(["/usr/bin/protoc", "-I" + os.path.join(ROOT, "proto"), "--python_out=" + out,
                    PROTO], check=True)
    path = os.path.join(out, "edgecoder", "v1", "portal_internal_pb2.py")
    spec = importlib.util.spec_from_file_location("ec_portal_internal_pb2", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sha256(s):
    return hashlib.sha256(s.encode()).digest()


def peer_spiffe(context):
    """The caller's SPIFFE URI SAN, from its verified certificate ("" when none)."""
    pems = context.auth_context().get("x509_pem_cert") or []
    for pem in pems:
        cert = x509.load_pem_x509_certificate(pem)
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            continue
        for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith("spiffe://edgecoder/"):
                return uri
    return ""


class Abort(Exception):
    def __init__(self, code, error_code, details):
        super().__init__(details)
        self.code, self.error_code, self.details = code, error_code, details


class Portal:
    def __init__(self, pb, nodes, service_token, mode):
        self.pb = pb
        self.service_token = service_token.encode()
        self.mode = mode
        self.lock = threading.Lock()
        self.nodes = {}
        for i, n in enumerate(nodes):
            self.nodes[n["nodeId"]] = {
                "nodeId": n["nodeId"],
                "nodeKind": n.get("nodeKind", "agent"),
                "deviceId": n.get("deviceId", ""),
                "tokenHash": sha256(n.get("registrationToken", "")),
                "ownerEmail": n.get("ownerEmail", ""),
                "emailVerified": bool(n.get("emailVerified", False)),
                "nodeApproved": bool(n.get("nodeApproved", False)),
                "grpcError": n.get("grpcError"),
                "lastSeenMs": 0, "lastIp": "", "enrolledAtMs": 1700000000000 + i,
            }

    # --- the common part of every call ---------------------------------------------------------

    def handle(self, method, fn):
        def handler(request, context):
            md = dict(context.invocation_metadata())
            token = md.get("x-portal-service-token")
            log = {"event": "call", "method": method, "peer": peer_spiffe(context),
                   "requestId": md.get("x-request-id"),
                   "serviceToken": "missing" if token is None else
                   ("ok" if hmac.compare_digest(token.encode(), self.service_token) else "wrong")}
            for field in ("node_id", "node_kind", "source_ip"):
                if hasattr(request, field):
                    log[{"node_id": "nodeId", "node_kind": "nodeKind",
                         "source_ip": "sourceIp"}[field]] = getattr(request, field)
            try:
                reply = self.checked(fn, request, context, log)
                log["code"] = "OK"
                emit(log)
                return reply
            except Abort as a:
                log["code"] = a.code.name
                log["errorCode"] = a.error_code
                emit(log)
                context.set_trailing_metadata((("x-error-code", a.error_code),))
                context.abort(a.code, a.details)
        return handler

    def checked(self, fn, request, context, log):
        role = log["peer"].split("/")[3] if log["peer"].count("/") >= 4 else ""
        if role not in ALLOWED_ROLES:
            raise Abort(grpc.StatusCode.PERMISSION_DENIED, "forbidden",
                        "caller role %r may not call PortalInternal" % role)
        if log["serviceToken"] != "ok":
            raise Abort(grpc.StatusCode.UNAUTHENTICATED, "unauthorized",
                        "x-portal-service-token is %s" % log["serviceToken"])
        if self.mode == "unavailable":
            raise Abort(grpc.StatusCode.UNAVAILABLE, "unavailable", "the portal is unavailable")
        if self.mode == "hang":
            done = threading.Event()
            context.add_callback(done.set)
            remaining = context.time_remaining()
            done.wait(60 if remaining is None else min(60, max(0, remaining) + 1))
            raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED, "timeout", "hung as asked")
        return fn(request, log)

    # --- methods ---------------------------------------------------------------------------------

    def node_msg(self, n):
        return self.pb.PortalNode(
            node_id=n["nodeId"], node_kind=n["nodeKind"], device_id=n["deviceId"],
            owner_email=n["ownerEmail"], email_verified=n["emailVerified"],
            node_approved=n["nodeApproved"], active=n["emailVerified"] and n["nodeApproved"],
            last_seen_ms=n["lastSeenMs"], last_ip=n["lastIp"], enrolled_at_ms=n["enrolledAtMs"])

    def validate(self, req, log):
        if not req.node_id or len(req.node_id) > MAX_NODE_ID:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid_request", "node_id")
        if req.node_kind not in ("agent", "coordinator"):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid_request", "node_kind")
        reply = self.pb.ValidateNodeReply
        with self.lock:
            n = self.nodes.get(req.node_id)
            if n is None:
                r = reply(allowed=False, reason="node_not_enrolled")
            elif n["grpcError"]:
                e = n["grpcError"]
                raise Abort(grpc.StatusCode[e.get("code", "INTERNAL")],
                            e.get("errorCode", "internal_error"), "failing as configured")
            elif n["nodeKind"] != req.node_kind:
                r = reply(allowed=False, reason="node_kind_mismatch")
            elif not hmac.compare_digest(sha256(req.registration_token), n["tokenHash"]):
                r = reply(allowed=False, reason="registration_token_invalid")
            else:
                n["lastSeenMs"] = int(time.time() * 1000)
                n["lastIp"] = req.source_ip
                active = n["emailVerified"] and n["nodeApproved"]
                reason = ("ok" if active else "email_unverified" if not n["emailVerified"]
                          else "node_pending_coordinator_approval")
                r = reply(allowed=active, reason=reason, owner_email=n["ownerEmail"],
                          email_verified=n["emailVerified"], node_approved=n["nodeApproved"],
                          active=active)
        log["allowed"], log["reason"] = r.allowed, r.reason
        return r

    def set_approval(self, req, log):
        with self.lock:
            n = self.nodes.get(req.node_id)
            if n is None:
                raise Abort(grpc.StatusCode.NOT_FOUND, "node_not_enrolled", "no such node")
            n["nodeApproved"] = req.approved
            log["approved"] = req.approved
            return self.pb.SetNodeApprovalReply(node=self.node_msg(n))

    def lookup(self, req, log):
        if len(req.node_ids) > MAX_LOOKUP:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid_request", "node_ids")
        with self.lock:
            found = [self.node_msg(self.nodes[i]) for i in req.node_ids if i in self.nodes]
        return self.pb.LookupNodesReply(nodes=found)

    def pending(self, req, log):
        limit = min(req.limit or 100, 1000)
        kind = req.node_kind if req.HasField("node_kind") else None
        with self.lock:
            rows = sorted((n for n in self.nodes.values()
                           if not n["nodeApproved"] and kind in (None, n["nodeKind"])),
                          key=lambda n: n["enrolledAtMs"])
            return self.pb.ListPendingNodesReply(nodes=[self.node_msg(n) for n in rows[:limit]])

    def generic_handler(self):
        pb = self.pb
        table = {
            "ValidateNode": (self.validate, pb.ValidateNodeRequest, pb.ValidateNodeReply),
            "SetNodeApproval": (self.set_approval, pb.SetNodeApprovalRequest,
                                pb.SetNodeApprovalReply),
            "LookupNodes": (self.lookup, pb.LookupNodesRequest, pb.LookupNodesReply),
            "ListPendingNodes": (self.pending, pb.ListPendingNodesRequest,
                                 pb.ListPendingNodesReply),
        }
        return grpc.method_handlers_generic_handler(SERVICE, {
            name: grpc.unary_unary_rpc_method_handler(
                self.handle(name, fn), request_deserializer=req.FromString,
                response_serializer=resp.SerializeToString)
            for name, (fn, req, resp) in table.items()})


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--service-token", default=os.environ.get("PORTAL_SERVICE_TOKEN", ""))
    ap.add_argument("--nodes", help="JSON file of enrolled nodes")
    ap.add_argument("--mode", choices=("ok", "hang", "unavailable"), default="ok")
    args = ap.parse_args(argv)
    if not args.service_token:
        ap.error("a service token is required (--service-token or PORTAL_SERVICE_TOKEN)")
    nodes = []
    if args.nodes:
        with open(args.nodes) as f:
            nodes = json.load(f)["nodes"]

    portal = Portal(load_messages(), nodes, args.service_token, args.mode)
    with open(args.ca, "rb") as f:
        ca = f.read()
    with open(args.key, "rb") as f:
        key = f.read()
    with open(args.cert, "rb") as f:
        cert = f.read()
    creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                        require_client_auth=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                         options=[("grpc.max_receive_message_length", 1 << 20)])
    server.add_generic_rpc_handlers((portal.generic_handler(),))
    port = server.add_secure_port("%s:%d" % (args.host, args.port), creds)
    server.start()

    stop = threading.Event()

    def toggle(mode):
        portal.mode = "ok" if portal.mode == mode else mode
        emit({"event": "mode", "mode": portal.mode})

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: toggle("hang"))
    signal.signal(signal.SIGUSR2, lambda *_: toggle("unavailable"))
    emit({"event": "listening", "port": port, "mode": portal.mode})
    while not stop.wait(0.2):
        pass
    server.stop(0.5).wait()
    emit({"event": "stopped"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
