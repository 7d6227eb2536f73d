"""Where the single file's stub unpacks, and what it leaves behind (issue 19, items 1 and 8).

Each test runs the real single file in a chroot holding nothing else (`bare` in
tests/packaging/conftest.py), as root, beside real processes of an unprivileged user: a user who controls root's TMPDIR
racing to swap the unpack dir, a signal in the middle of the first unpack, two versions of the file
in turn while the older one still runs.
"""
from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from tests.dist import version
from tests.packaging.conftest import CACHE, CHROOT, run

pytestmark = [pytest.mark.root]

NOBODY = 65534
# The racer runs as nobody: the system's python3 (the test venv's may sit under root's home).
SYSTEM_PYTHON = "/usr/bin/python3"
MAGIC = b"HOSTAGENT-RUN-1\n"

# The user's code: if root ever runs it, it leaves root's uid in /pwned.
PAYLOAD_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) {
    FILE *f = fopen("/pwned", "w");
    if (f) fprintf(f, "%d\n", (int)geteuid());
    return 0;
}
"""

# The user's racer: whenever a hostagent-* dir appears in the TMPDIR it owns (an fd, so it needs no path
# into the test's private dirs), it moves it aside and puts its own program in its place.
RACER = r"""
import os, sys, time
fd, payload = int(sys.argv[1]), open(sys.argv[2], "rb").read()
swapped = set()
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    for name in os.listdir(fd):
        if name.startswith("hostagent-") and "." not in name and name not in swapped:
            swapped.add(name)
            try:
                os.rename(name, name + ".moved", src_dir_fd=fd, dst_dir_fd=fd)
                os.mkdir(name, 0o755, dir_fd=fd)
                out = os.open(name + "/hostagent", os.O_WRONLY | os.O_CREAT, 0o755, dir_fd=fd)
                os.write(out, payload)
                os.close(out)
                print("swapped", name, flush=True)
            except OSError as e:
                print("failed", name, e, flush=True)
"""


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("payload")
    (d / "p.c").write_text(PAYLOAD_C)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(d / "p"), str(d / "p.c")], check=True)
    os.chmod(d, 0o755)
    return d / "p"


def user_dir(root: Path, rel: str, owner: int = NOBODY, mode: int = 0o755) -> Path:
    d = root / rel
    d.mkdir(parents=True, exist_ok=True)
    os.chown(d, owner, owner)
    d.chmod(mode)
    return d


def unusable_cache(root: Path) -> None:
    """A documented fallback: /var/cache reached through a symlink is not trusted, so root unpacks
    privately."""
    (root / "var/cache.real").mkdir(parents=True)
    (root / "var/cache").symlink_to("cache.real")


def start_racer(tmpdir: Path, payload: Path, seconds: float) -> subprocess.Popen:
    fd = os.open(tmpdir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return subprocess.Popen([SYSTEM_PYTHON, "-c", RACER, str(fd), "/dev/stdin", str(seconds)],
                                stdin=open(payload, "rb"), stdout=subprocess.PIPE, text=True, pass_fds=(fd,),
                                user=NOBODY, group=NOBODY, extra_groups=[], cwd="/")
    finally:
        os.close(fd)


# ---- (1) root and an untrusted TMPDIR ------------------------------------------------------------

def test_a_user_who_owns_roots_tmpdir_cannot_get_root_to_run_their_code(bare: Path, payload: Path):
    """su without -, sudo -E: root's TMPDIR is the user's. The user swaps the unpack dir under the
    stub; the old stub ran the user's program as root. Root must refuse to unpack there instead."""
    unusable_cache(bare)
    tmpdir = user_dir(bare, "home/u/tmp")
    user_dir(bare, "home/u")
    for attempt in range(3):
        racer = start_racer(tmpdir, payload, 20)
        time.sleep(0.5)  # its interpreter is up and polling
        try:
            r = run(bare, "--version", env={"TMPDIR": "/home/u/tmp"})
        finally:
            racer.kill()
            swaps = racer.communicate()[0]
        assert not (bare / "pwned").exists(), (
            f"attempt {attempt}: root ran the user's program ({(bare / 'pwned').read_text().strip()!r} "
            f"in /pwned); racer: {swaps!r}")
        assert r.returncode == 2 and r.stdout == "", r
        assert r.stderr.startswith("hostagent: single file: TMPDIR /home/u/tmp is not safe for root: "), r
        assert len(r.stderr.splitlines()) == 1, r.stderr
        assert os.listdir(tmpdir) == []  # nothing unpacked there at all


def test_a_user_cannot_swap_roots_dir_in_a_sticky_tmp(bare: Path, payload: Path):
    """/tmp (root-owned, sticky) stays usable for root: the racer, trying the same in it, cannot move
    root's dir; root runs its own copy and removes it."""
    unusable_cache(bare)
    tmp = user_dir(bare, "tmp", owner=0, mode=0o1777)
    racer = start_racer(tmp, payload, 20)
    time.sleep(0.5)
    try:
        r = run(bare, "--version", env={"TMPDIR": "/tmp"})
    finally:
        racer.kill()
        swaps = racer.communicate()[0]
    assert "failed hostagent-" in swaps, swaps  # it did try
    assert not (bare / "pwned").exists()
    assert (r.returncode, r.stdout) == (0, f"hostagent {version()}\n"), r
    assert os.listdir(tmp) == []


@pytest.mark.parametrize("case", ["user-owned dir in sticky /tmp", "world-writable dir", "symlink",
                                  "dot-dot through a user's dir"])
def test_root_refuses_every_other_tmpdir_in_one_line(bare: Path, case: str):
    unusable_cache(bare)
    user_dir(bare, "tmp", owner=0, mode=0o1777)
    if case == "user-owned dir in sticky /tmp":
        user_dir(bare, "tmp/u")
        tmpdir = "/tmp/u"
    elif case == "world-writable dir":
        user_dir(bare, "ww", owner=0, mode=0o777)
        tmpdir = "/ww"
    elif case == "symlink":
        (bare / "link").symlink_to("tmp")
        tmpdir = "/link"
    else:
        user_dir(bare, "home/u")
        tmpdir = "/home/u/../../tmp"
    r = run(bare, "--version", env={"TMPDIR": tmpdir})
    assert r.returncode == 2 and r.stdout == "", r
    assert r.stderr.startswith(f"hostagent: single file: TMPDIR {tmpdir} is not safe for root: "), r
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert os.listdir(bare / "tmp") == [] or os.listdir(bare / "tmp") == ["u"]


def test_an_unprivileged_user_still_unpacks_in_its_own_tmpdir(bare: Path):
    """The check is root's: a user's own TMPDIR is theirs to use."""
    tmpdir = user_dir(bare, "home/u/tmp")
    r = run(bare, "--version", user=NOBODY, env={"TMPDIR": "/home/u/tmp"})
    assert (r.returncode, r.stdout) == (0, f"hostagent {version()}\n"), r
    assert os.listdir(tmpdir) == []


# ---- (8) interrupted unpacks and old versions ----------------------------------------------------

def _in_progress(cache: Path) -> Path | None:
    """A dir being unpacked (whatever the stub calls it: a dot-name beside the copies)."""
    if not cache.is_dir():
        return None
    for p in cache.iterdir():
        if p.name.startswith(".") and (p / "_internal").is_dir():
            return p
    return None


def start_and_stop_mid_unpack(root: Path, *args: str, env: dict[str, str] | None = None,
                              watch: Path | None = None) -> tuple[subprocess.Popen, Path]:
    """Start the file and freeze it (SIGSTOP) while its first unpack is half done."""
    watch = watch or root / CACHE
    proc = subprocess.Popen([CHROOT, str(root), "/hostagent", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PATH": "/", **(env or {})})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        part = _in_progress(watch) if watch == root / CACHE else next(iter(watch.iterdir()), None)
        if part is not None and (part / "_internal").is_dir():
            proc.send_signal(signal.SIGSTOP)
            return proc, part
        time.sleep(0.001)
    proc.kill()
    pytest.fail(f"never caught the unpack in progress: {proc.communicate()}")


def assert_partial(part: Path, cache: Path) -> None:
    """The copy really was cut short: no program yet, nothing renamed into place."""
    assert part.is_dir() and not (part / ".complete").exists()
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == []


def test_sigkill_during_the_first_unpack_leaves_nothing_after_the_next_run(bare: Path):
    proc, part = start_and_stop_mid_unpack(bare, "--version")
    assert_partial(part, bare / CACHE)
    proc.kill()
    proc.wait()
    assert part.is_dir()  # SIGKILL: nothing can clean up at once; the next run must
    r = run(bare, "--version")
    assert (r.returncode, r.stdout) == (0, f"hostagent {version()}\n"), r
    [digest] = os.listdir(bare / CACHE)
    assert len(digest) == 64 and (bare / CACHE / digest / ".complete").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_during_the_first_unpack_removes_the_partial_copy(bare: Path, sig: int):
    proc, part = start_and_stop_mid_unpack(bare, "--version")
    assert_partial(part, bare / CACHE)
    proc.send_signal(sig)
    proc.send_signal(signal.SIGCONT)
    proc.wait(timeout=30)
    assert proc.returncode == -sig  # the signal still ends it, as it would have
    assert os.listdir(bare / CACHE) == []


def test_a_signal_during_a_private_unpack_removes_it(bare: Path):
    """Root with an untrusted cache unpacks into /tmp: a signal there leaves nothing either."""
    unusable_cache(bare)
    tmp = user_dir(bare, "tmp", owner=0, mode=0o1777)
    proc, part = start_and_stop_mid_unpack(bare, "--version", watch=tmp)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    assert os.listdir(tmp) == []


def another_version(single: Path, out: Path) -> str:
    """The same program with one more file in its bundle: another SHA-256, so another cache dir, as
    the next release would have. Returns its digest."""
    data = single.read_bytes()
    trailer = data[-96:]
    assert trailer[:16] == MAGIC
    offset, size = struct.unpack("<QQ", trailer[16:32])
    stream = zlib.decompress(data[offset:offset + size])
    assert stream[-1:] == b"E"
    name, body = b"_internal/next-release", b"another version\n"
    stream = stream[:-1] + b"f" + struct.pack("<HH", 0o644, len(name)) + name + struct.pack("<Q", len(body)) + body + b"E"
    payload = zlib.compress(stream, 1)
    digest = hashlib.sha256(payload).hexdigest()
    out.write_bytes(data[:offset] + payload + MAGIC + struct.pack("<QQ", offset, len(payload)) + digest.encode())
    out.chmod(0o755)
    return digest


@pytest.fixture
def with_proc(bare: Path):
    """/proc in the chroot: without it nobody can tell whether an old copy is in use, so none is removed."""
    (bare / "proc").mkdir()
    subprocess.run(["mount", "-t", "proc", "proc", str(bare / "proc")], check=True)
    yield bare
    subprocess.run(["umount", "-l", str(bare / "proc")], check=True)


def start_and_stop_running_from(root: Path, program: str, copy: Path) -> subprocess.Popen:
    """A process of the older version running from its copy (what a running `hostagent exec` or
    k8s-sync is), frozen so it cannot end during the test."""
    for _ in range(10):
        proc = subprocess.Popen([CHROOT, str(root), program, "--version"], stdout=subprocess.DEVNULL,
                                env={"PATH": "/"})
        while proc.poll() is None:
            try:
                exe = os.readlink(f"/proc/{proc.pid}/exe")
            except OSError:
                continue
            if exe == str(copy / "hostagent"):
                proc.send_signal(signal.SIGSTOP)
                deadline = time.monotonic() + 10
                while Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] != "T":
                    assert time.monotonic() < deadline, "SIGSTOP did not stop it"
                    time.sleep(0.01)
                return proc
        proc.wait()
    pytest.fail("could not catch the older version running")


def test_the_next_version_removes_the_older_copy_unless_it_is_in_use(with_proc: Path):
    root = with_proc
    cache = root / CACHE
    r = run(root, "--version")
    assert r.returncode == 0, r
    [old] = os.listdir(cache)
    new = another_version(root / "hostagent", root / "hostagent-next")
    assert new != old

    # The older version still runs (from its copy): the next one must leave that copy alone.
    running = start_and_stop_running_from(root, f"/{CACHE}/{old}/hostagent", cache / old)
    try:
        r = run(root, "--version", program="/hostagent-next")
        assert (r.returncode, r.stdout) == (0, f"hostagent {version()}\n"), r
        assert sorted(os.listdir(cache)) == sorted([old, new])
    finally:
        running.send_signal(signal.SIGCONT)
        running.kill()
        running.wait()
    assert running.returncode == -signal.SIGKILL  # it was still running, from the old copy, until now

    # Nothing runs from it any more: the next start of the new version removes it.
    r = run(root, "--version", program="/hostagent-next")
    assert (r.returncode, r.stdout) == (0, f"hostagent {version()}\n"), r
    assert os.listdir(cache) == [new]
    # And back: the old file unpacks its copy again and removes the new one's (nothing runs from it).
    assert run(root, "--version").returncode == 0
    assert os.listdir(cache) == [old]


@pytest.mark.parametrize("case", ["no marker", "marker names another digest", "not root's"])
def test_only_copies_the_stub_made_are_removed(with_proc: Path, case: str):
    cache = with_proc / CACHE
    assert run(with_proc, "--version").returncode == 0
    other = cache / ("ab" * 32)
    (other / "_internal").mkdir(parents=True)
    if case == "marker names another digest":
        (other / ".complete").write_text("cd" * 32)
    elif case == "not root's":
        (other / ".complete").write_text("ab" * 32)
        os.chown(other, NOBODY, NOBODY)
    assert run(with_proc, "--version").returncode == 0
    assert (other / "_internal").is_dir()


def test_without_proc_no_older_copy_is_removed(bare: Path):
    """No /proc (a bare chroot): whether the older copy is in use cannot be told, so it stays."""
    assert run(bare, "--version").returncode == 0
    [old] = os.listdir(bare / CACHE)
    new = another_version(bare / "hostagent", bare / "hostagent-next")
    r = run(bare, "--version", program="/hostagent-next")
    assert r.returncode == 0, r
    assert sorted(os.listdir(bare / CACHE)) == sorted([old, new])


def test_an_older_stubs_readable_marker_is_made_roots_alone(bare: Path):
    """Starts hold the marker's flock until their exec, so a user who could open it could make root
    unpack privately at every start: an older stub left it 0644 (a stub-only upgrade keeps the copy)."""
    assert run(bare, "--version").returncode == 0
    [digest] = os.listdir(bare / CACHE)
    marker = bare / CACHE / digest / ".complete"
    assert marker.stat().st_mode & 0o777 == 0o600
    marker.chmod(0o644)
    r = run(bare, "--version")
    assert (r.returncode, r.stdout) == (0, f"hostagent {version()}\n"), r
    assert marker.stat().st_mode & 0o777 == 0o600


def test_an_older_stubs_abandoned_unpack_is_removed_and_a_recent_one_kept(bare: Path):
    """Hosts already carry the old leftovers (.unpack-*, no lock to tell a live one by): removed once
    10 minutes old; a younger one may be an older stub still unpacking."""
    assert run(bare, "--version").returncode == 0
    cache = bare / CACHE
    old, recent = cache / ".unpack-Abc123", cache / ".unpack-Def456"
    for d in (old, recent):
        (d / "_internal").mkdir(parents=True)
        (d / "_internal" / "libpython3.11.so.1.0").write_bytes(b"\0" * 4096)
    past = time.time() - 11 * 60
    os.utime(old, (past, past))
    assert run(bare, "--version").returncode == 0
    assert not old.exists()
    assert (recent / "_internal" / "libpython3.11.so.1.0").exists()


# ---- issue 18: an unprivileged user's own cache --------------------------------------------------

def bundle_sha(single: Path) -> str:
    """The bundle digest in the file's trailer: the name of its copy in any cache."""
    data = single.read_bytes()
    assert data[-96:-80] == MAGIC
    return data[-64:].decode()


def user_home(root: Path, uid: int = NOBODY) -> tuple[Path, Path, dict[str, str]]:
    """A user's home and own TMPDIR in the chroot, and the environment naming them."""
    home = user_dir(root, "home/u", owner=uid)
    tmp = user_dir(root, "home/u/tmp", owner=uid)
    return home, tmp, {"HOME": "/home/u", "TMPDIR": "/home/u/tmp"}


def tree(d: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under d: (owner, mode, mtime_ns)."""
    out = {}
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(d))] = (st.st_uid, st.st_mode, st.st_mtime_ns)
    return out


def test_a_user_unpacks_once_into_its_own_cache_and_reuses_it(bare: Path):
    home, tmp, env = user_home(bare)
    r = run(bare, "--version", user=NOBODY, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"hostagent {version()}\n", ""), r
    cache = home / ".cache/hostagent"
    copy = cache / bundle_sha(bare / "hostagent")
    assert sorted(os.listdir(cache)) == [copy.name]
    assert (cache.stat().st_mode & 0o777, home.joinpath(".cache").stat().st_mode & 0o777) == (0o700, 0o700)
    assert {owner for owner, _, _ in tree(cache).values()} == {NOBODY}
    assert os.listdir(tmp) == []
    before = tree(cache)
    # The second start cannot unpack anywhere else: its TMPDIR is now root's.
    os.chown(tmp, 0, 0)
    tab = {"_HOSTAGENT_COMPLETE": "bash_complete", "COMP_WORDS": "hostagent inst", "COMP_CWORD": "1"}
    for args, extra, out in (["--version"], {}, f"hostagent {version()}\n"), ([], tab, "plain,install\n"):
        r = run(bare, *args, user=NOBODY, env={**env, **extra})
        assert (r.returncode, r.stdout, r.stderr) == (0, out, ""), r
    assert tree(cache) == before  # the same copy, not made again
    assert os.listdir(tmp) == []


def test_a_user_runs_roots_copy_when_it_passes_roots_checks(bare: Path):
    """What root unpacked is shared: a service's own user (k8s-sync's) runs the copy root's install
    checks for, and nobody keeps a second 58 MiB copy. A root copy that fails root's checks is not used."""
    home, tmp, env = user_home(bare)
    assert run(bare, "--version").returncode == 0  # root unpacks into /var/cache/hostagent
    shared = bare / "var/cache/hostagent" / bundle_sha(bare / "hostagent")
    before = tree(shared)
    r = run(bare, "--version", user=NOBODY, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"hostagent {version()}\n", ""), r
    assert not (home / ".cache").exists() and os.listdir(tmp) == [] and tree(shared) == before
    # Made group-writable, root's copy no longer passes: the user unpacks its own instead.
    (shared / "hostagent").chmod(0o775)
    r = run(bare, "--version", user=NOBODY, env=env)
    assert (r.returncode, r.stdout) == (0, f"hostagent {version()}\n"), r
    assert (home / ".cache/hostagent" / shared.name).is_dir() and os.listdir(tmp) == []


def test_an_image_running_as_65532_with_a_read_only_root_caches_under_tmp(bare: Path):
    """The OCI image: uid 65532 can write only /tmp (sticky, root's); no home; TMPDIR=/tmp and
    XDG_CACHE_HOME=/tmp/cache."""
    tmp = user_dir(bare, "tmp", owner=0, mode=0o1777)
    env = {"HOME": "/home/nonroot", "TMPDIR": "/tmp", "XDG_CACHE_HOME": "/tmp/cache"}
    for _ in range(2):
        r = run(bare, "--version", user=65532, env=env)
        assert (r.returncode, r.stdout, r.stderr) == (0, f"hostagent {version()}\n", ""), r
        assert os.listdir(tmp) == ["cache"]
        assert os.listdir(tmp / "cache/hostagent") == [bundle_sha(bare / "hostagent")]
    assert (tmp / "cache").stat().st_uid == 65532 and (tmp / "cache").stat().st_mode & 0o777 == 0o700


def _tamper(copy: Path, how: str) -> Path:
    lib = next(p for p in sorted((copy / "_internal").rglob("*.so*")) if p.is_file() and not p.is_symlink())
    if how == "a library changed":
        with open(lib, "ab") as f:
            f.write(b"x")
    elif how == "a library replaced by a same-size copy":
        data = lib.read_bytes()
        lib.unlink()
        lib.write_bytes(data[:-1] + b"x")
        lib.chmod(0o755)
        os.chown(lib, NOBODY, NOBODY)
    elif how == "a file added":
        lib = copy / "_internal" / "sitecustomize.py"
        lib.write_text("print('injected')\n")
        os.chown(lib, NOBODY, NOBODY)
    elif how == "group-writable":
        lib.chmod(0o775)
    elif how == "another owner's file":
        os.chown(lib, 1234, 1234)
    elif how == "the marker rewritten":
        marker = copy / ".complete"
        marker.write_text(marker.read_text()[:65] + "0" * 64)
    return lib


@pytest.mark.parametrize("how", ["a library changed", "a library replaced by a same-size copy", "a file added",
                                 "group-writable", "another owner's file", "the marker rewritten"])
def test_a_changed_cache_is_rejected_and_made_again(bare: Path, how: str):
    home, tmp, env = user_home(bare)
    assert run(bare, "--version", user=NOBODY, env=env).returncode == 0
    cache = home / ".cache/hostagent"
    copy = cache / bundle_sha(bare / "hostagent")
    def files() -> dict[Path, bytes]:  # the marker records the state of each copy: not compared
        return {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and not p.is_symlink() and p.name != ".complete"}

    pristine = files()
    touched = _tamper(copy, how)
    r = run(bare, "--version", user=NOBODY, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"hostagent {version()}\n", ""), r
    assert os.listdir(cache) == [copy.name]  # the changed one gone, no partial copy left
    assert files() == pristine
    assert {owner for owner, _, _ in tree(cache).values()} == {NOBODY}
    assert not (touched.name == "sitecustomize.py" and touched.exists())
    assert os.listdir(tmp) == []


@pytest.mark.parametrize("case", ["another user's cache dir", "cache dir is a symlink", "~/.cache is a symlink",
                                  "home writable by others", "no HOME", "read-only home",
                                  "cache dir is root's sticky one", "cache dir is the user's, sticky and world-writable",
                                  "a dir above is another user's", "/ writable by others, sticky"])
def test_no_usable_cache_unpacks_per_run_and_leaves_nothing(bare: Path, case: str):
    """Never someone else's dir or a path through a symlink; without a usable place the copy is per
    run and removed when it ends. Sticky excuses a dir above the cache (/tmp), not / or the cache dir."""
    home, tmp, env = user_home(bare)
    other = user_dir(bare, "home/u/elsewhere", owner=NOBODY, mode=0o700)
    if case == "another user's cache dir":
        user_dir(bare, "home/u/.cache", mode=0o700)
        user_dir(bare, "home/u/.cache/hostagent", owner=1234, mode=0o777)
    elif case == "cache dir is a symlink":
        user_dir(bare, "home/u/.cache", mode=0o700)
        (home / ".cache/hostagent").symlink_to(other)
        os.chown(home / ".cache/hostagent", NOBODY, NOBODY, follow_symlinks=False)
    elif case == "~/.cache is a symlink":
        (home / ".cache").symlink_to(other)
        os.chown(home / ".cache", NOBODY, NOBODY, follow_symlinks=False)
    elif case == "home writable by others":
        home.chmod(0o777)
    elif case == "no HOME":
        del env["HOME"]
    elif case == "read-only home":
        os.chown(home, 0, 0)
    elif case == "cache dir is root's sticky one":
        user_dir(bare, "home/u/.cache", mode=0o700)
        user_dir(bare, "home/u/.cache/hostagent", owner=0, mode=0o1777)
    elif case == "cache dir is the user's, sticky and world-writable":
        user_dir(bare, "home/u/.cache", mode=0o700)
        user_dir(bare, "home/u/.cache/hostagent", mode=0o1777)
    elif case == "a dir above is another user's":
        user_dir(bare, "home/u/.cache", mode=0o700)
        os.chown(home, 1234, 1234)  # 0755: the user can reach its own dirs in it, 1234 can swap them
    else:
        bare.chmod(0o1777)  # with ~/.cache missing: nothing is made under a / that fails
    before = tree(bare / "home")
    del before["u/tmp"]  # its mtime: the per-run copy came and went
    r = run(bare, "--version", user=NOBODY, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"hostagent {version()}\n", ""), r
    assert os.listdir(tmp) == []
    assert os.listdir(other) == []
    after = tree(bare / "home")
    del after["u/tmp"]
    assert after == before


def test_a_users_exec_runs_as_a_child_and_leaves_nothing(bare: Path):
    """`exec` as non-root (it refuses: it must start as root) from a per-run copy: the copy goes."""
    home, tmp, env = user_home(bare)
    os.chown(home, 0, 0)  # no cache
    r = run(bare, "exec", "--user", "nobody", "--", "/hostagent", user=NOBODY, env=env)
    assert r.returncode == 1 and "must start as root" in r.stderr, r
    assert os.listdir(tmp) == []


def test_a_user_removes_its_older_versions_copy(with_proc: Path):
    bare = with_proc
    home, tmp, env = user_home(bare)
    old = another_version(bare / "hostagent", bare / "old")
    assert run(bare, "--version", user=NOBODY, env=env, program="/old").returncode == 0
    cache = home / ".cache/hostagent"
    assert os.listdir(cache) == [old]
    assert run(bare, "--version", user=NOBODY, env=env).returncode == 0
    assert os.listdir(cache) == [bundle_sha(bare / "hostagent")]


def test_a_cache_on_a_noexec_mount_is_kept_and_each_start_runs_a_per_run_copy(bare: Path):
    """It passes its checks but cannot be executed: not unpacked again at every start."""
    home, tmp, env = user_home(bare)
    cache_mount = user_dir(bare, "home/u/.cache", mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"noexec,mode=0700,uid={NOBODY},gid={NOBODY}", "tmpfs",
                    str(cache_mount)], check=True)
    try:
        trees = []
        for _ in range(2):
            r = run(bare, "--version", user=NOBODY, env=env)
            assert (r.returncode, r.stdout, r.stderr) == (0, f"hostagent {version()}\n", ""), r
            assert os.listdir(tmp) == []
            trees.append(tree(cache_mount / "hostagent"))
        assert trees[0] == trees[1] and len(trees[0]) > 50
    finally:
        subprocess.run(["umount", str(cache_mount)], check=True)
