"""ruff and mypy, configured in pyproject.toml, pass on the product code. Outside CI a missing tool
skips the check; in CI (CI=true) it is a failure."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> list[str]:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is not None:
        return [path]
    if importlib.util.find_spec(name) is not None:  # the venv's packages on another interpreter's path
        return [sys.executable, "-m", name]
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed (pip install --group lint)")
    pytest.skip(f"{name} is not installed")


def test_ruff_passes() -> None:
    proc = subprocess.run([*_tool("ruff"), "check", "--no-cache", "hostagent", "ansible/plugins/modules"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_passes(tmp_path) -> None:
    # Its cache in the test's own dir: the checkout may not be writable (an unprivileged run).
    proc = subprocess.run([*_tool("mypy"), "--cache-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
