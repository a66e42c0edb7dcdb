"""webhook-config/install.yaml is a fresh render of the chart, and valid on its own."""

from __future__ import annotations

import kubernetes_validate
import yaml

from helm_render import INSTALL_NAMESPACE, INSTALL_YAML, install_yaml


def load():
    return [d for d in yaml.safe_load_all(INSTALL_YAML.read_text()) if d]


def test_install_yaml_is_up_to_date():
    assert INSTALL_YAML.read_text() == install_yaml(), (
        "webhook-config/install.yaml is stale: run scripts/render-webhook-config"
    )


def test_install_yaml_is_self_contained():
    objects = load()
    assert objects[0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": INSTALL_NAMESPACE,
            "labels": {
                "app.kubernetes.io/name": "kserve-keda-webhook",
                "app.kubernetes.io/part-of": "kserve-keda-webhook",
                "pod-security.kubernetes.io/enforce": "restricted",
            },
        },
    }
    assert objects[-1]["kind"] == "MutatingWebhookConfiguration"
    kinds = [o["kind"] for o in objects]
    # No cert-manager and no prometheus-operator dependency.
    assert not any(o["apiVersion"].startswith(("cert-manager.io/", "monitoring.coreos.com/")) for o in objects)
    assert kinds.index("Deployment") < kinds.index("MutatingWebhookConfiguration")
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert "helm.sh/chart" not in labels
        assert labels.get("app.kubernetes.io/managed-by") in (None, "kubectl")
        if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"):
            assert obj["metadata"]["namespace"] == INSTALL_NAMESPACE


def test_install_yaml_uses_self_managed_certs():
    objects = load()
    (config,) = [o for o in objects if o["kind"] == "MutatingWebhookConfiguration"]
    (hook,) = config["webhooks"]
    assert "caBundle" not in hook["clientConfig"]
    assert "annotations" not in config["metadata"]
    assert hook["clientConfig"]["service"]["namespace"] == INSTALL_NAMESPACE
    (expr,) = [e for e in hook["namespaceSelector"]["matchExpressions"]
               if e["key"] == "kubernetes.io/metadata.name"]
    assert expr == {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                    "values": [INSTALL_NAMESPACE, "kube-system"]}
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--cert-mode=self-managed" in args
    assert "--webhook-config=kserve-keda-webhook" in args
    assert config["metadata"]["name"] == "kserve-keda-webhook"


def test_install_yaml_strictly_valid():
    for obj in load():
        kubernetes_validate.validate(obj, "1.33.0", strict=True)
