"""List-watch of one resource type into the store, as client-go's reflector does it:

- a list, then a watch from its resourceVersion (ADDED, MODIFIED, DELETED, BOOKMARK); a watch the
  server ends cleanly (its timeoutSeconds) is simply opened again;
- the first list asks resourceVersion=0 (the apiserver's watch cache serves it whole and ignores
  the limit; without a watch cache it is paged, limit + continue); a relist after a watch ends asks
  the last resourceVersion seen, unpaged (the watch cache again); when the apiserver says that
  version is gone (410), once more at once with resourceVersion="" (a consistent read, paged);
- a continue token that expires mid-list (410: the list outlasts etcd's compaction window) falls
  back to one unpaged list at the same resourceVersion (the pager's FullListIfExpired), so a list
  too slow for the window still completes;
- after any failure or 410, the next list waits a backoff: 0.8 s doubling to 30 s, with up to 100 %
  jitter, reset after 2 minutes without one (the reflector's backoff manager), so a 410 storm or a
  dead apiserver never makes it spin; the failure goes to the log and to the report's error_msg
  (a single routine watch expiry does not). The store keeps the last good objects meanwhile."""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, Optional

from hostagent.k8ssync.kube import ApiError, Client, Gone
from hostagent.k8ssync.resources import Resource
from hostagent.k8ssync.store import Store

log = logging.getLogger("hostagent.k8s-sync")

LIST_LIMIT = 500
WATCH_SECONDS = 300
BACKOFF_INITIAL = 0.8
BACKOFF_MAX = 30.0
BACKOFF_RESET = 120.0


class Backoff:
    """client-go's ExponentialBackoffManager: each call is the wait before the next try."""

    def __init__(self, initial: float = BACKOFF_INITIAL, cap: float = BACKOFF_MAX, reset: float = BACKOFF_RESET,
                 clock: Callable[[], float] = time.monotonic, rand: Callable[[], float] = random.random) -> None:
        self.initial, self.cap, self.reset, self.clock, self.rand = initial, cap, reset, clock, rand
        self.step = initial
        self.last: Optional[float] = None
        self.tries = 0  # since the last quiet spell, for the log

    def next(self) -> float:
        now = self.clock()
        if self.last is not None and now - self.last > self.reset:
            self.step = self.initial  # a quiet spell: start small again
            self.tries = 0
        self.last = now
        self.tries += 1
        delay = self.step * (1.0 + self.rand())
        self.step = min(self.step * 2, self.cap)
        return delay


class Watcher(threading.Thread):
    def __init__(self, client: Client, store: Store, resource: Resource, stop: threading.Event,
                 list_limit: int = LIST_LIMIT, watch_seconds: int = WATCH_SECONDS) -> None:
        super().__init__(name=f"watch-{resource.name}", daemon=True)
        self.client, self.store, self.resource, self.stop_event = client, store, resource, stop
        self.list_limit, self.watch_seconds = list_limit, watch_seconds
        self.resource_version: Optional[str] = None  # where the watch goes on from
        self.need_list = True
        self.version_unavailable = False  # the apiserver said our resourceVersion is gone: list consistently
        self.backoff = Backoff()
        self.lists = 0  # complete lists (relists included), for tests and status
        self.gone_streak = 0  # 410s since the last watch that worked
        self.expired_note = ""

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                if self.need_list:
                    self.resource_version = self.list()
                    self.need_list = False
                started = time.monotonic()
                if self.watch() or time.monotonic() - started >= 1.0:
                    self.gone_streak = 0
                    continue  # the server ended the watch cleanly: watch again at once
                failure = "the watch ended at once with nothing (a proxy cutting it?)"
            except Gone as e:
                self.gone_streak += 1
                self.need_list = True
                failure = f"410 Gone ({e}): listing again"
                if self.gone_streak == 1:  # a watch outliving the history: routine, a relist fixes it
                    log.info("%s: %s", self.resource.name, failure)
                    failure = ""
                else:
                    failure += " (again and again: backing off)"
            except Exception as e:  # the apiserver is down, refuses us, cut the connection, answered nonsense
                failure = str(e) if isinstance(e, ApiError) else f"{type(e).__name__}: {e}"
            delay = self.backoff.next()
            if failure:
                log.warning("%s: %s; retry %d in %.1f s", self.resource.name, failure, self.backoff.tries, delay)
                # error_msg without the counts: the same failure again is no new error state, so no new report
                self.store.set_error(self.resource.name, failure)
            if self.stop_event.wait(delay):
                return

    def _list_params(self) -> tuple[str, bool]:
        """(resourceVersion, paged) for the next list, as the reflector's relistResourceVersion."""
        if self.version_unavailable:
            return "", True
        if self.resource_version:
            return self.resource_version, False  # at least as new as what we saw: the watch cache, unpaged
        return "0", True

    def list(self) -> str:
        version, paged = self._list_params()
        try:
            return self._list(version, paged)
        except Gone as e:
            if not version:
                raise
            # the reflector retries at once, consistently, when the version it listed at is gone
            log.info("%s: resourceVersion %r is gone (%s); listing from etcd", self.resource.name, version, e)
            self.version_unavailable = True
            return self._list("", True)

    def _list(self, version: str, paged: bool) -> str:
        name, path = self.resource.name, self.resource.path
        self.store.begin_list(name)
        started = time.monotonic()
        pages = 0
        self.expired_note = ""
        try:
            base = {"resourceVersion": version} if version else {}
            if paged:
                base["limit"] = str(self.list_limit)
            token = ""
            while True:
                params = dict(base, **({"continue": token} if token else {}))
                try:
                    page = self.client.get(path, **params)
                except Gone as e:
                    if not token:
                        raise
                    page = self._unpaged_after_expiry(base, pages, started, e)
                pages += 1
                for item in page.get("items") or []:
                    if isinstance(item, dict):
                        self.store.upsert(name, item)
                meta = page.get("metadata") or {}
                token = meta.get("continue") or ""
                if not token:
                    break
        except BaseException:
            self.store.abort_list(name)
            raise
        self.store.end_list(name)  # clears this type's error: the data is whole again
        if self.expired_note:  # the server hears of it once, with the report that carries the list
            self.store.note(name, self.expired_note + "; that list completed")
        self.lists += 1
        self.version_unavailable = False
        listed = str(meta.get("resourceVersion") or "")
        log.info("%s: listed %d in %d request(s), %.1f s (resourceVersion %s)", name, self.store.count(name),
                 pages, time.monotonic() - started, listed)
        return listed

    def _unpaged_after_expiry(self, base: dict[str, str], pages: int, started: float, e: Gone) -> Any:
        """The pager's FullListIfExpired: the continue token outlived etcd's compaction window."""
        name = self.resource.name
        message = (f"the paged list's continue token expired after {pages} page(s) in {time.monotonic() - started:.1f} s "
                   f"(410: the list outlasts the apiserver's compaction window): listing again in one request")
        log.warning("%s: %s (%s)", name, message, e)
        self.store.set_error(name, message)
        self.expired_note = message
        return self.client.get(self.resource.path, **{k: v for k, v in base.items() if k != "limit"})

    def watch(self) -> int:
        """Follow the watch until the server ends it; returns how many events came."""
        assert self.resource_version is not None
        name = self.resource.name
        first = True
        events = 0
        for event in self.client.watch(self.resource.path, self.resource_version, self.watch_seconds):
            kind, obj = event.get("type"), event["object"]
            if kind == "ERROR":
                code = obj.get("code")
                if code == 410:
                    raise Gone(410, str(obj.get("message", "")))
                raise ApiError(int(code or 0), str(obj.get("message", "watch error")))
            if first:
                self.store.set_error(name, None)  # connected again
                self.gone_streak = 0
                first = False
            events += 1
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if kind in ("ADDED", "MODIFIED"):
                self.store.upsert(name, obj)
            elif kind == "DELETED":
                self.store.delete(name, obj)
            elif kind != "BOOKMARK":
                continue
            if version:
                self.resource_version = str(version)
            if self.stop_event.is_set():
                return events
        if first:
            self.store.set_error(name, None)
        return events
