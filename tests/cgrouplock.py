"""One lock for everything that touches this machine's cgroup v1 hierarchy: root tests that create
/sys/fs/cgroup/*/deepflow-agent here, and nspawn hosts (which share that hierarchy)."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from typing import Iterator

CGROUP_LOCK = "/run/lock/hostagent-tests-cgroup.lock"


@contextmanager
def held() -> Iterator[None]:
    os.makedirs(os.path.dirname(CGROUP_LOCK), exist_ok=True)
    fd = os.open(CGROUP_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd closes
        yield
    finally:
        os.close(fd)
