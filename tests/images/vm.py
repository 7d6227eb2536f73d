"""A throwaway Debian VM under qemu (TCG), reached over SSH on 127.0.0.1.

    with VMHost(build_image(TIERS["bookworm-v2"]), workdir) as vm:
        vm.run("systemctl is-system-running --wait")
        vm.put(local_file, "/tmp/x")
        vm.reboot()

Each VM boots from a qcow2 overlay over the cached image, so it starts clean
and leaves the template untouched. Networking is qemu's user mode with
restrict=on: the guest reaches nothing, and the only way in is the forwarded
SSH port on 127.0.0.1. The key pair is made per VM; its public half reaches the
guest on the seed disk (see vm_image.py). The serial console goes to
`workdir/console.log`: read it when a boot hangs.
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence, Union

from tests.images.vm_image import SEED_SERIAL, VMImage, make_overlay, make_seed

Command = Union[str, Sequence[str]]

# TCG emulates every instruction; a plain x86-64 model keeps glibc and Python
# on SSE2 code paths, which TCG runs faster than the AVX2 ones "max" offers.
CPU_MODEL = os.environ.get("HOSTAGENT_VM_CPU", "qemu64")


class VMError(RuntimeError):
    pass

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

class VMHost:
    """Context manager: boots on enter (up to SSH), kills qemu and cleans up on exit."""

    def __init__(self, image: VMImage, workdir: Path, memory_mb: int = 1024, cpus: int = 2,
                 boot_timeout: float = 600.0) -> None:
        self.image = image
        self.workdir = Path(workdir)
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.boot_timeout = boot_timeout
        self.port = 0
        self.key = self.workdir / "id_ed25519"
        self.console_log = self.workdir / "console.log"
        self.ssh_config = self.workdir / "ssh_config"
        # ssh's ControlPath is a unix socket (at most 107 bytes, and ssh adds 17 to it): a short dir of
        # its own, not the workdir (pytest's /tmp/pytest-of-root/pytest-NNN/vm-TIER0/ is too long).
        self._control_dir = tempfile.mkdtemp(prefix="havm-", dir="/tmp")
        self.proc: subprocess.Popen | None = None
        self.boot_seconds: list[float] = []  # boot-to-SSH for each boot, first boot included
        self._qmp_path = os.path.join(self._control_dir, "qmp")

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> "VMHost":
        try:
            self.start()
            self.wait_for_ssh()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        shutil.rmtree(self._control_dir, ignore_errors=True)

    def start(self, keep_disk: bool = False, loadvm: str = "") -> None:
        """keep_disk: boot the disk as the last run left it (after a power cut), not a new overlay;
        loadvm: resume a state that savevm() stored in it instead of booting."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hostagent-vm-test",
                            "-f", str(self.key)], check=True)
        overlay = self.workdir / "disk.qcow2"
        if not (keep_disk or loadvm):
            if overlay.exists():
                overlay.unlink()
            make_overlay(self.image, overlay)
        seed = make_seed((self.workdir / "id_ed25519.pub").read_text(), self.workdir / "seed.raw")
        self.port = _free_port()
        self._write_ssh_config()
        cmd = [
            "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none",
            "-accel", "tcg,thread=multi", "-cpu", CPU_MODEL, "-smp", str(self.cpus), "-m", str(self.memory_mb),
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
            "-append", self.image.cmdline(),
            # The overlay is thrown away after the test: no need to flush it to disk.
            "-drive", f"file={overlay},if=none,id=root,format=qcow2,cache=unsafe",
            "-device", "virtio-blk-pci,drive=root",  # first virtio disk: /dev/vda
            "-drive", f"file={seed},if=none,id=seed,format=raw,readonly=on",
            "-device", f"virtio-blk-pci,drive=seed,serial={SEED_SERIAL}",
            "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-:22",
            "-device", "virtio-net-pci,netdev=net0",
            "-device", "virtio-rng-pci",
            "-serial", f"file:{self.console_log}",
            "-qmp", f"unix:{self._qmp_path},server=on,wait=off",
        ]
        if loadvm:
            cmd += ["-loadvm", loadvm]
        self._qemu_log = open(self.workdir / "qemu.log", "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._qemu_log,
                                     stderr=subprocess.STDOUT)
        self._boot_started = time.monotonic()

    def kill(self) -> None:
        """Stop qemu now; the overlay holds nothing worth a clean shutdown."""
        self._close_master()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_qemu_log", None):
            self._qemu_log.close()
            self._qemu_log = None

    def power_cut(self) -> None:
        """SIGKILL qemu: the guest loses its RAM, page cache included, as in a power cut. What it
        flushed is on the overlay: qemu hands every guest flush to the host (cache=unsafe only skips
        the host's own fsync), and the host outlives qemu."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_master()
        if getattr(self, "_qemu_log", None):
            self._qemu_log.close()
            self._qemu_log = None

    def boot(self, loadvm: str = "") -> float:
        """Start qemu again on the same disk (a cold boot, or resume a saved state); seconds to SSH."""
        self.power_cut()
        self.start(keep_disk=True, loadvm=loadvm)
        return self.wait_for_ssh()

    def monitor(self, command: str, timeout: float = 600.0) -> str:
        """One human-monitor command over QMP (e.g. savevm NAME); returns its output."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(self._qmp_path)
            stream = sock.makefile("rwb")

            def call(execute: str, **arguments) -> dict:
                stream.write(json.dumps({"execute": execute, "arguments": arguments}).encode() + b"\n")
                stream.flush()
                while True:
                    reply = json.loads(stream.readline())
                    if "return" in reply or "error" in reply:  # skip events
                        return reply

            json.loads(stream.readline())  # the greeting
            call("qmp_capabilities")
            reply = call("human-monitor-command", **{"command-line": command})
        if "error" in reply:
            raise VMError(f"qemu monitor {command!r}: {reply['error']}")
        return reply["return"]

    def savevm(self, name: str) -> None:
        """Store the running guest (RAM and disk) in the overlay, for boot(loadvm=name)."""
        out = self.monitor(f"savevm {name}").strip()
        if out:
            raise VMError(f"savevm {name}: {out}")

    def poweroff(self, timeout: float = 120.0) -> None:
        """Clean shutdown from inside; falls back to kill()."""
        self.run("systemctl poweroff", check=False, timeout=30)
        self._close_master()
        try:
            if self.proc:
                self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    # -------------------------------------------------------------- ssh

    def _write_ssh_config(self) -> None:
        """An ssh_config with one Host, for testinfra (--ssh-config) and plain ssh -F."""
        self.ssh_config.write_text(
            f"Host {self.host_alias}\n"
            f"  HostName 127.0.0.1\n  Port {self.port}\n  User root\n"
            f"  IdentityFile {self.key}\n  IdentitiesOnly yes\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
            "  BatchMode yes\n  ConnectTimeout 10\n"
            # One TCP+key exchange per VM, not per command: each costs seconds under TCG.
            f"  ControlMaster auto\n  ControlPath {self._control_dir}/%C\n  ControlPersist 120\n"
            "  ServerAliveInterval 5\n  ServerAliveCountMax 6\n"
        )

    @property
    def host_alias(self) -> str:
        return "hostagent-vm"

    @property
    def testinfra_args(self) -> list[str]:
        """pytest arguments that point the testinfra suite at this VM."""
        return [f"--hosts=ssh://{self.host_alias}", f"--ssh-config={self.ssh_config}"]

    def _ssh(self, *args: str) -> list[str]:
        return ["ssh", "-F", str(self.ssh_config), *args, self.host_alias]

    def _close_master(self) -> None:
        if self.port and self.ssh_config.exists():
            subprocess.run(["ssh", "-F", str(self.ssh_config), "-O", "exit", self.host_alias],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)

    def run(self, cmd: Command, check: bool = True, timeout: float = 600.0,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a shell command as root in the guest; text output."""
        if not isinstance(cmd, str):
            cmd = shlex.join(cmd)
        result = subprocess.run(self._ssh() + [cmd], input=input, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, timeout=timeout,
                                stdin=None if input is not None else subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise VMError(f"{cmd!r} exited {result.returncode}\nstdout:\n{result.stdout[-3000:]}"
                          f"\nstderr:\n{result.stderr[-3000:]}")
        return result

    def put(self, local: Path | str, remote: str) -> None:
        """Copy a file or directory into the guest (scp -r)."""
        subprocess.run(["scp", "-q", "-r", "-F", str(self.ssh_config), str(local),
                        f"{self.host_alias}:{remote}"], check=True, timeout=600)

    def get(self, remote: str, local: Path | str) -> None:
        subprocess.run(["scp", "-q", "-r", "-F", str(self.ssh_config),
                        f"{self.host_alias}:{remote}", str(local)], check=True, timeout=600)

    def wait_for_ssh(self, timeout: float | None = None) -> float:
        """Block until `true` runs over SSH; return seconds since qemu started or the reboot."""
        deadline = time.monotonic() + (timeout or self.boot_timeout)
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise VMError(f"qemu exited {self.proc.returncode} during boot; "
                              f"see {self.workdir}/qemu.log and {self.console_log}\n{self.console_tail()}")
            try:
                probe = subprocess.run(self._ssh("-o", "ConnectTimeout=5") + ["true"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       stdin=subprocess.DEVNULL, timeout=30)
                if probe.returncode == 0:
                    took = time.monotonic() - self._boot_started
                    self.boot_seconds.append(round(took, 1))
                    return took
            except subprocess.TimeoutExpired:
                pass
            time.sleep(1)
        raise VMError(f"no SSH after {timeout or self.boot_timeout:.0f} s\n{self.console_tail()}")

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -------------------------------------------------------------- guest state

    def boot_id(self) -> str:
        return self.run("cat /proc/sys/kernel/random/boot_id").stdout.strip()

    def reboot(self, timeout: float | None = None) -> float:
        """Reboot from inside and wait until SSH answers from the new boot."""
        before = self.boot_id()
        self.run("systemctl reboot", check=False, timeout=30)
        self._close_master()
        self._boot_started = time.monotonic()
        deadline = time.monotonic() + (timeout or self.boot_timeout)
        while time.monotonic() < deadline:
            self.wait_for_ssh(deadline - time.monotonic())
            if self.boot_id() != before:
                return self.boot_seconds[-1]
            self.boot_seconds.pop()  # reached the old boot before sshd went down
            self._close_master()
            time.sleep(2)
        raise VMError("VM did not come back from reboot")

    def wait_until_running(self, timeout: float = 300.0) -> str:
        """Wait for systemd to finish booting; returns its state (running or degraded)."""
        result = self.run(f"timeout {int(timeout)} systemctl is-system-running --wait", check=False,
                          timeout=timeout + 30)
        return result.stdout.strip()

def cgroup_mode(vm: VMHost) -> str:
    """'v2' (unified), 'v1' (legacy, no unified mount) or 'hybrid', from the guest's mounts."""
    fstype = vm.run("stat -f -c %T /sys/fs/cgroup").stdout.strip()
    if fstype == "cgroup2fs":
        return "v2"
    mounts = vm.run("cat /proc/self/mounts").stdout
    has_unified = any(line.split()[2] == "cgroup2" for line in mounts.splitlines() if line.strip())
    return "hybrid" if has_unified else "v1"
