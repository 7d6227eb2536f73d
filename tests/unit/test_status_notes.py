"""`status` on a host whose agent binary was replaced since install: the Binary step's own notes(record)
name who replaced it (DeepFlow's package or not), and its restored_at_start(record) keeps the binary's
and the caps' owner/mode/caps out of drift; Host.logical(), the inverse of Host.path()."""
from __future__ import annotations

import os
import shutil

import pytest

from hostagent import engine, host
from hostagent.host import Host
from hostagent.status import status
from tests.unit.test_engine_steps import agent_plan  # noqa: F401 (a fixture)


def test_logical_is_the_inverse_of_path(tmp_path) -> None:
    h = Host(str(tmp_path / "root"))
    for logical in ("/usr/sbin/deepflow-agent", "/etc", "/"):
        assert h.logical(h.path(logical)) == logical
    with pytest.raises(ValueError, match="not under"):
        h.logical(str(tmp_path / "rootless/etc"))  # a sibling with the same prefix is not under the root
    assert Host("/").logical("/etc/x") == "/etc/x"


def _replace(path) -> None:
    """What `dpkg -i` of the next release does to the binary: a new file, 0755, no capabilities."""
    os.unlink(path)
    shutil.copy2("/bin/sleep", path)
    os.chmod(path, 0o755)
    os.utime(path, (1706745600, 1706745600))


def test_a_binary_replaced_by_deepflows_package_is_a_note_naming_the_package(fake, agent_plan) -> None:  # noqa: F811
    root, runner = fake
    binary = root / "usr/sbin/deepflow-agent"
    shutil.copy2("/bin/sleep", binary)
    engine.install(agent_plan(agent_binary=str(binary), remote_upgrade="deny"), {"user": "deepflow"}, {})
    assert status()["drift"] == [] and status()["notes"] == []

    _replace(binary)
    runner.own("/usr/sbin/deepflow-agent", "deepflow-agent")  # the package's content, verified
    found = status()
    assert found["drift"] == [], found["drift"]
    binary_step = next(s for s in found["steps"] if s["id"].startswith("binary:"))
    assert binary_step["notes"] == [
        "DeepFlow's package (deepflow-agent) replaced /usr/sbin/deepflow-agent since install (a package upgrade): "
        "its owner, mode and capabilities are restored at each start of the agent"]
    assert all(s["notes"] == [] for s in found["steps"] if s is not binary_step)  # the caps step: quiet
    assert ["dpkg-query", "-S", "/usr/sbin/deepflow-agent"] in runner.calls  # asked by the host's name

    # Changed since by something else (its digest no longer the package's): not the package's upgrade.
    with open(binary, "ab") as f:
        f.write(b"\0")
    assert "was replaced since install (an upgrade)" in status()["notes"][0]


def test_only_the_replaced_binarys_path_is_excused(fake, agent_plan) -> None:  # noqa: F811
    root, runner = fake
    binary = root / "usr/sbin/deepflow-agent"
    shutil.copy2("/bin/sleep", binary)
    engine.install(agent_plan(agent_binary=str(binary), remote_upgrade="deny"), {"user": "deepflow"}, {})
    os.chmod(binary, 0o755)  # owner/mode changed in place, content the same: drift, no note
    found = status()
    assert found["notes"] == [] and any("agent binary" in d for d in found["drift"]), found
    _replace(binary)
    (root / "etc/deepflow-agent/deepflow-agent.yaml").write_text("changed\n")
    found = status()
    config = host.current().path("/etc/deepflow-agent/deepflow-agent.yaml")
    assert found["drift"] == [f"{config} differs from what hostagent installed"], found["drift"]
