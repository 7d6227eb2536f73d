"""deploy/k8s-sync.yaml: valid for Kubernetes 1.27-1.33 (kubernetes-validate's bundled schemas, strict:
no unknown fields), Pod Security Standards "restricted", and wired to the RBAC file, the image and
hostagent's own option parser."""
from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from hostagent.options import build_k8s_sync
from tests.dist import version
from tests.oci.conftest import docs, find, oci, quantity

FILES = ("k8s-sync.yaml", "k8s-sync-rbac.yaml", "k8s-sync-token.yaml")
VERSIONS = [f"1.{minor}.0" for minor in range(27, 34)]


@pytest.mark.parametrize("k8s", VERSIONS)
def test_schema_valid(k8s: str) -> None:
    import kubernetes_validate  # type: ignore[import-untyped]

    for name in FILES:
        for doc in docs(name):
            # validate() picks the newest bundled schema not newer than asked: it must be this release's.
            assert kubernetes_validate.validate(doc, k8s, strict=True) == k8s.rsplit(".", 1)[0], (name, doc["kind"])


@pytest.mark.parametrize("break_it", [
    lambda d: d["spec"].update(replica=1),  # a typo: strict schemas know no such field
    lambda d: d["spec"].update(replicas="1"),
    lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].update(memory=[512]),
], ids=["unknown-field", "wrong-type", "bad-quantity"])
def test_schema_validation_catches_mistakes(break_it: Callable[[dict[str, Any]], None]) -> None:
    import kubernetes_validate

    deployment = copy.deepcopy(find(docs("k8s-sync.yaml"), "Deployment"))
    break_it(deployment)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


# Pod Security Standards, "restricted" as of Kubernetes 1.27-1.33 (it includes "baseline").
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                      "secret"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}


def restricted_violations(template: dict[str, Any]) -> list[str]:
    """Every rule of the restricted profile this pod template breaks (empty: it passes)."""
    spec, meta = template["spec"], template.get("metadata", {})
    psc = spec.get("securityContext", {})
    out = [f"spec.{f}" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
    out += [f"sysctl {s['name']}" for s in psc.get("sysctls", []) if s["name"] not in SAFE_SYSCTLS]
    out += [f"volume {v['name']}: {t}" for v in spec.get("volumes", []) for t in v if t != "name" and t not in RESTRICTED_VOLUMES]
    out += [f"annotation {k}" for k, v in meta.get("annotations", {}).items()
            if k.startswith("container.apparmor.security.beta.kubernetes.io/") and v == "unconfined"]
    containers = spec.get("initContainers", []) + spec["containers"] + spec.get("ephemeralContainers", [])
    for where, sc in [("pod", psc)] + [(c["name"], c.get("securityContext", {})) for c in containers]:
        if sc.get("windowsOptions", {}).get("hostProcess"):
            out.append(f"{where}: hostProcess")
        if sc.get("seLinuxOptions", {}).get("type", "") not in SELINUX_TYPES or {"user", "role"} & set(sc.get("seLinuxOptions", {})):
            out.append(f"{where}: seLinuxOptions")
        if sc.get("appArmorProfile", {}).get("type") == "Unconfined":
            out.append(f"{where}: appArmorProfile Unconfined")
        if sc.get("seccompProfile", {}).get("type") == "Unconfined":
            out.append(f"{where}: seccompProfile Unconfined")
        if sc.get("runAsUser") == 0:
            out.append(f"{where}: runAsUser 0")
        if sc.get("runAsNonRoot") is False:
            out.append(f"{where}: runAsNonRoot false")
    for c in containers:
        sc, name = c.get("securityContext", {}), c["name"]
        caps = sc.get("capabilities", {})
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{name}: procMount")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{name}: hostPort")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities add {sorted(set(caps['add']) - {'NET_BIND_SERVICE'})}"
                       + (" (not even baseline)" if set(caps["add"]) - BASELINE_CAPS else ""))
        if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot"))):
            out.append(f"{name}: runAsNonRoot must be true (pod or container)")
        if sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost (pod or container)")
        if sc.get("readOnlyRootFilesystem") is not True:  # not in the profile: this image's own promise
            out.append(f"{name}: readOnlyRootFilesystem")
    return out


def _template() -> dict[str, Any]:
    return copy.deepcopy(find(docs("k8s-sync.yaml"), "Deployment")["spec"]["template"])


def test_restricted_pod_security() -> None:
    assert restricted_violations(_template()) == []


def _container_sc(t: dict[str, Any]) -> dict[str, Any]:
    return t["spec"]["containers"][0]["securityContext"]


@pytest.mark.parametrize("break_it", [
    lambda t: t["spec"].update(hostNetwork=True),
    lambda t: _container_sc(t).update(privileged=True),
    lambda t: _container_sc(t).pop("allowPrivilegeEscalation"),
    lambda t: _container_sc(t).update(capabilities={"drop": ["NET_RAW"]}),
    lambda t: _container_sc(t)["capabilities"].update(add=["SYS_ADMIN"]),
    lambda t: (_container_sc(t).pop("runAsNonRoot"), t["spec"]["securityContext"].pop("runAsNonRoot")),
    lambda t: t["spec"]["securityContext"].update(runAsUser=0),
    lambda t: _container_sc(t).update(seccompProfile={"type": "Unconfined"}),
    lambda t: (_container_sc(t).pop("seccompProfile"), t["spec"]["securityContext"].pop("seccompProfile")),
    lambda t: t["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
    lambda t: _container_sc(t).update(readOnlyRootFilesystem=False),
], ids=["hostNetwork", "privileged", "escalation", "drop", "add", "nonroot", "uid0", "unconfined", "no-seccomp",
        "hostPath", "rw-root"])
def test_restricted_check_catches(break_it: Callable[[dict[str, Any]], Any]) -> None:
    t = _template()
    break_it(t)
    assert restricted_violations(t)


def test_deployment_wiring() -> None:
    objs, rbac = docs("k8s-sync.yaml"), docs("k8s-sync-rbac.yaml")
    deployment, configmap = find(objs, "Deployment"), find(objs, "ConfigMap")
    assert {d["kind"] for d in objs} == {"Deployment", "ConfigMap"}, "RBAC lives in k8s-sync-rbac.yaml only"
    sa = find(rbac, "ServiceAccount")["metadata"]
    binding = find(rbac, "ClusterRoleBinding")
    pod = deployment["spec"]["template"]["spec"]
    ns = deployment["metadata"]["namespace"]
    assert pod["serviceAccountName"] == sa["name"] and ns == sa["namespace"] == configmap["metadata"]["namespace"]
    assert {"kind": "ServiceAccount", "name": sa["name"], "namespace": ns} in binding["subjects"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = pod["containers"]
    assert container["image"] == f"{oci.NAME}:{version()}"
    assert "command" not in container, "the image's entrypoint is `hostagent k8s-sync run`"
    # The ConfigMap's file is where --config-file looks, and hostagent's own parser accepts it.
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (config_volume,) = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == configmap["metadata"]["name"]]
    (key,) = configmap["data"]
    assert container["args"] == ["--config-file", f"{mounts[config_volume]['mountPath']}/{key}"]
    import yaml

    opts = build_k8s_sync({}, yaml.safe_load(configmap["data"][key]))
    assert opts.controller_ips == ("deepflow-server.deepflow",) and opts.controller_port == 20035
    assert opts.kubeconfig is None, "in the cluster: the service account's credentials"
    # TMPDIR and XDG_CACHE_HOME (the image's) are on the writable volume, the root is read-only.
    tmp = [m for m in container["volumeMounts"] if "emptyDir" in volumes[m["name"]]]
    assert [m["mountPath"] for m in tmp] == ["/tmp"] and not tmp[0].get("readOnly")
    assert all(e.split("=", 1)[1].startswith("/tmp") for e in oci.ENV if e.startswith(("TMPDIR=", "XDG_CACHE_HOME=")))
    # The same user as the image's, so files it unpacks are its own.
    sc = container["securityContext"]
    assert f"{sc['runAsUser']}:{sc['runAsGroup']}" == f"{oci.UID}:{oci.GID}"
    # bench/k8s_sync_bench.py (README "Figures"): RSS peaks at 114 MiB with 30k pods, ~330 MiB with 150k.
    resources = container["resources"]
    assert quantity(resources["requests"]["memory"]) >= 114 * 2**20 * 0.9
    assert quantity(resources["limits"]["memory"]) >= 330 * 2**20 * 1.25
