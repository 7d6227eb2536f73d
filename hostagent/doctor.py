"""`hostagent doctor`: look at the running agent and say what is wrong with it."""
from __future__ import annotations

import os
import socket
from typing import Optional

from hostagent import caps, cgroups, facts, manifest as manifest_mod, paths


def _find_agent() -> list:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "name", "exe", "uids", "gids", "ppid"]):
        info = proc.info
        exe = (info.get("exe") or "").replace(" (deleted)", "")
        if info.get("name") == "deepflow-agent" or exe == paths.AGENT_BINARY:
            found.append(proc)
    # The agent forks a watchdog child; report the parent first.
    pids = {p.pid for p in found}
    return sorted(found, key=lambda p: (p.info["ppid"] in pids, p.pid))


def _limits_for(cgroup_lines: list[str], layout: facts.CgroupLayout) -> dict:
    limits = {}
    for line in cgroup_lines:
        hid, controllers, path = line.split(":", 2)
        if layout.mode == "v2" and hid == "0":
            base = f"{paths.CGROUP_ROOT}{path}"
            for name in ("cpu.max", "memory.max"):
                limits[name] = cgroups.read(f"{base}/{name}")
        elif layout.mode != "v2":
            ctrls = controllers.split(",")
            if "cpu" in ctrls and layout.cpu_mount:
                for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"):
                    limits[name] = cgroups.read(f"{layout.cpu_mount}{path}/{name}")
            if "memory" in ctrls and layout.memory_mount:
                limits["memory.limit_in_bytes"] = cgroups.read(f"{layout.memory_mount}{path}/memory.limit_in_bytes")
    return limits


def _port_open(ip: str, port: int, timeout: float) -> Optional[str]:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return None
    except OSError as e:
        return e.strerror or str(e)


def examine(timeout: float = 2.0, config_path: str = paths.CONFIG_FILE) -> dict:
    import yaml

    problems: list[str] = []
    manifest = manifest_mod.load()
    opts = (manifest or {}).get("options") or {}
    layout = facts.cgroup_layout()
    report: dict = {"installed": manifest is not None, "cgroup_mode": layout.mode, "processes": [],
                    "config": {}, "controllers": [], "problems": problems}

    want_user = opts.get("user")
    want_caps = None
    if opts.get("caps"):
        want_caps = caps.mask(caps.resolve(opts["caps"], facts.kernel_version()))

    procs = _find_agent()
    if not procs:
        problems.append("no deepflow-agent process is running")
    for proc in procs:
        try:
            pc = caps.proc_caps(proc.pid)
            with open(f"/proc/{proc.pid}/cgroup") as f:
                cg_lines = f.read().split()
        except OSError:
            continue
        uid = proc.info["uids"].real
        entry = {
            "pid": proc.pid, "uid": uid, "gid": proc.info["gids"].real,
            "user": getattr(facts.user_by_uid(uid), "name", None),
            "CapEff": caps.names_of(pc.get("CapEff", 0)), "CapPrm": caps.names_of(pc.get("CapPrm", 0)),
            "CapBnd": caps.names_of(pc.get("CapBnd", 0)), "cgroups": cg_lines, "limits": _limits_for(cg_lines, layout),
        }
        report["processes"].append(entry)
        if uid == 0:
            problems.append(f"pid {proc.pid} runs as root")
        if want_user:
            account = facts.user(want_user)
            if account and uid != account.uid:
                problems.append(f"pid {proc.pid} runs as uid {uid}, not {want_user} ({account.uid})")
        if want_caps is not None:
            for key in ("CapEff", "CapPrm", "CapBnd"):
                if pc.get(key) != want_caps:
                    problems.append(f"pid {proc.pid} {key} is {','.join(caps.names_of(pc.get(key, 0))) or 'empty'}, "
                                    f"want {','.join(caps.names_of(want_caps))}")
        in_agent_cgroup = any(line.endswith("/" + paths.CGROUP_NAME) for line in cg_lines)
        if not in_agent_cgroup:
            problems.append(f"pid {proc.pid} is not in a {paths.CGROUP_NAME} cgroup (limits not enforced by cgroups)")

    try:
        with open(config_path) as f:
            config = yaml.safe_load(f)
        report["config"] = {"path": config_path, "parses": isinstance(config, dict)}
        if not isinstance(config, dict):
            problems.append(f"{config_path} is not a YAML mapping")
            config = {}
    except OSError as e:
        report["config"] = {"path": config_path, "parses": False, "error": e.strerror}
        problems.append(f"cannot read {config_path}: {e.strerror}")
        config = {}
    except yaml.YAMLError as e:
        report["config"] = {"path": config_path, "parses": False, "error": str(e).splitlines()[0]}
        problems.append(f"{config_path} does not parse: {str(e).splitlines()[0]}")
        config = {}

    port = int(config.get("controller-port", 30035) or 30035)
    for ip in config.get("controller-ips") or []:
        error = _port_open(str(ip), port, timeout)
        report["controllers"].append({"ip": ip, "port": port, "reachable": error is None, "error": error})
        if error:
            problems.append(f"controller {ip}:{port} not reachable: {error}")

    if manifest is not None:
        from hostagent import engine

        drift = engine.status()["drift"]
        report["drift"] = drift
        problems.extend(drift)
    return report


def render(report: dict) -> None:
    print(f"cgroup mode: {report['cgroup_mode']}; installed by hostagent: {'yes' if report['installed'] else 'no'}")
    for p in report["processes"]:
        print(f"agent pid {p['pid']}: uid {p['uid']} gid {p['gid']}")
        for key in ("CapEff", "CapPrm", "CapBnd"):
            print(f"  {key}: {','.join(p[key]) or '-'}")
        print(f"  cgroups: {' '.join(p['cgroups'])}")
        for name, value in p["limits"].items():
            print(f"  {name} = {value}")
    cfg = report["config"]
    print(f"config {cfg.get('path')}: {'parses' if cfg.get('parses') else 'DOES NOT PARSE'}")
    for c in report["controllers"]:
        print(f"controller {c['ip']}:{c['port']}: {'reachable' if c['reachable'] else 'NOT reachable: ' + str(c['error'])}")
    if report["problems"]:
        print("problems:")
        for problem in report["problems"]:
            print(f"  - {problem}")
    else:
        print("no problems found")
