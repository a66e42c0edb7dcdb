"""The tables of the docs that repeat what the binary or the chart defines are checked against
that source, so a new flag, annotation, strategy or permission fails here until the docs list
it: the annotation keys and their values (from the binary's own error messages), the default
targets (from what `render` generates), the `serve` and `render` flags (from `--help`), the
RBAC tables of the docs and of the chart README (from the rendered chart) and the tested
upstream versions (from e2e/versions.env).

The binary is run as in test_binary_flags.py (scripts/test builds it before the chart tests);
those tests are skipped when it is not built.
"""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest
import yaml

from scenarios import cert_mode, controller_enabled, of_kind
from test_binary_flags import BINARY

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "src"
CHART_README = ROOT / "charts" / "kserve-keda-webhook" / "README.md"
EXAMPLE = ROOT / "examples" / "qwen25-05b.yaml"

needs_binary = pytest.mark.skipif(not BINARY.exists(), reason="binary not built (cargo build)")


def section(path: pathlib.Path, heading: str) -> str:
    """The text under a heading (any level), up to the next heading of the same or a higher
    level."""
    text = path.read_text()
    m = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.M)
    assert m, f"{path.relative_to(ROOT)}: no heading '{heading}'"
    level = len(m.group(1))
    rest = text[m.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def table(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in `text`, as lists of cells."""
    rows = []
    started = False
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(re.fullmatch(r":?-+:?", c) for c in cells):
                started = True
            elif started:
                rows.append(cells)
        elif started:
            break
    assert rows, "no table found"
    return rows


def ticked(cell: str) -> list[str]:
    """The `code` spans of a cell."""
    return re.findall(r"`([^`]+)`", cell)


def render(annotations: dict[str, str]) -> subprocess.CompletedProcess:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["annotations"] = annotations
    return subprocess.run(
        [str(BINARY), "render", "-f", "-"], input=yaml.safe_dump(doc), capture_output=True, text=True, timeout=60
    )


def error_list(annotations: dict[str, str], marker: str) -> list[str]:
    """The comma list after `marker` in the last line of render's error message."""
    result = render(annotations)
    assert result.returncode == 1, result.stderr
    m = re.search(re.escape(marker) + r" (.*?)(?: \(all under [^)]*\))?$", result.stderr.strip().splitlines()[-1])
    assert m, result.stderr
    return [v.strip() for v in m.group(1).split(",")]


# --- annotations -----------------------------------------------------------------------------

KEYS = DOCS / "annotations.md"


def key_rows() -> dict[str, str]:
    """Documented key -> its Meaning cell (one row may document several keys)."""
    out = {}
    for row in table(section(KEYS, "The keys")):
        for key in ticked(row[0]):
            out[key] = row[2]
    return out


@needs_binary
def test_the_annotation_table_lists_exactly_the_keys_the_binary_knows():
    known = error_list({"scaling.io/strategy": "queue", "scaling.io/no-such-key": "1"}, "known:")
    assert sorted(key_rows()) == sorted(known)


@needs_binary
@pytest.mark.parametrize(
    "key, extra",
    [("strategy", {}), ("runtime", {"scaling.io/strategy": "queue"}), ("monitor", {"scaling.io/strategy": "queue"})],
)
def test_the_annotation_table_lists_every_allowed_value(key, extra):
    allowed = error_list({**extra, f"scaling.io/{key}": "no-such-value"}, "allowed:")
    # "itl (alias tpot)" names two values.
    values = {v for a in allowed for v in re.findall(r"[a-z][a-z0-9-]*", a.replace("(alias", ""))}
    missing = values - set(ticked(key_rows()[key]))
    assert not missing, f"scaling.io/{key}: values the docs do not list: {sorted(missing)}"


@needs_binary
def test_the_default_targets_are_the_ones_render_writes():
    rows = table(section(KEYS, "Default targets and why"))
    strategies = error_list({"scaling.io/strategy": "no-such-value"}, "allowed:")
    strategies = [re.sub(r"\s*\(.*\)", "", s) for s in strategies]
    assert sorted(ticked(r[0])[0] for r in rows) == sorted(strategies)
    for row in rows:
        strategy, metric_type, default = ticked(row[0])[0], row[2], row[3]
        if strategy == "custom":
            continue
        result = render({"scaling.io/strategy": strategy})
        assert result.returncode == 0, result.stderr
        scaled = next(d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "ScaledObject")
        trigger = next(t for t in scaled["spec"]["triggers"] if t["name"] == strategy)
        number = re.match(r"[0-9.]+", default)
        assert number, f"{strategy}: no number in the Default cell '{default}'"
        assert float(trigger["metadata"]["threshold"]) == float(number.group(0)), strategy
        assert trigger["metricType"] in metric_type, strategy


# --- flags ------------------------------------------------------------------------------------


def help_flags(command: str) -> dict[str, tuple[str | None, str | None]]:
    """Long flag -> (default, environment variable), from `command --help`."""
    text = subprocess.run(
        [str(BINARY), command, "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    out: dict[str, tuple[str | None, str | None]] = {}
    blocks = re.split(r"^\s+(?:-\w, )?(--[a-z0-9-]+)\b", text, flags=re.M)
    for flag, body in zip(blocks[1::2], blocks[2::2]):
        if flag == "--help":
            continue
        default = re.search(r"\[default: ([^\]]*)\]", body)
        env = re.search(r"\[env: (\w+)=", body)
        out[flag] = (default.group(1) if default else None, env.group(1) if env else None)
    return out


@needs_binary
@pytest.mark.parametrize("command, heading", [("serve", "Flags"), ("render", "`render`")])
def test_the_flags_table_lists_every_flag_with_its_default(command, heading):
    documented: dict[str, str] = {}
    for row in table(section(DOCS / f"{command}.md", heading)):
        for flag in ticked(row[0]):
            if flag.startswith("--"):
                documented[flag] = row[1]
    flags = help_flags(command)
    assert sorted(documented) == sorted(flags), f"{command}: docs and --help differ"
    for flag, (default, env) in flags.items():
        cell = documented[flag]
        if default is not None:
            assert f"`{default}`" in cell, f"{command} {flag}: the default `{default}` is not named in '{cell}'"
        if env is not None:
            assert f"`${env}`" in cell, f"{command} {flag}: the variable `${env}` is not named in '{cell}'"


# --- RBAC ---------------------------------------------------------------------------------------

RBAC_TABLES = [(DOCS / "operations.md", "RBAC"), (CHART_README, "RBAC")]


def rbac_rows(path: pathlib.Path, heading: str) -> list[tuple[str, str, str, bool, frozenset[str], str]]:
    """(role kind, group, resource, named objects only, verbs, rendered when) per resource."""
    out = []
    for kind, group, resources, verbs, when in table(section(path, heading)):
        group = ticked(group)[0].strip('"')
        named = "only" in resources
        for resource in ticked(resources):
            out.append((kind, group, resource, named, frozenset(v.strip() for v in verbs.split(",")), when))
    return out


def rendered_when(when: str, values) -> bool:
    return {"controller": controller_enabled(values), "selfManaged": cert_mode(values) == "selfManaged"}[when]


@pytest.mark.parametrize("path, heading", RBAC_TABLES, ids=[str(p.relative_to(ROOT)) for p, _ in RBAC_TABLES])
def test_the_rbac_table_is_what_the_chart_grants(path, heading, scenario):
    _, values, objects = scenario
    want: dict[tuple, set[str]] = {}
    for kind, group, resource, named, verbs, when in rbac_rows(path, heading):
        if rendered_when(when, values):
            want.setdefault((kind, group, resource, named), set()).update(verbs)
    granted: dict[tuple, set[str]] = {}
    for kind in ("ClusterRole", "Role"):
        for role in of_kind(objects, kind):
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        key = (kind, group, resource, bool(rule.get("resourceNames")))
                        granted.setdefault(key, set()).update(rule["verbs"])
    assert granted == want


# --- versions -----------------------------------------------------------------------------------


def test_the_compatibility_page_names_every_pinned_version():
    pinned = dict(
        line.split("=", 1)
        for line in (ROOT / "e2e" / "versions.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    page = (DOCS / "compatibility.md").read_text()
    versions = set(ticked(section(DOCS / "compatibility.md", "What CI proves")))
    assert pinned, "e2e/versions.env pins nothing"
    for name, version in pinned.items():
        assert version in versions, f"{name}={version} is not on the compatibility page"
    assert "versions.env" in page


def test_the_compatibility_page_names_the_helm_the_tests_use():
    import helm_python

    # The Go build info inside the shared library names the Helm module it was built from
    # (the same file is there under several names; one is enough).
    libs = sorted((pathlib.Path(helm_python.__file__).parent / "lib").glob("libhelm*.so*"))
    found = re.search(rb"helm\.sh/helm/v\d+@(v[0-9.]+)", libs[0].read_bytes()) if libs else None
    if not found:
        pytest.skip("helm-python-sdk's library names no Helm module version")
    helm = found.group(1).decode()
    assert f"Helm `{helm}`" in (DOCS / "compatibility.md").read_text()
