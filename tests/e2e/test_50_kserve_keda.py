"""With the real KServe controller and KEDA: the names and labels we predict are the ones KServe
creates, KServe creates no HPA of its own, KEDA's webhook accepts what we apply and its operator
builds the HPA on the right Deployment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import (
    apply,
    get,
    gone,
    isvc,
    must_get,
    rendered,
    requires_keda,
    requires_kserve,
    wait,
)

pytestmark = [requires_kserve, requires_keda]


def check_predictor(ns: str, name: str, predictor_name: str | None) -> None:
    obj = isvc(name, ns, predictor_name=predictor_name)
    predicted_isvc = rendered(obj, "InferenceService")
    target = predicted_isvc["metadata"]["annotations"]["scaling.io/scale-target"]
    so_name = predicted_isvc["metadata"]["annotations"]["scaling.io/scaled-object"]
    monitor = rendered(obj, "ServiceMonitor")
    apply(obj)

    deploy = must_get("deployment", target, ns, timeout=120)
    service = must_get("service", target, ns, timeout=120)
    for o in (deploy, service):
        labels = o["metadata"]["labels"]
        assert labels["serving.kserve.io/inferenceservice"] == name
        assert labels["component"] == "predictor"
    # The ServiceMonitor selects exactly that Service, and the port it scrapes is declared.
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items()), (selector, service["metadata"]["labels"])
    # The Service forwards to the port the monitor scrapes.
    assert {p["targetPort"] for p in service["spec"]["ports"]} >= scraped_ports(monitor)
    # The pods KServe's Deployment makes carry the labels the PodMonitor relies on.
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["serving.kserve.io/inferenceservice"] == name
    assert pod_labels["component"] == "predictor"

    so = must_get("scaledobject", so_name, ns)
    assert so["spec"]["scaleTargetRef"]["name"] == target
    hpa = must_get("horizontalpodautoscaler", f"keda-hpa-{so_name}", ns, timeout=120)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}
    assert hpa["spec"]["maxReplicas"] == so["spec"]["maxReplicaCount"]
    # KServe made no HPA of its own (autoscalerClass external).
    assert get("horizontalpodautoscaler", target, ns) is None
    wait(
        "ScaledObject Ready condition from the KEDA operator",
        lambda: any(c["type"] == "Ready" for c in get("scaledobject", so_name, ns).get("status", {}).get("conditions", [])),
        timeout=120,
    )


def scraped_ports(monitor: dict[str, Any]) -> set[int]:
    """The ports the monitor's relabelings put into `__address__`."""
    return {
        int(r["replacement"].rsplit(":", 1)[1])
        for e in monitor["spec"]["endpoints"]
        for r in e["relabelings"]
        if r.get("targetLabel") == "__address__"
    }


def test_monitor_does_not_depend_on_a_declared_container_port(ns: str) -> None:
    """KServe 0.20's huggingface runtime declares no container port, and prometheus-operator
    turns any port filter into a keep on declared container ports (which would drop every
    target). The monitor carries none and addresses the pod at the metrics port instead;
    test_60_prometheus.py shows a real Prometheus scraping through it."""
    apply(isvc("llm", ns))
    monitor = rendered(isvc("llm", ns), "ServiceMonitor")
    deploy = must_get("deployment", "llm-predictor", ns, timeout=120)
    (model,) = [c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == "kserve-container"]
    assert not model.get("ports"), model.get("ports")
    for endpoint in monitor["spec"]["endpoints"]:
        assert not {"port", "targetPort", "portNumber"} & endpoint.keys(), endpoint
    assert scraped_ports(monitor) == {8080}


def test_default_predictor_names_labels_and_keda_hpa(ns: str) -> None:
    check_predictor(ns, "llm", None)


def test_named_predictor(ns: str) -> None:
    check_predictor(ns, "llm", "main")


def test_name_cut_to_kedas_limit_works_through_keda(ns: str) -> None:
    name = "a-rather-long-inference-service-name-for-keda"
    assert len(f"{name}-predictor") > 54
    check_predictor(ns, name, None)
    so_name = rendered(isvc(name, ns), "InferenceService")["metadata"]["annotations"]["scaling.io/scaled-object"]
    assert len(so_name) <= 54 and len(f"keda-hpa-{so_name}") <= 63


@pytest.mark.parametrize("predictor_name", [None, "main"])
def test_the_longest_admitted_name_gets_its_deployment_from_kserve(ns: str, predictor_name: str | None) -> None:
    """KServe labels the predictor `app: isvc.<deployment>`, at most 63 characters: the longest
    name the webhook admits still gets its Deployment, and one character more is refused."""
    suffix = f"-{predictor_name}-predictor" if predictor_name else "-predictor"
    longest = 63 - len("isvc.") - len(suffix)
    name = "m" * longest
    deploy = f"{name}{suffix}"
    assert len(f"isvc.{deploy}") == 63
    check_predictor(ns, name, predictor_name)
    assert must_get("deployment", deploy, ns)["spec"]["selector"]["matchLabels"]["app"] == f"isvc.{deploy}"

    too_long = isvc("m" * (longest + 1), ns, predictor_name=predictor_name)
    res = apply(too_long, check=False)
    assert res.returncode != 0, res.stdout
    assert "isvc." in res.stderr and "63" in res.stderr, res.stderr
    assert get("inferenceservice", "m" * (longest + 1), ns) is None


def test_keda_webhook_is_on_the_path(ns: str) -> None:
    """KEDA's own webhook refuses a second ScaledObject on our Deployment, so the acceptance
    above really went through it."""
    apply(isvc("llm", ns))
    must_get("scaledobject", "llm-predictor", ns)
    rival = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "rival", "namespace": ns},
        "spec": {
            "scaleTargetRef": {"name": "llm-predictor"},
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {"serverAddress": "http://127.0.0.1:9", "query": "sum(up)", "threshold": "1"},
                }
            ],
        },
    }
    res = apply(rival, check=False)
    assert res.returncode != 0
    assert "vscaledobject.kb.io" in res.stderr, res.stderr


def test_edit_updates_keda_hpa_and_removal_brings_kserve_hpa_back(ns: str) -> None:
    obj = isvc("llm", ns)
    apply(obj)
    must_get("horizontalpodautoscaler", "keda-hpa-llm-predictor", ns, timeout=120)
    obj["metadata"]["annotations"]["scaling.io/max-replicas"] = "6"
    apply(obj)
    wait(
        "KEDA's HPA maxReplicas 6",
        lambda: get("horizontalpodautoscaler", "keda-hpa-llm-predictor", ns)["spec"]["maxReplicas"] == 6,
        timeout=120,
    )
    obj["metadata"]["annotations"] = {}
    apply(obj)
    gone("scaledobject", "llm-predictor", ns, timeout=120)
    gone("horizontalpodautoscaler", "keda-hpa-llm-predictor", ns, timeout=120)
    hpa = must_get("horizontalpodautoscaler", "llm-predictor", ns, timeout=120)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "llm-predictor"


@pytest.mark.parametrize("kind", ["scaledobject", "servicemonitor"])
def test_managed_fields_show_one_apply_manager(ns: str, kind: str) -> None:
    """What the README says about field ownership: our apply owns spec and our labels; KEDA's
    operator writes only status (and its finalizer) under its own manager."""
    apply(isvc("llm", ns))
    obj = must_get(kind, "llm-predictor", ns)
    if kind == "scaledobject":
        wait("KEDA status", lambda: get(kind, "llm-predictor", ns).get("status"), timeout=120)
        obj = get(kind, "llm-predictor", ns)
    ours = [m for m in obj["metadata"]["managedFields"] if m["manager"] == "kserve-keda-webhook"]
    assert len(ours) == 1 and ours[0]["operation"] == "Apply"
    fields = json.dumps(ours[0]["fieldsV1"])
    assert '"f:spec"' in fields and '"f:ownerReferences"' in fields
    assert '"f:status"' not in fields
    others = [m for m in obj["metadata"]["managedFields"] if m["manager"] != "kserve-keda-webhook"]
    for m in others:
        assert '"f:spec"' not in json.dumps(m.get("fieldsV1", {})), m
