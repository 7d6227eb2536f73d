"""The one way hostagent runs a host command: an argv list (never a shell string), a fixed
environment, stdin from /dev/null, a timeout, and with --debug each command echoed pasteably."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Mapping, Optional, Sequence

from hostagent.errors import StepError

# Commands see the same language and PATH whatever the caller's environment (sudo, cron, Ansible).
ENV = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
DEBUG_ENV = "HOSTAGENT_DEBUG"
# How long one host command may take (a hung systemctl must not hang install): seconds.
TIMEOUT = float(os.environ.get("HOSTAGENT_COMMAND_TIMEOUT", "60"))


def host_library_path(environ: Mapping[str, str], frozen: bool) -> Optional[str]:
    """The LD_LIBRARY_PATH the host gave this process, for the host's programs it starts (the agent, a
    kubeconfig's credential plugin): from the single file, what PyInstaller's loader saved before it
    pointed the variable at the bundle (its glibc and libssl); else the variable as it is."""
    if frozen:
        return environ.get("LD_LIBRARY_PATH_ORIG") or None
    return environ.get("LD_LIBRARY_PATH")


def _debug(argv: Sequence[str]) -> None:
    if os.environ.get(DEBUG_ENV):
        print(f"+ {shlex.join(argv)}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], timeout: Optional[float] = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run argv; with check, a non-zero exit is a StepError naming the command and its last line."""
    _debug(argv)
    timeout = TIMEOUT if timeout is None else min(timeout, TIMEOUT)
    try:
        proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, env=ENV, check=False)
    except FileNotFoundError:
        raise StepError(f"{argv[0]} not found on this host") from None
    except subprocess.TimeoutExpired:
        raise StepError(f"{shlex.join(argv)} timed out after {timeout:g}s") from None
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise StepError(f"{shlex.join(argv)} failed ({proc.returncode}): {msg[-1] if msg else ''}")
    return proc

