"""`hostagent exec` on this machine: root start, real cgroup v1 dirs, real file caps, real privilege drop.

The agent double runs in a fresh PID namespace whose PID 1 is a root shell, so opening /proc/1/ns/net
really needs CAP_SYS_PTRACE (this machine's own PID 1 is out of reach even for root).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostagent import caps

pytestmark = pytest.mark.root
USER = "dfhalaunch"
CPU_DIR = "/sys/fs/cgroup/cpu/deepflow-agent"
MEM_DIR = "/sys/fs/cgroup/memory/deepflow-agent"


@pytest.fixture
def launch_env(cgroup_lock, agent_double):
    for d in (CPU_DIR, MEM_DIR):
        assert not os.path.exists(d), f"{d} exists before the test"
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", USER], check=True)
    work = Path(f"/var/tmp/hostagent-launch-{os.getpid()}")
    work.mkdir(mode=0o755)
    binary = work / "deepflow-agent"
    shutil.copy2(agent_double, binary)  # root:root 0755, no caps: like a fresh upgrade
    state = work / "state"
    state.mkdir()
    shutil.chown(state, USER, USER)
    config = work / "agent.yaml"
    config.write_text(f"controller-ips: [127.0.0.1]\nlog-file: {state}/agent.log\n")
    procs = []
    try:
        yield {"binary": binary, "config": config, "state": state, "procs": procs}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for d in (CPU_DIR, MEM_DIR):
            deadline = time.monotonic() + 5
            while os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        shutil.rmtree(work)
        subprocess.run(["userdel", "--force", USER], capture_output=True)
        subprocess.run(["groupdel", USER], capture_output=True)


def launch(env: dict, caps_spec: str = "deepflow-doc", cpu: int = 500, mem: int = 256) -> tuple[subprocess.Popen, dict]:
    status_file = env["state"] / "status.json"
    argv = [sys.executable, "-m", "hostagent", "exec", "--user", USER, "--caps", caps_spec,
            "--cpu-millicores", str(cpu), "--memory-mib", str(mem), "--", str(env["binary"]), "-f", str(env["config"])]
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", '"$@" & wait $!', "sh", *argv],
        env={"PATH": os.environ["PATH"], "DEEPFLOW_DOUBLE_STATUS": str(status_file), "IN_CONTAINER": "yes",
             "DEEPFLOW_DOUBLE_GROUP_LIMITS": str(env["state"] / "group-limits"),
             "DEEPFLOW_DOUBLE_CPU_MILLICORES": str(cpu), "DEEPFLOW_DOUBLE_MEMORY_MIB": str(mem)},
        stderr=subprocess.PIPE, text=True, cwd="/")
    env["procs"].append(proc)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if status_file.exists():
            status = json.loads(status_file.read_text())
            if status["state"] != "running" or status["cgroup_outcome"] != "not-reached":
                return proc, status
        if proc.poll() is not None and not status_file.exists():
            raise AssertionError(f"launcher exited {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("the double never reported")


def stop(proc: subprocess.Popen) -> None:
    proc.kill()  # --kill-child takes the namespace's PID 1, and with it the whole namespace
    proc.wait(timeout=10)


def test_agent_runs_as_user_with_exact_caps_inside_its_cgroups(launch_env) -> None:
    proc, status = launch(launch_env)
    uid = int(subprocess.check_output(["id", "-u", USER]))
    want = f"{caps.mask(caps.resolve('deepflow-doc')):016x}"
    assert status["state"] == "running", status
    assert (status["uid"], status["euid"]) == (uid, uid)
    assert (status["CapEff"], status["CapPrm"], status["CapBnd"]) == (want, want, want)
    actions = status["actions"]
    for name in ("config", "netns", "af_packet", "cgroup_cpu_procs", "cgroup_memory_procs",
                 "cgroup_cpu_period", "cgroup_cpu_quota", "cgroup_memory_limit"):
        assert actions[name]["ok"], (name, actions[name])
    # IN_CONTAINER was in the launcher's environment; the agent must not see it (it skips cgroups).
    assert status["cgroup_outcome"] == "limited"
    assert Path(f"{CPU_DIR}/cpu.cfs_quota_us").read_text().strip() == "50000"
    assert Path(f"{MEM_DIR}/memory.limit_in_bytes").read_text().strip() == str(256 << 20)
    # The binary was root:root 0755 without caps (as after an upgrade): the launcher fixed it.
    st = launch_env["binary"].stat()
    assert (st.st_uid, oct(st.st_mode & 0o7777)) == (0, "0o750")
    getcap = subprocess.check_output(["getcap", str(launch_env["binary"])], text=True)
    assert "cap_net_admin,cap_net_raw,cap_ipc_lock,cap_sys_ptrace,cap_sys_admin=eip" in getcap
    # Nothing of the service runs as root once the double is up: the launcher exec'd into it.
    import psutil

    tree = psutil.Process(proc.pid).children(recursive=True)
    agents = [p for p in tree if p.name() == "deepflow-agent"]
    assert len(agents) == 1 and agents[0].uids().real == uid
    assert [p.name() for p in tree if p.uids().real == 0] == ["sh"]  # only the namespace's PID 1
    assert str(agents[0].pid) in Path(f"{CPU_DIR}/cgroup.procs").read_text().split()

    # doctor sees the same from the outside, and checks the controller port in the config.
    from hostagent import doctor

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        launch_env["config"].write_text(f"controller-ips: [127.0.0.1]\ncontroller-port: {port}\n")
        report = doctor.examine(timeout=1, config_path=str(launch_env["config"]))
    [agent] = [p for p in report["processes"] if p["pid"] == agents[0].pid]
    assert agent["user"] == USER and agent["CapEff"] == list(caps.resolve("deepflow-doc"))
    assert agent["limits"]["cpu.cfs_quota_us"] == "50000"
    assert agent["limits"]["memory.limit_in_bytes"] == str(256 << 20)
    assert report["controllers"] == [{"ip": "127.0.0.1", "port": port, "reachable": True, "error": None}]
    assert report["config"]["parses"] and report["problems"] == []
    stop(proc)
    report = doctor.examine(timeout=1, config_path=str(launch_env["config"]))
    assert "no deepflow-agent process is running" in report["problems"]
    assert f"controller 127.0.0.1:{port} not reachable: Connection refused" in report["problems"]


def wait_status(env: dict, done, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = json.loads((env["state"] / "status.json").read_text())
        if done(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"the double never got there: {status}")


def test_the_groups_limits_win_and_nothing_fights_them(launch_env) -> None:
    """Like the real agent, the double writes its group's global.limits itself and again on each change;
    the launcher (at every start) and status leave them alone; doctor compares them with the server's."""
    from hostagent import agentcgroups, doctor
    from hostagent.facts.cgroups import cgroup_layout
    from tests.fixtures.fake_group_server import FakeGroupServer

    limits_file = launch_env["state"] / "group-limits"
    limits_file.write_text("max_millicpus: 300\nmax_memory: 200\n")
    proc, status = launch(launch_env, cpu=500, mem=256)
    assert status["limits"]["source"] == "group", status
    assert Path(f"{CPU_DIR}/cpu.cfs_quota_us").read_text().strip() == "30000"
    assert Path(f"{MEM_DIR}/memory.limit_in_bytes").read_text().strip() == str(200 << 20)
    limits_file.write_text("max_millicpus: 700\nmax_memory: 300\n")  # the group's config changed
    status = wait_status(launch_env, lambda s: s["limits"]["applied"] >= 2)
    assert status["limits"]["error"] == "" and status["limits"]["max_millicpus"] == 700
    assert Path(f"{CPU_DIR}/cpu.cfs_quota_us").read_text().strip() == "70000"

    layout = cgroup_layout()
    uid = int(subprocess.check_output(["id", "-u", USER]))
    gid = int(subprocess.check_output(["id", "-g", USER]))
    install_limits = agentcgroups.Limits(500, 256)
    assert agentcgroups.ensure(layout, install_limits, uid, gid) == []  # the launcher at a restart
    assert Path(f"{CPU_DIR}/cpu.cfs_quota_us").read_text().strip() == "70000"
    assert agentcgroups.drift(layout, install_limits, uid, gid) == []  # status: no drift
    assert agentcgroups.in_force(layout) == {"max_millicpus": 700, "max_memory": 300}

    with FakeGroupServer(version="7.1.0") as srv:
        group = srv.add_group("edge")
        srv.configs[group["LCUUID"]] = "global:\n  limits:\n    max_millicpus: 700\n    max_memory: 300\n"
        opts = {"server": srv.url, "agent_group": "edge", "cpu_millicores": 500, "memory_mib": 256}
        report, problems = doctor.limits_report(layout, opts, 5)
        assert report["agree"] is True and problems == [] and report["group_id"] == group["SHORT_UUID"]
        srv.configs[group["LCUUID"]] = "global:\n  limits:\n    max_memory: 1024\n"  # cpu: the template's 1000
        report, problems = doctor.limits_report(layout, opts, 5)
        assert report["group"] == {"max_millicpus": 1000, "max_memory": 1024} and report["agree"] is False
        assert problems == ["limits in force (700m CPU, 300 MiB) differ from the group's global.limits "
                            "(1000m CPU, 1024 MiB) (the agent applies them once it has its config)"]
    with FakeGroupServer(version="6.6.5") as old:
        group = old.add_group("edge")
        report, problems = doctor.limits_report(layout, dict(opts, server=old.url), 5)
        assert report["group"] == {"max_millicpus": 1000, "max_memory": 768}  # example.yaml's defaults
    stop(proc)


def test_capabilities_are_really_limited(launch_env) -> None:
    # Without CAP_SYS_PTRACE the agent cannot open PID 1's netns and exits, as the real one does.
    proc, status = launch(launch_env, caps_spec="cap_net_raw,cap_net_admin")
    assert status["state"] == "exited" and status["exit_code"] == 1
    assert not status["actions"]["netns"]["ok"] and status["actions"]["netns"]["errno"] in (1, 13)
    want = f"{caps.mask(('cap_net_raw', 'cap_net_admin')):016x}"
    assert status["CapBnd"] == want and status["CapEff"] == want
    proc.wait(timeout=10)


def test_launcher_refuses_to_run_without_root(tmp_path) -> None:
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                           "-m", "hostagent", "exec", "--", "/bin/true"], capture_output=True, text=True, cwd="/")
    assert proc.returncode != 0 and "must start as root" in proc.stderr
