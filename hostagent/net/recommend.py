"""Capture settings for a layout: interface regex checked against live links, capture mode, inner netns."""

from __future__ import annotations

import re
from typing import Any, Sequence

from hostagent.net.classify import pod_nic_family
from hostagent.net.model import Link, Netns, Recommendation, RegexCheck

# The common-NIC alternatives from DeepFlow's default interface_regex.
COMMON_NODE_NIC = ("eth.*", "en[osipx].*")
# Pod/VM NIC alternatives per family; None means "node NIC only" (DeepFlow's advice for
# Cilium eBPF and ipvlan, and the mirror NIC for macvlan).
FAMILY_REGEX: dict[str, tuple[str, ...] | None] = {
    "calico": ("cali.*",),
    "cilium": None,
    "kube-ovn": ("[0-9a-f]+_h",),
    "bridge-veth": ("veth.*",),
    "macvlan": None,
    "ipvlan": None,
    "hypervisor": ("tap.*", "vnet.*"),
}
DEFAULT_REGEX = r"^(tap.*|cali.*|veth.*|eth.*|en[osipx].*|lxc.*|lo|[0-9a-f]+_h)$"
DEFAULT_INNER_REGEX = r"^eth\d+$"
DEFAULT_RING_BLOCKS = 128
CAPTURE_LOCAL, CAPTURE_VIRTUAL_MIRROR = 0, 1


def node_nics(links: Sequence[Link], default_route: Sequence[str]) -> tuple[str, ...]:
    """NICs that carry the node's traffic: default-route NICs, real NICs and bonds."""
    by_name = {link.name: link for link in links}
    chosen = []
    for link in links:
        if link.name in default_route or link.kind in ("physical", "bond"):
            chosen.append(link.name)
    # A default route over a bridge or vlan: its lower/ports are physical and already in.
    return tuple(name for name in chosen if by_name[name].kind != "loopback")


def _node_alternatives(nics: Sequence[str]) -> list[str]:
    common = [re.compile(f"^({p})$") for p in COMMON_NODE_NIC]
    alternatives = list(COMMON_NODE_NIC) if any(c.match(n) for n in nics for c in common) else []
    for nic in nics:
        if not any(c.match(nic) for c in common):
            alternatives.append(re.escape(nic))
    return alternatives


def build_regex(families: Sequence[str], nics: Sequence[str], mirror: bool) -> tuple[str, list[str]]:
    """The interface regex and the reason for each part of it."""
    if not families and not nics:
        return DEFAULT_REGEX, ["nothing recognisable: DeepFlow's default regex"]
    parts: list[str] = []
    reasons = []
    node_parts = _node_alternatives(nics)
    if node_parts:
        parts += node_parts
        reasons.append(f"node NIC(s) {', '.join(nics)}: {'|'.join(node_parts)}")
    for family in families:
        extra = FAMILY_REGEX.get(family)
        if extra is None:
            reasons.append(f"{family}: node NIC only, no pod NIC pattern")
            continue
        for alt in extra:
            if alt not in parts:
                parts.append(alt)
        reasons.append(f"{family}: pod/VM NICs {'|'.join(extra)}")
    if not mirror:
        parts.append("lo")
        reasons.append("lo: traffic between local processes")
    return f"^({'|'.join(parts)})$", reasons


def check_regex(regex: str, links: Sequence[Link], nics: Sequence[str]) -> RegexCheck:
    """Match the regex against the live links; 'missed' are node NICs, or pod NICs of a family
    whose pod NICs should be captured, that it skips."""
    compiled = re.compile(regex)
    by_index = {link.index: link for link in links}
    matched, missed, ignored = [], [], []
    wanted_nics = set(nics)
    for link in links:
        family = None if link.name in wanted_nics else pod_nic_family(link, by_index)
        if compiled.search(link.name):
            matched.append(link.name)
        elif link.name in wanted_nics or (family is not None and FAMILY_REGEX.get(family) is not None):
            missed.append(link.name)
        else:
            ignored.append(link.name)
    return RegexCheck(regex, tuple(matched), tuple(missed), tuple(ignored))


def inner_capture(related: Sequence[Netns], ring_blocks: int) -> dict[str, Any]:
    """Inner-netns capture keys and their memory cost (each netns gets its own ring)."""
    prefixes = set()
    for ns in related:
        for link in ns.links:
            if link.kind != "loopback":
                prefixes.add(re.sub(r"\d+$", "", link.name) or link.name)
    alternatives = sorted(f"{re.escape(p)}\\d+" for p in prefixes)
    regex = DEFAULT_INNER_REGEX if alternatives in ([], ["eth\\d+"]) else f"^({'|'.join(alternatives)})$"
    count = len(related)
    return {
        "inner_interface_capture_enabled": True,
        "inner_interface_regex": regex,
        "ring_blocks_enabled": True,
        "ring_blocks": ring_blocks,
        "netns_count": count,
        "memory_mib": count * ring_blocks,
        "memory_note": f"{count} netns x {ring_blocks} blocks x 1 MiB = {count * ring_blocks} MiB",
    }


def recommend(
    families: Sequence[str],
    links: Sequence[Link],
    nics: Sequence[str],
    related: Sequence[Netns],
    inner: bool = False,
    ring_blocks: int = DEFAULT_RING_BLOCKS,
) -> Recommendation:
    mirror = "macvlan" in families
    regex, reasons = build_regex(families, nics, mirror)
    if mirror:
        reasons.append("capture mode 1 (virtual mirror): macvlan-like pods share the node NIC")
        if len(families) > 1:
            reasons.append("warning: capture mode applies to every NIC, including the other families' pod NICs")
    if "ipvlan" in families and not inner:
        reasons.append("same-node pod traffic is only visible via eBPF or inner-netns capture (--inner)")
    return Recommendation(
        interface_regex=regex,
        capture_mode=CAPTURE_VIRTUAL_MIRROR if mirror else CAPTURE_LOCAL,
        regex_check=check_regex(regex, links, nics),
        reasons=tuple(reasons),
        inner_capture=inner_capture(related, ring_blocks) if inner else None,
    )
