"""Size and start-up time of the single-file builds in dist/ (packaging/README.md's table).

    python3 packaging/measure.py [FILE ...]   # default: dist/hostagent-*-linux-x86_64, dist/variants/*, .venv

Wall time, median of MEASURE_RUNS rounds (default 9), as root on this machine, nothing installed. The
builds take turns within each round, so load from other work hits them alike: compare rows.
Columns: `--version`; `status`; for builds that keep an unpacked copy (the runstub, Nuitka's cached
onefile) the first start as root with that copy removed; and a start as nobody with no copy (the
runstub then unpacks into a private temp dir at every start).
"""
from __future__ import annotations

import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHES = (Path("/var/cache/hostagent"), Path.home() / ".cache" / "hostagent-nuitka")
RUNS = int(os.environ.get("MEASURE_RUNS", "9"))


def drop_caches(home: str) -> None:
    for cache in CACHES + (Path(home) / ".cache",):
        shutil.rmtree(cache, ignore_errors=True)


def once(argv: list[str], user_home: str | None = None) -> float:
    # `status` reads an empty state dir, whatever this machine has installed.
    env = dict(os.environ, HOSTAGENT_STATE_DIR="/nonexistent/hostagent-measure")
    pre: list[str] = []
    if user_home:
        pre = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        env.update(HOME=user_home, TMPDIR=user_home)
    t0 = time.monotonic()
    r = subprocess.run(pre + argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/", env=env)
    dt = time.monotonic() - t0
    if r.returncode not in (0, 1):
        raise RuntimeError(f"{pre + argv}: rc={r.returncode}: {r.stderr[-500:]}")
    return dt


def keeps_copy(f: str) -> bool:
    return f.endswith("-nuitka") or (not f.endswith("/hostagent") and
                                     b"HOSTAGENT-RUN-1\n" in Path(f).read_bytes()[-96:])


def main(files: list[str]) -> int:
    files = [os.path.abspath(f) for f in files] or (
        sorted(glob.glob(str(REPO / "dist" / "hostagent-*-linux-x86_64")))
        + sorted(glob.glob(str(REPO / "dist" / "variants" / "*"))) + [str(REPO / ".venv" / "bin" / "hostagent")])
    home = tempfile.mkdtemp(prefix="measure-nobody-")
    os.chown(home, 65534, 65534)
    cols = ("version", "status", "first", "nobody")
    times: dict[str, dict[str, list[float]]] = {f: {c: [] for c in cols} for f in files}
    try:
        for _ in range(RUNS):
            for f in files:
                t = times[f]
                if keeps_copy(f):
                    drop_caches(home)
                    t["first"].append(once([f, "--version"]))
                t["version"].append(once([f, "--version"]))
                t["status"].append(once([f, "status"]))
                if keeps_copy(f):
                    drop_caches(home)
                t["nobody"].append(once([f, "--version"], user_home=home))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print("| file | size | `--version` | `status` | first start (unpack) | as nobody, no cache (`--version`) |")
    print("|---|---|---|---|---|---|")
    for f in files:
        size = "—" if f.endswith("/hostagent") else f"{os.path.getsize(f) / 2**20:.1f} MiB"
        cells = [f"{statistics.median(v):.2f} s" if v else "—" for v in times[f].values()]
        print(f"| {Path(f).name} | {size} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
