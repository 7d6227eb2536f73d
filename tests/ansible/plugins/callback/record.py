"""Callback for the tests: each task result and the final stats as JSON lines in $HOSTAGENT_ANSIBLE_RECORD.

ansible-core ships no JSON callback (that lives in ansible.posix); this one stays next to the
default output instead of replacing it, so a failing test still shows the usual play log.
"""
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: record
type: aggregate
short_description: write task results and stats as JSON lines (hostagent tests)
description: Appends one JSON object per task result, and one for the stats, to $HOSTAGENT_ANSIBLE_RECORD.
requirements:
  - enable in ansible.cfg or ANSIBLE_CALLBACKS_ENABLED
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "record"
    CALLBACK_NEEDS_ENABLED = True

    _task_started = 0.0

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._task_started = time.monotonic()

    def _write(self, obj: dict) -> None:
        path = os.environ.get("HOSTAGENT_ANSIBLE_RECORD")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps(obj, default=str) + "\n")

    def _result(self, status: str, result) -> None:
        self._write({
            "kind": "task", "status": status, "host": result._host.get_name(),
            "task": result._task.get_name(), "action": result._task.action,
            "seconds": round(time.monotonic() - self._task_started, 3),
            "result": dict(result._result),
        })

    def v2_runner_on_ok(self, result) -> None:
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._result("failed", result)

    def v2_runner_on_skipped(self, result) -> None:
        self._result("skipped", result)

    def v2_runner_on_unreachable(self, result) -> None:
        self._result("unreachable", result)

    def v2_playbook_on_stats(self, stats) -> None:
        hosts = sorted(stats.processed.keys())
        self._write({"kind": "stats", "hosts": {h: stats.summarize(h) for h in hosts}})
