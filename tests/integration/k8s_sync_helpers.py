"""k8s-sync's integration helpers: a kubeconfig for the fake apiserver, a Runner in a thread, waiting."""
from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from hostagent.k8ssync.runner import Runner
from tests.fixtures.fake_apiserver import FakeApiserver, small_cluster
from tests.fixtures.fake_deepflow_grpc import FakeDeepflowGrpc


def write_kubeconfig(path: Path, api: FakeApiserver, token: str = "test-token") -> str:
    path.write_text(f"""apiVersion: v1
kind: Config
current-context: fake
clusters: [{{name: fake, cluster: {{server: "{api.url}", certificate-authority: {api.tls['ca']}}}}}]
users: [{{name: u, user: {{token: {token}}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: u}}}}]
""")
    return str(path)


@contextmanager
def fakes(tmp: Path, pods: int = 3) -> Iterator[tuple[FakeApiserver, FakeDeepflowGrpc]]:
    """The fake apiserver (its own TLS CA in tmp, small_cluster(pods)) and the fake deepflow-server, both
    on loopback, for a k8s-sync run in another process; stopped on the way out."""
    api = FakeApiserver(tls_dir=str(tmp / "tls"))
    small_cluster(api, pods)
    api.start()
    df = FakeDeepflowGrpc().start()
    try:
        yield api, df
    finally:
        df.stop()
        api.close()


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
