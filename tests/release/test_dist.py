"""The release files in dist/: checksums, static binaries, the packaged chart, the SBOMs."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

import helm_python as helm
import pytest
import yaml
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from conftest import ARCHES, ROOT
from dockerfile import stages

# What `file` prints for the two CPUs; a static-pie executable has no interpreter either.
CPU = {"amd64": "x86-64", "arm64": "ARM aarch64"}
STATIC = re.compile(r"\b(statically linked|static-pie linked)\b")


def binary(dist, arch):
    return dist / f"kserve-keda-webhook-linux-{arch}"


def test_every_file_is_listed_and_every_checksum_matches(dist):
    listed = {}
    for line in (dist / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name.lstrip("*")] = digest
    present = {p.name for p in dist.iterdir() if p.name != "SHA256SUMS"}
    assert set(listed) == present
    for name, digest in listed.items():
        assert hashlib.sha256((dist / name).read_bytes()).hexdigest() == digest, name
    # The file format is the one `sha256sum -c` reads, as the README tells users to run.
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=dist, check=True)


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_binary_is_static_for_its_cpu(dist, arch):
    described = subprocess.run(
        ["file", "-b", str(binary(dist, arch))], check=True, capture_output=True, text=True
    ).stdout
    assert described.startswith("ELF 64-bit"), described
    assert CPU[arch] in described, described
    assert STATIC.search(described), described
    assert "dynamically linked" not in described and "interpreter" not in described, described


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_binary_reports_the_cargo_version(dist, arch, cargo_package):
    # arm64 runs under qemu-user's emulator: static, so it needs no aarch64 libraries.
    runner = [] if arch == "amd64" else ["qemu-aarch64"]
    out = subprocess.run(
        [*runner, str(binary(dist, arch)), "version", "--output", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    facts = json.loads(out)
    assert facts["version"] == cargo_package["version"]
    assert re.fullmatch(r"[0-9a-f]{12}", facts["commit"]), facts
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", facts["buildDate"]), facts
    known = subprocess.run(
        ["git", "cat-file", "-e", facts["commit"] + "^{commit}"], cwd=ROOT, capture_output=True
    )
    assert known.returncode == 0, f"commit {facts['commit']} is not in this repository"


def test_chart_archive_has_the_cargo_version_and_renders(dist, cargo_package):
    version = cargo_package["version"]
    archives = sorted(dist.glob("*.tgz"))
    assert [a.name for a in archives] == [f"kserve-keda-webhook-{version}.tgz"]
    with helm.Chart.load(str(archives[0])) as chart:
        assert chart.metadata["version"] == version
        assert chart.metadata["appVersion"] == version
        files = chart.render(None, name="kkw", namespace="kkw-system", is_install=True)
    objects = [
        doc
        for path, text in files.items()
        if path.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert len(deployments) == 1
    images = [c["image"] for c in deployments[0]["spec"]["template"]["spec"]["containers"]]
    # With no image.tag the chart runs the binary of its appVersion.
    assert images == [f"ghcr.io/kserve-keda-webhook/kserve-keda-webhook:{version}"]


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_sbom_is_cyclonedx_and_lists_the_linked_crates(dist, arch, cargo_package, resolved_dependencies):
    text = (dist / f"kserve-keda-webhook-linux-{arch}.cdx.json").read_text()
    bom = json.loads(text)
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["specVersion"] == "1.5"
    errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    assert errors is None, errors
    subject = bom["metadata"]["component"]
    assert (subject["name"], subject["version"]) == (cargo_package["name"], cargo_package["version"])
    listed = {(c["name"], c["version"]) for c in bom["components"]}
    for c in bom["components"]:
        assert c["purl"] == f"pkg:cargo/{c['name']}@{c['version']}", c["purl"]
    expected = resolved_dependencies(ARCHES[arch])
    assert expected - listed == set(), "crates the binary is built from, missing from the SBOM"
    # Nothing else: dev-dependencies (test tools) are not part of the binary.
    assert listed - expected == set(), "crates in the SBOM that the binary is not built from"


def test_dockerfile_finds_a_binary_for_each_architecture(dist):
    copies = [rest.split() for word, rest in stages()[-1]["body"] if word == "COPY"]
    (source,) = [c[-2] for c in copies if c[-1] == "/kserve-keda-webhook"]
    # The build context is the repository root, where scripts/release writes dist/.
    assert source.startswith("dist/"), source
    for arch in ARCHES:
        name = source.removeprefix("dist/").replace("${TARGETARCH}", arch)
        assert (dist / name).is_file(), name
