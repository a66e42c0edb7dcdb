"""What the kubelet's volume mounts and prometheus-config-reloader do for a Prometheus Pod,
for Debian's prometheus run as a local process: copies the configuration prometheus-operator
generates (Secret `prometheus-<name>`, key `prometheus.yaml.gz`) and its rule files
(ConfigMaps `prometheus-<name>-rulefiles-N`) to files, and calls Prometheus' /-/reload when
they change.

    prometheus_sync.py --kubeconfig FILE --namespace monitoring --name e2e --dir DIR \\
        --reload-url http://127.0.0.1:PORT/-/reload

The configuration is written as DIR/prometheus.yaml; paths under /etc/prometheus/ (where the
operator's StatefulSet mounts rule files) become paths under DIR/, and `$(POD_NAME)` and
`$(SHARD)` are expanded as the config reloader expands environment variables.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import os
import pathlib
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from kube import Api, ApiError  # noqa: E402


def write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(path)


class Sync:
    def __init__(self, api: Api, namespace: str, name: str, out: pathlib.Path, reload_url: str) -> None:
        self.api, self.ns, self.name, self.out, self.reload_url = api, namespace, name, out, reload_url
        self.env = {"POD_NAME": f"prometheus-{name}-0", "SHARD": "0"}
        self.applied = ""

    def config(self) -> str | None:
        try:
            secret = self.api.get(f"/api/v1/namespaces/{self.ns}/secrets/prometheus-{self.name}")
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        raw = (secret.get("data") or {}).get("prometheus.yaml.gz")
        if not raw:
            return None
        text = gzip.decompress(base64.b64decode(raw)).decode()
        text = text.replace("/etc/prometheus/", f"{self.out}/")
        return re.sub(r"\$\((\w+)\)", lambda m: self.env.get(m.group(1), m.group(0)), text)

    def rules(self) -> dict[pathlib.Path, str]:
        q = urllib.parse.urlencode({"labelSelector": f"prometheus-name={self.name}"})
        out = {}
        for cm in self.api.get(f"/api/v1/namespaces/{self.ns}/configmaps?{q}")["items"]:
            cm_name = cm["metadata"]["name"]
            if not cm_name.startswith(f"prometheus-{self.name}-rulefiles-"):
                continue
            for key, text in (cm.get("data") or {}).items():
                out[self.out / "rules" / cm_name / key] = text
        return out

    def once(self) -> bool:
        """Writes what changed; returns whether a configuration is in place."""
        config = self.config()
        if config is None:
            return False
        rules = self.rules()
        digest = hashlib.sha256(
            (config + "".join(f"{p}\0{t}" for p, t in sorted(rules.items()))).encode()
        ).hexdigest()
        if digest == self.applied:
            return True
        rules_dir = self.out / "rules"
        if rules_dir.exists():
            for old in rules_dir.glob("*/*"):
                if old not in rules:
                    old.unlink()
        for path, text in rules.items():
            write(path, text)
        write(self.out / "prometheus.yaml", config)
        if self.reload():
            self.applied = digest
            print(f"configuration {digest[:12]} applied ({len(rules)} rule files)", flush=True)
        return True

    def reload(self) -> bool:
        try:
            req = urllib.request.Request(self.reload_url, method="POST")
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status == 200
        except urllib.error.HTTPError as e:
            print(f"reload refused ({e.code}): {e.read().decode(errors='replace')}", file=sys.stderr, flush=True)
        except OSError:
            pass  # Prometheus not started yet: it reads the file when it starts.
        return False


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", type=pathlib.Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--dir", type=pathlib.Path, required=True)
    parser.add_argument("--reload-url", required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    sync = Sync(Api(args.kubeconfig), args.namespace, args.name, args.dir.resolve(), args.reload_url)
    os.makedirs(args.dir, exist_ok=True)
    while True:
        try:
            sync.once()
        except (ApiError, OSError, ValueError) as e:
            print(f"sync failed (retrying): {e}", file=sys.stderr, flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
