"""Two replicas against the real Lease, and the self-managed certificate mode against the real
MutatingWebhookConfiguration. Last in the run: they restart the product."""

from __future__ import annotations

import json
import signal
import ssl
import time
from typing import Any

import pytest

import product
from conftest import apply, get, isvc, kubectl, must_get, wait

# Restarts or reconfigures the product: run alone (scripts/e2e).
pytestmark = pytest.mark.exclusive

LEASE = "kserve-keda-webhook"
LEASE_SECONDS = 15


def holder() -> str | None:
    lease = get("lease", LEASE, product.NAMESPACE)
    return (lease or {}).get("spec", {}).get("holderIdentity")


@pytest.fixture
def two_replicas() -> Any:
    yield
    product.stop("b")
    if product.running("a") is None:
        product.start("a")


def test_killed_leader_is_replaced_within_the_lease(ns: str, two_replicas: None) -> None:
    apply(isvc("ha", ns))
    must_get("scaledobject", "ha-predictor", ns)
    assert wait("replica a to hold the Lease", lambda: holder() == "e2e-replica-a")
    product.start("b")
    # b is a follower: ready, and the Lease stays with a.
    assert holder() == "e2e-replica-a"
    killed = time.monotonic()
    product.stop("a", signal.SIGKILL)
    wait("replica b to take the Lease", lambda: holder() == "e2e-replica-b", timeout=LEASE_SECONDS * 3)
    took = time.monotonic() - killed
    # It waits a full lease duration after the last renewal, and not much more.
    assert took < LEASE_SECONDS * 2 + 5, took
    # The new leader reconciles: a hand edit is repaired by b.
    kubectl("-n", ns, "patch", "scaledobject", "ha-predictor", "--type", "merge",
            "-p", json.dumps({"spec": {"maxReplicaCount": 11}}))
    wait("b to repair the edit", lambda: get("scaledobject", "ha-predictor", ns)["spec"]["maxReplicaCount"] == 4)


def served_certificate(port: int) -> bytes:
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=5)
    return ssl.PEM_cert_to_DER_cert(pem)


def ca_bundle() -> str | None:
    config = get("mutatingwebhookconfiguration", product.deployment()["metadata"]["name"])
    return config["webhooks"][0]["clientConfig"].get("caBundle")


def wipe_ca_bundle() -> None:
    kubectl("patch", "mutatingwebhookconfiguration", product.deployment()["metadata"]["name"], "--type", "json",
            "-p", json.dumps([{"op": "remove", "path": "/webhooks/0/clientConfig/caBundle"}]))


@pytest.fixture
def self_managed() -> Any:
    before = product.current_values()
    values = json.loads(json.dumps(before))
    values["certs"] = {"mode": "selfManaged"}
    try:
        product.stop("a")
        product.upgrade(values)
        yield
    finally:
        product.stop("b")
        product.stop("a")
        # caBundle belongs to the binary's field manager; the chart's provided mode sets it
        # too, and Helm's server-side apply would refuse the upgrade on that conflict.
        wipe_ca_bundle()
        product.upgrade(before)
        product.start("a")


def test_self_managed_certificate_is_shared_published_and_restored(ns: str, self_managed: None) -> None:
    # The chart passes the webhook url, so the certificate names 127.0.0.1.
    args = product.deployment()["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--webhook-url={product.WEBHOOK_URL}" in args, args
    product.start("a")
    product.start("b")
    secret_name = next(a.split("=", 1)[1] for a in args if a.startswith("--cert-secret="))
    secret = must_get("secret", secret_name, product.NAMESPACE)
    # Both replicas serve the one certificate from the Secret.
    a = served_certificate(product.REPLICAS["a"][0])
    b = served_certificate(product.REPLICAS["b"][0])
    assert a == b
    published = wait("the CA bundle in the webhook configuration", ca_bundle)
    assert published == secret["data"]["ca-bundle.crt"]
    # The API server trusts it: an annotated create goes through our webhook.
    apply(isvc("tls", ns))
    assert get("inferenceservice", "tls", ns)["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
    # A wiped caBundle comes back.
    wipe_ca_bundle()
    wait("the CA bundle to be published again", lambda: ca_bundle() == published, timeout=60)
    config = get("mutatingwebhookconfiguration", product.deployment()["metadata"]["name"])
    managers = {
        m["manager"] for m in config["metadata"]["managedFields"] if "f:caBundle" in json.dumps(m["fieldsV1"])
    }
    assert managers == {"kserve-keda-webhook"}, managers
