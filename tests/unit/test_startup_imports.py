"""Every command pays only for what it uses (issue 18, item 2): what a start imports, checked in a
fresh interpreter (times are the bench's: bench/startup_bench.py)."""
from __future__ import annotations

import json
import subprocess
import sys

HEAVY_PYROUTE2 = ("pyroute2.ndb", "pyroute2.ipdb", "pyroute2.conntrack", "pyroute2.iproute")


def _modules_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def test_a_link_and_route_dump_imports_no_pyroute2():
    mods = _modules_after("from hostagent.net.rtdump import open_route_socket, dump_links, default_route_ifindexes\n"
                          "sock = open_route_socket()\n"
                          "print(len(list(dump_links(sock))), default_route_ifindexes(sock))")
    assert [m for m in mods if m.startswith("pyroute2")] == []


def test_a_netns_id_lookup_loads_pyroute2s_netlink_modules_only():
    mods = _modules_after("from hostagent.net.rtdump import open_route_socket, peer_nsid\n"
                          "print(peer_nsid(open_route_socket(), '/proc/self/ns/net'))")
    assert "pyroute2.netlink.rtnl.nsidmsg" in mods
    assert [m for m in mods if m.startswith(HEAVY_PYROUTE2)] == []


def test_pyroute2s_package_names_still_load_on_first_use():
    """Whatever else in the process imports pyroute2 the usual way gets the whole package."""
    mods = _modules_after("from hostagent.net.rtdump import open_route_socket, peer_nsid\n"
                          "peer_nsid(open_route_socket(), '/proc/self/ns/net')\n"
                          "import pyroute2\nfrom pyroute2 import IPRoute\n"
                          "with IPRoute() as ip: assert ip.get_links()\n"
                          "assert pyroute2.__version__ != 'unknown'")
    assert "pyroute2.ndb.main" in mods


def test_version_imports_neither_typer_nor_click():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "hostagent", "--version"],
                         check=True, capture_output=True, text=True)
    assert out.stdout.startswith("hostagent ")
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines()}
    assert not imported & {"typer", "click", "hostagent.cli.app"}, sorted(imported)
