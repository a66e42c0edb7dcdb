"""An InferenceService created before the product was installed is configured by the
controller once it runs."""

from __future__ import annotations

import product
import pytest
from conftest import apply, get, isvc, kubectl, must_get, wait

# Restarts or reconfigures the product: run alone (scripts/e2e).
pytestmark = pytest.mark.exclusive


def test_object_created_before_install_is_backfilled(ns: str) -> None:
    config = product.deployment()["metadata"]["name"]
    product.stop("a")
    # Before the install: no webhook configuration, nothing running.
    kubectl("delete", "mutatingwebhookconfiguration", config)
    try:
        early = isvc("early", ns, {"scaling.io/strategy": "tokens", "serving.kserve.io/deploymentMode": "Standard"})
        apply(early)
        stored = get("inferenceservice", "early", ns)
        assert "serving.kserve.io/autoscalerClass" not in stored["metadata"]["annotations"]
    finally:
        # The install: the chart puts its webhook configuration back, the replica starts.
        product.upgrade(product.current_values())
        product.start("a")
    wait(
        "autoscalerClass external added by the controller",
        lambda: get("inferenceservice", "early", ns)["metadata"]["annotations"].get(
            "serving.kserve.io/autoscalerClass"
        )
        == "external",
    )
    must_get("scaledobject", "early-predictor", ns)
    must_get("servicemonitor", "early-predictor", ns)
