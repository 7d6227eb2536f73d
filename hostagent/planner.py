"""Preflight (read-only checks that refuse bad hosts and inputs) and the plan: options + facts → steps."""
from __future__ import annotations

import ipaddress
import os
import socket
import stat
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Optional

from hostagent import caps, options
from hostagent.errors import InputError
from hostagent.facts import HostFacts, accounts
from hostagent.facts import host as host_facts
from hostagent.facts.files import FileState, lstat_or_none
from hostagent.facts.packages import owning_package
from hostagent.host import current as current_host
from hostagent.host import paths
from hostagent.options import InstallOptions
from hostagent.render import agentconfig, dropin, unit
from hostagent.steps import Step
from hostagent.steps.accounts import Group, User
from hostagent.steps.cgroup import AgentCgroups
from hostagent.steps.dropin import UnitDropIn
from hostagent.steps.files import Binary, Directory, File, FileCaps, ServiceDefinition
from hostagent.steps.server import AgentGroupMembership
from hostagent.steps.service import InittabLine, Service

if TYPE_CHECKING:
    from hostagent.manifest import Manifest
    from hostagent.steps.base import Record

INITS = ("systemd", "sysvinit", "openrc")


class Installed:
    """The manifest an earlier install (or a run that was killed) left, as one planning run sees it: read
    once, when first asked (a damaged one is refused there, as before), then shared by every question."""

    def __init__(self, path: str = paths.MANIFEST) -> None:
        self.path = path

    @cached_property
    def manifest(self) -> Optional[Manifest]:
        from hostagent import manifest

        return manifest.load(self.path)

    def record_of(self, step_id: str) -> Optional[Record]:
        found = self.manifest
        return found.record_of(step_id) if found else None

    def recorded(self, step_id: str) -> bool:
        return self.record_of(step_id) is not None

    def created(self, step_id: str) -> bool:
        """Whether it records this as hostagent's own creation."""
        record = self.record_of(step_id)
        return bool(record and record.get("created"))


@dataclass(frozen=True)
class Resolved:
    """Inputs looked up during preflight (server lookups, the manifest), so planning itself is pure."""

    caps: tuple[str, ...]
    cluster_id: Optional[str]
    agent_group_id: Optional[str]
    group: str  # the user's primary group name
    warnings: tuple[str, ...] = ()
    agent_group_lcuuid: Optional[str] = None  # with --server: the group this host's agent belongs in
    remote_upgrade: str = "deny"  # the mode in force (allow | deny): --remote-upgrade auto resolved
    remote_upgrade_why: str = ""
    # The manifest as preflight read it; plan asks it too (a full unit handed over to a drop-in).
    installed: Installed = field(default_factory=Installed, compare=False, repr=False)

    @property
    def binary(self) -> str:
        """Where the service runs the agent from."""
        return paths.agent_binary_for(self.remote_upgrade)


def remote_upgrade_mode(opts: InstallOptions, installed: Optional[Installed] = None) -> tuple[str, str]:
    """allow | deny, and why. auto (the default): an installed host keeps its mode (another moves the
    binary: that takes an uninstall); else allow, unless a package owns the binary: a copy the server may
    replace would no longer get the package's upgrades, so the package's file stays the one that runs."""
    if opts.remote_upgrade != "auto":
        return opts.remote_upgrade, f"--remote-upgrade {opts.remote_upgrade}"
    found = (installed or Installed()).manifest
    in_force = found.remote_upgrade() if found is not None else None
    if in_force is not None:
        return in_force
    try:
        binary = current_host().logical(opts.agent_binary)
        package = owning_package(binary)
    except ValueError:  # outside a temp root's host (a test's): none of its packages owns it
        binary, package = opts.agent_binary, None
    if package:
        return "deny", f"auto: DeepFlow's package {package} owns {binary}, and its upgrades must keep reaching the agent"
    return "allow", f"auto: no dpkg/rpm package owns {binary}"


def check_binary(path: str, host: HostFacts) -> None:
    st = lstat_or_none(path)
    if st is None:
        raise InputError(f"agent binary {path} does not exist (give --agent-binary PATH)")
    if stat.S_ISLNK(st.st_mode):
        raise InputError(f"agent binary {path} is a symlink; give the real file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"agent binary {path} is not a regular file")
    info = host_facts.elf_info(path)
    if not info.is_elf:
        raise InputError(f"agent binary {path} is not an ELF executable")
    if not host_facts.elf_matches_host(info, host.machine):
        raise InputError(f"agent binary {path} is built for another architecture (ELF machine {info.machine}, host {host.machine})")


Lookup = Callable[..., list[tuple[Any, ...]]]


def check_controller_families(controllers: tuple[str, ...], lookup: Optional[Lookup] = None) -> list[str]:
    """The agent resolves host names in controller-ips (the first address, as to_socket_addrs gives it)
    and exits when the list mixes IPv4 and IPv6: refuse that now, or warn when a name does not resolve
    here (it may resolve on the agent's network later). getaddrinfo only: hostagent sends no traffic."""
    lookup = lookup or socket.getaddrinfo
    families: dict[str, int] = {}
    warnings = []
    for entry in controllers:
        if not options.is_name(entry):
            families[entry] = ipaddress.ip_address(entry).version
            continue
        try:
            first = lookup(entry, 1, type=socket.SOCK_STREAM)[0]
        except (OSError, IndexError) as exc:
            warnings.append(f"controller host name {entry} does not resolve here ({getattr(exc, 'strerror', None) or exc}); "
                            "the agent resolves it at each start")
            continue
        families[entry] = 6 if first[0] == socket.AF_INET6 else 4
    if len(set(families.values())) > 1:
        shown = ", ".join(f"{e} (IPv{v})" for e, v in families.items())
        raise InputError(f"controller IPs mix IPv4 and IPv6 once resolved: {shown}; the agent refuses that")
    return warnings


def check_launcher(init: str) -> None:
    """The service runs hostagent itself as root at every start: only from where no one else can change
    it, and where the unit's sandbox can see it (PrivateTmp hides /tmp and /var/tmp)."""
    for path in unit.launcher_files():
        real = os.path.realpath(path)
        if init == "systemd" and real.startswith(("/tmp/", "/var/tmp/")):
            raise InputError(f"the unit would run {real}, but its PrivateTmp= hides /tmp and /var/tmp from it; "
                             "put hostagent elsewhere (e.g. /usr/sbin/hostagent or /opt/hostagent)")
        reason = host_facts.unsafe_path_reason(path)
        if reason:
            raise InputError(f"the service would run {path} as root at every agent start, but {reason}")


def check_service_paths(init: str, service: str) -> None:
    """Where the service's definition goes must be a plain file or nothing (never a symlink), and no
    systemd drop-in may change hostagent's unit behind its back."""
    h = current_host()
    definition = h.services.definition_path(service)
    st = lstat_or_none(h.path(definition))
    if init == "sysvinit":
        if st is None or not stat.S_ISREG(st.st_mode):
            raise InputError(f"{definition} is missing or not a regular file; SysV init reads its services there")
        return
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InputError(f"{definition} exists and is not a regular file (symlink?); refusing to replace it")
    if init == "systemd":
        dropins = h.path(definition + ".d")
        others = sorted(set(os.listdir(dropins)) - {dropin.NAME}) if os.path.isdir(dropins) else []
        if others:
            raise InputError(f"{definition}.d holds drop-ins ({', '.join(others)}) that systemd "
                             "would merge into hostagent's unit; move them away first")


def check_metrics_textfile(init: str, directory: str, installed: Optional[Installed] = None) -> None:
    """Only where a systemd timer can run doctor: SysV init has no timers, and a cron.d entry would need
    a cron that reads /etc/cron.d (busybox's crond does not), outside any service manager's view. The
    dir must be a real directory, and its hostagent.prom nobody else's."""
    from hostagent.metrics import FILE_NAME, check_dir

    if init != "systemd":
        raise InputError(f"--metrics-textfile needs systemd's timers; on {init} run `hostagent doctor --prometheus "
                         f"{directory.rstrip('/')}/{FILE_NAME}` from your own scheduler (see README, Metrics)")
    h = current_host()
    check_dir(h.path(directory), "--metrics-textfile")
    for name in (paths.METRICS_SERVICE, paths.METRICS_TIMER):
        check_service_paths(init, name)
    target = f"{directory.rstrip('/')}/{FILE_NAME}"
    if lstat_or_none(h.path(target)) is not None and not (installed or Installed()).recorded(f"textfile:{h.path(target)}"):
        raise InputError(f"{target} exists and hostagent did not install it; move it away first")


def preflight(opts: InstallOptions, host: HostFacts, resolve_remote: bool = True) -> Resolved:
    if not host.is_root:
        raise InputError("hostagent install must run as root")
    if host.init not in INITS:
        raise InputError("no supported init on this host (systemd, SysV init with /etc/inittab, or OpenRC); "
                         "use `hostagent exec` from your supervisor (see README)")
    if not host.ambient_caps:
        raise InputError("this kernel has no ambient capabilities (Linux 4.3+ or a backport): the launcher could "
                         "not keep the agent's capabilities across its exec as a non-root user")
    check_launcher(host.init)
    if host.cgroup.mode != "v2" and not (host.cgroup.cpu_mount and host.cgroup.memory_mount):
        raise InputError("cgroup v1 cpu and memory controllers are not both mounted")
    if host.cgroup.mode == "v2" and not {"cpu", "memory"} <= set(host.cgroup.v2_controllers):
        raise InputError("cgroup v2 root does not offer the cpu and memory controllers")

    check_binary(opts.agent_binary, host)
    h = current_host()
    target = lstat_or_none(h.path(paths.AGENT_BINARY))
    if target is not None and not stat.S_ISREG(target.st_mode):
        raise InputError(f"{paths.AGENT_BINARY} exists and is not a regular file (symlink?); refusing to replace it")
    installed = Installed()
    upgrade, upgrade_why = remote_upgrade_mode(opts, installed)
    where = os.path.dirname(paths.agent_binary_for(upgrade))
    if not os.path.isdir(h.path(where)):  # the upgrade dir, made by install: its parent's mount counts
        where = os.path.dirname(where)
    reason = host_facts.fs_keeps_file_caps(h.path(where))
    if reason:
        raise InputError(f"cannot use file capabilities: {reason}")
    for path in (paths.CONFIG_DIR, paths.LOG_DIR, paths.STATE_DIR, paths.AGENT_UPGRADE_DIR):
        st = lstat_or_none(h.path(path))
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise InputError(f"{path} exists and is not a directory (symlink?); refusing to use it")
    st = lstat_or_none(h.path(paths.CONFIG_FILE))
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InputError(f"{paths.CONFIG_FILE} exists and is not a regular file (symlink?); refusing to replace it")
    check_service_paths(host.init, paths.SERVICE)
    if opts.metrics_textfile:
        check_metrics_textfile(host.init, opts.metrics_textfile, installed)

    group = service_group(opts.user, "the agent", installed.created(f"group:{opts.user}"))

    cap_names = caps.resolve(opts.caps, host.kernel)
    warnings = []
    if "cap_syslog" in cap_names and host.selinux == "enforcing":
        warnings.append("SELinux is enforcing: DeepFlow documents that eBPF needs it disabled")

    warnings.extend(check_controller_families(opts.controller_ips))

    cluster_id, group_id = opts.cluster_id, opts.agent_group
    group_lcuuid = None
    org = opts.org_id or 1
    if resolve_remote and opts.server and (opts.watcher_domain or group_id):
        from hostagent import server

        if opts.watcher_domain:
            cluster_id = server.domain_cluster_id(opts.server, opts.watcher_domain, timeout=opts.domain_timeout,
                                                  org_id=org)
        if group_id:
            # By name or id: the group must exist, and its lcuuid is what a move of the agent needs.
            group_id, group_lcuuid, _ = server.group_short_id(server.Client.for_server(opts.server, 10.0, org), group_id)
    return Resolved(cap_names, cluster_id, group_id, group, tuple(warnings), group_lcuuid, upgrade, upgrade_why,
                    installed)


def service_group(user: str, what: str, group_is_ours: bool) -> str:
    """The primary group of the service's user: an existing user must be safe to run as; a new
    user gets a new group of its own (group_is_ours: a killed run's manifest says we made it)."""
    account = accounts.user(user)
    if account is not None:
        reason = accounts.unsafe_user_reason(account)
        if reason:
            raise InputError(f"existing user {user} {reason}; refusing to run {what} as it")
        return accounts.group_name(account.gid) or str(account.gid)
    gid = accounts.group_gid(user)
    if gid is not None and not group_is_ours:
        # It would become the new user's primary group, and userdel could later remove it.
        raise InputError(f"group {user} already exists (gid {gid}) but user {user} does not; "
                         f"pick another --user: {what}'s user gets a new group of its own")
    return user


def _unit_under_ours(where: str, installed: Installed) -> Optional[str]:
    """The package's unit that an earlier hostagent wrote its full unit over (that unit's record keeps it):
    the drop-in goes over it, put back (the full unit's step hands over to the drop-in's)."""
    record = installed.record_of(f"service-definition:{where}")
    before = (record or {}).get("before")
    content = FileState(**before).content if before else b""
    return content.decode(errors="replace") if content and not content.startswith(dropin.MARK.encode()) else None


def service_steps(init: str, user: str, caps: tuple[str, ...], cpu_millicores: int, memory_mib: int,
                  cgroup: Any, binary: str = paths.AGENT_BINARY, installed: Optional[Installed] = None) -> list[Step]:
    """The agent's service definition for this host's init, then the service itself."""
    h = current_host()
    where = h.path(h.services.definition_path(paths.SERVICE))
    definition: list[Step]
    if init == "sysvinit":
        from hostagent.host.services import INITTAB_TAGS

        # SysV init takes at most 127 characters of command: the line runs a script that holds it.
        definition = [File(path=h.path(paths.SYSV_SCRIPT),
                           content=unit.render_sysv_script(user, caps, cpu_millicores, memory_mib, binary),
                           mode=0o755, owner="root", group="root"),
                      InittabLine(path=where, tag=INITTAB_TAGS[paths.SERVICE], runlevels="2345", process=paths.SYSV_SCRIPT)]
    elif init == "openrc":
        definition = [ServiceDefinition(path=where, content=unit.render_openrc(user, caps, cpu_millicores, memory_mib, binary),
                                        mode=0o755, owner="root", group="root")]
    else:
        content = unit.render(user, caps, cpu_millicores, memory_mib, cgroup, binary)
        base = dropin.package_unit(os.path.basename(where), h.path)
        package = read_text(h.path(base)) if base is not None else _unit_under_ours(where, installed or Installed())
        if package is not None:
            # DeepFlow's package owns the unit: leave its file to dpkg/rpm, override it all in a drop-in.
            base = base or h.logical(where)
            conf = dropin.dropin_path(os.path.basename(where))
            defaults = dropin.limit_defaults(dropin.resets(content, package), lambda argv: h.output(argv) or "")
            definition = [Directory(path=h.path(os.path.dirname(conf)), mode=0o755, owner="root", group="root"),
                          UnitDropIn(path=h.path(conf), content=dropin.render(content, package, defaults),
                                     mode=0o644, owner="root", group="root", base=h.path(base))]
        else:
            definition = [ServiceDefinition(path=where, content=content, mode=0o644, owner="root", group="root")]
    return [*definition, Service(name=paths.SERVICE, user=user, binary=h.path(binary))]


def metrics_steps(directory: str) -> list[Step]:
    """install --metrics-textfile: the oneshot service and its timer, the file it writes, the timer on."""
    from hostagent.metrics import FILE_NAME
    from hostagent.steps.metrics import Textfile, Timer

    h = current_host()
    service, timer = unit.render_metrics(directory)
    where = h.services.definition_path
    return [ServiceDefinition(path=h.path(where(paths.METRICS_SERVICE)), content=service, mode=0o644, owner="root", group="root"),
            ServiceDefinition(path=h.path(where(paths.METRICS_TIMER)), content=timer, mode=0o644, owner="root", group="root"),
            Textfile(path=h.path(f"{directory.rstrip('/')}/{FILE_NAME}")),
            Timer(name=paths.METRICS_TIMER, service=paths.METRICS_SERVICE)]


def read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def plan(opts: InstallOptions, host: HostFacts, r: Resolved) -> list[Step]:
    user, group = opts.user, r.group
    h = current_host()
    config = agentconfig.render(agentconfig.config_data(opts.controller_ips, opts.controller_port, r.cluster_id,
                                                        r.agent_group_id, opts.team_id))
    cg = host.cgroup
    # Last: an agent the server already knows is moved into the group (vtap-group-id-request only
    # places a first registration); nothing after it can fail and need that undone.
    membership: list[Step] = []
    if opts.server and r.agent_group_id and r.agent_group_lcuuid:
        membership.append(AgentGroupMembership(server=opts.server, group_id=r.agent_group_id,
                                               group_lcuuid=r.agent_group_lcuuid, org_id=opts.org_id or 1))
    binary = r.binary
    upgradable: list[Step] = []
    if binary == paths.AGENT_UPGRADABLE:
        # The agent's own upgrade replaces its binary here: its group may write the dir, nothing else.
        upgradable.append(Directory(path=h.path(paths.AGENT_UPGRADE_DIR), mode=0o770, owner="root", group=group))
    return [
        Group(name=group),
        User(name=user, group=group),
        *upgradable,
        Binary(path=h.path(binary), source=opts.agent_binary, group=group, upgradable=bool(upgradable)),
        Directory(path=h.path(paths.LOG_DIR), mode=0o750, owner=user, group=group, purge=True),
        Directory(path=h.path(paths.CONFIG_DIR), mode=0o755, owner="root", group="root"),
        File(path=h.path(paths.CONFIG_FILE), content=config, mode=0o640, owner="root", group=group),
        AgentCgroups(mode=cg.mode, cpu_mount=cg.cpu_mount, memory_mount=cg.memory_mount, user=user,
                     cpu_millicores=opts.cpu_millicores, memory_mib=opts.memory_mib),
        # Last change to the binary: chown clears capabilities.
        FileCaps(path=h.path(binary), caps=list(r.caps)),
        *service_steps(host.init, user, r.caps, opts.cpu_millicores, opts.memory_mib, cg, binary, r.installed),
        *(metrics_steps(opts.metrics_textfile) if opts.metrics_textfile else []),
    ] + membership
