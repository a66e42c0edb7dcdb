"""The arguments the chart passes are ones the binary accepts.

The chart and the binary are written side by side; this catches a flag that one renames and
the other still uses. It runs the built binary (scripts/test builds it before the chart tests)
and is skipped when there is none.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from scenarios import container

# Cargo's output folder: CARGO_TARGET_DIR when set (CI keeps it outside the work tree).
BINARY = (
    pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or pathlib.Path(__file__).resolve().parents[2] / "target")
    / "debug"
    / "kserve-keda-webhook"
)



@pytest.mark.skipif(not BINARY.exists(), reason="binary not built (cargo build)")
def test_every_chart_argument_is_accepted_by_the_binary(scenario):
    name, _, objects = scenario
    args = container(objects)["args"]
    assert args[0] == "serve"
    flags = args[1:]
    # clap reads the arguments left to right and fails on the first it does not know; a
    # trailing --help then prints the usage and exits 0 without starting anything.
    result = subprocess.run(
        [str(BINARY), "serve", *flags, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, f"{name}: {result.stderr}"


@pytest.mark.skipif(not BINARY.exists(), reason="binary not built (cargo build)")
def test_an_unknown_flag_is_refused():
    result = subprocess.run(
        [str(BINARY), "serve", "--no-such-flag=1", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0


@pytest.mark.skipif(not BINARY.exists(), reason="binary not built (cargo build)")
def test_the_policy_the_chart_mounts_passes_policy_check(tmp_path):
    from scenarios import one, render_values

    values = {
        "policy": {
            "defaults": {"monitorLabels": {"release": "prometheus"}},
            "limits": {
                "maxReplicas": 8,
                "allowedPrometheusAddresses": [
                    "http://prometheus-operated.monitoring.svc:9090",
                    "http://thanos-query.monitoring.svc:10902",
                ],
                "customQueryNamespace": "own",
            },
            "rules": [
                {"name": "research", "namespaces": ["lab"], "limits": {"maxReplicas": 2}},
                {"name": "gold", "namespaceSelector": {"matchLabels": {"tier": "gold"}},
                 "limits": {"customQueryNamespace": "any"}},
            ],
        }
    }
    text = one(render_values(values), "ConfigMap")["data"]["policy.yaml"]
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    result = subprocess.run(
        [str(BINARY), "policy", "check", "--policy", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    # And a policy the binary refuses is refused as such.
    path.write_text(text.replace("maxReplicas: 2", "maxReplicas: lots"))
    result = subprocess.run(
        [str(BINARY), "policy", "check", "--policy", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1 and "line" in result.stderr
