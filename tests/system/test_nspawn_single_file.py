"""The single file's whole lifecycle on a Debian 12 host with NO Python at all (systemd-nspawn).

The image is the nspawn tier's without the python3 and python3-venv packages (nothing pulls them
back in: checked). The file (dist/hostagent-<v>-linux-x86_64, built once per session) is put at
/usr/sbin/hostagent, root:root 0755, as the .deb does. Then: install → host suite → install again
(nothing changes) → reboot → suite → the agent binary replaced as a self-upgrade does (caps gone) +
restart → caps back → uninstall → suite --state=absent → snapshot equal.

The snapshots are taken from this machine through the container's /proc/<pid 1>/root
(tests/hostsnap.py with a root path): the host has no python3 to run hostsnap itself.

The SysV init and OpenRC hosts without Python run the file too (their lifecycle is hostagent's
lifecycle tests' to check).
"""
from __future__ import annotations

import pytest

from tests.system.test_nspawn_e2e import lifecycle

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]


@pytest.fixture(scope="module")
def host(request, single_file):
    """A host of the init the test is parametrized with (indirect)."""
    from tests.images.nspawn import nspawn_host

    with nspawn_host(request.param, wheelhouse=False, single_file=single_file, python=False, ssh=True, hostsnap=False) as h:
        yield h


@pytest.mark.parametrize("host", ["sysvinit", "openrc", "systemd"], indirect=True)
def test_the_host_has_no_python(host):
    r = host.run("command -v python3 python3.11 python; ls /usr/bin/python* /usr/lib/python3*; "
                 "dpkg -l 'python3*' 2>/dev/null | grep ^ii")
    assert r.stdout.strip() == "", r.stdout
    assert host.run("hostagent --version").check().stdout.startswith("hostagent ")


@pytest.mark.parametrize("host", ["systemd"], indirect=True)
def test_single_file_lifecycle_without_python(host, tmp_path):
    assert host.run("hostagent --version").check().stdout.startswith("hostagent ")

    def unit_calls_the_file() -> None:
        unit = host.get("/etc/systemd/system/deepflow-agent.service")
        assert "ExecStart=/usr/sbin/hostagent exec --prepared " in unit, unit

    timings = lifecycle(host, tmp_path, host.snapshot, suite_has_python=False, after_install=unit_calls_the_file)
    print(f"\nsingle-file e2e timings: {timings}")
