"""Certificate modes: what each one renders, and clear failures for missing provided values."""

from __future__ import annotations

import helm_python as helm
import pytest

from scenarios import DUMMY_CA, FULLNAME, NAMESPACE, SCENARIOS, cert_mode, of_kind, one, render_values


def test_cert_manager_objects_only_in_cert_manager_mode(scenario):
    _, values, objects = scenario
    certificates = of_kind(objects, "Certificate")
    if cert_mode(values) == "certManager":
        assert len(certificates) == 1
    else:
        assert certificates == []
        assert of_kind(objects, "Issuer") == []


def test_cert_manager_certificate():
    objects = render_values(SCENARIOS["certManager"])
    certificate = one(objects, "Certificate")
    issuer = one(objects, "Issuer")
    assert certificate["apiVersion"] == issuer["apiVersion"] == "cert-manager.io/v1"
    assert issuer["spec"] == {"selfSigned": {}}
    spec = certificate["spec"]
    assert certificate["metadata"]["name"] == f"{FULLNAME}-serving-cert"
    assert spec["secretName"] == f"{FULLNAME}-tls"
    # The name the API server dials: <service>.<namespace>.svc
    assert f"{FULLNAME}.{NAMESPACE}.svc" in spec["dnsNames"]
    assert spec["duration"] == "2160h"
    assert spec["renewBefore"] == "360h"
    assert spec["issuerRef"] == {
        "name": issuer["metadata"]["name"],
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    assert "server auth" in spec["usages"]
    # The webhook configuration's inject-ca-from points at this Certificate.
    config = one(objects, "MutatingWebhookConfiguration")
    ref = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert ref == f"{certificate['metadata']['namespace']}/{certificate['metadata']['name']}"
    # And the pod mounts the Secret the Certificate writes.
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": spec["secretName"], "defaultMode": 0o440}} in volumes


def test_cert_manager_user_issuer():
    objects = render_values(SCENARIOS["certManager-issuerRef"])
    assert of_kind(objects, "Issuer") == []
    assert one(objects, "Certificate")["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


def test_cert_manager_durations_configurable():
    objects = render_values(
        {"certs": {"mode": "certManager", "certManager": {"duration": "720h", "renewBefore": "72h"}}}
    )
    spec = one(objects, "Certificate")["spec"]
    assert (spec["duration"], spec["renewBefore"]) == ("720h", "72h")


def test_self_managed_secret_name_configurable():
    objects = render_values({"certs": {"selfManaged": {"secretName": "webhook-serving"}}})
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--cert-secret=webhook-serving" in container["args"]
    role = one(objects, "Role")
    assert {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["webhook-serving"],
            "verbs": ["get", "update"]} in role["rules"]


@pytest.mark.parametrize(
    "provided, message",
    [
        ({"caBundle": DUMMY_CA}, "certs.provided.secretName is required when certs.mode=provided"),
        ({"secretName": "my-tls"}, "certs.provided.caBundle is required when certs.mode=provided"),
        ({}, "certs.provided."),
    ],
)
def test_provided_mode_requires_secret_and_ca(provided, message):
    with pytest.raises(helm.HelmRenderError) as err:
        render_values({"certs": {"mode": "provided", "provided": provided}})
    assert message in str(err.value)


def test_provided_ca_bundle_must_be_base64():
    with pytest.raises(helm.HelmValuesError) as err:
        render_values({"certs": {"mode": "provided",
                                 "provided": {"secretName": "s", "caBundle": "-----BEGIN CERTIFICATE-----"}}})
    assert "/certs/provided/caBundle" in str(err.value)
