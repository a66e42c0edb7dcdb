"""Fixtures for the release-file checks; run by scripts/release on the dist/ it built."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The chart tests' helpers (Dockerfile parser, chart path) are shared.
sys.path.insert(0, str(ROOT / "tests" / "chart"))

ARCHES = {"amd64": "x86_64-unknown-linux-musl", "arm64": "aarch64-unknown-linux-musl"}


@pytest.fixture(scope="session")
def dist() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("KKW_DIST", ROOT / "dist"))
    if not (path / "SHA256SUMS").is_file():
        pytest.fail(f"{path} holds no release build: run scripts/release first")
    return path


@pytest.fixture(scope="session")
def cargo_package() -> dict:
    return tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]


@pytest.fixture(scope="session")
def resolved_dependencies():
    """Rust target -> {(name, version)} of the crates the binary is built from, as cargo resolves them."""

    def for_target(triple: str) -> dict[str, str]:
        meta = json.loads(
            subprocess.run(
                ["cargo", "metadata", "--locked", "--format-version", "1", "--filter-platform", triple],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        packages = {p["id"]: p for p in meta["packages"]}
        nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
        root = meta["resolve"]["root"]
        # Walk normal (and build) edges only: dev-dependencies never reach the binary.
        seen, todo = set(), [root]
        while todo:
            node = nodes[todo.pop()]
            for dep in node["deps"]:
                kinds = {k["kind"] for k in dep["dep_kinds"]}
                if kinds - {"dev"} and dep["pkg"] not in seen:
                    seen.add(dep["pkg"])
                    todo.append(dep["pkg"])
        return {(packages[i]["name"], packages[i]["version"]) for i in seen}

    return for_target
