"""values.schema.json rejects bad values at install time, and the chart lints clean."""

from __future__ import annotations

import json

import helm_python as helm
import pytest

from helm_render import CHART, render, render_files
from scenarios import NAMESPACE, SCENARIOS, render_values


@pytest.mark.parametrize(
    "values, path",
    [
        ({"certs": {"mode": "bogus"}}, "/certs/mode"),
        ({"webhook": {"failurePolicy": "Maybe"}}, "/webhook/failurePolicy"),
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"webhook": {"timeoutSeconds": 31}}, "/webhook/timeoutSeconds"),
        ({"webhook": {"timeoutSeconds": 0}}, "/webhook/timeoutSeconds"),
        ({"config": {"rawMode": "Serverless"}}, "/config/rawMode"),
        ({"log": {"format": "xml"}}, "/log/format"),
        ({"config": {"defaultTargets": {"rps": 3}}}, "/config/defaultTargets"),
        ({"config": {"defaultTargets": {"tokens": "fast"}}}, "/config/defaultTargets/tokens"),
        ({"config": {"defaultTargets": {"tokens": 0}}}, "/config/defaultTargets/tokens"),
        ({"config": {"triggerAuthentication": {"modes": ["kerberos"]}}}, "/config/triggerAuthentication/modes"),
        ({"config": {"triggerAuthentication": {"kind": "Secret"}}}, "/config/triggerAuthentication/kind"),
        ({"config": {"prometheusAddress": "prometheus:9090"}}, "/config/prometheusAddress"),
        ({"webhook": {"matchConditions": {"annotationPrefix": "x') || true || ('"}}},
         "/webhook/matchConditions/annotationPrefix"),
        ({"webhook": {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Equals"}]}}},
         "/webhook/namespaceSelector/matchExpressions"),
        ({"controller": {"namespaces": ["Team_A"]}}, "/controller/namespaces"),
        ({"metrics": {"port": 8443}}, "/metrics/port"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"certs": {"certManager": {"duration": "90 days"}}}, "/certs/certManager/duration"),
        ({"webhook": {"url": "http://127.0.0.1:8443/mutate"}}, "/webhook/url"),
        ({"webhook": {"url": "https://user@host/mutate"}}, "/webhook/url"),
        ({"webhook": {"url": "https://host/mutate?a=b"}}, "/webhook/url"),
        ({"webhook": {"url": "https://host/mutate#frag"}}, "/webhook/url"),
        ({"policy": {"limits": {"customQueryNamespace": "mine"}}}, "/policy/limits/customQueryNamespace"),
        ({"policy": {"limits": {"allowedPrometheusAddresses": []}}}, "/policy/limits/allowedPrometheusAddresses"),
        ({"policy": {"limits": {"maxReplicas": 3000000000}}}, "/policy/limits/maxReplicas"),
        ({"policy": {"rules": [{"name": "a", "namespaceSelector": {}}]}}, "/policy/rules/0/namespaceSelector"),
        ({"policy": {"rules": [{"name": "a", "namespaces": ["Team_A"]}]}}, "/policy/rules/0/namespaces/0"),
        ({"policy": {"rules": [{"name": "a", "namespaceSelector": {"matchExpressions": [
            {"key": "t", "operator": "Equals"}]}}]}}, "/policy/rules/0/namespaceSelector/matchExpressions/0/operator"),
    ],
)
def test_schema_rejects_bad_values(values, path):
    with pytest.raises(helm.HelmValuesError) as err:
        render_values(values)
    assert path in str(err.value)


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": 2, "bogusTopLevel": 1},
        {"webhook": {"failurePolicyy": "Fail"}},
        {"certs": {"mode": "provided", "provided": {"secret": "x"}}},
        {"config": {"prometheusURL": "http://p:9090"}},
        {"controller": {"enable": False}},
        {"metrics": {"serviceMonitor": {"enable": True}}},
        {"log": {"levels": "debug"}},
        {"image": {"name": "x"}},
        # A selector typo used to select every namespace; a limit typo was ignored.
        {"policy": {"rules": [{"name": "a", "namespaceSelector": {"matchLabel": {"tier": "gold"}}}]}},
        {"policy": {"limits": {"maxReplica": 4}}},
        {"policy": {"rules": [{"name": "a", "limits": {"customQueryNamespaces": "own"}}]}},
    ],
)
def test_schema_rejects_unknown_keys(values):
    """A misspelt key fails instead of being silently ignored."""
    with pytest.raises(helm.HelmValuesError) as err:
        render_values(values)
    assert "additional properties" in str(err.value).lower()


def test_schema_accepts_every_scenario_and_defaults():
    with helm.Chart.load(str(CHART)) as chart:
        for values in SCENARIOS.values():
            chart.validate_schema(values)
        schema = chart.schema
    assert schema["additionalProperties"] is False
    for key in ("image", "certs", "webhook", "controller", "config", "log", "metrics", "serviceAccount"):
        assert schema["properties"][key]["additionalProperties"] is False, key
    assert schema["properties"]["certs"]["properties"]["mode"]["enum"] == ["selfManaged", "certManager", "provided"]
    assert schema["properties"]["webhook"]["properties"]["timeoutSeconds"]["maximum"] == 30


def test_schema_file_is_valid_json():
    text = (CHART / "values.schema.json").read_text()
    assert json.loads(text)["$schema"].startswith("http://json-schema.org/")


def test_defaults():
    with helm.Chart.load(str(CHART)) as chart:
        assert chart.name == "kserve-keda-webhook"
        assert chart.metadata["apiVersion"] == "v2"
        values = chart.values
    assert values["certs"]["mode"] == "selfManaged"
    assert values["webhook"]["failurePolicy"] == "Fail"
    assert values["webhook"]["timeoutSeconds"] == 5
    assert values["replicaCount"] == 2
    assert values["config"]["prometheusAddress"] == "http://prometheus-operated.monitoring.svc:9090"
    assert values["config"]["rawMode"] == "RawDeployment"
    assert values["log"]["format"] == "json"
    assert values["controller"]["enabled"] is True
    assert values["image"]["repository"] == "ghcr.io/kserve-keda-webhook/kserve-keda-webhook"


@pytest.mark.parametrize("name", ["default", "certManager", "provided", "controller-disabled", "everything"])
def test_lint_passes(name):
    report = helm.lint(str(CHART), SCENARIOS[name], strict=True, namespace=NAMESPACE,
                       kube_version="v1.33.0")
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert problems == []


def test_lint_catches_bad_values():
    """The lint call really checks: bad values produce an error finding."""
    report = helm.lint(str(CHART), {"certs": {"mode": "bogus"}}, strict=True, namespace=NAMESPACE)
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"])


def test_full_name_truncation_and_override():
    long_name = "a-very-long-release-name-that-goes-on-and-on-for-ever"  # 53 chars: Helm's max
    objects = render_values({"fullnameOverride": "kkw"})
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"} == {"kkw"}
    for obj in render({}, name=long_name, namespace=NAMESPACE):
        assert len(obj["metadata"]["name"]) <= 63
        assert not obj["metadata"]["name"].endswith("-")


def test_notes_tell_what_to_annotate_and_how_to_check():
    notes = render_files({})["kserve-keda-webhook/templates/NOTES.txt"]
    assert "scaling.io/strategy: tokens" in notes
    assert "kind: InferenceService" in notes
    assert "kubectl get scaledobject,servicemonitor -n" in notes
    assert "kkw-system and kube-system" in notes  # where it does not apply
    disabled = render_files({"controller": {"enabled": False}})["kserve-keda-webhook/templates/NOTES.txt"]
    assert "controller.enabled=false" in disabled
