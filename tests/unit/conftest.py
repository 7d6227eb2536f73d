"""The unit tier's host: a temp root with a recording runner (tests/unit/fakehost.py), made current."""
from __future__ import annotations

import pytest

from hostagent.host import using
from tests.unit.fakehost import make_host


@pytest.fixture
def fake(tmp_path):
    root = tmp_path / "host"
    h, runner = make_host(root)
    with using(h):
        yield root, runner
    runner.close()
