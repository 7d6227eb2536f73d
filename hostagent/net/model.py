"""Records for the NIC layout: links, namespaces, evidence, verdict and recommendation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Link:
    """One network device as netlink reports it.

    kind is the rtnetlink kind ("veth", "bridge", "macvlan", "ipvlan", "vxlan", "geneve",
    "tun", "bond", "vlan", ...), "tap" for a tun device in tap mode, "loopback", or
    "physical" for a device without a kind (a real NIC driver). master and lower are
    ifindexes in the same netns, except that lower lives in the peer netns when
    link_netnsid is set.
    """

    index: int
    name: str
    kind: str
    mode: str | None = None
    master: int | None = None
    lower: int | None = None
    link_netnsid: int | None = None
    mac: str | None = None
    operstate: str = "unknown"


_LINK_FIELDS = tuple(f.name for f in fields(Link))  # all plain values: a flat copy is asdict's


@dataclass(frozen=True)
class Netns:
    """Another network namespace seen on the host, with the links it holds.

    related is True when a link in it has its peer or lower device in the inspected
    netns (a pod or container of this node); unrelated namespaces are only counted.
    """

    label: str
    path: str
    inode: int
    links: tuple[Link, ...]
    related: bool


@dataclass(frozen=True)
class CniConfig:
    """One file in /etc/cni/net.d and the plugin types it names (chained ones included)."""

    path: str
    types: tuple[str, ...]
    hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Evidence:
    """One observation and the layout family it points at."""

    family: str
    source: str  # "links", "netns", "cni"
    detail: str


@dataclass(frozen=True)
class CaptureView:
    """What one capture point sees of pod-to-pod traffic, per DeepFlow's capture table."""

    point: str  # "ebpf_syscall", "pod_nic", "node_nic"
    same_node: str
    cross_node: str
    note: str = ""


@dataclass(frozen=True)
class RegexCheck:
    regex: str
    matched: tuple[str, ...]
    missed: tuple[str, ...]  # links that carry traffic to capture but the regex skips
    ignored: tuple[str, ...]  # other links the regex skips on purpose


@dataclass(frozen=True)
class Recommendation:
    interface_regex: str
    capture_mode: int
    regex_check: RegexCheck
    reasons: tuple[str, ...]
    inner_capture: dict[str, Any] | None = None  # the inner-netns keys plus their memory cost


@dataclass(frozen=True)
class Layout:
    """The verdict for one node netns, with everything that decided it."""

    netns: str | None
    verdict: str
    families: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    links: tuple[Link, ...]
    default_route_nics: tuple[str, ...]
    node_nics: tuple[str, ...]
    other_netns: tuple[Netns, ...]
    unrelated_netns_count: int
    cni_configs: tuple[CniConfig, ...]
    capture: tuple[CaptureView, ...]
    recommendation: Recommendation
    warnings: tuple[str, ...] = field(default_factory=tuple)
    peer_netns: dict[int, str] = field(default_factory=dict)  # this netns' nsid -> label of that netns

    def link_name(self, index: int | None) -> str | None:
        for link in self.links:
            if link.index == index:
                return link.name
        return None

    def to_dict(self) -> dict[str, Any]:
        names = {link.index: link.name for link in self.links}
        links = []
        for link in self.links:
            item = {f: getattr(link, f) for f in _LINK_FIELDS}  # flat: asdict's deep copy costs 4x
            item["master"] = names.get(link.master) if link.master else None
            # A lower link in another netns is only an ifindex there.
            item["lower"] = (
                (names.get(link.lower) if link.link_netnsid is None else f"ifindex {link.lower}")
                if link.lower
                else None
            )
            item["peer_netns"] = self.peer_netns.get(link.link_netnsid) if link.link_netnsid is not None else None
            links.append(item)
        return {
            "netns": self.netns,
            "verdict": self.verdict,
            "families": list(self.families),
            "evidence": [asdict(e) for e in self.evidence],
            "default_route_nics": list(self.default_route_nics),
            "node_nics": list(self.node_nics),
            "links": links,
            "other_netns": [
                {
                    "label": ns.label,
                    "path": ns.path,
                    "inode": ns.inode,
                    "links": [{"name": li.name, "kind": li.kind, "mode": li.mode} for li in ns.links],
                }
                for ns in self.other_netns
            ],
            "unrelated_netns_count": self.unrelated_netns_count,
            "cni_configs": [asdict(c) for c in self.cni_configs],
            "capture": [asdict(c) for c in self.capture],
            "recommendation": asdict(self.recommendation),
            "warnings": list(self.warnings),
        }
