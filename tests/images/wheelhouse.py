"""A wheelhouse of hostagent and its dependencies, for hosts without internet.

Test hosts install hostagent the README's way, from this directory:
    python3 -m venv /opt/hostagent
    /opt/hostagent/bin/pip install --no-index --find-links WHEELHOUSE 'hostagent[k8s]'   # or without [k8s]

The wheels are built with the python given (default: this checkout's .venv,
CPython 3.11). python-prctl is a C extension compiled here, and PyYAML ships
per-version wheels, so the wheelhouse installs only on the same CPython minor
version and architecture: Debian 12 (python3.11) from the default. Debian 11
(3.9) or 13 (3.13) need a wheelhouse built by that version (`python=`).

Dependency wheels are cached by the digest of pyproject.toml and the python's
version; the hostagent wheel itself is rebuilt every call from a copy of the
working tree (so it is what is being tested, and the tree is not written to).

    python -m tests.images.wheelhouse [OUT_DIR]
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PYTHON = REPO / ".venv" / "bin" / "python"
CACHE_DIR = Path(os.environ.get("HOSTAGENT_TEST_CACHE", "/var/cache/hostagent-tests"))
_COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", "build", "dist", "*.egg-info", ".pytest_cache", ".cache", "tests",
)


def python_version(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return out.stdout.strip()


def _pip_wheel(python: Path, args: list[str], out: Path) -> None:
    result = subprocess.run(
        [str(python), "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(out), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pip wheel {' '.join(args)} failed:\n{result.stdout[-4000:]}")


def _source_copy(dest: Path) -> Path:
    src = dest / "src"
    shutil.copytree(REPO, src, ignore=_COPY_IGNORE, symlinks=True)
    return src


def _deps_wheelhouse(python: Path, version: str, cache_dir: Path) -> Path:
    """Wheels of hostagent's dependencies (not hostagent), cached."""
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + version.encode()).hexdigest()[:16]
    final = cache_dir / f"wheels-deps-py{version}-{digest}"
    if (final / ".complete").exists():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".complete").exists():
            return final
        work = Path(tempfile.mkdtemp(prefix=".wheels-", dir=cache_dir))
        try:
            out = work / "wheels"
            # Building hostagent with its deps resolves exactly pyproject's requirements; the k8s extra's
            # too, so `pip install 'hostagent[k8s]'` works offline from the same directory.
            _pip_wheel(python, [f"{_source_copy(work)}[k8s]"], out)
            for wheel in out.glob("hostagent-*.whl"):
                wheel.unlink()
            (out / ".complete").write_text(version + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.rename(out, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def build_wheelhouse(out_dir: Path, python: Path = DEFAULT_PYTHON, cache_dir: Path = CACHE_DIR) -> Path:
    """Fill `out_dir` with hostagent's wheel (from the working tree) and its deps' wheels."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    version = python_version(python)
    deps = _deps_wheelhouse(python, version, cache_dir)
    for wheel in deps.glob("*.whl"):
        shutil.copy2(wheel, out_dir / wheel.name)
    with tempfile.TemporaryDirectory(prefix="hostagent-src-") as tmp:
        _pip_wheel(python, ["--no-deps", str(_source_copy(Path(tmp)))], out_dir)
    return out_dir


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="wheelhouse-"))
    print(build_wheelhouse(target))
