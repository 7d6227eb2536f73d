"""detect_layout against real links in network namespaces these tests create (and always delete).

Each case builds a "node" netns whose uplink eth0 is a veth to an "upstream" netns (with the
default route over it, as on a kind/nspawn node) plus pod namespaces named the way each CNI
names its devices. `ip` is used for setup only; detection reads netlink through pyroute2.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from hostagent.errors import InputError
from hostagent.net.detect import detect_layout

pytestmark = pytest.mark.root


class Lab:
    """Namespaces for one test; every one of them is deleted at teardown."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.created: list[str] = []
        self.node = self.netns("node")
        self.upstream = self.netns("up")
        self.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0up", "netns", self.upstream)
        self.ip("addr", "add", "192.0.2.2/24", "dev", "eth0")
        self.ip("link", "set", "eth0", "up")
        self.ip("link", "set", "lo", "up")
        self.ip("link", "set", "eth0up", "up", ns=self.upstream)
        self.ip("route", "add", "default", "via", "192.0.2.1", "dev", "eth0")

    def netns(self, role: str) -> str:
        name = f"hatest-{self.tag}-{role}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.created.append(name)
        return name

    def ip(self, *argv: str, ns: str | None = None) -> None:
        subprocess.run(["ip", "-n", ns or self.node, *argv], check=True, capture_output=True)

    def pod_veth(self, host_name: str, pod_name: str = "eth0", master: str | None = None) -> str:
        """A pod netns whose eth0 is the peer of host_name in the node netns."""
        pod = self.netns(f"pod{len(self.created)}")
        self.ip("link", "add", host_name, "type", "veth", "peer", "name", pod_name, "netns", pod)
        if master:
            self.ip("link", "set", host_name, "master", master)
        self.ip("link", "set", host_name, "up")
        return pod

    def pod_child(self, kind: str, name: str, *extra: str) -> str:
        """A macvlan-style child of eth0, moved into a new pod netns (invisible from the node)."""
        pod = self.netns(f"pod{len(self.created)}")
        self.ip("link", "add", "link", "eth0", "name", name, "type", kind, *extra)
        self.ip("link", "set", name, "netns", pod)
        return pod

    def cleanup(self) -> None:
        for name in reversed(self.created):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@pytest.fixture
def lab(root: None) -> Iterator[Lab]:
    made = Lab.__new__(Lab)
    made.tag, made.created = uuid.uuid4().hex[:6], []
    try:
        Lab.__init__(made)
        yield made
    finally:
        made.cleanup()
        leftovers = [n for n in os.listdir("/run/netns") if n.startswith(f"hatest-{made.tag}")]
        assert not leftovers, f"namespaces left behind: {leftovers}"


def names(layout_links) -> set[str]:
    return {link.name for link in layout_links}


def test_plain_node(lab: Lab) -> None:
    layout = detect_layout(lab.node, cni_dir=Path("/nonexistent"))
    assert layout.verdict == "plain"
    assert layout.default_route_nics == ("eth0",)
    assert layout.node_nics == ("eth0",)
    eth0 = next(link for link in layout.links if link.name == "eth0")
    assert eth0.kind == "veth" and eth0.link_netnsid is not None and eth0.operstate in ("up", "lowerlayerdown")
    rec = layout.recommendation
    assert rec.interface_regex == r"^(eth.*|en[osipx].*|lo)$"
    assert rec.capture_mode == 0
    assert set(rec.regex_check.matched) == {"lo", "eth0"} and rec.regex_check.missed == ()
    # Other engineers' namespaces and the host's own are not pods of this node.
    assert layout.other_netns == ()
    assert layout.unrelated_netns_count >= 1


def test_calico(lab: Lab) -> None:
    pod = lab.pod_veth("cali1a2b3c4d5e6")
    lab.pod_veth("cali99aa88bb77c")
    lab.ip("link", "add", "vxlan.calico", "type", "vxlan", "id", "4096", "dstport", "4789")
    layout = detect_layout(lab.node, cni_dir=Path("/nonexistent"))
    assert layout.verdict == "calico", layout.evidence
    assert any(e.family == "calico" and "2 pod-side NIC(s)" in e.detail for e in layout.evidence)
    vx = next(link for link in layout.links if link.name == "vxlan.calico")
    assert vx.kind == "vxlan"
    rec = layout.recommendation
    assert rec.interface_regex == r"^(eth.*|en[osipx].*|cali.*|lo)$"
    assert {"cali1a2b3c4d5e6", "cali99aa88bb77c", "eth0", "lo"} <= set(rec.regex_check.matched)
    assert rec.regex_check.missed == ()
    assert "vxlan.calico" in rec.regex_check.ignored
    views = {v.point: v for v in layout.capture}
    assert views["pod_nic"].same_node == "both directions"
    assert views["node_nic"].same_node == "not seen" and views["node_nic"].cross_node == "both directions"
    # The pod netns is related: its eth0 has its peer in the node netns.
    assert f"{pod}" in {ns.label for ns in layout.other_netns}
    # ... and the host-side NIC names the netns of its peer.
    cali = next(link for link in layout.to_dict()["links"] if link["name"] == "cali1a2b3c4d5e6")
    assert cali["peer_netns"] == pod


def test_cilium(lab: Lab) -> None:
    lab.ip("link", "add", "cilium_host", "type", "veth", "peer", "name", "cilium_net")
    lab.ip("link", "add", "cilium_vxlan", "type", "vxlan", "id", "2", "dstport", "8472")
    lab.pod_veth("lxc0a1b2c3d4e5f")
    lab.pod_veth("lxc_health")
    layout = detect_layout(lab.node, cni_dir=Path("/nonexistent"))
    assert layout.verdict == "cilium", layout.evidence
    assert any("cilium_host" in e.detail for e in layout.evidence)
    rec = layout.recommendation
    # DeepFlow: with Cilium's eBPF datapath capture on the node NIC only.
    assert rec.interface_regex == r"^(eth.*|en[osipx].*|lo)$"
    assert "lxc0a1b2c3d4e5f" in rec.regex_check.ignored and rec.regex_check.missed == ()
    assert {v.point: v for v in layout.capture}["pod_nic"].same_node == "one direction only"


def test_kube_ovn(lab: Lab) -> None:
    lab.pod_veth("0a1b2c3d4e_h")
    layout = detect_layout(lab.node, cni_dir=Path("/nonexistent"))
    assert layout.verdict == "kube-ovn"
    assert "[0-9a-f]+_h" in layout.recommendation.interface_regex
    assert "0a1b2c3d4e_h" in layout.recommendation.regex_check.matched


def test_flannel_bridge_veth(lab: Lab) -> None:
    lab.ip("link", "add", "cni0", "type", "bridge")
    lab.ip("link", "add", "flannel.1", "type", "vxlan", "id", "1", "dstport", "8472")
    lab.pod_veth("veth1a2b3c4d", master="cni0")
    lab.pod_veth("podnic77", master="cni0")  # any name: the bridge master decides
    layout = detect_layout(lab.node, cni_dir=Path("/nonexistent"))
    assert layout.verdict == "bridge-veth", layout.evidence
    evidence = next(e for e in layout.evidence if e.family == "bridge-veth")
    assert "attached to cni0" in evidence.detail and "2 pod-side" in evidence.detail
    veth = next(link for link in layout.links if link.name == "veth1a2b3c4d")
    assert layout.link_name(veth.master) == "cni0"
    check = layout.recommendation.regex_check
    assert "veth1a2b3c4d" in check.matched
    # podnic77 carries pod traffic but the CNI-style regex veth.* misses it: say so.
    assert check.missed == ("podnic77",)


def test_macvlan_children_in_pod_netns(lab: Lab, tmp_path: Path) -> None:
    pod1 = lab.pod_child("macvlan", "mv1", "mode", "bridge")
    lab.pod_child("macvlan", "mv2", "mode", "bridge")
    cni = tmp_path / "net.d"
    cni.mkdir()
    (cni / "10-macvlan.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": "macvlan-net",
        "plugins": [{"type": "macvlan", "master": "eth0", "mode": "bridge",
                     "ipam": {"type": "host-local", "subnet": "192.0.2.0/24"}},
                    {"type": "portmap", "capabilities": {"portMappings": True}}],
    }))
    layout = detect_layout(lab.node, cni_dir=cni)
    assert layout.verdict == "macvlan", layout.evidence
    # Nothing in the node netns shows the pods: the evidence is from their namespaces and the CNI file.
    sources = {e.source for e in layout.evidence if e.family == "macvlan"}
    assert sources == {"netns", "cni"}
    netns_ev = next(e for e in layout.evidence if e.source == "netns")
    assert "2 macvlan child (bridge)" in netns_ev.detail and pod1 in netns_ev.detail
    assert layout.cni_configs[0].types == ("macvlan", "portmap")  # ipam's host-local is skipped
    rec = layout.recommendation
    assert rec.capture_mode == 1
    assert rec.interface_regex == r"^(eth.*|en[osipx].*)$"  # no lo in virtual-mirror mode
    assert {v.point: v for v in layout.capture}["node_nic"].same_node == "both directions"


def test_macvtap_and_tap_hypervisor(lab: Lab) -> None:
    lab.ip("link", "add", "virbr0", "type", "bridge")
    lab.ip("tuntap", "add", "dev", "vnet0", "mode", "tap")
    lab.ip("link", "set", "vnet0", "master", "virbr0")
    lab.ip("tuntap", "add", "dev", "tap7", "mode", "tap")
    lab.ip("tuntap", "add", "dev", "tun3", "mode", "tun")
    layout = detect_layout(lab.node, cni_dir=Path("/nonexistent"))
    assert layout.verdict == "hypervisor", layout.evidence
    kinds = {link.name: link.kind for link in layout.links}
    assert kinds["vnet0"] == "tap" and kinds["tap7"] == "tap" and kinds["tun3"] == "tun"
    check = layout.recommendation.regex_check
    assert {"vnet0", "tap7"} <= set(check.matched) and "tun3" in check.ignored
    assert {v.point: v for v in layout.capture}["ebpf_syscall"].same_node == "not seen"


def test_mixed_and_inner_capture(lab: Lab) -> None:
    lab.pod_veth("calia0a0a0a0a0a")
    lab.pod_child("macvlan", "mv1", "mode", "bridge")
    layout = detect_layout(lab.node, cni_dir=Path("/nonexistent"), inner=True, ring_blocks=64)
    assert layout.verdict == "mixed" and layout.families == ("calico", "macvlan")
    assert any(v.point == "macvlan:node_nic" for v in layout.capture)
    rec = layout.recommendation
    assert rec.capture_mode == 1 and any("capture mode applies to every NIC" in r for r in rec.reasons)
    inner = rec.inner_capture
    assert inner is not None
    assert inner["netns_count"] == 2 and inner["memory_mib"] == 128
    # pod-side names are eth0 (veth) and mv1 (macvlan)
    assert inner["inner_interface_regex"] == r"^(eth\d+|mv\d+)$"


def test_netns_errors(root: None) -> None:
    with pytest.raises(InputError, match="no network namespace"):
        detect_layout(f"hatest-missing-{uuid.uuid4().hex[:6]}")
    with pytest.raises(InputError, match="invalid netns name"):
        detect_layout("../etc")


def test_cli_detect_json(lab: Lab) -> None:
    lab.pod_veth("cali1234567890a")
    import typer
    from typer.testing import CliRunner

    from hostagent.cli.net import register

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["detect", "--netns", lab.node, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["verdict"] == "calico"
    cali = next(link for link in data["links"] if link["name"] == "cali1234567890a")
    assert cali["kind"] == "veth" and cali["lower"].startswith("ifindex ")
    human = CliRunner().invoke(app, ["detect", "--netns", lab.node])
    assert human.exit_code == 0 and "layout: calico" in human.stdout
    bad = CliRunner().invoke(app, ["detect", "--netns", "no/such"])
    assert bad.exit_code == 2
