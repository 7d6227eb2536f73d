"""Fixtures shared by the unit and root integration tests."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Iterator

import pytest

CGROUP_TEST_LOCK = "/run/lock/hostagent-tests-cgroup.lock"


@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture
def cgroup_lock(root: None) -> Iterator[None]:
    """This machine's v1 hierarchy is shared with nspawn test hosts: one user at a time."""
    os.makedirs(os.path.dirname(CGROUP_TEST_LOCK), exist_ok=True)
    fd = os.open(CGROUP_TEST_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.fixture(scope="session")
def agent_double() -> Path:
    from tests.fixtures.build import build_agent_double

    return build_agent_double()


@pytest.fixture
def fake_server():
    from tests.fixtures.fake_server import FakeDeepflowServer

    with FakeDeepflowServer() as server:
        yield server
