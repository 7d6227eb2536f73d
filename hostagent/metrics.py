"""`hostagent doctor --prometheus FILE`: doctor's findings as node_exporter textfile-collector metrics.

Nothing here checks the host: every value is a verdict doctor.examine() already reached (its report),
so `doctor`, `doctor --json` and the metrics never disagree. The file is replaced atomically (a temp
file beside it, fsync, rename), so the collector never reads half of it."""
from __future__ import annotations

import math
import os
import stat
import time
from typing import Any, Iterable, Optional

from hostagent import __version__
from hostagent.errors import InputError

PREFIX = "hostagent_"
FILE_NAME = "hostagent.prom"  # what the timer writes in --metrics-textfile DIR
MODE = 0o644  # node_exporter runs as its own user


class _Family:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = PREFIX + name, help_text
        self.samples: list[str] = []

    def add(self, value: Any, **labels: Any) -> None:
        if value is None:
            return  # not known: no sample, rather than a made-up 0
        shown = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
        self.samples.append(f"{self.name}{{{shown}}} {_number(value)}" if shown else f"{self.name} {_number(value)}")

    def text(self) -> str:
        if not self.samples:
            return ""  # nothing known: no family at all, so absent() sees it
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} gauge\n" + "".join(s + "\n" for s in self.samples)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and math.isinf(value):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def _all(values: Iterable[Optional[bool]]) -> Optional[bool]:
    """True when every process passed a check, None when no process was judged."""
    known = [v for v in values if v is not None]
    return all(known) if known else None


DEFINITION_KINDS = ("service-definition:", "unit-drop-in:", "inittab:")


def render(report: dict[str, Any], now: Optional[float] = None) -> str:
    """The textfile for one doctor report."""
    families: dict[str, _Family] = {}

    def gauge(metric: str, help_text: str, value: Any, **labels: Any) -> None:
        families.setdefault(metric, _Family(metric, help_text)).add(value, **labels)

    procs = report.get("processes") or []
    installed = bool(report.get("installed"))
    gauge("info", "hostagent's version, the host's service manager and cgroup mode (always 1).", 1,
          version=__version__, init=report.get("init", ""), cgroup_mode=report.get("cgroup_mode", ""))
    gauge("installed", "1 when hostagent's manifest records an install of the agent on this host.", installed)
    gauge("agent_up", "1 when a deepflow-agent process of this host is running.", bool(procs))
    gauge("agent_processes", "deepflow-agent processes of this host (the agent and its watchdog child).", len(procs))
    gauge("agent_running_as_root", "1 when a deepflow-agent process runs as root.", any(p["uid"] == 0 for p in procs))
    if installed:
        user = report.get("user") or ""
        as_user = _all(p.get("as_user") for p in procs) if procs else False
        gauge("agent_running_as_user", "1 when every agent process runs as the user hostagent installed it for.",
              as_user, user=user)
        caps_ok = _all(p.get("caps_as_installed") for p in procs) if procs else False
        gauge("agent_capabilities_as_profile", "1 when every agent process's effective, permitted and bounding "
              "capabilities are exactly the installed profile's.", caps_ok)
        gauge("agent_in_cgroup", "1 when every agent process is in its deepflow-agent cgroup (limits enforced).",
              _all(p.get("in_agent_cgroup") for p in procs) if procs else False)
        steps = [s for s in report.get("steps") or [] if s["id"].startswith(DEFINITION_KINDS)]
        gauge("service_definition_as_installed", "1 when the service definitions hostagent wrote (the agent's unit "
              "or drop-in, init script, inittab line; the metrics timer's units) are as it wrote them.",
              all(s["ok"] for s in steps) if steps else None)
        gauge("drift_problems", "How the host drifted from what hostagent installed (`hostagent status`), in problems.",
              len(report.get("drift") or []))
    for p in procs:
        gauge("agent_capabilities_info", "An agent process's effective capabilities and the installed profile's "
              "(always 1).", 1, pid=p["pid"], effective=",".join(p.get("CapEff") or []),
              profile=",".join(report.get("caps") or []))
    limits = report.get("limits") or {}
    in_force = limits.get("in_force") or {}
    if limits:
        cpu, mem = in_force.get("max_millicpus"), in_force.get("max_memory")
        gauge("agent_cpu_limit_cores", "The CPU limit in force in the agent's cgroup, in cores (+Inf: unlimited).",
              math.inf if cpu is None else cpu / 1000)
        gauge("agent_memory_limit_bytes", "The memory limit in force in the agent's cgroup, in bytes (+Inf: unlimited).",
              math.inf if mem is None else mem << 20)
        gauge("agent_limits_as_group", "1 when the limits in force are the agent group's global.limits.",
              limits.get("agree"))
    srv = report.get("server")
    if srv is not None:
        gauge("server_reachable", "1 when deepflow-server answered doctor's questions about this host's agent.",
              srv.get("reachable"))
        gauge("server_agent_registered", "1 when deepflow-server lists this host's agent (its CTRL_IP and CTRL_MAC).",
              srv.get("registered"))
        gauge("server_agent_in_group", "1 when deepflow-server has the agent in the group install named.",
              srv.get("in_group"), group=srv.get("group_id") or "")
        if srv.get("registered"):
            gauge("server_agent_exceptions", "Exception codes deepflow-server reports for this host's agent.",
                  len(srv.get("exceptions") or []))
            gauge("server_agent_info", "This host's agent as deepflow-server lists it (always 1).", 1,
                  name=srv.get("name") or "", state=srv.get("state") if srv.get("state") is not None else "",
                  exceptions=",".join(map(str, srv.get("exceptions") or [])))
            gauge("server_agent_last_sync_timestamp_seconds", "When the agent last synced with a controller, as "
                  "deepflow-server says (Unix time).", srv.get("last_sync"))
    gauge("doctor_problems", "Problems `hostagent doctor` found.", len(report.get("problems") or []))
    gauge("doctor_last_run_timestamp_seconds", "When `hostagent doctor` wrote these metrics (Unix time).",
          round(time.time() if now is None else now, 3))
    return "".join(f.text() for f in families.values())


def check_dir(directory: str, what: str) -> str:
    """A textfile dir: absolute, an existing directory, not a symlink (root writes there every minute)."""
    if not directory.startswith("/"):
        raise InputError(f"{what} must be an absolute path: {directory!r}")
    try:
        st = os.lstat(directory)
    except OSError as e:
        raise InputError(f"{what} {directory}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise InputError(f"{what} {directory} is a symlink; give the real directory")
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {directory} is not a directory")
    return os.path.normpath(directory)


def write(path: str, text: str) -> None:
    """Replace path atomically, never through a symlink (hostagent.host.fs.atomic_write)."""
    from hostagent.host import fs

    if not path.startswith("/"):
        path = os.path.abspath(path)
    check_dir(os.path.dirname(path) or "/", "--prometheus's directory")
    if not path.endswith(".prom"):
        raise InputError(f"--prometheus {path}: node_exporter's textfile collector reads only *.prom files")
    fs.atomic_write(path, text.encode(), MODE)
