"""The Deployment runs the binary's contract: flags, ports, probes, security, availability."""

from __future__ import annotations

import yaml

from scenarios import (
    FULLNAME,
    NAMESPACE,
    SCENARIOS,
    cert_mode,
    container,
    controller_enabled,
    of_kind,
    one,
    render_values,
)


def args_of(objects):
    args = container(objects)["args"]
    assert args[0] == "serve"
    return args[1:]


def flag_values(args, flag):
    prefix = f"--{flag}="
    return [a[len(prefix):] for a in args if a.startswith(prefix)]


def volumes_of(objects):
    return {v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}


def mounts_of(objects):
    return {m["name"]: m for m in container(objects)["volumeMounts"]}


def test_security_context(scenario):
    _, _, objects = scenario
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(objects)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "add" not in sc["capabilities"]
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    # The only writable place is an emptyDir at /tmp.
    assert mounts_of(objects)["tmp"]["mountPath"] == "/tmp"
    assert "emptyDir" in volumes_of(objects)["tmp"]
    for name, mount in mounts_of(objects).items():
        if name != "tmp":
            assert mount["readOnly"] is True, name


def test_probes_on_metrics_port(scenario):
    _, _, objects = scenario
    c = container(objects)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"https": 8443, "metrics": 9090}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics", "scheme": "HTTP"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics", "scheme": "HTTP"}
    args = args_of(objects)
    assert flag_values(args, "addr") == ["0.0.0.0:8443"]
    assert flag_values(args, "metrics-addr") == ["0.0.0.0:9090"]


def test_pod_namespace_env(scenario):
    _, _, objects = scenario
    env = {e["name"]: e for e in container(objects)["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_resources(scenario):
    _, _, objects = scenario
    resources = container(objects)["resources"]
    assert resources["requests"] == {"cpu": "50m", "memory": "64Mi"}
    assert resources["limits"] == {"memory": "128Mi"}


def test_replicas_pdb_and_spreading(scenario):
    _, values, objects = scenario
    deployment = one(objects, "Deployment")
    replicas = values.get("replicaCount", 2)
    assert deployment["spec"]["replicas"] == replicas
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdbs = of_kind(objects, "PodDisruptionBudget")
    if replicas > 1:
        (pdb,) = pdbs
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    else:
        assert pdbs == []  # minAvailable 1 of 1 would block every node drain
    pod = deployment["spec"]["template"]["spec"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == selector
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"


def test_affinity_override():
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["infra"]}]}]}}}
    pod = one(render_values({"affinity": affinity}), "Deployment")["spec"]["template"]["spec"]
    assert pod["affinity"] == affinity


def test_default_args():
    args = args_of(render_values({}))
    assert args == [
        "--addr=0.0.0.0:8443",
        "--metrics-addr=0.0.0.0:9090",
        "--cert-mode=self-managed",
        f"--cert-secret={FULLNAME}-tls",
        f"--webhook-config={FULLNAME}",
        f"--service-name={FULLNAME}",
        f"--service-namespace={NAMESPACE}",
        "--raw-mode=RawDeployment",
        "--prometheus-address=http://prometheus-operated.monitoring.svc:9090",
        "--log-format=json",
        "--log-level=info",
    ]


def test_image_defaults_to_app_version():
    image = container(render_values({}))["image"]
    assert image == "ghcr.io/kserve-keda-webhook/kserve-keda-webhook:0.1.0"
    digest = "sha256:" + "a" * 64
    image = container(render_values({"image": {"digest": digest}}))["image"]
    assert image == f"ghcr.io/kserve-keda-webhook/kserve-keda-webhook@{digest}"


def test_everything_args_and_pod_fields():
    objects = render_values(SCENARIOS["everything"])
    args = args_of(objects)
    assert flag_values(args, "raw-mode") == ["Standard"]
    assert flag_values(args, "prometheus-address") == ["https://thanos-query.monitoring.svc:9091"]
    assert flag_values(args, "monitor-label") == ["release=prometheus"]
    assert flag_values(args, "trigger-auth-kind") == ["TriggerAuthentication"]
    assert flag_values(args, "trigger-auth-name") == ["prom-auth"]
    assert flag_values(args, "trigger-auth-modes") == ["bearer,tls"]
    # Large numbers stay plain integers (Go templates would print 1e+06).
    assert sorted(flag_values(args, "default-target")) == [
        "concurrency=4",
        "kv-cache=0.7",
        "tokens=1000000",
    ]
    assert flag_values(args, "default-min-replicas") == ["1"]
    assert flag_values(args, "default-max-replicas") == ["8"]
    assert flag_values(args, "log-format") == ["text"]
    assert flag_values(args, "log-level") == ["info,kserve_keda_webhook=debug"]
    assert flag_values(args, "namespace") == ["team-a", "team-b"]
    assert "--no-controller" not in args
    assert flag_values(args, "policy") == ["/etc/kserve-keda-webhook/policy.yaml"]

    c = container(objects)
    assert c["image"] == "ghcr.io/kserve-keda-webhook/kserve-keda-webhook:0.2.0-rc.1"
    assert c["imagePullPolicy"] == "Always"
    template = one(objects, "Deployment")["spec"]["template"]
    pod = template["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert template["metadata"]["labels"]["team"] == "ml-platform"
    assert template["metadata"]["annotations"]["example.com/team"] == "ml-platform"
    # The policy is re-read from the mounted file, so it puts nothing on the pod template.
    assert "checksum/policy" not in template["metadata"]["annotations"]


def test_policy_config_map():
    values = SCENARIOS["everything"]
    objects = render_values(values)
    config_map = one(objects, "ConfigMap")
    assert config_map["metadata"]["name"] == f"{FULLNAME}-policy"
    assert yaml.safe_load(config_map["data"]["policy.yaml"]) == values["policy"]
    assert volumes_of(objects)["policy"]["configMap"]["name"] == f"{FULLNAME}-policy"
    assert mounts_of(objects)["policy"]["mountPath"] == "/etc/kserve-keda-webhook"


def test_no_policy_by_default():
    objects = render_values({})
    assert of_kind(objects, "ConfigMap") == []
    assert "policy" not in volumes_of(objects)
    assert flag_values(args_of(objects), "policy") == []


def test_policy_change_does_not_restart_pods():
    # The binary re-reads the mounted policy; a changed pod template would roll the pods.
    def template(policy):
        return one(render_values({"policy": policy}), "Deployment")["spec"]["template"]

    a = template({"limits": {"maxReplicas": 4}})
    b = template({"limits": {"maxReplicas": 8}})
    assert a == b
    configmaps = [
        one(render_values({"policy": p}), "ConfigMap")["data"]["policy.yaml"]
        for p in ({"limits": {"maxReplicas": 4}}, {"limits": {"maxReplicas": 8}})
    ]
    assert configmaps[0] != configmaps[1]


def test_controller_flags(scenario):
    _, values, objects = scenario
    args = args_of(objects)
    if controller_enabled(values):
        assert "--no-controller" not in args
    else:
        assert "--no-controller" in args
        assert flag_values(args, "namespace") == []


def test_cert_mode_flags_and_volumes(scenario):
    _, values, objects = scenario
    args = args_of(objects)
    mode = cert_mode(values)
    volumes = volumes_of(objects)
    if mode == "selfManaged":
        assert "tls" not in volumes
        assert not any(v.get("secret") for v in volumes.values())
        assert flag_values(args, "cert-mode") == ["self-managed"]
        assert flag_values(args, "cert-secret") == [f"{FULLNAME}-tls"]
        assert flag_values(args, "webhook-config") == [FULLNAME]
        assert flag_values(args, "tls-cert-file") == []
    else:
        secret = values["certs"]["provided"]["secretName"] if mode == "provided" else f"{FULLNAME}-tls"
        assert volumes["tls"]["secret"]["secretName"] == secret
        # Mounted as a directory (no subPath) so a rotated Secret reaches the running pod.
        assert mounts_of(objects)["tls"] == {"name": "tls", "mountPath": "/tls", "readOnly": True}
        assert flag_values(args, "tls-cert-file") == ["/tls/tls.crt"]
        assert flag_values(args, "tls-key-file") == ["/tls/tls.key"]
        assert flag_values(args, "cert-mode") == []
        assert flag_values(args, "cert-secret") == []


def test_no_trigger_auth_flags_without_a_name():
    args = args_of(render_values({"config": {"triggerAuthentication": {"modes": ["bearer"]}}}))
    assert not [a for a in args if a.startswith("--trigger-auth")]
