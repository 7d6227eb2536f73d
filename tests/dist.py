"""The release artifacts (packaging/build.sh) for the tests (tests/packaging, the single-file nspawn and
VM lifecycles, the role): fixtures `dist` and `single_file`, registered in tests/conftest.py.

Found in dist/ when its .inputs digest matches this checkout, else in the cache
(HOSTAGENT_TEST_CACHE/dist-<digest>). Missing: in CI (CI=true) they are built into the cache
(the single file, .deb, .rpm, the collection, the sdist and wheel; about 2 minutes with a cold build image);
elsewhere the tests skip and say how to build them.
"""
from __future__ import annotations

import fcntl
import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(os.environ.get("HOSTAGENT_TEST_CACHE", "/var/cache/hostagent-tests"))
BUILT = ("single", "oci", "packages", "collection", "python")


@functools.cache
def packaging_module(name: str) -> ModuleType:
    """packaging/<name>.py, by path (packaging/ is not a package, and `oci` alone is another project's
    name on PyPI): loaded once per session."""
    spec = importlib.util.spec_from_file_location(f"hostagent_packaging_{name}", REPO / "packaging" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def version() -> str:
    """The release's version, as the build names the artifacts by it."""
    return str(packaging_module("build").version())


def _complete(d: Path, digest: str) -> bool:
    ver = version()
    names = (f"hostagent-{ver}-linux-x86_64", f"hostagent_{ver}_amd64.deb", f"hostagent-{ver}-1.x86_64.rpm",
             f"hostagent-deepflow-{ver}.tar.gz", f"hostagent-k8s-sync-{ver}.oci.tar", f"hostagent-{ver}.tar.gz",
             f"hostagent-{ver}-py3-none-any.whl", "SHA256SUMS")
    marker = d / ".inputs"
    return marker.exists() and marker.read_text().strip() == digest and all((d / n).exists() for n in names)


def find_or_build_dist() -> Path:
    digest = packaging_module("build").inputs_digest()
    for d in (REPO / "dist", CACHE_DIR / f"dist-{digest}"):
        if _complete(d, digest):
            return d
    if os.environ.get("CI") != "true":
        pytest.skip("no release artifacts for this checkout: run `bash packaging/build.sh` (or CI=true)")
    if os.geteuid() != 0 or shutil.which("mmdebstrap") is None:
        pytest.fail("CI must build the release artifacts: needs root and mmdebstrap")
    out = CACHE_DIR / f"dist-{digest}"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _complete(out, digest):
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, str(REPO / "packaging" / "build.py"), "--dist", str(out)]
            for step in BUILT:
                cmd += ["--only", step]
            subprocess.run(cmd, check=True, cwd=REPO)
    return out


def single_file_in(dist: Path) -> Path:
    return dist / f"hostagent-{version()}-linux-x86_64"


def collection_in(dist: Path) -> Path:
    return dist / f"hostagent-deepflow-{version()}.tar.gz"


# hostagent's own upgrade is tested from the previous release's single file, built from its git tag.
PREVIOUS_RELEASE = "v0.1.0"
# The commit each tag names: a clone without tags (CI's may be one) still finds it in main's history.
RELEASE_COMMITS = {"v0.1.0": "9230ee990cfd8b53072e54d7552046e16fa88cbf"}


def _commit_of(tag: str) -> str:
    for ref in (tag, RELEASE_COMMITS.get(tag)):
        if ref:
            found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=REPO,
                                   capture_output=True, text=True, check=False)
            if found.returncode == 0:
                return found.stdout.strip()
    pytest.skip(f"neither git tag {tag} nor its commit is in this checkout (fetch tags, or a deeper clone)")


def _build_tag(tag: str, out: Path, complete: Callable[[], bool], steps: tuple[str, ...]) -> None:
    """git archive of the tag → its own build.py --only <steps>, in a temp dir; the files into out."""
    if os.environ.get("CI") != "true":
        pytest.skip(f"no release artifacts of {tag}: run with CI=true to build them")
    if os.geteuid() != 0 or shutil.which("mmdebstrap") is None:
        pytest.fail(f"CI must build {tag}'s artifacts: needs root and mmdebstrap")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete():
            return
        import tempfile

        with tempfile.TemporaryDirectory(prefix=f"hostagent-{tag}-", dir=CACHE_DIR) as tmp:
            tree, built = Path(tmp) / "src", Path(tmp) / "dist"
            tree.mkdir()
            archive = subprocess.run(["git", "archive", "--format=tar", _commit_of(tag)], cwd=REPO, capture_output=True,
                                     check=True)
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
            cmd = [sys.executable, str(tree / "packaging" / "build.py"), "--dist", str(built)]
            for step in steps:
                cmd += ["--only", step]
            # Its build.py looks for ansible-galaxy on PATH or in its own tree's .venv: ours.
            env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
            subprocess.run(cmd, check=True, cwd=tree, env=env)
            out.mkdir(exist_ok=True)
            for f in built.iterdir():
                # The collection alone must not replace the SHA256SUMS of the single file beside it.
                if f.is_file() and not (f.name == "SHA256SUMS" and (out / f.name).exists()):
                    shutil.copy2(f, out / f.name)


def _tag_dir(tag: str) -> Path:
    return CACHE_DIR / f"release-{tag}-{_commit_of(tag)[:12]}"


def previous_release(tag: str = PREVIOUS_RELEASE) -> Path:
    """The single file and the .deb/.rpm of an earlier release: built once from its tag (git archive →
    build.py --only single --only packages, in a temp dir) into the cache, named by the tag's commit so a
    moved tag builds again. About 80 s on the 2-core CI machine with the build image cached."""
    out = _tag_dir(tag)

    def complete() -> bool:
        return bool(list(out.glob("hostagent-*-linux-x86_64")) and list(out.glob("hostagent_*_amd64.deb")))

    if not complete():
        _build_tag(tag, out, complete, ("single", "packages"))
    return out


def previous_collection(tag: str = PREVIOUS_RELEASE) -> Path:
    """The earlier release's collection tarball, beside its single file (and SHA256SUMS, which the role
    checks the file against): built from its tag like previous_release(), a few seconds more."""
    out = previous_release(tag)

    def complete() -> bool:
        return bool(list(out.glob("hostagent-deepflow-*.tar.gz")))

    if not complete():
        _build_tag(tag, out, complete, ("collection",))
    return sorted(out.glob("hostagent-deepflow-*.tar.gz"))[0]


def previous_single_file(tag: str = PREVIOUS_RELEASE) -> Path:
    return sorted(previous_release(tag).glob("hostagent-*-linux-x86_64"))[0]
