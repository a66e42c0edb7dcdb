"""The closed loop, on the real control plane: stand-in model servers report load, Prometheus
scrapes them through the monitors we generate, KEDA's metrics adapter answers the HPA
controller's external-metrics reads with our ScaledObject's queries, and kube-controller-
manager's HPA controller scales the predictor Deployment. Nothing but what we generated
connects the load to the replicas.

The expected replica counts come from the HPA algorithm as documented (and as
kube-controller-manager implements it for an HPA without `behavior`, which is what KEDA
creates from our ScaledObjects): `AverageValue` proposes ceil(total / target), `Value`
proposes ceil(value / target x ready pods), within a 0.1 tolerance; up by at most
max(2 x current, 4) per sync; down only once a higher recommendation has left the
downscale stabilisation window (scripts/e2e runs the controller with a 2 s sync and a 20 s
window, E2E_HPA_SYNC and E2E_HPA_DOWNSCALE_WINDOW).
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

import metrics
from conftest import apply, isvc
from metrics import requires_pod_network
from product import BINARY, kubectl, wait

pytestmark = requires_pod_network

HPA_SYNC = 2.0
DOWN_WINDOW = 20.0
TOLERANCE = 0.1
# Rate and quantile windows: short, so a test does not wait minutes for a rate to settle.
WINDOW = "30s"

Values = Callable[[int, int], dict[str, Any]]


def idle(_n: int, _i: int) -> dict[str, Any]:
    return {}


def loop_isvc(name: str, ns: str, annotations: dict[str, str]) -> dict[str, Any]:
    obj = isvc(name, ns, {
        "scaling.io/prometheus-address": metrics.PROMETHEUS_URL,
        "scaling.io/window": WINDOW,
        "scaling.io/min-replicas": "1",
        **annotations,
    })
    return obj


def replicas(ns: str, deployment: str) -> int:
    out = kubectl("-n", ns, "get", "deployment", deployment, "-o", "jsonpath={.spec.replicas}").stdout
    return int(out or "0")


class Load:
    """Keeps every running pod of a predictor reporting `values(n, i)`: n running pods, i the
    pod's place by creation. Set it to a new function to change the load; new pods get their
    share as soon as the kubelet stand-in gives them an address."""

    def __init__(self, ns: str, deployment: str, runtime: str = "vllm") -> None:
        self.selector = f"app=isvc.{deployment}"
        self.ns = ns
        self.runtime = runtime
        self.values: Values = idle
        self._sent: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._errors: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for ip in self._sent:
            metrics.reset_pod_metrics(ip)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.push()
            except Exception as e:  # a blip of the apiserver: try again, report if it lasts
                self._errors.append(repr(e))
            self._stop.wait(0.3)

    def push(self) -> None:
        running = [
            p for p in metrics.pods(self.ns, self.selector)
            if p.get("status", {}).get("podIP") and not p["metadata"].get("deletionTimestamp")
        ]
        running.sort(key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))
        fn = self.values
        for i, pod in enumerate(running):
            want = {"runtime": self.runtime, **fn(len(running), i)}
            ip = pod["status"]["podIP"]
            if self._sent.get(ip) != want:
                metrics.set_pod_metrics(ip, **want)
                self._sent[ip] = want

    def check(self) -> None:
        assert len(self._errors) < 20, f"the load could not be set: {self._errors[-3:]}"


def observe(history: list[tuple[float, int]], ns: str, deployment: str) -> int:
    """Reads spec.replicas and appends (wall-clock seconds, as Prometheus stamps samples; the
    value) to `history` when it changed."""
    n = replicas(ns, deployment)
    if not history or history[-1][1] != n:
        history.append((time.time(), n))
    return n


def watch(ns: str, deployment: str, done: Callable[[int], bool], what: str,
          timeout: float = 240) -> list[tuple[float, int]]:
    """spec.replicas over time (see `observe`) until `done`."""
    history: list[tuple[float, int]] = []

    def check() -> bool:
        return done(observe(history, ns, deployment))

    wait(f"{what} (replicas so far: {[n for _, n in history]})", check, timeout=timeout, every=0.25)
    return history


def holds(ns: str, deployment: str, n: int, seconds: float) -> None:
    """The count stays at `n` for `seconds` (a few syncs): no overshoot, no flapping."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = replicas(ns, deployment)
        assert now == n, f"replicas moved from {n} to {now}"
        time.sleep(0.25)


def average_value(total: float, target: float, current: int) -> int:
    """kube-controller-manager's proposal for an external AverageValue metric."""
    if abs(total / (target * current) - 1) <= TOLERANCE:
        return current
    return math.ceil(total / target)


def value(usage: float, target: float, current: int, ready: int) -> int:
    """Its proposal for an external Value metric."""
    ratio = usage / target
    if abs(ratio - 1) <= TOLERANCE:
        return current
    return math.ceil(ratio * ready)


def legacy_limit(current: int, desired: int, lo: int, hi: int) -> int:
    """min/max and max(2 x current, 4) on the way up."""
    return max(lo, min(desired, hi, max(2 * current, 4)))


def start(ns: str, name: str, annotations: dict[str, str]) -> str:
    """Creates the InferenceService and waits for its predictor's first pod to run."""
    apply(loop_isvc(name, ns, annotations))
    deployment = f"{name}-predictor"
    wait(f"ScaledObject {deployment} Ready", lambda: ready_condition(ns, deployment) == "True", timeout=120)
    metrics.wait_for_pods_running(ns, f"app=isvc.{deployment}", replicas(ns, deployment))
    return deployment


def ready_condition(ns: str, so: str) -> str | None:
    obj = json.loads(kubectl("-n", ns, "get", "scaledobject", so, "-o", "json").stdout)
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == "Ready":
            return c["status"]
    return None


def up_and_down(ns: str, deployment: str, load: Load, busy: Values, expected: int,
                settle: bool = False) -> list[tuple[float, int]]:
    """Busy until exactly `expected` replicas (and they hold), then idle until back at 1, which
    must not come before the downscale window has passed. With `settle`, the count may pass
    `expected` on the way (a Value trigger multiplies by ready pods whose share of the load
    Prometheus has not scraped yet) but must come back to it and stay."""
    load.values = busy
    if settle:
        history = settles(ns, deployment, expected)
    else:
        history = watch(ns, deployment, lambda n: n == expected, f"{deployment} at {expected} replicas")
        assert all(n <= expected for _, n in history), f"overshot {expected}: {history}"
        holds(ns, deployment, expected, 3 * HPA_SYNC)
    load.values = idle
    quiet = time.time()
    down = watch(ns, deployment, lambda n: n == 1, f"{deployment} back at 1 replica")
    first_drop = next(t for t, n in down if n < expected)
    assert first_drop - quiet >= DOWN_WINDOW - 1, (
        f"scaled down {first_drop - quiet:.1f}s after the load stopped, inside the {DOWN_WINDOW}s window"
    )
    load.check()
    assert replica_sets(ns, deployment) == 1, "the predictor was rolled out again while it scaled"
    return history


def settles(ns: str, deployment: str, n: int, timeout: float = 300) -> list[tuple[float, int]]:
    """Polls until the count has been `n` for three syncs in a row; the history of changes."""
    history: list[tuple[float, int]] = []

    def check() -> bool:
        now = observe(history, ns, deployment)
        return now == n and time.time() - history[-1][0] >= 3 * HPA_SYNC

    wait(f"{deployment} settled at {n} (so far: {[v for _, v in history]})", check, timeout=timeout, every=0.25)
    return history


def replica_sets(ns: str, deployment: str) -> int:
    """How many ReplicaSets the Deployment has had: one unless its pod template changed,
    which would have restarted the model servers."""
    out = kubectl("-n", ns, "get", "replicasets", "-l", f"app=isvc.{deployment}", "-o", "json").stdout
    return len(json.loads(out)["items"])


def test_queue_scales_to_waiting_over_target(running_ns: str) -> None:
    ns = running_ns
    deployment = start(ns, "queue", {
        "scaling.io/strategy": "queue",
        "scaling.io/target-queue": "5",
        "scaling.io/max-replicas": "6",
    })
    waiting = 12
    expected = legacy_limit(1, average_value(waiting, 5, 1), 1, 6)
    assert expected == 3
    with Load(ns, deployment) as load:
        # Only the first pod has a queue: the sum does not change as replicas are added.
        history = up_and_down(ns, deployment, load, lambda n, i: {"waiting": waiting if i == 0 else 0}, expected)
    # One step: the proposal was within the scale-up limit.
    assert [n for _, n in history] == [1, expected]


def test_tokens_scales_to_generated_tokens_per_second_over_target(running_ns: str) -> None:
    ns = running_ns
    deployment = start(ns, "tokens", {
        "scaling.io/strategy": "tokens",
        "scaling.io/target-tokens": "100",
        "scaling.io/max-replicas": "6",
    })
    rate = 250.0
    # The rate climbs to 250/s over the window; its end state is what is asserted.
    expected = math.ceil(rate / 100)
    with Load(ns, deployment) as load:
        history = up_and_down(
            ns, deployment, load, lambda n, i: {"generation_tokens_per_second": rate if i == 0 else 0.0}, expected
        )
    counts = [n for _, n in history]
    assert counts == sorted(counts), f"the replicas went down while the rate climbed: {counts}"


def test_kv_cache_value_trigger_settles_where_the_average_meets_the_target(running_ns: str) -> None:
    ns = running_ns
    target = 0.35
    deployment = start(ns, "kv", {
        "scaling.io/strategy": "kv-cache",
        "scaling.io/target-kv-cache": str(target),
        "scaling.io/max-replicas": "6",
    })
    # A fixed amount of KV cache in use, spread over the running pods as a balancer would:
    # the average falls as pods are added, so the count settles instead of running to max.
    demand = 0.9
    settled = math.ceil(demand / target)
    first = legacy_limit(1, value(demand, target, 1, 1), 1, 6)
    assert (first, settled) == (3, 3)
    at_settled = value(demand / settled, target, settled, settled)
    assert at_settled == settled, "the expected count must be a fixed point of the formula"
    with Load(ns, deployment) as load:
        history = up_and_down(ns, deployment, load, lambda n, i: {"kv_cache": demand / n}, settled, settle=True)
    # The first proposal sees one pod holding the whole demand.
    assert [n for _, n in history][:2] == [1, first]


def test_ttft_value_trigger_multiplies_by_ready_pods_until_max(running_ns: str) -> None:
    ns = running_ns
    deployment = start(ns, "ttft", {
        "scaling.io/strategy": "ttft",
        "scaling.io/target-ttft": "1",
        "scaling.io/max-replicas": "4",
    })
    ttft = 2.0
    # Every observation falls in vLLM's (1, 2.5] bucket: p95 interpolates inside it.
    p95 = metrics.histogram_quantile(0.95, metrics.VLLM_TTFT_BUCKETS, [(ttft, 1.0)])
    assert p95 == pytest.approx(1.0 + 1.5 * 0.95)
    first = legacy_limit(1, value(p95, 1.0, 1, 1), 1, 4)
    second = legacy_limit(first, value(p95, 1.0, first, first), 1, 4)
    assert (first, second) == (3, 4)
    with Load(ns, deployment) as load:
        history = up_and_down(ns, deployment, load, lambda n, i: {"ttft_seconds": ttft}, second)
    assert [n for _, n in history] == [1, first, second]


def test_sglang_queue(running_ns: str) -> None:
    ns = running_ns
    deployment = start(ns, "sgl", {
        "scaling.io/strategy": "queue",
        "scaling.io/runtime": "sglang",
        "scaling.io/target-queue": "5",
        "scaling.io/max-replicas": "6",
    })
    expected = legacy_limit(1, average_value(16, 5, 1), 1, 6)
    assert expected == 4
    with Load(ns, deployment, runtime="sglang") as load:
        history = up_and_down(ns, deployment, load, lambda n, i: {"waiting": 16 if i == 0 else 0}, expected)
    assert [n for _, n in history] == [1, expected]


def hpa_metric_values(ns: str, deployment: str) -> list[str]:
    hpa = json.loads(kubectl("-n", ns, "get", "hpa", f"keda-hpa-{deployment}", "-o", "json").stdout)
    return [
        m["external"]["current"].get("averageValue") or m["external"]["current"].get("value")
        for m in hpa.get("status", {}).get("currentMetrics") or []
    ]


def test_a_busy_neighbour_in_the_namespace_does_not_move_ours(running_ns: str) -> None:
    ns = running_ns
    annotations = {
        "scaling.io/strategy": "queue",
        "scaling.io/target-queue": "5",
        "scaling.io/max-replicas": "6",
    }
    ours = start(ns, "ours", annotations)
    theirs = start(ns, "theirs", annotations)
    with Load(ns, theirs) as busy, Load(ns, ours):
        busy.values = lambda n, i: {"waiting": 20 if i == 0 else 0}
        watch(ns, theirs, lambda n: n == 4, f"{theirs} at 4 replicas")
        # Our HPA has read its metric since: it reads zero, and nothing moved.
        wait(f"{ours}'s HPA reads its own queue", lambda: hpa_metric_values(ns, ours) == ["0"], timeout=60)
        holds(ns, ours, 1, 3 * HPA_SYNC)
        busy.check()


def test_custom_trigger_on_a_gateway_signal_scales_from_and_to_zero(running_ns: str) -> None:
    ns = running_ns
    # A gateway in front of the model: its queue is a signal from outside the predictor pods,
    # so it can wake a predictor that has no pods.
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all([
        {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "gateway", "namespace": ns, "labels": {"app": "gateway"}},
            "spec": {"containers": [{"name": "gateway", "image": "example.invalid/gateway",
                                     "ports": [{"containerPort": 8080, "name": "metrics"}]}]},
        },
        {
            "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
            "metadata": {"name": "gateway", "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "gateway"}},
                     "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics"}]},
        },
    ]))
    (gateway,) = metrics.wait_for_pods_running(ns, "app=gateway", 1)
    gateway_ip = gateway["status"]["podIP"]
    query = f'sum(vllm:num_requests_waiting{{namespace="{ns}",pod="gateway"}})'
    cooldown = 10
    apply(loop_isvc("wake", ns, {
        "scaling.io/strategy": "custom",
        "scaling.io/query": query,
        "scaling.io/target": "5",
        "scaling.io/min-replicas": "0",
        "scaling.io/max-replicas": "3",
        "scaling.io/cooldown-period": str(cooldown),
        "scaling.io/polling-interval": "2",
    }))
    deployment = "wake-predictor"
    try:
        # Never active: KEDA takes it to zero at once.
        watch(ns, deployment, lambda n: n == 0, f"{deployment} scaled to zero while idle")
        wait("the gateway is scraped", lambda: metrics.prometheus_value(query) == 0.0, timeout=120)
        metrics.set_pod_metrics(gateway_ip, runtime="vllm", waiting=3)
        woke = watch(ns, deployment, lambda n: n == 1, f"{deployment} woken by the gateway's queue")
        assert [n for _, n in woke] == [0, 1]
        holds(ns, deployment, 1, 3 * HPA_SYNC)
        metrics.set_pod_metrics(gateway_ip, runtime="vllm", waiting=0)
        quiet = time.time()
        slept = watch(ns, deployment, lambda n: n == 0, f"{deployment} back to zero after the cooldown")
        assert slept[-1][0] - quiet >= cooldown - 2, f"zero {slept[-1][0] - quiet:.1f}s after the queue emptied"
    finally:
        metrics.reset_pod_metrics(gateway_ip)


def test_pod_metric_strategy_at_zero_is_warned_and_cannot_wake(running_ns: str) -> None:
    ns = running_ns
    res = apply(loop_isvc("asleep", ns, {
        "scaling.io/strategy": "queue",
        "scaling.io/min-replicas": "0",
        "scaling.io/max-replicas": "3",
        "scaling.io/polling-interval": "2",
    }))
    assert "min-replicas" in res.stderr and "Warning" in res.stderr, res.stderr
    watch(ns, "asleep-predictor", lambda n: n == 0, "asleep-predictor scaled to zero")
    # What the warning says: with no pod there is no queue to read, so nothing wakes it.
    holds(ns, "asleep-predictor", 0, 5 * 2.0)


def test_an_unreachable_prometheus_shows_on_the_scaled_object_and_the_isvc(ns: str) -> None:
    apply(isvc("blind", ns, {
        "scaling.io/strategy": "queue",
        "scaling.io/prometheus-address": "http://127.0.0.1:9",
    }))
    so = "blind-predictor"

    # KEDA's verdict changes while it settles: before KServe has made the Deployment, Ready is
    # False with ScaledObjectCheckFailed (target not found); once its scale loop queries the
    # address it is TriggerError, and KEDA flips Ready back to True at each of its own
    # reconciles. The product repeats each new verdict on the InferenceService at once, so the
    # failing trigger's one must arrive whatever came before it.
    def trigger_error_event() -> dict[str, Any] | None:
        items = json.loads(kubectl("-n", ns, "get", "events.events.k8s.io", "-o", "json").stdout)["items"]
        return next((e for e in items if e.get("reason") == "ScaledObjectNotReady"
                     and e["regarding"]["name"] == "blind"
                     and "(TriggerError)" in e.get("note", "")), None)

    found = wait("ScaledObjectNotReady (TriggerError) on the InferenceService", trigger_error_event,
                 timeout=180)
    assert found["type"] == "Warning"
    assert found["regarding"]["kind"] == "InferenceService"
    assert f"ScaledObject {so} not ready" in found["note"], found["note"]
    # Only what KEDA wrote on the ScaledObject is repeated: the same verdict shows there.
    def so_trigger_error() -> bool:
        obj = json.loads(kubectl("-n", ns, "get", "scaledobject", so, "-o", "json").stdout)
        return any(c["type"] == "Ready" and c["status"] == "False" and c.get("reason") == "TriggerError"
                   for c in obj.get("status", {}).get("conditions", []))

    # Ready flaps between False and True while the trigger fails; a fast poll sees False.
    wait(f"ScaledObject {so} Ready=False with reason TriggerError", so_trigger_error,
         timeout=180, every=0.2)


def sample_time(selector: str, value: float) -> float:
    """When Prometheus first stored `value` for the series `selector` (its sample timestamp);
    call it right after the change, as it polls faster than Prometheus scrapes."""
    return wait(
        f"{selector} == {value} in Prometheus",
        lambda: metrics.prometheus_value(f"timestamp({selector} == {value})"),
        timeout=60,
        every=0.2,
    )


class Recorder:
    """spec.replicas recorded in the background (wall clock, value at each change), so no
    change is missed while the test waits on something else."""

    def __init__(self, ns: str, deployment: str) -> None:
        self.ns, self.deployment = ns, deployment
        self.history: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                observe(self.history, self.ns, self.deployment)
            except Exception:  # a blip; the next poll records the change
                pass
            self._stop.wait(0.2)

    def reaches(self, n: int, timeout: float = 240) -> None:
        wait(f"{self.deployment} at {n} replicas (so far: {[v for _, v in self.history]})",
             lambda: bool(self.history) and self.history[-1][1] == n, timeout=timeout)


def test_replicas_follow_the_simulators_hpa_model_on_a_step(running_ns: str, tmp_path: Any) -> None:
    """The same step through kube-controller-manager and through `simulate --signals`.

    Both start from the moment Prometheus stores the new value: what happens before (the
    stand-in's update, the scrape) is not part of the HPA model. What remains is the phase of
    the controller's sync and the read through the adapter, so each change may come up to one
    sync period and a little later for real.
    """
    ns = running_ns
    annotations = {
        "scaling.io/strategy": "queue",
        "scaling.io/target-queue": "5",
        "scaling.io/max-replicas": "12",
    }
    deployment = start(ns, "step", annotations)
    (first,) = metrics.pods(ns, f"app=isvc.{deployment}")
    pod = first["metadata"]["name"]
    series = f'vllm:num_requests_waiting{{namespace="{ns}",pod="{pod}"}}'
    with Load(ns, deployment) as load, Recorder(ns, deployment) as recorder:
        load.values = lambda n, i: {"waiting": 60 if i == 0 else 0}
        rose = sample_time(series, 60)
        recorder.reaches(12)
        holds(ns, deployment, 12, 3 * HPA_SYNC)
        load.values = idle
        fell = sample_time(series, 0)
        recorder.reaches(1)
        load.check()
    real = [(t - rose, n) for t, n in recorder.history[1:]]

    offset = 10.0
    signals = tmp_path / "signals.csv"
    signals.write_text(f"t,trigger,value\n{offset},queue,60\n{offset + fell - rose:.3f},queue,0\n")
    manifest = tmp_path / "isvc.yaml"
    manifest.write_text(yaml.safe_dump(loop_isvc("step", ns, annotations)))
    out = subprocess.run(
        [str(BINARY), "simulate", "-f", str(manifest), "--signals", str(signals),
         "--hpa-sync-period", f"{HPA_SYNC:.0f}s", "--hpa-downscale-stabilization", f"{DOWN_WINDOW:.0f}s",
         "--output", "json"],
        capture_output=True, text=True, check=True,
    )
    timeline = json.loads(out.stdout)["timeline"]
    simulated = [(k["t"] - offset, k["desired"]) for k in timeline if k["desired"] != k["currentReplicas"]]

    assert [n for _, n in real] == [n for _, n in simulated], f"real {real}\nsimulated {simulated}"
    # The simulator syncs on its own grid, the controller on another: a change may come up to
    # a sync period earlier or later (plus the read through the adapter), not more. A 15 s
    # rate policy or the default 300 s window would be far outside this.
    for (rt, n), (st, _) in zip(real, simulated):
        assert abs(rt - st) <= HPA_SYNC + 1.5, f"{n} replicas at {rt:.1f}s for real, {st:.1f}s simulated"
