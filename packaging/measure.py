"""Size and start-up time of the single-file variants in dist/ (packaging/README.md's table).

    python3 packaging/measure.py [FILE ...]      # default: dist/hostagent-*-linux-x86_64 and dist/variants/*

Each command runs N times (median wall time), as root, on this machine: `--version`, `status` (nothing
installed). For the runstub variant also the first start as root (its cache removed first: it unpacks
into the cache) and a start as nobody with no cache (it unpacks into a private temp dir every time).
"""
from __future__ import annotations

import glob
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path("/var/cache/hostagent")
N = int(os.environ.get("MEASURE_RUNS", "7"))


def timed(argv: list[str], pre=None, user: str | None = None) -> float:
    times = []
    for _ in range(N):
        if pre:
            pre()
        cmd = (["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if user else []) + argv
        t0 = time.monotonic()
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/")
        dt = time.monotonic() - t0
        if r.returncode not in (0, 1):
            raise RuntimeError(f"{cmd}: rc={r.returncode}: {r.stderr[-500:]}")
        times.append(dt)
    return statistics.median(times)


def drop_cache() -> None:
    shutil.rmtree(CACHE, ignore_errors=True)


def main(files: list[str]) -> int:
    files = files or sorted(glob.glob(str(REPO / "dist" / "hostagent-*-linux-x86_64"))) + sorted(
        glob.glob(str(REPO / "dist" / "variants" / "*")))
    print("| file | size | `--version` | `status` | first start (unpack) | as nobody, no cache (`--version`) |")
    print("|---|---|---|---|---|---|")
    for f in files:
        f = os.path.abspath(f)
        size = os.path.getsize(f) / 2**20
        is_stub = b"HOSTAGENT-RUN-1\n" in Path(f).read_bytes()[-96:]
        first = f"{timed([f, '--version'], pre=drop_cache):.2f} s" if is_stub else "—"
        if is_stub:
            subprocess.run([f, "--version"], stdout=subprocess.DEVNULL, check=True)  # fill the cache
        version = timed([f, "--version"])
        status = timed([f, "status"])
        nobody = f"{timed([f, '--version'], pre=drop_cache if is_stub else None, user='nobody'):.2f} s"
        print(f"| {Path(f).name} | {size:.1f} MiB | {version:.2f} s | {status:.2f} s | {first} | {nobody} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
