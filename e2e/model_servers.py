"""Stand-in model servers for the e2e pod network: one process in the pod network namespace
answers on every pod IP and serves, per IP, the `/metrics` page of vLLM, SGLang or TGI with
the metric names, types and labels those servers export. Tests set what each pod reports
through a control API on the network namespace's own address:

    PUT    /pods/<ip>   {"runtime": "vllm", "running": 3, "waiting": 5, "kv_cache": 0.7,
                         "generation_tokens_per_second": 500, "ttft_seconds": 0.8, ...}
    GET    /pods/<ip>   what is set, and the counters so far
    DELETE /pods/<ip>   back to an idle page
    POST   /ports       {"port": 9000}: also serve metrics on that port
    GET    /healthz

Counters grow at the set rates, computed at each scrape from the time of the last change;
histograms are observed at the set latency (`requests_per_second` observations of
`ttft_seconds`, one `itl_seconds` observation per generated token), so `rate()` and
`histogram_quantile()` over the scraped series give back what the test set, within the
bucket the latency falls in. A pod IP nobody set serves an idle vLLM page.

    model_servers.py --control 198.18.4.2 --port 8080
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Callable
from typing import Any

# Bucket bounds as the servers define them.
VLLM_TTFT = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
             7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
VLLM_ITL = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
            10.0, 20.0, 40.0, 80.0]
SGLANG_TTFT = [0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0,
               100.0, 200.0, 400.0]
TGI_TOKENS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]

RUNTIMES = ("vllm", "sglang", "tgi")
NUMBERS = {
    "running": 0.0,
    "waiting": 0.0,
    "kv_cache": 0.0,
    "generation_tokens_per_second": 0.0,
    "prompt_tokens_per_second": 0.0,
    "requests_per_second": 1.0,
}
OPTIONAL = ("ttft_seconds", "itl_seconds")


class BadRequest(ValueError):
    pass


def parse(body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    allowed = {"runtime", "model", *NUMBERS, *OPTIONAL}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown fields {unknown}; allowed: {sorted(allowed)}")
    cfg: dict[str, Any] = {"runtime": body.get("runtime", "vllm"), "model": body.get("model", "model")}
    if cfg["runtime"] not in RUNTIMES:
        raise BadRequest(f"runtime {cfg['runtime']!r}: allowed {list(RUNTIMES)}")
    if not isinstance(cfg["model"], str) or not cfg["model"]:
        raise BadRequest(f"model {cfg['model']!r}: a non-empty string")
    for key in (*NUMBERS, *OPTIONAL):
        default = NUMBERS.get(key)
        v = body.get(key, default)
        if v is None:
            cfg[key] = None
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise BadRequest(f"{key} {v!r}: a finite number >= 0")
        cfg[key] = float(v)
    return cfg


class Histogram:
    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.buckets = [0.0] * len(bounds)  # cumulative, without +Inf
        self.count = 0.0
        self.sum = 0.0

    def observe(self, value: float, n: float) -> None:
        for i, le in enumerate(self.bounds):
            if value <= le:
                self.buckets[i] += n
        self.count += n
        self.sum += value * n


class Pod:
    """One pod's counters. Counts are whole numbers, as real servers export them: the
    fractional part of `rate * elapsed` carries over to the next scrape."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.created = time.time()
        self.last = time.monotonic()
        self.carry = {"generation": 0.0, "prompt": 0.0, "requests": 0.0}
        self.generation = 0.0
        self.prompt = 0.0
        rt = cfg["runtime"]
        self.ttft = Histogram(SGLANG_TTFT if rt == "sglang" else VLLM_TTFT)
        self.itl = Histogram(VLLM_ITL)
        self.tgi_tokens = Histogram(TGI_TOKENS)

    def _whole(self, key: str, amount: float) -> float:
        total = self.carry[key] + amount
        whole = math.floor(total)
        self.carry[key] = total - whole
        return float(whole)

    def advance(self) -> None:
        t = time.monotonic()
        dt, self.last = t - self.last, t
        c = self.cfg
        tokens = self._whole("generation", c["generation_tokens_per_second"] * dt)
        self.generation += tokens
        self.prompt += self._whole("prompt", c["prompt_tokens_per_second"] * dt)
        requests = self._whole("requests", c["requests_per_second"] * dt)
        if c["ttft_seconds"] is not None and requests:
            self.ttft.observe(c["ttft_seconds"], requests)
        if c["itl_seconds"] is not None and tokens:
            self.itl.observe(c["itl_seconds"], tokens)
        if requests or tokens:
            # TGI observes tokens per finished request; only its sum is read here.
            per_request = tokens / requests if requests else 0.0
            self.tgi_tokens.observe(per_request, requests)
            self.tgi_tokens.sum += tokens - per_request * requests

    def reconfigure(self, cfg: dict[str, Any]) -> None:
        self.advance()
        if cfg["runtime"] != self.cfg["runtime"]:
            self.__init__(cfg)  # type: ignore[misc]
        self.cfg = cfg

    def state(self) -> dict[str, Any]:
        return {
            **self.cfg,
            "generation_tokens_total": self.generation,
            "prompt_tokens_total": self.prompt,
            "ttft_count": self.ttft.count,
            "itl_count": self.itl.count,
        }


def num(v: float) -> str:
    return repr(float(v))


def labels(base: list[tuple[str, str]], extra: list[tuple[str, str]] = ()) -> str:  # type: ignore[assignment]
    pairs = [*base, *extra]
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}" if pairs else ""


class Page:
    def __init__(self, lbl: list[tuple[str, str]]) -> None:
        self.lbl = lbl
        self.lines: list[str] = []

    def add(self, name: str, kind: str, help_: str, value: Any, created: float) -> None:
        """One metric as prometheus_client writes it: counters as `<name>_total` plus
        `<name>_created`, histograms as cumulative buckets, `_count`, `_sum`, `_created`."""
        base = name[: -len("_total")] if kind == "counter" else name
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        if kind == "histogram":
            for le, n in zip(value.bounds, value.buckets):
                self.lines.append(f"{name}_bucket{labels(self.lbl, [('le', num(le))])} {num(n)}")
            self.lines.append(f'{name}_bucket{labels(self.lbl, [("le", "+Inf")])} {num(value.count)}')
            self.lines.append(f"{name}_count{labels(self.lbl)} {num(value.count)}")
            self.lines.append(f"{name}_sum{labels(self.lbl)} {num(value.sum)}")
        else:
            self.lines.append(f"{name}{labels(self.lbl)} {num(value)}")
        if kind != "gauge":
            self.lines.append(f"{base}_created{labels(self.lbl)} {created:.9e}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# Per runtime: its labels, and (name, type, help, value) of each metric it exports that the
# planner reads (and a few beside them).
PAGES: dict[str, tuple[Callable[[Pod], list[tuple[str, str]]], list[tuple[str, str, str, Callable[[Pod], Any]]]]] = {
    # vLLM (v1 engine, 0.10+): prometheus_client, labels in the order model_name, engine.
    "vllm": (
        lambda pod: [("model_name", pod.cfg["model"]), ("engine", "0")],
        [
            ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", lambda pod: pod.cfg["running"]),
            ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", lambda pod: pod.cfg["waiting"]),
            ("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", lambda pod: pod.cfg["kv_cache"]),
            ("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", lambda pod: pod.prompt),
            ("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", lambda pod: pod.generation),
            ("vllm:time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds.", lambda pod: pod.ttft),
            ("vllm:inter_token_latency_seconds", "histogram", "Histogram of inter-token latency in seconds.", lambda pod: pod.itl),
        ],
    ),
    # SGLang: prometheus_client, one label set per scheduler (tensor/pipeline rank).
    "sglang": (
        lambda pod: [("model_name", pod.cfg["model"]), ("engine_type", "unified"), ("tp_rank", "0"), ("pp_rank", "0")],
        [
            ("sglang:num_running_reqs", "gauge", "The number of running requests.", lambda pod: pod.cfg["running"]),
            ("sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue.", lambda pod: pod.cfg["waiting"]),
            ("sglang:token_usage", "gauge", "The token usage.", lambda pod: pod.cfg["kv_cache"]),
            ("sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.", lambda pod: pod.prompt),
            ("sglang:generation_tokens_total", "counter", "Number of generation tokens processed.", lambda pod: pod.generation),
            ("sglang:time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds.", lambda pod: pod.ttft),
        ],
    ),
}


def render(pod: Pod) -> str:
    rt = pod.cfg["runtime"]
    if rt in PAGES:
        lbl, metrics = PAGES[rt]
        p = Page(lbl(pod))
        for name, kind, help_, value in metrics:
            p.add(name, kind, help_, value(pod), pod.created)
        return p.text()
    # TGI (Rust, metrics-exporter-prometheus): no labels, no HELP and no _created lines.
    lines = []
    for name, value in (("tgi_queue_size", pod.cfg["waiting"]), ("tgi_batch_current_size", pod.cfg["running"])):
        lines += [f"# TYPE {name} gauge", f"{name} {num(value)}"]
    h = pod.tgi_tokens
    lines.append("# TYPE tgi_request_generated_tokens histogram")
    for le, n in zip(h.bounds, h.buckets):
        lines.append(f'tgi_request_generated_tokens_bucket{{le="{num(le)}"}} {num(n)}')
    lines.append(f'tgi_request_generated_tokens_bucket{{le="+Inf"}} {num(h.count)}')
    lines.append(f"tgi_request_generated_tokens_sum {num(h.sum)}")
    lines.append(f"tgi_request_generated_tokens_count {num(h.count)}")
    return "\n".join(lines) + "\n"


class Servers:
    def __init__(self, control: str) -> None:
        self.control = control
        self.lock = threading.Lock()
        self.pods: dict[str, Pod] = {}
        self.ports: dict[int, ThreadingHTTPServer] = {}

    def pod(self, ip: str) -> Pod:
        if ip not in self.pods:
            self.pods[ip] = Pod(parse({}))
        return self.pods[ip]

    def listen(self, port: int) -> None:
        if port in self.ports:
            return
        servers = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                pass

            def reply(self, code: int, body: str, ctype: str = "application/json") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def local_ip(self) -> str:
                return self.connection.getsockname()[0]

            def do_GET(self) -> None:
                ip = self.local_ip()
                if ip == servers.control:
                    self.control("GET")
                    return
                with servers.lock:
                    pod = servers.pod(ip)
                    pod.advance()
                    text = render(pod)
                self.reply(200, text, "text/plain; version=0.0.4; charset=utf-8")

            def do_PUT(self) -> None:
                self.control("PUT")

            def do_POST(self) -> None:
                self.control("POST")

            def do_DELETE(self) -> None:
                self.control("DELETE")

            def control(self, method: str) -> None:
                if self.local_ip() != servers.control:
                    self.reply(405, json.dumps({"error": "control API only on the control address"}))
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(length) or b"{}")
                    self.reply(200, json.dumps(servers.handle(method, self.path, body)))
                except (BadRequest, json.JSONDecodeError) as e:
                    self.reply(400, json.dumps({"error": str(e)}))
                except KeyError as e:
                    self.reply(404, json.dumps({"error": f"no such path: {e}"}))

        httpd = ThreadingHTTPServer(("", port), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        self.ports[port] = httpd
        print(f"serving on port {port}", flush=True)

    def handle(self, method: str, path: str, body: Any) -> Any:
        parts = path.strip("/").split("/")
        if parts == ["healthz"] and method == "GET":
            return {"ports": sorted(self.ports)}
        if parts == ["ports"] and method == "POST":
            port = body.get("port") if isinstance(body, dict) else None
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise BadRequest(f"port {port!r}: an integer 1-65535")
            self.listen(port)
            return {"ports": sorted(self.ports)}
        if len(parts) == 2 and parts[0] == "pods":
            ip = parts[1]
            with self.lock:
                if method == "PUT":
                    cfg = parse(body)
                    if ip in self.pods:
                        self.pods[ip].reconfigure(cfg)
                    else:
                        self.pods[ip] = Pod(cfg)
                    print(f"{ip}: {cfg}", flush=True)
                    return self.pods[ip].state()
                if method == "DELETE":
                    self.pods.pop(ip, None)
                    return {}
                if method == "GET":
                    pod = self.pod(ip)
                    pod.advance()
                    return pod.state()
        raise KeyError(f"{method} {path}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--control", required=True, help="the network namespace's own address")
    parser.add_argument("--port", type=int, action="append", default=[])
    args = parser.parse_args(argv)
    servers = Servers(args.control)
    for port in args.port or [8080]:
        servers.listen(port)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
