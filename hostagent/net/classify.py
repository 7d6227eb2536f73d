"""Layout verdict from links, related namespaces and CNI config; pure, no I/O."""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from hostagent.net.model import CaptureView, CniConfig, Evidence, Link, Netns

# Families, in the order the verdict lists them.
FAMILIES = ("calico", "cilium", "kube-ovn", "bridge-veth", "macvlan", "ipvlan", "hypervisor")

# Host-side pod NIC names as each CNI makes them.
CALICO_NIC = re.compile(r"^cali[0-9a-f]+$")
CILIUM_NIC = re.compile(r"^lxc([0-9a-f]+|_health)$")
CILIUM_HOST = frozenset({"cilium_host", "cilium_net", "cilium_vxlan", "cilium_geneve"})
KUBE_OVN_NIC = re.compile(r"^[0-9a-f]+_h$")
VETH_NIC = re.compile(r"^veth")
HYPERVISOR_NIC = re.compile(r"^(tap|vnet|macvtap)")

# CNI plugin "type" -> family; ipam and meta plugins are not listed and so ignored.
CNI_TYPES = {
    "calico": "calico",
    "cilium-cni": "cilium",
    "flannel": "bridge-veth",
    "bridge": "bridge-veth",
    "ptp": "bridge-veth",
    "kube-ovn": "kube-ovn",
    "macvlan": "macvlan",
    "yangtse": "macvlan",  # Huawei CCE Turbo: pods on (sub-)ENIs of the node NIC
    "ipvlan": "ipvlan",
}

# DeepFlow's capture table: which capture point sees pod-to-pod traffic, per family.
BOTH, ONE_WAY, NONE, NA = "both directions", "one direction only", "not seen", "n/a"
CAPTURE_TABLE: dict[str, tuple[CaptureView, ...]] = {
    "plain": (
        CaptureView("ebpf_syscall", NA, NA, "no pods: eBPF sees the host's own processes"),
        CaptureView("pod_nic", NA, NA),
        CaptureView("node_nic", NA, NA, "node NIC sees the host's own traffic"),
    ),
    "veth": (
        CaptureView("ebpf_syscall", BOTH, BOTH),
        CaptureView("pod_nic", BOTH, BOTH, "host-side veth of each pod in the node netns"),
        CaptureView("node_nic", NONE, BOTH, "same-node traffic stays on the veths"),
    ),
    "cilium": (
        CaptureView("ebpf_syscall", BOTH, BOTH),
        CaptureView("pod_nic", ONE_WAY, ONE_WAY, "Cilium's eBPF redirect bypasses the lxc NIC one way"),
        CaptureView("node_nic", NONE, BOTH),
    ),
    "macvlan": (
        CaptureView("ebpf_syscall", BOTH, BOTH),
        CaptureView("pod_nic", NONE, NONE, "no pod NIC in the node netns (children live in pod netns)"),
        CaptureView("node_nic", BOTH, BOTH, "all pod traffic is on the node NIC: capture it as a virtual mirror"),
    ),
    "ipvlan": (
        CaptureView("ebpf_syscall", BOTH, BOTH),
        CaptureView("pod_nic", NONE, NONE, "no pod NIC in the node netns (children live in pod netns)"),
        CaptureView("node_nic", NONE, BOTH, "same-node pod traffic never reaches the node NIC"),
    ),
    "hypervisor": (
        CaptureView("ebpf_syscall", NONE, NONE, "guest processes are not visible to the host's eBPF"),
        CaptureView("pod_nic", BOTH, BOTH, "tap/vnet NIC of each VM"),
        CaptureView("node_nic", NONE, BOTH),
    ),
}
TABLE_KEY = {
    "calico": "veth",
    "kube-ovn": "veth",
    "bridge-veth": "veth",
    "cilium": "cilium",
    "macvlan": "macvlan",
    "ipvlan": "ipvlan",
    "hypervisor": "hypervisor",
}


def _by_index(links: Sequence[Link]) -> dict[int, Link]:
    return {link.index: link for link in links}


def pod_nic_family(link: Link, links_by_index: dict[int, Link]) -> str | None:
    """The family a node-netns link belongs to as a pod or VM NIC, else None."""
    if link.kind in ("tap", "macvtap") or (link.kind == "tun" and HYPERVISOR_NIC.match(link.name)):
        return "hypervisor"
    if link.kind != "veth":
        return None
    if CALICO_NIC.match(link.name):
        return "calico"
    if CILIUM_NIC.match(link.name):
        return "cilium"
    if KUBE_OVN_NIC.match(link.name):
        return "kube-ovn"
    # A veth whose peer stays in this netns is plumbing (e.g. cilium_host/cilium_net), not a pod NIC.
    if link.link_netnsid is None:
        return None
    master = links_by_index.get(link.master) if link.master else None
    if (master is not None and master.kind == "bridge") or VETH_NIC.match(link.name):
        return "bridge-veth"
    return None


def node_link_evidence(links: Sequence[Link], uplinks: Sequence[str] = ()) -> list[Evidence]:
    """Evidence from the node netns' own links, one line per family with counts and examples.

    uplinks (the default-route NICs) are never pod NICs, even when they are veths, as
    on a node that is itself a container (kind, nspawn).
    """
    by_index = _by_index(links)
    members: dict[str, list[str]] = {}
    unknown: list[str] = []
    for link in links:
        if link.name in uplinks:
            continue
        family = pod_nic_family(link, by_index)
        if family:
            members.setdefault(family, []).append(link.name)
        elif link.kind == "veth" and link.link_netnsid is not None:
            unknown.append(link.name)
    out = []
    for family, names in members.items():
        masters = sorted({by_index[index].name for index in _masters(links, names, by_index)})
        via = f", attached to {', '.join(masters)}" if masters else ""
        out.append(Evidence(family, "links", f"{len(names)} pod-side NIC(s) {_sample(names)}{via}"))
    cilium_plumbing = sorted(link.name for link in links if link.name in CILIUM_HOST)
    if cilium_plumbing:
        out.append(Evidence("cilium", "links", f"Cilium host devices {', '.join(cilium_plumbing)}"))
    for link in links:
        if link.kind in ("macvlan", "ipvlan", "ipvtap") and link.link_netnsid is None:
            lower = by_index.get(link.lower or -1)
            family = "ipvlan" if link.kind.startswith("ipv") else "macvlan"
            on = f" on {lower.name}" if lower else ""
            mode = f" mode {link.mode}" if link.mode else ""
            out.append(
                Evidence(family, "links", f"weak: node-side {link.kind} {link.name}{on}{mode} (e.g. a host shim)")
            )
    if unknown:
        out.append(Evidence("unknown", "links", f"{len(unknown)} veth(s) with a peer in another netns {_sample(unknown)}"))
    return out


def _masters(links: Sequence[Link], names: list[str], by_index: dict[int, Link]) -> list[int]:
    wanted = set(names)
    return [link.master for link in links if link.name in wanted and link.master in by_index]  # type: ignore[misc,unused-ignore]


def netns_evidence(related: Iterable[Netns], node_nsids: dict[str, int | None]) -> list[Evidence]:
    """Evidence from pod/container namespaces whose links hang off the node netns.

    node_nsids maps a netns path to the id that netns uses for the node netns: a child
    whose IFLA_LINK_NETNSID equals it has its lower device in the node netns.
    """
    counts: dict[tuple[str, str], list[str]] = {}
    for ns in related:
        nsid = node_nsids.get(ns.path)
        for link in ns.links:
            if nsid is None or link.link_netnsid != nsid:
                continue
            if link.kind in ("macvlan", "macvtap"):
                key = ("macvlan", f"macvlan child ({link.mode or 'mode ?'})")
            elif link.kind in ("ipvlan", "ipvtap"):
                key = ("ipvlan", f"ipvlan child ({link.mode or 'mode ?'})")
            elif link.kind == "vlan":
                key = ("macvlan", "VLAN sub-interface of a node NIC (CCE Turbo style)")
            else:
                continue
            counts.setdefault(key, []).append(f"{ns.label}:{link.name}")
    return [
        Evidence(family, "netns", f"{len(where)} {what} in pod netns {_sample(where)}")
        for (family, what), where in counts.items()
    ]


def cni_evidence(configs: Iterable[CniConfig]) -> list[Evidence]:
    out = []
    for config in configs:
        for plugin in config.types:
            family = CNI_TYPES.get(plugin)
            if plugin == "terway":
                family = "ipvlan" if "IPVlan" in config.hints else "bridge-veth"
            if family:
                hint = f" ({'; '.join(config.hints)})" if config.hints else ""
                out.append(Evidence(family, "cni", f"{config.path}: plugin type {plugin}{hint}"))
    return out


def verdict(evidence: Sequence[Evidence]) -> tuple[str, tuple[str, ...]]:
    """Families backed by strong evidence decide; weak-only evidence decides when nothing else does."""
    strong = {e.family for e in evidence if not e.detail.startswith("weak:") and e.family in FAMILIES}
    weak = {e.family for e in evidence if e.detail.startswith("weak:") and e.family in FAMILIES}
    chosen = strong or weak
    families = tuple(f for f in FAMILIES if f in chosen)
    if not families:
        return ("unknown" if any(e.family == "unknown" for e in evidence) else "plain"), ()
    if len(families) == 1:
        return families[0], families
    return "mixed", families


def capture_views(families: Sequence[str], verdict_name: str) -> tuple[CaptureView, ...]:
    """The capture table for the verdict; for a mixed layout, one block per family."""
    if not families:
        return CAPTURE_TABLE["plain"] if verdict_name == "plain" else ()
    if len(families) == 1:
        return CAPTURE_TABLE[TABLE_KEY[families[0]]]
    out = []
    for family in families:
        for view in CAPTURE_TABLE[TABLE_KEY[family]]:
            out.append(CaptureView(f"{family}:{view.point}", view.same_node, view.cross_node, view.note))
    return tuple(out)


def _sample(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return f"({shown}{', ...' if len(names) > limit else ''})"
