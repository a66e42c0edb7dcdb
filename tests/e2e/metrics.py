"""The pod network, the stand-in model servers and the real Prometheus, for tests that need
metrics to flow (scripts/e2e starts them; see its header for the environment it exports).

    running_namespace()                      a namespace whose pods the kubelet stand-in runs
    wait_for_pods_running(ns, selector, n)   exactly n Running, Ready pods with an IP
                                             (deployment=...: and its rollout complete)
    set_pod_metrics(pod_ip, **values)        what that pod's model server reports
    prometheus_query(q)                      instant query on the real Prometheus
    prometheus_value(q)                      the single value of a query, or None
    active_targets(namespace)                Prometheus' active targets of that namespace
    rule_groups()                            the rule groups Prometheus has loaded

Values for set_pod_metrics (e2e/model_servers.py): runtime (vllm, sglang, tgi), model,
running, waiting, kv_cache, generation_tokens_per_second, prompt_tokens_per_second,
requests_per_second (default 1), ttft_seconds, itl_seconds.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from product import kubectl, wait

# The label the kubelet stand-in (e2e/kubelet.py) looks for on namespaces.
RUNNING_LABEL = "e2e.kserve-keda-webhook/pods=running"
PROMETHEUS_URL = os.environ.get("E2E_PROMETHEUS_URL", "")
CONTROL = os.environ.get("E2E_POD_NET_CONTROL", "")
CONTROL_URL = f"http://{CONTROL}:8080"
# Bucket bounds of vLLM's time-to-first-token histogram (what the stand-in and vLLM export).
VLLM_TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                     2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]

requires_pod_network = pytest.mark.skipif(
    not (PROMETHEUS_URL and CONTROL),
    reason="no pod network or Prometheus (E2E_UPSTREAM=core, or not started by scripts/e2e)",
)


def _http(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{method} {url}: {e.code} {e.read().decode(errors='replace')}") from None


def label_running(namespace: str) -> None:
    kubectl("label", "namespace", namespace, RUNNING_LABEL, "--overwrite")


def set_pod_metrics(pod_ip: str, **values: Any) -> dict[str, Any]:
    """Replaces what the model server at `pod_ip` reports; counters keep growing from where
    they are, at the new rates."""
    return _http("PUT", f"{CONTROL_URL}/pods/{pod_ip}", values)


def reset_pod_metrics(pod_ip: str) -> None:
    _http("DELETE", f"{CONTROL_URL}/pods/{pod_ip}")


def serve_port(port: int) -> None:
    """Model servers also answer on `port` (every pod IP)."""
    _http("POST", f"{CONTROL_URL}/ports", {"port": port})


def pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    out = kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "json").stdout
    return json.loads(out)["items"]


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    return (
        status.get("phase") == "Running"
        and bool(status.get("podIP"))
        and any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    )


def _rolled_out(namespace: str, deployment: str, n: int) -> bool:
    """What `kubectl rollout status` checks: the current template's pods, all ready, no others."""
    d = json.loads(kubectl("-n", namespace, "get", "deployment", deployment, "-o", "json").stdout)
    st = d.get("status", {})
    return (
        st.get("observedGeneration") == d["metadata"]["generation"]
        and d["spec"].get("replicas") == n
        and st.get("updatedReplicas") == st.get("readyReplicas") == st.get("replicas") == n
        and not st.get("terminatingReplicas")
    )


def wait_for_pods_running(
    namespace: str, selector: str, n: int, timeout: float = 180, deployment: str | None = None
) -> list[dict[str, Any]]:
    """Exactly `n` pods match `selector`, all Running and Ready with an IP (the namespace must
    carry RUNNING_LABEL); with `deployment`, also that Deployment's rollout is complete, so
    these pods are not about to be replaced."""

    def check() -> list[dict[str, Any]] | None:
        if deployment and not _rolled_out(namespace, deployment, n):
            return None
        found = [p for p in pods(namespace, selector) if not p["metadata"].get("deletionTimestamp")]
        return found if len(found) == n and all(_ready(p) for p in found) else None

    return wait(f"{n} running pods {selector} in {namespace}", check, timeout=timeout)


def prometheus_query(query: str) -> list[dict[str, Any]]:
    url = f"{PROMETHEUS_URL}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    res = _http("GET", url)
    assert res["status"] == "success", res
    return res["data"]["result"]


def prometheus_value(query: str) -> float | None:
    result = prometheus_query(query)
    assert len(result) <= 1, f"{query} returned {len(result)} series: {result}"
    return float(result[0]["value"][1]) if result else None


def active_targets(namespace: str) -> list[dict[str, Any]]:
    res = _http("GET", f"{PROMETHEUS_URL}/api/v1/targets?state=active")
    return [t for t in res["data"]["activeTargets"] if t["labels"].get("namespace") == namespace]


def rule_groups() -> list[dict[str, Any]]:
    res = _http("GET", f"{PROMETHEUS_URL}/api/v1/rules")
    return res["data"]["groups"]


def histogram_quantile(q: float, bounds: list[float], observations: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile over the buckets that `observations` (value, rate)
    fill: linear interpolation inside the bucket where the rank falls."""
    counts = [sum(r for v, r in observations if v <= le) for le in bounds]
    total = sum(r for _, r in observations)
    rank = q * total
    lower, below = 0.0, 0.0
    for le, cum in zip(bounds, counts):
        if cum >= rank:
            return lower + (le - lower) * (rank - below) / (cum - below)
        lower, below = le, cum
    return bounds[-1]
