"""One install's planning (preflight, then plan) reads the manifest once: every question it asks of an
earlier run (the remote-upgrade mode in force, a group it made, a textfile it owns, the package's unit
under its full unit) is answered from that one reading, on a temp root (tests/unit/fakehost.py)."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from hostagent import engine, planner
from hostagent.facts import HostFacts
from hostagent.facts import host as host_facts
from hostagent.facts.cgroups import CgroupLayout
from hostagent.host import paths
from hostagent.options import build
from hostagent.render import dropin
from hostagent.steps import Step
from hostagent.steps.accounts import Group
from hostagent.steps.dropin import UnitDropIn
from hostagent.steps.files import ServiceDefinition
from hostagent.steps.metrics import Textfile
from tests.fixtures.deepflow_packages import UNIT as DEEPFLOW_UNIT
from tests.unit.fakehost import RecordingRunner
from tests.unit.test_engine_steps import agent_plan  # noqa: F401 (a fixture)

TEXTFILE_DIR = "/var/lib/node_exporter/textfile"
_opens: dict[str, int] = {}  # path → opens seen, for the paths a test watches


def _count_opens(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and isinstance(args[0], str) and args[0] in _opens:
        _opens[args[0]] += 1


@functools.cache
def _hook() -> None:
    sys.addaudithook(_count_opens)  # for good: an audit hook cannot be removed


@pytest.fixture
def opens() -> Iterator[dict[str, int]]:
    """Counts the process's real opens of a path (os.open and open() alike, whoever calls them), while
    a test puts that path in."""
    _hook()
    yield _opens
    _opens.clear()


def test_one_installs_planning_reads_the_manifest_once(
        fake: tuple[Path, RecordingRunner], agent_plan: Callable[..., list[Step]],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, opens: dict[str, int]) -> None:
    root, _ = fake
    (root / TEXTFILE_DIR.lstrip("/")).mkdir(parents=True)
    (root / "etc/systemd/system/deepflow-agent.service").write_text(DEEPFLOW_UNIT)
    # What a run with --remote-upgrade deny killed before its user leaves (its group made; its full unit
    # over the package's, as an earlier hostagent wrote it; the timer's textfile), by the engine itself.
    with monkeypatch.context() as m:
        m.setattr(dropin, "package_unit", lambda *a: None)
        first = agent_plan(metrics_textfile=TEXTFILE_DIR, remote_upgrade="deny")
        engine.install([s for s in first if isinstance(s, (Group, ServiceDefinition, Textfile))],
                       {"remote_upgrade": "deny"}, {"remote_upgrade": {"mode": "deny", "why": "--remote-upgrade deny"}})
    (root / TEXTFILE_DIR.lstrip("/") / "hostagent.prom").write_text("# the timer's\n")
    # This machine's launcher and mounts decide these two checks, not the temp root: not this test's subject.
    monkeypatch.setattr(planner, "check_launcher", lambda init: None)
    monkeypatch.setattr(host_facts, "fs_keeps_file_caps", lambda path: None)

    opts = build({"controller_ips": ["10.0.0.1"], "agent_binary": str(root.parent / "agent"), "user": "deepflow",
                  "metrics_textfile": TEXTFILE_DIR})
    layout = CgroupLayout("v1", str(root / "sys/fs/cgroup/cpu"), str(root / "sys/fs/cgroup/memory"))
    facts = HostFacts(is_root=True, init="systemd", systemd_version=252, cgroup=layout, kernel=(6, 1),
                      kernel_release="6.1.0", machine=os.uname().machine, selinux="disabled", ambient_caps=True)
    manifest_file = str(root) + paths.MANIFEST
    opens[manifest_file] = 0
    resolved = planner.preflight(opts, facts, resolve_remote=False)
    steps = planner.plan(opts, facts, resolved)
    assert opens[manifest_file] == 1

    # And each answer is the manifest's: auto keeps the killed run's mode (no package owns the binary:
    # auto alone would allow), the group is its own and the textfile hostagent's (else both are refused),
    # the package's unit comes back from the full unit's record.
    assert (resolved.remote_upgrade, resolved.remote_upgrade_why) == ("deny", "--remote-upgrade deny")
    assert resolved.group == "deepflow"
    drop_in = next(s for s in steps if isinstance(s, UnitDropIn))
    assert drop_in.base == str(root / "etc/systemd/system/deepflow-agent.service")
