"""A booted Debian test host under systemd-nspawn, with hostagent installed the README's way.

    with NspawnHost() as host:                 # copy of the cached image, booted, hostagent in /opt/hostagent
        rc, out, err = host.run("hostagent install ... --json")
        host.reboot()
    with NspawnHost(init="openrc") as host:    # PID 1: sysvinit's init, rc: openrc (or init="sysvinit")
        ...
    with nspawn_host(init="sysvinit") as host: # the tests' factory: + agent double, hostsnap, skip if no root

Design notes (traps found on these machines):
- This machine's PID 1 is not systemd, so nspawn runs with --register=no --keep-unit.
  Before exec it moves itself into a fresh child cgroup of ours in every hierarchy;
  the container's cgroup namespace is rooted there, so everything the container makes
  (its units, /sys/fs/cgroup/*/deepflow-agent) lands under that dir, removed on exit.
  The container shares this machine's v1 hierarchies, so only one lives at a time:
  it holds the flock /run/lock/hostagent-tests-cgroup.lock.
- nspawn mounts the v1 controllers read-only; a real v1 host lets root write them.
  The systemd image has a oneshot unit, before sysinit.target, that remounts cpu and
  memory rw; the sysvinit/openrc images run the same script as inittab's first sysinit entry.
- nspawn's default bounding set lacks cap_net_admin, cap_ipc_lock (and the eBPF
  profile's caps); a file-capability binary with a cap outside the bounding set fails
  exec with EPERM, so the container gets them with --capability=.
- No --private-network: services on this machine's 127.0.0.1 are reachable, and the
  optional sshd listens on 127.0.0.1:PORT here. So a SysV/OpenRC host's shutdown must not
  touch the network or clock: its images set NETDOWN=no (no `halt -i`), drop `halt -h`, and
  make umountroot/umountfs/hwclock no-ops (see _SHARED_WITH_THIS_MACHINE).
- Commands run through `systemd-run --pipe --wait` inside (via nsenter): they get the
  container's bounding set, cgroup and environment, like a root shell on that host. Without
  systemd, nsenter itself first joins init's cgroups and takes its bounding set.
- Boot done: systemd's is-system-running; SysV/OpenRC: the inittab's last "wait" entry
  (after runlevel 2's rc) touched BOOTED_MARKER. Poweroff: SIGRTMIN+4 to systemd, `telinit 0`
  to sysvinit's init. Reboot: poweroff, then a fresh boot of the same root (new /run, new cgroups).
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

from tests.cgrouplock import held as cgroup_lock_held
from tests.images.rootfs import Recipe, build_rootfs, clone_rootfs, overlay_rootfs, remove_tree, unmount_overlay
from tests.images.wheelhouse import build_wheelhouse

HOSTAGENT_VENV = "/opt/hostagent"
SINGLE_FILE_ON_HOST = "/usr/sbin/hostagent"
# Every capability a hostagent profile may put on the binary (ebpf profile included),
# plus what nspawn keeps by default. cap_setfcap is there already (bit 31).
EXTRA_CAPABILITIES = (
    "cap_net_admin", "cap_ipc_lock", "cap_sys_admin", "cap_sys_ptrace", "cap_net_raw",
    "cap_setfcap", "cap_sys_resource", "cap_syslog", "cap_bpf", "cap_perfmon",
)

_CGROUP_RW_UNIT = """\
[Unit]
Description=Make the v1 cpu and memory hierarchies writable, as on a real v1 host
DefaultDependencies=no
Before=sysinit.target local-fs.target
ConditionVirtualization=container

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/hostagent-test-cgroup-rw

[Install]
WantedBy=sysinit.target
"""
# Real mount points from mountinfo: cpu may be "cpu,cpuacct" or "cpu" alone.
_CGROUP_RW_SCRIPT = """\
#!/bin/sh
grep ' - cgroup ' /proc/self/mountinfo | while read -r _ _ _ _ mnt _; do
    opts=$(grep " $mnt " /proc/self/mountinfo | sed 's/.* - cgroup [^ ]* //')
    case ",$opts," in
        *,cpu,*|*,memory,*) mount -o remount,bind,rw "$mnt" ;;
    esac
done
exit 0
"""


def _write_file_hook(path: str, content: str, mode: str) -> str:
    return f'printf %s {shlex.quote(content)} > "$1{path}" && chmod {mode} "$1{path}"'


NSPAWN_RECIPE = Recipe(
    name="nspawn",
    suite="bookworm",
    packages=("openssh-server",),
    hooks=(
        _write_file_hook("/usr/local/sbin/hostagent-test-cgroup-rw", _CGROUP_RW_SCRIPT, "0755"),
        _write_file_hook("/etc/systemd/system/hostagent-test-cgroup-rw.service", _CGROUP_RW_UNIT, "0644"),
        'mkdir -p "$1/etc/systemd/system/sysinit.target.wants" && ln -sf '
        '../hostagent-test-cgroup-rw.service "$1/etc/systemd/system/sysinit.target.wants/"',
        # sshd is opt-in, started per run with per-run keys: no host keys in the image.
        'rm -f "$1"/etc/ssh/ssh_host_* "$1/etc/systemd/system/multi-user.target.wants/ssh.service"'
        ' "$1/etc/systemd/system/sshd.service"',
        # A login prompt on the console is of no use here and logs noise.
        'ln -sf /dev/null "$1/etc/systemd/system/console-getty.service"',
    ),
    version="1",
)

INITS = ("systemd", "sysvinit", "openrc")
# Touched by the last inittab entry: a "wait" entry starts only after the one before it
# (the rc of runlevel 2) has exited, so its presence means the boot is done.
BOOTED_MARKER = "/run/hostagent-test-booted"
# Debian's inittab without the gettys (no ttys in a container), sulogin and power lines;
# the cgroup remount runs first, before rcS, as the systemd image's unit runs before sysinit.
_INITTAB = f"""\
id:2:initdefault:
cg::sysinit:/usr/local/sbin/hostagent-test-cgroup-rw
si::sysinit:/etc/init.d/rcS
l0:0:wait:/etc/init.d/rc 0
l1:1:wait:/etc/init.d/rc 1
l2:2:wait:/etc/init.d/rc 2
l3:3:wait:/etc/init.d/rc 3
l4:4:wait:/etc/init.d/rc 4
l5:5:wait:/etc/init.d/rc 5
l6:6:wait:/etc/init.d/rc 6
ca:12345:ctrlaltdel:/sbin/shutdown -t1 -a -r now
hb:2345:wait:/bin/touch {BOOTED_MARKER}
"""
# The container shares this machine's network namespace and, with overlay=False, its root
# file system: halt/reboot -i would take THIS machine's interfaces down, halt -h spin its
# disks down, umountroot remount its / read-only, hwclock set its clock. nspawn owns the
# container's mounts and there is no clock to keep: those scripts end at once.
_SHARED_WITH_THIS_MACHINE = ("umountroot", "umountfs", "umountnfs.sh", "hwclock.sh", "hwclockfirst.sh")
_NON_SYSTEMD_HOOKS = (
    _write_file_hook("/usr/local/sbin/hostagent-test-cgroup-rw", _CGROUP_RW_SCRIPT, "0755"),
    _write_file_hook("/etc/inittab", _INITTAB, "0644"),
    'printf "HALT=poweroff\\nNETDOWN=no\\n" > "$1/etc/default/halt"',
    'sed -i \'s/^\\thddown="-h"$/\\thddown=""/\' "$1/etc/init.d/halt" && ! grep -q "hddown=\\"-h\\"" "$1/etc/init.d/halt"',
    "for s in " + " ".join(_SHARED_WITH_THIS_MACHINE) + '; do f="$1/etc/init.d/$s"; [ -e "$f" ] || continue; '
    "sed -i '/^### END INIT INFO/a exit 0  # hostagent test image: nspawn owns this' \"$f\"; done",
    # sshd is opt-in (started per run with per-run keys): not started at boot, no host keys.
    'rm -f "$1"/etc/ssh/ssh_host_* "$1"/etc/rc?.d/[SK][0-9][0-9]ssh "$1"/etc/runlevels/*/ssh',
)
SYSVINIT_RECIPE = Recipe(
    name="nspawn-sysvinit",
    suite="bookworm",
    packages=("sysvinit-core", "openssh-server"),
    exclude=("systemd", "systemd-sysv", "dbus"),
    hooks=_NON_SYSTEMD_HOOKS,
    version="1",
)
# Debian's openrc is the rc of sysvinit's init (it conflicts with sysv-rc): inittab's
# /etc/init.d/rc and rcS are openrc's wrappers of `openrc sysinit` and `openrc default`.
OPENRC_RECIPE = dataclasses.replace(
    SYSVINIT_RECIPE, name="nspawn-openrc", packages=("sysvinit-core", "openrc", "openssh-server"),
)
_RECIPES = {"systemd": NSPAWN_RECIPE, "sysvinit": SYSVINIT_RECIPE, "openrc": OPENRC_RECIPE}


def recipe_for(init: str = "systemd", python: bool = True) -> Recipe:
    """The image of a host whose PID 1 is `init`; python=False: no python3 at all."""
    if init not in _RECIPES:
        raise ValueError(f"init must be one of {INITS}, not {init!r}")
    recipe = _RECIPES[init]
    if not python:
        recipe = dataclasses.replace(recipe, name=recipe.name + "-nopython",
                                     exclude=tuple(recipe.exclude) + ("python3", "python3-venv"))
    return recipe


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    def __iter__(self):  # rc, out, err = host.run(...)
        return iter((self.rc, self.stdout, self.stderr))

    def check(self) -> "Result":
        if self.rc != 0:
            raise RuntimeError(f"rc={self.rc}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}")
        return self


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_requirement() -> str:
    """Why an nspawn host cannot boot here, or "" when it can."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("systemd-nspawn", "mmdebstrap", "nsenter", "ssh", "gcc"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return ""


def _cgroup_mounts() -> list[tuple[set, str]]:
    """(controllers, mount point) of each cgroup hierarchy here; {""} for cgroup2."""
    mounts: list[tuple[set, str]] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        fstype, _source, opts = right.split(" ", 2)
        if fstype in ("cgroup", "cgroup2"):
            mounts.append((set(opts.split(",")) if fstype == "cgroup" else {""}, left.split()[4]))
    return mounts


def _own_cgroups() -> dict[str, str]:
    """Mount point of each hierarchy -> this process's cgroup path in it."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        paths[controllers if hid != "0" else ""] = path
    mounts = _cgroup_mounts()
    out = {}
    for key, path in paths.items():
        # cpuset children need cpus/mems before taking a process; systemd on v1 never uses it.
        if "cpuset" in key.split(","):
            continue
        for optset, mnt in mounts:
            if set(key.split(",")) <= optset:
                out[mnt] = path
                break
    return out


def _become_container(leader: int):
    """A preexec_fn: join every cgroup of process `leader` and drop from the bounding set
    what is not in its own (exec'ing nsenter then leaves root with the container's caps)."""
    procs = []
    mounts = _cgroup_mounts()
    for line in Path(f"/proc/{leader}/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        key = set(controllers.split(",")) if hid != "0" else {""}
        for optset, mnt in mounts:
            if key <= optset:
                procs.append(f"{mnt}{path.rstrip('/')}/cgroup.procs")
                break
    status = Path(f"/proc/{leader}/status").read_text()
    bounding = int(next(l.split()[1] for l in status.splitlines() if l.startswith("CapBnd:")), 16)
    last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        for p in procs:
            with open(p, "w") as f:
                f.write(str(os.getpid()))
        for cap in range(last_cap + 1):
            if not bounding & (1 << cap) and libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), f"PR_CAPBSET_DROP {cap}")

    return preexec


PR_CAPBSET_DROP = 24


def _rmdir_tree(path: Path) -> None:
    if not path.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


class NspawnHost:
    """A Debian host booted under systemd-nspawn from a fresh copy of a cached image."""

    def __init__(
        self,
        recipe: Optional[Recipe] = None,
        *,
        init: str = "systemd",
        install_hostagent: bool = True,
        wheelhouse: Optional[Path] = None,
        hostagent_file: Optional[Path] = None,
        ssh: bool = False,
        capabilities: Sequence[str] = EXTRA_CAPABILITIES,
        workdir: Optional[Path] = None,
        boot_timeout: float = 60.0,
        overlay: bool = True,
    ):
        # PID 1 of the host: systemd, sysvinit (sysv-rc) or openrc (on sysvinit's init, as Debian has it).
        self.init = init
        self.recipe = recipe or recipe_for(init)
        self.install_hostagent = install_hostagent
        self.wheelhouse = wheelhouse
        # The single file (dist/hostagent-<v>-linux-x86_64), put at /usr/sbin/hostagent before boot.
        self.hostagent_file = hostagent_file
        self.ssh_enabled = ssh
        self.capabilities = tuple(capabilities)
        self.boot_timeout = boot_timeout
        # overlay: the host's writes go to an upper dir over the cached image (no copy);
        # False: a full copy (cp --reflink=auto -a), for filesystems overlayfs cannot use.
        self.overlay = overlay
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="hostagent-nspawn-", dir="/var/tmp"))
        self.machine = f"hostagent-test-{os.getpid()}-{int(time.time()) % 100000}"
        self.root = self.workdir / "root"
        self.console_log = self.workdir / "console.log"
        self.ssh_port: Optional[int] = None
        self.ssh_config: Optional[Path] = None
        self.timings: dict[str, float] = {}
        self._proc: Optional[subprocess.Popen] = None
        self._leader: Optional[int] = None
        self._lock: Optional[contextlib.ExitStack] = None
        self._cgroup_dirs: list[Path] = []
        self.boot_state = ""
        self.exit_status: Optional[int] = None

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> "NspawnHost":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        t0 = time.monotonic()
        image = build_rootfs(self.recipe)
        self.timings["image"] = time.monotonic() - t0
        t0 = time.monotonic()
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(cgroup_lock_held())  # another test's host may be alive
        self.timings["lock_wait"] = time.monotonic() - t0
        t0 = time.monotonic()
        if self.overlay:
            overlay_rootfs(image, self.workdir)
        else:
            clone_rootfs(image, self.root)
        self.timings["clone"] = time.monotonic() - t0
        if self.install_hostagent:
            t0 = time.monotonic()
            wheels = self.wheelhouse or build_wheelhouse(self.workdir / "wheelhouse")
            shutil.copytree(wheels, self.root / "var/tmp/hostagent-wheelhouse")
            self.timings["wheelhouse"] = time.monotonic() - t0
        if self.hostagent_file is not None:
            dest = self.root / SINGLE_FILE_ON_HOST.lstrip("/")
            shutil.copyfile(self.hostagent_file, dest)
            os.chown(dest, 0, 0)
            os.chmod(dest, 0o755)
        self.boot()
        if self.install_hostagent:
            t0 = time.monotonic()
            # The README's way of putting hostagent on a host without internet (with the k8s extra:
            # the k8s-sync tests run it from this venv).
            self.run(
                f"python3 -m venv {HOSTAGENT_VENV} && {HOSTAGENT_VENV}/bin/pip install -q --no-index "
                f"--disable-pip-version-check --find-links /var/tmp/hostagent-wheelhouse 'hostagent[k8s]' && "
                f"ln -sf {HOSTAGENT_VENV}/bin/hostagent /usr/local/bin/hostagent && "
                "rm -rf /var/tmp/hostagent-wheelhouse",
                timeout=300,
            ).check()
            self.timings["install_hostagent"] = time.monotonic() - t0
        if self.ssh_enabled:
            self.start_sshd()

    def boot(self) -> None:
        """Start the container and wait until its init says the boot is done."""
        t0 = time.monotonic()
        self._cgroup_dirs = []
        for mnt, path in _own_cgroups().items():
            parent = Path(mnt + path.rstrip("/"))
            # Left by a killed run; rmdir only succeeds on dirs without processes.
            for stale in parent.glob("hostagent-test-*"):
                if stale.name != self.machine:
                    _rmdir_tree(stale)
            d = parent / self.machine
            d.mkdir(exist_ok=True)
            self._cgroup_dirs.append(d)
        procs = [str(d / "cgroup.procs") for d in self._cgroup_dirs]

        def enter_cgroups() -> None:
            for p in procs:
                with open(p, "w") as f:
                    f.write(str(os.getpid()))

        cmd = [
            "systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--quiet",
            f"--machine={self.machine}", f"--directory={self.root}",
            "--capability=" + ",".join(self.capabilities), "--console=read-only",
        ]
        log = open(self.console_log, "ab")
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=enter_cgroups, start_new_session=True,
        )
        log.close()
        self._leader = self._wait_leader()
        if self.init == "systemd":
            self.boot_state = self._wait_systemd_booted()
        else:
            self.boot_state = self._wait_rc_booted()
        self.timings["boot"] = time.monotonic() - t0

    def _wait_systemd_booted(self) -> str:
        deadline = time.monotonic() + self.boot_timeout
        state = ""
        while time.monotonic() < deadline:
            r = self._nsenter(["systemctl", "is-system-running", "--wait"], timeout=self.boot_timeout)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"boot did not finish ({state!r}); console: {self.console_tail()}")
        return state

    def _wait_rc_booted(self) -> str:
        """Runlevel 2 entered and its rc done (the inittab's last wait entry ran); on openrc, its
        default runlevel reached too. Returns `runlevel`'s answer, e.g. "N 2"."""
        deadline = time.monotonic() + self.boot_timeout
        check = f"test -e {BOOTED_MARKER} && runlevel"
        if self.init == "openrc":
            check += " && test \"$(rc-status --runlevel)\" = default"
        r = Result(1, "", "")
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self._proc.returncode}: {self.console_tail()}")
            r = self._nsenter(["sh", "-c", check], timeout=self.boot_timeout)
            if r.rc == 0:
                return r.stdout.splitlines()[0].strip()
            time.sleep(0.1)
        raise RuntimeError(f"boot did not finish ({r.stdout!r} {r.stderr!r}); console: {self.console_tail()}")

    def _wait_leader(self) -> int:
        deadline = time.monotonic() + self.boot_timeout
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self._proc.returncode}: {self.console_tail()}")
            children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children")
            try:
                pids = children.read_text().split()
            except OSError:
                pids = []
            for pid in pids:
                # The container's PID 1 is the child whose pid in its own namespace is 1.
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                nspid = [l for l in status.splitlines() if l.startswith("NSpid:")]
                if nspid and nspid[0].split()[-1] == "1" and len(nspid[0].split()) > 2:
                    return int(pid)
            time.sleep(0.05)
        raise RuntimeError("container leader did not appear")

    def poweroff(self, timeout: float = 60.0) -> None:
        """Shut the host down through its init; `exit_status` says how it ended: nspawn's exit
        code, 0 when the init powered off by itself, None when it had to be killed."""
        if self._proc is None:
            return
        if self._proc.poll() is None and self._leader:
            if self.init == "systemd":
                try:
                    os.kill(self._leader, signal.SIGRTMIN + 4)  # systemd: start poweroff.target
                except ProcessLookupError:
                    pass
            else:
                # Runlevel 0: the rc's stop scripts, then /etc/init.d/halt's `halt -f -p`, whose
                # reboot(2) in the container's pid namespace ends its init (nspawn exits).
                self._nsenter(["telinit", "0"], timeout=30)
            try:
                self.exit_status = self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(10)
                self.exit_status = None
        else:
            self.exit_status = self._proc.returncode
        self._proc = None
        self._leader = None
        shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.machine}", ignore_errors=True)

    def reboot(self) -> None:
        """Power off and boot the same root again (cgroup dirs and /run gone, disk kept)."""
        t0 = time.monotonic()
        self.poweroff()
        self._remove_cgroups()
        self.boot()
        if self.ssh_enabled:
            self.start_sshd()
        self.timings["reboot"] = time.monotonic() - t0

    def close(self) -> None:
        try:
            if self.ssh_config is not None:  # end the ControlPersist master now, not in 120 s
                subprocess.run(["ssh", "-F", str(self.ssh_config), "-O", "exit", self.machine],
                               capture_output=True, timeout=10)
            self.poweroff()
        finally:
            self._remove_cgroups()
            if self._lock is not None:
                self._lock.close()  # releases the flock
                self._lock = None
            unmount_overlay(self.workdir)
            if self._own_workdir:
                remove_tree(self.workdir)
            elif self.root.exists():
                remove_tree(self.root)

    def _remove_cgroups(self) -> None:
        for d in self._cgroup_dirs:
            _rmdir_tree(d)
        # Agent dirs that escaped the container's cgroup namespace (a bug elsewhere) or
        # were left by a killed run; they hold no process once the container is gone.
        for top in ("cpu", "cpu,cpuacct", "memory", "unified", ""):
            _rmdir_tree(Path("/sys/fs/cgroup", top, "deepflow-agent"))

    # --- commands ----------------------------------------------------------------------

    def _nsenter(self, argv: Sequence[str], input: Union[str, bytes, None] = None,
                 timeout: float = 120, as_container: bool = False) -> Result:
        """as_container: first join the cgroups of the container's init and take its bounding set,
        as systemd-run does inside on a systemd host (what the command starts stays in the
        container's cgroups, with the container's capabilities)."""
        assert self._leader, "host is not running"
        cmd = ["nsenter", "-t", str(self._leader), "-a", "--", "env", "-i",
               "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", *argv]
        data = input.encode() if isinstance(input, str) else input
        preexec = _become_container(self._leader) if as_container else None
        p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           preexec_fn=preexec)
        return Result(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))

    def run(self, cmd: Union[str, Sequence[str]], input: Union[str, bytes, None] = None,
            timeout: float = 120) -> Result:
        """Run a command as root on the host (a shell string, or argv); returns rc, stdout, stderr."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        if self.init != "systemd":
            return self._nsenter(argv, input=input if input is not None else b"", timeout=timeout,
                                 as_container=True)
        return self._nsenter(
            ["systemd-run", "--quiet", "--wait", "--pipe", "--collect", "--service-type=exec",
             "-p", "Environment=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--", *argv],
            input=input if input is not None else b"", timeout=timeout,
        )

    def put(self, path: str, data: Union[str, bytes], mode: int = 0o644) -> None:
        """Write a file on the host (inside its mount namespace, so /tmp and /run work too)."""
        q = shlex.quote(path)
        self._nsenter(["sh", "-c", f"mkdir -p \"$(dirname {q})\" && cat > {q} && chmod {mode:o} {q}"],
                      input=data).check()

    def get(self, path: str) -> str:
        return self._nsenter(["cat", path]).check().stdout

    def snapshot(self, roots: Sequence[str] = ()) -> dict:
        """hostsnap of the host, taken from this machine through its pid 1's root (its own mounts,
        cgroupfs included): works on a host without Python."""
        from tests import hostsnap

        assert self._leader, "host is not running"
        return hostsnap.snapshot(tuple(roots) or hostsnap.DEFAULT_ROOTS, root=f"/proc/{self._leader}/root")

    def journal(self, unit: str = "deepflow-agent.service", lines: int = 50) -> str:
        if self.init != "systemd":  # no journal, no syslog daemon: what init and rc printed
            return self.console_tail()
        return self.run(["journalctl", "--no-pager", "-n", str(lines), "-u", unit]).stdout

    def console_tail(self, chars: int = 3000) -> str:
        try:
            return self.console_log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # --- ssh (opt-in) ------------------------------------------------------------------

    def start_sshd(self) -> None:
        """sshd on 127.0.0.1:PORT of this machine, host and client keys made per run."""
        key = self.workdir / "id_ed25519"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        if self.ssh_port is None:
            self.ssh_port = _free_port()
        self.put("/root/.ssh/authorized_keys", (self.workdir / "id_ed25519.pub").read_text(), 0o600)
        options = (f"-o ListenAddress=127.0.0.1 -o Port={self.ssh_port} -o PermitRootLogin=prohibit-password "
                   "-o PasswordAuthentication=no -o UseDNS=no")
        if self.init == "systemd":
            start = ("systemctl reset-failed hostagent-test-sshd.service 2>/dev/null; "
                     f"systemd-run --quiet --unit=hostagent-test-sshd -- /usr/sbin/sshd -D -e {options}")
        else:  # sshd daemonizes (its fds closed) and is reparented to the container's init
            start = f"/usr/sbin/sshd -E /run/hostagent-test-sshd.log {options}"
        self.run("mkdir -p /run/sshd && chmod 0755 /run/sshd && ssh-keygen -A -q >/dev/null && " + start).check()
        self.ssh_config = self.workdir / "ssh_config"
        self.ssh_config.write_text(
            f"Host {self.machine}\n  HostName 127.0.0.1\n  Port {self.ssh_port}\n  User root\n"
            f"  IdentityFile {key}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
            # One connection reused by every command testinfra runs: ~10 ms instead of ~100 ms each.
            f"  ControlMaster auto\n  ControlPath {self.workdir}/ssh-%C\n  ControlPersist 120\n"
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if subprocess.run(self.ssh_command("true"), capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        log = "journalctl -u hostagent-test-sshd -n 20" if self.init == "systemd" else \
            "tail -n 20 /run/hostagent-test-sshd.log"
        raise RuntimeError("sshd did not come up: " + self.run(log).stdout)

    def ssh_command(self, remote: str) -> list[str]:
        assert self.ssh_config is not None, "start with ssh=True"
        return ["ssh", "-F", str(self.ssh_config), self.machine, remote]

    @property
    def testinfra_host(self) -> str:
        """The --hosts value for testinfra's ssh backend."""
        assert self.ssh_config is not None, "start with ssh=True"
        return f"ssh://{self.machine}?ssh_config={self.ssh_config}"


@contextlib.contextmanager
def nspawn_host(
    init: str = "systemd",
    *,
    wheelhouse: bool = True,
    single_file: Optional[Path] = None,
    python: bool = True,
    ssh: bool = False,
    double: bool = True,
    hostsnap: bool = True,
) -> Iterator[NspawnHost]:
    """The nspawn tests' booted host (skips the test where nspawn cannot run here).

    init: systemd | sysvinit | openrc (PID 1 and rc of the image).
    wheelhouse: hostagent in a venv from this tree's wheels, the README's way.
    single_file: the single file (dist/hostagent-<v>-linux-x86_64) put at /usr/sbin/hostagent.
    python: False for an image with no python3 at all (then wheelhouse must be False).
    ssh: sshd on 127.0.0.1:PORT for testinfra (host.testinfra_host).
    double, hostsnap: the agent double at hostcmd.DOUBLE, tests/hostsnap.py at hostcmd.HOSTSNAP_ON_HOST.
    """
    import pytest

    from tests.system import hostcmd

    reason = missing_requirement()
    if reason:
        pytest.skip(reason)
    agent = None
    if double:
        from tests.fixtures.build import build_agent_double

        agent = build_agent_double()
    with NspawnHost(recipe_for(init, python), init=init, install_hostagent=wheelhouse,
                    hostagent_file=single_file, ssh=ssh) as h:
        if agent is not None:
            h.put(hostcmd.DOUBLE, agent.read_bytes(), 0o755)
        if hostsnap:
            h.put(hostcmd.HOSTSNAP_ON_HOST, hostcmd.HOSTSNAP.read_bytes())
        yield h
        print(f"\nnspawn {init} timings: { {k: round(v, 2) for k, v in h.timings.items()} }")


if __name__ == "__main__":
    with NspawnHost(ssh=True) as h:
        print(h.run("systemctl is-system-running; findmnt -R /sys/fs/cgroup; hostagent --help | head -5"))
        print(h.timings)
