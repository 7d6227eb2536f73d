"""Inside the build chroot (run by /opt/build/bin/python, the source at /src): freeze hostagent.

    python freeze.py OUT [VARIANT ...]

Variants (default: runstub, the one shipped):
  runstub         PyInstaller onedir + the loader and glibc it was built with, packed behind
                  packaging/stub/runstub.c: unpacked once into a root-owned cache, then exec'd from it
  staticx         PyInstaller onefile + staticx (unpacks twice at every start)
  staticx-nocomp  the same, staticx --no-compress
  onefile         PyInstaller onefile alone (needs the host's glibc: for comparison only)
  nuitka          Nuitka onefile, unpacked once into a cached dir (needs the host's glibc: comparison only)
Each variant V writes OUT/V (one executable file).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path("/src")
PKG = SRC / "packaging"
WORK = Path("/work")
LOADER = "ld-linux-x86-64.so.2"
# PT_INTERP and DT_RPATH are rewritten by the stub at unpack time (absolute paths: $ORIGIN needs /proc);
# these reserve room for a long unpack path.
INTERP_PLACEHOLDER = "/" + "hostagent-runstub-loader-placeholder/" * 13
RPATH_PLACEHOLDER = "/hostagent-runstub-rpath" + "-placeholder" * 50
# glibc dlopens libgcc_s for thread cancellation; bundle it even where no ELF names it.
ALWAYS = ("libgcc_s.so.1",)


def sh(*argv: str, **kw) -> subprocess.CompletedProcess:
    shown = argv if len(argv) < 60 else (*argv[:40], f"... ({len(argv) - 40} more)")
    print("+", " ".join(shown), flush=True)
    return subprocess.run(argv, check=True, **kw)


def generated_k8s_modules() -> list[str]:
    """The kubernetes client's generated API and model classes (~1100 modules, 6 MB compressed):
    k8s-sync uses only its config loaders (hostagent/k8ssync/kube.py), and the client imports these
    lazily, by name, only when one is used; PyInstaller would still freeze them all."""
    import importlib.util

    names = []
    for package in ("kubernetes.client.api", "kubernetes.client.models"):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"{package} not found: is kubernetes installed in the build venv?")
        for location in spec.submodule_search_locations:
            names += [f"{package}.{f.stem}" for f in sorted(Path(location).glob("*.py")) if f.stem != "__init__"]
    return names


def pyinstaller(mode: str) -> Path:
    dist = WORK / f"dist-{mode}"
    excludes = [arg for name in generated_k8s_modules() for arg in ("--exclude-module", name)]
    sh(sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level=WARN", f"--{mode}",
       "--name", "hostagent", "--distpath", str(dist), "--workpath", str(WORK / f"build-{mode}"),
       "--specpath", str(WORK), "--collect-submodules", "hostagent", "--collect-data", "hostagent",
       "--hidden-import", "prctl", "--hidden-import", "_prctl", *excludes,
       # The licences travel inside the file: hostagent's and the bundled components' (DEP-5).
       "--add-data", f"{SRC / 'LICENSE'}:licenses", "--add-data", f"{PKG / 'debian' / 'copyright'}:licenses",
       "--runtime-hook", str(PKG / "pyi_rth_hostagent.py"), str(PKG / "entry.py"))
    return dist / "hostagent"


def is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def needed_libs(elf: Path) -> set[Path]:
    out = subprocess.run(["ldd", str(elf)], capture_output=True, text=True).stdout
    libs = set()
    for line in out.splitlines():
        m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+ld-linux\S+)", line)
        if m:
            libs.add(Path(m.group(1)))
    return libs


def runstub(out: Path) -> None:
    bundle = pyinstaller("onedir")
    internal = bundle / "_internal"
    have = {p.name for p in internal.rglob("*")}
    wanted: dict[str, Path] = {}
    for path in sorted(bundle.rglob("*")):
        if path.is_file() and not path.is_symlink() and is_elf(path):
            for lib in needed_libs(path):
                wanted.setdefault(lib.name, lib)
    for name in ALWAYS:
        wanted.setdefault(name, Path("/lib/x86_64-linux-gnu") / name)
    for name, lib in sorted(wanted.items()):
        if name not in have:
            shutil.copy(lib.resolve(), internal / name)
            (internal / name).chmod(0o755)
            print(f"bundled {lib}", flush=True)
    if not (internal / LOADER).exists():
        raise SystemExit(f"{LOADER} was not bundled")
    program = bundle / "hostagent"
    sh("patchelf", "--set-interpreter", INTERP_PLACEHOLDER, "--force-rpath", "--set-rpath", RPATH_PLACEHOLDER,
       str(program))
    stub = WORK / "runstub"
    sh("gcc", "-O2", "-static", "-s", "-Wall", "-Wextra", "-o", str(stub), str(PKG / "stub" / "runstub.c"), "-lz")
    sh(sys.executable, str(PKG / "pack.py"), str(stub), str(bundle), str(out))


def staticx(out: Path, *flags: str) -> None:
    onefile = WORK / "dist-onefile" / "hostagent"
    if not onefile.exists():
        pyinstaller("onefile")
    sh("staticx", *flags, str(onefile), str(out))


def hostagent_version() -> str:
    return subprocess.run([sys.executable, "-c", "import hostagent; print(hostagent.__version__)"], check=True,
                          capture_output=True, text=True, cwd="/").stdout.strip()


def nuitka(out: Path) -> None:
    sh(sys.executable, "-m", "pip", "install", "-q", "--no-cache-dir", "-r", str(PKG / "requirements-variants.txt"))
    sh(sys.executable, "-m", "nuitka", "--onefile", "--quiet",
       f"--onefile-tempdir-spec={{CACHE_DIR}}/hostagent-nuitka/{hostagent_version()}", "--include-package=hostagent",
       "--include-package-data=hostagent", "--include-module=prctl", "--include-module=_prctl",
       "--output-dir=/work/nuitka", "--output-filename=hostagent", str(PKG / "entry.py"))
    shutil.copy(WORK / "nuitka" / "hostagent", out)


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    for variant in argv[1:] or ["runstub"]:
        out = out_dir / variant
        if variant == "runstub":
            runstub(out)
        elif variant == "staticx":
            staticx(out)
        elif variant == "staticx-nocomp":
            staticx(out, "--no-compress")
        elif variant == "nuitka":
            nuitka(out)
        elif variant == "onefile":
            if not (WORK / "dist-onefile" / "hostagent").exists():
                pyinstaller("onefile")
            shutil.copy(WORK / "dist-onefile" / "hostagent", out)
        else:
            raise SystemExit(f"unknown variant {variant}")
        print(f"{variant}: {out.stat().st_size / 2**20:.1f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main(sys.argv[1:]))
