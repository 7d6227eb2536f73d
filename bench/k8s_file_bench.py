"""What carrying k8s-sync costs the single file: size and start-up, against a file without it.

    sudo .venv/bin/python bench/k8s_file_bench.py [--rounds 9] [--base FILE] [--file FILE] [--json]

--file: this checkout's single file (tests/dist.py: dist/ or the test cache, built when missing, as CI
does). --base: a file without k8s-sync (default: the previous release's, built from its tag into the
test cache, tests/dist.py's previous_single_file; main's before issue 17 is the same build, e.g.
/var/cache/hostagent-tests/dist-<main's digest>/hostagent-*-linux-x86_64). The venv's `hostagent`
(.venv, with the k8s extra) is the reference row.

Runs in a private mount namespace with a tmpfs on /var/cache (the files' root cache), so this
machine's /var/cache/hostagent is never touched. Wall time as root, median of --rounds, one build after
the other (a root start removes another file's copy: taking turns would time unpacks). Columns: size; unpacked size and
files (what the stub lstat's at every start); the first start (unpacking); `--version`; `detect`
(one netlink dump); `status` (nothing installed); `k8s-sync --help`; and for the files that carry it,
`k8s-sync run --once` against the fake apiserver and deepflow-server on loopback (the libraries
imported, the first lists, one report).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CACHE = Path("/var/cache/hostagent")
MIB = 1024 * 1024
INNER = "HOSTAGENT_K8S_FILE_BENCH_INNER"
COMMANDS = {"version": ["--version"], "detect": ["detect"], "status": ["status"], "k8s_help": ["k8s-sync", "--help"]}


def once(argv: list[str], ok: tuple[int, ...] = (0, 1)) -> float:
    env = dict(os.environ, HOSTAGENT_STATE_DIR="/nonexistent/hostagent-bench")
    t0 = time.monotonic()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/", env=env, check=False)
    dt = time.monotonic() - t0
    if r.returncode not in ok:
        raise RuntimeError(f"{argv}: rc={r.returncode}: {r.stderr[-500:]}")
    return dt


def unpacked() -> tuple[int, int]:
    """Bytes and entries of the file's unpacked copy (the only one in the cache)."""
    [copy] = [p for p in CACHE.iterdir() if not p.name.startswith(".") and (p / ".complete").exists()
              and (p / ".complete").read_text().strip() == p.name] or [None]
    if copy is None:
        return 0, 0
    entries = list(copy.rglob("*"))
    return sum(p.stat().st_size for p in entries if p.is_file() and not p.is_symlink()), len(entries)


def k8s_run_once(exe: str, tmp: Path) -> float:
    from tests.integration.k8s_sync_helpers import fakes, write_kubeconfig

    with fakes(tmp) as (api, df):
        kc = write_kubeconfig(tmp / "kubeconfig", api)
        return once([exe, "k8s-sync", "run", "--once", "--quiet", "--controller-ip", "127.0.0.1", "--controller-port",
                     str(df.port), "--cluster-id", "d-abc123", "--kubeconfig", kc], ok=(0,))


def measure(builds: dict[str, str], rounds: int) -> dict[str, dict]:
    """One build after the other: a root start of one file removes the other's copy (another version's,
    to the stub), so taking turns would time an unpack at every switch."""
    fig: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="k8s-file-bench-") as tmp:
        for name, exe in builds.items():
            f = fig[name] = {"size": 0 if name == "venv" else os.path.getsize(exe)}
            if name != "venv":
                shutil.rmtree(CACHE, ignore_errors=True)
                f["first_start"] = once([exe, "--version"])
                f["unpacked_bytes"], f["unpacked_entries"] = unpacked()
            probe = subprocess.run([exe, "k8s-sync", "run", "--once", "--controller-ip", "127.0.0.1", "--cluster-id", "d-x",
                                    "--kubeconfig", "/nonexistent"], capture_output=True, text=True, check=False)
            carries = "needs the Python packages" not in probe.stderr
            samples: dict[str, list[float]] = {c: [] for c in (*COMMANDS, "k8s_run_once")}
            for _ in range(rounds):
                for col, args in COMMANDS.items():
                    samples[col].append(once([exe, *args]))
                if carries:
                    samples["k8s_run_once"].append(k8s_run_once(exe, Path(tmp)))
            f.update({col: statistics.median(v) if v else None for col, v in samples.items()})
    return fig


def table(builds: dict[str, str], fig: dict[str, dict]) -> str:
    def t(v: float | None) -> str:
        return "—" if v is None else f"{v:.3f} s"

    def size(v: int) -> str:
        return f"{v / MIB:.1f} MiB" if v else "—"

    head = ("| build | size | unpacked (entries) | first start (unpack) | `--version` | `detect` | `status` "
            "| `k8s-sync --help` | `k8s-sync run --once` (to the fakes) |")
    rows = [head, "|" + "---|" * 9]
    for name in builds:
        f = fig[name]
        unpack = f"{size(f.get('unpacked_bytes', 0))} ({f.get('unpacked_entries', 0)})" if name != "venv" else "—"
        rows.append(f"| {name} | {size(f['size'])} | {unpack} | {t(f.get('first_start'))} | {t(f['version'])} | "
                    f"{t(f['detect'])} | {t(f['status'])} | {t(f['k8s_help'])} | {t(f['k8s_run_once'])} |")
    names = [n for n in builds if n != "venv"]
    if len(names) == 2:
        a, b = (fig[n] for n in names)
        rows.append("")
        rows.append(f"{names[1]} − {names[0]}: size {(b['size'] - a['size']) / MIB:+.1f} MiB; "
                    + "; ".join(f"{c} {b[c] - a[c]:+.3f} s" for c in ("first_start", *COMMANDS)))
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--base", default="", help="a single file without k8s-sync")
    parser.add_argument("--file", default="", help="the single file with k8s-sync (default: this checkout's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    if os.environ.get(INNER) != "1":
        # A private mount namespace: the tmpfs below hides this machine's /var/cache from this run only.
        os.environ[INNER] = "1"
        os.execvp("unshare", ["unshare", "-m", "--propagation", "private", sys.executable, *sys.argv])
    os.environ.setdefault("CI", "true")  # build what is missing, as CI does
    from tests.dist import find_or_build_dist, previous_single_file, single_file_in

    base = args.base or str(previous_single_file())
    new = args.file or str(single_file_in(find_or_build_dist()))
    files = Path(tempfile.mkdtemp(prefix="k8s-file-bench-files-"))
    builds = {}
    for name, src in (("without k8s-sync", base), ("with k8s-sync", new)):
        dest = files / "files" / name.replace(" ", "-")
        dest.parent.mkdir(exist_ok=True)
        shutil.copy(src, dest)
        builds[name] = str(dest)
    builds["venv"] = str(REPO / ".venv" / "bin" / "hostagent")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/var/cache"], check=True)
    t0 = time.monotonic()
    try:
        fig = measure(builds, args.rounds)
    finally:
        shutil.rmtree(files, ignore_errors=True)
    print(f"base: {base}\nfile: {new}\n")
    print(table(builds, fig))
    print(f"\nload average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; median of {args.rounds}; "
          f"{time.monotonic() - t0:.0f} s")
    if args.json:
        print(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
