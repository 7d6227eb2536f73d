"""Fault points: the places where the fault-injection tests SIGKILL hostagent to prove that every
crash is recoverable. Inert unless a test sets HOSTAGENT_FAULT_AT to a point's name;
HOSTAGENT_FAULT_TRACE names a file that collects every point reached (to enumerate them);
HOSTAGENT_FAULT_ACTION=stop holds the run at the point instead (the VM tier then cuts the power)."""
from __future__ import annotations

import os
import signal

AT_ENV = "HOSTAGENT_FAULT_AT"
TRACE_ENV = "HOSTAGENT_FAULT_TRACE"
ACTION_ENV = "HOSTAGENT_FAULT_ACTION"
REACHED = "hostagent: fault point reached: "


def point(name: str) -> None:
    trace = os.environ.get(TRACE_ENV)
    if trace:
        with open(trace, "a") as f:
            f.write(name + "\n")
    if os.environ.get(AT_ENV) == name:
        if os.environ.get(ACTION_ENV) == "stop":
            # Say so and freeze: nothing more reaches the page cache before the machine is killed.
            os.write(2, f"{REACHED}{name}\n".encode())
            os.kill(os.getpid(), signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGKILL)
