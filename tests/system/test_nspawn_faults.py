"""Fault injection on a booted Debian 12 (systemd-nspawn): SIGKILL at every point of the unit and
service steps (the root tier on this machine covers the others), ENOSPC on the state dir, an immutable
target file, a read-only /etc and a hung systemctl. Each case ends with the host equal to its snapshot
after at most one recovery run (`hostagent uninstall`)."""
from __future__ import annotations

import json

import pytest

from tests.hostsnap import diff as snapshot_diff
from tests.system.hostcmd import INSTALL, UNINSTALL, snapshot

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]

TALLY: dict[str, int] = {"tried": 0, "recovered": 0}


@pytest.fixture(scope="module")
def host():
    from tests.images.nspawn import nspawn_host

    with nspawn_host() as h:
        yield h
    print(f"\nnspawn fault injection: {TALLY['tried']} faults tried, {TALLY['recovered']} recovered")


def recovered(host, before: dict) -> None:
    """At most one recovery run brings the host back to its snapshot."""
    rc, _out, err = host.run(UNINSTALL, timeout=240)
    assert rc == 0, err
    problems = snapshot_diff(before, snapshot(host))
    assert problems == [], "\n".join(problems[:30])
    TALLY["recovered"] += 1


def test_sigkill_in_the_unit_and_service_steps(host) -> None:
    before = snapshot(host)
    host.run(f"HOSTAGENT_FAULT_TRACE=/root/trace {INSTALL} && HOSTAGENT_FAULT_TRACE=/root/trace {UNINSTALL}",
             timeout=240).check()
    points = [p for p in host.get("/root/trace").split() if "service:" in p or "/etc/systemd/" in p]
    host.run("rm /root/trace").check()
    assert len(points) >= 8, points
    for point in points:
        TALLY["tried"] += 1
        if point.startswith(("revert-", "after-revert")):
            host.run(INSTALL, timeout=240).check()
            rc, _out, _err = host.run(f"HOSTAGENT_FAULT_AT={point} {UNINSTALL}", timeout=240)
        else:
            rc, _out, _err = host.run(f"HOSTAGENT_FAULT_AT={point} {INSTALL}", timeout=240)
        assert rc == 137, (point, rc)  # the shell's code for a SIGKILLed child
        recovered(host, before)


def _fails_then_recovers(host, setup: str, release: str, message: str, cleanup: str = "true",
                         install: str = INSTALL) -> None:
    """setup: the fault; release: take the fault away (not what setup made); cleanup: the rest."""
    before = snapshot(host)
    host.run(setup).check()
    try:
        TALLY["tried"] += 1
        rc, out, err = host.run(install, timeout=240)
        report = json.loads(out)
        assert rc != 0 and not report["ok"] and message in report["error"], (rc, report, err)
    finally:
        host.run(release).check()
    rc, _out, err = host.run(UNINSTALL, timeout=240)
    assert rc == 0, err
    host.run(cleanup).check()
    problems = snapshot_diff(before, snapshot(host))
    assert problems == [], "\n".join(problems[:30])
    TALLY["recovered"] += 1


def test_no_space_on_the_state_dir(host) -> None:
    _fails_then_recovers(
        host, "mkdir -p /var/lib/hostagent && mount -t tmpfs -o size=16k none /var/lib/hostagent && "
              "(dd if=/dev/zero of=/var/lib/hostagent/fill bs=1k 2>/dev/null || true)",
        "umount /var/lib/hostagent && rmdir /var/lib/hostagent", "No space left on device")


def test_an_immutable_config_file(host) -> None:
    if host.run("command -v chattr").rc != 0:
        pytest.skip("no chattr in the test image")
    _fails_then_recovers(
        host, "mkdir -p /etc/deepflow-agent && echo 'controller-ips: [10.0.0.9]' > /etc/deepflow-agent/deepflow-agent.yaml "
              "&& chattr +i /etc/deepflow-agent/deepflow-agent.yaml",
        "chattr -i /etc/deepflow-agent/deepflow-agent.yaml", "Operation not permitted", cleanup="rm -r /etc/deepflow-agent")


def test_a_read_only_etc(host) -> None:
    _fails_then_recovers(host, "mount --bind /etc /etc && mount -o remount,bind,ro /etc", "umount /etc", "failed")


def test_a_hung_systemctl(host) -> None:
    # The first daemon-reload hangs; hostagent's command timeout ends it, the rollback's works.
    host.put("/root/systemctl-hangs", "#!/bin/sh\nif [ \"$1\" = daemon-reload ] && rm /run/hang-once 2>/dev/null; "
             "then exec sleep 3600; fi\nexec /root/systemctl.real \"$@\"\n", 0o755)
    _fails_then_recovers(
        host, "cp /usr/bin/systemctl /root/systemctl.real && touch /run/hang-once && "
              "mount --bind /root/systemctl-hangs /usr/bin/systemctl",
        "umount /usr/bin/systemctl", "timed out after 5s", cleanup="rm -f /root/systemctl.real /run/hang-once",
        install="HOSTAGENT_COMMAND_TIMEOUT=5 " + INSTALL)
