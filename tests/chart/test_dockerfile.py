"""The Dockerfile's structure (no container engine is needed to check it)."""

from __future__ import annotations

import re
import tomllib

import yaml

from dockerfile import ROOT, labels, stages, unpinned_bases

ARCHES = ("amd64", "arm64")


def final():
    return stages()[-1]


def test_every_base_image_is_pinned_by_digest():
    assert stages(), "no FROM in the Dockerfile"
    assert unpinned_bases() == []


def test_the_pin_check_refuses_tags_and_short_digests():
    # The check above is only as good as this: a tag alone, `latest`, a truncated or upper-case
    # digest are all refused; a named stage used as a base is not an image.
    for image in (
        "gcr.io/distroless/static-debian12:nonroot",
        "gcr.io/distroless/static-debian12",
        "gcr.io/distroless/static-debian12:latest",
        "gcr.io/distroless/static-debian12@sha256:afa5c872c891",
        "gcr.io/distroless/static-debian12@sha256:" + "A" * 64,
        "gcr.io/distroless/static-debian12@sha1:" + "a" * 40,
    ):
        assert unpinned_bases(f"FROM {image}\n") == [image]
    pinned = "rust@sha256:" + "0" * 64
    assert unpinned_bases(f"FROM {pinned} AS build\nFROM build\nFROM scratch\n") == []


def test_final_stage_is_static_and_shell_free():
    image = final()["image"]
    assert image.startswith("gcr.io/distroless/static") or image == "scratch"
    body = final()["body"]
    assert not [rest for word, rest in body if word == "RUN"], "no RUN: the final image has no shell"
    assert ("ENTRYPOINT", '["/kserve-keda-webhook"]') in body
    assert ("CMD", '["serve"]') in body


def test_runs_as_a_numeric_non_root_user():
    users = [rest for word, rest in final()["body"] if word == "USER"]
    assert users, "no USER: the image would run as whatever the base says"
    # Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
    user, _, group = users[-1].partition(":")
    assert user == "65532" and group in ("", "65532"), users[-1]


def test_copies_the_release_binary_of_the_target_architecture():
    body = final()["body"]
    args = [rest for word, rest in body if word == "ARG"]
    assert "TARGETARCH" in args, "TARGETARCH must be declared in the stage that uses it"
    copies = [rest.split() for word, rest in body if word == "COPY"]
    sources = [c[-2] for c in copies if c[-1] == "/kserve-keda-webhook"]
    assert sources == ["dist/kserve-keda-webhook-linux-${TARGETARCH}"]


def test_dockerignore_lets_in_only_the_release_binaries():
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything else is left out of the build context"
    assert sorted(lines[1:]) == [f"!dist/kserve-keda-webhook-linux-{a}" for a in ARCHES]


def test_oci_labels():
    found = labels(final()["body"])
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]
    chart = yaml.safe_load((ROOT / "charts" / "kserve-keda-webhook" / "Chart.yaml").read_text())
    prefix = "org.opencontainers.image."
    assert found[prefix + "title"] == cargo["name"]
    assert found[prefix + "licenses"] == cargo["license"]
    assert found[prefix + "source"] in chart["sources"]
    assert found[prefix + "description"].strip()
    # version and revision come from build arguments declared in the same stage.
    args = {rest.split("=")[0] for word, rest in final()["body"] if word == "ARG"}
    for key, arg in (("version", "VERSION"), ("revision", "REVISION")):
        value = found[prefix + key]
        assert re.fullmatch(r"\$\{?" + arg + r"\}?", value), (key, value)
        assert arg in args, f"ARG {arg} must be declared after FROM to reach the label"
