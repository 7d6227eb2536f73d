"""Read the host's links over netlink and say which CNI layout they form."""

from __future__ import annotations

import os
import re
from pathlib import Path

from hostagent.errors import InputError
from hostagent.net.model import Layout, Link, Netns

NETNS_NAME = re.compile(r"[A-Za-z0-9_.@:+-]{1,64}")
MAX_OTHER_NETNS = 512  # one socket (one short fork) each; a bound keeps detect quick on huge nodes


def _node_ns(netns: str | None) -> tuple[str | None, str]:
    """Where to open the netlink socket (None: here) and the nsfs path of the inspected netns."""
    if netns is None:
        return None, "/proc/thread-self/ns/net"
    if not NETNS_NAME.fullmatch(netns) or netns in (".", ".."):
        raise InputError(f"invalid netns name {netns!r}: expected a name from `ip netns list`")
    path = f"/run/netns/{netns}"
    if not os.path.exists(path):
        raise InputError(f"no network namespace named {netns!r} (no {path})")
    return path, path


def _points_here(link: Link, nsid: int | None, uplinks: frozenset[int]) -> bool:
    """Whether a link in another netns hangs off the node netns as a pod's NIC would.

    The veth peer of the node's own uplink is the outside world (the host of a kind or
    nspawn node), not a pod, so it does not count.
    """
    if nsid is None or link.link_netnsid != nsid:
        return False
    return not (link.kind == "veth" and link.lower in uplinks)


def _scan_other(
    node_path: str, limit: int, uplinks: frozenset[int]
) -> tuple[list[Netns], dict[str, int | None], int, list[str]]:
    from hostagent.net import rtdump, scan

    refs = scan.other_netns(node_path)
    warnings = []
    if len(refs) > limit:
        warnings.append(f"{len(refs)} other netns found; only the first {limit} were read")
        refs = refs[:limit]
    seen: list[Netns] = []
    nsids: dict[str, int | None] = {}
    unrelated = 0
    skipped: list[str] = []
    for ref in refs:
        try:
            sock = rtdump.open_route_socket(ref.path)
        except OSError as exc:  # not root, or the process exited meanwhile
            skipped.append(f"{ref.label}: {exc}")
            continue
        try:
            links = tuple(rtdump.dump_links(sock))
            nsid = rtdump.peer_nsid(sock, node_path)
        except OSError as exc:
            skipped.append(f"{ref.label}: {exc}")
            continue
        finally:
            sock.close()
        related = any(_points_here(link, nsid, uplinks) for link in links)
        if related:
            seen.append(Netns(ref.label, ref.path, ref.inode, links, True))
            nsids[ref.path] = nsid
        else:
            unrelated += 1
    if skipped:
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        warnings.append(f"could not read {len(skipped)} other netns, e.g. {skipped[0]}{more}")
    return seen, nsids, unrelated, warnings


def _peer_labels(node_sock: object, related: list[Netns]) -> dict[int, str]:
    """The node netns' ids for the pod namespaces, so a pod NIC can name its peer's netns."""
    from hostagent.net import rtdump

    labels = {}
    for ns in related:
        try:
            nsid = rtdump.peer_nsid(node_sock, ns.path)  # type: ignore[arg-type]
        except OSError:
            continue
        if nsid is not None:
            labels[nsid] = ns.label
    return labels


def detect_layout(
    netns: str | None = None,
    *,
    scan_other_netns: bool = True,
    cni_dir: Path | None = None,
    inner: bool = False,
    ring_blocks: int = 128,
) -> Layout:
    """Dump the links of ``netns`` (None: this process's netns) and classify the layout.

    Other namespaces count only when one of their links has its peer or lower device
    in the inspected netns (a pod of this node); the rest are just counted.
    """
    from hostagent.net import classify, recommend, rtdump, scan

    if not 8 <= ring_blocks <= 1_000_000:
        raise InputError(f"ring blocks must be within [8, 1000000], got {ring_blocks}")
    ns_arg, node_path = _node_ns(netns)
    try:
        sock = rtdump.open_route_socket(ns_arg)
    except OSError as exc:
        raise InputError(str(exc)) from exc
    warnings: list[str] = []
    related: list[Netns] = []
    nsids: dict[str, int | None] = {}
    peer_labels: dict[int, str] = {}
    unrelated = 0
    try:
        try:
            links: tuple[Link, ...] = tuple(rtdump.dump_links(sock))
            route_idx = rtdump.default_route_ifindexes(sock)
        except OSError as exc:
            raise InputError(f"netlink dump failed: {exc}") from exc
        if scan_other_netns:
            related, nsids, unrelated, more = _scan_other(node_path, MAX_OTHER_NETNS, frozenset(route_idx))
            warnings += more
            peer_labels = _peer_labels(sock, related)
    finally:
        sock.close()
    by_index = {link.index: link.name for link in links}
    default_route = tuple(by_index[i] for i in route_idx if i in by_index)
    configs, more = scan.cni_configs(cni_dir if cni_dir is not None else scan.CNI_CONF_DIR)
    warnings += more

    evidence = (
        classify.node_link_evidence(links, default_route)
        + classify.netns_evidence(related, nsids)
        + classify.cni_evidence(configs)
    )
    verdict, families = classify.verdict(evidence)
    nics = recommend.node_nics(links, default_route)
    return Layout(
        netns=netns,
        verdict=verdict,
        families=families,
        evidence=tuple(evidence),
        links=links,
        default_route_nics=default_route,
        node_nics=nics,
        other_netns=tuple(related),
        unrelated_netns_count=unrelated,
        cni_configs=tuple(configs),
        capture=classify.capture_views(families, verdict),
        recommendation=recommend.recommend(families, links, nics, related, inner=inner, ring_blocks=ring_blocks),
        warnings=tuple(warnings),
        peer_netns=peer_labels,
    )
