"""Which dpkg or rpm package owns a file of the host (DeepFlow's own packages of the agent)."""
from __future__ import annotations

import os
from typing import Optional

from hostagent import host

# Where each tool is looked for on the host (not on this process's PATH: a test's root is its own host).
_BIN_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")


def _tool(name: str) -> bool:
    h = host.current()
    return any(os.path.exists(h.path(f"{d}/{name}")) for d in _BIN_DIRS)


def owning_package(path: str) -> Optional[str]:
    """The dpkg or rpm package whose own content is at path (as the host names it) now, its digest
    verified: not the package when something else (the agent's own upgrade) replaced the file since."""
    h = host.current()
    for query, verify in ((["dpkg-query", "-S", path], ["dpkg", "--verify"]),
                          (["rpm", "-qf", "--qf", "%{NAME}", path], ["rpm", "-V", "--nodeps"])):
        if not _tool(query[0]):
            continue
        out = (h.output(query) or "").strip()
        package = out.split(":", 1)[0] if query[0] == "dpkg-query" else out
        if not package or " " in package:  # rpm: "file ... is not owned by any package"
            continue
        # Both list changed files as "<flags> [c] <path>"; a 5 in the flags: the digest differs.
        report = h.run(verify + [package], timeout=60, check=False).stdout
        changed = any(line.split()[-1] == path and "5" in line.split()[0] for line in report.splitlines() if line.split())
        return None if changed else package
    return None
