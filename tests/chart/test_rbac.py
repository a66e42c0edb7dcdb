"""RBAC is least privilege: exactly the verbs the binary needs, no wildcards, cert-mode and
controller specifics."""

from __future__ import annotations

from scenarios import FULLNAME, NAMESPACE, cert_mode, controller_enabled, of_kind, one

CONTROLLER_CLUSTER_RULES = {
    ("serving.kserve.io", "inferenceservices", ()): {"get", "list", "watch", "patch"},
    ("serving.kserve.io", "inferenceservices/finalizers", ()): {"update"},
    ("apps", "deployments", ()): {"get", "list", "watch"},
    ("keda.sh", "scaledobjects", ()): {"get", "list", "watch", "create", "patch", "delete"},
    ("monitoring.coreos.com", "servicemonitors", ()): {"get", "list", "watch", "create", "patch", "delete"},
    ("monitoring.coreos.com", "podmonitors", ()): {"get", "list", "watch", "create", "patch", "delete"},
    ("monitoring.coreos.com", "prometheusrules", ()): {"get", "list", "watch", "create", "patch", "delete"},
    ("events.k8s.io", "events", ()): {"create", "patch"},
    ("", "namespaces", ()): {"get", "list", "watch"},
}
SELF_MANAGED_CLUSTER_RULES = {
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", (FULLNAME,)): {"get", "patch"},
}
CONTROLLER_ROLE_RULES = {
    ("coordination.k8s.io", "leases", ()): {"get", "create", "update"},
}
SELF_MANAGED_ROLE_RULES = {
    ("", "secrets", ()): {"create"},
    ("", "secrets", (f"{FULLNAME}-tls",)): {"get", "update"},
}


def flatten(rules):
    """(apiGroup, resource, resourceNames) -> verbs, merging rules that repeat a key."""
    out: dict[tuple, set] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "resourceNames", "verbs"}, rule
        names = tuple(sorted(rule.get("resourceNames", [])))
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource, names), set()).update(rule["verbs"])
    return out


def expected(values):
    cluster, role = {}, {}
    if controller_enabled(values):
        cluster |= CONTROLLER_CLUSTER_RULES
        role |= CONTROLLER_ROLE_RULES
    if cert_mode(values) == "selfManaged":
        cluster |= SELF_MANAGED_CLUSTER_RULES
        role |= SELF_MANAGED_ROLE_RULES
    return cluster, role


def walk_strings(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from walk_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk_strings(v)
    elif isinstance(node, str):
        yield node


def test_no_wildcards(scenario):
    _, _, objects = scenario
    for obj in objects:
        if obj["kind"] in ("ClusterRole", "Role"):
            assert "*" not in list(walk_strings(obj.get("rules", []))), obj["kind"]
            assert "aggregationRule" not in obj


def test_cluster_role_rules_exact(scenario):
    _, values, objects = scenario
    want, _ = expected(values)
    roles = of_kind(objects, "ClusterRole")
    if not want:
        assert roles == []
        assert of_kind(objects, "ClusterRoleBinding") == []
        return
    assert len(roles) == 1
    assert flatten(roles[0]["rules"]) == want


def test_role_rules_exact(scenario):
    _, values, objects = scenario
    _, want = expected(values)
    roles = of_kind(objects, "Role")
    if not want:
        assert roles == []
        assert of_kind(objects, "RoleBinding") == []
        return
    assert len(roles) == 1
    assert roles[0]["metadata"]["namespace"] == NAMESPACE
    assert flatten(roles[0]["rules"]) == want


def test_secret_access_only_in_self_managed_mode(scenario):
    _, values, objects = scenario
    secret_rules = [
        key
        for role in of_kind(objects, "Role") + of_kind(objects, "ClusterRole")
        for key in flatten(role["rules"])
        if key[1] == "secrets"
    ]
    if cert_mode(values) == "selfManaged":
        assert secret_rules
    else:
        assert secret_rules == []
    # Never cluster-wide secret access.
    for role in of_kind(objects, "ClusterRole"):
        assert all(key[1] != "secrets" for key in flatten(role["rules"]))


def test_bindings_point_at_the_service_account(scenario):
    _, _, objects = scenario
    sa = one(objects, "ServiceAccount")
    assert sa["metadata"]["name"] == FULLNAME
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        for binding in of_kind(objects, kind):
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
            ]
            assert binding["roleRef"] == {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": role_kind,
                "name": one(objects, role_kind)["metadata"]["name"],
            }
