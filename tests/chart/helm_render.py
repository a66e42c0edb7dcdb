"""Render the chart with Helm's own engine (helm-python-sdk, no helm binary) and split the
result into Kubernetes objects. Used by the tests and by scripts/render-webhook-config."""

from __future__ import annotations

import pathlib
from typing import Any

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kserve-keda-webhook"
INSTALL_YAML = ROOT / "webhook-config" / "install.yaml"

# Name and namespace of the plain-manifest install in webhook-config/.
INSTALL_NAME = "kserve-keda-webhook"
INSTALL_NAMESPACE = "kserve-keda-webhook"
INSTALL_VALUES: dict[str, Any] = {"certs": {"mode": "selfManaged"}}

# Apply order for kubectl users: what the Deployment needs first, the webhook configuration last
# so the API server does not call a webhook whose pods do not exist yet.
KIND_ORDER = [
    "Namespace",
    "ServiceAccount",
    "ConfigMap",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "Issuer",
    "Certificate",
    "ServiceMonitor",
    "MutatingWebhookConfiguration",
]


def render_files(
    values: dict[str, Any] | None = None,
    name: str = "kkw",
    namespace: str = "kkw-system",
) -> dict[str, str]:
    """Template path -> rendered text, exactly as `helm template` would produce it."""
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=name, namespace=namespace, is_install=True)


def render(
    values: dict[str, Any] | None = None,
    name: str = "kkw",
    namespace: str = "kkw-system",
) -> list[dict[str, Any]]:
    """The rendered Kubernetes objects (NOTES.txt and empty documents left out)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render_files(values, name, namespace).items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def install_yaml() -> str:
    """webhook-config/install.yaml: the chart rendered for kubectl users, with a Namespace."""
    # Helm hooks (uninstall clean-up, `helm test`) mean nothing to kubectl: applied, they would run
    # at once.
    objects = [
        o
        for o in render(INSTALL_VALUES, name=INSTALL_NAME, namespace=INSTALL_NAMESPACE)
        if "helm.sh/hook" not in o["metadata"].get("annotations", {})
    ]
    for obj in objects:
        for meta in (obj["metadata"], obj.get("spec", {}).get("template", {}).get("metadata")):
            if meta and "labels" in meta:
                meta["labels"].pop("helm.sh/chart", None)
                meta["labels"]["app.kubernetes.io/managed-by"] = "kubectl"
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": INSTALL_NAMESPACE,
            "labels": {
                "app.kubernetes.io/name": "kserve-keda-webhook",
                "app.kubernetes.io/part-of": "kserve-keda-webhook",
                # The webhook pods need nothing beyond the restricted Pod Security Standard.
                "pod-security.kubernetes.io/enforce": "restricted",
            },
        },
    }
    objects.insert(0, namespace)
    objects.sort(key=lambda o: KIND_ORDER.index(o["kind"]))  # stable: keeps template order
    header = (
        "# kserve-keda-webhook: plain manifests for `kubectl apply -f`.\n"
        "# Generated from charts/kserve-keda-webhook by scripts/render-webhook-config\n"
        f"# (release {INSTALL_NAME}, namespace {INSTALL_NAMESPACE}, certs.mode selfManaged).\n"
        "# Do not edit by hand: change the chart and run the script again.\n"
    )
    body = "---\n".join(yaml.safe_dump(o, sort_keys=False, width=100) for o in objects)
    return header + "---\n" + body
