"""What changes when hostagent runs frozen (the single file): the unit calls that file itself."""
from __future__ import annotations

import subprocess
import sys

from hostagent import __version__
from hostagent.render import unit


def test_the_unit_calls_the_single_file_when_frozen(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/usr/sbin/hostagent")
    assert unit.launcher_command() == "/usr/sbin/hostagent"
    text = unit.render("deepflow", ("cap_net_raw",), 1000, 768)
    assert "\nExecStartPre=+/usr/sbin/hostagent exec --prepare-only " in text
    assert "\nExecStart=/usr/sbin/hostagent exec --prepared " in text
    assert "\nExecStopPost=+/usr/sbin/hostagent exec --cleanup" in text
    assert "\nProtectHome=yes" in text


def test_from_a_venv_the_unit_calls_its_interpreter():
    assert not getattr(sys, "frozen", False)
    assert unit.launcher_command() == f"{sys.executable} -I -m hostagent"


def test_version_flag():
    out = subprocess.run([sys.executable, "-m", "hostagent", "--version"], capture_output=True, text=True, cwd="/")
    assert (out.returncode, out.stdout) == (0, f"hostagent {__version__}\n")
