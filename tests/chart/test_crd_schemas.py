"""Everything `render` emits validates against the upstream CRD schemas, strictly.

The CRDs come from the Go modules pinned in e2e/versions.env (KEDA, KServe,
prometheus-operator), located by scripts/fetch-crds; nothing upstream is copied into this
repository. Validation follows the API server's structural-schema rules: an object without
`x-kubernetes-preserve-unknown-fields` accepts no field its schema does not list (the server
would prune it, silently losing configuration), `nullable` allows null, and
`x-kubernetes-int-or-string` allows both. Documents are matched by apiVersion and kind, so a
kind added to the product later is covered as soon as `render` emits it, and a kind with no
upstream schema fails.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from helm_render import ROOT

# Cargo's output folder: CARGO_TARGET_DIR when set (CI keeps it outside the work tree).
BINARY = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug" / "kserve-keda-webhook"
FETCH = ROOT / "scripts" / "fetch-crds"
EXAMPLES = ROOT / "examples"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """Safe loading (libyaml when present: the CRDs are tens of megabytes) where a bare `=`
    is the string it is in Kubernetes' YAML, not YAML 1.1's `value` tag."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:value"]
    for k, v in _Loader.yaml_implicit_resolvers.items()
}


@lru_cache(maxsize=1)
def crd_dirs() -> dict[str, Path]:
    if shutil.which("go") is None and not os.environ.get("CI"):
        pytest.skip("the upstream CRDs need Go: install it, then run scripts/fetch-crds")
    result = subprocess.run([str(FETCH)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"could not locate the upstream CRDs; run scripts/fetch-crds:\n{result.stderr}")
    dirs = dict(line.split("=", 1) for line in result.stdout.split())
    return {name: Path(d) for name, d in dirs.items()}


def structural(node):
    """The schema as the API server applies it, in JSON Schema terms."""
    if isinstance(node, list):
        return [structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: structural(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    out.pop("nullable", None)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **out}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    is_object = node.get("type") == "object" or "properties" in node
    if (
        is_object
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=1)
def schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> JSON Schema, for every served version of every upstream CRD."""
    out = {}
    for d in crd_dirs().values():
        for path in sorted(d.rglob("*.yaml")):
            for doc in yaml.load_all(path.read_text(), Loader=_Loader):
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for v in spec.get("versions") or []:
                    if not v.get("served", True) or "schema" not in v:
                        continue
                    schema = structural(v["schema"]["openAPIV3Schema"])
                    # ObjectMeta is the server's own type, validated apart from the CRD.
                    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                    out[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = schema
    assert out, f"no CRDs found under {crd_dirs()}"
    return out


@lru_cache(maxsize=None)
def validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    # Built once per kind: `jsonschema.validate` would re-check the (large) schema per call.
    return jsonschema.Draft7Validator(schemas()[(api_version, kind)])


def render(manifest: str, *flags: str) -> tuple[int, list[dict], str]:
    result = subprocess.run(
        [str(BINARY), "render", "-f", "-", *flags],
        input=manifest,
        capture_output=True,
        text=True,
        timeout=60,
    )
    docs = [d for d in yaml.safe_load_all(result.stdout) if d] if result.returncode == 0 else []
    return result.returncode, docs, result.stderr


def allowed(annotation: str, extra: dict[str, str]) -> list[str]:
    """The values the binary accepts for an annotation, from its own error message, so a
    value added later is rendered here without editing this test."""
    doc = base_isvc()
    doc["metadata"]["annotations"].update(extra)
    doc["metadata"]["annotations"][annotation] = "no-such-value"
    code, _, err = render(yaml.safe_dump(doc))
    assert code != 0
    m = re.search(r"allowed: (.*)$", err.strip().splitlines()[-1])
    assert m, err
    return [re.sub(r"\s*\(.*\)", "", v).strip() for v in m.group(1).split(",")]


def base_isvc() -> dict:
    doc = yaml.safe_load((EXAMPLES / "qwen25-05b.yaml").read_text())
    doc["metadata"].setdefault("annotations", {})
    return doc


def manifests() -> list[tuple[str, str, list[str]]]:
    """(what, manifest, flags): every shipped example, with and without each shipped
    policy, and every strategy x runtime x monitor kind, with either kind of KEDA
    authentication and monitor labels."""
    out = []
    examples = sorted(p for p in EXAMPLES.glob("*.yaml") if "policy" not in p.name)
    policies = sorted(p for p in EXAMPLES.glob("*.yaml") if "policy" in p.name)
    for ex in examples:
        out.append((ex.name, ex.read_text(), []))
        for pol in policies:
            out.append((f"{ex.name} --policy {pol.name}", ex.read_text(), ["--policy", str(pol)]))
    strategies = allowed("scaling.io/strategy", {})
    runtimes = allowed("scaling.io/runtime", {"scaling.io/strategy": "queue"})
    monitors = allowed("scaling.io/monitor", {"scaling.io/strategy": "queue"})
    auth = [
        ["--trigger-auth-kind", "TriggerAuthentication", "--trigger-auth-name", "prom"],
        ["--trigger-auth-kind", "ClusterTriggerAuthentication", "--trigger-auth-name", "prom"],
    ]
    for i, (strategy, runtime, monitor) in enumerate(itertools.product(strategies, runtimes, monitors)):
        doc = base_isvc()
        a = doc["metadata"]["annotations"]
        a["scaling.io/strategy"] = strategy
        a["scaling.io/runtime"] = runtime
        a["scaling.io/monitor"] = monitor
        if strategy == "custom":
            a["scaling.io/query"] = 'sum(rate(requests_total{namespace="llm"}[1m]))'
            a["scaling.io/target"] = "10"
        flags = auth[i % 2] + ["--monitor-label", "release=prometheus"]
        out.append((f"{strategy}/{runtime}/{monitor}", yaml.safe_dump(doc), flags))
    return out


@pytest.mark.skipif(not BINARY.exists(), reason="binary not built (cargo build)")
def test_every_rendered_document_matches_its_upstream_schema():
    known = schemas()
    kinds: set[str] = set()
    refused = []
    for what, manifest, flags in manifests():
        code, docs, err = render(manifest, *flags)
        if code != 0:
            # A combination the planner refuses with an explanation is not an output.
            assert err.startswith("error: "), f"{what}: {err}"
            refused.append(what)
            continue
        for doc in docs:
            key = (doc.get("apiVersion"), doc.get("kind"))
            assert key in known, f"{what}: no upstream schema for {key}; add its CRD source to scripts/fetch-crds"
            errors = sorted(validator(*key).iter_errors(doc), key=lambda e: list(e.absolute_path))
            if errors:
                e = errors[0]
                path = "/".join(str(p) for p in e.absolute_path)
                pytest.fail(f"{what}: {key[1]} {doc['metadata'].get('name')}: {path}: {e.message}")
            kinds.add(key[1])
    assert {"InferenceService", "ScaledObject", "ServiceMonitor", "PodMonitor"} <= kinds, kinds
    assert len(refused) < len(manifests()) / 4, refused


def test_the_strict_schema_refuses_an_unknown_field():
    """The check above can fail: a field the CRD does not know is an error, not pruned."""
    schema = structural(
        {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {"a": {"type": "integer"}, "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            },
        }
    )
    jsonschema.validate({"spec": {"a": 1, "free": {"anything": 1}}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"spec": {"a": 1, "b": 2}}, schema)
    known = schemas()
    so = copy.deepcopy(
        {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"},
         "spec": {"scaleTargetRef": {"name": "d"}, "triggers": [{"type": "prometheus", "metadata": {}}]}}
    )
    assert known[("keda.sh/v1alpha1", "ScaledObject")]
    check = validator("keda.sh/v1alpha1", "ScaledObject")
    assert list(check.iter_errors(so)) == []
    so["spec"]["maxReplicas"] = 3  # the field is maxReplicaCount
    assert [e.message for e in check.iter_errors(so)] != []
