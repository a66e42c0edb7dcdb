"""Fixtures for the end-to-end tests. They run only under `scripts/e2e test` (or after
`scripts/e2e up`), which builds and starts the control plane and installs the chart."""

from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import product  # noqa: E402
from product import BINARY, kubectl, wait  # noqa: E402

UPSTREAM = os.environ.get("E2E_UPSTREAM", "all")

requires_kserve = pytest.mark.skipif(
    UPSTREAM != "all", reason="KServe is not running (E2E_UPSTREAM=core); run scripts/e2e test"
)
requires_keda = pytest.mark.skipif(
    UPSTREAM != "all", reason="KEDA is not running (E2E_UPSTREAM=core); run scripts/e2e test"
)

# What the chart passes to the binary by default (product.default_values), for `render`.
RENDER_FLAGS = ["--raw-mode", "Standard", "--monitor-label", "release=prometheus"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "exclusive: restarts, upgrades or reconfigures the product (or its RBAC); scripts/e2e "
        "runs these one at a time after the others",
    )
    if not product.ADMIN.exists():
        raise pytest.UsageError(
            f"no control plane at {product.STATE}: run the tests with `scripts/e2e test`"
        )


_counter = itertools.count()


@pytest.fixture
def ns() -> Any:
    """A fresh namespace per test; deleted afterwards (the namespace controller empties it)."""
    name = f"e2e-{next(_counter)}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def running_ns(ns: str) -> str:
    """A fresh namespace whose pods the kubelet stand-in reports Running with a pod IP."""
    import metrics

    metrics.label_running(ns)
    return ns


def isvc(
    name: str,
    namespace: str,
    annotations: dict[str, str] | None = None,
    predictor_name: str | None = None,
) -> dict[str, Any]:
    """An LLM InferenceService on KServe's huggingface runtime (as examples/qwen25-05b.yaml)."""
    predictor: dict[str, Any] = {
        "minReplicas": 1,
        "maxReplicas": 4,
        "model": {
            "modelFormat": {"name": "huggingface"},
            "args": ["--model_name=qwen", "--max-model-len=4096"],
            "storageUri": "hf://Qwen/Qwen2.5-0.5B-Instruct",
            "resources": {
                "requests": {"cpu": "2", "memory": "8Gi"},
                "limits": {"cpu": "4", "memory": "8Gi"},
            },
        },
    }
    if predictor_name:
        predictor["name"] = predictor_name
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"scaling.io/strategy": "tokens"} if annotations is None else annotations,
        },
        "spec": {"predictor": predictor},
    }


def apply(
    obj: dict[str, Any], *flags: str, check: bool = True, as_user: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply` as a user would run it (client-side apply, so the warnings and the
    denial reach the same output a user sees)."""
    return kubectl("apply", "-f", "-", *flags, *(as_user or []), input=yaml.safe_dump(obj), check=check)


def render(obj: dict[str, Any], *flags: str) -> tuple[list[dict[str, Any]], str, int]:
    """`kserve-keda-webhook render` on the same object: documents, stderr, exit code."""
    res = subprocess.run(
        [str(BINARY), "render", "-f", "-", *RENDER_FLAGS, *flags],
        input=yaml.safe_dump(obj),
        capture_output=True,
        text=True,
        timeout=60,
    )
    docs = [d for d in yaml.safe_load_all(res.stdout) if d] if res.returncode == 0 else []
    return docs, res.stderr, res.returncode


def rendered(obj: dict[str, Any], kind: str, *flags: str) -> dict[str, Any]:
    docs, err, code = render(obj, *flags)
    assert code == 0, err
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def get(kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    return product.get(kind, name, namespace)


def must_get(kind: str, name: str, namespace: str, timeout: float = 60) -> dict[str, Any]:
    return wait(f"{kind} {namespace}/{name}", lambda: get(kind, name, namespace), timeout=timeout)


def gone(kind: str, name: str, namespace: str, timeout: float = 60) -> None:
    wait(f"{kind} {namespace}/{name} to be deleted", lambda: get(kind, name, namespace) is None, timeout=timeout)


def events(namespace: str, name: str) -> list[dict[str, Any]]:
    """Events about the object `name` in `namespace` (core/v1 view of events.k8s.io too)."""
    out = json.loads(kubectl("-n", namespace, "get", "events", "-o", "json").stdout)["items"]
    return [e for e in out if e.get("involvedObject", {}).get("name") == name]


def reasons(namespace: str, name: str) -> set[str]:
    return {e.get("reason", "") for e in events(namespace, name)}


def subset(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where `expected` is not contained in `actual` (dict keys recursively, lists exactly)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for k, v in expected.items():
            if k not in actual:
                out.append(f"{path}.{k} missing")
            else:
                out.extend(subset(v, actual[k], f"{path}.{k}"))
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [m for i, (e, a) in enumerate(zip(expected, actual)) for m in subset(e, a, f"{path}[{i}]")]
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"]


def scaling_annotations(obj: dict[str, Any]) -> dict[str, str]:
    """Our annotations and the two KServe ones we set."""
    ann = obj["metadata"].get("annotations") or {}
    return {
        k: v
        for k, v in ann.items()
        if k.startswith("scaling.io/")
        or k in ("serving.kserve.io/autoscalerClass", "serving.kserve.io/deploymentMode")
    }


def deepcopy(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(obj)
