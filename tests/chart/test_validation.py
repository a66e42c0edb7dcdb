"""Every rendered object is valid Kubernetes: built-in kinds strictly against the API schemas
(kubernetes-validate), CRD kinds field by field (their CRDs are not part of kubernetes-validate)."""

from __future__ import annotations

import kubernetes_validate
import pytest

from scenarios import NAMESPACE, SCENARIOS, one, of_kind, render_all, render_values

# The chart's kubeVersion floor, the version the project's tools validate against, and the newest
# schema kubernetes-validate ships.
KUBE_VERSIONS = ["1.30.0", "1.33.0", kubernetes_validate.utils.latest_version()]
CRD_GROUPS = ("cert-manager.io/", "monitoring.coreos.com/")

BUILT_IN_KINDS = {
    "ServiceAccount",
    "ConfigMap",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "MutatingWebhookConfiguration",
    "NetworkPolicy",
    "Job",
    "Pod",
}
CRD_KINDS = {"Issuer", "Certificate", "ServiceMonitor", "PrometheusRule"}


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_built_in_objects_are_strictly_valid(scenario, kube_version):
    name, _, _ = scenario
    objects = render_all(SCENARIOS[name])  # hooks included
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith(CRD_GROUPS):
            continue
        label = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{label} invalid for Kubernetes {kube_version}: "
                        f"{'/'.join(map(str, e.path))}: {e.message}")
        checked += 1
    assert checked >= 5


def test_only_known_kinds(scenario):
    name, _, _ = scenario
    objects = render_all(SCENARIOS[name])
    kinds = {o["kind"] for o in objects}
    assert kinds <= BUILT_IN_KINDS | CRD_KINDS, kinds - BUILT_IN_KINDS - CRD_KINDS
    # Every namespaced object goes to the release namespace; cluster-scoped ones carry none.
    for obj in objects:
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"):
            assert "namespace" not in obj["metadata"]
        elif obj["metadata"].get("annotations", {}).get("helm.sh/hook") == "test" and obj["kind"] in ("Role", "RoleBinding"):
            # `helm test` grants the dry-run create in the namespace the test InferenceService goes to.
            assert obj["metadata"]["namespace"] == "default", obj["kind"]
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


def test_object_names_are_unique_per_kind(scenario):
    _, _, objects = scenario
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys))


def test_standard_labels(scenario):
    name, _, _ = scenario
    objects = render_all(SCENARIOS[name])
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "kserve-keda-webhook"
        assert labels["app.kubernetes.io/instance"] == "kkw"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "kserve-keda-webhook-0.1.0"
        assert "app.kubernetes.io/version" in labels


def test_service_monitor_fields():
    objects = render_values({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = one(objects, "Service")
    # The selector picks the chart's Service, and the endpoint names one of its ports.
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "30s"
    assert endpoint["scrapeTimeout"] == "10s"
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}


def test_no_service_monitor_by_default():
    assert of_kind(render_values({}), "ServiceMonitor") == []
