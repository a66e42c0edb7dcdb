"""Value scenarios the chart is rendered with, and helpers to pick objects out of a render."""

from __future__ import annotations

import base64
import copy
import functools
import json
from typing import Any

from helm_render import render

NAME = "kkw"
NAMESPACE = "kkw-system"
FULLNAME = "kkw-kserve-keda-webhook"

# A syntactically valid base64 PEM; the chart never parses it.
DUMMY_CA = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n"
).decode()

EVERYTHING: dict[str, Any] = {
    "replicaCount": 3,
    "image": {"tag": "0.2.0-rc.1", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "podAnnotations": {"example.com/team": "ml-platform"},
    "podLabels": {"team": "ml-platform"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
    "priorityClassName": "system-cluster-critical",
    "webhook": {
        "failurePolicy": "Ignore",
        "timeoutSeconds": 10,
        "namespaceSelector": {
            "excludeNamespaces": ["monitoring"],
            "matchLabels": {"scaling.io/enabled": "true"},
            "matchExpressions": [
                {"key": "environment", "operator": "NotIn", "values": ["sandbox"]}
            ],
        },
        "objectSelector": {"matchLabels": {"scaling.io/managed": "true"}},
        "matchConditions": {"annotationPrefix": "autoscale.example.com/"},
    },
    "controller": {"namespaces": ["team-a", "team-b"],
                   "leaderElection": {"leaseDuration": "30s", "renewDeadline": "20s", "retryPeriod": "4s"}},
    "config": {
        "prometheusAddress": "https://thanos-query.monitoring.svc:9091",
        "rawMode": "Standard",
        "monitorLabels": {"release": "prometheus"},
        "triggerAuthentication": {
            "kind": "TriggerAuthentication",
            "name": "prom-auth",
            "modes": ["bearer", "tls"],
        },
        "defaultTargets": {"tokens": 1000000, "kv-cache": 0.7, "concurrency": 4},
        "defaultMinReplicas": 1,
        "defaultMaxReplicas": 8,
    },
    "log": {"level": "info,kserve_keda_webhook=debug", "format": "text"},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "policy": {"limits": {"maxReplicas": 20}, "enforcement": "warn"},
    "revisionHistoryLimit": 2,
    "extraArgs": ["--cert-dir=/tmp/certs"],
    "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"}],
    "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/corp-ca", "readOnly": True}],
    "serve": {"certCheckIntervalSeconds": 600, "certReloadIntervalSeconds": 30, "shutdownDelaySeconds": 10},
    "networkPolicy": {"enabled": True, "apiServerIngressPeers": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                      "apiServerEgressPeers": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]},
    "tests": {"namespace": "default"},
}

SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "certManager": {"certs": {"mode": "certManager"}},
    "certManager-issuerRef": {
        "certs": {
            "mode": "certManager",
            "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
        }
    },
    "provided": {
        "certs": {"mode": "provided", "provided": {"secretName": "my-tls", "caBundle": DUMMY_CA}}
    },
    "controller-disabled": {"controller": {"enabled": False}},
    "controller-disabled-provided": {
        "controller": {"enabled": False},
        "certs": {"mode": "provided", "provided": {"secretName": "my-tls", "caBundle": DUMMY_CA}},
    },
    "controller-disabled-certManager": {
        "controller": {"enabled": False},
        "certs": {"mode": "certManager"},
    },
    "single-replica": {"replicaCount": 1},
    "single-replica-no-election": {"replicaCount": 1, "controller": {"leaderElection": {"enabled": False}}},
    "everything": EVERYTHING,
    "everything-certManager": {**EVERYTHING, "certs": {"mode": "certManager"}},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "relabelings": [{"targetLabel": "cluster", "replacement": "eu-1"}],
                               "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*",
                                                      "action": "drop"}],
                               "targetLabels": ["app.kubernetes.io/instance"]},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
        "networkPolicy": {"enabled": True},
    },
}


@functools.lru_cache(maxsize=None)
def _render_cached(values_json: str) -> tuple:
    return tuple(render(json.loads(values_json), name=NAME, namespace=NAMESPACE))


def is_hook(obj: dict[str, Any]) -> bool:
    return "helm.sh/hook" in obj["metadata"].get("annotations", {})


def render_all(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rendered object, Helm hooks included (cached; callers get their own copy)."""
    return copy.deepcopy(list(_render_cached(json.dumps(values, sort_keys=True))))


def render_values(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The release's objects for these values; Helm hooks (clean-up, `helm test`) left out."""
    return [o for o in render_all(values) if not is_hook(o)]


def render_hooks(values: dict[str, Any], hook: str) -> list[dict[str, Any]]:
    """The objects of one Helm hook (pre-delete, test)."""
    return [o for o in render_all(values) if is_hook(o) and o["metadata"]["annotations"]["helm.sh/hook"] == hook]


def cert_mode(values: dict[str, Any]) -> str:
    return values.get("certs", {}).get("mode", "selfManaged")


def controller_enabled(values: dict[str, Any]) -> bool:
    return values.get("controller", {}).get("enabled", True)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]
