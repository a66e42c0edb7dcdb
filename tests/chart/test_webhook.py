"""The MutatingWebhookConfiguration: what it intercepts, how it fails, which namespaces it skips,
and its matchConditions (checked for meaning with a small evaluator of the CEL subset used)."""

from __future__ import annotations

import re

import pytest

from scenarios import FULLNAME, NAMESPACE, SCENARIOS, cert_mode, one, render_values

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def webhook_of(objects):
    config = one(objects, "MutatingWebhookConfiguration")
    assert config["metadata"]["name"] == FULLNAME
    (hook,) = config["webhooks"]
    return config, hook


def test_webhook_basics(scenario):
    _, values, objects = scenario
    _, hook = webhook_of(objects)
    # The API server requires a fully qualified name with at least three segments.
    assert hook["name"] == "isvc.scaling.io"
    assert DNS_SUBDOMAIN.match(hook["name"]) and hook["name"].count(".") >= 2
    assert hook["rules"] == [
        {
            "apiGroups": ["serving.kserve.io"],
            "apiVersions": ["v1beta1"],
            "resources": ["inferenceservices"],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
    ]
    assert hook["clientConfig"]["service"] == {
        "name": FULLNAME,
        "namespace": NAMESPACE,
        "path": "/mutate",
        "port": 443,
    }
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["reinvocationPolicy"] == "IfNeeded"
    want = values.get("webhook", {})
    assert hook["failurePolicy"] == want.get("failurePolicy", "Fail")
    assert hook["timeoutSeconds"] == want.get("timeoutSeconds", 5)


def test_service_port_matches_webhook(scenario):
    _, _, objects = scenario
    _, hook = webhook_of(objects)
    service = one(objects, "Service")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["https"]["port"] == hook["clientConfig"]["service"]["port"] == 443
    assert ports["https"]["targetPort"] == "https"
    assert ports["metrics"]["port"] == 9090
    assert service["spec"]["selector"].items() <= (
        one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )


def test_ca_bundle_and_injection_per_cert_mode(scenario):
    _, values, objects = scenario
    config, hook = webhook_of(objects)
    annotations = config["metadata"].get("annotations", {})
    mode = cert_mode(values)
    if mode == "certManager":
        assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{FULLNAME}-serving-cert"
    else:
        assert "cert-manager.io/inject-ca-from" not in annotations
    if mode == "provided":
        assert hook["clientConfig"]["caBundle"] == values["certs"]["provided"]["caBundle"]
    else:
        # selfManaged: the binary patches it; certManager: the cainjector does.
        assert "caBundle" not in hook["clientConfig"]


def always_excluded(selector):
    return [
        e
        for e in selector.get("matchExpressions", [])
        if e["key"] == "kubernetes.io/metadata.name" and e["operator"] == "NotIn"
    ]


def test_namespace_selector_always_excludes_release_namespace_and_kube_system(scenario):
    name, values, objects = scenario
    _, hook = webhook_of(objects)
    selector = hook["namespaceSelector"]
    (exclusion,) = always_excluded(selector)
    assert {NAMESPACE, "kube-system"} <= set(exclusion["values"])
    user = values.get("webhook", {}).get("namespaceSelector", {})
    assert set(exclusion["values"]) == {NAMESPACE, "kube-system", *user.get("excludeNamespaces", [])}
    # User expressions are added next to the built-in one, never instead of it.
    others = [e for e in selector["matchExpressions"] if e is not exclusion]
    assert others == user.get("matchExpressions", [])
    assert selector.get("matchLabels", {}) == user.get("matchLabels", {})


def test_user_selectors_are_merged_not_replacing():
    objects = render_values(SCENARIOS["everything"])
    _, hook = webhook_of(objects)
    assert hook["namespaceSelector"] == {
        "matchLabels": {"scaling.io/enabled": "true"},
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": [NAMESPACE, "kube-system", "monitoring"],
            },
            {"key": "environment", "operator": "NotIn", "values": ["sandbox"]},
        ],
    }
    assert hook["objectSelector"] == {"matchLabels": {"scaling.io/managed": "true"}}


def test_release_in_kube_system_does_not_duplicate_values():
    objects = render_values({})
    _, hook = webhook_of(objects)
    (exclusion,) = always_excluded(hook["namespaceSelector"])
    assert len(exclusion["values"]) == len(set(exclusion["values"]))


def test_no_object_selector_by_default():
    _, hook = webhook_of(render_values({}))
    assert "objectSelector" not in hook


def test_match_conditions_can_be_disabled():
    _, hook = webhook_of(render_values({"webhook": {"matchConditions": {"enabled": False}}}))
    assert "matchConditions" not in hook


# --- matchConditions -------------------------------------------------------------------------
# The expression uses a small CEL subset: has(), .exists(k, k.startsWith('...')), != null, && and
# ||. Translating exactly that subset into Python lets the test check what the expression means;
# anything outside the subset is left untranslated and makes eval fail, so the test cannot pass on
# an expression it does not understand.

_HAS = re.compile(r"has\((object|oldObject)\.metadata\.annotations\)")
_EXISTS = re.compile(
    r"(object|oldObject)\.metadata\.annotations\.exists\((\w+),\s*\2\.startsWith\('([^'\\]*)'\)\)"
)


def cel_to_python(expression: str) -> str:
    py = _EXISTS.sub(
        lambda m: f"any(_k.startswith({m.group(3)!r}) for _k in {m.group(1)}['metadata']['annotations'])",
        expression,
    )
    py = _HAS.sub(lambda m: f"('annotations' in {m.group(1)}['metadata'])", py)
    py = py.replace("!= null", "is not None").replace("&&", " and ").replace("||", " or ")
    return py


def evaluate(expression: str, obj, old):
    code = compile(cel_to_python(expression), "<cel>", "eval")
    assert set(code.co_names) <= {"object", "oldObject", "any"}, code.co_names
    return eval(code, {"__builtins__": {"any": any}}, {"object": obj, "oldObject": old})


def isvc(annotations=None):
    meta = {"name": "m", "namespace": "team"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"metadata": meta}


@pytest.mark.parametrize(
    "obj, old, sent",
    [
        (isvc({"scaling.io/strategy": "tokens"}), None, True),  # CREATE, annotated
        (isvc({"other.io/x": "1"}), None, False),  # CREATE, other annotations
        (isvc(), None, False),  # CREATE, no annotations at all
        (isvc({"scaling.io/max-replicas": "4"}), isvc(), True),  # UPDATE adds one
        (isvc(), isvc({"scaling.io/strategy": "tokens"}), True),  # UPDATE removes all: clean-up
        (isvc({"a": "b"}), isvc({"scaling.io/strategy": "queue"}), True),
        (isvc({"a": "b"}), isvc({"c": "d"}), False),  # UPDATE, never annotated
        (isvc(), isvc(), False),
        (isvc({"scaling.iox/strategy": "tokens"}), None, False),  # prefix, not substring
        (isvc({"x.scaling.io/strategy": "tokens"}), None, False),
    ],
)
def test_match_condition_semantics(obj, old, sent):
    _, hook = webhook_of(render_values({}))
    (condition,) = hook["matchConditions"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", condition["name"])
    assert evaluate(condition["expression"], obj, old) is sent


def test_match_condition_uses_configured_prefix():
    _, hook = webhook_of(render_values(SCENARIOS["everything"]))
    (condition,) = hook["matchConditions"]
    expression = condition["expression"]
    assert "scaling.io/" not in expression
    assert evaluate(expression, isvc({"autoscale.example.com/strategy": "tokens"}), None) is True
    assert evaluate(expression, isvc({"scaling.io/strategy": "tokens"}), None) is False
    assert evaluate(expression, isvc(), isvc({"autoscale.example.com/x": "1"})) is True


def test_match_condition_guards_old_object_against_null():
    _, hook = webhook_of(render_values({}))
    expression = hook["matchConditions"][0]["expression"]
    # Every dereference of oldObject must sit behind `oldObject != null &&` (null on CREATE).
    flat = " ".join(expression.split())
    first_use = flat.index("oldObject.")
    assert flat.index("oldObject != null &&") < first_use
    # And every annotations.exists() behind a has() on the same object.
    for obj in ("object", "oldObject"):
        assert flat.index(f"has({obj}.metadata.annotations) &&") < flat.index(
            f"{obj}.metadata.annotations.exists("
        )


def test_match_conditions_follow_the_policy():
    # The policy's own prefix replaces the chart's.
    _, hook = webhook_of(render_values({"policy": {"defaults": {"annotationPrefix": "autoscale.example.com"}}}))
    (condition,) = hook["matchConditions"]
    assert evaluate(condition["expression"], {"metadata": {"annotations": {"autoscale.example.com/strategy": "tokens"}}}, None)
    assert not evaluate(condition["expression"], {"metadata": {"annotations": {"scaling.io/strategy": "tokens"}}}, None)
    # Adding or changing the exemption annotation must reach the webhook, which guards it.
    _, hook = webhook_of(render_values({"policy": {"exemptions": {"annotation": "policy.scaling.io/exempt"}}}))
    (condition,) = hook["matchConditions"]
    assert evaluate(condition["expression"], {"metadata": {"annotations": {"policy.scaling.io/exempt": "true"}}}, None)
    assert evaluate(condition["expression"], {"metadata": {"annotations": {"scaling.io/strategy": "q"}}}, None)
    assert not evaluate(condition["expression"], {"metadata": {"annotations": {"team": "a"}}}, None)
    # A rule that requires a strategy must see InferenceServices without any annotation.
    _, hook = webhook_of(render_values({"policy": {"rules": [{"name": "gpus", "requireStrategy": {"when": "gpu"}}]}}))
    assert "matchConditions" not in hook


@pytest.mark.parametrize("mode", ["selfManaged", "provided"])
def test_url_replaces_the_service(mode):
    """A webhook run outside the cluster: the API server calls the URL; in self-managed mode the
    binary is told the URL so its certificate names the host and it finds its webhook."""
    url = "https://127.0.0.1:8443/mutate"
    values = {"webhook": {"url": url}, "certs": {"mode": mode}}
    if mode == "provided":
        values["certs"]["provided"] = {"secretName": "tls", "caBundle": "Y2E="}
    objects = render_values(values)
    _, hook = webhook_of(objects)
    assert "service" not in hook["clientConfig"]
    assert hook["clientConfig"]["url"] == url
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (f"--webhook-url={url}" in args) == (mode == "selfManaged"), args
    if mode == "provided":
        assert hook["clientConfig"]["caBundle"] == "Y2E="
