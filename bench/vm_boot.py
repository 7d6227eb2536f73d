"""Boot-to-SSH and boot-to-agent-running per VM tier, under qemu TCG.

    sudo .venv/bin/python -m bench.vm_boot [--tier bookworm-v2 ...] [--no-agent]

Per tier it prints: image build (0 when cached), first boot to SSH, the README
install of hostagent in the VM (venv + pip from the wheelhouse), `hostagent
install`, the host suite's runtime, and after a reboot: boot to SSH and boot
to deepflow-agent running (unit active, its main PID alive). Run it on an idle
machine: TCG is CPU-bound, any other load stretches every figure.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.images.vm import VMHost  # noqa: E402
from tests.images.vm_image import TIERS, Tier, build_image, target_wheels  # noqa: E402


def _agent_running(vm: VMHost, timeout: float = 300.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = vm.run("systemctl show -p MainPID --value deepflow-agent", check=False).stdout.strip()
        active = vm.run("systemctl is-active deepflow-agent", check=False).stdout.strip()
        if active == "active" and pid not in ("", "0") and vm.run(f"test -d /proc/{pid}", check=False).returncode == 0:
            return True
        time.sleep(0.5)
    return False


def bench_tier(tier: Tier, with_agent: bool, workdir: Path) -> dict:
    figures: dict = {"tier": tier.name}
    t = time.monotonic()
    image = build_image(tier)
    figures["image_build_s"] = round(time.monotonic() - t, 1)
    with VMHost(image, workdir / tier.name) as vm:
        figures["boot_to_ssh_s"] = vm.boot_seconds[0]
        if not with_agent:
            t = time.monotonic()
            figures["reboot_to_ssh_s"] = round(vm.reboot(), 1)
            return figures
        from tests.fixtures.build import build_agent_double
        from tests.images.wheelhouse import build_wheelhouse

        wheelhouse = build_wheelhouse(workdir / "wheelhouse")
        extra = target_wheels(tier, wheelhouse)
        if extra is None:
            vm.put(wheelhouse, "/root/wheelhouse")
        else:
            vm.put(extra, "/root/wheelhouse")
            vm.put(next(wheelhouse.glob("hostagent-*.whl")), "/root/wheelhouse/")
        vm.put(build_agent_double(), "/root/deepflow-agent")
        t = time.monotonic()
        vm.run("python3 -m venv /opt/hostagent && /opt/hostagent/bin/pip install -q --no-index"
               " --find-links /root/wheelhouse hostagent", timeout=1200)
        figures["pip_install_s"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        out = vm.run("/opt/hostagent/bin/hostagent install --agent-binary /root/deepflow-agent"
                     " --controller-ip 127.0.0.1 --yes --json", check=False, timeout=600)
        figures["hostagent_install_s"] = round(time.monotonic() - t, 1)
        if out.returncode != 0:
            figures["install_error"] = out.stdout[-2000:] or out.stderr[-2000:]
            return figures
        figures["agent_running_after_install"] = _agent_running(vm)
        t = time.monotonic()
        suite = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/system/test_host_state.py", "-q", "-p", "no:cacheprovider",
             *vm.testinfra_args, "--state=installed"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        figures["suite_s"] = round(time.monotonic() - t, 1)
        figures["suite_rc"] = suite.returncode
        t = time.monotonic()
        figures["reboot_to_ssh_s"] = round(vm.reboot(), 1)
        figures["reboot_to_agent_running_s"] = (round(time.monotonic() - t, 1) if _agent_running(vm) else None)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tier", action="append", choices=sorted(TIERS))
    parser.add_argument("--no-agent", action="store_true", help="only boot and reboot")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-vm-") as tmp:
        for name in args.tier or ["bookworm-v2", "bullseye-v1", "trixie-v2"]:
            figures = bench_tier(TIERS[name], not args.no_agent, Path(tmp))
            print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
