"""doctor --prometheus and install --metrics-textfile without root: doctor's own report of a fake host
(tests/unit/fakehost.py, with a real process as the agent) rendered as textfile metrics, checked by
promtool; the atomic, symlink-refusing write; the timer's steps recorded and reverted; bad DIRs refused."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hostagent import doctor, engine, metrics, planner
from hostagent.errors import InputError, SymlinkRefused
from hostagent.options import build
from tests import promtool
from tests.unit.test_engine_steps import agent_plan, short_settle, tree  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[str, float]:
    """name{labels} → value, for the lines that are samples."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def value(text: str, name: str) -> float:
    found = [v for k, v in samples(text).items() if re.fullmatch(rf"{name}(\{{.*\}})?", k)]
    assert len(found) == 1, (name, text)
    return found[0]


@pytest.fixture
def textfile_dir(fake) -> Path:
    root, _ = fake
    d = root / "var/lib/node_exporter/textfile"
    d.mkdir(parents=True)
    return d


def test_install_plans_the_timer_doctor_reports_and_uninstall_reverts_it_all(fake, agent_plan, textfile_dir,  # noqa: F811
                                                                              monkeypatch):
    root, runner = fake
    # This host's agent only: other tests on the machine run copies named deepflow-agent too.
    everywhere = doctor.agent_processes
    monkeypatch.setattr(doctor, "agent_processes", lambda: [p for p in everywhere() if p.info["exe"].startswith(str(root))])
    before = tree(root)
    plan = agent_plan(metrics_textfile="/var/lib/node_exporter/textfile")
    outcome = engine.install(plan, {"user": "deepflow"}, {})
    assert [s.id for s in outcome.steps][-4:] == [
        f"service-definition:{root}/etc/systemd/system/hostagent-metrics.service",
        f"service-definition:{root}/etc/systemd/system/hostagent-metrics.timer",
        f"textfile:{textfile_dir}/hostagent.prom", "timer:hostagent-metrics.timer"]
    service = (root / "etc/systemd/system/hostagent-metrics.service").read_text()
    assert "--prometheus /var/lib/node_exporter/textfile/hostagent.prom" in service
    assert "OnUnitActiveSec=60s" in (root / "etc/systemd/system/hostagent-metrics.timer").read_text()
    assert ["systemctl", "restart", "hostagent-metrics.timer"] in runner.calls

    # What the timer runs: doctor's own report of this host, written as the timer would.
    prom = textfile_dir / "hostagent.prom"
    metrics.write(str(prom), metrics.render(doctor.examine(timeout=0.1)))
    text = written = prom.read_text()
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    assert value(text, "hostagent_installed") == 1 and value(text, "hostagent_agent_up") == 1
    assert value(text, "hostagent_agent_running_as_root") == (os.getuid() == 0)
    # On this host every account is the tester, so the agent runs "as deepflow"; a copy of sleep has no caps
    # and sits in the test's own cgroup, not deepflow-agent's.
    assert samples(text)['hostagent_agent_running_as_user{user="deepflow"}'] == 1
    assert value(text, "hostagent_agent_capabilities_as_profile") == 0
    assert value(text, "hostagent_agent_in_cgroup") == 0
    assert value(text, "hostagent_service_definition_as_installed") == 1
    assert value(text, "hostagent_drift_problems") == 0
    assert value(text, "hostagent_doctor_problems") >= 2  # caps and cgroup
    assert "hostagent_server_agent_registered" not in text  # installed without --server: not known, not 0

    # The agent's unit edited behind hostagent's back: drift, and the definition is no longer as written.
    unit = root / "etc/systemd/system/deepflow-agent.service"
    unit.write_text(unit.read_text() + "# edited\n")
    text = metrics.render(doctor.examine(timeout=0.1))
    assert value(text, "hostagent_service_definition_as_installed") == 0
    assert value(text, "hostagent_drift_problems") == 1
    unit.write_text(unit.read_text().replace("# edited\n", ""))

    # The agent stopped: down, and nothing judged of a process that is not there.
    runner._systemctl(["stop", "deepflow-agent.service"])
    text = metrics.render(doctor.examine(timeout=0.1))
    assert value(text, "hostagent_agent_up") == 0 and value(text, "hostagent_agent_processes") == 0
    assert value(text, "hostagent_agent_capabilities_as_profile") == 0
    assert value(text, "hostagent_drift_problems") == 1  # the service step: not running
    runner._systemctl(["start", "deepflow-agent.service"])

    engine.uninstall()
    assert ["systemctl", "stop", "hostagent-metrics.timer"] in runner.calls
    assert not prom.exists()
    assert tree(root) == before
    checked = promtool.check("metrics", stdin=written)  # last: as nobody, without promtool, this skips
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout


def test_the_server_view_and_limits_in_base_units():
    report = {"installed": True, "init": "systemd", "cgroup_mode": "v2", "user": "deepflow", "caps": ["cap_net_raw"],
              "processes": [{"pid": 7, "uid": 0, "CapEff": ["cap_net_raw", "cap_sys_admin"], "as_user": False,
                             "caps_as_installed": False, "in_agent_cgroup": True}],
              "steps": [{"id": "service-definition:/etc/systemd/system/deepflow-agent.service", "ok": True}],
              "drift": [], "problems": ["a", "b", "c"],
              "limits": {"in_force": {"max_millicpus": 500, "max_memory": None}, "agree": False},
              "server": {"reachable": True, "registered": True, "in_group": False, "group_id": "g-0123456789",
                         "exceptions": [8192, 2048], "last_sync": 1700000000.0, "state": 1, "name": "h1"}}
    text = metrics.render(report, now=1700000060.5)
    got = samples(text)
    assert got["hostagent_agent_running_as_root"] == 1
    assert got['hostagent_agent_running_as_user{user="deepflow"}'] == 0
    assert got['hostagent_agent_capabilities_info{pid="7",effective="cap_net_raw,cap_sys_admin",profile="cap_net_raw"}'] == 1
    assert got["hostagent_agent_cpu_limit_cores"] == 0.5 and got["hostagent_agent_memory_limit_bytes"] == float("inf")
    assert got["hostagent_agent_limits_as_group"] == 0
    assert got['hostagent_server_agent_in_group{group="g-0123456789"}'] == 0
    assert got["hostagent_server_agent_exceptions"] == 2
    assert got['hostagent_server_agent_info{name="h1",state="1",exceptions="8192,2048"}'] == 1
    assert got["hostagent_server_agent_last_sync_timestamp_seconds"] == 1700000000
    assert got["hostagent_doctor_last_run_timestamp_seconds"] == 1700000060.5
    # A server that did not answer: reachable 0, and no made-up registration.
    down = metrics.render(dict(report, server={"reachable": False, "registered": None, "in_group": None}))
    assert value(down, "hostagent_server_reachable") == 0 and "hostagent_server_agent_registered" not in down
    checked = promtool.check("metrics", stdin=text)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout


def test_sync_time_of_the_server():
    assert doctor._sync_time("2023-11-14 22:13:20") == 1700000000
    assert doctor._sync_time("2023-11-15T06:13:20+08:00") == 1700000000
    assert doctor._sync_time(None) is None and doctor._sync_time("") is None


def test_the_write_is_atomic_and_never_through_a_symlink(tmp_path):
    target = tmp_path / "hostagent.prom"
    target.write_text("old\n")
    old_umask = os.umask(0o077)
    try:
        with open(target) as reader:  # node_exporter mid-read: it keeps the whole old file
            metrics.write(str(target), "new\n")
            assert reader.read() == "old\n"
    finally:
        os.umask(old_umask)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["hostagent.prom"]  # no temp file left

    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep\n")
    link = tmp_path / "link.prom"
    link.symlink_to(elsewhere)
    with pytest.raises(SymlinkRefused):
        metrics.write(str(link), "x\n")
    linked_dir = tmp_path / "linked"
    linked_dir.symlink_to(tmp_path)
    with pytest.raises(InputError, match="is a symlink"):
        metrics.write(str(linked_dir / "x.prom"), "x\n")
    with pytest.raises(InputError, match=r"\*\.prom"):
        metrics.write(str(tmp_path / "x.txt"), "x\n")
    assert elsewhere.read_text() == "keep\n" and sorted(os.listdir(tmp_path)) == ["elsewhere", "hostagent.prom",
                                                                                   "link.prom", "linked"]


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "No such file or directory"),
    (lambda d: d.write_text(""), "is not a directory"),
    (lambda d: d.symlink_to(d.parent), "is a symlink"),
])
def test_a_bad_textfile_dir_is_refused(fake, make, message):
    root, _ = fake
    make(root / "textfile")
    with pytest.raises(InputError, match=message):
        planner.check_metrics_textfile("systemd", "/textfile")


def test_no_timer_on_sysv_or_openrc(fake, textfile_dir):
    for init in ("sysvinit", "openrc"):
        with pytest.raises(InputError, match="needs systemd's timers"):
            planner.check_metrics_textfile(init, "/var/lib/node_exporter/textfile")


def test_a_foreign_textfile_is_refused(fake, textfile_dir):
    (textfile_dir / "hostagent.prom").write_text("someone's\n")
    with pytest.raises(InputError, match="hostagent did not install it"):
        planner.check_metrics_textfile("systemd", "/var/lib/node_exporter/textfile")


def test_relative_dir_is_one_line_exit_2_before_anything():
    with pytest.raises(InputError, match="absolute"):
        build({"controller_ips": ["10.0.0.1"], "metrics_textfile": "textfile"})
    proc = subprocess.run([sys.executable, "-m", "hostagent", "install", "--controller-ip", "10.0.0.1",
                           "--metrics-textfile", "textfile"], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "hostagent", "doctor", "--prometheus", "/nonexistent/x.prom"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "No such file or directory" in proc.stderr, proc.stderr
