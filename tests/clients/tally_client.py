#!/usr/bin/python3
"""A Python grpcio client of tally.v1, the interop test against the real services.

tests/integration/test_clients.c starts a whole system (PostgreSQL, Redis, command-svc,
projector, query-svc) and runs:

  tally_client.py --gen DIR --commands HOST:PORT --query HOST:PORT --tenant T

with TALLY_TOKEN (an admin token) in the environment. It checks, one line each, exiting
non-zero on the first failure: server reflection (v1 and v1alpha: the services listed, a
file fetched by symbol and usable as a descriptor pool), commands (with an idempotent retry),
the rich error details (google.rpc.Status: ErrorInfo, BadRequest), GetDashboard and a
WatchDashboard stream that gets a new page after a command. Runs on Debian's /usr/bin/python3
(python3-grpcio, python3-protobuf); the stubs come from protoc at build time
(tests/interop/CMakeLists.txt).
"""
import argparse
import os
import sys
import threading
import time

import grpc

TIMEOUT = 10.0


def check(what, cond, detail=""):
    if not cond:
        print("FAIL %s %s" % (what, detail))
        sys.exit(1)
    print("ok %s" % what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gen", required=True)
    ap.add_argument("--commands", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--tenant", required=True)
    opt = ap.parse_args()
    sys.path.insert(0, opt.gen)
    from google.protobuf import descriptor_pb2, descriptor_pool
    import error_details_pb2
    import reflection_pb2
    import status_pb2
    from tally.v1 import commands_pb2, commands_pb2_grpc, dashboard_pb2, dashboard_pb2_grpc

    md = [("authorization", "Bearer " + os.environ["TALLY_TOKEN"])]
    q = grpc.insecure_channel(opt.query)
    c = grpc.insecure_channel(opt.commands)
    dash = dashboard_pb2_grpc.DashboardStub(q)
    cmds = commands_pb2_grpc.ComplaintCommandsStub(c)

    # Server reflection, as grpcurl and Postman use it: v1 and v1alpha.
    for version in ("v1", "v1alpha"):
        info = q.stream_stream(
            "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % version,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        reqs = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="tally.v1.Dashboard"),
                reflection_pb2.ServerReflectionRequest(file_by_filename="no/such.proto")]
        replies = list(info(iter(reqs), timeout=TIMEOUT, metadata=md))
        check("reflection %s answers each request" % version, len(replies) == 3, replies)
        names = [s.name for s in replies[0].list_services_response.service]
        check("reflection %s lists the services" % version,
              "tally.v1.Dashboard" in names and "grpc.health.v1.Health" in names, names)
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in replies[1].file_descriptor_response.file_descriptor_proto]
        pool = descriptor_pool.DescriptorPool()
        for f in sorted(files, key=lambda f: len(f.dependency)):  # types.proto first
            pool.Add(f)
        svc = pool.FindServiceByName("tally.v1.Dashboard")
        watch = svc.methods_by_name.get("WatchDashboard")
        check("reflection %s gives a usable descriptor of the API" % version,
              watch is not None and watch.output_type.full_name == "tally.v1.GetDashboardReply"
              and "min_interval_ms" in pool.FindMessageTypeByName(
                  "tally.v1.GetDashboardRequest").fields_by_name)
        check("reflection %s: an unknown file is NOT_FOUND" % version,
              replies[2].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0])

    # Commands: a tenant's complaint, and the retry of a lost reply returns the same one.
    req = commands_pb2.CreateComplaintRequest(
        tenant_id=opt.tenant, idempotency_key="py-%d" % os.getpid(), category_id="c1",
        priority=3, title="From Python", customer_id="cust-py")
    a = cmds.CreateComplaint(req, timeout=TIMEOUT, metadata=md)
    b = cmds.CreateComplaint(req, timeout=TIMEOUT, metadata=md)
    check("CreateComplaint, retried with its key, gives the same complaint",
          a.complaint_id > 0 and a.complaint_id == b.complaint_id, (a, b))

    # Rich errors: ABORTED with ErrorInfo, INVALID_ARGUMENT with BadRequest.
    def status_of(err):
        for k, v in err.trailing_metadata() or ():
            if k == "grpc-status-details-bin":
                return status_pb2.Status.FromString(v)
        return None

    def detail(st, cls):
        for d in st.details:
            if d.type_url == "type.googleapis.com/" + cls.DESCRIPTOR.full_name:
                return cls.FromString(d.value)
        return None

    try:
        cmds.ChangeStatus(commands_pb2.ChangeStatusRequest(
            tenant_id=opt.tenant, complaint_id=a.complaint_id, status=2, expected_version=7,
            actor="py"),
            timeout=TIMEOUT, metadata=md)
        check("a stale expected_version is refused", False)
    except grpc.RpcError as e:
        st = status_of(e)
        info = detail(st, error_details_pb2.ErrorInfo) if st else None
        check("ABORTED carries google.rpc.Status with VERSION_CONFLICT and current_version",
              e.code() == grpc.StatusCode.ABORTED and st.code == 10 and
              st.message == e.details() and info.reason == "VERSION_CONFLICT" and
              info.metadata["current_version"] == "1", (e.code(), st))
    try:
        cmds.CreateComplaint(commands_pb2.CreateComplaintRequest(
            tenant_id=opt.tenant, idempotency_key="py-bad", category_id="c1", priority=3,
            title="x" * 300, customer_id="c"), timeout=TIMEOUT, metadata=md)
        check("a long title is refused", False)
    except grpc.RpcError as e:
        st = status_of(e)
        bad = detail(st, error_details_pb2.BadRequest) if st else None
        check("INVALID_ARGUMENT carries a BadRequest naming the field",
              e.code() == grpc.StatusCode.INVALID_ARGUMENT and bad is not None and
              bad.field_violations[0].field == "title", st)

    # GetDashboard, then a WatchDashboard stream that follows a command.
    page = dash.GetDashboard(dashboard_pb2.GetDashboardRequest(tenant_id=opt.tenant),
                             timeout=TIMEOUT, metadata=md)
    check("GetDashboard answers with freshness", page.freshness.server_time_ms > 0)
    stream = dash.WatchDashboard(dashboard_pb2.GetDashboardRequest(
        tenant_id=opt.tenant, min_interval_ms=100), timeout=60, metadata=md)
    pages = []
    cond = threading.Condition()

    def read():
        try:
            for p in stream:
                with cond:
                    pages.append(p)
                    cond.notify_all()
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()

    def wait_page(pred, seconds):
        until = time.monotonic() + seconds
        with cond:
            while True:
                for p in pages:
                    if pred(p):
                        return p
                left = until - time.monotonic()
                if left <= 0:
                    return None
                cond.wait(left)

    first = wait_page(lambda p: True, 20)
    check("WatchDashboard sends the page at once", first is not None)
    # The tenant's one complaint so far, applied; then one more, pushed.
    check("the page holds the complaint created so far",
          wait_page(lambda p: p.overview.created_today == 1, 20) is not None)
    cmds.CreateComplaint(commands_pb2.CreateComplaintRequest(
        tenant_id=opt.tenant, idempotency_key="py-watch-%d" % os.getpid(), category_id="c1",
        priority=2, title="Watched", customer_id="cust-py"), timeout=TIMEOUT, metadata=md)
    pushed = wait_page(lambda p: p.overview.created_today == 2, 20)
    check("WatchDashboard pushes a new page after a command", pushed is not None)
    stream.cancel()
    print("tally_client: all checks passed")


if __name__ == "__main__":
    main()
