"""The Dockerfile's structure (no container engine is needed to check it)."""

from __future__ import annotations

import re

from helm_render import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def instructions():
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages():
    result = []
    for word, rest in instructions():
        if word == "FROM":
            result.append({"from": rest, "body": []})
        else:
            assert result, f"{word} before the first FROM"
            result[-1]["body"].append((word, rest))
    return result


def test_multi_stage():
    all_stages = stages()
    assert len(all_stages) >= 2
    builder = all_stages[0]
    assert re.match(r"(--platform=\S+\s+)?rust:[\w.-]+\s+AS\s+\w+", builder["from"], re.I)
    assert ("ARG", "TARGET=x86_64-unknown-linux-musl") in builder["body"]
    runs = " ".join(rest for word, rest in builder["body"] if word == "RUN")
    assert 'rustup target add "${TARGET}"' in runs
    assert 'cargo build --release --locked --target "${TARGET}"' in runs
    assert "musl-tools" in runs


def test_final_stage_is_static_and_shell_free():
    final = stages()[-1]
    image = final["from"].split()[0]
    assert image.startswith("gcr.io/distroless/static") or image == "scratch"
    body = final["body"]
    assert not [rest for word, rest in body if word == "RUN"], "no RUN: the final image has no shell"
    users = [rest for word, rest in body if word == "USER"]
    # distroless :nonroot already runs as 65532; either way the image says so explicitly.
    assert users and users[-1].split(":")[0] in ("65532", "nonroot")
    copies = [rest for word, rest in body if word == "COPY"]
    assert any(c.startswith("--from=") and c.endswith("/kserve-keda-webhook") for c in copies)
    assert ("ENTRYPOINT", '["/kserve-keda-webhook"]') in body
    assert ("CMD", '["serve"]') in body


def test_dockerignore_keeps_the_context_small():
    lines = (ROOT / ".dockerignore").read_text().split()
    assert "target" in lines or "/target" in lines
    assert ".venv" in lines or "/.venv" in lines
