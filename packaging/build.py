"""The release build (packaging/build.sh runs it): everything goes to dist/.

    python3 packaging/build.py [--variants runstub,staticx,...] [--only single|packages|collection|wheels]

dist/hostagent-V-linux-x86_64         the single file (frozen in the bookworm build chroot)
dist/hostagent_V_amd64.deb, dist/hostagent-V-1.x86_64.rpm   it, as /usr/sbin/hostagent (nfpm; rpmbuild)
dist/hostagent-k8s-sync-V.oci.tar     k8s-sync's image (oci-archive; packaging/oci.py), .oci.digest its manifest digest
dist/hostagent-deepflow-V.tar.gz      the Ansible role as a collection
dist/hostagent-V.tar.gz, dist/hostagent-V-py3-none-any.whl   the sdist and hostagent's wheel
dist/wheelhouse-py3.X/                wheels for pip users (bullseye 3.9, bookworm 3.11, trixie 3.13)
dist/SHA256SUMS
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "packaging"))

import buildenv  # noqa: E402

DIST = REPO / "dist"
# What the artifacts are made of: a change here is a new build (tests/packaging caches by this digest).
INPUTS = ("pyproject.toml", "LICENSE", "CHANGELOG.md", "README.md", "hostagent", "systemd", "packaging", "ansible",
          "tests/images/rootfs.py")
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", "build", "dist", "*.egg-info",
                                     ".pytest_cache", ".cache")


def version() -> str:
    text = (REPO / "hostagent" / "__init__.py").read_text()
    m = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not m:
        raise SystemExit("no __version__ in hostagent/__init__.py")
    return m.group(1)


def inputs_digest() -> str:
    h = hashlib.sha256()
    for top in INPUTS:
        base = REPO / top
        for path in sorted([base] if base.is_file() else base.rglob("*")):
            rel = path.relative_to(REPO).as_posix()
            if "__pycache__" in rel or rel.endswith(".pyc") or "/collections/" in rel or path.is_dir():
                continue
            h.update(rel.encode() + b"\0" + (os.readlink(path).encode() if path.is_symlink() else path.read_bytes()))
    return h.hexdigest()[:16]


def source_date_epoch() -> int:
    """The build's date: $SOURCE_DATE_EPOCH, else the commit's date (a `git archive` export without .git:
    its files' mtimes, which are the commit's). Every file in the packages, tarballs and wheels carries it."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    git = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=REPO, capture_output=True, text=True, check=False)
    if git.returncode == 0 and git.stdout.strip():
        return int(git.stdout)
    return int(max((REPO / top).stat().st_mtime for top in INPUTS))


def project() -> dict:
    """pyproject's [project]: the one place for the maintainer and the URLs."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def maintainer() -> str:
    author = project()["authors"][0]
    return f"{author['name']} <{author['email']}>"


def python_with(module: str) -> str:
    """A Python that imports `module` (hostagent's CLI for docs.py, pypa/build): this one, else .venv's
    (tests/setup.sh and build.sh put them there)."""
    for exe in (sys.executable, str(REPO / ".venv" / "bin" / "python")):
        if subprocess.run([exe, "-c", f"import {module}"], cwd=REPO, capture_output=True, check=False).returncode == 0:
            return exe
    raise SystemExit(f"build: no Python here imports {module} (bash tests/setup.sh makes .venv)")


def log(msg: str) -> None:
    print(f"build: {msg}", file=sys.stderr, flush=True)


def single_file(ver: str, variants: list[str]) -> Path:
    """Freeze in a throwaway overlay of the build chroot; the shipped variant is the first one."""
    with buildenv.overlay() as root:
        shutil.copytree(REPO, root / "src", ignore=COPY_IGNORE, symlinks=True)
        copyright_file = root / "src" / "packaging" / "debian" / "copyright"  # frozen into the file
        copyright_file.write_text(copyright_file.read_text().replace("@MAINTAINER@", maintainer()))
        (root / "out").mkdir()
        buildenv.run(root, (
            # Runtime dependencies pinned; python-prctl is compiled here, never taken from a wheel cache
            # (a cached wheel built elsewhere may carry a DT_RUNPATH that breaks the bundle).
            # -g0: no build paths (pip's random temp dirs) in the compiled extension.
            "CFLAGS=-g0 pip install -q --no-cache-dir -r /src/packaging/requirements-runtime.txt && "
            "pip install -q --no-cache-dir --no-deps /src && "
            "cd /work 2>/dev/null || mkdir /work && cd /work && "
            f"python /src/packaging/freeze.py /out {' '.join(variants)} && "
            "pip freeze --all > /out/freeze.txt && "
            "dpkg-query -W -f '${Package}=${Version}\\n' libc6 python3.11 libpython3.11 zlib1g > /out/debian.txt"
        ))
        DIST.mkdir(exist_ok=True)
        shipped = DIST / f"hostagent-{ver}-linux-x86_64"
        for i, variant in enumerate(variants):
            dest = shipped if i == 0 else DIST / "variants" / f"hostagent-{ver}-{variant}"
            dest.parent.mkdir(exist_ok=True)
            shutil.copy2(root / "out" / variant, dest)
            os.chmod(dest, 0o755)
        buildinfo = (root / "out" / "freeze.txt").read_text() + (root / "out" / "debian.txt").read_text()
        (DIST / "BUILDINFO.txt").write_text(
            f"hostagent {ver}: frozen in a Debian bookworm chroot ({variants[0]}).\n" + buildinfo)
    log(f"{shipped.name}: {shipped.stat().st_size / 2**20:.1f} MiB")
    return shipped


def package_docs(stage: Path, ver: str) -> None:
    """What the packages ship beside the file: the man page and completions (from the CLI), the
    changelog (from CHANGELOG.md), the licence and the Debian copyright, the lintian overrides."""
    epoch = int(os.environ["SOURCE_DATE_EPOCH"])
    gen = stage / "gen"
    subprocess.run([python_with("hostagent.cli.app"), str(REPO / "packaging" / "docs.py"), str(gen)], cwd=REPO, check=True)
    (stage / "hostagent.8.gz").write_bytes(gzip.compress((gen / "hostagent.8").read_bytes(), 9, mtime=epoch))
    shutil.copy2(gen / "hostagent.bash", stage / "hostagent.bash")
    shutil.copy2(gen / "_hostagent", stage / "_hostagent")
    subprocess.run([sys.executable, str(REPO / "packaging" / "changelog.py"), "chglog", str(REPO / "CHANGELOG.md"), ver,
                    maintainer(), str(stage / "changelog.yaml")], check=True)
    shutil.copy2(REPO / "LICENSE", stage / "LICENSE")
    shutil.copy2(REPO / "README.md", stage / "README.md")
    # Debian compresses documentation over 4 kB (policy 12.3).
    (stage / "README.md.gz").write_bytes(gzip.compress((REPO / "README.md").read_bytes(), 9, mtime=epoch))
    copyright_text = (REPO / "packaging" / "debian" / "copyright").read_text().replace("@MAINTAINER@", maintainer())
    (stage / "copyright").write_text(copyright_text)
    shutil.copy2(REPO / "packaging" / "debian" / "lintian-overrides", stage / "lintian-overrides")


# rpmbuild's settings for the .rpm (packages()): dated by the commit and the same on every machine (the
# header's build time and host, every file's mtime); payload and file digests fixed here, as nfpm wrote
# them, not left to the rpm version's defaults; nothing is compiled, so no compiler flags in the header.
RPMBUILD_MACROS = {"_topdir": "/pkg/rpmbuild", "use_source_date_epoch_as_buildtime": "1",
                   "clamp_mtime_to_source_date_epoch": "1", "_buildhost": "reproducible",
                   "_binary_payload": "w9.gzdio", "_binary_filedigest_algorithm": "8", "optflags": "%{nil}"}


def packages(ver: str) -> list[Path]:
    """.deb and .rpm of the single file, from packaging/nfpm.yaml (nfpm from the build chroot's pinned venv).
    The .rpm is nfpm's source rpm rebuilt by rpmbuild (Debian's rpm in the chroot): the same spec, files and
    scriptlets, and rpmbuild declares each scriptlet's /bin/sh with its flag (Requires(preun): /bin/sh, ...),
    which nfpm 2.48 can do for %post only."""
    single = DIST / f"hostagent-{ver}-linux-x86_64"
    epoch = int(os.environ["SOURCE_DATE_EPOCH"])
    config = ((REPO / "packaging" / "nfpm.yaml").read_text().replace("@VERSION@", ver)
              .replace("@MAINTAINER@", maintainer()).replace("@HOMEPAGE@", project()["urls"]["Homepage"])
              .replace("@MTIME@", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))))
    with buildenv.overlay() as root:
        (root / "pkg").mkdir()
        shutil.copy2(single, root / "pkg" / "hostagent")
        for script in (REPO / "packaging" / "scripts").iterdir():
            shutil.copy2(script, root / "pkg" / script.name)
        package_docs(root / "pkg", ver)
        (root / "pkg" / "nfpm.yaml").write_text(config)
        deb, rpm = f"hostagent_{ver}_amd64.deb", f"hostagent-{ver}-1.x86_64.rpm"
        defines = " ".join(f"--define {shlex.quote(f'{k} {v}')}" for k, v in RPMBUILD_MACROS.items())
        buildenv.run(root, f"nfpm package -f nfpm.yaml -p deb -t {deb} >/dev/null"
                           f" && nfpm package -f nfpm.yaml -p srpm -t hostagent.src.rpm >/dev/null"
                           f" && {{ rpmbuild --rebuild {defines} hostagent.src.rpm >rpmbuild.log 2>&1"
                           f" || {{ cat rpmbuild.log >&2; exit 1; }}; }}",
                     cwd="/pkg", env={"SOURCE_DATE_EPOCH": str(epoch)})
        shutil.copy2(root / "pkg" / deb, DIST / deb)
        shutil.copy2(root / "pkg" / "rpmbuild" / "RPMS" / "x86_64" / rpm, DIST / rpm)
    return [DIST / deb, DIST / rpm]


def normalize_tarball(path: Path, epoch: int) -> None:
    """Rewrite a .tar.gz with every entry dated `epoch`, no owners, and no time in the gzip header:
    ansible-galaxy and setuptools keep the files' own mtimes (the checkout's)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(path) as src, tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for member in src.getmembers():
            member.mtime = epoch
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            member.pax_headers = {}
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    with open(path.with_suffix(".tmp"), "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=epoch) as gz:
        gz.write(buf.getvalue())
    path.with_suffix(".tmp").rename(path)


def python_dists(ver: str) -> list[Path]:
    """The sdist and hostagent's own wheel (pure Python), built by pypa/build from a clean copy of the tree."""
    with tempfile.TemporaryDirectory(prefix="hostagent-sdist-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(REPO, src, ignore=COPY_IGNORE, symlinks=True)
        built = subprocess.run([python_with("build"), "-m", "build", "--sdist", "--wheel", "--outdir", str(DIST), str(src)],
                               capture_output=True, text=True, check=False)
        if built.returncode != 0:  # its chatter (setuptools' warnings) only when it failed
            raise SystemExit(f"build: python -m build failed:\n{built.stdout}{built.stderr}")
    sdist = DIST / f"hostagent-{ver}.tar.gz"
    normalize_tarball(sdist, int(os.environ["SOURCE_DATE_EPOCH"]))
    return [sdist, DIST / f"hostagent-{ver}-py3-none-any.whl"]


def collection(ver: str) -> Path:
    """The role as a collection tarball (ansible-galaxy from the tests' pinned ansible-core), built from a
    copy of ansible/ whose galaxy.yml gets hostagent's version."""
    exe = shutil.which("ansible-galaxy") or str(REPO / ".venv" / "bin" / "ansible-galaxy")
    if not Path(exe).exists():
        raise SystemExit("ansible-galaxy not found: pip install -r tests/ansible/requirements.txt")
    with tempfile.TemporaryDirectory(prefix="hostagent-collection-") as tmp:
        src = Path(tmp) / "deepflow"
        shutil.copytree(REPO / "ansible", src, symlinks=True,
                        ignore=shutil.ignore_patterns("collections", "__pycache__", "*.pyc", ".cache"))
        galaxy = src / "galaxy.yml"
        text, n = re.subn(r"^version: .*$", f"version: {ver}", galaxy.read_text(), count=1, flags=re.M)
        if n != 1:
            raise SystemExit("ansible/galaxy.yml has no version line")
        galaxy.write_text(text)
        shutil.copy2(REPO / "LICENSE", src / "LICENSE")
        subprocess.run([sys.executable, str(REPO / "packaging" / "changelog.py"), "collection",
                        str(REPO / "ansible" / "CHANGELOG.md"), ver, str(src / "changelogs" / "changelog.yaml")], check=True)
        subprocess.run([exe, "collection", "build", "--force", "--output-path", str(DIST), str(src)],
                       check=True, stdout=subprocess.DEVNULL)
    out = DIST / f"hostagent-deepflow-{ver}.tar.gz"
    normalize_tarball(out, int(os.environ["SOURCE_DATE_EPOCH"]))
    return out


def wheelhouses() -> list[Path]:
    """Wheels for pip users, one wheelhouse per Debian suite's python3: bookworm's (3.11) by
    tests/images/wheelhouse.py with .venv's python, bullseye's (3.9) and trixie's (3.13) from it by
    tests/images/vm_image.py (binary wheels for that Python, else compiled in that suite's chroot)."""
    from tests.images.vm_image import TIERS, target_wheels
    from tests.images.wheelhouse import build_wheelhouse

    base = DIST / "wheelhouse-py3.11"
    shutil.rmtree(base, ignore_errors=True)
    build_wheelhouse(base)
    out = [base]
    for tier in (TIERS["bullseye-v1"], TIERS["trixie-v2"]):
        dest = DIST / f"wheelhouse-py{tier.python}"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        deps = target_wheels(tier, base) or base
        for wheel in list(deps.glob("*.whl")) + list(base.glob("hostagent-*.whl")):
            shutil.copy2(wheel, dest / wheel.name)
        out.append(dest)
    return out


def sha256sums() -> Path:
    lines = []
    for path in sorted(DIST.rglob("*")):
        if path.is_file() and path.name != "SHA256SUMS" and not path.name.startswith("."):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            lines.append(f"{digest}  {path.relative_to(DIST).as_posix()}\n")
    out = DIST / "SHA256SUMS"
    out.write_text("".join(lines))
    return out


def main(argv: list[str]) -> int:
    global DIST
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="runstub", help="comma-separated; the first is shipped")
    parser.add_argument("--only", action="append", choices=("single", "oci", "packages", "collection", "python", "wheels"))
    parser.add_argument("--dist", type=Path, default=DIST, help="output directory [default: dist/]")
    args = parser.parse_args(argv)
    DIST = args.dist.resolve()
    DIST.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise SystemExit("build: run as root (mmdebstrap, chroot, mounts)")
    # A SIGTERM unwinds like ^C: the chroot's mounts and overlay are taken down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ver = version()
    # One date for everything built (tar entries, package files, changelogs, the man page, wheels).
    os.environ["SOURCE_DATE_EPOCH"] = str(source_date_epoch())
    steps = args.only or ["single", "oci", "packages", "collection", "python", "wheels"]
    if "single" in steps:
        single_file(ver, args.variants.split(","))
    if "oci" in steps:
        import oci

        oci.build(DIST / f"hostagent-{ver}-linux-x86_64", DIST, epoch=int(os.environ["SOURCE_DATE_EPOCH"]), ver=ver)
    if "packages" in steps:
        packages(ver)
    if "collection" in steps:
        collection(ver)
    if "python" in steps:
        python_dists(ver)
    if "wheels" in steps:
        wheelhouses()
    sha256sums()
    (DIST / ".inputs").write_text(inputs_digest() + "\n")
    for path in sorted(DIST.iterdir()):
        log(f"{path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
