"""hostagent's unit as a drop-in over DeepFlow's packaged unit: the renderer, the step on a temp root
(tests/unit/fakehost.py), preflight. The merged unit on real systemd: tests/system/test_nspawn_packages.py."""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from hostagent import planner
from hostagent.errors import InputError
from hostagent.facts.cgroups import CgroupLayout
from hostagent.render import dropin, unit
from hostagent.steps import from_dict
from hostagent.steps.dropin import UnitDropIn
from hostagent.steps.files import Directory
from hostagent.steps.service import Service
from tests.fixtures.deepflow_packages import UNIT as DEEPFLOW_UNIT
from tests.unit.fakehost import Unit
from tests.unit.test_engine_steps import agent_plan, apply, tree  # noqa: F401 (a fixture)

OURS = unit.render("deepflow", ("cap_net_raw", "cap_sys_admin"), 1000, 768, CgroupLayout("v2", None, None, ()))


def test_the_drop_in_resets_what_deepflows_unit_sets_then_carries_hostagents_unit() -> None:
    text = dropin.render(OURS, DEEPFLOW_UNIT, {"LimitCORE": "0:infinity"})
    service = text.split("[Service]\n", 1)[1]
    resets = service.split(dropin.RESETS_END, 1)[0].splitlines()[1:]
    # ExecStart and Environment add up; LimitCORE is not hostagent's (its default back); Delegate, Restart,
    # RestartSec, LimitNOFILE are hostagent's own later lines.
    assert resets == ["Environment=", "ExecStart=", "LimitCORE=0:infinity"]
    head, rest = text.split("[Service]\n", 1)
    assert head.split("\n", 1)[1] + "[Service]\n" + rest.split(dropin.RESETS_END, 1)[1] == OURS.split("\n", 1)[1]
    assert dropin.uncovered(text, DEEPFLOW_UNIT) == []


def test_a_changed_package_unit_is_found_uncovered() -> None:
    text = dropin.render(OURS, DEEPFLOW_UNIT)
    newer = DEEPFLOW_UNIT.replace("[Service]\n", "[Service]\nUser=root\nExecStartPre=/bin/true\nLimitCORE=2G\n")
    # User= is hostagent's? no: it has none, so the drop-in never mentions it; ExecStartPre= is hostagent's
    # but not reset; LimitCORE= is reset only by a value.
    assert dropin.uncovered(text, newer) == ["User", "ExecStartPre", "LimitCORE"]
    assert dropin.uncovered(dropin.render(OURS, newer, {"LimitCORE": "0:infinity"}), newer) == []


def test_package_unit_is_found_unless_it_is_hostagents(tmp_path: Path) -> None:
    def at(p: str) -> str:
        return str(tmp_path) + p

    assert dropin.package_unit("deepflow-agent.service", at) is None
    (tmp_path / "lib/systemd/system").mkdir(parents=True)
    (tmp_path / "lib/systemd/system/deepflow-agent.service").write_text(DEEPFLOW_UNIT)
    assert dropin.package_unit("deepflow-agent.service", at) == "/lib/systemd/system/deepflow-agent.service"
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/deepflow-agent.service").write_text(OURS)
    assert dropin.package_unit("deepflow-agent.service", at) is None  # hostagent's full unit shadows it


def test_service_steps_over_a_packaged_unit_leave_its_file_and_revert_exactly(fake) -> None:
    root, runner = fake
    packaged = root / "etc/systemd/system/deepflow-agent.service"
    packaged.write_text(DEEPFLOW_UNIT)
    before = tree(root)
    steps = planner.service_steps("systemd", "root", ("cap_net_raw",), 1000, 768, CgroupLayout("v2", None, None, ()))
    assert [type(s) for s in steps] == [Directory, UnitDropIn, Service]
    directory, conf = steps[0], steps[1]
    assert conf.path == str(root / "etc/systemd/system/deepflow-agent.service.d/hostagent.conf")
    records = [apply(directory), apply(conf)]
    assert conf.check() and conf.drift() == [] and packaged.read_text() == DEEPFLOW_UNIT
    assert ["systemctl", "daemon-reload"] in runner.calls
    assert isinstance(from_dict(conf.to_dict()), UnitDropIn)  # the manifest rebuilds it

    # An upgrade of the package replaces its unit: a note, not drift, while the drop-in covers it.
    packaged.write_text(DEEPFLOW_UNIT.replace("deepflow-agent.service\n", "deepflow-agent 1.1\n"))
    assert conf.drift() == [] and "replaced" in conf.notes(records[1])[0]
    packaged.write_text(DEEPFLOW_UNIT.replace("[Service]\n", "[Service]\nUser=root\n"))
    assert "now sets User=" in conf.drift()[0]
    packaged.unlink()
    assert "package removed?" in conf.drift()[0]
    packaged.write_text(DEEPFLOW_UNIT)

    conf.revert(records[1])
    directory.revert(records[0])
    assert tree(root) == before


def test_preflight_accepts_hostagents_own_drop_in_only(fake) -> None:
    root, _ = fake
    d = root / "etc/systemd/system/deepflow-agent.service.d"
    d.mkdir()
    (d / "hostagent.conf").write_text("[Service]\n")
    planner.check_service_paths("systemd", "deepflow-agent")
    (d / "override.conf").write_text("[Service]\nUser=root\n")
    with pytest.raises(InputError, match=r"override\.conf"):
        planner.check_service_paths("systemd", "deepflow-agent")
    os.unlink(d / "override.conf")


def test_a_package_upgrade_of_the_binary_is_a_note_and_uninstall_leaves_the_packages_files(fake, agent_plan) -> None:  # noqa: F811
    from hostagent import engine
    from hostagent.status import status

    root, runner = fake
    (root / "etc/systemd/system/deepflow-agent.service").write_text(DEEPFLOW_UNIT)
    binary = root / "usr/sbin/deepflow-agent"
    shutil.copy2("/bin/sleep", binary)
    os.chmod(binary, 0o755)
    runner.units["deepflow-agent.service"] = Unit(enabled=True)  # the package's service, enabled
    runner.own("/usr/sbin/deepflow-agent", "deepflow-agent")  # auto: the package's binary stays the one that runs
    before = tree(root)
    engine.install(agent_plan(agent_binary=str(binary)), {"user": "deepflow"}, {})
    assert (root / "etc/systemd/system/deepflow-agent.service.d/hostagent.conf").exists()
    assert status()["drift"] == [] and status()["notes"] == []

    # dpkg -i of the next release: a new file, the package's owner and mode, no capabilities.
    os.unlink(binary)
    shutil.copy2("/bin/sleep", binary)
    os.chmod(binary, 0o755)
    os.utime(binary, (1706745600, 1706745600))
    found = status()
    assert found["drift"] == [], found["drift"]
    assert any("package (deepflow-agent) replaced /usr/sbin/deepflow-agent since install" in n for n in found["notes"]), found["notes"]

    engine.uninstall()
    after = tree(root)
    assert after.pop("usr/sbin/deepflow-agent")[:3] == before.pop("usr/sbin/deepflow-agent")[:3]  # type, 0755, owner
    assert after == before
    assert runner.units["deepflow-agent.service"].enabled


def test_doctor_flags_an_agent_not_on_hostagents_config() -> None:
    import subprocess

    import psutil

    from hostagent.doctor import _config_problem
    from hostagent.host import paths

    sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
    procs = [subprocess.Popen(argv) for argv in (sleep, sleep + ["-f", paths.CONFIG_FILE])]
    try:
        packaged, ours = (psutil.Process(p.pid) for p in procs)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (packaged.cmdline()[-1:] == sleep[-1:] and ours.cmdline()[-1:] == [paths.CONFIG_FILE]):
            time.sleep(0.05)  # exec'd (a loaded machine)
        problems = _config_problem(packaged, paths.CONFIG_FILE)
        assert problems and "not on hostagent's config" in problems[0], (problems, packaged.cmdline())
        assert ours.cmdline()[-2:] == ["-f", paths.CONFIG_FILE] and _config_problem(ours, paths.CONFIG_FILE) == []
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.parametrize("package_upgraded", [False, True])
def test_a_full_unit_an_earlier_hostagent_wrote_over_the_packages_hands_over_to_the_drop_in(
        fake, agent_plan, monkeypatch, package_upgraded) -> None:  # noqa: F811
    """An earlier hostagent wrote its full unit over the .deb's (its record keeps the package's): a
    re-install puts the package's unit back (or leaves the one a package upgrade put back since), writes
    the drop-in, records it instead; uninstall then leaves the package's unit as the package has it."""
    from hostagent import engine, manifest
    from hostagent.status import status

    root, runner = fake
    unit_path = root / "etc/systemd/system/deepflow-agent.service"
    unit_path.write_text(DEEPFLOW_UNIT)
    binary = root / "usr/sbin/deepflow-agent"
    shutil.copy2("/bin/sleep", binary)
    runner.units["deepflow-agent.service"] = Unit(enabled=True)
    runner.own("/usr/sbin/deepflow-agent", "deepflow-agent")
    with monkeypatch.context() as m:
        m.setattr(dropin, "package_unit", lambda *a: None)  # what an earlier hostagent did: its full unit there
        engine.install(agent_plan(agent_binary=str(binary)), {"user": "deepflow"}, {})
    assert unit_path.read_text().startswith(dropin.MARK)
    package_now = DEEPFLOW_UNIT
    if package_upgraded:  # dpkg -i of the next release put the package's (new) root unit back
        package_now = DEEPFLOW_UNIT + "# 1.1\n"
        unit_path.write_text(package_now)
    before = tree(root)

    dry = engine.install(agent_plan(agent_binary=str(binary)), {"user": "deepflow"}, {}, dry_run=True)
    assert (dry.steps[0].id, dry.steps[0].status) == (f"service-definition:{unit_path}", "planned")
    assert tree(root) == before
    out = engine.install(agent_plan(agent_binary=str(binary)), {"user": "deepflow"}, {})
    assert (out.steps[0].id, out.steps[0].status) == (f"service-definition:{unit_path}", "reverted")
    assert unit_path.read_text() == package_now  # the package's, byte for byte
    conf = root / "etc/systemd/system/deepflow-agent.service.d/hostagent.conf"
    assert conf.read_text().startswith(dropin.MARK)
    ids = [e["id"] for e in manifest.load().entries]
    assert f"unit-drop-in:{conf}" in ids and not any(i.startswith("service-definition:") for i in ids), ids
    assert status()["drift"] == []
    assert not engine.install(agent_plan(agent_binary=str(binary)), {"user": "deepflow"}, {}).changed

    engine.uninstall()
    assert unit_path.read_text() == package_now and not conf.parent.exists()
    assert runner.units["deepflow-agent.service"].enabled
