"""Debian root filesystems for test hosts, built with mmdebstrap and cached by recipe.

A Recipe names everything that goes into an image; its digest names the cache
entry, so a changed recipe gets a new image and an unchanged one is built once.
Images are built in a temp dir next to the cache entry and renamed into place,
under a per-recipe file lock, so parallel builders never see half an image.

Cached images are read-only templates: callers copy them (`clone_rootfs`) and
put per-test state into the copy only.

    python -m tests.images.rootfs [--suite bookworm] [--package P ...]   # build, print path
"""
from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence
from contextlib import contextmanager

CACHE_DIR = Path(os.environ.get("HOSTAGENT_TEST_CACHE", "/var/cache/hostagent-tests"))
# Bump when the way images are built changes in a way the recipe fields do not show.
BUILDER_VERSION = "1"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "libcap2",
    "libcap2-bin", "iproute2", "procps",
)
# Debian suite -> the python3 minor version it ships (wheelhouse ABI checks use it).
SUITE_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything that determines an image's content."""

    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = ()
    # Shell commands run by mmdebstrap as --customize-hook; "$1" is the rootfs.
    hooks: tuple[str, ...] = ()
    # Callers bump this when their hooks' meaning changes without their text changing.
    version: str = "1"
    mirror: str = MIRROR
    name: str = "host"
    # Base packages left out (e.g. python3 and python3-venv for a host with no Python at all).
    exclude: tuple[str, ...] = ()

    def all_packages(self) -> list[str]:
        return sorted((set(BASE_PACKAGES) - set(self.exclude)) | set(self.packages))

    def digest(self) -> str:
        data = dataclasses.asdict(self)
        data["packages"] = self.all_packages()
        if not data["exclude"]:  # recipes from before the field keep their digests (and caches)
            del data["exclude"]
        data["builder"] = BUILDER_VERSION
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def cache_path(self, cache_dir: Path = CACHE_DIR) -> Path:
        return cache_dir / f"{self.name}-{self.suite}-{self.digest()}"


# Hooks every image gets: an empty machine-id (systemd makes one per boot, so
# clones do not share it), no apt caches, and a marker with the recipe.
_COMMON_HOOKS = (
    'rm -f "$1/etc/machine-id" "$1/var/lib/dbus/machine-id" && : > "$1/etc/machine-id"',
    'rm -rf "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*_Packages',
    'echo hostagent-test > "$1/etc/hostname"',
)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def mmdebstrap_command(recipe: Recipe, target: Path) -> list[str]:
    cmd = [
        "mmdebstrap", "--mode=root", f"--variant={recipe.variant}",
        "--include=" + ",".join(recipe.all_packages()),
        # The image never reaches the network after the build: no recommends,
        # no docs, a smaller and faster build.
        "--aptopt=APT::Install-Recommends \"false\"",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    ]
    for hook in _COMMON_HOOKS + tuple(recipe.hooks):
        cmd.append(f"--customize-hook={hook}")
    cmd += [recipe.suite, str(target), f"deb {recipe.mirror} {recipe.suite} main"]
    return cmd


def build_rootfs(recipe: Recipe, cache_dir: Path = CACHE_DIR, log=sys.stderr) -> Path:
    """Return the cached image directory for `recipe`, building it if absent."""
    final = recipe.cache_path(cache_dir)
    if (final / ".recipe.json").exists():
        return final
    with _locked(cache_dir / f".{final.name}.lock"):
        if (final / ".recipe.json").exists():  # another builder finished first
            return final
        work = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=cache_dir))
        target = work / "root"
        started = time.monotonic()
        try:
            result = subprocess.run(
                mmdebstrap_command(recipe, target), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True,
            )
            if result.returncode != 0:
                raise RuntimeError(f"mmdebstrap failed ({result.returncode}):\n{result.stdout[-4000:]}")
            leaked = [p for p in recipe.exclude if (target / "var/lib/dpkg/info" / f"{p}.list").exists()]
            if leaked:
                raise RuntimeError(f"excluded packages came in as dependencies: {leaked}")
            meta = dataclasses.asdict(recipe)
            meta["build_seconds"] = round(time.monotonic() - started, 1)
            # Written last: its presence marks a complete image.
            (target / ".recipe.json").write_text(json.dumps(meta, indent=1))
            if final.exists():  # a stale, incomplete entry from a killed build
                shutil.rmtree(final)
            os.rename(target, final)
            print(f"rootfs {final.name} built in {meta['build_seconds']} s", file=log)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def clone_rootfs(image: Path, dest: Path) -> Path:
    """Copy a cached image for one test host; reflinks where the filesystem has them."""
    if dest.exists():
        raise FileExistsError(dest)
    subprocess.run(["cp", "--reflink=auto", "-a", str(image), str(dest)], check=True)
    return dest


def overlay_rootfs(image: Path, dest: Path) -> Path:
    """Mount a writable overlay of a cached image at dest/root (instant, unlike a copy).

    The image stays the read-only lower layer; every write of the test host lands in
    dest/upper. xattrs (file capabilities) work when dest is on ext4/xfs/tmpfs.
    Undo with unmount_overlay(dest)."""
    root, upper, work = dest / "root", dest / "upper", dest / "work"
    for d in (root, upper, work):
        d.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={image},upperdir={upper},workdir={work}", str(root)],
        check=True,
    )
    return root


def unmount_overlay(dest: Path) -> None:
    root = dest / "root"
    if os.path.ismount(root):
        subprocess.run(["umount", str(root)], check=False)


def remove_tree(path: Path) -> None:
    """rm -rf that also copes with immutable-free but odd trees (device nodes, sockets)."""
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="bookworm")
    parser.add_argument("--variant", default="minbase")
    parser.add_argument("--package", action="append", default=[])
    parser.add_argument("--name", default="host")
    args = parser.parse_args(argv)
    recipe = Recipe(suite=args.suite, variant=args.variant, packages=tuple(args.package), name=args.name)
    print(build_rootfs(recipe))
    return 0


if __name__ == "__main__":
    sys.exit(main())
