"""The controller at cluster scale on the real API server of `scripts/e2e`.

    scripts/e2e up && scripts/e2e scale [--count 1000] [--namespaces 100] [--quiet 30]

Run by `scripts/e2e scale` against what `scripts/e2e up` started (never by `scripts/test` or
`scripts/e2e test`: it is a benchmark). It replaces the e2e's product replica "a" with the
release binary serving admission only (`--no-controller`, same port, so creates are mutated
as on a cluster), creates annotated InferenceServices across namespaces, waits for KServe's
controller to create their Deployments, and only then starts one controller of ours: the
release binary with the chart's arguments, `--leader-elect=false`, on 127.0.0.1. That
controller reaches the API server through a counting proxy here (plain HTTP on 127.0.0.1,
forwarded over TLS with the admin certificate), so its requests are its own and not KServe's
or KEDA's. Measured: time from its start to every ScaledObject present, requests per
InferenceService, RSS settled and per InferenceService above an empty start, reconcile p99
from its histogram, and its writes during a quiet window once everything is applied.
Everything created is deleted and everything started is stopped by pid, also on failure;
replica "a" is started again at the end.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import pathlib
import shutil
import signal
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import product  # noqa: E402  (the e2e's product helpers: chart arguments, replica "a")

TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
BUILT = TARGET / "release" / "kserve-keda-webhook"
# A copy under the state folder: a shared target folder may be rebuilt while this runs.
RELEASE_BIN = product.STATE / "scale-kserve-keda-webhook"
STATE = product.STATE
PKI = product.PKI
NS_PREFIX = "scale-"
# Ports after the product's replicas (base+30..33).
WEBHOOK_METRICS = product.PORT_BASE + 4
CONTROLLER_ADDR = product.PORT_BASE + 5
CONTROLLER_METRICS = product.PORT_BASE + 6
PROXY_PORT = product.PORT_BASE + 7
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


# ---------------------------------------------------------------------------------------------
# The API server, directly (the measurement's own reads and writes; never counted).


def server() -> tuple[str, int]:
    import yaml

    url = yaml.safe_load(product.ADMIN.read_text())["clusters"][0]["cluster"]["server"]
    host, port = url.removeprefix("https://").split(":")
    return host, int(port)


def tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    return ctx


class Api:
    def __init__(self) -> None:
        self.host, self.port = server()
        self.ctx = tls()
        self.local = threading.local()

    def conn(self) -> http.client.HTTPSConnection:
        c = getattr(self.local, "c", None)
        if c is None:
            c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=120)
            self.local.c = c
        return c

    def call(self, method: str, path: str, body: Any = None, accept: str = "application/json") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": accept, "Content-Type": "application/json"}
        for attempt in range(2):
            c = self.conn()
            try:
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.c = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def must(self, method: str, path: str, body: Any = None) -> Any:
        status, out = self.call(method, path, body)
        if status >= 300 and not (method == "POST" and status == 409):
            raise AssertionError(f"{method} {path}: {status} {json.dumps(out)[:400]}")
        return out

    def count(self, path: str) -> int:
        """Objects in namespaces of this run, as metadata only, paged."""
        n, cont = 0, ""
        meta = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
        while True:
            sep = "&" if "?" in path else "?"
            status, out = self.call("GET", f"{path}{sep}limit=500&continue={cont}", accept=meta)
            if status != 200:
                raise AssertionError(f"GET {path}: {status}")
            n += sum(1 for o in out.get("items") or [] if in_run(o["metadata"]))
            cont = out["metadata"].get("continue") or ""
            if not cont:
                return n


def in_run(meta: dict[str, Any]) -> bool:
    """Whether an object (or a namespace itself) belongs to this run's namespaces."""
    return (meta.get("namespace") or meta.get("name", "")).startswith(NS_PREFIX)


ISVCS = "/apis/serving.kserve.io/v1beta1"
SCALED_OBJECTS = "/apis/keda.sh/v1alpha1/scaledobjects"
DEPLOYMENTS = "/apis/apps/v1/deployments"


def isvc(name: str, ns: str) -> dict[str, Any]:
    """The examples' small model with a scaling annotation, as a user creates it: the webhook
    adds raw mode and the external autoscaler class."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app": "qwen"},
            "annotations": {
                "team": "search",
                "scaling.io/strategy": "tokens,queue",
                "scaling.io/max-replicas": "8",
            },
        },
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "model": {
                    "modelFormat": {"name": "huggingface"},
                    "storageUri": "hf://Qwen/Qwen2.5-0.5B-Instruct",
                    "args": ["--max-model-len=4096", "--gpu-memory-utilization=0.9"],
                    "resources": {
                        "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
                        "requests": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"},
                    },
                },
            }
        },
    }


# ---------------------------------------------------------------------------------------------
# The counting proxy between our controller and the API server.


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.writes = 0
        self.by: dict[str, int] = {}

    def add(self, method: str, path: str) -> None:
        watch = "watch=true" in path or "watch=1" in path
        kind = path.split("?")[0].rstrip("/").split("/")
        key = f"{'WATCH' if watch else method} {kind[-1] if len(kind) % 2 else kind[-2]}"
        with self.lock:
            self.requests += 1
            self.writes += method in MUTATING
            self.by[key] = self.by.get(key, 0) + 1

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.requests, self.writes


def proxy(counter: Counter) -> socketserver.ThreadingTCPServer:
    host, port = server()
    ctx = tls()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def forward(self) -> None:
            counter.add(self.command, self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "authorization")}
            # A fresh upstream connection per request: reusing one per client connection made
            # thousands of the controller's requests fail (client error SendRequest).
            upstream = http.client.HTTPSConnection(host, port, context=ctx, timeout=3600)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                r = upstream.getresponse()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                # Streamed as it arrives: watches are long responses of events.
                while chunk := r.read1(65536):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (OSError, http.client.HTTPException):
                self.close_connection = True
            finally:
                upstream.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        # The default backlog of 5 refuses connections when the controller opens many at once.
        request_queue_size = 1024

    srv = Server(("127.0.0.1", PROXY_PORT), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


# ---------------------------------------------------------------------------------------------
# Our processes, each with a pid file under the e2e state (so `scripts/e2e down` stops them too).


class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log = STATE / "logs" / f"scale-{name}.log"
        self.pid_file = STATE / "pids" / f"scale-{name}.pid"
        with self.log.open("wb") as out:
            self.p = subprocess.Popen(
                [str(RELEASE_BIN), *args], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.pid_file.write_text(str(self.p.pid))
        self.started = time.monotonic()

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.pid_file.unlink(missing_ok=True)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return f"---- last lines of {self.log}\n" + "\n".join(text[-lines:])


def chart_args(drop: tuple[str, ...]) -> list[str]:
    """The chart's container arguments as the e2e's replica uses them, minus some flags."""
    return [a for a in product.local_args("a") if not a.split("=", 1)[0].startswith(drop)]


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except OSError:
        return 0, ""


def status_kib(pid: int, field: str) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    rest = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def p99(text: str) -> str:
    prefix = 'kserve_keda_webhook_reconcile_duration_seconds_bucket{le="'
    buckets = []
    for line in text.splitlines():
        if line.startswith(prefix):
            le, count = line[len(prefix):].split('"} ')
            buckets.append((le, float(count)))
    total = buckets[-1][1] if buckets else 0
    if not total:
        return "no reconciles"
    for le, c in buckets:
        if c >= total * 0.99:
            return f"<= {float(le) * 1000:.0f} ms" if le != "+Inf" else "above the last bucket"
    return "?"


def wait(what: str, check: Any, timeout: float, every: float = 0.5, proc: Proc | None = None) -> float:
    start = time.monotonic()
    while not check():
        if proc is not None and not proc.alive():
            raise AssertionError(f"{proc.name} exited while waiting for {what}")
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


def controller(env: dict[str, str], kubeconfig: pathlib.Path, name: str = "controller") -> Proc:
    args = chart_args(("--addr", "--metrics-addr", "--leader-elect", "--shutdown-delay"))
    args += [
        f"--addr=127.0.0.1:{CONTROLLER_ADDR}",
        f"--metrics-addr=127.0.0.1:{CONTROLLER_METRICS}",
        "--leader-elect=false",
        "--shutdown-delay=0",
        f"--kubeconfig={kubeconfig}",
    ]
    return Proc(name, args, env)


def settle(counter: Counter, proc: Proc, limit: float = 120) -> None:
    """Until three seconds pass without a write: the controller's own writes come back as watch
    events and are reconciled once more."""
    deadline = time.monotonic() + limit
    last = counter.snapshot()[1]
    while time.monotonic() < deadline:
        time.sleep(3)
        if not proc.alive():
            raise AssertionError("the controller exited while settling")
        now = counter.snapshot()[1]
        if now == last:
            return
        last = now


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument("--quiet", type=float, default=30, help="seconds of the quiet window")
    ap.add_argument("--deadline", type=float, default=900, help="seconds allowed for every ScaledObject")
    opts = ap.parse_args()
    if not product.ADMIN.exists():
        print(f"nothing is up at {STATE}: run scripts/e2e up first", file=sys.stderr)
        return 2
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
    shutil.copy2(BUILT, RELEASE_BIN)

    api = Api()
    # Namespaces of an earlier run may still be terminating (KServe's finalizers).
    wait("namespaces of an earlier run to go", lambda: api.count("/api/v1/namespaces") == 0, 600, every=2)
    counter = Counter()
    procs: list[Proc] = []
    srv = None
    namespaces = [f"{NS_PREFIX}{i}" for i in range(opts.namespaces)]
    ok = False
    try:
        # One controller of ours: replica "a" (webhook and controller) makes way for the
        # release binary serving admission only on the same port.
        product.stop("a")
        env = dict(os.environ, KUBECONFIG=str(product.sa_kubeconfig()), RUST_LOG="warn")
        webhook_args = chart_args(("--metrics-addr", "--leader-elect", "--namespace", "--kube-api"))
        webhook = Proc("webhook", [*webhook_args, f"--metrics-addr=127.0.0.1:{WEBHOOK_METRICS}", "--no-controller"], env)
        procs.append(webhook)
        wait("the admission-only server /readyz", lambda: http_get(WEBHOOK_METRICS, "/readyz")[0] == 200, 60, proc=webhook)

        srv = proxy(counter)
        kubeconfig = STATE / "scale-proxy.kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: proxy\n  cluster:\n"
            f"    server: http://127.0.0.1:{PROXY_PORT}\ncontexts:\n- name: proxy\n  context:\n"
            "    cluster: proxy\n    user: proxy\ncurrent-context: proxy\nusers:\n- name: proxy\n  user:\n    token: scale\n"
        )
        cenv = dict(os.environ, RUST_LOG="warn")
        cenv.pop("KUBECONFIG", None)

        # The empty start: the same controller before any InferenceService of this run exists.
        empty = controller(cenv, kubeconfig, "controller-empty")
        procs.append(empty)
        wait("the controller /readyz (empty)", lambda: http_get(CONTROLLER_METRICS, "/readyz")[0] == 200, 120, proc=empty)
        settle(counter, empty)
        time.sleep(3)
        empty_kib = status_kib(empty.p.pid, "VmRSS")
        empty.stop()

        t0 = time.monotonic()
        for ns in namespaces:
            api.must("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for i in range(opts.count):
            ns = namespaces[i % len(namespaces)]
            api.must("POST", f"{ISVCS}/namespaces/{ns}/inferenceservices", isvc(f"model-{i}", ns))
        created = time.monotonic() - t0
        print(f"created {opts.count} InferenceServices in {len(namespaces)} namespaces in {created:.0f} s", file=sys.stderr)
        kserve = wait(
            "KServe's predictor Deployments",
            lambda: api.count(DEPLOYMENTS) >= opts.count,
            opts.deadline,
            every=3,
        )
        print(f"KServe created every predictor Deployment {kserve:.0f} s later", file=sys.stderr)

        counter.__init__()
        ctl = controller(cenv, kubeconfig)
        procs.append(ctl)
        wait("every ScaledObject", lambda: api.count(SCALED_OBJECTS) >= opts.count, opts.deadline, proc=ctl)
        applied = time.monotonic() - ctl.started
        settle(counter, ctl)
        requests, _ = counter.snapshot()
        by = dict(sorted(counter.by.items(), key=lambda kv: -kv[1]))
        cpu = cpu_seconds(ctl.p.pid)
        _, writes_before = counter.snapshot()
        by_before = dict(counter.by)
        time.sleep(opts.quiet)
        _, writes_after = counter.snapshot()
        quiet_by = {k: v - by_before.get(k, 0) for k, v in counter.by.items() if v != by_before.get(k, 0)}
        # Events are the controller's reports (a ScaledObject KEDA calls not ready, for one),
        # not changes to managed objects; counted apart.
        event_writes = sum(v for k, v in quiet_by.items() if k.endswith(" events") and not k.startswith(("GET", "WATCH")))
        object_writes = writes_after - writes_before - event_writes
        rss = status_kib(ctl.p.pid, "VmRSS")
        hwm = status_kib(ctl.p.pid, "VmHWM")
        code, metrics = http_get(CONTROLLER_METRICS, "/metrics")
        print(f"requests by verb and resource until settled: {json.dumps(by)}", file=sys.stderr)
        print(f"requests in the quiet window: {json.dumps(quiet_by)}", file=sys.stderr)
        print(
            "| InferenceServices | namespaces | start to all ScaledObjects applied | API requests per InferenceService "
            f"| RSS settled | RSS per InferenceService above empty | peak RSS | reconcile p99 "
            f"| object writes / events in {opts.quiet:.0f} s quiet "
            "| CPU s controller |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(
            f"| {opts.count:,} | {len(namespaces)} | {applied:.1f} s | {requests / opts.count:.1f} | {rss / 1024:.1f} MiB "
            f"| {(rss - empty_kib) / opts.count:.1f} KiB | {hwm / 1024:.1f} MiB | {p99(metrics) if code == 200 else 'no metrics'} "
            f"| {object_writes} / {event_writes} | {cpu:.1f} |"
        )
        print(f"Empty start: RSS {empty_kib / 1024:.1f} MiB. Binary: {BUILT} (release).")
        ok = object_writes == 0
        if not ok:
            print("a steady state wrote to the API", file=sys.stderr)
        return 0 if ok else 1
    finally:
        if not ok:
            for p in procs:
                print(p.tail(15), file=sys.stderr)
        for p in reversed(procs):
            p.stop()
        if srv is not None:
            srv.shutdown()
        for ns in namespaces:
            api.call("DELETE", f"/api/v1/namespaces/{ns}")
        if product.running("a") is None:
            product.start("a")
        RELEASE_BIN.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
