"""The webhook's own PrometheusRule: rendered by Helm, each alert checked with `promtool test
rules` (it fires on the failure it names and stays quiet otherwise)."""

from __future__ import annotations

import pytest

from promtool import check_rules, run_rule_tests
from scenarios import FULLNAME, NAMESPACE, of_kind, one, render_values

SEL = f'job="{FULLNAME}", namespace="{NAMESPACE}", instance="10.0.0.7:9090"'
M = "kserve_keda_webhook"


def rule_groups(values=None):
    values = values or {}
    rule_values = {**values.get("metrics", {}).get("prometheusRule", {}), "enabled": True}
    merged = {**values, "metrics": {"prometheusRule": rule_values}}
    rule = one(render_values(merged), "PrometheusRule")
    return rule["spec"]["groups"]


def alerts_of(groups):
    return {r["alert"]: r for g in groups for r in g["rules"]}


def case(alert, series, quiet_at, fire_at, labels=None, interval="1m"):
    return alert, {"series": series, "quiet": quiet_at, "fire": fire_at, "labels": labels or {},
                   "interval": interval}


CASES = dict([
    case("KserveKedaWebhookDown",
         {f"up{{{SEL}}}": "1x10 0x20", f'up{{job="other", namespace="{NAMESPACE}"}}': "1x30"},
         ["8m"], ["25m"], {"severity": "critical"}),
    case("KserveKedaWebhookCallErrors",
         {'apiserver_admission_webhook_rejection_count{name="isvc.scaling.io", type="admit", operation="CREATE",'
          ' error_type="calling_webhook_error", rejection_code="0"}': "0x10 0+5x20",
          'apiserver_admission_webhook_rejection_count{name="other.example.com", type="admit", operation="CREATE",'
          ' error_type="calling_webhook_error", rejection_code="0"}': "0+5x30"},
         ["8m"], ["25m"], {"severity": "critical"}),
    case("KserveKedaWebhookInvalidReviews",
         {f'{M}_admission_requests_total{{{SEL}, outcome="invalid"}}': "0x10 0+1x30",
          f'{M}_admission_requests_total{{{SEL}, outcome="patched"}}': "0+20x40"},
         ["9m", "18m"], ["35m"], {"severity": "warning"}),
    case("KserveKedaWebhookAdmissionSlow",
         {f'{M}_admission_duration_seconds_bucket{{{SEL}, le="0.1"}}': "0+10x20 200x30",
          f'{M}_admission_duration_seconds_bucket{{{SEL}, le="0.5"}}': "0+10x50",
          f'{M}_admission_duration_seconds_bucket{{{SEL}, le="+Inf"}}': "0+10x50"},
         ["15m"], ["45m"], {"severity": "warning"}),
    case("KserveKedaWebhookDenialsSpike",
         {f'{M}_admission_requests_total{{{SEL}, outcome="denied"}}': "0+1x20 20+5x40",
          f'{M}_admission_requests_total{{{SEL}, outcome="patched"}}': "0+10x60",
          # Unannotated objects skipped in bulk must not hide the spike.
          f'{M}_admission_requests_total{{{SEL}, outcome="skipped"}}': "0+1000x60"},
         ["18m"], ["58m"], {"severity": "warning"}),
    case("KserveKedaWebhookReconcileErrors",
         {f'{M}_reconciles_total{{{SEL}, result="error"}}': "0x10 0+1x40",
          f'{M}_reconciles_total{{{SEL}, result="success"}}': "0+5x50"},
         ["8m", "20m"], ["40m"], {"severity": "warning"}),
    case("KserveKedaWebhookPolicyReloadFailed",
         {f'{M}_policy_reloads_total{{{SEL}, result="error"}}': "0x10 1x30",
          f'{M}_policy_reloads_total{{{SEL}, result="success"}}': "0+1x40"},
         ["8m", "35m"], ["15m"], {"severity": "warning"}),
    case("KserveKedaWebhookCertificateReloadFailed",
         {f'{M}_certificate_reloads_total{{{SEL}, result="error"}}': "0x10 1x30",
          f'{M}_certificate_reloads_total{{{SEL}, result="success"}}': "0+1x40"},
         ["8m", "35m"], ["15m"], {"severity": "warning"}),
    case("KserveKedaWebhookNoLeader",
         # Replica a leads for 10 minutes, then nobody does; b never leads. Another release's
         # leader does not count.
         {f'{M}_leader{{{SEL}, pod="a"}}': "1x10 0x30",
          f'{M}_leader{{{SEL}, pod="b"}}': "0x40",
          f'{M}_leader{{job="other", namespace="{NAMESPACE}", pod="c"}}': "1x40"},
         ["8m", "14m"], ["25m"], {"severity": "warning"}),
    case("KserveKedaWebhookCertificateExpiresSoon",
         # Replica a's certificate expires 7 days and 1 hour after the start: inside the 7-day
         # window from 1h on; b's a year later; another job's at once.
         {f'{M}_certificate_expiry_timestamp_seconds{{{SEL}, pod="a"}}': "608400x60",
          f'{M}_certificate_expiry_timestamp_seconds{{{SEL}, pod="b"}}': "31536000x60",
          f'{M}_certificate_expiry_timestamp_seconds{{job="other", namespace="{NAMESPACE}"}}': "0x60"},
         ["30m", "90m"], ["150m"], {"severity": "warning"},
         interval="5m"),
])


def test_every_alert_has_a_promtool_case():
    for mode in ("selfManaged", "certManager", "provided"):
        values = {"certs": {"mode": mode}} if mode != "provided" else {
            "certs": {"mode": mode, "provided": {"secretName": "mine", "caBundle": "Zm9v"}}}
        rendered = set(alerts_of(rule_groups(values)))
        assert rendered == set(CASES), mode


def test_rules_pass_promtool_check(tmp_path):
    result = check_rules(tmp_path, rule_groups({"certs": {"mode": "certManager"}}))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", sorted(CASES))
def test_alert_fires_when_it_should_and_not_otherwise(tmp_path, alert):
    groups = rule_groups({"certs": {"mode": "certManager"}})
    c = CASES[alert]
    annotations = alerts_of(groups)[alert]["annotations"]
    checks = [{"eval_time": t, "alertname": alert, "exp_alerts": []} for t in c["quiet"]]
    checks += [{"eval_time": t, "alertname": alert,
                "exp_alerts": [{"exp_labels": c["labels"], "exp_annotations": annotations}]}
               for t in c["fire"]]
    tests = [{"interval": c["interval"],
              "input_series": [{"series": s, "values": v} for s, v in c["series"].items()],
              "alert_rule_test": checks}]
    result = run_rule_tests(tmp_path, groups, tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_cases_can_fail(tmp_path):
    """promtool really checks: expecting the down alert while the webhook is up fails."""
    groups = rule_groups()
    tests = [{"interval": "1m", "input_series": [{"series": f"up{{{SEL}}}", "values": "1x30"}],
              "alert_rule_test": [{"eval_time": "25m", "alertname": "KserveKedaWebhookDown",
                                   "exp_alerts": [{"exp_labels": {"severity": "critical"}}]}]}]
    assert run_rule_tests(tmp_path, groups, tests).returncode != 0


def test_alerts_follow_the_mode_and_values():
    assert "KserveKedaWebhookNoLeader" not in alerts_of(rule_groups({"controller": {"enabled": False}}))
    # The description says what to do in each certificate mode.
    self_managed = alerts_of(rule_groups())["KserveKedaWebhookCertificateExpiresSoon"]
    cert_manager = alerts_of(rule_groups({"certs": {"mode": "certManager"}}))["KserveKedaWebhookCertificateExpiresSoon"]
    assert "self-managed" in self_managed["annotations"]["description"]
    assert "cert-manager" in cert_manager["annotations"]["description"]
    days = alerts_of(rule_groups({"metrics": {"prometheusRule": {"certificateExpiryDays": 3}}}))
    assert "< 3 * 86400" in days["KserveKedaWebhookCertificateExpiresSoon"]["expr"]
    objects = render_values({"metrics": {"prometheusRule": {
        "enabled": True, "namespace": "monitoring", "labels": {"release": "prometheus"},
        "additionalLabels": {"team": "ml"}, "severity": {"critical": "page", "warning": "ticket"},
        "noLeaderMinutes": 0}}})
    rule = one(objects, "PrometheusRule")
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    alerts = alerts_of(rule["spec"]["groups"])
    assert "KserveKedaWebhookNoLeader" not in alerts
    assert alerts["KserveKedaWebhookDown"]["labels"] == {"severity": "page", "team": "ml"}
    assert alerts["KserveKedaWebhookReconcileErrors"]["labels"] == {"severity": "ticket", "team": "ml"}
    assert of_kind(render_values({}), "PrometheusRule") == []
