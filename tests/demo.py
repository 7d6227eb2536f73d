"""The main job, shown end to end on a booted Debian 12 (systemd-nspawn): see demo.sh.

The agent is the test double (tests/fixtures/agent_double.c) placed at /usr/sbin/deepflow-agent, so
`hostagent install --controller-ip 127.0.0.1` runs with its defaults, as on a host where the DeepFlow
package put the binary.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.fixtures.build import build_agent_double
from tests.hostsnap import diff
from tests.images.nspawn import NspawnHost

HOSTSNAP = Path(__file__).with_name("hostsnap.py")
STEPS = (
    "hostagent install --controller-ip 127.0.0.1 --dry-run",
    "hostagent install --controller-ip 127.0.0.1 --yes",
    "hostagent status",
    "hostagent doctor --timeout 0.5",
    "ps -o user,pid,comm -C deepflow-agent; grep -E 'Cap(Eff|Prm|Bnd)' /proc/$(pgrep -x deepflow-agent)/status",
    "hostagent install --controller-ip 127.0.0.1 --yes",
    "hostagent uninstall --yes",
)


def main() -> int:
    print("booting a Debian 12 host under systemd-nspawn (the first run builds its image: a minute or two)…", flush=True)
    with NspawnHost() as host:
        host.put("/usr/sbin/deepflow-agent", build_agent_double().read_bytes(), 0o755)
        host.put("/root/hostsnap.py", HOSTSNAP.read_bytes())
        before = json.loads(host.run("python3 /root/hostsnap.py").check().stdout)
        for command in STEPS:
            print(f"\n$ {command}", flush=True)
            rc, out, err = host.run(command, timeout=300)
            sys.stdout.write(out + err)
            if rc not in (0, 1) or (rc == 1 and not command.startswith(("hostagent doctor", "hostagent status"))):
                print(f"(exit {rc})")
                return rc
        after = json.loads(host.run("python3 /root/hostsnap.py").check().stdout)
        problems = diff(before, after)
        print("\nhost after uninstall vs before install:", "identical" if not problems else "\n".join(problems))
        return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
