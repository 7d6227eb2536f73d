"""What the nspawn tests put on a test host and the hostagent commands they run there: one spelling."""
from __future__ import annotations

import json
from pathlib import Path

from tests import hostsnap

# This machine's tests/hostsnap.py, and where nspawn_host() puts it on the host.
HOSTSNAP = Path(hostsnap.__file__)
HOSTSNAP_ON_HOST = "/root/hostsnap.py"
# The agent double (tests/fixtures/build.py), where nspawn_host() puts it.
DOUBLE = "/root/agent-double"
INSTALL = f"hostagent install --agent-binary {DOUBLE} --controller-ip 127.0.0.1 --yes --json"
UNINSTALL = "hostagent uninstall --yes --json"


def snapshot(host, roots: str = "") -> dict:
    """hostsnap run on the host itself (it needs python3 there; host.snapshot() does not)."""
    return json.loads(host.run(f"python3 {HOSTSNAP_ON_HOST} {roots}".rstrip()).check().stdout)
