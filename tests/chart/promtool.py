"""Runs Prometheus's promtool (Debian package `prometheus`) on rules the chart renders."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from typing import Any

import pytest
import yaml


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not found: run `apt-get install -y prometheus` (scripts/test does)")
    return path


def check_rules(tmp_path: pathlib.Path, groups: list[dict[str, Any]]) -> subprocess.CompletedProcess:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)


def run_rule_tests(tmp_path: pathlib.Path, groups: list[dict[str, Any]], tests: list[dict[str, Any]]
               ) -> subprocess.CompletedProcess:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    spec = tmp_path / "tests.yaml"
    spec.write_text(yaml.safe_dump(
        {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    return subprocess.run([promtool(), "test", "rules", str(spec)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
