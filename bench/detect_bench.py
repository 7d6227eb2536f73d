"""Detection time and peak memory at 1k/5k/10k links, side by side with `ip -d -j link show`.

Run as root: .venv/bin/python bench/detect_bench.py [--sizes 1000,5000,10000] [--repeat 7]
Each size gets a fresh network namespace filled with veth pairs (created with `ip -batch`,
setup only) and is deleted afterwards. Figures are the best of --repeat runs, each in a
fresh process so peak RSS (ru_maxrss) is per run:
  detect: hostagent.net.detect.detect_layout(netns=..., scan_other_netns=False) inside the
          process (interpreter start and imports are reported separately as "cli")
  process: that whole child process, interpreter start and imports included (`hostagent detect`
          itself, typer-free, is in bench/startup_bench.py)
  ip:     `ip -n NS -d -j link show` > /dev/null
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from hostagent.net.detect import detect_layout
import hostagent.net.classify, hostagent.net.recommend, hostagent.net.scan, hostagent.net.rtdump  # imports outside the timing
t1 = time.perf_counter()
c1 = time.process_time()
layout = detect_layout(netns={ns!r}, scan_other_netns=False)
c2 = time.process_time()
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "detect_s": t2 - t1, "detect_cpu_s": c2 - c1, "links": len(layout.links),
                  "verdict": layout.verdict,
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def _make_namespace(links: int) -> str:
    name = f"hostagent-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".batch", delete=False) as batch:
        for i in range(links // 2):
            batch.write(f"link add veth{i}a type veth peer name veth{i}b\n")
    try:
        subprocess.run(["ip", "-n", name, "-batch", batch.name], check=True)
    finally:
        os.unlink(batch.name)
    return name


def _child_rss_run(argv: list[str]) -> tuple[float, float, str]:
    """Wall time and peak RSS (MiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # RUSAGE_CHILDREN keeps the max over all children: only a new maximum is exact.
    return wall, max(after, before) / 1024, proc.stdout


def _ip_run(ns: str) -> tuple[float, float, float]:
    code = (
        "import resource,subprocess,sys,time;t=time.perf_counter();"
        f"subprocess.run(['ip','-n',{ns!r},'-d','-j','link','show'],stdout=subprocess.DEVNULL,check=True);"
        "w=time.perf_counter()-t;r=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(w, r.ru_maxrss/1024, r.ru_utime+r.ru_stime)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE, text=True).stdout
    wall, rss, cpu = out.split()
    return float(wall), float(rss), float(cpu)


def bench(sizes: list[int], repeat: int) -> list[dict[str, float]]:
    rows = []
    for size in sizes:
        ns = _make_namespace(size)
        try:
            ip_runs = [_ip_run(ns) for _ in range(repeat)]
            det_runs = []
            cli_runs = []
            for _ in range(repeat):
                start = time.perf_counter()
                out = subprocess.run(
                    [sys.executable, "-c", _CHILD.format(root=ROOT, ns=ns)],
                    check=True,
                    stdout=subprocess.PIPE,
                    text=True,
                ).stdout
                cli_runs.append(time.perf_counter() - start)
                det_runs.append(json.loads(out))
            rows.append(
                {
                    "links": det_runs[0]["links"],
                    "ip_s": min(r[0] for r in ip_runs),
                    "ip_mib": max(r[1] for r in ip_runs),
                    "ip_cpu_s": min(r[2] for r in ip_runs),
                    "detect_cpu_s": min(r["detect_cpu_s"] for r in det_runs),
                    "detect_s": min(r["detect_s"] for r in det_runs),
                    "detect_mib": max(r["maxrss_mib"] for r in det_runs),
                    "cli_s": min(cli_runs),
                    "import_s": min(r["import_s"] for r in det_runs),
                }
            )
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = bench([int(s) for s in args.sizes.split(",")], args.repeat)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'links':>6} {'ip wall s':>9} {'ip cpu s':>8} {'ip MiB':>7} {'detect wall s':>13} {'detect cpu s':>12}"
          f" {'det MiB':>8} {'wall ratio':>10} {'cpu ratio':>9} {'process s':>9}")
    for r in rows:
        print(
            f"{r['links']:>6} {r['ip_s']:>9.3f} {r['ip_cpu_s']:>8.3f} {r['ip_mib']:>7.1f} {r['detect_s']:>13.3f}"
            f" {r['detect_cpu_s']:>12.3f} {r['detect_mib']:>8.1f} {r['detect_s'] / r['ip_s']:>10.2f}"
            f" {r['detect_cpu_s'] / max(r['ip_cpu_s'], 1e-3):>9.2f} {r['cli_s']:>9.3f}"
        )
    print("best of --repeat runs; ratio target <= 2 (wall) at 10k links. det MiB = peak RSS of the whole")
    print("python process, interpreter and imports included; process s = python start + imports + detection.")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} (other work on the machine skews wall time)")


if __name__ == "__main__":
    main()
