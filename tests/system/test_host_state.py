"""testinfra suite: the state of a host after `hostagent install`, or after `uninstall`.

Runs against any host (see conftest.py for options):
    pytest tests/system/test_host_state.py --hosts=ssh://root@HOST [--state=absent --snapshot-before=F]
Every check reads the host itself (files, /proc, cgroupfs, systemctl), never hostagent's manifest.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.hostsnap import diff as snapshot_diff
from tests.system.conftest import CAP_NUMBERS, Expected, comparable

# Where the default (--remote-upgrade auto) runs the agent when no package owns its binary (the tiers'
# installs: the double, copied from elsewhere); /usr/sbin/deepflow-agent is then never touched.
BINARY = "/var/lib/deepflow-agent/deepflow-agent"
READ_ONLY_BINARY = "/usr/sbin/deepflow-agent"
CONFIG = "/etc/deepflow-agent/deepflow-agent.yaml"
UNIT = "deepflow-agent.service"
UNIT_FILE = "/etc/systemd/system/deepflow-agent.service"
LOG_DIR = "/var/log/deepflow-agent"
MANIFEST = "/var/lib/hostagent/manifest.json"
HOSTSNAP = Path(__file__).resolve().parents[1] / "hostsnap.py"


def sh(host, cmd: str) -> str:
    """Run on the target, fail the test with its stderr if it fails."""
    result = host.run(cmd)
    assert result.rc == 0, f"{cmd!r} failed rc={result.rc}: {result.stderr.strip()}"
    return result.stdout


def cgroup_mode(host) -> str:
    fstype = sh(host, "stat -f -c %T /sys/fs/cgroup").strip()
    if fstype == "cgroup2fs":
        return "v2"
    return "hybrid" if host.file("/sys/fs/cgroup/unified").is_directory else "v1"


def v1_mounts(host) -> dict:
    """Controller -> its real mount point (cpu may share one with cpuacct)."""
    mounts = {}
    for line in sh(host, "cat /proc/self/mounts").splitlines():
        _src, mnt, fstype, opts = line.split()[:4]
        if fstype == "cgroup":
            for opt in opts.split(","):
                mounts.setdefault(opt, mnt)
    return mounts


def agent_dirs(host) -> list:
    if cgroup_mode(host) == "v2":
        return ["/sys/fs/cgroup/deepflow-agent"]
    m = v1_mounts(host)
    return [m["cpu"] + "/deepflow-agent", m["memory"] + "/deepflow-agent"]


def agent_pids(host) -> list:
    out = host.run("pgrep -x deepflow-agent")
    return [int(p) for p in out.stdout.split()]


def proc_status(host, pid: int) -> dict:
    fields = {}
    for line in sh(host, f"cat /proc/{pid}/status").splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def parse_getcap(output: str) -> tuple:
    """(cap names, flags) from getcap: `PATH cap_a,cap_b=eip` (libcap >= 2.27) or `PATH = cap_a,cap_b+eip`."""
    text = output.strip().split(None, 1)[1] if output.strip() else ""
    text = text.lstrip("= ").strip()
    match = re.fullmatch(r"([a-z_,]+)[=+]([eip]+)", text)
    assert match, f"unexpected getcap output: {output!r}"
    return frozenset(match.group(1).split(",")), "".join(sorted(match.group(2)))


def service_pids(host) -> set:
    """Every pid in the unit's cgroup and in the agent's own cgroups."""
    control = sh(host, f"systemctl show -p ControlGroup --value {UNIT}").strip()
    candidates = [f"/sys/fs/cgroup{control}", f"/sys/fs/cgroup/unified{control}", f"/sys/fs/cgroup/systemd{control}"]
    candidates += agent_dirs(host)
    pids = set()
    for d in candidates:
        result = host.run(f"find {d} -name cgroup.procs -exec cat {{}} +")
        if result.rc == 0:
            pids.update(int(p) for p in result.stdout.split())
    return pids


def cap_names(mask: int) -> list:
    return sorted(name for name, bit in CAP_NUMBERS.items() if mask >> bit & 1)


@pytest.fixture(scope="module")
def installed(expected: Expected) -> Expected:
    if expected.state != "installed":
        pytest.skip("--state=absent")
    return expected


@pytest.fixture(scope="module")
def absent(expected: Expected) -> Expected:
    if expected.state != "absent":
        pytest.skip("--state=installed")
    return expected


# --- after install ------------------------------------------------------------------------


def test_user_is_a_system_user_without_login_or_home(host, installed):
    user = host.user(installed.user)
    assert user.exists
    assert 0 < user.uid < 1000
    assert user.shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false")
    assert not user.home.startswith("/home/")
    assert user.home == "/nonexistent" or not host.file(user.home).exists, f"home {user.home} exists"
    assert host.group(installed.user).exists
    assert user.group == installed.user


def test_binary_owner_mode_and_exact_file_caps(host, installed):
    binary = host.file(BINARY)
    assert binary.is_file and not binary.is_symlink
    assert (binary.user, binary.group, binary.mode) == ("root", installed.user, 0o750)
    caps, flags = parse_getcap(sh(host, f"getcap {BINARY}"))
    assert caps == installed.caps
    assert flags == "eip"
    upgrade_dir = host.file(BINARY.rsplit("/", 1)[0])  # the agent's own upgrade writes here: its group may
    assert (upgrade_dir.user, upgrade_dir.group, upgrade_dir.mode) == ("root", installed.user, 0o770)


def test_config_file(host, installed):
    config = host.file(CONFIG)
    assert (config.user, config.group, config.mode) == ("root", installed.user, 0o640)
    data = yaml.safe_load(config.content_string)
    assert data["controller-ips"] == list(installed.controller_ips)
    assert data.get("controller-port", 30035) == 30035
    assert str(data["log-file"]).startswith(LOG_DIR + "/")


def test_unit_enabled_and_active(host, installed):
    service = host.service("deepflow-agent")
    assert service.is_enabled
    assert service.is_running, sh(host, f"systemctl status --no-pager {UNIT} || true")


def test_agent_runs_as_user_with_exactly_the_profile_caps(host, installed):
    pids = agent_pids(host)
    assert pids, "no process with comm deepflow-agent"
    uid = host.user(installed.user).uid
    for pid in pids:
        status = proc_status(host, pid)
        assert status["Uid"].split() == [str(uid)] * 4, status["Uid"]
        for field in ("CapEff", "CapPrm", "CapBnd"):
            mask = int(status[field], 16)
            assert mask == installed.cap_mask, f"pid {pid} {field}: {cap_names(mask)} != {sorted(installed.caps)}"


def test_agent_cgroup_membership_and_limits(host, installed):
    mode = cgroup_mode(host)
    pids = agent_pids(host)
    assert pids
    for pid in pids:
        lines = sh(host, f"cat /proc/{pid}/cgroup").splitlines()
        if mode == "v2":
            assert "0::/deepflow-agent" in lines, lines
        else:
            for controller in ("cpu", "memory"):
                paths = [l.split(":", 2)[2] for l in lines if controller in l.split(":")[1].split(",")]
                assert paths == ["/deepflow-agent"], (controller, lines)
    if mode == "v2":
        assert host.file("/sys/fs/cgroup/deepflow-agent/cpu.max").content_string.split() == [
            str(installed.cfs_quota_us), "100000"]
        assert int(host.file("/sys/fs/cgroup/deepflow-agent/memory.max").content_string) == installed.memory_bytes
    else:
        cpu, memory = agent_dirs(host)
        assert int(host.file(cpu + "/cpu.cfs_period_us").content_string) == 100000
        assert int(host.file(cpu + "/cpu.cfs_quota_us").content_string) == installed.cfs_quota_us
        assert int(host.file(memory + "/memory.limit_in_bytes").content_string) == installed.memory_bytes


def test_no_process_of_the_service_runs_as_root(host, installed):
    pids = service_pids(host)
    assert pids, "the service has no process"
    for pid in pids:
        result = host.run(f"cat /proc/{pid}/status")
        if result.rc != 0:
            continue  # exited meanwhile
        uids = [l for l in result.stdout.splitlines() if l.startswith("Uid:")][0].split()[1:]
        assert "0" not in uids, f"pid {pid} runs with uids {uids}"


def test_log_dir_owned_by_user(host, installed):
    log_dir = host.file(LOG_DIR)
    assert log_dir.is_directory
    assert log_dir.user == installed.user


# --- after uninstall ----------------------------------------------------------------------


def test_nothing_of_the_agent_is_left(host, absent):
    existed = absent.snapshot_before is not None and any(
        u.split(":")[0] == absent.user for u in absent.snapshot_before["users"])
    if not existed:  # a user that was there before install is left alone
        assert not host.user(absent.user).exists
        assert not host.group(absent.user).exists
    for path in (CONFIG, UNIT_FILE, MANIFEST, LOG_DIR):
        assert not host.file(path).exists, path
    assert not agent_pids(host)
    state = host.run(f"systemctl is-active {UNIT}").stdout.strip()
    assert state in ("inactive", "unknown", "failed"), state
    for d in agent_dirs(host):
        assert not host.file(d).exists, d


def test_binary_gone_or_without_caps(host, absent):
    assert not host.file(BINARY.rsplit("/", 1)[0]).exists
    if host.file(READ_ONLY_BINARY).exists:  # only when it was there before install
        assert not host.run(f"getcap {READ_ONLY_BINARY}").stdout.strip()


def test_host_equals_pre_install_snapshot(host, absent):
    if absent.snapshot_before is None:
        pytest.skip("no --snapshot-before")
    # hostsnap is stdlib-only; ship it in the command so no backend needs file upload.
    code = base64.b64encode(HOSTSNAP.read_bytes()).decode()
    after = json.loads(sh(host, f"echo {code} | base64 -d | python3 -"))
    assert snapshot_diff(comparable(absent.snapshot_before), comparable(after)) == []
