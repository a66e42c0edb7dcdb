"""Upstream manifests for the end-to-end control plane, read from the module folders the Go
module proxy serves and adapted to processes on 127.0.0.1 (no Service, no Pod can run).

    upstream.py kserve --src DIR --ca FILE --kserve-port N   ConfigMap + webhook configurations
    upstream.py kserve-runtimes --src DIR                    the ClusterServingRuntimes used
    upstream.py keda --src DIR --ca FILE --keda-port N       KEDA's webhook configuration
    upstream.py keda-metrics-apiserver --src DIR --ca FILE --adapter-ip IP --adapter-port N
                                                             KEDA's APIService, its Service
                                                             and an EndpointSlice to the adapter

Prints YAML on stdout. Nothing upstream is copied into the repository: the files are read at
run time from the pinned module versions.
"""

from __future__ import annotations

import argparse
import base64
import json
import pathlib
import sys
from typing import Any

import yaml

# Runtimes the e2e InferenceServices select (huggingface for LLMs, sklearn for a plain model).
RUNTIMES = ["kserve-huggingfaceserver.yaml", "kserve-sklearnserver.yaml"]


def load_all(path: pathlib.Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_url(docs: list[dict[str, Any]], port: int, ca: bytes) -> list[dict[str, Any]]:
    """Every webhook calls https://127.0.0.1:<port><path> and trusts `ca`. Failure policy is
    Fail so a webhook that is not running fails the test instead of being skipped silently."""
    bundle = base64.b64encode(ca).decode()
    for doc in docs:
        doc["metadata"].pop("creationTimestamp", None)
        for hook in doc.get("webhooks", []):
            path = hook["clientConfig"]["service"].get("path", "/")
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
            hook["failurePolicy"] = "Fail"
    return docs


def kserve(src: pathlib.Path, ca: bytes, port: int) -> list[dict[str, Any]]:
    (config,) = load_all(src / "kserve/config/configmap/inferenceservice.yaml")
    data = config["data"]
    data.pop("_example", None)
    ingress = json.loads(data["ingress"])
    # No Istio, no Gateway API, no Ingress controller here: KServe must not try to create one.
    ingress["disableIngressCreation"] = True
    # KServe checks that the predictor's host name is a valid DNS label. The default template
    # `<name>-<namespace>` caps the Deployment name plus namespace at 62 characters, so a name
    # long enough for the ScaledObject name cut (over 54) needs the dotted form users pick.
    ingress["domainTemplate"] = "{{ .Name }}.{{ .Namespace }}.{{ .IngressDomain }}"
    data["ingress"] = json.dumps(ingress, indent=2)
    deploy = json.loads(data["deploy"])
    deploy["defaultDeploymentMode"] = "Standard"
    data["deploy"] = json.dumps(deploy, indent=2)
    hooks = load_all(src / "kserve/config/webhook/manifests.yaml")
    return [config, *by_url(hooks, port, ca)]


def kserve_runtimes(src: pathlib.Path) -> list[dict[str, Any]]:
    docs = []
    for name in RUNTIMES:
        docs.extend(load_all(src / "kserve/config/runtimes" / name))
    return docs


def keda(src: pathlib.Path, ca: bytes, port: int) -> list[dict[str, Any]]:
    return by_url(load_all(src / "keda/config/webhooks/validation_webhooks.yaml"), port, ca)


def keda_metrics_apiserver(src: pathlib.Path, ca: bytes, ip: str, port: int) -> list[dict[str, Any]]:
    """The external metrics APIService as KEDA ships it, served by the adapter at `ip`:`port`.

    The Service loses its selector, because no adapter Pod exists for the EndpointSlice
    controller to find; the EndpointSlice written here names the adapter's address instead, and
    the apiserver (with --enable-aggregator-routing) dials it directly. The apiserver checks the
    adapter's certificate for `<service>.<namespace>.svc` against `ca`.
    """
    folder = src / "keda/config/metrics-server"
    (service,) = load_all(folder / "service.yaml")
    (apiservice,) = load_all(folder / "api_service.yaml")
    service["spec"].pop("selector", None)
    https = next(p for p in service["spec"]["ports"] if p["name"] == "https")
    https["targetPort"] = port
    service["spec"]["ports"] = [https]
    meta = service["metadata"]
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{meta['name']}-adapter",
            "namespace": meta["namespace"],
            "labels": {
                "kubernetes.io/service-name": meta["name"],
                "endpointslice.kubernetes.io/managed-by": "e2e.kserve-keda-webhook",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
    }
    spec = apiservice["spec"]
    spec.pop("insecureSkipTLSVerify", None)
    spec["caBundle"] = base64.b64encode(ca).decode()
    spec["service"]["port"] = https["port"]
    return [service, endpoints, apiservice]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["kserve", "kserve-runtimes", "keda", "keda-metrics-apiserver"])
    parser.add_argument("--src", type=pathlib.Path, required=True)
    parser.add_argument("--ca", type=pathlib.Path)
    parser.add_argument("--kserve-port", type=int)
    parser.add_argument("--keda-port", type=int)
    parser.add_argument("--adapter-ip")
    parser.add_argument("--adapter-port", type=int)
    args = parser.parse_args(argv)
    if args.what == "kserve":
        docs = kserve(args.src, args.ca.read_bytes(), args.kserve_port)
    elif args.what == "keda":
        docs = keda(args.src, args.ca.read_bytes(), args.keda_port)
    elif args.what == "keda-metrics-apiserver":
        docs = keda_metrics_apiserver(args.src, args.ca.read_bytes(), args.adapter_ip, args.adapter_port)
    else:
        docs = kserve_runtimes(args.src)
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
