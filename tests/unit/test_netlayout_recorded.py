"""The netlink parser on stored messages: constructed ones for kinds this kernel lacks
(ipvlan, dummy, vlan, bond, geneve; see tests/fixtures/netlink_recordings/build.py) and a
real dump recorded from this kernel. No root needed."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from hostagent.net import classify, recommend, rtdump
from hostagent.net.model import CniConfig, Link, Netns
from tests.fixtures.netlink_recordings import build

HERE = Path(build.__file__).parent
CONSTRUCTED = json.loads((HERE / "constructed.json").read_text())
RECORDED = json.loads((HERE / "recorded.json").read_text())


def test_constructed_file_is_what_build_makes() -> None:
    # The stored bytes are reproducible from the labelled constructor, not hand-edited.
    assert build.construct() == CONSTRUCTED
    assert "NOT recorded from a kernel" in CONSTRUCTED["source"]


@pytest.mark.parametrize("item", CONSTRUCTED["messages"], ids=lambda m: m["expect"]["name"])
def test_constructed_message(item: dict[str, Any]) -> None:
    data = bytes.fromhex(item["hex"])
    link = rtdump.parse_link(data, 0, len(data))
    for key, value in item["expect"].items():
        assert getattr(link, key) == value, (key, link)


class ReplaySocket:
    """Stands in for the netlink socket: swallows the request, replays stored reply datagrams."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)

    def recv_into(self, view: memoryview) -> int:
        chunk = self.chunks.pop(0)
        view[: len(chunk)] = chunk
        return len(chunk)


def test_recorded_kernel_dump_through_the_streaming_path() -> None:
    chunks = [bytes.fromhex(c) for c in RECORDED["chunks"]]
    sock = ReplaySocket(chunks)
    links = list(rtdump.dump_links(sock))  # type: ignore[arg-type]
    # The request pyroute2 built is an RTM_GETLINK dump asking the kernel to skip stats.
    length, mtype, flags = struct.unpack_from("=IHH", sock.sent[0])
    assert mtype == rtdump.RTM_GETLINK and flags & rtdump.NLM_F_DUMP == rtdump.NLM_F_DUMP
    assert sock.chunks == []  # stopped at NLMSG_DONE, read nothing more
    by_name = {link.name: link for link in links}
    by_index = {link.index: link for link in links}
    assert set(by_name) == set(RECORDED["expect"])
    for name, expect in RECORDED["expect"].items():
        link = by_name[name]
        for key, value in expect.items():
            got = getattr(link, key)
            if key in ("master", "lower"):
                got = by_index[got].name
            assert got == value, (name, key, link)


def test_error_reply_raises() -> None:
    # NLMSG_ERROR carrying -EPERM, as a kernel sends when a dump is refused.
    err = struct.pack("=IHHII", 36, rtdump.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -1)
    err += struct.pack("=IHHII", 16, rtdump.RTM_GETLINK, 0x301, 1, 0)
    with pytest.raises(OSError, match="netlink dump failed"):
        list(rtdump.dump_links(ReplaySocket([err])))  # type: ignore[arg-type]


def _constructed(name: str) -> Link:
    for item in CONSTRUCTED["messages"]:
        if item["expect"]["name"] == name:
            data = bytes.fromhex(item["hex"])
            return rtdump.parse_link(data, 0, len(data))
    raise KeyError(name)


def test_terway_ipvlan_layout_from_constructed_pod_links() -> None:
    node = [Link(1, "lo", "loopback"), Link(2, "eth0", "physical", operstate="up")]
    pod = Netns("pid 4242 (pause)", "/proc/4242/ns/net", 1, (Link(1, "lo", "loopback"), _constructed("eth0")), True)
    terway = CniConfig("/etc/cni/net.d/10-terway.conflist", ("terway",), ("IPVlan",))
    evidence = (
        classify.node_link_evidence(node, ["eth0"])
        + classify.netns_evidence([pod], {pod.path: 0})
        + classify.cni_evidence([terway])
    )
    verdict, families = classify.verdict(evidence)
    assert verdict == "ipvlan" and {e.source for e in evidence} == {"netns", "cni"}
    views = {v.point: v for v in classify.capture_views(families, verdict)}
    assert views["node_nic"].same_node == "not seen" and views["node_nic"].cross_node == "both directions"
    rec = recommend.recommend(families, node, ("eth0",), [pod], inner=True, ring_blocks=128)
    assert rec.interface_regex == r"^(eth.*|en[osipx].*|lo)$" and rec.capture_mode == 0
    assert rec.inner_capture is not None and rec.inner_capture["memory_mib"] == 128
    assert rec.inner_capture["inner_interface_regex"] == r"^eth\d+$"


def test_cce_turbo_vlan_child_is_macvlan_like() -> None:
    pod = Netns("cce-pod", "/run/netns/cce-pod", 1, (_constructed("eth0.100"),), True)
    evidence = classify.netns_evidence([pod], {pod.path: 0})
    assert classify.verdict(evidence) == ("macvlan", ("macvlan",))
    assert "CCE Turbo" in evidence[0].detail


def test_bond_uplink_and_dummy() -> None:
    lo = Link(1, "lo", "loopback")
    links = [lo, _constructed("bond0"), _constructed("eth1"), _constructed("dummy0"), _constructed("genev_sys_6081")]
    nics = recommend.node_nics(links, ["bond0"])
    assert nics == ("bond0", "eth1")
    verdict, families = classify.verdict(classify.node_link_evidence(links, ["bond0"]))
    assert verdict == "plain"
    rec = recommend.recommend(families, links, nics, [])
    assert rec.interface_regex == r"^(eth.*|en[osipx].*|bond0|lo)$"
    assert rec.regex_check.missed == () and set(rec.regex_check.ignored) == {"dummy0", "genev_sys_6081"}


def test_weak_node_side_ipvlan_decides_only_alone() -> None:
    shim = _constructed("ipvl_9")
    node = [Link(2, "eth0", "physical"), shim]
    evidence = classify.node_link_evidence(node, ["eth0"])
    assert evidence[0].detail.startswith("weak:")
    assert classify.verdict(evidence) == ("ipvlan", ("ipvlan",))
    calico = classify.cni_evidence([CniConfig("/x/10-calico.conflist", ("calico",))])
    assert classify.verdict(evidence + calico) == ("calico", ("calico",))


def test_fast_parser_agrees_with_pyroute2_full_decode() -> None:
    """Every field the fast parser reads, compared with pyroute2's own decode of the same bytes."""
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    messages = []
    for chunk in (bytes.fromhex(c) for c in RECORDED["chunks"]):
        offset = 0
        while offset + 16 <= len(chunk):
            length, mtype = struct.unpack_from("=IH", chunk, offset)
            if mtype == rtdump.RTM_NEWLINK:
                messages.append((chunk, offset, length))
            offset += length
    messages += [(bytes.fromhex(m["hex"]), 0, len(bytes.fromhex(m["hex"]))) for m in CONSTRUCTED["messages"]]
    assert len(messages) >= 14
    for data, offset, length in messages:
        fast = rtdump.parse_link(data, offset, length)
        full = ifinfmsg(data[offset : offset + length])
        full.decode()
        assert fast.index == full["index"] and fast.name == full.get_attr("IFLA_IFNAME")
        assert fast.master == full.get_attr("IFLA_MASTER")
        assert fast.link_netnsid == full.get_attr("IFLA_LINK_NETNSID")
        lower = full.get_attr("IFLA_LINK")
        assert fast.lower == (None if lower in (0, None) or (lower == fast.index and fast.link_netnsid is None) else lower)
        assert fast.mac == full.get_attr("IFLA_ADDRESS")
        assert fast.operstate == (full.get_attr("IFLA_OPERSTATE") or "unknown").lower()
        info = full.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        if kind is None:
            assert fast.kind in ("loopback", "physical")
        elif kind == "tun":
            tun_type = info.get_attr("IFLA_INFO_DATA").get_attr("IFLA_TUN_TYPE")
            assert fast.kind == {1: "tun", 2: "tap"}[tun_type]
        else:
            assert fast.kind == kind


def _message(index: int, attrs: list[Any]) -> bytes:
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    msg = ifinfmsg()
    msg["index"] = index
    msg["attrs"] = attrs
    msg["header"]["type"] = rtdump.RTM_NEWLINK
    msg.encode()
    return bytes(msg.data)


def test_layout_memory_is_exact() -> None:
    """LinkParser reuses a walked attribute chain only when every header matches."""
    parser = rtdump.LinkParser()
    a = _message(5, [("IFLA_IFNAME", "vethA"), ("IFLA_MTU", 1500), ("IFLA_MASTER", 9)])
    same_chain = _message(6, [("IFLA_IFNAME", "vethB"), ("IFLA_MTU", 9000), ("IFLA_MASTER", 3)])
    swapped = _message(7, [("IFLA_IFNAME", "vethC"), ("IFLA_MASTER", 4), ("IFLA_MTU", 1500)])
    retyped = _message(8, [("IFLA_IFNAME", "vethD"), ("IFLA_MTU", 1500), ("IFLA_LINK", 2)])
    assert len({len(a), len(same_chain), len(swapped), len(retyped)}) == 1  # same length, so the memory is tried
    for data in (a, same_chain, swapped, retyped):
        assert parser(data, 0, len(data)) == rtdump.parse_link(data, 0, len(data))
    assert parser(same_chain, 0, len(same_chain)).master == 3
    assert parser(swapped, 0, len(swapped)).master == 4
    assert parser(retyped, 0, len(retyped)).master is None and parser(retyped, 0, len(retyped)).lower == 2
    assert parser.remembered == 3  # a (reused by same_chain), swapped, retyped


def test_layout_memory_on_the_recorded_dump() -> None:
    parser = rtdump.LinkParser()
    for chunk in (bytes.fromhex(c) for c in RECORDED["chunks"]):
        offset = 0
        while offset + 16 <= len(chunk):
            length, mtype = struct.unpack_from("=IH", chunk, offset)
            if mtype == rtdump.RTM_NEWLINK:
                for _ in range(2):  # the second time from memory
                    assert parser(chunk, offset, length) == rtdump.parse_link(chunk, offset, length)
            offset += length


def _raw_message(index: int, attrs: list[tuple[int, bytes]]) -> bytes:
    """An RTM_NEWLINK built byte by byte, for chains pyroute2 would not encode."""
    body = b"".join(struct.pack("=HH", 4 + len(p), t) + p + b"\0" * (-len(p) % 4) for t, p in attrs)
    ifi = struct.pack("=BxHiII", 0, 1, index, 0, 0)
    return struct.pack("=IHHII", 32 + len(body), rtdump.RTM_NEWLINK, 0, 0, 0) + ifi + body


def test_compiled_chain_reads_what_the_walk_reads() -> None:
    """A remembered chain read in one struct call gives the walk's Link, duplicates and odd sizes too."""
    name, master, link = rtdump.IFLA_IFNAME, rtdump.IFLA_MASTER, rtdump.IFLA_LINK
    info = struct.pack("=HH", 9, rtdump.IFLA_INFO_KIND) + b"veth\0" + b"\0" * 3
    cases = [
        # the last of two IFLA_MASTERs wins, as in the walk
        [(name, b"v1\0"), (master, struct.pack("=I", 4)), (master, struct.pack("=I", 7))],
        # a nested-flagged IFLA_LINKINFO, a MAC, an operstate past the known ones
        [(name, b"veth0\0"), (rtdump.IFLA_LINKINFO | rtdump.NLA_F_NESTED, info),
         (rtdump.IFLA_ADDRESS, bytes(range(6))), (rtdump.IFLA_OPERSTATE, b"\x09")],
        # an IFLA_LINK of 8 bytes: the first 4 are the index
        [(name, b"x\0"), (link, struct.pack("=II", 3, 99))],
        # a 2-byte IFLA_MASTER is malformed: never compiled, the walk reads it every time
        [(name, b"y\0"), (master, b"\x05\x00")],
    ]
    parser = rtdump.LinkParser()
    for attrs in cases:
        for index in (10, 11):  # the second message of a chain is read by its compiled struct
            data = _raw_message(index, attrs)
            assert parser(data, 0, len(data)) == rtdump.parse_link(data, 0, len(data))
    assert parser.remembered == 3
    data = _raw_message(12, cases[0])
    assert parser(data, 0, len(data)).master == 7
    data = _raw_message(13, cases[1])
    got = parser(data, 0, len(data))
    assert (got.kind, got.mac, got.operstate) == ("veth", "00:01:02:03:04:05", "unknown")


def test_dump_requests_are_pyroute2s_encoding() -> None:
    """The two requests packed with struct are byte for byte what pyroute2 sends for them."""
    import socket

    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    link = ifinfmsg()
    link["family"] = socket.AF_UNSPEC
    link["attrs"] = [("IFLA_EXT_MASK", rtdump.RTEXT_FILTER_SKIP_STATS)]
    dump = rtdump.NLM_F_REQUEST | rtdump.NLM_F_DUMP
    assert rtdump.getlink_request(7) == rtdump.pyroute2_encoded(link, rtdump.RTM_GETLINK, dump, 7)
    for family in (socket.AF_INET, socket.AF_INET6):
        route = rtmsg()
        route["family"] = family
        assert rtdump.getroute_request(family, 3) == rtdump.pyroute2_encoded(route, rtdump.RTM_GETROUTE, dump, 3)
