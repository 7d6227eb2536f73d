"""The agent's service definition for each init: the systemd unit (systemd/deepflow-agent.service.j2),
the OpenRC script (systemd/deepflow-agent.openrc.j2) and the SysV inittab line. Each runs `hostagent
exec`, which prepares the cgroups and the binary as root, drops to the user and execs the agent."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from hostagent.facts.cgroups import CgroupLayout
from hostagent.host import paths

# What the sandboxed launcher needs before it drops to the user: write the user-owned cgroup.procs
# (dac_override), change ids, shrink the bounding set. Never kept by the agent.
LAUNCHER_CAPS = ("cap_dac_override", "cap_setgid", "cap_setpcap", "cap_setuid")
TEMPLATE = "deepflow-agent.service.j2"
OPENRC_TEMPLATE = "deepflow-agent.openrc.j2"


def agent_argv(binary: str = paths.AGENT_BINARY) -> tuple[str, ...]:
    return (binary, "-f", paths.CONFIG_FILE)


def launcher_command() -> str:
    """How a service calls `hostagent exec`: this interpreter, isolated from the environment; or, from
    the single file (frozen), that file itself."""
    if getattr(sys, "frozen", False):
        return sys.executable
    return f"{sys.executable} -I -m hostagent"


def launcher_files() -> list[str]:
    """What the service runs as root at every start: the single file, or the interpreter and hostagent's
    own package directory (the code it imports)."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, str(Path(__file__).resolve().parent.parent)]


def _install_location() -> str:
    return sys.executable if getattr(sys, "frozen", False) else sys.prefix


def launcher_args(user: str, caps: tuple[str, ...], cpu_millicores: int, memory_mib: int) -> str:
    return f"--user {user} --caps {','.join(caps)} --cpu-millicores {cpu_millicores} --memory-mib {memory_mib}"


def _v1_agent_dirs(cgroup: Optional[CgroupLayout]) -> list[str]:
    """The agent's cgroup dirs as the host names them (the sandbox's ReadWritePaths)."""
    if cgroup is None:
        return []
    if cgroup.mode == "v2":
        return [f"{paths.CGROUP_ROOT}/{paths.CGROUP_NAME}"]
    return [f"{m}/{paths.CGROUP_NAME}" for m in (cgroup.cpu_mount, cgroup.memory_mount) if m]


def render(user: str, caps: tuple[str, ...], cpu_millicores: int, memory_mib: int,
           cgroup: Optional[CgroupLayout] = None, binary: str = paths.AGENT_BINARY) -> str:
    """The systemd unit. binary: in a dir of its own, the agent may replace it (its remote upgrade)."""
    from hostagent.render import render_template

    return render_template(
        TEMPLATE, user=user, caps=caps, binary=binary, config=paths.CONFIG_FILE,
        upgrade_dir=paths.AGENT_UPGRADE_DIR if binary == paths.AGENT_UPGRADABLE else None,
        launcher=launcher_command(), launcher_args=launcher_args(user, caps, cpu_millicores, memory_mib),
        log_dir=paths.LOG_DIR, cgroup_dirs=_v1_agent_dirs(cgroup),
        launcher_caps=[c for c in LAUNCHER_CAPS if c not in caps],
        ebpf="cap_syslog" in caps,
        # A launcher installed under /root or /home must stay readable to the unit.
        protect_home="read-only" if _install_location().startswith(("/root", "/home")) else "yes",
    )


def render_openrc(user: str, caps: tuple[str, ...], cpu_millicores: int, memory_mib: int,
                  binary: str = paths.AGENT_BINARY) -> str:
    """The OpenRC script: supervise-daemon runs `hostagent exec` and respawns it."""
    from hostagent.render import render_template

    launcher = launcher_command().split()
    return render_template(
        OPENRC_TEMPLATE, user=user, command=launcher[0],
        command_args=" ".join(launcher[1:] + ["exec", launcher_args(user, caps, cpu_millicores, memory_mib),
                                              "--log-dir", paths.LOG_DIR, "--", *agent_argv(binary)]),
        cleanup=" ".join(launcher + ["exec", "--cleanup"]))


def render_sysv_script(user: str, caps: tuple[str, ...], cpu_millicores: int, memory_mib: int,
                       binary: str = paths.AGENT_BINARY) -> str:
    """What the agent's /etc/inittab line runs: one exec, so init's child becomes the launcher, then the agent."""
    command = " ".join([launcher_command(), "exec", launcher_args(user, caps, cpu_millicores, memory_mib),
                        "--log-dir", paths.LOG_DIR, "--", *agent_argv(binary)])
    return ("#!/bin/sh\n# Installed by hostagent: /etc/inittab runs it (SysV init); `hostagent uninstall` removes it.\n"
            f"exec {command}\n")


METRICS_INTERVAL = 60  # seconds between two runs of doctor --prometheus


def render_metrics(directory: str) -> tuple[str, str]:
    """install --metrics-textfile: the oneshot service that writes DIR/hostagent.prom, and its timer."""
    from hostagent.metrics import FILE_NAME
    from hostagent.render import render_template

    path = f"{directory.rstrip('/')}/{FILE_NAME}"
    service = render_template("hostagent-metrics.service.j2", agent_unit=f"{paths.SERVICE}.service",
                              launcher=launcher_command(), file=path, timeout=2, timeout_start=METRICS_INTERVAL - 10)
    timer = render_template("hostagent-metrics.timer.j2", file=path, interval=METRICS_INTERVAL,
                            service=paths.METRICS_SERVICE)
    return service, timer
