"""The systemd unit, rendered with jinja2 from systemd/deepflow-agent.service.j2."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from hostagent import paths
from hostagent.agentcgroups import agent_dirs
from hostagent.facts.cgroups import CgroupLayout

# What the sandboxed launcher needs before it drops to the user: write the user-owned cgroup.procs
# (dac_override), change ids, shrink the bounding set. Never kept by the agent.
LAUNCHER_CAPS = ("cap_dac_override", "cap_setgid", "cap_setpcap", "cap_setuid")
TEMPLATE = "deepflow-agent.service.j2"


def _template_text() -> str:
    try:
        from importlib.resources import files

        return (files("hostagent.systemd") / TEMPLATE).read_text()
    except (ModuleNotFoundError, FileNotFoundError, TypeError):
        # Running from a source checkout that was not pip-installed.
        return (Path(__file__).resolve().parent.parent / "systemd" / TEMPLATE).read_text()


def launcher_command() -> str:
    """How the unit calls `hostagent exec`: this interpreter, isolated from the environment; or, from
    the single file (frozen), that file itself."""
    if getattr(sys, "frozen", False):
        return sys.executable
    return f"{sys.executable} -I -m hostagent"


def launcher_files() -> list[str]:
    """What the unit runs as root at every start: the single file, or the interpreter and hostagent's
    own package directory (the code it imports)."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, str(Path(__file__).resolve().parent.parent)]


def _install_location() -> str:
    return sys.executable if getattr(sys, "frozen", False) else sys.prefix


def render(user: str, caps: tuple[str, ...], cpu_millicores: int, memory_mib: int,
           cgroup: Optional[CgroupLayout] = None,
           binary: str = paths.AGENT_BINARY, config: str = paths.CONFIG_FILE) -> str:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    text = env.from_string(_template_text()).render(
        user=user, caps=caps, binary=binary, config=config, launcher=launcher_command(),
        launcher_args=f"--user {user} --caps {','.join(caps)} --cpu-millicores {cpu_millicores} --memory-mib {memory_mib}",
        log_dir=paths.LOG_DIR, cgroup_dirs=agent_dirs(cgroup) if cgroup else [],
        launcher_caps=[c for c in LAUNCHER_CAPS if c not in caps],
        ebpf="cap_syslog" in caps,
        # A launcher installed under /root or /home must stay readable to the unit.
        protect_home="read-only" if _install_location().startswith(("/root", "/home")) else "yes",
    )
    return text
