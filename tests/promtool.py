"""promtool, Prometheus's own checker, for the metrics and the example alert rules.

Debian's `prometheus` package ships it, but installing that package also installs and starts a
Prometheus server with its user and web assets. Only the static promtool binary is taken from the .deb
(`apt-get download` + `dpkg-deb`, ~19 MB, ~5 s once) into the test cache; nothing is installed."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.dist import CACHE_DIR

CACHED = CACHE_DIR / "promtool" / "promtool"


def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.access(CACHED, os.X_OK):
        return str(CACHED)
    if os.geteuid() != 0:  # the unit tier as nobody (tests/integration/test_unit_tier_unprivileged.py)
        pytest.skip("promtool is fetched by root (from Debian's prometheus package); not here yet")
    if not shutil.which("apt-get"):
        if os.environ.get("CI") == "true":
            raise AssertionError("CI needs promtool: Debian's apt-get download prometheus")
        pytest.skip("promtool is taken from Debian's prometheus package: no apt-get here")
    with tempfile.TemporaryDirectory() as tmp:
        download = ["apt-get", "download", "-q", "prometheus"]
        if subprocess.run(download, cwd=tmp, check=False, capture_output=True, timeout=300).returncode != 0:
            # A fresh machine whose package lists are missing or stale: once more after an update.
            subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, timeout=300)
            subprocess.run(download, cwd=tmp, check=True, capture_output=True, timeout=300)
        deb = next(Path(tmp).glob("prometheus_*.deb"))
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True, timeout=120).stdout
        subprocess.run(["tar", "-x", "-C", tmp, "./usr/bin/promtool"], input=tar, check=True, timeout=120)
        CACHED.parent.mkdir(parents=True, exist_ok=True)
        part = CACHED.with_suffix(".part")
        shutil.copy2(Path(tmp) / "usr/bin/promtool", part)
        os.replace(part, CACHED)
    return str(CACHED)


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """`promtool ARGS`; its output (stdout and stderr) is the assertion message."""
    return subprocess.run([promtool(), *args], check=False, input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)


def check(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return run("check", *args, stdin=stdin)
