"""Admission through the real kube-apiserver: our patch, KServe's webhooks after it, denials,
warnings and dry-run as kubectl shows them."""

from __future__ import annotations

from conftest import (
    UPSTREAM,
    apply,
    get,
    isvc,
    must_get,
    render,
    rendered,
    scaling_annotations,
    subset,
)


def test_create_is_patched_and_stored_as_render_predicts(ns: str) -> None:
    obj = isvc("qwen", ns)
    apply(obj)
    stored = get("inferenceservice", "qwen", ns)
    assert stored is not None
    predicted = rendered(obj, "InferenceService")
    assert scaling_annotations(stored) == scaling_annotations(predicted)
    assert stored["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
    assert stored["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    # KServe's defaulter may add fields (it runs after ours); nothing we set may be lost.
    assert subset(predicted["spec"], stored["spec"]) == []
    if UPSTREAM == "all":
        # KServe's defaulting webhook ran: it fills the protocol version and model defaults.
        assert stored["spec"] != predicted["spec"], "KServe's defaulter left no trace"


def test_denial_reaches_kubectl_with_our_message_intact(ns: str) -> None:
    obj = isvc("bad", ns, {"scaling.io/strategy": "tokens", "scaling.io/max-replica": "3"})
    _, message, code = render(obj)
    assert code != 0
    reason = message.strip().splitlines()[-1].removeprefix("error: ").removeprefix(f"{ns}/bad: ")
    assert "max-replica" in reason
    res = apply(obj, check=False)
    assert res.returncode != 0
    assert 'admission webhook "isvc.scaling.io" denied the request' in res.stderr
    assert reason in res.stderr, f"render said {reason!r}; kubectl said {res.stderr!r}"
    assert get("inferenceservice", "bad", ns) is None


def test_server_dry_run_creates_nothing(ns: str) -> None:
    res = apply(isvc("dry", ns), "--dry-run=server", "-o", "yaml")
    assert "serving.kserve.io/autoscalerClass: external" in res.stdout, "dry run was not mutated"
    assert get("inferenceservice", "dry", ns) is None
    # A real create afterwards gets its ScaledObject; by then the dry run would have had one.
    apply(isvc("real", ns))
    must_get("scaledobject", "real-predictor", ns)
    assert get("scaledobject", "dry-predictor", ns) is None


def test_warnings_reach_kubectl(ns: str) -> None:
    obj = isvc(
        "warned",
        ns,
        {"scaling.io/strategy": "tokens", "autoscaling.knative.dev/target": "10"},
    )
    _, stderr, code = render(obj)
    assert code == 0
    res = apply(obj)
    warnings = [line for line in res.stderr.splitlines() if line.startswith("Warning: ")]
    assert warnings, res.stderr
    assert any("autoscaling.knative.dev" in w for w in warnings), warnings
    # The same text render prints.
    said = [line.removeprefix(f"warning: {ns}/warned: ") for line in stderr.splitlines()]
    for w in warnings:
        assert w.removeprefix("Warning: ") in said, (w, said)
