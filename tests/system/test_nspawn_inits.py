"""SysV init and OpenRC test hosts work for real (systemd-nspawn, Debian 12 images of sysvinit-core and
openrc): PID 1, boot done, cgroups writable, commands in the container's cgroups and bounding set; a
reboot is a real one (the init powers off by itself, /run and the cgroup dirs gone, the disk kept) and
leaves THIS machine's interfaces and clock alone (the systemd host's too); an inittab respawn line and
a supervise-daemon service are started, respawned after a kill, stopped, and back after a reboot.

The base of hostagent's lifecycle tests on those inits: each host is booted with hostagent installed
from the wheelhouse, as they get it."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]

LOOP = "/usr/local/bin/hostagent-test-loop"
LOOP_SCRIPT = "#!/bin/sh\nwhile :; do sleep 1; done\n"
# An openrc-run service as hostagent's would be: supervise-daemon keeps the process, respawns it.
OPENRC_SERVICE = f"""#!/sbin/openrc-run
description="hostagent test: a supervised sleep loop"
supervisor=supervise-daemon
command={LOOP}
"""
INITTAB_LINE = f"ht:2345:respawn:{LOOP}"


@pytest.fixture(scope="module")
def host(request):
    """A booted host of the init the test is parametrized with (one per init and module)."""
    from tests.images.nspawn import nspawn_host

    with nspawn_host(request.param, ssh=True, double=False, hostsnap=False) as h:
        h.put(LOOP, LOOP_SCRIPT, 0o755)
        yield h


def loop_pids(host) -> list[str]:
    return host.run(f"pgrep -f -x '/bin/sh {LOOP}'").stdout.split()


def wait_loop(host, running: bool, other_than: str = "", timeout: float = 15) -> str:
    """Wait until the loop runs (as a pid other than `other_than`) or, running=False, is gone."""
    deadline = time.monotonic() + timeout
    pids: list[str] = []
    while time.monotonic() < deadline:
        pids = loop_pids(host)
        if running and len(pids) == 1 and pids[0] != other_than:
            return pids[0]
        if not running and not pids:
            return ""
        time.sleep(0.1)
    pytest.fail(f"loop {'not running' if running else 'still running'}: {pids}\n{host.console_tail()}")


def over_ssh(host, cmd: str) -> str:
    """The way testinfra reaches the host: sshd on 127.0.0.1 here, started per boot."""
    p = subprocess.run(host.ssh_command(cmd), capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def this_machine() -> dict:
    """This machine's interfaces (flags, operstate): a container's `halt -i` would change them."""
    return {d.name: ((d / "flags").read_text().strip(), (d / "operstate").read_text().strip())
            for d in sorted(Path("/sys/class/net").iterdir())}


BOTH = pytest.mark.parametrize("host", ["sysvinit", "openrc"], indirect=True)


@BOTH
def test_pid1_boot_cgroups_and_commands(host):
    assert host.run("cat /proc/1/comm; readlink /proc/1/exe").check().stdout.split() == ["init", "/usr/sbin/init"]
    assert host.run("dpkg-query -W -f '${Status}' sysvinit-core").stdout == "install ok installed"
    assert host.run("test -e /lib/systemd/systemd || test -e /bin/systemctl").rc != 0, "no systemd at all"
    assert host.boot_state == "N 2" and host.run("runlevel").stdout.strip() == "N 2"
    if host.init == "openrc":
        assert host.run("rc-status --runlevel").check().stdout.strip() == "default"
        assert host.run("dpkg-query -W -f '${Status}' openrc").stdout == "install ok installed"
        assert host.run("dpkg-query -W -f '${Status}' sysv-rc").stdout != "install ok installed"
    # cpu and memory writable, as on a real v1 host; the others read-only as nspawn mounts them.
    host.run("for c in cpu memory; do mkdir /sys/fs/cgroup/$c/probe && rmdir /sys/fs/cgroup/$c/probe; done").check()
    # A command runs in the container's cgroups (its namespace root) with its init's bounding set.
    cgroups = host.run("cat /proc/self/cgroup").check().stdout.splitlines()
    assert cgroups and all(line.endswith(":/") for line in cgroups), cgroups
    caps = host.run("grep CapBnd /proc/self/status /proc/1/status").check().stdout.split()
    assert caps[1] == caps[3], caps
    assert host.run("hostagent --version").check().stdout.startswith("hostagent ")
    assert over_ssh(host, "cat /proc/1/comm") == "init\n"


@pytest.mark.parametrize("host", ["sysvinit", "openrc", "systemd"], indirect=True)
def test_reboot_is_real_and_leaves_this_machine_alone(host):
    host.run("touch /run/before-reboot /var/tmp/kept && mkdir /sys/fs/cgroup/cpu/probe").check()
    outside = [d / "probe" for d in host._cgroup_dirs if d.parent.name in ("cpu", "cpu,cpuacct")]
    assert outside and all(p.is_dir() for p in outside), host._cgroup_dirs
    net, wall, mono = this_machine(), time.time(), time.monotonic()

    host.reboot()

    assert host.exit_status == 0, f"the init did not power off by itself\n{host.console_tail()}"
    if host.init != "systemd":
        assert "Will now halt" in host.console_tail(20000)  # /etc/init.d/halt ran
    assert this_machine() == net
    assert abs((time.time() - wall) - (time.monotonic() - mono)) < 1.0, "this machine's clock was set"
    assert not any(p.exists() for p in outside)
    host.run("test ! -e /run/before-reboot && test ! -d /sys/fs/cgroup/cpu/probe && test -e /var/tmp/kept").check()
    host.run("rm /var/tmp/kept").check()
    assert over_ssh(host, "cat /proc/1/comm") == ("systemd\n" if host.init == "systemd" else "init\n")


@BOTH
def test_reboot_leaves_the_snapshot_alone(host):
    """What hostagent's uninstall-equals-snapshot checks see: a reboot changes nothing by itself."""
    from tests.hostsnap import diff as snapshot_diff

    before = host.snapshot()
    host.reboot()
    problems = snapshot_diff(before, host.snapshot())
    assert problems == [], "\n".join(problems[:30])


@pytest.mark.parametrize("host", ["sysvinit"], indirect=True)
def test_inittab_respawn_line(host):
    host.run(f"echo '{INITTAB_LINE}' >> /etc/inittab && telinit q").check()
    first = wait_loop(host, True)
    assert host.run(f"ps -o ppid= -p {first}").stdout.strip() == "1"
    host.run(f"kill -9 {first}").check()
    wait_loop(host, True, other_than=first)

    host.run("sed -i '/^ht:/d' /etc/inittab && telinit q").check()
    wait_loop(host, False)

    host.run(f"echo '{INITTAB_LINE}' >> /etc/inittab").check()
    host.reboot()
    wait_loop(host, True)
    host.run("sed -i '/^ht:/d' /etc/inittab && telinit q").check()
    wait_loop(host, False)


@pytest.mark.parametrize("host", ["openrc"], indirect=True)
def test_supervise_daemon_service(host):
    svc = "hostagent-test-loop"
    host.put(f"/etc/init.d/{svc}", OPENRC_SERVICE, 0o755)
    host.run(f"rc-service {svc} start", timeout=30).check()
    first = wait_loop(host, True)
    parent = host.run(f"ps -o args= -p $(ps -o ppid= -p {first})").stdout.strip()
    assert parent.startswith(f"supervise-daemon {svc} "), parent
    host.run(f"kill -9 {first}").check()
    wait_loop(host, True, other_than=first)
    assert host.run(f"rc-service {svc} status").stdout.strip().endswith("started")

    host.run(f"rc-update add {svc} default").check()
    host.reboot()
    wait_loop(host, True)
    status = host.run("rc-status default").stdout
    assert svc in status and "started" in status.split(svc)[1].splitlines()[0], status

    host.run(f"rc-service {svc} stop && rc-update del {svc} default && rm /etc/init.d/{svc}", timeout=30).check()
    wait_loop(host, False)
