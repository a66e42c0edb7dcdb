"""Optional: the project's shared validate-manifests tool (CRD schemas for ServiceMonitor and
friends). Skipped where ../shared is absent, e.g. on a user's machine."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from helm_render import ROOT
from scenarios import SCENARIOS, render_values

TOOL = ROOT.parent / "shared" / "tools" / "validate-manifests"


@pytest.mark.skipif(not TOOL.exists(), reason="../shared/tools/validate-manifests not present")
def test_shared_validate_manifests():
    # One run over every scenario: the tool spends most of its time loading CRD schemas.
    # cert-manager's CRDs are not among the shared CRDs; those objects are checked in test_certs.
    objects = [
        obj
        for name in sorted(SCENARIOS)
        for obj in render_values(SCENARIOS[name])
        if not obj["apiVersion"].startswith("cert-manager.io/")
    ]
    assert any(o["kind"] == "ServiceMonitor" for o in objects)
    result = subprocess.run(
        [sys.executable, str(TOOL), "-"],
        input=yaml.safe_dump_all(objects),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(objects)} valid, 0 invalid" in result.stdout
