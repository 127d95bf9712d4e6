#!/usr/bin/python3
"""Interop test: a client nobody here wrote (Python grpcio) against the runtime's echo-svc.

Starts echo-svc on loopback ports it picks itself (port 0), reads the bound ports from its
JSON log lines, runs each check against it, then stops it with SIGTERM, which must exit 0.
Prints one line per check and a final "N passed, M failed"; exits non-zero on any failure.
Run with Debian's /usr/bin/python3 (python3-grpcio); stubs come from protoc with
grpc_python_plugin (see CMakeLists.txt beside this file).

Usage: interop_test.py --server PATH/echo-svc --gen DIR_WITH_STUBS
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

try:
    import grpc
except ImportError:
    sys.exit("interop_test: no grpc module in %s; run it with Debian's /usr/bin/python3 "
             "(apt-get install python3-grpcio)" % sys.executable)

START_TIMEOUT = 10.0  # seconds for echo-svc to report both listening ports
CALL_TIMEOUT = 5.0    # the client's deadline for every call
STOP_TIMEOUT = 15.0   # seconds for echo-svc to exit after SIGTERM
SERVICE = "tally.test.v1.Echo"


def expect(what, expected, got):
    assert got == expected, "%s: expected %r, got %r" % (what, expected, got)


def expect_rpc_error(what, call, code, details=None):
    """Runs call(), which must fail with status `code` (and `details`, when given)."""
    try:
        result = call()
    except grpc.RpcError as e:
        expect(what + " status", code, e.code())
        if details is not None:
            expect(what + " details", details, e.details())
        return
    raise AssertionError("%s: expected status %s, got a reply %r" % (what, code, result))


class Server:
    """echo-svc as a child process; its stderr is read by a thread into `lines`."""

    def __init__(self, path):
        env = dict(os.environ)
        env.update(TALLY_GRPC_LISTEN="127.0.0.1:0", TALLY_HTTP_LISTEN="127.0.0.1:0",
                   TALLY_WORKERS="2", TALLY_LOG_LEVEL="info")
        self.lines = []
        self.ports = {}
        self.cond = threading.Condition()
        self.proc = subprocess.Popen([path], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                try:
                    rec = json.loads(line)
                except ValueError:
                    rec = None
                if isinstance(rec, dict) and rec.get("msg") in ("grpc server listening",
                                                                "http server listening"):
                    port = find_key(rec, "port")
                    if port is not None:
                        self.ports[rec["msg"].split()[0]] = int(port)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_ports(self):
        """Waits for the "grpc" and "http" listening lines; raises with the log on timeout."""
        deadline = time.monotonic() + START_TIMEOUT
        with self.cond:
            while not ("grpc" in self.ports and "http" in self.ports):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(
                        "echo-svc did not report its grpc and http ports within %.0f s "
                        "(exit code %r; got %r); its log:\n%s"
                        % (START_TIMEOUT, self.proc.poll(), self.ports, self.log()))
                self.cond.wait(min(left, 0.1))

    def log(self):
        with self.cond:
            return "\n".join("    " + line for line in self.lines[-40:])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def find_key(obj, key):
    """The value of `key` in a JSON object, at the top level or in a nested object."""
    if key in obj:
        return obj[key]
    for value in obj.values():
        if isinstance(value, dict):
            found = find_key(value, key)
            if found is not None:
                return found
    return None


# The checks. Each takes the context (server, channel, stubs) and raises on failure.

def check_echo_round_trip(ctx):
    payload = bytes(i % 251 for i in range(100 * 1024))
    reply = ctx.echo.Echo(ctx.pb.EchoRequest(text="hello interop", payload=payload),
                          timeout=CALL_TIMEOUT)
    expect("text", "hello interop", reply.text)
    expect("payload length", len(payload), len(reply.payload))
    assert reply.payload == payload, "payload: expected the 100 KiB sent, got different bytes"


def check_metadata_reaches_handler(ctx):
    reply = ctx.echo.Echo(ctx.pb.EchoRequest(text="md", metadata_key="x-tally-test"),
                          metadata=(("x-tally-test", "abc"),), timeout=CALL_TIMEOUT)
    expect("metadata_value", "abc", reply.metadata_value)


def check_fail_status_reaches_client(ctx):
    req = ctx.pb.FailRequest(code=5, message="no such complaint")
    expect_rpc_error("Fail(5)", lambda: ctx.echo.Fail(req, timeout=CALL_TIMEOUT),
                     grpc.StatusCode.NOT_FOUND, "no such complaint")


def check_unknown_method_unimplemented(ctx):
    nope = ctx.channel.unary_unary("/%s/Nope" % SERVICE, request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
    start = time.monotonic()
    expect_rpc_error("/%s/Nope" % SERVICE, lambda: nope(b"", timeout=CALL_TIMEOUT),
                     grpc.StatusCode.UNIMPLEMENTED)
    elapsed = time.monotonic() - start
    assert elapsed < 1.0, "UNIMPLEMENTED: expected within 1 s, got it after %.3f s" % elapsed


def check_health_check(ctx):
    for service in ("", SERVICE):
        reply = ctx.health.Check(ctx.health_pb.HealthCheckRequest(service=service),
                                 timeout=CALL_TIMEOUT)
        expect("Health/Check(%r)" % service, "SERVING",
               ctx.health_pb.HealthCheckResponse.ServingStatus.Name(reply.status))
    req = ctx.health_pb.HealthCheckRequest(service="nope")
    expect_rpc_error("Health/Check('nope')", lambda: ctx.health.Check(req, timeout=CALL_TIMEOUT),
                     grpc.StatusCode.NOT_FOUND)


def check_health_watch_streams_the_status(ctx):
    """Health/Watch (client-side health checking): SERVING at once, the stream stays open."""
    serving = ctx.health_pb.HealthCheckResponse.SERVING
    unknown = ctx.health_pb.HealthCheckResponse.SERVICE_UNKNOWN
    stream = ctx.health.Watch(ctx.health_pb.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT)
    expect("Health/Watch first status", serving, next(stream).status)
    stream.cancel()
    stream = ctx.health.Watch(ctx.health_pb.HealthCheckRequest(service="no.such.Service"),
                              timeout=CALL_TIMEOUT)
    expect("Health/Watch of an unknown service", unknown, next(stream).status)
    stream.cancel()


def check_sigterm_exits_zero(ctx):
    ctx.channel.close()
    ctx.server.proc.send_signal(signal.SIGTERM)
    try:
        code = ctx.server.proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError("SIGTERM: expected exit within %.0f s, still running" % STOP_TIMEOUT)
    expect("exit code after SIGTERM", 0, code)


CHECKS = [
    check_echo_round_trip,
    check_metadata_reaches_handler,
    check_fail_status_reaches_client,
    check_unknown_method_unimplemented,
    check_health_check,
    check_health_watch_streams_the_status,
    check_sigterm_exits_zero,  # last: it stops the server
]


class Context:
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True, help="path to echo-svc")
    ap.add_argument("--gen", required=True, help="directory of the generated Python stubs")
    args = ap.parse_args()
    sys.path.insert(0, args.gen)
    import echo_pb2
    import echo_pb2_grpc
    import health_pb2
    import health_pb2_grpc

    passed = failed = 0
    server = Server(args.server)
    try:
        try:
            server.wait_ports()
        except AssertionError as e:
            print("FAIL start echo-svc: %s" % e)
            print("0 passed, 1 failed")
            return 1
        port = server.ports["grpc"]
        print("echo-svc pid %d: grpc port %d, http port %d"
              % (server.proc.pid, port, server.ports["http"]))
        ctx = Context()
        ctx.server = server
        ctx.channel = grpc.insecure_channel("127.0.0.1:%d" % port,
                                            options=[("grpc.enable_http_proxy", 0)])
        ctx.pb, ctx.health_pb = echo_pb2, health_pb2
        ctx.echo = echo_pb2_grpc.EchoStub(ctx.channel)
        ctx.health = health_pb2_grpc.HealthStub(ctx.channel)
        for check in CHECKS:
            name = check.__name__[len("check_"):]
            try:
                check(ctx)
            except grpc.RpcError as e:
                failed += 1
                print("FAIL %s: unexpected status %s: %s" % (name, e.code(), e.details()))
            except Exception as e:  # an assertion, or anything else the check hit
                failed += 1
                print("FAIL %s: %s: %s" % (name, type(e).__name__, e))
            else:
                passed += 1
                print("ok   %s" % name)
            sys.stdout.flush()
        if failed:
            print("echo-svc log (last lines):\n%s" % server.log())
        print("%d passed, %d failed" % (passed, failed))
        return 1 if failed else 0
    finally:
        server.kill()


if __name__ == "__main__":
    sys.exit(main())
