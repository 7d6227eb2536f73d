"""Root integration tests on this machine: real users, xattrs, cgroup v1 dirs, files.

PID 1 here is not systemd, so these run every step except the unit and the service (the nspawn and
VM tiers cover those). Each test leaves the machine as it found it, which is also what it asserts.
"""
from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hostagent import caps, engine, facts, manifest, options, planner
from hostagent.host import fs as fsutil
from hostagent.host import paths
from hostagent.errors import InputError, StepError
from hostagent.steps import Step
from hostagent.host import Host, using
from hostagent.steps.files import ServiceDefinition
from hostagent.steps.service import Service
from tests import hostsnap

pytestmark = pytest.mark.root
USER = "dfhatest"
SNAP_ROOTS = ("/etc", "/usr/sbin", "/var/lib", "/var/log", "/sys/fs/cgroup")
# Where the default (--remote-upgrade auto; no package owns the test's source) runs the agent from.
BINARY = paths.AGENT_UPGRADABLE


@contextlib.contextmanager
def systemd_assumed_here():
    """Everything is read from this host; only "systemd runs services" is assumed, because the plan's
    unit and service steps are left out here (so is whether the unit could reach this checkout's
    launcher: a clone under /tmp is fine for these steps)."""
    check = planner.check_launcher
    planner.check_launcher = lambda init: check("none")
    try:
        with using(Host(init="systemd")):
            yield
    finally:
        planner.check_launcher = check


@pytest.fixture(autouse=True)
def systemd_assumed():
    with systemd_assumed_here():
        yield


def host_facts() -> facts.HostFacts:
    return facts.gather()


def make_plan(binary: str, **kw) -> list[Step]:
    opts = options.build({"controller_ips": ["127.0.0.1"], "agent_binary": binary, "user": USER, **kw})
    host = host_facts()
    resolved = planner.preflight(opts, host)
    steps = planner.plan(opts, host, resolved)
    return [s for s in steps if not isinstance(s, (Service, ServiceDefinition))]


def _cleanup() -> None:
    if os.path.exists(paths.MANIFEST):
        try:
            engine.uninstall()
        except Exception as e:  # still clean what we can below
            print("cleanup uninstall failed:", e, file=sys.stderr)
    for d in ("/sys/fs/cgroup/cpu/deepflow-agent", "/sys/fs/cgroup/memory/deepflow-agent"):
        if os.path.isdir(d):
            os.rmdir(d)
    subprocess.run(["userdel", "--force", USER], capture_output=True)
    subprocess.run(["groupdel", USER], capture_output=True)


@pytest.fixture
def clean_host(cgroup_lock):
    for path in (paths.AGENT_BINARY, paths.AGENT_UPGRADE_DIR, paths.CONFIG_DIR, paths.LOG_DIR, paths.STATE_DIR):
        assert not os.path.lexists(path), f"{path} exists before the test; refusing to run on a dirty host"
    before = hostsnap.snapshot(SNAP_ROOTS)
    try:
        yield before
    finally:
        _cleanup()


def assert_same(before: dict) -> None:
    problems = hostsnap.diff(before, hostsnap.snapshot(SNAP_ROOTS))
    assert problems == [], "\n".join(problems[:30])


@pytest.fixture
def double_copy(agent_double: Path, tmp_path: Path) -> str:
    src = tmp_path / "deepflow-agent"
    shutil.copy2(agent_double, src)
    return str(src)


def getcap(path: str) -> str:
    return subprocess.run(["getcap", path], capture_output=True, text=True, check=True).stdout.split(" ", 1)[-1].strip()


def test_install_again_change_and_uninstall(clean_host, double_copy) -> None:
    result = engine.install(make_plan(double_copy), {}, {})
    assert all(s.status == "applied" for s in result.steps), [s.to_dict() for s in result.steps]

    account = pwd.getpwnam(USER)
    assert account.pw_uid < 1000 and account.pw_shell.endswith("nologin") and not os.path.exists(account.pw_dir)
    gid = grp.getgrnam(USER).gr_gid
    st = os.stat(BINARY)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o750)
    assert not os.path.exists(paths.AGENT_BINARY)
    # Set last, after the chown that would clear them; identical to what setcap writes.
    assert getcap(BINARY) == "cap_net_admin,cap_net_raw,cap_ipc_lock,cap_sys_ptrace,cap_sys_admin=eip"
    cfg = Path(paths.CONFIG_FILE)
    assert yaml.safe_load(cfg.read_text())["controller-ips"] == ["127.0.0.1"]
    cst = cfg.stat()
    assert (cst.st_uid, cst.st_gid, stat.S_IMODE(cst.st_mode)) == (0, gid, 0o640)
    log = os.stat(paths.LOG_DIR)
    assert (log.st_uid, stat.S_IMODE(log.st_mode)) == (account.pw_uid, 0o750)
    for d in ("/sys/fs/cgroup/cpu/deepflow-agent", "/sys/fs/cgroup/memory/deepflow-agent"):
        assert os.stat(d).st_uid == account.pw_uid
        assert os.stat(f"{d}/cgroup.procs").st_uid == account.pw_uid
    assert Path("/sys/fs/cgroup/cpu/deepflow-agent/cpu.cfs_quota_us").read_text().strip() == "100000"
    assert os.stat("/sys/fs/cgroup/cpu/deepflow-agent/cpu.cfs_quota_us").st_uid == account.pw_uid
    assert Path("/sys/fs/cgroup/memory/deepflow-agent/memory.limit_in_bytes").read_text().strip() == str(768 << 20)
    recorded = json.loads(Path(paths.MANIFEST).read_text())
    assert [e["kind"] for e in recorded["steps"]] == ["group", "user", "dir", "binary", "dir", "dir", "file", "cgroups", "caps"]

    again = engine.install(make_plan(double_copy), {}, {})
    assert not again.changed and {s.status for s in again.steps} == {"unchanged"}

    # Changed limits: the dirs exist, so their limits are the agent's (its group config): left alone.
    changed = engine.install(make_plan(double_copy, memory_mib=512, cpu_millicores=250), {}, {})
    assert [s.id for s in changed.steps if s.status == "applied"] == []
    assert Path("/sys/fs/cgroup/cpu/deepflow-agent/cpu.cfs_quota_us").read_text().strip() == "100000"

    # An upgrade that rewrites the binary clears its caps; a re-run keeps the newer file and puts them back.
    data = Path(BINARY).read_bytes()
    fsutil.atomic_write(BINARY, data, 0o755)
    assert getcap(BINARY) == ""
    fixed = engine.install(make_plan(double_copy, memory_mib=512, cpu_millicores=250), {}, {})
    assert {s.id for s in fixed.steps if s.status == "applied"} == {f"binary:{BINARY}", f"caps:{BINARY}"}
    assert getcap(BINARY).endswith("=eip")

    out = engine.uninstall()
    assert out.changed
    assert_same(clean_host)


@dataclass
class Explodes(Step):
    kind = "test-explodes"
    name: str

    def check(self) -> bool:
        return False

    def snapshot(self) -> dict:
        return {}

    def apply(self, record: dict) -> None:
        raise StepError("injected failure")

    def revert(self, record: dict) -> None:
        pass


def test_failure_in_the_middle_rolls_everything_back(clean_host, double_copy) -> None:
    steps = make_plan(double_copy)
    steps.insert(len(steps) - 1, Explodes(name="boom"))  # after cgroups, before caps
    with pytest.raises(StepError, match="injected failure") as e:
        engine.install(steps, {}, {})
    assert e.value.exit_code == 1
    statuses = [s.status for s in e.value.outcome.steps]
    # The 8 applied steps and the failing one itself (it may have been applied in part) are rolled back.
    assert statuses.count("rolled-back") == 9 and "failed" in statuses
    assert not os.path.exists(paths.MANIFEST)
    assert_same(clean_host)


def test_existing_files_are_restored_byte_for_byte(clean_host, double_copy, tmp_path) -> None:
    # A packaged agent: its binary (root:root 0755) and a hand-edited config already exist.
    packaged = b"\x7fELF packaged agent build 1\n"
    fsutil.atomic_write(paths.AGENT_BINARY, packaged, 0o755)
    os.mkdir(paths.CONFIG_DIR, 0o700)
    original = b"controller-ips:\n  - 10.9.9.9   # hand edited\n"
    fsutil.atomic_write(paths.CONFIG_FILE, original, 0o600)
    before = hostsnap.snapshot(SNAP_ROOTS)
    try:
        engine.install(make_plan(double_copy, remote_upgrade="deny"), {}, {})
        assert Path(paths.AGENT_BINARY).read_bytes() == Path(double_copy).read_bytes()
        assert b"127.0.0.1" in Path(paths.CONFIG_FILE).read_bytes()
        engine.uninstall()
        assert Path(paths.CONFIG_FILE).read_bytes() == original
        assert Path(paths.AGENT_BINARY).read_bytes() == packaged
        assert stat.S_IMODE(os.stat(paths.AGENT_BINARY).st_mode) == 0o755
        assert_same(before)
    finally:
        _cleanup()
        for p in (paths.CONFIG_FILE, paths.AGENT_BINARY):
            if os.path.lexists(p):
                os.unlink(p)
        if os.path.isdir(paths.CONFIG_DIR):
            os.rmdir(paths.CONFIG_DIR)


@pytest.mark.parametrize("planted", [paths.CONFIG_FILE, paths.CONFIG_DIR, paths.AGENT_BINARY, paths.AGENT_UPGRADE_DIR,
                                     paths.LOG_DIR])
def test_planted_symlink_is_refused_and_nothing_changes(clean_host, double_copy, tmp_path, planted) -> None:
    victim = tmp_path / "victim"
    victim.write_text("do not touch\n")
    created_dir = False
    if planted == paths.CONFIG_FILE:
        os.mkdir(paths.CONFIG_DIR)
        created_dir = True
    os.symlink(victim, planted)
    try:
        before = hostsnap.snapshot(SNAP_ROOTS)
        with pytest.raises(InputError, match="symlink"):
            make_plan(double_copy)
        assert victim.read_text() == "do not touch\n"
        assert_same(before)
    finally:
        os.unlink(planted)
        if created_dir:
            os.rmdir(paths.CONFIG_DIR)


def test_atomic_write_never_follows_a_symlink_planted_after_preflight(tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("original")
    link = tmp_path / "config.yaml"
    link.symlink_to(victim)
    with pytest.raises(fsutil.SymlinkRefused):
        fsutil.atomic_write(str(link), b"evil", 0o644)
    assert victim.read_text() == "original" and link.is_symlink()


@pytest.mark.parametrize("shell, home, uid, reason", [
    ("/bin/bash", "/nonexistent", None, "login shell"),
    ("/usr/sbin/nologin", "/home/dfhatest", None, "home under /home"),
    ("/usr/sbin/nologin", "/nonexistent", 0, "uid 0"),
])
def test_unsafe_existing_user_is_refused(clean_host, double_copy, shell, home, uid, reason) -> None:
    argv = ["useradd", "--system", "--no-create-home", "--home-dir", home, "--shell", shell]
    if uid == 0:
        argv += ["--non-unique", "--uid", "0"]
    subprocess.run(argv + [USER], check=True)
    before = hostsnap.snapshot(SNAP_ROOTS)
    with pytest.raises(InputError, match=reason):
        make_plan(double_copy)
    assert_same(before)


def test_reused_user_is_left_alone(clean_host, double_copy) -> None:
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", USER], check=True)
    with_user = hostsnap.snapshot(SNAP_ROOTS)
    result = engine.install(make_plan(double_copy), {}, {})
    assert [s.status for s in result.steps][:2] == ["unchanged", "unchanged"]
    engine.uninstall()
    assert pwd.getpwnam(USER)  # not created by us, so not removed
    assert_same(with_user)


def test_binary_checks(tmp_path, agent_double) -> None:
    host = facts.gather()
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(InputError, match="not an ELF"):
        planner.check_binary(str(script), host)
    link = tmp_path / "link"
    link.symlink_to(agent_double)
    with pytest.raises(InputError, match="symlink"):
        planner.check_binary(str(link), host)
    with pytest.raises(InputError, match="does not exist"):
        planner.check_binary(str(tmp_path / "missing"), host)
    with pytest.raises(InputError, match="another architecture"):
        planner.check_binary(str(agent_double), host._replace(machine="aarch64"))
    planner.check_binary(str(agent_double), host)


@pytest.mark.parametrize("fstype, options, reason", [
    ("tmpfs", "nosuid", "mounted nosuid"),
    ("ramfs", "", "does not keep security.capability"),
])
def test_filesystems_that_lose_file_caps_are_refused(tmp_path, fstype, options, reason) -> None:
    point = tmp_path / "mnt"
    point.mkdir()
    argv = ["mount", "-t", fstype] + (["-o", options] if options else []) + ["none", str(point)]
    subprocess.run(argv, check=True)
    try:
        assert reason in (facts.host.fs_keeps_file_caps(str(point)) or "")
    finally:
        subprocess.run(["umount", str(point)], check=True)
    assert facts.host.fs_keeps_file_caps(str(tmp_path)) is None


def test_uninstall_keep_logs_leaves_only_the_logs(clean_host, double_copy) -> None:
    engine.install(make_plan(double_copy), {}, {})
    Path(paths.LOG_FILE).write_text("agent log line\n")
    # What the agent leaves: its log, a rotated one in a subdir, a link, all its user's.
    account = pwd.getpwnam(USER)
    os.mkdir(paths.LOG_DIR + "/old", 0o750)
    Path(paths.LOG_DIR + "/old/deepflow-agent.log.1").write_text("older\n")
    os.symlink("/etc/passwd", paths.LOG_DIR + "/link")  # must not be followed
    for p in (paths.LOG_FILE, paths.LOG_DIR + "/old", paths.LOG_DIR + "/old/deepflow-agent.log.1", paths.LOG_DIR + "/link"):
        os.lchown(p, account.pw_uid, account.pw_gid)
    os.chmod(paths.LOG_FILE, 0o640)
    passwd = os.stat("/etc/passwd")
    modes = {p: stat.S_IMODE(os.lstat(p).st_mode) for p in (paths.LOG_DIR, paths.LOG_FILE, paths.LOG_DIR + "/old")}
    out = engine.uninstall(keep_logs=True)
    assert [s.status for s in out.steps if s.id == f"dir:{paths.LOG_DIR}"] == ["kept"]
    assert Path(paths.LOG_FILE).read_text() == "agent log line\n"
    # The uid is free for the next system user: nothing kept may still be owned by it.
    owners = {os.path.join(d, n): (os.lstat(os.path.join(d, n)).st_uid, os.lstat(os.path.join(d, n)).st_gid)
              for d, dirs, files in os.walk(paths.LOG_DIR) for n in [".", *dirs, *files]}
    assert len(owners) == 6 and set(owners.values()) == {(0, 0)}, owners
    assert {p: stat.S_IMODE(os.lstat(p).st_mode) for p in modes} == modes
    after = os.stat("/etc/passwd")
    assert (after.st_uid, after.st_gid, after.st_mode) == (passwd.st_uid, passwd.st_gid, passwd.st_mode)
    assert f"kept {paths.LOG_DIR}: what {USER}:{USER} owned there now belongs to root:root (modes unchanged)" in out.notes[0]
    assert not os.path.exists(paths.MANIFEST) and not os.path.exists(BINARY) and not os.path.exists(paths.AGENT_UPGRADE_DIR)
    with pytest.raises(KeyError):
        pwd.getpwnam(USER)
    shutil.rmtree(paths.LOG_DIR)
    assert_same(clean_host)


def _driver(*args: str, fault: str = "", trace: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "HOSTAGENT_FAULT_AT": fault, "HOSTAGENT_FAULT_TRACE": trace}
    return subprocess.run([sys.executable, "-m", "tests.integration.fault_driver", *args], env=env,
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=120)


def test_sigkill_at_every_point_is_recovered(clean_host, double_copy, tmp_path) -> None:
    """SIGKILL at each step boundary and inside each step, of install and of uninstall: after one
    recovery run the host equals its snapshot; after a kill in install, install also completes."""
    trace = tmp_path / "points"
    assert _driver("install", double_copy, trace=str(trace)).returncode == 0
    assert _driver("uninstall", trace=str(trace)).returncode == 0
    assert_same(clean_host)
    points = trace.read_text().split()
    install_points = points[:points.index(next(p for p in points if p.startswith("revert-")))]
    uninstall_points = points[len(install_points):]
    assert len(install_points) >= 4 * 8 and len(uninstall_points) >= 2 * 8, points
    tried = recovered = 0
    for point in install_points:
        tried += 1
        killed = _driver("install", double_copy, fault=point)
        assert killed.returncode == -9, (point, killed.stderr)
        again = _driver("install", double_copy)  # the next install completes...
        assert again.returncode == 0, (point, again.stderr)
        assert _driver("uninstall").returncode == 0, point  # ...and uninstall brings the host back
        assert_same(clean_host)
        killed = _driver("install", double_copy, fault=point)
        assert _driver("uninstall").returncode == 0, point  # one recovery run straight after the kill
        assert_same(clean_host)
        recovered += 1
    for point in uninstall_points:
        tried += 1
        assert _driver("install", double_copy).returncode == 0
        killed = _driver("uninstall", fault=point)
        assert killed.returncode == -9, (point, killed.stderr)
        assert _driver("uninstall").returncode == 0, point
        assert_same(clean_host)
        recovered += 1
    print(f"fault injection: {tried} SIGKILL points tried, {recovered} recovered")
    assert tried == recovered


@pytest.mark.parametrize("user, message", [
    ("disk", "group disk already exists"),  # a privileged group would become the agent user's own
    ("nobody", "shared primary group"),
])
def test_privileged_or_shared_groups_are_refused(clean_host, double_copy, user, message) -> None:
    with pytest.raises(InputError, match=message):
        make_plan(double_copy, user=user)
    assert_same(clean_host)


def test_the_lock_is_root_only_and_names_its_holder(clean_host) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "from hostagent import manifest; import time\n"
                               "with manifest.locked():\n    print('held', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout and holder.stdout.readline() == "held\n"
        st = os.lstat(paths.RUN_DIR)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
        with pytest.raises(InputError, match=f"pid {holder.pid}"), manifest.locked(timeout=0.2):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_stale_temp_files_of_a_killed_run_are_removed(clean_host, double_copy) -> None:
    stale = f"/usr/sbin/.deepflow-agent{fsutil.TEMP_MARK}0123456789abcdef"
    Path(stale).write_bytes(b"a killed run's copy of the agent")
    keep = "/usr/sbin/.deepflow-agent.not-ours"
    Path(keep).write_text("x")
    try:
        with manifest.locked():
            pass
        assert not os.path.exists(stale) and os.path.exists(keep)
    finally:
        for p in (stale, keep):
            if os.path.exists(p):
                os.unlink(p)


def test_upgrade_re_runs_leak_no_backup_and_the_state_dir_goes(clean_host, double_copy, tmp_path) -> None:
    packaged = b"\x7fELF packaged agent\n"
    fsutil.atomic_write(paths.AGENT_BINARY, packaged, 0o755)
    before = hostsnap.snapshot(SNAP_ROOTS)
    try:
        engine.install(make_plan(double_copy, remote_upgrade="deny"), {}, {})
        for build in (b"build 2", b"build 3"):
            newer = tmp_path / "newer"
            newer.write_bytes(Path(double_copy).read_bytes() + build)
            engine.install(make_plan(str(newer), remote_upgrade="deny"), {}, {})
        assert len(os.listdir(paths.BACKUP_DIR)) == 1  # the packaged binary's, nothing of the re-runs
        engine.uninstall()
        assert Path(paths.AGENT_BINARY).read_bytes() == packaged and not os.path.exists(paths.STATE_DIR)
        assert_same(before)
    finally:
        _cleanup()
        if os.path.lexists(paths.AGENT_BINARY):
            os.unlink(paths.AGENT_BINARY)


def test_an_edited_config_is_kept_beside_on_uninstall(clean_host, double_copy) -> None:
    engine.install(make_plan(double_copy), {}, {})
    edited = b"controller-ips: [10.1.1.1]  # the admin's\n"
    fsutil.atomic_write(paths.CONFIG_FILE, edited, 0o640)
    out = engine.uninstall()
    saved = Path(paths.CONFIG_FILE + ".hostagent-save")
    try:
        assert saved.read_bytes() == edited and any("kept it as" in n for n in out.notes)
        assert any(f"left {paths.CONFIG_DIR} in place" in n for n in out.notes)
        assert not os.path.exists(paths.CONFIG_FILE) and not os.path.exists(paths.MANIFEST)
    finally:
        saved.unlink()
        os.rmdir(paths.CONFIG_DIR)
    assert_same(clean_host)


def test_limits_of_a_pre_existing_cgroup_dir_are_restored(clean_host, double_copy) -> None:
    cpu = "/sys/fs/cgroup/cpu/deepflow-agent"
    os.mkdir(cpu)
    Path(f"{cpu}/cpu.cfs_quota_us").write_text("50000")
    try:
        engine.install(make_plan(double_copy), {}, {})
        # Not ours: install leaves its limits alone; the agent then writes its group's (here: by hand).
        assert Path(f"{cpu}/cpu.cfs_quota_us").read_text().strip() == "50000"
        Path(f"{cpu}/cpu.cfs_quota_us").write_text("25000")
        engine.uninstall()
        assert Path(f"{cpu}/cpu.cfs_quota_us").read_text().strip() == "50000"
    finally:
        _cleanup()
        if os.path.isdir(cpu):
            os.rmdir(cpu)


def test_uninstall_force_reverts_what_a_damaged_manifest_proves(clean_host, double_copy) -> None:
    engine.install(make_plan(double_copy, remote_upgrade="deny"), {}, {})
    data = json.loads(Path(paths.MANIFEST).read_text())
    data["steps"][2]["kind"] = "frobnicate"  # the binary's entry can no longer be rebuilt
    Path(paths.MANIFEST).write_text(json.dumps(data))
    with pytest.raises(InputError, match="--force"):
        engine.uninstall()
    out = engine.uninstall(force=True)
    assert any(n.startswith("binary:/usr/sbin/deepflow-agent: not reverted") for n in out.notes)
    assert not os.path.exists(paths.MANIFEST)
    os.unlink(paths.AGENT_BINARY)  # the one change it could not prove, removed by hand as the note says
    assert_same(clean_host)


def test_uninstall_force_keeps_the_backup_of_a_binary_it_cannot_prove(clean_host, double_copy, tmp_path, monkeypatch) -> None:
    """The packaged binary install replaced is kept (and named) while its entry cannot be reverted, also
    in the manifest an uninstall stopped half-way rewrites; the admin restores it by hand and finishes."""
    from hostagent import steps

    packaged = b"\x7fELF packaged agent, the only copy\n"
    fsutil.atomic_write(paths.AGENT_BINARY, packaged, 0o755)
    packaged_mtime = os.stat(paths.AGENT_BINARY).st_mtime_ns
    before = hostsnap.snapshot(SNAP_ROOTS)
    marker = Marker(path=str(tmp_path / "marker"))
    monkeypatch.setitem(steps.KINDS, Marker.kind, Marker)  # also for the cleanup's uninstall
    try:
        engine.install([*make_plan(double_copy, remote_upgrade="deny"), marker], {}, {})
        data = json.loads(Path(paths.MANIFEST).read_text())
        (entry,) = [e for e in data["steps"] if e["kind"] == "binary"]
        backup = entry["record"]["backup"]
        entry["kind"] = "frobnicate"  # the binary's entry can no longer be rebuilt
        Path(paths.MANIFEST).write_text(json.dumps(data))
        Path(marker.path + ".fail").write_text("")
        with pytest.raises(StepError, match="uninstall stopped at test-marker"):
            engine.uninstall(force=True)  # stops at the first revert, the marker's
        kept = json.loads(Path(paths.MANIFEST).read_text())
        assert [u["id"] for u in kept.get("unproven", [])] == [f"binary:{paths.AGENT_BINARY}"]
        assert Path(backup).read_bytes() == packaged
        os.unlink(marker.path + ".fail")
        out = engine.uninstall(force=True)
        (note,) = [n for n in out.notes if n.startswith(f"binary:{paths.AGENT_BINARY}: not reverted")]
        assert f"what it replaced is kept at {backup}: restore it from there" in note
        assert Path(backup).read_bytes() == packaged  # not collected with the others
        assert [e["id"] for e in json.loads(Path(paths.MANIFEST).read_text())["unproven"]] == [entry["id"]]
        with pytest.raises(InputError, match="could not prove .binary:/usr/sbin/deepflow-agent.*--force"):
            engine.install(make_plan(double_copy, remote_upgrade="deny"), {}, {})
        again = engine.uninstall(force=True)  # says it again, keeps it again
        assert note in again.notes and Path(backup).read_bytes() == packaged
        fsutil.atomic_write(paths.AGENT_BINARY, Path(backup).read_bytes(), 0o755)  # as the note says
        os.utime(paths.AGENT_BINARY, ns=(packaged_mtime, packaged_mtime))
        os.unlink(backup)
        engine.uninstall(force=True)
        assert not os.path.exists(paths.STATE_DIR)
        assert_same(before)
    finally:
        Path(marker.path + ".fail").unlink(missing_ok=True)
        if os.path.exists(paths.MANIFEST):
            engine.uninstall(force=True)  # what a damaged manifest still proves
        _cleanup()
        shutil.rmtree(paths.STATE_DIR, ignore_errors=True)  # kept unproven entries (absent before the test)
        if os.path.lexists(paths.AGENT_BINARY):
            os.unlink(paths.AGENT_BINARY)


def test_uninstall_force_leaves_an_unreadable_manifest_and_every_backup(clean_host, double_copy) -> None:
    fsutil.atomic_write(paths.AGENT_BINARY, b"\x7fELF packaged\n", 0o755)
    try:
        engine.install(make_plan(double_copy, remote_upgrade="deny"), {}, {})
        (backup,) = os.listdir(paths.BACKUP_DIR)
        damaged = Path(paths.MANIFEST).read_bytes()[:100]
        Path(paths.MANIFEST).write_bytes(damaged)
        out = engine.uninstall(force=True)
        assert out.notes[0].startswith(f"{paths.MANIFEST} is unreadable: no step can be proven; left it and every "
                                       f"backup in {paths.BACKUP_DIR} in place")
        assert Path(paths.MANIFEST).read_bytes() == damaged and os.listdir(paths.BACKUP_DIR) == [backup]
    finally:
        Path(paths.MANIFEST).unlink(missing_ok=True)
        _cleanup()
        for p in (paths.CONFIG_DIR, paths.LOG_DIR, paths.STATE_DIR):
            shutil.rmtree(p, ignore_errors=True)
        Path(paths.AGENT_BINARY).unlink(missing_ok=True)


@dataclass
class Marker(Step):
    """A test step: a file; its revert fails while <path>.fail exists; after_revert leaves <path>.after."""

    kind = "test-marker"
    path: str

    def check(self) -> bool:
        return os.path.exists(self.path)

    def snapshot(self) -> dict:
        return {}

    def apply(self, record: dict) -> None:
        Path(self.path).write_text("x")

    def revert(self, record: dict) -> None:
        if os.path.exists(self.path + ".fail"):
            raise StepError("injected revert failure")
        if os.path.exists(self.path):
            os.unlink(self.path)

    def after_revert(self, record: dict) -> None:
        Path(self.path + ".after").write_text("ran")


def test_a_stopped_uninstall_still_runs_after_revert_when_re_run(clean_host, tmp_path, monkeypatch) -> None:
    from hostagent import steps

    monkeypatch.setitem(steps.KINDS, Marker.kind, Marker)
    first, second = Marker(path=str(tmp_path / "first")), Marker(path=str(tmp_path / "second"))
    engine.install([first, second], {}, {})
    Path(first.path + ".fail").write_text("")
    with pytest.raises(StepError, match="uninstall stopped at test-marker"):
        engine.uninstall()  # reverts `second`, then stops at `first`
    assert not os.path.exists(second.path + ".after")
    os.unlink(first.path + ".fail")
    engine.uninstall()
    assert Path(second.path + ".after").read_text() == "ran" and Path(first.path + ".after").read_text() == "ran"
    assert not os.path.exists(paths.MANIFEST)
