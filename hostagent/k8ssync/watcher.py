"""List-watch of one resource type into the store: a chunked list (limit + continue), then a watch
from its resourceVersion (ADDED, MODIFIED, DELETED, BOOKMARK); 410 Gone — for the watch or an
expired continue token — lists again; any other failure is recorded for error_msg and retried with
exponential backoff (1 s doubling to 60 s). The store keeps the last good objects meanwhile."""
from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from hostagent.k8ssync.kube import ApiError, Client, Gone
from hostagent.k8ssync.resources import Resource
from hostagent.k8ssync.store import Store

log = logging.getLogger("hostagent.k8s-sync")

LIST_LIMIT = 500
WATCH_SECONDS = 300
BACKOFF_MAX = 60.0


class Watcher(threading.Thread):
    def __init__(self, client: Client, store: Store, resource: Resource, stop: threading.Event,
                 list_limit: int = LIST_LIMIT, watch_seconds: int = WATCH_SECONDS) -> None:
        super().__init__(name=f"watch-{resource.name}", daemon=True)
        self.client, self.store, self.resource, self.stop_event = client, store, resource, stop
        self.list_limit, self.watch_seconds = list_limit, watch_seconds
        self.resource_version: Optional[str] = None
        self.lists = 0  # full lists done (relists included), for tests and status

    def run(self) -> None:
        backoff = 1.0
        while not self.stop_event.is_set():
            try:
                if self.resource_version is None:
                    self.resource_version = self.list()
                started = time.monotonic()
                if self.watch() == 0 and time.monotonic() - started < 1.0:
                    # a watch that ends at once with nothing (a proxy cutting it): do not spin
                    if self.stop_event.wait(backoff):
                        return
                    backoff = min(backoff * 2, BACKOFF_MAX)
                else:
                    backoff = 1.0
            except Gone:
                log.info("%s: resourceVersion %s expired (410 Gone); listing again", self.resource.name, self.resource_version)
                self.resource_version = None
            except Exception as e:  # the apiserver is down, refuses us, or answered nonsense
                message = str(e) if isinstance(e, ApiError) else f"{type(e).__name__}: {e}"
                log.warning("%s: %s; retrying in %.0f s", self.resource.name, message, backoff)
                self.store.set_error(self.resource.name, message)
                if self.stop_event.wait(backoff):
                    return
                backoff = min(backoff * 2, BACKOFF_MAX)

    def list(self) -> str:
        name, path = self.resource.name, self.resource.path
        self.store.begin_list(name)
        try:
            token = ""
            while True:
                params = {"limit": str(self.list_limit)}
                if token:
                    params["continue"] = token
                page = self.client.get(path, **params)
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
        self.store.end_list(name)
        self.lists += 1
        version = str(meta.get("resourceVersion") or "")
        log.info("%s: listed %d (resourceVersion %s)", name, self.store.count(name), version)
        return version

    def watch(self) -> int:
        """Follow the watch until the server ends it; returns how many events came."""
        assert self.resource_version is not None
        name = self.resource.name
        first = True
        events = 0
        for event in self.client.watch(self.resource.path, self.resource_version, self.watch_seconds):
            if first:
                self.store.set_error(name, None)  # connected again
                first = False
            events += 1
            kind, obj = event.get("type"), event["object"]
            if kind == "ERROR":
                code = obj.get("code")
                if code == 410:
                    raise Gone(410, str(obj.get("message", "")))
                raise ApiError(int(code or 0), str(obj.get("message", "watch error")))
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
