"""k8s-sync's integration helpers: a kubeconfig for the fake apiserver, a Runner in a thread, waiting."""
from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any, Optional

from hostagent.k8ssync.runner import Runner
from tests.fixtures.fake_apiserver import FakeApiserver


def write_kubeconfig(path: Path, api: FakeApiserver, token: str = "test-token") -> str:
    path.write_text(f"""apiVersion: v1
kind: Config
current-context: fake
clusters: [{{name: fake, cluster: {{server: "{api.url}", certificate-authority: {api.tls['ca']}}}}}]
users: [{{name: u, user: {{token: {token}}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: u}}}}]
""")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Running:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.runner.loop()
        except BaseException as e:
            self.error = e

    def stop(self) -> None:
        self.runner.stop.set()
        self.thread.join(10)
        self.runner.reporter.close()


def wait_for(predicate: Any, timeout: float = 20.0, message: Any = lambda: "") -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out {message()}"
        time.sleep(0.05)


def pods_of(report: dict[str, Any]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in report["objects"].get("*v1.Pod", []))
