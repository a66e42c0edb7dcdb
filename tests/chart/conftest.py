"""pytest fixtures for the chart tests."""

from __future__ import annotations

from typing import Any

import pytest

from scenarios import SCENARIOS, render_values


@pytest.fixture(params=sorted(SCENARIOS), ids=sorted(SCENARIOS))
def scenario(request) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    values = SCENARIOS[request.param]
    return request.param, values, render_values(values)
