"""Fixtures shared by the unit and root integration tests."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest



@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture
def cgroup_lock(root: None) -> Iterator[None]:
    """This machine's v1 hierarchy is shared with nspawn test hosts: one user at a time."""
    from tests.cgrouplock import held

    with held():
        yield


@pytest.fixture(scope="session")
def dist() -> Path:
    """dist/ of this checkout (built once per session in CI; skips elsewhere when absent): tests/dist.py."""
    from tests.dist import find_or_build_dist

    return find_or_build_dist()


@pytest.fixture(scope="session")
def single_file(dist: Path) -> Path:
    from tests.dist import single_file_in

    return single_file_in(dist)


@pytest.fixture(scope="session")
def agent_double() -> Path:
    from tests.fixtures.build import build_agent_double

    return build_agent_double()


@pytest.fixture
def fake_server():
    from tests.fixtures.fake_server import FakeDeepflowServer

    with FakeDeepflowServer() as server:
        yield server
