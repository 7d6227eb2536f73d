"""`hostagent k8s-sync install`: preflight and plan for the pseudo-agent as its own service, through
the same steps, engine and manifest discipline as the agent's install, with its own manifest
(paths.K8S_SYNC_MANIFEST), user, config dir and unit, so the two coexist and each uninstalls alone.

The kubeconfig is copied flattened (the current context only; files it names — CA, client
certificate and key, token file — are embedded as *-data / token), root:<group> 0640, because the
service user cannot read root's originals. Exec credential plugins are kept as they are."""
from __future__ import annotations

import base64
import os
import stat
import sys
from typing import Any, Optional

from hostagent.errors import InputError
from hostagent.facts import HostFacts
from hostagent.facts.files import lstat_or_none
from hostagent.host import current as current_host
from hostagent.host import paths
from hostagent.options import K8sSyncOptions
from hostagent.steps import Step
from hostagent.steps.accounts import Group, User
from hostagent.steps.files import Directory, File, ServiceDefinition
from hostagent.steps.service import Service

TEMPLATE = "hostagent-k8s-sync.service.j2"
CONFIG_FILE = paths.K8S_SYNC_CONFIG_DIR + "/config.yaml"
KUBECONFIG = paths.K8S_SYNC_CONFIG_DIR + "/kubeconfig"
CONTROLLER_CA = paths.K8S_SYNC_CONFIG_DIR + "/controller-ca.crt"
MEMORY_MAX_MIB = 1024


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror}") from None


def flatten_kubeconfig(path: str) -> str:
    """The kubeconfig's current context, self-contained, as YAML."""
    import yaml

    try:
        data = yaml.safe_load(_read(path, "kubeconfig"))
    except yaml.YAMLError as e:
        raise InputError(f"kubeconfig {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InputError(f"kubeconfig {path} is not a YAML mapping")
    base = os.path.dirname(os.path.abspath(path))

    def named(section: str, name: Any) -> dict[str, Any]:
        for item in data.get(section) or []:
            if isinstance(item, dict) and item.get("name") == name:
                return dict(item)
        raise InputError(f"kubeconfig {path}: no {section[:-1]} named {name!r}")

    context = named("contexts", data.get("current-context"))
    ctx = context.get("context") or {}
    cluster = named("clusters", ctx.get("cluster"))
    user = named("users", ctx.get("user"))

    def embed(d: dict[str, Any], key: str, data_key: Optional[str], what: str) -> None:
        if d.get(key):
            file = d.pop(key)
            full = file if os.path.isabs(file) else os.path.join(base, file)
            raw = _read(full, what)
            if data_key:
                d[data_key] = base64.b64encode(raw).decode()
            else:
                d["token"] = raw.decode().strip()

    c = dict(cluster.get("cluster") or {})
    embed(c, "certificate-authority", "certificate-authority-data", "kubeconfig CA")
    u = dict(user.get("user") or {})
    embed(u, "client-certificate", "client-certificate-data", "kubeconfig client certificate")
    embed(u, "client-key", "client-key-data", "kubeconfig client key")
    embed(u, "tokenFile", None, "kubeconfig token file")
    flat = {"apiVersion": "v1", "kind": "Config", "current-context": context["name"],
            "clusters": [{"name": cluster["name"], "cluster": c}],
            "users": [{"name": user["name"], "user": u}],
            "contexts": [{"name": context["name"], "context": {k: v for k, v in ctx.items() if k in ("cluster", "user", "namespace")}}]}
    return str(yaml.safe_dump(flat, sort_keys=False, default_flow_style=False))


def config_yaml(opts: K8sSyncOptions) -> str:
    import yaml

    data: dict[str, Any] = {"controller-ips": list(opts.controller_ips), "controller-port": opts.controller_port}
    if opts.cluster_id:
        data["cluster-id"] = opts.cluster_id
    if opts.team_id:
        data["team-id"] = opts.team_id
    data["kubeconfig"] = KUBECONFIG
    data["interval"] = opts.interval
    if opts.tls or opts.tls_ca:
        data["tls"] = True
    if opts.tls_ca:
        data["tls-ca"] = CONTROLLER_CA
    if not opts.configmaps:
        data["configmaps"] = False
    if opts.max_message_mib != 100:
        data["max-message-mib"] = opts.max_message_mib
    return "# Written by `hostagent k8s-sync install`; re-run install to change it.\n" + str(
        yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def render_unit(user: str, group: str, launcher: Optional[str] = None) -> str:
    from hostagent.render import render_template
    from hostagent.render.unit import launcher_command

    return render_template(
        TEMPLATE, user=user, group=group, launcher=launcher or launcher_command(), config=CONFIG_FILE, memory_max=MEMORY_MAX_MIB,
        protect_home="read-only" if sys.prefix.startswith(("/root", "/home")) else "yes")


def service_program() -> str:
    """The executable the service's main process runs: the venv's interpreter; from the single file, the
    unpacked program this process runs too (the stub execs its copy in /var/cache/hostagent/<sha>/, which
    the service trusts as well: PrivateUsers= maps root to root)."""
    if getattr(sys, "frozen", False):
        return os.path.realpath("/proc/self/exe")
    return os.path.realpath(sys.executable)


def preflight(opts: K8sSyncOptions, host: HostFacts) -> tuple[str, str]:
    """Read-only refusals; (the service user's primary group, the flattened kubeconfig)."""
    if host.init != "systemd":
        # It holds cluster credentials: its unit's sandbox (no capabilities, PrivateUsers, ProtectSystem,
        # MemoryMax) is part of what makes that safe, and SysV init and OpenRC have none of it.
        raise InputError(f"k8s-sync install needs systemd (this host runs {host.init}): run it in the cluster, "
                         "or `hostagent k8s-sync run` under your supervisor as an unprivileged user")
    if not opts.kubeconfig:
        raise InputError("--kubeconfig FILE is required: a service on a host has no in-cluster service account")
    kubeconfig = flatten_kubeconfig(opts.kubeconfig)
    from hostagent.k8ssync import kube

    kube.load(opts.kubeconfig)  # the client's own loader accepts it (context, server URL, credentials)
    if not host.is_root:
        raise InputError("hostagent k8s-sync install must run as root")
    if opts.tls_ca:
        _read(opts.tls_ca, "--tls-ca")
    h = current_host()
    st = lstat_or_none(h.path(paths.K8S_SYNC_CONFIG_DIR))
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{paths.K8S_SYNC_CONFIG_DIR} exists and is not a directory (symlink?); refusing to use it")
    for path in (CONFIG_FILE, KUBECONFIG, CONTROLLER_CA):
        st = lstat_or_none(h.path(path))
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path} exists and is not a regular file (symlink?); refusing to replace it")
    from hostagent.planner import Installed, check_service_paths, service_group

    check_service_paths(host.init, paths.K8S_SYNC_SERVICE)
    if opts.user == "deepflow":
        raise InputError("--user deepflow is the agent's user; k8s-sync runs as a user of its own")
    group = service_group(opts.user, "k8s-sync", Installed(paths.K8S_SYNC_MANIFEST).created(f"group:{opts.user}"))
    return group, kubeconfig


def plan(opts: K8sSyncOptions, group: str, kubeconfig: str) -> list[Step]:
    user = opts.user
    h = current_host()
    steps: list[Step] = [
        Group(name=group),
        User(name=user, group=group),
        Directory(path=h.path(paths.K8S_SYNC_CONFIG_DIR), mode=0o750, owner="root", group=group),
        File(path=h.path(KUBECONFIG), content=kubeconfig, mode=0o640, owner="root", group=group, secret=True),
    ]
    if opts.tls_ca:
        steps.append(File(path=h.path(CONTROLLER_CA), content=_read(opts.tls_ca, "--tls-ca").decode(), mode=0o640,
                          owner="root", group=group))
    steps += [
        File(path=h.path(CONFIG_FILE), content=config_yaml(opts), mode=0o640, owner="root", group=group),
        ServiceDefinition(path=h.path(h.services.definition_path(paths.K8S_SYNC_SERVICE)),
                          content=render_unit(user, group), mode=0o644, owner="root", group="root"),
        Service(name=paths.K8S_SYNC_SERVICE, user=user, binary=service_program()),
    ]
    return steps
