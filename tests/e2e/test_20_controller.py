"""The controller as the chart's ServiceAccount: server-side apply, owner references, RBAC,
and the whole lifecycle of the generated objects against the real API server and garbage
collector."""

from __future__ import annotations

import json

import product
import pytest
from conftest import (
    apply,
    get,
    gone,
    isvc,
    kubectl,
    must_get,
    reasons,
    rendered,
    subset,
    wait,
)

FIELD_MANAGER = "kserve-keda-webhook"


def owned_by(obj: dict, owner: dict) -> bool:
    refs = obj["metadata"].get("ownerReferences") or []
    return any(r["uid"] == owner["metadata"]["uid"] and r.get("controller") for r in refs)


def test_objects_are_applied_as_the_chart_service_account_with_owner_references(ns: str) -> None:
    obj = isvc("llm", ns)
    apply(obj)
    owner = must_get("inferenceservice", "llm", ns)
    so = must_get("scaledobject", "llm-predictor", ns)
    sm = must_get("servicemonitor", "llm-predictor", ns)
    for generated, kind in ((so, "ScaledObject"), (sm, "ServiceMonitor")):
        assert owned_by(generated, owner), generated["metadata"]
        predicted = rendered(obj, kind)
        assert subset(predicted["spec"], generated["spec"]) == []
        assert subset(predicted["metadata"]["labels"], generated["metadata"]["labels"]) == []
        managers = {(m["manager"], m["operation"]) for m in generated["metadata"]["managedFields"]}
        assert (FIELD_MANAGER, "Apply") in managers, managers
    # The generation the controller planned from is recorded on the ScaledObject, by our
    # apply; nothing is written on the InferenceService, whose annotations KServe copies into
    # the pod template (a write there would restart the model servers).
    generation = str(owner["metadata"]["generation"])
    assert so["metadata"]["annotations"]["scaling.io/observed-generation"] == generation
    record = next(
        m for m in so["metadata"]["managedFields"]
        if "scaling.io/observed-generation" in json.dumps(m["fieldsV1"])
    )
    assert (record["manager"], record["operation"]) == (FIELD_MANAGER, "Apply")
    stored = get("inferenceservice", "llm", ns)
    assert "scaling.io/observed-generation" not in stored["metadata"]["annotations"]
    assert {m["manager"] for m in stored["metadata"]["managedFields"]} & {FIELD_MANAGER} == set()
    # The writes really came from the ServiceAccount's token (no admin fallback).
    sa = product.service_account()
    user = f"system:serviceaccount:{product.NAMESPACE}:{sa}"
    who = kubectl("auth", "whoami", "-o", "json", kubeconfig=product.STATE / "product" / "sa.kubeconfig")
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == user


def test_chart_rbac_is_exactly_what_the_controller_needs() -> None:
    sa = f"system:serviceaccount:{product.NAMESPACE}:{product.service_account()}"

    def can(*args: str) -> bool:
        return kubectl("auth", "can-i", *args, "--as", sa, check=False).stdout.strip() == "yes"

    for verb in ("create", "patch", "delete", "list", "watch"):
        assert can(verb, "scaledobjects.keda.sh", "-A"), verb
        assert can(verb, "servicemonitors.monitoring.coreos.com", "-A"), verb
    assert can("update", "inferenceservices.serving.kserve.io", "--subresource=finalizers", "-A")
    # Nothing beyond: it may not touch Deployments or other people's Secrets.
    assert not can("patch", "deployments.apps", "-A")
    assert not can("get", "secrets", "-n", "default")


@pytest.mark.exclusive
def test_a_missing_verb_fails_the_reconcile(ns: str) -> None:
    """Take `create` on ScaledObjects away from the chart's ClusterRole: the controller, running
    with the ServiceAccount's token, can no longer apply and says so; the upgrade restores it."""
    roles = json.loads(
        kubectl("get", "clusterrole", "-l", f"app.kubernetes.io/instance={product.RELEASE}", "-o", "json").stdout
    )["items"]
    (role,) = [r for r in roles if any("scaledobjects" in rule.get("resources", []) for rule in r["rules"])]
    name = role["metadata"]["name"]
    # Helm applies server-side; its field manager is the one with the Apply operation.
    (helm_manager,) = {
        m["manager"]
        for m in json.loads(kubectl("get", "clusterrole", name, "-o", "json", "--show-managed-fields").stdout)[
            "metadata"
        ]["managedFields"]
        if m["operation"] == "Apply"
    }
    for meta in ("resourceVersion", "managedFields", "uid", "creationTimestamp"):
        role["metadata"].pop(meta, None)
    original = json.dumps(role)
    for rule in role["rules"]:
        if "scaledobjects" in rule.get("resources", []):
            rule["verbs"] = [v for v in rule["verbs"] if v not in ("create", "patch")]
    kubectl("replace", "-f", "-", input=json.dumps(role))
    try:
        apply(isvc("denied", ns))
        wait("ReconcileFailed event", lambda: "ReconcileFailed" in reasons(ns, "denied"), timeout=60)
        assert get("scaledobject", "denied-predictor", ns) is None
    finally:
        # Give the rules back to Helm: the replace above made `kubectl-replace` their owner, and
        # the next `helm upgrade` that changes them would fail on that conflict.
        kubectl("apply", "--server-side", "--force-conflicts", f"--field-manager={helm_manager}",
                "-f", "-", input=original)
    # Any change to the InferenceService brings a reconcile without waiting for the backoff.
    kubectl("-n", ns, "annotate", "inferenceservice", "denied", "e2e/poke=1")
    must_get("scaledobject", "denied-predictor", ns, timeout=120)


def test_annotation_edit_updates_the_scaled_object(ns: str) -> None:
    obj = isvc("edit", ns)
    apply(obj)
    must_get("scaledobject", "edit-predictor", ns)
    obj["metadata"]["annotations"]["scaling.io/max-replicas"] = "7"
    apply(obj)
    wait(
        "maxReplicaCount 7",
        lambda: (get("scaledobject", "edit-predictor", ns) or {}).get("spec", {}).get("maxReplicaCount") == 7,
    )


def test_removing_the_strategy_deletes_our_objects(ns: str) -> None:
    obj = isvc("off", ns)
    apply(obj)
    must_get("scaledobject", "off-predictor", ns)
    must_get("servicemonitor", "off-predictor", ns)
    obj["metadata"]["annotations"] = {}
    res = apply(obj)
    assert "Warning:" in res.stderr, "the user is told KServe's HPA takes over"
    stored = get("inferenceservice", "off", ns)
    assert "serving.kserve.io/autoscalerClass" not in stored["metadata"]["annotations"]
    assert "scaling.io/scaled-object" not in stored["metadata"]["annotations"]
    # The frozen mode stays.
    assert stored["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    gone("scaledobject", "off-predictor", ns)
    gone("servicemonitor", "off-predictor", ns)


def test_deleting_the_inference_service_garbage_collects_our_objects(ns: str) -> None:
    apply(isvc("bye", ns))
    must_get("scaledobject", "bye-predictor", ns)
    must_get("servicemonitor", "bye-predictor", ns)
    kubectl("-n", ns, "delete", "inferenceservice", "bye", "--wait=false")
    gone("inferenceservice", "bye", ns, timeout=120)
    gone("scaledobject", "bye-predictor", ns, timeout=120)
    gone("servicemonitor", "bye-predictor", ns, timeout=120)


def test_hand_edited_scaled_object_is_repaired(ns: str) -> None:
    apply(isvc("drift", ns))
    so = must_get("scaledobject", "drift-predictor", ns)
    want = so["spec"]["maxReplicaCount"]
    kubectl("-n", ns, "patch", "scaledobject", "drift-predictor", "--type", "merge",
            "-p", json.dumps({"spec": {"maxReplicaCount": want + 5}}))
    wait(
        "the edit to be reverted",
        lambda: get("scaledobject", "drift-predictor", ns)["spec"]["maxReplicaCount"] == want,
    )
    kubectl("-n", ns, "delete", "servicemonitor", "drift-predictor")
    must_get("servicemonitor", "drift-predictor", ns)


def test_user_owned_scaled_object_with_our_name_is_never_touched(ns: str) -> None:
    mine = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "taken-predictor", "namespace": ns},
        "spec": {
            "scaleTargetRef": {"name": "someone-else"},
            "maxReplicaCount": 9,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {"serverAddress": "http://127.0.0.1:9", "query": "sum(up)", "threshold": "1"},
                }
            ],
        },
    }
    # KEDA's webhook checks that the target exists.
    kubectl("-n", ns, "create", "deployment", "someone-else", "--image=registry.invalid/app:1")
    apply(mine)
    before = get("scaledobject", "taken-predictor", ns)
    apply(isvc("taken", ns))
    wait("NameConflict event", lambda: "NameConflict" in reasons(ns, "taken"), timeout=60)
    after = get("scaledobject", "taken-predictor", ns)
    # KEDA's operator may write its status and finalizer; we write nothing.
    assert after["spec"] == before["spec"]
    assert after["metadata"].get("labels") == before["metadata"].get("labels")
    assert not after["metadata"].get("ownerReferences")
    assert FIELD_MANAGER not in {m["manager"] for m in after["metadata"]["managedFields"]}
    # And deleting the InferenceService leaves it alone too.
    kubectl("-n", ns, "delete", "inferenceservice", "taken", "--wait=false")
    gone("inferenceservice", "taken", ns, timeout=120)
    assert get("scaledobject", "taken-predictor", ns) is not None
