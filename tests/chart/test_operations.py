"""Install-day knobs: extra args/env/volumes, security contexts, NetworkPolicy, ServiceMonitor
relabelings, the Grafana dashboard (queries parsed by promtool), uninstall clean-up, helm test."""

from __future__ import annotations

import json
import pathlib
import re
import xml.etree.ElementTree as ET

import yaml

from helm_render import CHART
from promtool import check_rules
from scenarios import EVERYTHING, FULLNAME, NAMESPACE, container, of_kind, one, render_hooks, render_values


def pod_spec(objects):
    return one(objects, "Deployment")["spec"]["template"]["spec"]


def test_extras_reach_the_pod():
    objects = render_values(EVERYTHING)
    c = container(objects)
    args = c["args"]
    assert "--cert-dir=/tmp/certs" == args[-1]
    assert {"--cert-check-interval=600", "--cert-reload-interval=30", "--shutdown-delay=10"} <= set(args)
    assert {"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"} in c["env"]
    assert {"name": "ca", "mountPath": "/etc/corp-ca", "readOnly": True} in c["volumeMounts"]
    assert {"name": "ca", "configMap": {"name": "corp-ca"}} in pod_spec(objects)["volumes"]
    assert one(objects, "Deployment")["spec"]["revisionHistoryLimit"] == 2
    defaults = container(render_values({}))["args"]
    assert not [a for a in defaults if a.startswith(("--cert-check-interval", "--shutdown-delay"))]


def test_security_contexts_are_settable():
    """Helm merges the maps key by key; null removes a key (e.g. for OpenShift's assigned UIDs)."""
    objects = render_values({"podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
                             "securityContext": {"runAsUser": 1001, "runAsGroup": None}})
    assert pod_spec(objects)["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    sc = container(objects)["securityContext"]
    assert sc["runAsUser"] == 1001 and "runAsGroup" not in sc
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}


def test_network_policy():
    assert of_kind(render_values({}), "NetworkPolicy") == []
    policy = one(render_values(EVERYTHING), "NetworkPolicy")
    spec = policy["spec"]
    deployment = one(render_values(EVERYTHING), "Deployment")
    assert spec["podSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    webhook, metrics = spec["ingress"]
    assert webhook["ports"] == [{"port": "https", "protocol": "TCP"}]
    assert webhook["from"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    api, dns = spec["egress"]
    assert [p["port"] for p in api["ports"]] == [443, 6443]
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    # Port names used by the policy exist on the container.
    names = {p["name"] for p in container(render_values(EVERYTHING))["ports"]}
    assert {"https", "metrics"} <= names


def test_service_monitor_relabelings_and_namespace():
    values = {"metrics": {"serviceMonitor": {
        "enabled": True, "namespace": "monitoring",
        "relabelings": [{"targetLabel": "cluster", "replacement": "eu-1"}],
        "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}],
        "targetLabels": ["team"]}}}
    monitor = one(render_values(values), "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["relabelings"] == [{"targetLabel": "cluster", "replacement": "eu-1"}]
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    assert monitor["spec"]["targetLabels"] == ["team"]


def dashboard():
    cm = one(render_values({"metrics": {"grafanaDashboard": {"enabled": True}}}), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = cm["data"].values()
    return json.loads(text)


def test_dashboard_is_grafana_json():
    dash = dashboard()
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 30
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert dash["uid"] and dash["title"]
    variables = {v["name"] for v in dash["templating"]["list"]}
    for panel in dash["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for var in re.findall(r"\$(\w+)", target["expr"]):
                assert var in variables or var.startswith("__"), (panel["title"], var)
    assert of_kind(render_values({}), "ConfigMap") == []


def test_dashboard_covers_what_a_platform_team_watches():
    exprs = " ".join(t["expr"] for p in dashboard()["panels"] for t in p["targets"])
    for metric in ("kserve_keda_webhook_admission_requests_total", "kserve_keda_webhook_admission_duration_seconds_bucket",
                   "kserve_keda_webhook_reconciles_total", "kserve_keda_webhook_managed_objects",
                   "kserve_keda_webhook_policy_findings_total", "keda_scaler_metrics_value",
                   "kube_horizontalpodautoscaler_status_current_replicas"):
        assert metric in exprs, metric


def test_every_dashboard_query_parses_in_prometheus(tmp_path):
    """Grafana variables replaced by sample values, each query becomes a recording rule that
    promtool parses."""
    subst = {"$__rate_interval": "1m", "$__range": "1h", "$namespace": "kkw-system",
             "$model_namespace": "team-a", "$scaledobject": "llm"}
    rules = []
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for k in sorted(subst, key=len, reverse=True):
                expr = expr.replace(k, subst[k])
            rules.append({"record": f"panel:{panel['id']}:{target['refId']}", "expr": expr})
    result = check_rules(tmp_path, [{"name": "dashboard", "rules": rules}])
    assert result.returncode == 0, result.stdout + result.stderr
    # And a broken query is reported.
    rules.append({"record": "broken", "expr": "sum(rate(x[5m])"})
    assert check_rules(tmp_path, [{"name": "dashboard", "rules": rules}]).returncode != 0


def test_uninstall_cleanup_deletes_only_the_certificate_secret():
    hooks = render_hooks({}, "pre-delete")
    role = one(hooks, "Role")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"],
                              "resourceNames": [f"{FULLNAME}-tls"], "verbs": ["delete"]}]
    job = one(hooks, "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["delete", "secret", f"{FULLNAME}-tls"] and "--ignore-not-found" in args
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == one(hooks, "ServiceAccount")["metadata"]["name"]
    # Other certificate modes have no Secret of ours to delete.
    assert render_hooks({"certs": {"mode": "certManager"}}, "pre-delete") == []
    assert render_hooks({"cleanup": {"enabled": False}}, "pre-delete") == []


def test_helm_test_dry_runs_an_annotated_inference_service():
    import yaml

    hooks = render_hooks({"tests": {"namespace": "team-a"}}, "test")
    pod = one(hooks, "Pod")
    args = pod["spec"]["containers"][0]["args"]
    assert args[:2] == ["create", "--dry-run=server"]
    assert "--allow-missing-template-keys=false" in args
    out = [a for a in args if a.startswith("--output=jsonpath=")]
    assert out and "serving\\.kserve\\.io/autoscalerClass" in out[0]
    isvc = yaml.safe_load(one(hooks, "ConfigMap")["data"]["inferenceservice.yaml"])
    assert isvc["kind"] == "InferenceService"
    assert isvc["metadata"]["namespace"] == "team-a"
    assert "scaling.io/strategy" in isvc["metadata"]["annotations"]
    role = one(hooks, "Role")
    assert role["metadata"]["namespace"] == "team-a"
    assert role["rules"] == [{"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
                              "verbs": ["create"]}]
    assert render_hooks({"tests": {"enabled": False}}, "test") == []


def test_chart_metadata_links_this_repository_and_an_icon_it_holds():
    root = pathlib.Path(__file__).resolve().parents[2]
    chart = yaml.safe_load((root / "charts" / "kserve-keda-webhook" / "Chart.yaml").read_text())
    repo = chart["home"]
    assert chart["sources"] == [repo]
    assert all(m["url"] == repo for m in chart["maintainers"])
    raw = repo.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    assert chart["icon"].startswith(raw), chart["icon"]
    icon = root / chart["icon"][len(raw):]
    assert icon.is_file(), f"{icon} is not in the repository"
    svg = ET.parse(icon).getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert svg.get("viewBox") == "0 0 64 64"
