"""The unit tier needs no privilege: it passes as nobody (the host seam puts every host under a temp root)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.root, pytest.mark.slow]


def _nobody_reads(*paths: Path) -> bool:
    return all(subprocess.run(["runuser", "-u", "nobody", "--", "test", "-r", str(p)]).returncode == 0 for p in paths)


def test_the_unit_suite_passes_as_nobody(root, tmp_path_factory) -> None:
    # Debian's python3 (this venv's interpreter may live under root's 0700 home) with the venv's packages.
    python = "/usr/bin/python3"
    if not Path(python).exists() or sys.version_info[:2] != (3, 11):
        pytest.skip("needs Debian 12's python3 beside a Python 3.11 venv")
    repo, packages = REPO, Path(sysconfig.get_paths()["purelib"])
    if not _nobody_reads(repo / "pyproject.toml", packages):  # a checkout under /root: a copy nobody can read
        where = Path(shutil.mkdtemp(prefix="hostagent-unpriv-", dir="/var/tmp"))
        where.chmod(0o755)
        shutil.copytree(REPO, where / "repo", ignore=shutil.ignore_patterns(".git", ".venv", "dist", "__pycache__"))
        shutil.copytree(packages, where / "packages")
        repo, packages = where / "repo", where / "packages"
    env = {"HOME": "/tmp", "PATH": "/usr/bin:/bin", "CI": "true", "PYTHONPATH": f"{packages}:{repo}"}
    try:
        proc = subprocess.run(["runuser", "-u", "nobody", "--", "env", *(f"{k}={v}" for k, v in env.items()),
                               python, "-m", "pytest", "tests/unit", "-q", "-p", "no:cacheprovider"],
                              cwd=repo, capture_output=True, text=True, timeout=600)
    finally:
        if repo != REPO:
            shutil.rmtree(repo.parent)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "passed" in summary and "failed" not in summary
