"""RBAC is least privilege: exactly the verbs the binary needs, no wildcards, cert-mode and
controller specifics."""

from __future__ import annotations

from pathlib import Path

from scenarios import FULLNAME, NAMESPACE, cert_mode, controller_enabled, of_kind, one

# The expectation is derived, not written by hand: the Rust tests record every call the
# controller and the self-managed certificates make against the in-memory API server
# (tests/support) into api-calls/*.txt, and fail when that list changes. The chart must grant
# exactly those calls, plus the few below that those tests cannot see, each with its reason.
CALLS = Path(__file__).parent / "api-calls"

# (apiGroup, resource) -> verbs granted although the recorded runs never make the call.
JUSTIFIED_CONTROLLER = {
    # OwnerReferencesPermissionEnforcement (on by default in OpenShift) requires update on
    # the owner's finalizers to set blockOwnerDeletion, which every generated object does.
    # It is an admission check on the apply, not a call of its own.
    ("serving.kserve.io", "inferenceservices/finalizers"): {"update"},
    # The namespace-label cache (src/cli/cluster.rs, `serve` only) lists and watches Namespaces for
    # label-selected policy rules; it is not part of the controller run the tests record.
    ("", "namespaces"): {"list", "watch"},
}
# Namespaced in the release namespace (a Role), never cluster-wide.
ROLE_RESOURCES = {("coordination.k8s.io", "leases"), ("", "secrets")}
# Self-managed certificates touch exactly one Secret and one webhook configuration; RBAC
# cannot name an object that does not exist yet, so `create` stays unnamed.
RESOURCE_NAMES = {
    ("", "secrets"): {"get": f"{FULLNAME}-tls", "update": f"{FULLNAME}-tls"},
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): {
        "get": FULLNAME,
        "patch": FULLNAME,
    },
}


def recorded(name: str) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, from a list the Rust tests wrote."""
    out: dict[tuple[str, str], set[str]] = {}
    path = CALLS / f"{name}.txt"
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        verb, group, resource = line.split()
        group = "" if group == '""' else group
        out.setdefault((group, resource), set()).add(verb)
    assert out, f"{path} lists no calls"
    return out


def calls(values) -> dict[tuple[str, str], set[str]]:
    want: dict[tuple[str, str], set[str]] = {}
    parts = []
    if controller_enabled(values):
        parts += [recorded("controller"), JUSTIFIED_CONTROLLER]
    if cert_mode(values) == "selfManaged":
        parts.append(recorded("self-managed-certs"))
    for part in parts:
        for key, verbs in part.items():
            want.setdefault(key, set()).update(verbs)
    return want


def expected_rules(values):
    """The rules as flatten() returns them: (group, resource, names) -> verbs, split into the
    ClusterRole's and the Role's."""
    cluster, role = {}, {}
    for (group, resource), verbs in calls(values).items():
        target = role if (group, resource) in ROLE_RESOURCES else cluster
        names = RESOURCE_NAMES.get((group, resource), {})
        for verb in verbs:
            key = (group, resource, (names[verb],) if verb in names else ())
            target.setdefault(key, set()).add(verb)
    return cluster, role


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
    return expected_rules(values)


def test_every_recorded_call_is_granted_and_nothing_else(scenario):
    """Both directions, on the union of both roles: a call the binary makes but the chart
    does not grant fails on a real cluster; a grant nobody uses is privilege for nothing."""
    _, values, objects = scenario
    granted: dict[tuple[str, str], set[str]] = {}
    for role in of_kind(objects, "ClusterRole") + of_kind(objects, "Role"):
        for (group, resource, _), verbs in flatten(role["rules"]).items():
            granted.setdefault((group, resource), set()).update(verbs)
    want = calls(values)
    missing = {k: v - granted.get(k, set()) for k, v in want.items() if v - granted.get(k, set())}
    unused = {k: v - want.get(k, set()) for k, v in granted.items() if v - want.get(k, set())}
    assert not missing, f"calls the chart does not permit: {missing}"
    assert not unused, f"permitted but never called (justify in JUSTIFIED_CONTROLLER): {unused}"


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
