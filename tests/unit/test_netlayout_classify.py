"""CNI config reading and the name rules of the classifier; pure, no root."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hostagent.net import classify, scan
from hostagent.net.model import Link


def write(dir_: Path, name: str, conf: object) -> None:
    (dir_ / name).write_text(json.dumps(conf) if not isinstance(conf, str) else conf)


def test_cni_configs(tmp_path: Path) -> None:
    write(tmp_path, "00-multus.conf", {
        "type": "multus", "name": "multus-cni-network",
        "delegates": [{"cniVersion": "0.3.1", "name": "k8s-pod-network",
                       "plugins": [{"type": "calico", "ipam": {"type": "calico-ipam"}},
                                   {"type": "bandwidth", "capabilities": {"bandwidth": True}}]}],
    })
    write(tmp_path, "10-terway.conflist", {
        "plugins": [{"type": "terway", "eniip_virtual_type": "IPVlan"}, {"type": "cilium-cni"}]})
    write(tmp_path, "20-broken.conf", "{not json")
    write(tmp_path, "README.md", "ignored: not a CNI config suffix")
    configs, warnings = scan.cni_configs(tmp_path)
    assert [(Path(c.path).name, c.types, c.hints) for c in configs] == [
        ("00-multus.conf", ("multus", "calico", "bandwidth"), ()),  # calico-ipam skipped
        ("10-terway.conflist", ("terway", "cilium-cni"), ("IPVlan",)),
    ]
    assert len(warnings) == 1 and "20-broken.conf" in warnings[0]
    families = {(e.family, Path(e.detail.split(":")[0]).name) for e in classify.cni_evidence(configs)}
    # multus and bandwidth name no layout; Terway's IPVlan datapath means ipvlan.
    assert families == {("calico", "00-multus.conf"), ("ipvlan", "10-terway.conflist"),
                        ("cilium", "10-terway.conflist")}


def test_missing_cni_dir(tmp_path: Path) -> None:
    assert scan.cni_configs(tmp_path / "absent") == ([], [])


def test_other_netns_skips_the_node_and_vanished_processes(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "100" / "ns").mkdir(parents=True)
    os.symlink("/proc/self/ns/net", proc / "100" / "ns" / "net")  # same netns as the node
    (proc / "200" / "ns").mkdir(parents=True)  # exited process: no ns/net any more
    (proc / "self").mkdir()
    assert [r for r in scan.other_netns("/proc/self/ns/net", proc) if r.path.startswith(str(proc))] == []


@pytest.mark.parametrize(
    ("link", "family"),
    [
        (Link(5, "cali0123456789a", "veth", lower=4, link_netnsid=0), "calico"),
        (Link(5, "lxc0123abcd", "veth", lower=4, link_netnsid=0), "cilium"),
        (Link(5, "lxc_health", "veth", lower=4, link_netnsid=0), "cilium"),
        (Link(5, "cilium_host", "veth", lower=6), None),  # peer in the same netns: plumbing
        (Link(5, "abc123_h", "veth", lower=4, link_netnsid=0), "kube-ovn"),
        (Link(5, "vethdeadbeef", "veth", lower=4, link_netnsid=0), "bridge-veth"),
        (Link(5, "odd0", "veth", lower=4, link_netnsid=0), None),
        (Link(5, "odd0", "veth", lower=4, link_netnsid=0, master=9), "bridge-veth"),
        (Link(5, "vnet3", "tap"), "hypervisor"),
        (Link(5, "macvtap0", "macvtap", lower=2), "hypervisor"),
        (Link(5, "tun0", "tun"), None),
        (Link(5, "eth0", "physical"), None),
    ],
)
def test_pod_nic_family(link: Link, family: str | None) -> None:
    bridge = Link(9, "cni0", "bridge")
    assert classify.pod_nic_family(link, {9: bridge, link.index: link}) == family


def test_unknown_veths_make_an_unknown_verdict() -> None:
    links = [Link(2, "eth0", "physical"), Link(5, "odd0", "veth", lower=4, link_netnsid=0)]
    evidence = classify.node_link_evidence(links, ["eth0"])
    assert classify.verdict(evidence) == ("unknown", ())
    assert classify.capture_views((), "unknown") == ()
