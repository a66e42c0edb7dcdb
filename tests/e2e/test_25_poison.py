"""A poison InferenceService: stored past the webhook (in a namespace the chart's
namespaceSelector excludes) with a `scaling.io/query` the webhook refuses, nested far past the
limit in forms that used to overflow the PromQL parser's stack and abort the process. The
leader warns on each, skips them, stays up, and goes on configuring other InferenceServices."""

from __future__ import annotations

import contextlib
import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import product
import pytest
from conftest import events, get, isvc, kubectl, must_get, wait

# Restarts or reconfigures the product: run alone (scripts/e2e).
pytestmark = pytest.mark.exclusive

DEEP = "levels deep; at most 100 levels are allowed"
LONG = "at most 4096 bytes"
# Form -> (query, what the Warning must say). The first ones are under the size limit and nest
# thousands of levels; the last ones aborted the (debug) binary before the guard.
POISONS = {
    "parens": ("(" * 2000 + "x" + ")" * 2000, DEEP),
    "minus": ("-" * 4000 + "x", DEEP),
    "chain": ("sum(x" + "+x" * 2000 + ")", DEEP),
    "calls": ("sum(" * 800 + "x" + ")" * 800, DEEP),
    "deep-calls": ("sum(" * 20000 + "x" + ")" * 20000, LONG),
    "long-chain": ("sum(x" + "+x" * 20000 + ")", LONG),
}


@contextlib.contextmanager
def replica_log_on_failure(name: str) -> Iterator[None]:
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f"{e}\n---- {product.log_file(name)}\n{product.log_tail(name, 120)}") from None


@pytest.fixture
def excluded_ns() -> Iterator[str]:
    """A namespace the webhook never sees, as an operator configures one with the chart."""
    name = f"e2e-poison-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    before = product.current_values()
    values: dict[str, Any] = copy.deepcopy(before)
    values.setdefault("webhook", {}).setdefault("namespaceSelector", {})["excludeNamespaces"] = [name]
    try:
        product.upgrade(values)
        yield name
    finally:
        product.upgrade(before)
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def poison(name: str, namespace: str, query: str) -> dict[str, Any]:
    return isvc(
        name,
        namespace,
        {
            "serving.kserve.io/deploymentMode": "Standard",
            "scaling.io/strategy": "custom",
            "scaling.io/target": "3",
            "scaling.io/query": query,
        },
    )


def webhook_skips(namespace: str) -> bool:
    """Whether an annotated InferenceService created in `namespace` now goes unseen by the
    webhook: a server-side dry run returns it as admission left it (without the records the
    webhook writes), and the controller never sees it."""
    obj = isvc("probe", namespace, {"serving.kserve.io/deploymentMode": "Standard", "scaling.io/strategy": "queue"})
    out = kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(obj)).stdout
    return "scaling.io/scaled-object" not in json.loads(out)["metadata"]["annotations"]


def warning_about(namespace: str, name: str) -> dict[str, Any] | None:
    for e in events(namespace, name):
        if e.get("reason") == "InvalidScalingRequest":
            return e
    return None


def test_a_poison_isvc_is_warned_skipped_and_the_leader_keeps_serving(ns: str, excluded_ns: str) -> None:
    leader = product.running("a")
    assert leader is not None, "replica a is not running"
    # The log file is appended to across runs: only what this test adds is read.
    log_start = product.log_file("a").stat().st_size
    with replica_log_on_failure("a"):
        # The API server picks up the new namespaceSelector on its own schedule.
        wait(f"the webhook to stop seeing {excluded_ns}", lambda: webhook_skips(excluded_ns), timeout=120, every=2)
        for form, (query, _) in POISONS.items():
            kubectl("create", "-f", "-", input=json.dumps(poison(f"poison-{form}", excluded_ns, query)))
            stored = get("inferenceservice", f"poison-{form}", excluded_ns)
            assert stored["metadata"]["annotations"]["scaling.io/query"] == query

        for form, (_, needle) in POISONS.items():
            event = wait(
                f"an InvalidScalingRequest Warning on poison-{form}",
                lambda form=form: warning_about(excluded_ns, f"poison-{form}"),
                timeout=120,
            )
            assert event["type"] == "Warning", event
            assert "scaling.io/query" in event["message"] and needle in event["message"], event["message"]
            assert get("scaledobject", f"poison-{form}-predictor", excluded_ns) is None
            # Nothing was written back on it either: the controller could not plan it.
            stored = get("inferenceservice", f"poison-{form}", excluded_ns)
            assert "scaling.io/scaled-object" not in stored["metadata"]["annotations"]

        # The same leader, still running, configures an InferenceService created after them.
        kubectl("create", "-f", "-", input=json.dumps(isvc("after", ns)))
        must_get("scaledobject", "after-predictor", ns, timeout=120)
        assert product.running("a") == leader, "replica a restarted"
        with product.log_file("a").open("rb") as f:
            f.seek(log_start)
            log = f.read().decode(errors="replace")
        assert "overflow" not in log and "panicked" not in log, log[-4000:]
