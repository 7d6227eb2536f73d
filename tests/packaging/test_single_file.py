"""The single file in a chroot that holds nothing but that file: no libc, no loader, no /usr, no /proc.

It must run `--version` and reach a clean refusal (exit 2, one line) for `install --dry-run`, and its
stub must only ever run the unpacked bundle from a cache that nobody but root can write.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.dist import version
from tests.packaging.conftest import CACHE, run

pytestmark = [pytest.mark.root]

def everything_in(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_nothing_but_the_file(bare: Path):
    assert everything_in(bare) == {"hostagent"}
    r = run(bare, "--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"hostagent {version()}\n", "")
    # Unpacked once, into the root-owned cache; nothing else appeared.
    [digest] = os.listdir(bare / CACHE)
    assert len(digest) == 64
    assert {p.split("/")[0] for p in everything_in(bare)} == {"hostagent", "var"}
    assert not [p for p in os.listdir(bare / CACHE) if p.startswith(".unpack")]


def test_install_dry_run_is_a_clean_refusal(bare: Path):
    r = run(bare, "install", "--dry-run", "--controller-ip", "127.0.0.1")
    assert r.returncode == 2, r
    assert r.stdout == "", r
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hostagent install: error: "), r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr


def test_status_reports_nothing_installed(bare: Path):
    r = run(bare, "status")
    assert r.returncode == 0 and "not installed" in r.stdout, r


def test_detect_reads_a_netns_and_help_is_typers(bare: Path):
    """`detect` in the frozen build: the typer-free path (setns through libc, the dump's requests
    packed with struct, the parse from the bundled command tree) and the typer app for the rest."""
    name = f"hatest-file-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "br0", "type", "bridge"], check=True)
        (bare / "proc").mkdir()
        (bare / "run" / "netns").mkdir(parents=True)
        (bare / "run" / "netns" / name).touch()
        # proc and the netns only in this mount namespace: nothing to unmount after.
        script = (f"mount -t proc proc {bare}/proc && mount --bind /run/netns/{name} {bare}/run/netns/{name}"
                  f' && exec chroot {bare} /hostagent "$@"')

        def hostagent(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *args],
                                  capture_output=True, text=True, timeout=120, check=False,
                                  env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})

        r = hostagent("detect", "--netns", name, "--no-other-netns", "--json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)["data"]
        assert {link["name"]: link["kind"] for link in data["links"]} == {"lo": "loopback", "br0": "bridge"}
        r = hostagent("detect", "--help")
        assert r.returncode == 0 and "--ring-blocks" in r.stdout, r.stderr
        r = hostagent("detect", "--ring-blocks", "x")
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "--ring-blocks" in r.stderr, r.stderr
        r = hostagent("detect", "--netns", "no-such-netns-here")
        assert (r.returncode, r.stdout) == (2, "") and r.stderr.startswith("hostagent detect: error: no network"), r
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _cached(bare: Path) -> Path:
    assert run(bare, "--version").returncode == 0
    [digest] = os.listdir(bare / CACHE)
    return bare / CACHE / digest


def _break(cache: Path) -> Path:
    """Damage the unpacked interpreter: a start that used this copy would fail."""
    lib = next((cache / "_internal").glob("libpython3*.so*"))
    lib.write_bytes(b"not an ELF")
    return lib


@pytest.mark.parametrize("how", ["group-writable file", "foreign-owned file", "world-writable dir",
                                 "foreign-owned cache root", "group-writable copy dir",
                                 "sticky world-writable dir above", "symlink above", "sticky world-writable /"])
def test_an_untrusted_cache_is_never_run(bare: Path, how: str):
    """The copy's tree and every dir from / down to it: root's, writable by nobody else (sticky is no
    excuse: anyone could put a dir of their own in its place before root made it), no symlink."""
    cache = _cached(bare)
    lib = _break(cache)
    if how == "group-writable file":
        lib.chmod(0o664)
    elif how == "foreign-owned file":
        os.chown(lib, 1000, 1000)
    elif how == "world-writable dir":
        (cache / "_internal").chmod(0o777)
    elif how == "foreign-owned cache root":
        os.chown(bare / CACHE, 1000, 1000)
    elif how == "group-writable copy dir":
        cache.chmod(0o775)
    elif how == "sticky world-writable dir above":
        (bare / "var/cache").chmod(0o1777)
    elif how == "symlink above":
        (bare / "var/cache").rename(bare / "var/cache.real")
        (bare / "var/cache").symlink_to("cache.real")
    else:
        bare.chmod(0o1777)  # the private copy's /tmp accepts a sticky /: only the cache's chain refuses it
    (bare / "tmp").mkdir(mode=0o1777)
    os.chmod(bare / "tmp", 0o1777)
    r = run(bare, "--version")
    assert r.returncode == 0 and r.stdout == f"hostagent {version()}\n", r
    # It ran from a private copy and removed it; the untrusted dir was left as it was.
    assert os.listdir(bare / "tmp") == []
    assert lib.read_bytes() == b"not an ELF"


def test_a_trusted_but_damaged_cache_shows_the_check_is_what_protects(bare: Path):
    """Control for the test above: the same damage with trusted owners and modes is used (and fails)."""
    cache = _cached(bare)
    _break(cache)
    r = run(bare, "--version")
    assert r.returncode != 0


def test_unprivileged_user_unpacks_privately(bare: Path):
    (bare / "tmp").mkdir()
    os.chmod(bare / "tmp", 0o1777)
    r = run(bare, "--version", user=65534)
    assert r.returncode == 0 and r.stdout == f"hostagent {version()}\n", r
    assert os.listdir(bare / "tmp") == []
    assert not (bare / CACHE).exists()  # nobody cannot create the root cache, and did not try elsewhere


@pytest.mark.parametrize("damage", ["truncated", "one byte changed"])
def test_a_damaged_file_is_refused_and_leaves_nothing(bare: Path, damage: str):
    data = bytearray((bare / "hostagent").read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2] + data[-96:]
    else:
        data[len(data) // 2] ^= 0xFF
    (bare / "hostagent").write_bytes(bytes(data))
    r = run(bare, "--version")
    assert r.returncode == 2 and r.stderr.startswith("hostagent: single file: "), r
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert not (bare / CACHE).exists() or os.listdir(bare / CACHE) == []


def test_a_noexec_cache_falls_back_to_a_private_copy(bare: Path):
    cache = _cached(bare)
    subprocess.run(["mount", "--bind", str(cache), str(cache)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,noexec", str(cache)], check=True)
        (bare / "tmp").mkdir(mode=0o1777)
        r = run(bare, "--version")
        assert r.returncode == 0 and r.stdout == f"hostagent {version()}\n", r
        assert os.listdir(bare / "tmp") == []
    finally:
        subprocess.run(["umount", str(cache)], check=True)
