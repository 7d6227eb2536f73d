"""`hostagent doctor`: look at the running agent and say what is wrong with it."""
from __future__ import annotations

import os
import socket
from typing import Any, Optional

from hostagent import caps, host, options
from hostagent import manifest as manifest_mod
from hostagent.facts import accounts
from hostagent.facts.cgroups import CgroupLayout, cgroup_layout, cgroup_root, read
from hostagent.facts.service import agent_processes
from hostagent.host import paths
from hostagent.status import NOT_YET, status


def _limits_for(cgroup_lines: list[str], layout: CgroupLayout) -> dict[str, Optional[str]]:
    limits = {}
    for line in cgroup_lines:
        hid, controllers, path = line.split(":", 2)
        if layout.mode == "v2" and hid == "0":
            base = f"{cgroup_root()}{path}"
            for name in ("cpu.max", "memory.max"):
                limits[name] = read(f"{base}/{name}")
        elif layout.mode != "v2":
            ctrls = controllers.split(",")
            if "cpu" in ctrls and layout.cpu_mount:
                for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"):
                    limits[name] = read(f"{layout.cpu_mount}{path}/{name}")
            if "memory" in ctrls and layout.memory_mount:
                limits["memory.limit_in_bytes"] = read(f"{layout.memory_mount}{path}/memory.limit_in_bytes")
    return limits


def _port_open(ip: str, port: int, timeout: float) -> Optional[str]:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return None
    except OSError as e:
        return e.strerror or str(e)


def _installed_caps(manifest: Optional[manifest_mod.Manifest]) -> Optional[int]:
    """The capability mask install resolved and recorded (the caps step), None when not installed."""
    for entry in manifest.entries if manifest else []:
        if entry["kind"] == "caps":
            return caps.mask(entry["params"]["caps"])
    return None


def _config_problem(proc: Any, config_path: str) -> list[str]:
    """An agent started without hostagent's -f runs on DeepFlow's default /etc/deepflow-agent.yaml (the
    package's unit in force instead of hostagent's)."""
    import psutil

    try:
        argv = proc.cmdline()
    except psutil.Error:
        return []
    if "-f" in argv[:-1] and argv[argv.index("-f") + 1] == config_path:
        return []
    return [f"pid {proc.pid} runs `{' '.join(argv)}`, not on hostagent's config (-f {config_path}): "
            "is DeepFlow's package unit in force instead of hostagent's?"]


def limits_report(layout: CgroupLayout, opts: dict[str, Any], timeout: float) -> tuple[dict[str, Any], list[str]]:
    """The limits in force in the agent's cgroup, install's initial ones and, when the server is known,
    the group's global.limits (which the agent applies once it has its config) and whether they agree."""
    from hostagent import agentcgroups

    now = agentcgroups.in_force(layout)
    report: dict[str, Any] = {"in_force": now, "group": None, "group_id": None, "agree": None,
                              "install": {"max_millicpus": opts.get("cpu_millicores"),
                                          "max_memory": opts.get("memory_mib")}}
    problems: list[str] = []
    if not opts.get("server"):
        return report, problems
    from hostagent import options
    from hostagent import server as deepflow
    from hostagent.errors import ServerError

    try:
        client = deepflow.Client.for_server(opts["server"], timeout, opts.get("org_id") or 1)
        ref = opts.get("agent_group")
        if ref:
            short, lcuuid, _ = deepflow.group_short_id(client, ref)
        else:
            agent = deepflow.find_host_agent(client)
            if agent is None:
                raise ServerError("this host's agent is not registered there (yet)")
            lcuuid = str(agent.get("VTAP_GROUP_LCUUID"))
            group = next((g for g in client.call("GET", "/v1/vtap-groups/") or []
                          if isinstance(g, dict) and g.get("LCUUID") == lcuuid), {})
            short = str(group.get("SHORT_UUID") or "")
        report["group_id"] = short if options.AGENT_GROUP_ID.fullmatch(short) else None
        report["group"] = deepflow.group_limits(client, lcuuid, short)
    except ServerError as e:
        report["error"] = str(e)
        return report, [f"cannot read the group's global.limits from {opts['server']}: {e}"]
    report["agree"] = report["group"] == now
    if not report["agree"]:
        problems.append(f"limits in force {_show(now)} differ from the group's global.limits {_show(report['group'])}"
                        " (the agent applies them once it has its config)")
    return report, problems


def _sync_time(text: Any) -> Optional[float]:
    """SYNCED_CONTROLLER_AT ("2006-01-02 15:04:05", the server's clock; UTC unless it names a zone) as epoch seconds."""
    import datetime

    try:
        when = datetime.datetime.fromisoformat(str(text).strip())
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)).timestamp()


def server_view(opts: dict[str, Any], timeout: float) -> tuple[dict[str, Any], list[str]]:
    """This host's agent as deepflow-server lists it (GET /v1/vtaps/): registered, in the group install
    named (None without --agent-group), the exception codes it reports, its last sync with a controller."""
    from hostagent import server as deepflow
    from hostagent.errors import ServerError

    view: dict[str, Any] = {"reachable": False, "registered": None, "in_group": None, "group_id": opts.get("agent_group"),
                            "exceptions": [], "last_sync": None, "state": None, "name": None}
    try:
        client = deepflow.Client.for_server(opts["server"], timeout, opts.get("org_id") or 1)
        agent = deepflow.find_host_agent(client)
        view["reachable"], view["registered"] = True, agent is not None
        if agent is None:
            return view, [f"this host's agent is not registered on {opts['server']}"]
        view.update(name=agent.get("NAME"), state=agent.get("STATE"), exceptions=list(agent.get("EXCEPTIONS") or []),
                    last_sync=_sync_time(agent.get("SYNCED_CONTROLLER_AT")))
        if opts.get("agent_group"):
            _, lcuuid, _ = deepflow.group_short_id(client, opts["agent_group"])
            view["in_group"] = agent.get("VTAP_GROUP_LCUUID") == lcuuid
    except ServerError as e:
        view["error"] = str(e)
        return view, [f"cannot ask {opts['server']} about this host's agent: {e}"]
    problems = []
    if view["in_group"] is False:
        problems.append(f"the server has this host's agent in group {agent.get('VTAP_GROUP_NAME') or '?'}, "
                        f"not {opts['agent_group']}")
    if view["exceptions"]:
        problems.append(f"the server reports exceptions {', '.join(map(str, view['exceptions']))} for this host's agent")
    return view, problems


def _show(limits: dict[str, Any]) -> str:
    cpu, mem = limits.get("max_millicpus"), limits.get("max_memory")
    return f"({cpu if cpu is not None else 'unlimited'}m CPU, {mem if mem is not None else 'unlimited'} MiB)"


def upgrade_mode(manifest: manifest_mod.Manifest) -> dict[str, Any]:
    """Which remote-upgrade mode is in force, and why."""
    mode, why = manifest.remote_upgrade() or NOT_YET
    binary = paths.agent_binary_for(mode)
    h = host.current()
    leftovers = [binary + s for s in (".test", ".bak") if os.path.lexists(h.path(binary + s))]
    what = (f"the server can upgrade the agent: it replaces {binary} (its dir is writable by the agent's group); "
            "each start restores root ownership, mode 0750 and exactly the profile's capabilities"
            if mode == "allow" else
            f"remote upgrades fail: {binary} is read-only to the agent (to permit them: uninstall, then install --remote-upgrade allow)")
    return {"mode": mode, "why": why, "binary": binary, "says": what, "leftovers": leftovers}


def _env_problems(pid: int) -> list[str]:
    """The agent's environment: the watcher opt-out, nothing of the single file's bundle."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
    except OSError:
        return []
    problems = []
    if env.get(b"K8S_WATCH_POLICY") != b"watch-disabled":
        problems.append(f"pid {pid} lacks K8S_WATCH_POLICY=watch-disabled: the server may elect it Kubernetes "
                        "watcher, and a process agent never watches")
    bundle = sorted(k.decode(errors="replace") for k in env if k.startswith((b"_PYI", b"_MEI", b"PYTHON")))
    if bundle:
        problems.append(f"pid {pid} has the single file's variables {', '.join(bundle)} (started by an older hostagent?)")
    return problems


def examine(timeout: float = 2.0, config_path: str = paths.CONFIG_FILE) -> dict[str, Any]:
    import yaml

    problems: list[str] = []
    manifest = manifest_mod.load()
    opts = (manifest.data.get("options") if manifest else None) or {}
    layout = cgroup_layout()
    services = host.current().services
    report: dict[str, Any] = {"installed": manifest is not None, "init": services.kind, "sandboxed": services.sandboxed,
                              "cgroup_mode": layout.mode, "processes": [], "config": {}, "controllers": [],
                              "problems": problems}

    want_user = opts.get("user")
    want_caps = _installed_caps(manifest)
    report["user"], report["caps"] = want_user, caps.names_of(want_caps) if want_caps is not None else None

    procs = agent_processes()
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
            "user": getattr(accounts.user_by_uid(uid), "name", None),
            "CapEff": caps.names_of(pc.get("CapEff", 0)), "CapPrm": caps.names_of(pc.get("CapPrm", 0)),
            "CapBnd": caps.names_of(pc.get("CapBnd", 0)), "cgroups": cg_lines, "limits": _limits_for(cg_lines, layout),
        }
        report["processes"].append(entry)
        # Each check's verdict is kept beside its problem line: --prometheus exports these (None: not known).
        if uid == 0:
            problems.append(f"pid {proc.pid} runs as root")
        entry["as_user"] = None
        if want_user:
            account = accounts.user(want_user)
            entry["as_user"] = account is not None and uid == account.uid
            if account and uid != account.uid:
                problems.append(f"pid {proc.pid} runs as uid {uid}, not {want_user} ({account.uid})")
        entry["caps_as_installed"] = None
        if want_caps is not None:
            entry["caps_as_installed"] = True
            for key in ("CapEff", "CapPrm", "CapBnd"):
                if pc.get(key) != want_caps:
                    entry["caps_as_installed"] = False
                    problems.append(f"pid {proc.pid} {key} is {','.join(caps.names_of(pc.get(key, 0))) or 'empty'}, "
                                    f"want {','.join(caps.names_of(want_caps))}")
        if manifest is not None:
            problems.extend(_config_problem(proc, config_path))
        problems.extend(_env_problems(proc.pid))
        entry["in_agent_cgroup"] = any(line.endswith("/" + paths.CGROUP_NAME) for line in cg_lines)
        if not entry["in_agent_cgroup"]:
            problems.append(f"pid {proc.pid} is not in a {paths.CGROUP_NAME} cgroup (limits not enforced by cgroups)")

    try:
        with open(host.current().path(config_path)) as f:
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

    port = int(config.get("controller-port") or options.CONTROLLER_PORT)
    for ip in config.get("controller-ips") or []:
        error = _port_open(str(ip), port, timeout)
        report["controllers"].append({"ip": ip, "port": port, "reachable": error is None, "error": error})
        if error:
            problems.append(f"controller {ip}:{port} not reachable: {error}")

    if manifest is not None:
        report["remote_upgrade"] = upgrade_mode(manifest)
        problems.extend(f"{p} was left by a remote upgrade cut short (the next start removes it)"
                        for p in report["remote_upgrade"]["leftovers"])
        report["limits"], limit_problems = limits_report(layout, opts, timeout)
        problems.extend(limit_problems)
        found = status()
        report["drift"], report["notes"] = found["drift"], found["notes"]
        report["steps"] = [{"id": s["id"], "ok": s["ok"]} for s in found["steps"]]
        problems.extend(found["drift"])
        if opts.get("server"):
            report["server"], server_problems = server_view(opts, timeout)
            problems.extend(server_problems)
    return report

