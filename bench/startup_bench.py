"""Start-up of every command beside the tools it sits beside (issue 18, item 2): `ip`, hostagent from a
venv and the single file, as root and as an unprivileged user, side by side with the goals.

    sudo .venv/bin/python bench/startup_bench.py [--rounds 7] [--links 10000] [--single FILE] [--json]

Rows: `--version` (ip: `ip -V`), a completion TAB (`hostagent inst<TAB>`, click's bash protocol as
the script `hostagent completion bash` prints it; ip: n/a), `detect` on this host (ip: `ip -d -j link
show`; as root also on a small host: a fresh net and pid namespace holding lo and a veth pair, the
same `unshare` around ip; this host, for root, counts the other netns of every process on it), and
`detect --netns NS --no-other-netns` in a network namespace this bench creates and fills
with --links dummy links through pyroute2 (veth pairs where the kernel has no dummy driver; ip:
`ip -n NS -d -j link show`; root only: entering a named netns needs CAP_SYS_ADMIN). Each figure is
the median and the best wall time of --rounds runs of the whole process (on a shared machine the best
is the least disturbed), after one warm-up run (which writes the venv's bytecode and the user's
single-file cache; the single file's first, unpacking start is printed apart).

The user is nobody with its own HOME and TMPDIR under /var/tmp. The venv column uses .venv as root;
as the user, a venv made from /usr/bin/python3 under /var/tmp (built once with pip, `pip install .`)
since .venv's interpreter may sit under root's home. The single file is --single, else the one
tests/dist.py finds for this checkout (dist/ or the test cache; CI=true builds it).
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
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534
USER_VENV = Path("/var/tmp/hostagent-bench-venv")
TAB = {"_HOSTAGENT_COMPLETE": "bash_complete", "COMP_WORDS": "hostagent inst", "COMP_CWORD": "1"}
GOALS = {"--version": "<= 0.1 s", "TAB": "<= 0.1 s", "detect (small host)": "<= 0.2 s",
         "detect (this host)": "-", "detect (N links)": "<= 2x ip"}
# A small host: a fresh net and pid namespace (so /proc lists no other netns; an empty /run/netns)
# with lo and a veth pair.
SMALL_HOST = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c",
              'mount -t tmpfs tmpfs /run/netns 2>/dev/null; ip link add name v0 type veth peer name v1 && exec "$0" "$@"']


def _env(user_home: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    if user_home is not None:
        env.update(HOME=str(user_home), TMPDIR=str(user_home / "tmp"))
    else:
        env.update(HOME="/root", TMPDIR="/tmp")
    return {**env, **(extra or {})}


def _once(argv: list[str], env: dict[str, str], user: bool) -> float:
    """Wall time of one run; raises if it fails."""
    kw: dict = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if user else {}
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/",
                       check=False, **kw)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{argv} exit {r.returncode}: {r.stderr.strip()[:200]}")
    return dt


def median(argv: list[str], env: dict[str, str], user: bool, rounds: int) -> tuple[float, float] | str:
    """(median, best) of `rounds` runs: on a shared machine the best is the one least disturbed."""
    try:
        _once(argv, env, user)  # warm-up: bytecode, the user's cache
        times = [_once(argv, env, user) for _ in range(rounds)]
        return statistics.median(times), min(times)
    except (RuntimeError, OSError) as e:
        return f"n/a ({str(e)[:60]})"


def user_venv() -> Path | None:
    py = USER_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(USER_VENV)], check=True)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", str(REPO)], capture_output=True, text=True,
                           check=False)
        if r.returncode != 0:
            print(f"(no venv for the user: pip failed: {r.stderr.strip()[-200:]})", file=sys.stderr)
            shutil.rmtree(USER_VENV, ignore_errors=True)
            return None
    else:  # this checkout's code, not a previous one's
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(REPO)],
                       check=True, capture_output=True)
    return USER_VENV / "bin" / "hostagent"


def find_single(arg: str | None) -> Path | None:
    if arg:
        return Path(arg)
    sys.path.insert(0, str(REPO))
    try:
        from tests.dist import find_or_build_dist, single_file_in

        return single_file_in(find_or_build_dist())
    except BaseException as e:  # pytest.skip outside CI without a build
        print(f"(no single file: {e})", file=sys.stderr)
        return None


def make_netns(links: int, name: str) -> tuple[str, str]:
    """A netns with `links` dummy links (veth pairs where the kernel has no dummy driver)."""
    from pyroute2 import NetNS
    from pyroute2.netlink.exceptions import NetlinkError

    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        with NetNS(name) as ns:
            try:
                ns.link("add", ifname="dummy0", kind="dummy")
                kind = "dummy"
            except NetlinkError:
                kind = "veth"
            if kind == "dummy":
                for i in range(1, links):
                    ns.link("add", ifname=f"dummy{i}", kind="dummy")
            else:
                for i in range(links // 2):
                    ns.link("add", ifname=f"veth{i}a", kind="veth", peer=f"veth{i}b")
    except BaseException:
        subprocess.run(["ip", "netns", "del", name], check=False)
        raise
    return name, kind


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--links", type=int, default=10000)
    ap.add_argument("--single", help="the single file (default: this checkout's, as tests/dist.py finds it)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (a netns, and runs as nobody)")

    home = Path(tempfile.mkdtemp(prefix="hostagent-bench-home-", dir="/var/tmp"))
    (home / "tmp").mkdir()
    for d in (home, home / "tmp"):
        os.chown(d, NOBODY, NOBODY)
    os.chmod(home, 0o755)
    single = find_single(args.single)
    if single is not None:  # a copy nobody can read and run
        copy = home / "hostagent"
        shutil.copyfile(single, copy)
        copy.chmod(0o755)
        single = copy
    venv_root = REPO / ".venv" / "bin" / "hostagent"
    venv_user = user_venv()
    ns, kind = f"hostagent-bench-{uuid.uuid4().hex[:8]}", "-"  # made before its row: the rows before
    # it (this host, as root, looks into every netns) must not see it

    columns = [("ip", "root"), ("venv", "root"), ("venv", "user"), ("single", "root"), ("single", "user")]
    programs = {("venv", "root"): venv_root, ("venv", "user"): venv_user,
                ("single", "root"): single, ("single", "user"): single}
    rows = {"--version": (["ip", "-V"], ["--version"], {}),
            "TAB": (None, [], TAB),
            "detect (small host)": ([*SMALL_HOST, "ip", "-d", "-j", "link", "show"], ["detect"], {}),
            "detect (this host)": (["ip", "-d", "-j", "link", "show"], ["detect"], {}),
            "detect (N links)": (["ip", "-n", ns, "-d", "-j", "link", "show"],
                                 ["detect", "--netns", ns, "--no-other-netns"], {})}
    results: dict[str, dict[str, tuple[float, float] | str]] = {}
    first: dict[str, float | str] = {}
    try:
        if single is not None:  # the first starts, apart: root's cache, then the user's
            shutil.rmtree(f"/var/cache/hostagent/{_bundle_sha(single)}", ignore_errors=True)
            shutil.rmtree(home / ".cache", ignore_errors=True)
            for who, user in (("root", False), ("user", True)):
                try:
                    first[who] = _once([str(single), "--version"], _env(home if user else None), user)
                except RuntimeError as e:
                    first[who] = f"n/a ({e})"
        for row, (ip_argv, hargs, extra) in rows.items():
            if row == "detect (N links)":
                print(f"building a netns with {args.links} dummy links ...", file=sys.stderr)
                t0 = time.perf_counter()
                _, kind = make_netns(args.links, ns)
                print(f"... {kind} links, {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            results[row] = {}
            for prog, who in columns:
                key = f"{prog} {who}"
                user = who == "user"
                if prog == "ip":
                    results[row][key] = median(ip_argv, _env(None), False, args.rounds) if ip_argv else "n/a"
                    continue
                exe = programs[(prog, who)]
                if exe is None or (row in ("detect (N links)", "detect (small host)") and user):
                    results[row][key] = "n/a"
                    continue
                wrap = SMALL_HOST if row == "detect (small host)" else []
                results[row][key] = median([*wrap, str(exe), *hargs], _env(home if user else None, extra), user,
                                           args.rounds)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, stderr=subprocess.DEVNULL)
        shutil.rmtree(home, ignore_errors=True)

    def fmt(v: tuple[float, float] | float | str) -> str:
        if isinstance(v, tuple):
            return f"{v[0]:.3f}/{v[1]:.3f}"
        return f"{v:.3f} s" if isinstance(v, float) else v

    keys = [f"{p} {w}" for p, w in columns]
    width = max(len(r) for r in rows) + 2
    print(f"\nseconds, median/best of {args.rounds} runs after a warm-up; N = {args.links} {kind} links; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'':{width}}" + "".join(f"{k:>14}" for k in keys) + f"{'goal':>12}")
    for row, vals in results.items():
        print(f"{row:{width}}" + "".join(f"{fmt(vals[k])[:13]:>14}" for k in keys) + f"{GOALS[row]:>12}")
    big = results["detect (N links)"]
    ip = big.get("ip root")
    if isinstance(ip, tuple):
        ratios = {k: (v[0] / ip[0], v[1] / ip[1]) for k, v in big.items() if k != "ip root" and isinstance(v, tuple)}
        print("detect at N links / ip (median, best): " +
              ", ".join(f"{k} {m:.1f}x, {b:.1f}x" for k, (m, b) in ratios.items()))
    if first:
        print("single file, first start (unpacks its cache): " + ", ".join(f"{k} {fmt(v)}" for k, v in first.items()))
    if args.json:
        print(json.dumps({"rounds": args.rounds, "links": args.links, "results": results, "first_start": first}))
    return 0


def _bundle_sha(single: Path) -> str:
    with open(single, "rb") as f:
        f.seek(-64, os.SEEK_END)
        return f.read().decode()


if __name__ == "__main__":
    sys.exit(main())
