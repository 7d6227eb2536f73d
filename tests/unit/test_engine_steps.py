"""The engine and every host step, without root, through the host seam: a temp root with real files,
modes, owners and xattrs, and a recording runner in place of the host's commands (tests/unit/fakehost.py).
The root tiers (tests/integration, tests/system) run the same code on real hosts."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from hostagent import caps, engine, manifest, planner
from hostagent.errors import InputError, RunFailed, StepError
from hostagent.facts import HostFacts
from hostagent.facts.cgroups import CgroupLayout
from hostagent.host import paths, using
from hostagent.options import build
from hostagent.steps.accounts import Group, User
from hostagent.steps.cgroup import AgentCgroups
from hostagent.steps.files import Binary, Directory, File, FileCaps, ServiceDefinition
from hostagent.steps.service import InittabLine, Service
from tests.unit.fakehost import BINARY, make_host

CAP_XATTR = "user.hostagent.test-capability"


@pytest.fixture(autouse=True)
def short_settle(monkeypatch):
    """A started service must keep running for SETTLE seconds; the fake manager's does by construction."""
    monkeypatch.setattr("hostagent.steps.service.SETTLE", 0.01)


def tree(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, owner, content digest and xattrs: a host snapshot."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = hashlib.sha256(Path(p).read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
            xattrs = tuple(sorted((a, os.getxattr(p, a, follow_symlinks=False)) for a in os.listxattr(p, follow_symlinks=False)))
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, digest, xattrs)
    return out


def apply(step):
    record = step.snapshot()
    step.apply(record)
    return record


# --- steps ----------------------------------------------------------------------------------


def test_group_and_user_are_created_and_only_ours_removed(fake) -> None:
    root, runner = fake
    group, user = Group(name="deepflow"), User(name="deepflow", group="deepflow")
    assert not group.check() and not user.check()
    g, u = apply(group), apply(user)
    assert group.check() and user.check() and g == u == {"created": True}
    assert runner.commands("useradd")[0][-1] == "deepflow" and "/bin/false" in runner.commands("useradd")[0]
    user.revert(u)
    group.revert(g)
    assert "deepflow" not in (root / "etc/passwd").read_text() + (root / "etc/group").read_text()
    # A user that was there before is left alone.
    runner._useradd(["--shell", "/bin/false", "admin"])
    kept = User(name="admin", group="root")
    kept.revert(kept.snapshot())
    assert "admin:" in (root / "etc/passwd").read_text() and not runner.commands("userdel")[1:]


def test_directory_created_then_removed_and_an_existing_one_restored(fake) -> None:
    root, _ = fake
    logs = Directory(path=str(root / "var/log/deepflow-agent"), mode=0o750, owner="root", group="root", purge=True)
    record = apply(logs)
    assert logs.check() and stat.S_IMODE(os.stat(logs.path).st_mode) == 0o750
    (Path(logs.path) / "agent.log").write_text("x")
    logs.revert(record)
    assert not os.path.exists(logs.path)

    existing = root / "etc/deepflow-agent"
    existing.mkdir(mode=0o700)
    conf = Directory(path=str(existing), mode=0o755, owner="root", group="root")
    record = apply(conf)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755
    conf.revert(record)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o700


def test_file_restored_byte_for_byte_and_an_edit_is_kept_aside(fake) -> None:
    root, _ = fake
    path = root / "etc/deepflow-agent.yaml"
    path.write_bytes(b"original: 1\n")
    os.chmod(path, 0o600)
    before = tree(root)
    f = File(path=str(path), content="controller-ips: [10.0.0.1]\n", mode=0o640, owner="root", group="root")
    assert "original" in f.diff()
    record = apply(f)
    assert f.check() and path.read_text() == f.content
    f.revert(record)
    assert tree(root) == before

    record = apply(f)
    path.write_text("edited by an admin\n")
    note = f.revert(record)
    assert "kept it as" in note and (root / "etc/deepflow-agent.yaml.hostagent-save").read_text() == "edited by an admin\n"
    assert path.read_bytes() == b"original: 1\n"


def test_a_service_definition_tells_its_manager(fake) -> None:
    root, runner = fake
    unit = ServiceDefinition(path=str(root / "etc/systemd/system/deepflow-agent.service"), content="[Unit]\n",
                             mode=0o644, owner="root", group="root")
    record = apply(unit)
    assert runner.commands("systemctl") == [["systemctl", "daemon-reload"]]
    unit.revert(record)
    assert not os.path.exists(unit.path) and len(runner.commands("systemctl")) == 2


def test_binary_copied_with_a_backup_of_the_original_and_put_back(fake) -> None:
    root, _ = fake
    source = root / "new-agent"
    source.write_bytes(b"\x7fELF new build")
    target = root / "usr/sbin/deepflow-agent"
    target.write_bytes(b"\x7fELF packaged")
    os.chmod(target, 0o755)
    os.setxattr(target, CAP_XATTR, caps.encode_file_caps(["cap_net_raw"]))
    before = tree(root)
    step = Binary(path=str(target), source=str(source), group="root")
    record = apply(step)
    assert step.check() and target.read_bytes() == b"\x7fELF new build"
    assert stat.S_IMODE(target.stat().st_mode) == 0o750 and Path(record["backup"]).read_bytes() == b"\x7fELF packaged"
    step.revert(record)
    after = {k: v for k, v in tree(root).items() if not k.startswith("var/lib/hostagent")}  # the engine's to clear
    assert after == before and not os.listdir(root / "var/lib/hostagent/backup")  # content, mode and caps back


def test_file_caps_set_read_back_and_reverted(fake) -> None:
    root, _ = fake
    binary = root / "usr/sbin/deepflow-agent"
    binary.write_bytes(b"\x7fELF")
    step = FileCaps(path=str(binary), caps=["cap_net_raw", "cap_net_admin"])
    assert "want" in step.drift()[0]
    record = apply(step)
    assert step.check() and caps.describe_file_caps(os.getxattr(binary, CAP_XATTR)) == "cap_net_admin,cap_net_raw=eip"
    step.revert(record)
    assert CAP_XATTR not in os.listxattr(binary)


def test_cgroup_dirs_owned_then_removed_and_existing_ones_restored(fake) -> None:
    root, runner = fake
    runner._groupadd(["deepflow"])
    runner._useradd(["--shell", "/bin/false", "deepflow"])
    cpu, mem = root / "sys/fs/cgroup/cpu", root / "sys/fs/cgroup/memory"
    (mem / "deepflow-agent").mkdir()
    (mem / "deepflow-agent/memory.limit_in_bytes").write_text("9223372036854771712\n")
    step = AgentCgroups(mode="v1", cpu_mount=str(cpu), memory_mount=str(mem), user="deepflow",
                        cpu_millicores=500, memory_mib=256)
    record = apply(step)
    # A plain dir has none of the files the kernel puts in a cgroup dir: only those are missing.
    assert (cpu / "deepflow-agent").is_dir() and {p.split()[0] for p in step.drift()} == {
        f"{cpu}/deepflow-agent/cpu.cfs_period_us", f"{cpu}/deepflow-agent/cpu.cfs_quota_us"}
    # An existing dir keeps the agent's limit: install's limits go only into dirs it creates.
    assert (mem / "deepflow-agent/memory.limit_in_bytes").read_text().strip() == "9223372036854771712"
    step.revert(record)
    assert not (cpu / "deepflow-agent").exists() and (mem / "deepflow-agent").is_dir()


def test_service_enabled_started_proven_and_put_back(fake) -> None:
    _, runner = fake
    service = Service(name="deepflow-agent", user="root", binary=BINARY)
    record = apply(service)
    assert record == {"was_enabled": False, "was_active": False}
    assert ["systemctl", "enable", "--quiet", "--no-reload", "deepflow-agent.service"] in runner.calls
    assert service.check() and service.drift() == []
    service.revert(record)
    assert runner.units["deepflow-agent.service"] == runner.units["deepflow-agent.service"].__class__()
    assert service.drift() == ["deepflow-agent is not enabled (disabled, inactive/dead, result success)",
                               "deepflow-agent is not running (disabled, inactive/dead, result success)"]
    # A service that ran before hostagent (a packaged agent) runs again after.
    service.after_revert({"was_enabled": True, "was_active": True})
    assert runner.units["deepflow-agent.service"].active


def test_service_that_does_not_run_as_the_user_fails_with_its_log(fake, monkeypatch) -> None:
    monkeypatch.setattr("hostagent.steps.service.START_TIMEOUT", 0.2)
    service = Service(name="deepflow-agent", user="root", binary="/usr/sbin/deepflow-agent")  # not what runs
    with pytest.raises(StepError, match=r"(?s)did not come up running as root .*journal line"):
        apply(service)


def test_inittab_line_added_off_and_removed_leaving_the_rest(tmp_path) -> None:
    root = tmp_path / "host"
    h, runner = make_host(root, init="sysvinit")
    inittab = root / "etc/inittab"
    inittab.write_text("id:2:initdefault:\n1:2345:respawn:/sbin/getty 38400 tty1\n")
    with using(h):
        step = InittabLine(path=str(inittab), tag="dfha", runlevels="2345", process="/usr/sbin/hostagent exec -- /a -f /b")
        record = apply(step)
        assert step.check() and "dfha:2345:off:/usr/sbin/hostagent exec -- /a -f /b\n" in inittab.read_text()
        assert runner.commands("telinit") == [["telinit", "q"]]
        h.services.enable("deepflow-agent")  # the service step turns it on
        assert h.services.entry("deepflow-agent").action == "respawn"
        with open(inittab, "a") as f:
            f.write("2:23:respawn:/sbin/getty 38400 tty2\n")  # an admin's edit after install stays
        step.revert(record)
    assert inittab.read_text() == "id:2:initdefault:\n1:2345:respawn:/sbin/getty 38400 tty1\n2:23:respawn:/sbin/getty 38400 tty2\n"


# --- the engine -----------------------------------------------------------------------------


@pytest.fixture
def agent_plan(fake):
    """The planner's own plan for this temp host (systemd), with a real program as the agent binary:
    the fake service manager runs the installed copy for real, as this user."""
    root, runner = fake
    source = root.parent / "agent"
    shutil.copy2("/bin/sleep", source)
    for controller, files in (("cpu", ("cgroup.procs", "tasks", "cpu.cfs_period_us", "cpu.cfs_quota_us")),
                              ("memory", ("cgroup.procs", "tasks", "memory.limit_in_bytes"))):
        # The agent's cgroup dirs as a boot left them (cgroupfs makes these files; a temp dir cannot).
        d = root / "sys/fs/cgroup" / controller / "deepflow-agent"
        d.mkdir()
        for name in files:
            (d / name).write_text("")

    def make(**kw):
        opts = build({"controller_ips": ["10.0.0.1"], "agent_binary": str(source), "user": "deepflow", **kw})
        layout = CgroupLayout("v1", str(root / "sys/fs/cgroup/cpu"), str(root / "sys/fs/cgroup/memory"))
        facts = HostFacts(is_root=True, init="systemd", systemd_version=252, cgroup=layout, kernel=(6, 1),
                          kernel_release="6.1.0", machine="x86_64", selinux="disabled", ambient_caps=True)
        upgrade, why = planner.remote_upgrade_mode(opts)  # auto, as install resolves it in preflight
        resolved = planner.Resolved(caps=caps.resolve(opts.caps, (6, 1)), cluster_id=None, agent_group_id=None,
                                    group="deepflow", remote_upgrade=upgrade, remote_upgrade_why=why)
        runner.exec_for["deepflow-agent.service"] = [str(root) + resolved.binary, "600"]
        return planner.plan(opts, facts, resolved)

    return make


def test_install_then_uninstall_leaves_the_host_as_before(fake, agent_plan) -> None:
    root, runner = fake
    before = tree(root)
    outcome = engine.install(agent_plan(), {"user": "deepflow"}, {})
    # The cgroup dirs are already the user's: on this host every account is the tester.
    assert [(s.id.split(":")[0], s.status) for s in outcome.steps] == [
        ("group", "applied"), ("user", "applied"), ("dir", "applied"), ("binary", "applied"), ("dir", "applied"), ("dir", "applied"),
        ("file", "applied"), ("cgroups", "unchanged"), ("caps", "applied"), ("service-definition", "applied"),
        ("service", "applied")]
    assert (root / "etc/systemd/system/deepflow-agent.service").read_text().startswith("# Installed by hostagent")
    assert json.loads((root / "var/lib/hostagent/manifest.json").read_text())["version"] == manifest.VERSION
    again = engine.install(agent_plan(), {"user": "deepflow"}, {})
    assert not again.changed
    engine.uninstall()
    assert tree(root) == before


def test_each_change_is_recorded_before_it_is_made(fake, agent_plan, monkeypatch) -> None:
    root, _ = fake
    seen = {}
    original = Directory.apply

    def spy(self, record):
        data = json.loads((root / "var/lib/hostagent/manifest.json").read_text())
        seen[self.id] = next(e["state"] for e in data["steps"] if e["id"] == self.id)
        return original(self, record)

    monkeypatch.setattr(Directory, "apply", spy)
    engine.install(agent_plan(), {}, {})
    assert seen and set(seen.values()) == {"applying"}


def test_a_failure_rolls_back_every_change(fake, agent_plan) -> None:
    root, runner = fake
    before = tree(root)
    runner.failing["systemctl enable"] = "Failed to enable unit"
    with pytest.raises(RunFailed, match="Failed to enable unit") as failed:
        engine.install(agent_plan(), {}, {})
    statuses = [s.status for s in failed.value.outcome.steps]
    assert statuses[10] == "failed" and statuses[11:] == ["rolled-back"] * 10  # the failing step's own too
    assert tree(root) == before  # manifest and state dir gone too


def test_a_second_install_with_other_settings_is_refused_until_uninstall(fake, agent_plan) -> None:
    engine.install(agent_plan(), {}, {})
    with pytest.raises(InputError, match="installed with different settings .*caps"):
        engine.install([s for s in agent_plan() if s.kind != "caps"], {}, {})


def test_forced_uninstall_reverts_what_it_can_prove_and_names_the_rest(fake, agent_plan) -> None:
    root, _ = fake
    engine.install(agent_plan(), {}, {})
    path = root / "var/lib/hostagent/manifest.json"
    data = json.loads(path.read_text())
    damaged = next(e for e in data["steps"] if e["kind"] == "file")
    damaged["kind"] = "no-such-kind"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="unknown kind"):
        engine.uninstall()
    outcome = engine.uninstall(force=True)
    assert any(damaged["id"] in note for note in outcome.notes)
    assert not (root / "usr/sbin/deepflow-agent").exists() and not path.exists()
    assert (root / "etc/deepflow-agent/deepflow-agent.yaml").exists()  # unproven: left for the admin


def test_a_v2_manifest_migrates(fake) -> None:
    root, _ = fake
    v2 = {"version": 2, "steps": [
        {"id": "file:/etc/systemd/system/deepflow-agent.service", "kind": "file", "record": {"before": None},
         "params": {"path": "/etc/systemd/system/deepflow-agent.service", "content": "x", "mode": 420,
                    "owner": "root", "group": "root", "reload_systemd": True}},
        {"id": "service:deepflow-agent.service", "kind": "service", "record": {},
         "params": {"name": "deepflow-agent.service", "user": "deepflow", "binary": "/usr/sbin/deepflow-agent"}}]}
    (root / "var/lib/hostagent").mkdir()
    (root / "var/lib/hostagent/manifest.json").write_text(json.dumps(v2))
    found = manifest.load(paths.MANIFEST)
    assert [s.id for s, _ in found.steps()] == ["service-definition:/etc/systemd/system/deepflow-agent.service",
                                                  "service:deepflow-agent"]
    assert isinstance(found.steps()[0][0], ServiceDefinition)



def test_stopping_a_service_whose_definition_is_gone_is_a_no_op(tmp_path) -> None:
    """An uninstall finishing a cut-short one, or after an admin removed the line or the script."""
    for init in ("sysvinit", "openrc"):
        root = tmp_path / init
        h, runner = make_host(root, init=init)
        (root / "etc/inittab").write_text("id:2:initdefault:\n")
        with using(h):
            h.services.stop("deepflow-agent")
            h.services.disable("deepflow-agent")
        assert runner.calls == [] and (root / "etc/inittab").read_text() == "id:2:initdefault:\n"
