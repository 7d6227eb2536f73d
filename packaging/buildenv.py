"""The build chroot: Debian 12 (bookworm) with Debian's python3 and the pinned build tools.

The image is made by mmdebstrap and cached by recipe digest (tests/images/rootfs.py): the Debian
packages below, the pinned build tools (packaging/requirements-build.txt) and this file's hook text.
Each build runs in a throwaway overlay of it, so the image stays as built.

    python3 packaging/buildenv.py image           # build (or find) the image, print its path
    (used by packaging/build.py)
"""
from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.images.rootfs import Recipe, build_rootfs, overlay_rootfs, remove_tree, unmount_overlay  # noqa: E402

PACKAGES = (
    # Debian's own interpreter: staticx refuses one with DT_RUNPATH (pyenv builds have it).
    "python3", "python3-venv", "python3-dev",
    # python-prctl is compiled here; the single file's stub is linked statically (zlib included).
    "gcc", "libc6-dev", "libcap-dev", "zlib1g-dev", "binutils", "ca-certificates",
    # rpmbuild: the .rpm is nfpm's source rpm rebuilt (packaging/build.py, packages()).
    "rpm",
)
BUILD_VENV = "/opt/build"
BUILD_CA = "/opt/build-ca.crt"
REQUIREMENTS = (REPO / "packaging" / "requirements-build.txt").read_text()


def recipe() -> Recipe:
    req = shlex.quote(REQUIREMENTS)
    return Recipe(
        name="build",
        suite="bookworm",
        packages=PACKAGES,
        hooks=(
            f'printf %s {req} > "$1/opt/requirements-build.txt"',
            f'chroot "$1" python3 -m venv {BUILD_VENV}',
            # pip trusts what this machine's pip trusts (PIP_CERT), for the build only.
            f'cp "${{PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}" "$1{BUILD_CA}"',
            f'chroot "$1" env -i PATH=/usr/bin:/bin PIP_CERT={BUILD_CA} {BUILD_VENV}/bin/pip install -q --no-cache-dir '
            f'--disable-pip-version-check -r /opt/requirements-build.txt',
            f'rm -f "$1{BUILD_CA}"',
            f'chroot "$1" {BUILD_VENV}/bin/pip freeze --all > "$1/opt/build-tools.freeze"',
        ),
        version="1",
    )


@contextlib.contextmanager
def overlay() -> Iterator[Path]:
    """A writable overlay of the build image with /proc, /dev and resolv.conf; removed on exit."""
    image = build_rootfs(recipe())
    work = Path(tempfile.mkdtemp(prefix="hostagent-build-", dir="/var/tmp"))
    mounts: list[Path] = []
    try:
        root = overlay_rootfs(image, work)
        for src, fstype in (("/proc", "proc"), ("/dev", None)):
            dest = root / src.lstrip("/")
            if fstype:
                subprocess.run(["mount", "-t", fstype, fstype, str(dest)], check=True)
            else:
                subprocess.run(["mount", "--rbind", src, str(dest)], check=True)
                subprocess.run(["mount", "--make-rslave", str(dest)], check=True)
            mounts.append(dest)
        (root / "etc/resolv.conf").unlink(missing_ok=True)
        (root / "etc/resolv.conf").write_bytes(Path("/etc/resolv.conf").read_bytes())
        ca = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
        (root / BUILD_CA.lstrip("/")).write_bytes(ca.read_bytes())
        yield root
    finally:
        for dest in reversed(mounts):
            subprocess.run(["umount", "-R", "-l", str(dest)], check=False)
        unmount_overlay(work)
        remove_tree(work)


def run(root: Path, script: str, env: dict[str, str] | None = None, cwd: str = "/") -> None:
    """Run a shell script as root inside the chroot at `root`; raise on failure."""
    environ = {"PATH": f"{BUILD_VENV}/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
               "SOURCE_DATE_EPOCH": "0", "PYTHONHASHSEED": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
               "PIP_CERT": BUILD_CA, "PIP_NO_CACHE_DIR": "1", **(env or {})}
    subprocess.run(["chroot", str(root), "sh", "-euc", f"cd {shlex.quote(cwd)} && {script}"], check=True, env=environ)


def main(argv: list[str]) -> int:
    if argv[:1] == ["image"]:
        print(build_rootfs(recipe()))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
