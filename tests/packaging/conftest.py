"""The release artifacts come from tests/dist.py (fixtures `dist`, `single_file` in tests/conftest.py);
`bare` is the single file alone in a chroot, `run` runs it there."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.dist import version  # noqa: F401  (the tests here import it from this module)

CACHE = "var/cache/hostagent"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


@pytest.fixture
def bare(tmp_path: Path, single_file: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root (chroot)")
    root = tmp_path / "root"
    root.mkdir()
    os.chmod(root, 0o755)
    dest = root / "hostagent"
    dest.write_bytes(single_file.read_bytes())
    dest.chmod(0o755)
    return root


def run(root: Path, *args: str, user: int = 0, program: str = "/hostagent",
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """PROGRAM ARGS in the chroot, as root or (chroot --userspec) as `user`, with `env` added."""
    spec = [f"--userspec={user}:{user}"] if user else []
    return subprocess.run([CHROOT, *spec, str(root), program, *args], check=False, capture_output=True, text=True,
                          env={"PATH": "/", "LANG": "C.UTF-8", **(env or {})}, timeout=120)
