"""Fault points: the places where the fault-injection tests SIGKILL hostagent to prove that every
crash is recoverable. Inert unless a test sets HOSTAGENT_FAULT_AT to a point's name;
HOSTAGENT_FAULT_TRACE names a file that collects every point reached (to enumerate them)."""
from __future__ import annotations

import os
import signal

AT_ENV = "HOSTAGENT_FAULT_AT"
TRACE_ENV = "HOSTAGENT_FAULT_TRACE"


def point(name: str) -> None:
    trace = os.environ.get(TRACE_ENV)
    if trace:
        with open(trace, "a") as f:
            f.write(name + "\n")
    if os.environ.get(AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
