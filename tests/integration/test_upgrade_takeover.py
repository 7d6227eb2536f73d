"""The launcher's take-over of the agent's own upgrade (--remote-upgrade allow), as root on this machine:
a real user, real owners, real file capabilities. In the dir the agent's user may write, the launcher
gives root ownership and the profile's capabilities only to that user's own one-link regular file; any
other thing planted there stops the start and is left exactly as it was."""
from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from hostagent import caps, launcher
from hostagent.errors import HostagentError

pytestmark = pytest.mark.root
USER = "dfhaupgrade"
PROFILE = caps.resolve("cbpf-minimal")


@pytest.fixture
def upgrade_dir():
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", USER], check=True)
    work = Path(f"/var/tmp/hostagent-takeover-{os.getpid()}")
    work.mkdir(mode=0o755)
    d = work / "bin"
    d.mkdir()
    shutil.chown(d, "root", USER)
    d.chmod(0o770)  # as install makes /var/lib/deepflow-agent
    try:
        account = pwd.getpwnam(USER)
        yield d, account.pw_uid, account.pw_gid
    finally:
        shutil.rmtree(work)
        subprocess.run(["userdel", "--force", USER], check=False, capture_output=True)


def _state(path: Path) -> tuple:
    st = os.lstat(path)
    try:
        xattr = os.getxattr(path, "security.capability", follow_symlinks=False)
    except OSError:
        xattr = None
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_nlink, xattr


def test_the_agents_own_upgrade_is_taken_over_and_its_leftovers_go(upgrade_dir) -> None:
    d, uid, gid = upgrade_dir
    binary = d / "deepflow-agent"
    binary.write_bytes(b"\x7fELF new version")
    os.chown(binary, uid, gid)  # what the agent's rename leaves: its own file, 0755, no caps
    binary.chmod(0o755)
    for leftover in ("deepflow-agent.test", "deepflow-agent.bak"):
        (d / leftover).write_text("cut short")
        os.chown(d / leftover, uid, gid)
    assert launcher.ensure_binary(str(binary), PROFILE, gid, uid) is True
    owner_uid, owner_gid, mode, links, xattr = _state(binary)
    assert (owner_uid, owner_gid, mode, links) == (0, gid, 0o750, 1)
    assert caps.file_caps_match(xattr, PROFILE)
    assert sorted(os.listdir(d)) == ["deepflow-agent"]
    assert launcher.ensure_binary(str(binary), PROFILE, gid, uid) is False  # the next start: nothing to do


@pytest.mark.parametrize("planted", ["foreign", "hardlink", "symlink", "fifo", "other-user"])
def test_anything_else_in_the_dir_stops_the_start_untouched(upgrade_dir, planted) -> None:
    d, uid, gid = upgrade_dir
    binary = d / "deepflow-agent"
    secret = d.parent / "secret"  # stands for /etc/shadow, a setuid program...
    secret.write_text("root's")
    secret.chmod(0o600)
    if planted == "foreign":
        binary.write_text("root's file, not the agent's")
    elif planted == "hardlink":
        os.link(secret, binary)
    elif planted == "symlink":
        binary.symlink_to(secret)
    elif planted == "fifo":
        os.mkfifo(binary)
        os.chown(binary, uid, gid)
    else:
        binary.write_text("someone else's")
        os.chown(binary, 65534, 65534)
    before = _state(binary), _state(secret)
    with pytest.raises((OSError, HostagentError)):
        launcher.ensure_binary(str(binary), PROFILE, gid, uid)
    assert (_state(binary), _state(secret)) == before
