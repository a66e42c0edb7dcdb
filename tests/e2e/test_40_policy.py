"""The chart's `policy` value through the real API server: enforce denies, warn warns, audit
records an Event, and the exemption annotation is refused to users outside allowedGroups
(their identity comes from the API server's own authentication, via impersonation here)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

import product
from conftest import apply, get, isvc, kubectl, must_get, reasons, wait

# Restarts or reconfigures the product: run alone (scripts/e2e).
pytestmark = pytest.mark.exclusive

SUFFIX = uuid.uuid4().hex[:6]
DENY, WARN, AUDIT = f"pol-deny-{SUFFIX}", f"pol-warn-{SUFFIX}", f"pol-audit-{SUFFIX}"
EXEMPT = "policy.scaling.io/exempt"


def policy() -> dict[str, Any]:
    cap = {"maxReplicas": 2}
    return {
        "rules": [
            {"name": "deny-cap", "namespaces": [DENY], "enforcement": "enforce", "limits": cap},
            {"name": "warn-cap", "namespaces": [WARN], "enforcement": "warn", "limits": cap},
            {"name": "audit-cap", "namespaces": [AUDIT], "enforcement": "audit", "limits": cap},
        ],
        "exemptions": {"annotation": EXEMPT, "allowedGroups": ["platform-admins"]},
    }


@pytest.fixture(scope="module", autouse=True)
def with_policy() -> Any:
    for n in (DENY, WARN, AUDIT):
        kubectl("create", "namespace", n)
    # Users who may edit InferenceServices, one of them a platform admin.
    kubectl("create", "clusterrole", f"isvc-editor-{SUFFIX}", "--verb=*",
            "--resource=inferenceservices.serving.kserve.io")
    kubectl("create", "clusterrolebinding", f"isvc-editor-{SUFFIX}", f"--clusterrole=isvc-editor-{SUFFIX}",
            "--group=developers", "--group=platform-admins")
    before = product.current_values()
    try:
        product.upgrade({**before, "policy": policy()})
        # A chart upgrade that changes the container args rolls the pods; the local replica too.
        product.restart("a")
        yield
    finally:
        product.upgrade(before)
        product.stop("a")
        product.start("a")
    for n in (DENY, WARN, AUDIT):
        kubectl("delete", "namespace", n, "--wait=false", check=False)
    kubectl("delete", "clusterrolebinding,clusterrole", f"isvc-editor-{SUFFIX}", check=False)


def too_big(name: str, namespace: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    return isvc(name, namespace, {"scaling.io/strategy": "tokens", "scaling.io/max-replicas": "5", **(extra or {})})


def test_enforce_denies_naming_the_rule() -> None:
    res = apply(too_big("big", DENY), check=False)
    assert res.returncode != 0
    assert "denied by scaling policy: rule 'deny-cap'" in res.stderr, res.stderr
    assert get("inferenceservice", "big", DENY) is None


def test_warn_admits_with_a_warning() -> None:
    res = apply(too_big("big", WARN))
    assert "Warning: policy (warn):" in res.stderr, res.stderr
    so = must_get("scaledobject", "big-predictor", WARN)
    assert so["spec"]["maxReplicaCount"] == 5, "warn mode admits the request as written"


def test_audit_admits_silently_and_records_an_event() -> None:
    res = apply(too_big("big", AUDIT))
    assert "Warning:" not in res.stderr, res.stderr
    must_get("scaledobject", "big-predictor", AUDIT)
    wait("PolicyAudit event", lambda: "PolicyAudit" in reasons(AUDIT, "big"), timeout=60)


def test_exemption_annotation_is_refused_outside_allowed_groups() -> None:
    obj = too_big("exempt", DENY, {EXEMPT: "true"})
    res = apply(obj, check=False, as_user=["--as=dev", "--as-group=developers"])
    assert res.returncode != 0
    assert EXEMPT in res.stderr, res.stderr
    assert get("inferenceservice", "exempt", DENY) is None
    # A platform admin may set it, and the limit no longer applies.
    apply(obj, as_user=["--as=admin", "--as-group=platform-admins"])
    so = must_get("scaledobject", "exempt-predictor", DENY)
    assert so["spec"]["maxReplicaCount"] == 5
    # A developer's later edit that leaves the annotation alone is not blocked by it.
    obj["metadata"]["labels"] = {"team": "search"}
    apply(obj, as_user=["--as=dev", "--as-group=developers"])
    stored = get("inferenceservice", "exempt", DENY)
    assert stored["metadata"]["labels"]["team"] == "search"
    assert json.dumps(stored["metadata"]["annotations"][EXEMPT]) == '"true"'
