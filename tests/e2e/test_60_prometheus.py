"""Metrics reach a real Prometheus through the monitors we generate, configured by the real
prometheus-operator, and the ScaledObject's queries find them: predictor pods made by KServe
get addresses on the pod network (kubelet stand-in), stand-in model servers answer there with
vLLM/SGLang/TGI pages, and the values the test sets come back from the trigger queries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conftest import apply, isvc, must_get, requires_keda, requires_kserve, wait
from product import kubectl
from metrics import (
    VLLM_TTFT_BUCKETS,
    active_targets,
    histogram_quantile,
    prometheus_value,
    requires_pod_network,
    reset_pod_metrics,
    rule_groups,
    set_pod_metrics,
    wait_for_pods_running,
)

pytestmark = [requires_kserve, requires_keda, requires_pod_network]

WINDOW = "30s"


def annotated(name: str, ns: str, strategy: str, replicas: int, **extra: str) -> dict[str, Any]:
    obj = isvc(name, ns, annotations={
        "scaling.io/strategy": strategy,
        "scaling.io/window": WINDOW,
        # min = max: KEDA's HPA keeps exactly this many pods whatever the metrics say.
        "scaling.io/min-replicas": str(replicas),
        "scaling.io/max-replicas": str(replicas),
        **{f"scaling.io/{k.replace('_', '-')}": v for k, v in extra.items()},
    })
    return obj


def running_pods(ns: str, name: str, n: int) -> list[dict[str, Any]]:
    """The predictor's `n` pods. KServe leaves the replica count of an externally scaled
    Deployment alone and KEDA's HPA would raise it to the minimum only on its next sync, so
    the test sets it as the HPA would. Once the controller has applied the ScaledObject, the
    pod template is final: the controller writes nothing on the InferenceService, whose
    annotations KServe copies into the template."""

    deployment = f"{name}-predictor"
    must_get("scaledobject", deployment, ns, timeout=120)
    template = must_get("deployment", deployment, ns)["spec"]["template"]["metadata"]
    assert "scaling.io/observed-generation" not in (template.get("annotations") or {}), template
    kubectl("-n", ns, "scale", f"deployment/{deployment}", f"--replicas={n}")
    return wait_for_pods_running(
        ns, f"serving.kserve.io/inferenceservice={name},component=predictor", n, deployment=deployment
    )


def trigger_query(ns: str, name: str, trigger: str) -> str:
    so = must_get("scaledobject", f"{name}-predictor", ns)
    (found,) = [t for t in so["spec"]["triggers"] if t["name"] == trigger]
    return found["metadata"]["query"]


def wait_close(query: str, expected: float, rel: float, what: str, timeout: float = 150) -> float:
    """Polls the real Prometheus until `query` is within `rel` of `expected`."""

    def check() -> float | None:
        v = prometheus_value(query)
        return v if v is not None and abs(v - expected) <= rel * abs(expected) + 1e-9 else None

    try:
        return wait(f"{what}: {query} = {expected} (±{rel:.0%})", check, timeout=timeout, every=1)
    except AssertionError as e:
        ns = query.split('namespace="', 1)[1].split('"', 1)[0]
        targets = [(t["scrapeUrl"], t["health"], t["labels"].get("pod")) for t in active_targets(ns)]
        raise AssertionError(f"{e}; Prometheus last said {prometheus_value(query)}; targets: {targets}") from None


# Ports the model container declares: none (KServe 0.20's huggingface runtime), or several,
# which gives service discovery several targets per pod (one per port).
PORTS = {
    "no-ports": None,
    "two-ports": [{"name": "http", "containerPort": 8080}, {"name": "grpc", "containerPort": 8081}],
}


@pytest.mark.parametrize("ports", PORTS)
@pytest.mark.parametrize("monitor", ["servicemonitor", "podmonitor"])
def test_one_active_target_per_predictor_pod(running_ns: str, monitor: str, ports: str) -> None:
    ns = running_ns
    obj = annotated("llm", ns, "queue", 2, monitor=monitor)
    if PORTS[ports]:
        obj["spec"]["predictor"]["model"]["ports"] = PORTS[ports]
    apply(obj)
    pods = running_pods(ns, "llm", 2)
    declared = [p.get("containerPort") for c in pods[0]["spec"]["containers"] if c["name"] == "kserve-container" for p in c.get("ports", [])]
    assert declared == [p["containerPort"] for p in PORTS[ports] or []], declared
    by_ip = {p["status"]["podIP"]: p for p in pods}

    def scraped() -> list[dict[str, Any]] | None:
        found = active_targets(ns)
        up = [t for t in found if t["health"] == "up"]
        return found if len(found) == 2 and len(up) == 2 else None

    targets = wait(f"two healthy targets in {ns}", scraped, timeout=150, every=1)
    kind = "serviceMonitor" if monitor == "servicemonitor" else "podMonitor"
    for t in targets:
        labels = t["labels"]
        ip = labels["instance"].rsplit(":", 1)[0]
        assert ip in by_ip, (labels, sorted(by_ip))
        assert t["scrapeUrl"] == f"http://{ip}:8080/metrics", t
        assert t["scrapePool"] == f"{kind}/{ns}/llm-predictor/0", t
        assert labels["pod"] == by_ip[ip]["metadata"]["name"]
        assert labels["container"] == "kserve-container"
        # Our podTargetLabels, which the queries select on.
        assert labels["serving_kserve_io_inferenceservice"] == "llm"
        assert labels["component"] == "predictor"
        assert labels["app"] == "isvc.llm-predictor"
    assert {t["labels"]["pod"] for t in targets} == {p["metadata"]["name"] for p in pods}


def test_service_monitor_scrapes_the_model_server_when_the_service_targets_the_agent(running_ns: str) -> None:
    """With a logger, KServe's predictor Service forwards to the agent (9081), whose container
    declares that port; the target is still the model server, once per pod."""
    ns = running_ns
    obj = annotated("llm", ns, "queue", 1)
    obj["spec"]["predictor"]["logger"] = {"mode": "all", "url": "http://127.0.0.1:9/"}
    apply(obj)
    (pod,) = running_pods(ns, "llm", 1)
    service = must_get("service", "llm-predictor", ns)
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [9081], service["spec"]["ports"]
    ip = pod["status"]["podIP"]
    set_pod_metrics(ip, waiting=7)
    query = trigger_query(ns, "llm", "queue")
    wait_close(query, 7, 0, "queue through the agent's Service")
    (target,) = active_targets(ns)
    assert target["scrapeUrl"] == f"http://{ip}:8080/metrics", target


def test_generated_alerts_load_and_evaluate_in_prometheus(running_ns: str) -> None:
    """The PrometheusRule beside the monitor reaches Prometheus through prometheus-operator's
    rule files, loads, and every rule evaluates without error."""
    ns = running_ns
    apply(annotated("llm", ns, "tokens,ttft,kv-cache", 1))
    rule = must_get("prometheusrule", "llm-predictor", ns)
    (group,) = rule["spec"]["groups"]
    wanted = [r["alert"] for r in group["rules"]]

    def loaded() -> dict[str, Any] | None:
        for g in rule_groups():
            if g["name"] == group["name"] and f"/{ns}-llm-predictor-" in g["file"]:
                evaluated = all(r.get("lastEvaluation", "").startswith("20") for r in g["rules"])
                return g if evaluated else None
        return None

    found = wait(f"rule group {group['name']} of {ns} loaded and evaluated", loaded, timeout=150, every=1)
    assert [r["name"] for r in found["rules"]] == wanted
    assert all(r["health"] == "ok" and not r.get("lastError") for r in found["rules"]), found["rules"]


def sum_of(values: list[float]) -> float:
    return sum(values)


def mean_of(values: list[float]) -> float:
    return sum(values) / len(values)


# (strategy, runtime, values for each pod of "a" and of "b", expected from those values,
# relative tolerance). Rates are read through rate() over the window, whose extrapolation over
# whole-number counters allows a few percent.
def p95_ttft(values: list[dict[str, float]]) -> float:
    return histogram_quantile(
        0.95, VLLM_TTFT_BUCKETS, [(v["ttft_seconds"], v["requests_per_second"]) for v in values]
    )


CASES: list[tuple[str, str, list[dict[str, Any]], list[dict[str, Any]], Callable[[list[dict[str, Any]]], float], float]] = [
    (
        "tokens", "vllm",
        [{"generation_tokens_per_second": 300}, {"generation_tokens_per_second": 500}],
        [{"generation_tokens_per_second": 4000}],
        lambda vs: sum_of([v["generation_tokens_per_second"] for v in vs]), 0.05,
    ),
    (
        "queue", "vllm",
        [{"waiting": 3}, {"waiting": 5}],
        [{"waiting": 40}],
        lambda vs: sum_of([v["waiting"] for v in vs]), 0,
    ),
    (
        "kv-cache", "vllm",
        [{"kv_cache": 0.6}, {"kv_cache": 0.8}],
        [{"kv_cache": 0.1}],
        lambda vs: mean_of([v["kv_cache"] for v in vs]), 1e-9,
    ),
    (
        "ttft", "vllm",
        [{"ttft_seconds": 0.3, "requests_per_second": 20}, {"ttft_seconds": 0.8, "requests_per_second": 20}],
        [{"ttft_seconds": 6.0, "requests_per_second": 20}],
        p95_ttft, 0.03,
    ),
    (
        "concurrency", "sglang",
        [{"running": 2}, {"running": 9}],
        [{"running": 30}],
        lambda vs: sum_of([v["running"] for v in vs]), 0,
    ),
    (
        "tokens", "tgi",
        [{"generation_tokens_per_second": 200, "requests_per_second": 4}, {"generation_tokens_per_second": 600, "requests_per_second": 4}],
        [{"generation_tokens_per_second": 5000, "requests_per_second": 4}],
        lambda vs: sum_of([v["generation_tokens_per_second"] for v in vs]), 0.05,
    ),
]


@pytest.mark.parametrize(
    "strategy,runtime,values_a,values_b,expected,rel",
    CASES,
    ids=[f"{c[1]}-{c[0]}" for c in CASES],
)
def test_trigger_query_reads_what_the_model_servers_report(
    running_ns: str,
    strategy: str,
    runtime: str,
    values_a: list[dict[str, Any]],
    values_b: list[dict[str, Any]],
    expected: Callable[[list[dict[str, Any]]], float],
    rel: float,
) -> None:
    """The ScaledObject's own query, on the real Prometheus, gives the value computed from
    what each pod was set to; a second InferenceService in the namespace with other values
    does not leak into it (nor the other way round)."""
    ns = running_ns
    extra = {} if runtime == "vllm" else {"runtime": runtime}
    apply(annotated("a", ns, strategy, len(values_a), **extra))
    apply(annotated("b", ns, strategy, len(values_b), **extra))
    ips: list[str] = []
    for name, values in (("a", values_a), ("b", values_b)):
        for pod, v in zip(running_pods(ns, name, len(values)), values):
            ip = pod["status"]["podIP"]
            ips.append(ip)
            set_pod_metrics(ip, runtime=runtime, model=name, **v)
    try:
        for name, values in (("a", values_a), ("b", values_b)):
            query = trigger_query(ns, name, strategy)
            wait_close(query, expected(values), rel, f"{runtime} {strategy} of {name}")
    finally:
        for ip in ips:
            reset_pod_metrics(ip)
