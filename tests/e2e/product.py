"""This project on the e2e control plane: installed with its Helm chart (a real `helm install`
through helm-python-sdk), with the webhook and controller run as local processes on 127.0.0.1
instead of Pods (there is no kubelet).

Each local replica is started with the container arguments of the chart's Deployment as the
API server stores it, with only the listen addresses and file paths changed, and with a
kubeconfig holding a token of the chart's ServiceAccount (TokenRequest API), so the chart's
RBAC is what the controller really gets.

    product.py up     install the chart and start replica "a" (used by scripts/e2e up)
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kserve-keda-webhook"
# The binary under test: E2E_PRODUCT_BIN when set (CI runs the release build, what ships), else
# the debug build in Cargo's output folder (CARGO_TARGET_DIR when set).
BINARY = pathlib.Path(
    os.environ.get("E2E_PRODUCT_BIN")
    or pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug" / "kserve-keda-webhook"
)
RELEASE = "kserve-keda-webhook"
NAMESPACE = "kserve-keda-webhook"

STATE = pathlib.Path(os.environ.get("E2E_STATE_DIR", "/tmp/kserve-keda-webhook-e2e"))
BIN = pathlib.Path(os.environ.get("E2E_BIN", ""))
PORT_BASE = int(os.environ.get("E2E_PORT_BASE", "23400")) + 30
ADMIN = STATE / "admin.kubeconfig"
PKI = STATE / "pki"

# Local replicas: name -> (admission port, metrics port). Replica "a" is the one the
# MutatingWebhookConfiguration's url points at.
REPLICAS = {"a": (PORT_BASE, PORT_BASE + 1), "b": (PORT_BASE + 2, PORT_BASE + 3)}
WEBHOOK_URL = f"https://127.0.0.1:{REPLICAS['a'][0]}/mutate"


class Timeout(AssertionError):
    pass


class KubectlError(AssertionError):
    pass


def wait(what: str, check: Callable[[], Any], timeout: float = 60, every: float = 0.5) -> Any:
    """Polls `check` until it returns something truthy; raises naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except (KubectlError, subprocess.CalledProcessError, OSError, ValueError, KeyError, TypeError) as e:
            last = e
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(every)


def kubectl(
    *args: str,
    input: str | None = None,
    check: bool = True,
    kubeconfig: pathlib.Path = ADMIN,
) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "kubectl"), "--kubeconfig", str(kubeconfig), *args]
    res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise KubectlError(f"kubectl {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def get(kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    ns = ["-n", namespace] if namespace else []
    res = kubectl("get", kind, name, *ns, "-o", "json", "--show-managed-fields", check=False)
    if res.returncode != 0:
        if "NotFound" in res.stderr or "not found" in res.stderr:
            return None
        raise KubectlError(f"kubectl get {kind} {name}: {res.stderr.strip()}")
    return json.loads(res.stdout)


def default_values() -> dict[str, Any]:
    ca = base64.b64encode((PKI / "webhook-ca.crt").read_bytes()).decode()
    return {
        "replicaCount": 1,
        "webhook": {"url": WEBHOOK_URL, "timeoutSeconds": 10},
        # The local replica serves the certificate scripts/e2e made for 127.0.0.1.
        "certs": {"mode": "provided", "provided": {"secretName": "e2e-serving", "caBundle": ca}},
        "config": {"rawMode": "Standard", "monitorLabels": {"release": "prometheus"}},
    }


def helm_config() -> helm.Config:
    return helm.Config(kubeconfig_path=str(ADMIN), namespace=NAMESPACE)


def install(values: dict[str, Any]) -> None:
    with helm_config() as cfg:
        cfg.install(str(CHART), RELEASE, values, namespace=NAMESPACE, create_namespace=True)


def upgrade(values: dict[str, Any]) -> None:
    with helm_config() as cfg:
        cfg.upgrade(str(CHART), RELEASE, values, namespace=NAMESPACE, reset_values=True)


def current_values() -> dict[str, Any]:
    """The values of the installed release, as `helm get values` shows them."""
    with helm_config() as cfg:
        return cfg.get_values(RELEASE)


def service_account() -> str:
    deploy = deployment()
    return deploy["spec"]["template"]["spec"]["serviceAccountName"]


def deployment() -> dict[str, Any]:
    found = json.loads(
        kubectl(
            "-n", NAMESPACE, "get", "deployment", "-o", "json",
            "-l", f"app.kubernetes.io/instance={RELEASE}",
        ).stdout
    )["items"]
    assert len(found) == 1, f"expected one Deployment of release {RELEASE}, got {len(found)}"
    return found[0]


def sa_kubeconfig() -> pathlib.Path:
    """A kubeconfig with a TokenRequest token of the chart's ServiceAccount."""
    sa = service_account()
    token = kubectl("-n", NAMESPACE, "create", "token", sa, "--duration", "24h").stdout.strip()
    path = STATE / "product" / "sa.kubeconfig"
    path.parent.mkdir(parents=True, exist_ok=True)
    server = yaml.safe_load(ADMIN.read_text())["clusters"][0]["cluster"]["server"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "e2e", "cluster": {"server": server, "certificate-authority": str(PKI / "ca.crt")}}
                ],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "e2e", "user": sa}}],
                "current-context": "sa",
            }
        )
    )
    path.chmod(0o600)
    return path


def sync_policy(dest: pathlib.Path) -> bool:
    """Copies the chart's policy ConfigMap to `dest`, as the kubelet projects it into the Pod.
    Returns whether the chart has a policy."""
    cm = get("configmap", f"{deployment()['metadata']['name']}-policy", NAMESPACE)
    if cm is None:
        dest.unlink(missing_ok=True)
        return False
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(cm["data"]["policy.yaml"])
    tmp.rename(dest)
    return True


def local_args(name: str) -> list[str]:
    """The chart's container args with this replica's addresses and local file paths."""
    addr_port, metrics_port = REPLICAS[name]
    container = deployment()["spec"]["template"]["spec"]["containers"][0]
    out: list[str] = []
    home = STATE / "product" / name
    home.mkdir(parents=True, exist_ok=True)
    for arg in container["args"]:
        flag = arg.split("=", 1)[0]
        if flag == "--addr":
            arg = f"--addr=127.0.0.1:{addr_port}"
        elif flag == "--metrics-addr":
            arg = f"--metrics-addr=127.0.0.1:{metrics_port}"
        elif flag == "--tls-cert-file":
            arg = f"--tls-cert-file={PKI / 'webhook.crt'}"
        elif flag == "--tls-key-file":
            arg = f"--tls-key-file={PKI / 'webhook.key'}"
        elif flag == "--log-format":
            arg = "--log-format=text"
        elif flag == "--policy":
            policy = STATE / "product" / "policy.yaml"
            sync_policy(policy)
            arg = f"--policy={policy}"
        out.append(arg)
    if "--cert-mode=self-managed" in out:
        out += [f"--cert-dir={home / 'certs'}", "--cert-check-interval=2"]
    # Faster than in a cluster, so the tests need not wait: no drain delay on stop, files
    # re-read every second, the self-managed certificate checked every 2 s.
    out += ["--shutdown-delay=0", "--cert-reload-interval=1"]
    return out


def pid_file(name: str) -> pathlib.Path:
    return STATE / "pids" / f"product-{name}.pid"


def log_file(name: str) -> pathlib.Path:
    return STATE / "logs" / f"product-{name}.log"


def log_tail(name: str, lines: int = 60) -> str:
    try:
        return "\n".join(log_file(name).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def running(name: str) -> int | None:
    try:
        pid = int(pid_file(name).read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def http_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start(name: str, wait_ready: bool = True) -> int:
    assert running(name) is None, f"replica {name} already runs"
    env = dict(os.environ)
    env.update(
        KUBECONFIG=str(sa_kubeconfig()),
        POD_NAMESPACE=NAMESPACE,
        POD_NAME=f"e2e-replica-{name}",
        RUST_LOG="info,kserve_keda_webhook=debug",
    )
    env.pop("RUST_BACKTRACE", None)
    with log_file(name).open("ab") as log:
        proc = subprocess.Popen(
            [str(BINARY), *local_args(name)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    pid_file(name).write_text(str(proc.pid))
    if wait_ready:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"replica {name} exited ({proc.returncode}):\n{log_tail(name)}")
            return http_ready(REPLICAS[name][1])

        try:
            wait(f"replica {name} /readyz", ready, timeout=90)
        except Timeout as e:
            raise Timeout(f"{e}\n---- {log_file(name)}\n{log_tail(name)}") from None
    return proc.pid


def stop(name: str, sig: int = signal.SIGTERM) -> None:
    pid = running(name)
    if pid is not None:
        os.kill(pid, sig)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                # Our own child when started in this process; otherwise poll its existence.
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
            except ChildProcessError:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    pid_file(name).unlink(missing_ok=True)


def restart(name: str) -> None:
    stop(name)
    start(name)


def up() -> None:
    install(default_values())
    start("a")


if __name__ == "__main__":
    if sys.argv[1:] == ["up"]:
        up()
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
