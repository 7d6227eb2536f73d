"""The facts' pure parsers, on data recorded from real hosts; and facts never write."""
from __future__ import annotations

import ast
from pathlib import Path

from hostagent.facts import host, service
from hostagent.host import services

# /proc/self/mountinfo of a Debian 12 host with hybrid cgroups (trimmed).
MOUNTINFO = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
25 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 25 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
29 28 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 28 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
35 28 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,memory
40 22 0:35 / /mnt/with\\040space rw,nosuid,relatime - tmpfs none rw
"""

SYSTEMCTL_SHOW = "ActiveState=active\nSubState=running\nUnitFileState=enabled\nMainPID=4242\nNRestarts=0\nResult=success\n"


def test_mountinfo_parser() -> None:
    mounts = host.parse_mountinfo(MOUNTINFO)
    assert [m.point for m in mounts][-1] == "/mnt/with space"
    cpu = next(m for m in mounts if m.point == "/sys/fs/cgroup/cpu,cpuacct")
    assert cpu.fstype == "cgroup" and "cpu" in cpu.super_options and "nosuid" in cpu.options
    assert host.mount_of("/sys/fs/cgroup/memory/x", mounts).point == "/sys/fs/cgroup/memory"


def test_systemctl_parsers() -> None:
    assert services.parse_systemctl_show(SYSTEMCTL_SHOW)["MainPID"] == "4242"
    assert host.parse_systemctl_version("systemd 252 (252.30-1~deb12u2)\n+PAM +AUDIT") == 252
    assert host.parse_systemctl_version("") is None


def test_init_system_is_read_from_pid1_and_the_hosts_files() -> None:
    assert host.classify_init(True, False, "systemd", False) == "systemd"
    assert host.classify_init(False, True, "init", True) == "openrc"  # Debian's openrc runs under sysvinit's init
    assert host.classify_init(False, True, "openrc-init", False) == "openrc"
    assert host.classify_init(False, False, "init", True) == "sysvinit"
    assert host.classify_init(False, False, "supervisord", False) == "unknown"
    assert host.classify_init(False, False, "init", False) == "unknown"  # busybox init without inittab: not ours


def test_inittab_lines() -> None:
    entry = services.parse_inittab_line("dfha:2345:respawn:/usr/sbin/hostagent exec --user deepflow -- /a -f /b:c\n")
    assert entry == services.InittabEntry("dfha", "2345", "respawn", "/usr/sbin/hostagent exec --user deepflow -- /a -f /b:c")
    assert entry.line() == "dfha:2345:respawn:/usr/sbin/hostagent exec --user deepflow -- /a -f /b:c"
    assert services.parse_inittab_line("# id:2345:respawn:/x") is None
    assert services.parse_inittab_line("garbage") is None


def test_proc_status_and_elf_parsers() -> None:
    assert service.parse_proc_status_uid("Name:\tdeepflow-agent\nUid:\t998\t998\t998\t998\n") == 998
    x86 = b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\x02\x00\x3e\x00"
    info = host.parse_elf_header(x86)
    assert info.is_elf and (info.machine, info.elf_class) == (62, 2) and host.elf_matches_host(info, "x86_64")
    assert not host.elf_matches_host(info, "aarch64")
    assert not host.parse_elf_header(b"#!/bin/sh\n").is_elf
    assert host.kernel_version("6.1.0-28-amd64") == (6, 1, 0) and host.kernel_version("4.18.0-553.el8") == (4, 18, 0)


WRITES = {"mkdir", "makedirs", "chown", "chmod", "fchown", "fchmod", "rename", "replace", "unlink", "rmdir",
          "setxattr", "removexattr", "kill", "utime", "symlink"}


def test_facts_never_write() -> None:
    """No module under hostagent/facts/ calls an os function that changes the host."""
    for path in Path(host.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            owner = getattr(node, "value", None)
            if isinstance(node, ast.Attribute) and node.attr in WRITES and getattr(owner, "id", None) in ("os", "shutil"):
                raise AssertionError(f"{path.name}:{node.lineno} calls {node.attr}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open" and len(node.args) > 1:
                mode = node.args[1]
                assert isinstance(mode, ast.Constant) and set(str(mode.value)) <= set("rb"), f"{path.name}:{node.lineno}"


def test_unsafe_launcher_paths(root, tmp_path) -> None:
    """Root's own files only (the check is about what root runs)."""
    import os

    ok = tmp_path / "hostagent"
    ok.write_text("")
    ok.chmod(0o755)
    assert host.unsafe_path_reason(str(ok)) is None
    ok.chmod(0o757)
    assert "writable by group or others" in (host.unsafe_path_reason(str(ok)) or "")
    spaced = tmp_path / "my dir"
    spaced.mkdir()
    assert "space or '%'" in (host.unsafe_path_reason(str(spaced)) or "")
    theirs = tmp_path / "theirs"
    theirs.write_text("")
    os.chown(theirs, 65534, 65534)
    assert "owned by uid 65534" in (host.unsafe_path_reason(str(theirs)) or "")


def test_a_kernel_without_ambient_caps_is_refused() -> None:
    import pytest

    from hostagent import facts, options, planner
    from hostagent.errors import InputError

    here = facts.gather()._replace(is_root=True, init="systemd", ambient_caps=False)
    with pytest.raises(InputError, match="no ambient capabilities"):
        planner.preflight(options.build({"controller_ips": ["10.0.0.1"]}), here)
    assert facts.host.ambient_caps_supported()  # this machine's kernel has them


def test_cgroup_processes_include_child_cgroups(tmp_path) -> None:
    """On v2 the agent's user owns its cgroup and may make children; stop and cleanup must see them."""
    from hostagent import agentcgroups
    from hostagent.facts.cgroups import pids_in

    top = tmp_path / "deepflow-agent"
    (top / "child" / "grandchild").mkdir(parents=True)
    (top / "cgroup.procs").write_text("10\n")
    (top / "child" / "cgroup.procs").write_text("11\n12\n")
    (top / "child" / "grandchild" / "cgroup.procs").write_text("")
    assert sorted(pids_in(str(top))) == [10, 11, 12]
    for f in top.rglob("cgroup.procs"):
        f.unlink()
    agentcgroups.remove(str(top), timeout=1)  # children first
    assert not top.exists()
