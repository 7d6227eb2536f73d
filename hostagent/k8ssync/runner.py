"""The pseudo-agent's loop: watchers fill the store; a report goes out once every watcher has listed
(or failed), after a change (debounced: DEBOUNCE seconds of quiet, at most MAX_DELAY after the first
change), when the apiserver's error state changes, and at least every --interval.

Every report carries the full set (the server keeps no version for agent id 0 and only queues
messages with entries). Size guard: a report over the server's 100 MiB limit is sent without the
ConfigMaps (said in error_msg); if it is still over, it is not sent at all — the server keeps the
last report it took — and the failure is logged at each attempt."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from hostagent.k8ssync import proto
from hostagent.k8ssync.kube import Client, KubeConfig
from hostagent.k8ssync.reporter import MAX_MESSAGE, Reporter, ReportError
from hostagent.k8ssync.resources import RESOURCES
from hostagent.k8ssync.store import Snapshot, Store
from hostagent.k8ssync.watcher import Backoff, Watcher
from hostagent.options import K8sSyncOptions

log = logging.getLogger("hostagent.k8s-sync")

DEBOUNCE = 1.0
MAX_DELAY = 5.0
# The first report waits for every type's first list (or its failure), however slow: a report with a
# list half done would tell the server the other half is gone. Every INITIAL_WAIT the log says who it waits for.
INITIAL_WAIT = 30.0
RETRY = 5.0  # after a failed send, doubling (with jitter) to RETRY_MAX while the controllers stay away
RETRY_MAX = 60.0


@dataclass
class Sent:
    version: int
    controller: str
    service: str
    size: int
    entries: int
    error_msg: str
    counts: dict[str, int] = field(default_factory=dict)
    skipped: Optional[str] = None  # why nothing was sent
    build_s: float = 0.0  # building the request from the store (bench/k8s_sync_bench.py reads it)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build_request(snap: Snapshot, cluster_id: str, source_ip: Optional[str], team_id: Optional[str],
                  limit: int = MAX_MESSAGE) -> tuple[Optional[bytes], str, int]:
    """(request or None when even without ConfigMaps it is over the limit, error_msg, entry count)."""
    error_msg = snap.error_msg
    entries = snap.entries + snap.optional
    size = sum(map(len, entries))
    if size + 4096 > limit and snap.optional:
        note = f"ConfigMaps left out: the report ({size >> 20} MiB) is over the server's {limit >> 20} MiB limit"
        error_msg = ";".join(filter(None, (error_msg, note)))
        entries = snap.entries
        size = sum(map(len, entries))
    head = proto.sync_request_head(cluster_id, snap.version, error_msg, source_ip, team_id)
    if size + len(head) > limit:
        return None, error_msg, len(entries)
    return proto.sync_request(head, entries), error_msg, len(entries)


class Runner:
    def __init__(self, opts: K8sSyncOptions, kc: KubeConfig, reporter: Reporter,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.opts, self.kc, self.reporter = opts, kc, reporter
        self.client = Client(kc)
        resources = [r for r in RESOURCES if opts.configmaps or not r.optional]
        self.store = Store(resources)
        self.stop = threading.Event()
        self.watchers = [Watcher(self.client, self.store, r, self.stop) for r in resources]
        self.cluster_id = opts.cluster_id
        self.clock = clock
        self.last_sent_error: Optional[str] = None
        self.not_before = 0.0  # after a failed send: not again before this
        self.retry = Backoff(RETRY, RETRY_MAX, reset=float("inf"))
        self.failures = 0  # failed sends in a row
        self.sent: list[Sent] = []

    def resolve_cluster_id(self) -> str:
        if self.cluster_id:
            return self.cluster_id
        md5 = self.kc.ca_md5()
        if not md5:
            raise ReportError("no --cluster-id and no apiserver CA to ask the server by (GetKubernetesClusterID needs its md5)")
        backoff = 1.0
        while True:
            try:
                self.cluster_id = self.reporter.cluster_id(md5, self.opts.team_id)
                log.info("cluster id %s (GetKubernetesClusterID, CA md5 %s)", self.cluster_id, md5)
                return self.cluster_id
            except ReportError as e:
                log.warning("GetKubernetesClusterID: %s; retrying in %.0f s", e, backoff)
                if self.stop.wait(backoff):
                    raise
                backoff = min(backoff * 2, 60.0)

    def fetch_version(self) -> None:
        try:
            self.store.set_version_info(self.client.get("/version"))
            self.store.set_error("version", None)
        except Exception as e:
            self.store.set_error("version", str(e))

    def start(self) -> None:
        for w in self.watchers:
            w.start()

    def wait_initial(self) -> None:
        started = self.clock()
        next_note = started + INITIAL_WAIT
        with self.store.cond:
            while not self.stop.is_set():
                waiting = [w.resource.name for w in self.watchers
                           if w.resource.name not in self.store.listed and w.resource.name not in self.store.errors]
                if not waiting:
                    return
                if self.clock() >= next_note:
                    log.warning("the first report waits for the first list of %s, still going after %.0f s (%s so far)",
                                ", ".join(waiting), self.clock() - started,
                                ", ".join(f"{self.store.count(name)} {name}" for name in waiting))
                    next_note += INITIAL_WAIT
                self.store.cond.wait(0.2)

    def send(self) -> Sent:
        if not self.store.has_version_info:
            self.fetch_version()
        snap = self.store.snapshot()
        assert self.cluster_id
        limit = self.opts.max_message_mib << 20
        source_ip = self.reporter.source_ip()
        built = time.perf_counter()
        request, error_msg, n = build_request(snap, self.cluster_id, source_ip, self.opts.team_id, limit)
        build_s = round(time.perf_counter() - built, 3)
        if request is None:
            log.error("report of version %d not sent: over the server's %d MiB limit even without ConfigMaps "
                      "(raise the server's grpc-max-message-length and --max-message-mib)", snap.version, limit >> 20)
            sent = Sent(snap.version, "", "", 0, n, error_msg, snap.counts, skipped="over the size limit", build_s=build_s)
        else:
            try:
                answer, _ = self.reporter.sync(request)
            except ReportError:
                self.store.unsent(snap)
                raise
            sent = Sent(snap.version, answer.controller, answer.service, len(request), n, error_msg, snap.counts,
                        build_s=build_s)
            log.info("reported version %d to %s (%s): %d entries, %d bytes%s", snap.version, answer.controller,
                     answer.service, n, len(request), f"; error_msg: {error_msg}" if error_msg else "")
        self.last_sent_error = self.store.reported_errors  # errors as of the snapshot, notes left out
        self.sent.append(sent)
        del self.sent[:-10]
        return sent

    def _due(self, next_full: float) -> float:
        """Seconds until the next report is due (0 = now)."""
        now = self.clock()
        s = self.store
        if s.pending_since is not None:
            due = min(s.last_change + DEBOUNCE, s.pending_since + MAX_DELAY)
        elif s.error_text() != self.last_sent_error:
            due = s.errors_changed + DEBOUNCE  # a burst of failures (every watcher at once) in one report
        else:
            due = next_full
        return max(0.0, due - now, self.not_before - now)

    def loop(self, once: bool = False) -> None:
        self.resolve_cluster_id()
        self.fetch_version()
        self.start()
        self.wait_initial()
        next_full = self.clock()
        next_version = self.clock() + self.opts.interval
        while not self.stop.is_set():
            with self.store.cond:
                while not self.stop.is_set():
                    wait = self._due(next_full)
                    if wait <= 0:
                        break
                    self.store.cond.wait(min(wait, 1.0))
            if self.stop.is_set():
                return
            if self.clock() >= next_version:
                self.fetch_version()
                next_version = self.clock() + self.opts.interval
            try:
                self.send()
                next_full = self.clock() + self.opts.interval
                if self.failures:
                    log.warning("reports go through again, after %d failed", self.failures)
                self.failures = 0
                self.retry = Backoff(RETRY, RETRY_MAX, reset=float("inf"))
            except ReportError as e:
                if once:
                    log.error("report failed: %s", e)
                    raise
                self.failures += 1
                delay = self.retry.next()
                log.error("report failed (%d in a row; the changes wait in memory, merged): %s; next try in %.0f s",
                          self.failures, e, delay)
                self.not_before = self.clock() + delay
                self.last_sent_error = None
            if once:
                return
