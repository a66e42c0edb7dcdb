"""A kubelet stand-in for the e2e control plane: pods in namespaces labelled
`e2e.kserve-keda-webhook/pods=running` are bound to one Node and reported Running and Ready
with an IP from the pod network's pool (scripts/e2e adds every pool address to the network
namespace, where the stand-in model servers answer on all of them). Nothing runs: only what
the scheduler and a kubelet would write, so Deployments, Services' endpoints and Prometheus'
service discovery see ready pods.

    kubelet.py --kubeconfig FILE --node NAME --host-ip 198.18.4.1 \
        --first 198.18.4.10 --last 198.18.4.250

Why a Node and a binding: the API server does accept Running status and a pod IP on a pod
with no node, but the EndpointSlice controller skips such a pod ("Node not found"), so the
Service would get no endpoints. So this process registers a Node, binds each pod to it through
the `binding` subresource (as the scheduler does), and, as a kubelet does once containers have
stopped, finishes the graceful deletion of its pods (a bound pod is only marked for deletion).
Other namespaces are left alone: their pods stay Pending and unbound, as before.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import pathlib
import sys
import time
import urllib.parse
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from kube import Api, ApiError  # noqa: E402

LABEL = "e2e.kserve-keda-webhook/pods=running"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_status(pod: dict[str, Any], ip: str, host_ip: str) -> dict[str, Any]:
    """What a kubelet reports once every init container finished and every container runs
    and passes its readiness probe."""
    t = now()
    spec = pod["spec"]
    conditions = [
        {"type": c, "status": "True", "lastTransitionTime": t}
        for c in ("PodReadyToStartContainers", "PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    return {
        "phase": "Running",
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": t,
        "conditions": conditions,
        "initContainerStatuses": [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": True,
                "restartCount": 0,
                "state": {
                    "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t}
                },
            }
            for c in spec.get("initContainers", [])
        ],
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": t}},
            }
            for c in spec.get("containers", [])
        ],
    }


class Kubelet:
    def __init__(self, api: Api, node: str, host_ip: str, first: str, last: str) -> None:
        self.api, self.node, self.host_ip = api, node, host_ip
        lo, hi = int(ipaddress.IPv4Address(first)), int(ipaddress.IPv4Address(last))
        self.pool = [str(ipaddress.IPv4Address(i)) for i in range(lo, hi + 1)]
        self.used: dict[str, str] = {}  # pod uid -> IP
        self.next = 0

    def namespaces(self) -> set[str]:
        q = urllib.parse.urlencode({"labelSelector": LABEL})
        return {n["metadata"]["name"] for n in self.api.get(f"/api/v1/namespaces?{q}")["items"]}

    def allocate(self, uid: str) -> str:
        """Round robin, so a freed address is reused as late as possible (Prometheus may
        still hold the old pod's target for a few seconds)."""
        taken = set(self.used.values())
        for k in range(len(self.pool)):
            ip = self.pool[(self.next + k) % len(self.pool)]
            if ip not in taken:
                self.next = (self.next + k + 1) % len(self.pool)
                self.used[uid] = ip
                return ip
        raise RuntimeError(f"pod network pool exhausted ({len(self.pool)} addresses)")

    def register(self) -> None:
        """The Node, Ready, as a kubelet registers itself (no taints, so nothing evicts)."""
        try:
            self.api.request("POST", "/api/v1/nodes", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node}},
            })
        except ApiError as e:
            if e.status != 409:
                raise
        t = now()
        status = {
            "addresses": [{"type": "InternalIP", "address": self.host_ip}, {"type": "Hostname", "address": self.node}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": t, "lastTransitionTime": t}],
            "capacity": {"cpu": "64", "memory": "512Gi", "pods": "250"},
            "allocatable": {"cpu": "64", "memory": "512Gi", "pods": "250"},
        }
        self.api.request("PATCH", f"/api/v1/nodes/{self.node}/status", {"status": status},
                         "application/merge-patch+json")

    def finish_deletion(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": meta["uid"]}}
        try:
            self.api.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)
            print(f"{meta['namespace']}/{meta['name']} deleted", flush=True)
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    def bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.api.request("POST", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        })

    def sync(self) -> None:
        wanted = self.namespaces()
        pods = self.api.get("/api/v1/pods")["items"]
        alive = {p["metadata"]["uid"] for p in pods}
        for uid in [u for u in self.used if u not in alive]:
            print(f"freed {self.used.pop(uid)} (pod {uid} gone)", flush=True)
        # Pods that already carry an IP (a restart of this process) keep it.
        for p in pods:
            ip = p.get("status", {}).get("podIP")
            if ip in self.pool:
                self.used.setdefault(p["metadata"]["uid"], ip)
        for p in pods:
            meta, status = p["metadata"], p.get("status", {})
            node = p["spec"].get("nodeName")
            if node == self.node and meta.get("deletionTimestamp"):
                self.finish_deletion(p)
                continue
            if meta["namespace"] not in wanted or meta.get("deletionTimestamp"):
                continue
            if node and node != self.node:
                continue
            if node and status.get("phase") == "Running" and status.get("podIP"):
                continue
            uid = meta["uid"]
            ip = self.used.get(uid) or self.allocate(uid)
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
            try:
                if not node:
                    self.bind(p)
                self.api.request(
                    "PATCH", path, {"status": running_status(p, ip, self.host_ip)}, "application/merge-patch+json"
                )
                print(f"{meta['namespace']}/{meta['name']} running at {ip}", flush=True)
            except ApiError as e:
                if e.status not in (404, 409):
                    raise


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", type=pathlib.Path, required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--host-ip", required=True)
    parser.add_argument("--first", required=True)
    parser.add_argument("--last", required=True)
    parser.add_argument("--interval", type=float, default=0.3)
    args = parser.parse_args(argv)
    kubelet = Kubelet(Api(args.kubeconfig), args.node, args.host_ip, args.first, args.last)
    kubelet.register()
    while True:
        try:
            kubelet.sync()
        except (ApiError, OSError) as e:
            print(f"sync failed (retrying): {e}", file=sys.stderr, flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
