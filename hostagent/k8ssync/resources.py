"""What is watched, and how each object is trimmed to the fields deepflow-server reads.

The trimming follows the real agent (agent/src/platform/kubernetes/resource_watcher.rs, the
Trimmable impls): the same fields kept per kind, so the server sees what it would see from a
deepflow-agent. k8s-openapi always serializes apiVersion and kind, so each trimmed object has them
(list items from the apiserver do not carry them; they are set from this table). Type strings are
the real agent's pb_name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

Obj = dict[str, Any]


def _pick(src: Optional[Obj], *keys: str) -> Obj:
    if not isinstance(src, dict):
        return {}
    return {k: src[k] for k in keys if src.get(k) is not None}


def _meta_without_managed(obj: Obj) -> Obj:
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    return meta


def trim_pod(obj: Obj) -> Obj:
    out: Obj = {"metadata": _pick(obj.get("metadata"), "uid", "name", "namespace", "ownerReferences",
                                  "creationTimestamp", "labels", "annotations")}
    spec = obj.get("spec")
    if isinstance(spec, dict):
        s: Obj = {"containers": [_pick(c, "name", "env") for c in spec.get("containers") or []]}
        if spec.get("nodeName") is not None:
            s["nodeName"] = spec["nodeName"]
        out["spec"] = s
    status = obj.get("status")
    if isinstance(status, dict):
        st = _pick(status, "hostIP", "conditions")
        if status.get("containerStatuses") is not None:
            st["containerStatuses"] = [_pick(c, "containerID") for c in status["containerStatuses"]]
        if status.get("podIP") is not None:
            st["podIP"] = status["podIP"]
        out["status"] = st
    return out


def trim_node(obj: Obj) -> Obj:
    out: Obj = {"metadata": _pick(obj.get("metadata"), "uid", "name", "labels")}
    status = obj.get("status")
    if isinstance(status, dict):
        st = _pick(status, "addresses")
        if status.get("conditions") is not None:
            st["conditions"] = [_pick(c, "reason", "status") for c in status["conditions"]]
        if status.get("capacity") is not None:
            st["capacity"] = status["capacity"]
        out["status"] = st
    spec = obj.get("spec")
    if isinstance(spec, dict):
        out["spec"] = _pick(spec, "podCIDR")
    return out


def trim_replicaset(obj: Obj) -> Obj:
    out: Obj = {"metadata": _pick(obj.get("metadata"), "uid", "name", "namespace", "ownerReferences", "labels")}
    spec = obj.get("spec")
    if isinstance(spec, dict):
        out["spec"] = _pick(spec, "replicas", "selector")
    return out


def trim_meta_spec(obj: Obj) -> Obj:
    """Deployment, StatefulSet, DaemonSet, ReplicationController: metadata without managedFields, spec."""
    out: Obj = {"metadata": _meta_without_managed(obj)}
    if obj.get("spec") is not None:
        out["spec"] = obj["spec"]
    return out


def trim_service(obj: Obj) -> Obj:
    out = trim_meta_spec(obj)
    status = obj.get("status")
    if isinstance(status, dict):
        out["status"] = _pick(status, "loadBalancer")
    return out


def trim_ingress(obj: Obj) -> Obj:
    out: Obj = {"metadata": _pick(obj.get("metadata"), "uid", "name", "namespace")}
    if obj.get("spec") is not None:
        out["spec"] = obj["spec"]
    return out


def trim_configmap(obj: Obj) -> Obj:
    out: Obj = {"metadata": _pick(obj.get("metadata"), "uid", "name", "namespace", "creationTimestamp")}
    if obj.get("data") is not None:
        out["data"] = obj["data"]
    return out


def trim_namespace(obj: Obj) -> Obj:
    return {"metadata": _pick(obj.get("metadata"), "uid", "name")}


@dataclass(frozen=True)
class Resource:
    name: str  # the plural the API paths use
    group: str  # "" for the core group
    version: str
    kind: str
    type_name: str  # KubernetesAPIInfo.type
    trim: Callable[[Obj], Obj]
    optional: bool = False  # dropped first when a report would exceed the server's size limit

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path(self) -> str:
        return f"/apis/{self.group}/{self.version}/{self.name}" if self.group else f"/api/{self.version}/{self.name}"

    def trimmed(self, obj: Obj) -> Obj:
        out = {"apiVersion": self.api_version, "kind": self.kind}
        out.update(self.trim(obj))
        return out


VERSION_INFO = "*version.Info"
VERSION_KEYS = ("major", "minor", "gitVersion", "gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler", "platform")

RESOURCES: tuple[Resource, ...] = (
    Resource("nodes", "", "v1", "Node", "*v1.Node", trim_node),
    Resource("namespaces", "", "v1", "Namespace", "*v1.Namespace", trim_namespace),
    Resource("pods", "", "v1", "Pod", "*v1.Pod", trim_pod),
    Resource("services", "", "v1", "Service", "*v1.Service", trim_service),
    Resource("replicationcontrollers", "", "v1", "ReplicationController", "*v1.ReplicationController", trim_meta_spec),
    Resource("deployments", "apps", "v1", "Deployment", "*v1.Deployment", trim_meta_spec),
    Resource("statefulsets", "apps", "v1", "StatefulSet", "*v1.StatefulSet", trim_meta_spec),
    Resource("daemonsets", "apps", "v1", "DaemonSet", "*v1.DaemonSet", trim_meta_spec),
    Resource("replicasets", "apps", "v1", "ReplicaSet", "*v1.ReplicaSet", trim_replicaset),
    Resource("ingresses", "networking.k8s.io", "v1", "Ingress", "*v1.Ingress", trim_ingress),
    Resource("configmaps", "", "v1", "ConfigMap", "*v1.ConfigMap", trim_configmap, optional=True),
)
BY_NAME = {r.name: r for r in RESOURCES}
TYPE_NAMES = frozenset({VERSION_INFO} | {r.type_name for r in RESOURCES})


def version_info(raw: Obj) -> Obj:
    """The apiserver's /version as the agent's k8s-openapi Info serializes it."""
    return {k: str(raw.get(k, "")) for k in VERSION_KEYS}
