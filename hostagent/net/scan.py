"""Find the other network namespaces (named and per-process) and read the CNI configuration."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hostagent.net.model import CniConfig

NAMED_NETNS_DIR = Path("/run/netns")
CNI_CONF_DIR = Path("/etc/cni/net.d")
# Keys under which a CNI config nests plugins that are not the pod's NIC plugin.
_SKIP_KEYS = frozenset({"ipam", "capabilities", "runtimeConfig", "dns"})


@dataclass(frozen=True)
class NetnsRef:
    label: str
    path: str
    inode: int


def netns_inode(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def other_netns(node_ns_path: str, proc: Path = Path("/proc")) -> list[NetnsRef]:
    """Named netns and those of running processes, one entry per namespace, node's excluded."""
    seen = {netns_inode(node_ns_path)}
    found: list[NetnsRef] = []

    def add(label: str, path: str) -> None:
        try:
            key = netns_inode(path)
        except OSError:  # the process exited or the mount went away meanwhile
            return
        if key not in seen:
            seen.add(key)
            found.append(NetnsRef(label, path, key[1]))

    if NAMED_NETNS_DIR.is_dir():
        for entry in sorted(NAMED_NETNS_DIR.iterdir()):
            add(entry.name, os.fspath(entry))
    for pid in _pids(proc):
        add(f"pid {pid} ({_comm(proc, pid)})", os.fspath(proc / str(pid) / "ns" / "net"))
    return found


def _pids(proc: Path) -> Iterator[int]:
    for entry in os.scandir(proc):
        if entry.name.isdigit():
            yield int(entry.name)


def _comm(proc: Path, pid: int) -> str:
    try:
        return (proc / str(pid) / "comm").read_text().strip()
    except OSError:
        return "?"


def plugin_types(conf: Any) -> list[str]:
    """Every CNI plugin "type" in a conf/conflist tree (multus delegates included), ipam skipped."""
    types: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, str) and kind not in types:
                types.append(kind)
            for key, value in node.items():
                if key not in _SKIP_KEYS:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(conf)
    return types


def _hints(conf: Any) -> list[str]:
    """Settings that change what a plugin type means (Terway's IPVlan datapath)."""
    hints: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            mode = node.get("eniip_virtual_type")
            if isinstance(mode, str) and mode.lower() == "ipvlan" and "IPVlan" not in hints:
                hints.append("IPVlan")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(conf)
    return hints


def cni_configs(conf_dir: Path = CNI_CONF_DIR) -> tuple[list[CniConfig], list[str]]:
    """Parsed CNI config files and a warning per file that could not be read."""
    configs: list[CniConfig] = []
    warnings: list[str] = []
    if not conf_dir.is_dir():
        return configs, warnings
    for path in sorted(conf_dir.iterdir()):
        if path.suffix not in (".conf", ".conflist", ".json") or not path.is_file():
            continue
        try:
            conf = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            warnings.append(f"cannot read CNI config {path}: {exc}")
            continue
        configs.append(CniConfig(os.fspath(path), tuple(plugin_types(conf)), tuple(_hints(conf))))
    return configs, warnings
