"""Leader election on/off and its timings reach the binary from values, and what cannot work
(election off with several replicas, a timing that is not a duration) fails at install."""

from __future__ import annotations

import helm_python as helm
import pytest

from scenarios import container, render_values


def serve_args(values):
    args = container(render_values(values))["args"]
    assert args[0] == "serve"
    return args[1:]


def test_defaults_leave_the_binary_defaults():
    args = serve_args({})
    assert not [a for a in args if a.startswith("--leader-elect")]


def test_timings_are_passed_as_flags():
    args = serve_args(
        {"controller": {"leaderElection": {"leaseDuration": "1m", "renewDeadline": "40s", "retryPeriod": "500ms"}}}
    )
    assert "--leader-elect-lease-duration=1m" in args
    assert "--leader-elect-renew-deadline=40s" in args
    assert "--leader-elect-retry-period=500ms" in args
    assert "--leader-elect=false" not in args


def test_election_off_with_one_replica():
    args = serve_args({"replicaCount": 1, "controller": {"leaderElection": {"enabled": False}}})
    assert "--leader-elect=false" in args


def test_election_off_with_several_replicas_fails_the_install():
    with pytest.raises(Exception) as err:
        render_values({"replicaCount": 2, "controller": {"leaderElection": {"enabled": False}}})
    assert "replicaCount: 1" in str(err.value)


@pytest.mark.parametrize("field", ["leaseDuration", "renewDeadline", "retryPeriod"])
@pytest.mark.parametrize("value", ["15", "fifteen seconds", 15, "-1s"])
def test_schema_refuses_a_timing_that_is_not_a_duration(field, value):
    with pytest.raises(helm.HelmValuesError) as err:
        render_values({"controller": {"leaderElection": {field: value}}})
    assert f"/controller/leaderElection/{field}" in str(err.value)


def test_schema_refuses_unknown_leader_election_keys():
    with pytest.raises(helm.HelmValuesError) as err:
        render_values({"controller": {"leaderElection": {"leaseDurationSeconds": 15}}})
    assert "additional properties" in str(err.value).lower()


def test_the_request_limit_is_the_binarys_unless_set():
    args = serve_args({})
    assert not [a for a in args if a.startswith("--kube-api-")]
    args = serve_args({"controller": {"apiQps": 50, "apiBurst": 100}})
    assert "--kube-api-qps=50" in args
    assert "--kube-api-burst=100" in args
    assert "--kube-api-qps=0.5" in serve_args({"controller": {"apiQps": 0.5}})


@pytest.mark.parametrize(
    "field,value", [("apiQps", 0), ("apiQps", -5), ("apiQps", "50"), ("apiBurst", 0), ("apiBurst", 1.5)]
)
def test_schema_refuses_a_request_limit_that_cannot_work(field, value):
    with pytest.raises(helm.HelmValuesError) as err:
        render_values({"controller": {field: value}})
    assert f"/controller/{field}" in str(err.value)
