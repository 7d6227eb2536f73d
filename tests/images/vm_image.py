"""Bootable Debian VM disk images for the qemu test tier, cached by recipe.

An image is: an ext4 filesystem image of a Debian rootfs (mkfs.ext4 -d, so no
loop devices), plus the kernel and initrd copied out of that rootfs for a
direct -kernel/-initrd boot. The rootfs comes from tests/images/rootfs.py
(mmdebstrap, cached by recipe digest); the disk image is cached next to it
under the same digest. Tests never write to it: each VM gets a qcow2 overlay.

SSH access: every image has a oneshot unit that copies a public key from a
small raw "seed" disk (virtio serial number `hostagent-seed`) into
/root/.ssh/authorized_keys before sshd starts. The key is made per run, the
seed disk is a zero-padded file, and this works the same on systemd 247
(bullseye) as on 257 (trixie), unlike systemd credentials.

Python on the target: hostagent's wheelhouse is built on this machine (Python
3.11), but bullseye has 3.9 and trixie 3.13. `target_wheels()` makes the
dependency set for the target's Python: binary wheels of the same (or else
the newest) release from PyPI, python-prctl (sdist only) compiled inside a
throwaway mmdebstrap chroot of the target suite with gcc, python3-dev and
libcap-dev, then pip resolves all of hostagent's requirements again for that
Python (pure wheels picked for 3.11 may need 3.10+, and bullseye's pip 20.3
fails instead of skipping them). The VM image never gets a compiler. Chosen
over Debian's python3-prctl with a --system-site-packages venv because that
would not cover PyYAML (bullseye's python3-yaml 5.3 is below our >=5.4) nor
the other deps, and would not be the wheelhouse install the README documents.
On the target: `pip install --no-index --find-links DIR hostagent`, with DIR
holding these wheels plus the hostagent wheel.

    python -m tests.images.vm_image [--tier bookworm-v2]   # build, print paths
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Sequence

from tests.images import rootfs

CACHE_DIR = rootfs.CACHE_DIR
# Bump when the image layout below changes in a way the recipe does not show.
IMAGE_VERSION = "1"
SEED_SERIAL = "hostagent-seed"
SEED_SIZE = 4096
DISK_SIZE = "3G"

VM_PACKAGES = (
    "linux-image-amd64", "initramfs-tools", "kmod", "udev", "systemd-sysv", "dbus",
    "openssh-server", "openssh-sftp-server", "python3", "python3-venv", "libcap2",
    "libcap2-bin", "iproute2", "procps", "e2fsprogs",
)

# systemd's name for /dev/disk/by-id/virtio-SERIAL ("-" escaped as \x2d).
_SEED_DEVICE_UNIT = "dev-disk-by\\x2did-virtio\\x2d" + SEED_SERIAL.replace("-", "\\x2d") + ".device"

_SEED_UNIT = f"""\
[Unit]
Description=Authorize the test run's SSH key from the seed disk
Requires={_SEED_DEVICE_UNIT}
After={_SEED_DEVICE_UNIT} local-fs.target
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/hostagent-seed-key

[Install]
WantedBy=multi-user.target
"""

_SEED_SCRIPT = f"""\
#!/bin/sh
# The seed disk holds the public key followed by zero padding.
set -e
install -d -m 700 /root/.ssh
tr -d '\\000' < /dev/disk/by-id/virtio-{SEED_SERIAL} > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
"""

_NETWORK = """\
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
"""

_SSHD = """\
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
"""

_FSTAB = "/dev/vda / ext4 rw,errors=remount-ro 0 1\n"

# A small initrd with just what mounts /dev/vda: the default (MODULES=most) is
# ~30 MB, and unpacking and probing all of it costs seconds under TCG.
_INITRAMFS_CONF = "MODULES=list\n"
_INITRAMFS_MODULES = "virtio_pci\nvirtio_blk\ncrc32c_generic\next4\n"

# Units that would change the host on their own while a test snapshots it.
_MASKED = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer",
    "systemd-networkd-wait-online.service", "man-db.timer", "dpkg-db-backup.timer",
    "e2scrub_reap.service",
)


def _write_hook(path: str, content: str, mode: str = "644") -> str:
    """A customize hook that writes `content` to `path` inside the rootfs."""
    blob = base64.b64encode(content.encode()).decode()
    return (f'mkdir -p "$1{os.path.dirname(path)}" && echo {blob} | base64 -d > "$1{path}"'
            f' && chmod {mode} "$1{path}"')


def _vm_hooks() -> tuple[str, ...]:
    masks = " ".join(_MASKED)
    return (
        _write_hook("/etc/fstab", _FSTAB),
        _write_hook("/etc/systemd/network/50-qemu.network", _NETWORK),
        _write_hook("/etc/ssh/sshd_config.d/50-hostagent-tests.conf", _SSHD),
        _write_hook("/usr/local/sbin/hostagent-seed-key", _SEED_SCRIPT, "755"),
        _write_hook("/etc/systemd/system/hostagent-seed-key.service", _SEED_UNIT),
        _write_hook("/etc/initramfs-tools/conf.d/hostagent-vm.conf", _INITRAMFS_CONF),
        _write_hook("/usr/share/initramfs-tools/modules.d/hostagent-vm", _INITRAMFS_MODULES),
        'chroot "$1" update-initramfs -u -k all',
        'chroot "$1" systemctl enable systemd-networkd.service hostagent-seed-key.service',
        f'for u in {masks}; do ln -sf /dev/null "$1/etc/systemd/system/$u"; done',
        # An empty root password lets a human log in on the serial console when debugging.
        'chroot "$1" passwd -d root',
    )


@dataclasses.dataclass(frozen=True)
class Tier:
    """One VM flavour the tests run on: a Debian suite and how it is booted."""

    name: str
    suite: str
    cgroup: str  # "v1" or "v2": what the booted VM must show
    kernel_args: tuple[str, ...] = ()
    python: str = ""
    glibc: tuple[int, int] = (2, 36)


TIERS = {
    t.name: t for t in (
        Tier("bookworm-v2", "bookworm", "v2", (), "3.11", (2, 36)),
        # systemd 247 defaults to unified; legacy_systemd_cgroup_controller=1 also
        # drops the hybrid name=systemd/unified mount, giving a pure v1 host.
        Tier("bullseye-v1", "bullseye", "v1",
             ("systemd.unified_cgroup_hierarchy=0", "systemd.legacy_systemd_cgroup_controller=1"),
             "3.9", (2, 31)),
        Tier("trixie-v2", "trixie", "v2", (), "3.13", (2, 41)),
    )
}


# Drivers udev would load for qemu's emulated PC devices (floppy, IDE, PS/2,
# speaker) or the host CPU (kvm): each load costs seconds under TCG.
_BLACKLIST = "modprobe.blacklist=" + ",".join((
    "kvm", "kvm_amd", "kvm_intel", "ccp", "cfg80211", "floppy", "pcspkr", "ata_piix", "ata_generic",
    "i2c_piix4", "drm", "psmouse", "serio_raw", "efi_pstore",
))


@dataclasses.dataclass(frozen=True)
class VMImage:
    tier: Tier
    disk: Path  # raw ext4, read-only template
    kernel: Path
    initrd: Path

    def cmdline(self) -> str:
        # mitigations=off: page-table isolation and friends cost a lot under TCG
        # and protect nothing in a throwaway test VM.
        base = ("root=/dev/vda rw console=ttyS0,115200 panic=-1 systemd.show_status=1 "
                "random.trust_cpu=on mitigations=off " + _BLACKLIST)
        return " ".join((base,) + self.tier.kernel_args)


def rootfs_recipe(tier: Tier) -> rootfs.Recipe:
    return rootfs.Recipe(suite=tier.suite, packages=VM_PACKAGES, hooks=_vm_hooks(),
                         version=IMAGE_VERSION, name="vm")


def _locked(path: Path):
    return rootfs._locked(path)


def build_image(tier: Tier, cache_dir: Path = CACHE_DIR, log=sys.stderr) -> VMImage:
    """Return the cached disk image, kernel and initrd for `tier`, building what is missing."""
    recipe = rootfs_recipe(tier)
    out = cache_dir / f"vmdisk-{tier.suite}-{recipe.digest()}"
    image = VMImage(tier, out / "rootfs.ext4", out / "vmlinuz", out / "initrd.img")
    if (out / "done").exists():
        return image
    root = rootfs.build_rootfs(recipe, cache_dir, log=log)
    with _locked(cache_dir / f".{out.name}.lock"):
        if (out / "done").exists():
            return image
        started = time.monotonic()
        shutil.rmtree(out, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".build-{out.name}-", dir=cache_dir))
        try:
            # The kernel and initrd are files under /boot; the /vmlinuz symlinks point at them.
            shutil.copyfile(_newest(root / "boot", "vmlinuz-"), work / "vmlinuz")
            shutil.copyfile(_newest(root / "boot", "initrd.img-"), work / "initrd.img")
            disk = work / "rootfs.ext4"
            subprocess.run(
                ["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root), str(disk), DISK_SIZE],
                check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )
            os.chmod(disk, 0o444)  # a template: overlays read it, nothing writes it
            (work / "done").write_text(json.dumps(
                {"tier": tier.name, "recipe": recipe.digest(),
                 "seconds": round(time.monotonic() - started, 1)}))
            os.rename(work, out)
            print(f"vm disk {out.name} made in {time.monotonic() - started:.1f} s", file=log)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return image


def _newest(boot: Path, prefix: str) -> Path:
    found = sorted(boot.glob(prefix + "*"))
    if not found:
        raise FileNotFoundError(f"no {prefix}* in {boot}")
    return found[-1]


def make_overlay(image: VMImage, dest: Path) -> Path:
    """A qcow2 overlay over the read-only template: each VM starts from a clean disk."""
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.disk), str(dest)],
        check=True,
    )
    return dest


def make_seed(public_key: str, dest: Path) -> Path:
    data = public_key.strip().encode() + b"\n"
    if len(data) > SEED_SIZE:
        raise ValueError("public key larger than the seed disk")
    dest.write_bytes(data + b"\0" * (SEED_SIZE - len(data)))
    return dest


# ---------------------------------------------------------------- target wheels

_WHEEL_RE = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")

_BUILD_PACKAGES = ("gcc", "libc6-dev", "libcap-dev", "python3-dev", "python3-pip",
                   "python3-setuptools", "python3-wheel")


def _needs_target_build(wheel: Path) -> bool:
    """True for a wheel tied to the Python that built it (cpXY ABI)."""
    m = _WHEEL_RE.match(wheel.name)
    if not m:
        return False
    return m["abi"] not in ("none", "abi3")


def _platforms(glibc: tuple[int, int]) -> list[str]:
    major, minor = glibc
    plats = [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 4, -1)]
    return plats + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]


def _hostagent_requirements(wheelhouse: Path) -> list[str]:
    """Requires-Dist of the hostagent wheel in `wheelhouse`."""
    wheel = next(wheelhouse.glob("hostagent-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = zf.read(name).decode()
    return sorted(line.split(":", 1)[1].strip() for line in meta.splitlines()
                  if line.startswith("Requires-Dist:") and "extra ==" not in line)


def target_wheels(tier: Tier, wheelhouse: Path, cache_dir: Path = CACHE_DIR, log=sys.stderr) -> Path | None:
    """hostagent's dependency wheels for the target's Python, or None if `wheelhouse` already fits.

    Cached by the target and hostagent's requirements. The directory holds all
    dependencies but not hostagent itself: install with it as the only
    --find-links, plus the hostagent wheel from `wheelhouse`.
    """
    abi = "cp" + tier.python.replace(".", "")
    requirements = _hostagent_requirements(wheelhouse)
    specs = []
    for wheel in sorted(wheelhouse.glob("*.whl")):
        m = _WHEEL_RE.match(wheel.name)
        if _needs_target_build(wheel) and m["abi"] != abi:  # built for another Python
            specs.append((m["name"], m["version"]))
    if not specs:  # the wheelhouse was built by this Python already
        return None
    key = hashlib.sha256(json.dumps([tier.suite, tier.python, specs, requirements, _BUILD_PACKAGES]).encode()).hexdigest()[:16]
    out = cache_dir / f"wheels-{tier.suite}-{key}"
    if (out / "done").exists():
        return out
    with _locked(cache_dir / f".{out.name}.lock"):
        if (out / "done").exists():
            return out
        shutil.rmtree(out, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".build-{out.name}-", dir=cache_dir))
        try:
            to_build = []
            for name, version in specs:
                cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                       "--python-version", tier.python, "--implementation", "cp", "--abi", abi,
                       "--abi", "abi3", "--abi", "none", "-d", str(work)]
                for plat in _platforms(tier.glibc):
                    cmd += ["--platform", plat]
                # The same version first; else the newest release with a wheel
                # for that Python (PyYAML 6.0.4 has none for 3.9, 6.0.3 has).
                for requirement in (f"{name}=={version}", name):
                    got = subprocess.run(cmd + [requirement], stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True)
                    if got.returncode == 0:
                        break
                else:
                    to_build.append((name, version))
            if to_build:
                _build_in_chroot(tier, to_build, work, log)
            # Resolve all of hostagent's dependencies again for the target's
            # Python: pure wheels resolved for 3.11 may need a newer Python
            # (click 8.5 needs 3.10), and bullseye's pip 20.3 cannot skip them.
            resolve = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                       "--python-version", tier.python, "--implementation", "cp", "--abi", abi,
                       "--abi", "abi3", "--abi", "none", "--find-links", str(work), "-d", str(work)]
            for plat in _platforms(tier.glibc):
                resolve += ["--platform", plat]
            got = subprocess.run(resolve + requirements, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
            if got.returncode != 0:
                raise RuntimeError(f"resolving hostagent's dependencies for Python {tier.python} failed:\n"
                                   f"{got.stdout[-4000:]}")
            (work / "done").write_text(json.dumps({"built": to_build, "specs": specs}))
            os.rename(work, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return out


def _build_in_chroot(tier: Tier, specs: list[tuple[str, str]], dest: Path, log) -> None:
    """Compile sdists with the target suite's own Python in a throwaway chroot."""
    with tempfile.TemporaryDirectory(prefix="sdists-") as sdists:
        for name, version in specs:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--no-binary=:all:", "-d", sdists, f"{name}=={version}"], check=True)
        started = time.monotonic()
        cmd = [
            "mmdebstrap", "--mode=root", "--variant=minbase",
            "--include=" + ",".join(_BUILD_PACKAGES),
            "--aptopt=APT::Install-Recommends \"false\"",
            '--customize-hook=mkdir -p "$1/sdists" "$1/wheels"',
            "--customize-hook=copy-in " + " ".join(str(p) for p in Path(sdists).iterdir()) + " /sdists",
            '--customize-hook=chroot "$1" sh -c "python3 -m pip wheel --no-deps --no-index'
            ' --no-build-isolation -w /wheels /sdists/*"',
            f"--customize-hook=copy-out /wheels {dest}",
            tier.suite, "/dev/null", f"deb {rootfs.MIRROR} {tier.suite} main",
        ]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"wheel build chroot failed:\n{result.stdout[-4000:]}")
        for wheel in (dest / "wheels").iterdir():
            wheel.rename(dest / wheel.name)
        (dest / "wheels").rmdir()
        print(f"built {specs} for {tier.suite} in {time.monotonic() - started:.0f} s", file=log)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tier", action="append", choices=sorted(TIERS))
    parser.add_argument("--wheelhouse", type=Path, help="also make the target wheels for this wheelhouse")
    args = parser.parse_args(argv)
    for name in args.tier or sorted(TIERS):
        started = time.monotonic()
        image = build_image(TIERS[name])
        print(f"{name}: {image.disk} {image.kernel} {image.initrd} ({time.monotonic() - started:.0f} s)")
        if args.wheelhouse:
            print(f"{name}: wheels {target_wheels(TIERS[name], args.wheelhouse)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
