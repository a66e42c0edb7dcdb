"""The chart's `helm test` hook against the real API server. Pods never run here, so the hook's
own objects are created from the installed release's values and the hook Pod's command is run
as that Pod would run it: kubectl with the hook's arguments, as the hook's ServiceAccount, on
the InferenceService its ConfigMap holds."""

from __future__ import annotations

import pathlib
import subprocess
from typing import Any

import helm_python as helm
import yaml

from product import BIN, CHART, NAMESPACE, PKI, RELEASE, STATE, current_values, kubectl


def hook_objects() -> list[dict[str, Any]]:
    """The objects of the release's `test` hook, as Helm renders them for the installed values."""
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(current_values(), name=RELEASE, namespace=NAMESPACE, is_install=False)
    docs = [d for path, text in sorted(files.items()) if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
    return [d for d in docs if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]


def token_kubeconfig(namespace: str, sa: str, path: pathlib.Path) -> pathlib.Path:
    token = kubectl("-n", namespace, "create", "token", sa, "--duration", "1h").stdout.strip()
    server = yaml.safe_load((STATE / "admin.kubeconfig").read_text())["clusters"][0]["cluster"]["server"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": str(PKI / "ca.crt")}}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "hook", "context": {"cluster": "e2e", "user": sa}}],
        "current-context": "hook",
    }))
    return path


def run_hook_command(pod: dict[str, Any], manifest: pathlib.Path, kubeconfig: pathlib.Path) -> subprocess.CompletedProcess[str]:
    (container,) = pod["spec"]["containers"]
    (mount,) = container["volumeMounts"]
    args = [a.replace(mount["mountPath"] + "/inferenceservice.yaml", str(manifest)) for a in container["args"]]
    return subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=120)


def test_the_helm_test_hook_passes_against_the_installed_release(tmp_path: pathlib.Path) -> None:
    hooks = hook_objects()
    kinds = sorted(h["kind"] for h in hooks)
    assert kinds == ["ConfigMap", "Pod", "Role", "RoleBinding", "ServiceAccount"], kinds
    (pod,) = [h for h in hooks if h["kind"] == "Pod"]
    (config,) = [h for h in hooks if h["kind"] == "ConfigMap"]
    created = [h for h in hooks if h["kind"] != "Pod"]
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(created))
    try:
        manifest = tmp_path / "inferenceservice.yaml"
        manifest.write_text(config["data"]["inferenceservice.yaml"])
        isvc = yaml.safe_load(manifest.read_text())
        sa = pod["spec"]["serviceAccountName"]
        hook_kubeconfig = token_kubeconfig(pod["metadata"]["namespace"], sa, tmp_path / "hook.kubeconfig")

        passed = run_hook_command(pod, manifest, hook_kubeconfig)
        assert passed.returncode == 0, passed.stderr
        # The webhook's answer: KServe's autoscaler class handed to KEDA, and a raw deployment.
        autoscaler, mode = passed.stdout.split()
        assert autoscaler == "external"
        assert mode in ("RawDeployment", "Standard"), passed.stdout
        # A dry run: nothing was stored.
        assert kubectl("-n", isvc["metadata"]["namespace"], "get", "inferenceservice",
                       isvc["metadata"]["name"], check=False).returncode != 0

        # Where the webhook is not called (the release namespace never is), the same command
        # fails: the check really depends on our answer.
        isvc["metadata"]["namespace"] = NAMESPACE
        elsewhere = tmp_path / "elsewhere.yaml"
        elsewhere.write_text(yaml.safe_dump(isvc))
        failed = run_hook_command(pod, elsewhere, STATE / "admin.kubeconfig")
        assert failed.returncode != 0, failed.stdout
        assert "autoscalerClass is not found" in failed.stderr, failed.stderr
    finally:
        kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=false", input=yaml.safe_dump_all(created), check=False)
