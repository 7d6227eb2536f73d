"""The agent config and the unit, rendered from data and read back the way their consumers read them."""
from __future__ import annotations

import configparser

import yaml

from hostagent import caps
from hostagent.render import agentconfig, unit


def test_config_is_yaml_the_agent_reads() -> None:
    data = agentconfig.config_data(("10.0.0.1", "10.0.0.2"), 30035, "d-AbC123", "g-AbCdE12345")
    parsed = yaml.safe_load(agentconfig.render(data))
    assert parsed == {"controller-ips": ["10.0.0.1", "10.0.0.2"], "controller-port": 30035,
                      "kubernetes-cluster-id": "d-AbC123", "vtap-group-id-request": "g-AbCdE12345",
                      "log-file": "/var/log/deepflow-agent/deepflow-agent.log"}


def test_config_omits_unset_keys() -> None:
    parsed = yaml.safe_load(agentconfig.render(agentconfig.config_data(("fd00::1",), 30035, None, None)))
    assert "kubernetes-cluster-id" not in parsed and "vtap-group-id-request" not in parsed
    assert parsed["controller-ips"] == ["fd00::1"]


def _unit(profile: str) -> configparser.RawConfigParser:
    names = caps.resolve(profile, (6, 1))
    parser = configparser.RawConfigParser(strict=False)  # systemd allows repeated keys
    parser.optionxform = str  # type: ignore[assignment]
    text = unit.render("deepflow", names, 1500, 512)
    parser.read_string(text)
    return parser


def _all_values(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def test_unit_bounding_set_holds_every_file_cap() -> None:
    # With the effective bit set, exec fails with EPERM (203/EXEC) if a file cap is outside the bounding set.
    for profile in caps.PROFILES:
        names = caps.resolve(profile, (6, 1))
        text = unit.render("deepflow", names, 1000, 768)
        bounding = {c.lower() for line in _all_values(text, "CapabilityBoundingSet") for c in line.split()}
        assert set(names) <= bounding, profile


def test_unit_runs_the_launcher_with_the_options() -> None:
    text = unit.render("dfagent", caps.resolve("cbpf-minimal"), 1500, 512)
    exec_start = _all_values(text, "ExecStart")[0]
    assert " -m hostagent exec --prepared --user dfagent --caps cap_net_admin,cap_net_raw,cap_ipc_lock,cap_sys_ptrace" in exec_start
    assert "--cpu-millicores 1500 --memory-mib 512 -- /usr/sbin/deepflow-agent -f /etc/deepflow-agent/deepflow-agent.yaml" in exec_start
    # The full-root part runs outside the sandbox ("+") with the same options.
    pre = _all_values(text, "ExecStartPre")[0]
    assert pre.startswith("+") and "exec --prepare-only --user dfagent" in pre and pre.endswith("-- /usr/sbin/deepflow-agent")
    # The sandboxed launcher never keeps more than it needs to join cgroups and drop.
    launcher_caps = _all_values(text, "CapabilityBoundingSet")[1].split()
    assert launcher_caps == ["CAP_DAC_OVERRIDE", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID"]
    assert _all_values(text, "Delegate") == ["yes"] and _all_values(text, "Restart") == ["always"]
    assert _all_values(text, "UnsetEnvironment") == ["IN_CONTAINER"]


def test_ebpf_profile_keeps_kernel_logs_tmp_and_tracefs_reachable() -> None:
    doc = unit.render("d", caps.resolve("deepflow-doc"), 1000, 768)
    ebpf = unit.render("d", caps.resolve("ebpf", (6, 1)), 1000, 768)
    for setting in ("ProtectKernelLogs=yes", "PrivateTmp=yes", "ProtectKernelTunables=yes", "ProtectSystem=strict"):
        assert setting in doc and setting not in ebpf


def test_cgroup_dirs_stay_writable_under_protect_control_groups() -> None:
    from hostagent.facts.cgroups import CgroupLayout

    v1 = unit.render("d", caps.resolve("deepflow-doc"), 1000, 768,
                     CgroupLayout("v1", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory"))
    assert _all_values(v1, "ReadWritePaths") == [
        "-/var/log/deepflow-agent", "-/sys/fs/cgroup/cpu,cpuacct/deepflow-agent", "-/sys/fs/cgroup/memory/deepflow-agent"]
    v2 = unit.render("d", caps.resolve("deepflow-doc"), 1000, 768, CgroupLayout("v2"))
    assert _all_values(v2, "ReadWritePaths")[1:] == ["-/sys/fs/cgroup/deepflow-agent"]


def test_unit_parses_as_ini() -> None:
    parser = _unit("deepflow-doc")
    assert parser.get("Install", "WantedBy") == "multi-user.target"


def test_no_empty_bounding_set_line() -> None:
    # A profile that already holds every launcher capability: an empty second line would reset the set.
    names = caps.resolve("cap_net_raw,cap_dac_override,cap_setgid,cap_setpcap,cap_setuid")
    text = unit.render("d", names, 1000, 768)
    assert "CapabilityBoundingSet=\n" not in text
    assert _all_values(text, "CapabilityBoundingSet") == ["CAP_DAC_OVERRIDE CAP_SETGID CAP_SETUID CAP_SETPCAP CAP_NET_RAW"]


def test_a_missing_log_dir_does_not_fail_the_start() -> None:
    text = unit.render("d", caps.resolve("deepflow-doc"), 1000, 768)
    assert "-/var/log/deepflow-agent" in _all_values(text, "ReadWritePaths")


def test_config_has_team_id_and_quotes_what_yaml12_misreads() -> None:
    from hostagent.deepflow import yaml12

    text = agentconfig.render(agentconfig.config_data(("df.example",), 30035, "1e3", None, "0o17"))
    data = yaml12.load(text)
    assert data["team-id"] == "0o17" and data["kubernetes-cluster-id"] == "1e3"
    assert data["controller-ips"] == ["df.example"]
