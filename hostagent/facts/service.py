"""Facts about the agent's processes (the service's state is its manager's: hostagent.host.services)."""
from __future__ import annotations

import os
from typing import Any, Optional

from hostagent.host import paths


def parse_proc_status_uid(text: str) -> Optional[int]:
    for line in text.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None


def proc_uid_exe(pid: int) -> tuple[Optional[int], Optional[str]]:
    """Real uid and executable of a process; (None, None) once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            uid = parse_proc_status_uid(f.read())
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None, None
    return uid, exe.replace(" (deleted)", "")


def _root(pid: object) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(f"/proc/{pid}/root")
        return st.st_dev, st.st_ino
    except OSError:
        return None


def agent_processes() -> list[Any]:
    """psutil processes of the agent binary with this host's root directory, parents before their children."""
    import psutil

    found = []
    here = _root("self")
    for proc in psutil.process_iter(["pid", "name", "exe", "uids", "gids", "ppid"]):
        info = proc.info
        exe = (info.get("exe") or "").replace(" (deleted)", "")
        # An agent in a container on this machine (another root directory) is not this host's agent.
        # Not the mount namespace: the unit's sandbox gives the host's own agent one of its own.
        if (info.get("name") == "deepflow-agent" or exe == paths.AGENT_BINARY) and _root(proc.pid) == here:
            found.append(proc)
    pids = {p.pid for p in found}
    return sorted(found, key=lambda p: (p.info["ppid"] in pids, p.pid))
