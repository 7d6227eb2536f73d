"""k8s-sync's fault tier, against the local fake apiserver and fake deepflow-server (loopback only):
410 storms, an expired continue token on a list slower than the compaction window, the apiserver
dying mid-watch, deepflow-server away for "minutes" (scaled: see the test), a report over the
message limit, and RSS over a churn run at 30k pods. Each: it never spins (requests or attempts
counted per time), keeps the last good data, says what is wrong in error_msg and its log, and
recovers when the fault ends."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hostagent.k8ssync import runner as runner_mod
from tests.fixtures.fake_apiserver import FakeApiserver, pod, simple
from tests.fixtures.fake_deepflow_grpc import FakeDeepflowGrpc
from tests.integration.k8s_sync_helpers import pods_of, wait_for, write_kubeconfig


def list_requests(api: FakeApiserver, path: str = "/api/v1/pods") -> int:
    return sum(1 for p, q in list(api.requests) if p == path and "watch=" not in q)


def all_requests(api: FakeApiserver) -> int:
    return len(api.requests)


def test_410_storm_does_not_spin(start: Any, api: FakeApiserver, df: FakeDeepflowGrpc, caplog: Any) -> None:
    """Every watch and list answered 410 (before: 69 lists in 3 s): a few lists per type with backoff,
    error_msg says 410, the last good pods stay; when the storm ends, a clean report."""
    caplog.set_level(logging.INFO, "hostagent.k8s-sync")
    running = start()
    first = df.wait(lambda rs: len(rs) >= 1)[0]
    # every watch past its first second: cut earlier, a watch "ended at once with nothing" and its watcher
    # backs off before the 410 comes, which shifts the tries counted below (seen on a loaded CI machine)
    wait_for(lambda: len(api.watches_open_for(1.2)) == len(running.runner.watchers), timeout=20,
             message=lambda: api.watches_open_for(0))
    api.gone_storm = True
    before, total = list_requests(api), all_requests(api)
    api.compact()  # cut the watches: they come back with their versions, into the storm
    time.sleep(4)
    storm_lists = list_requests(api) - before
    # waits of 0.8, 1.6, 3.2 s doubling, each times 1 to 2 (jitter): tries at 0.8 s or later, 2.4 s or
    # later, 5.6 s or later; each try two requests (the last version, then a consistent read)
    assert 2 <= storm_lists <= 4, storm_lists
    time.sleep(2)
    # in 6 s: per watcher its watch again, then at most 3 tries of 2 requests
    assert all_requests(api) - total <= 11 * 7, "11 watchers backing off: no spin"
    during = df.wait(lambda rs: "410" in rs[-1].get("error_msg", ""))[-1]
    assert "pods: 410 Gone" in during["error_msg"] and "backing off" in during["error_msg"], during["error_msg"]
    assert pods_of(during) == pods_of(first) and during["version"] == first["version"], "the last good data"
    assert any("410 Gone" in r.getMessage() and "retry 3 in" in r.getMessage() for r in caplog.records)
    reports = len(df.reports)
    time.sleep(3)
    assert len(df.reports) == reports, "the same failure again is no new error state: no new report"

    api.gone_storm = False
    after = df.wait(lambda rs: not rs[-1].get("error_msg") and rs[-1]["received_at"] > during["received_at"], timeout=60)[-1]
    assert pods_of(after) == pods_of(first)
    api.add("pods", pod("after-storm"))
    df.wait(lambda rs: "after-storm" in pods_of(rs[-1]), timeout=20)
    assert df.violations == [] and running.error is None


def test_list_outlasting_compaction_ends_in_a_sync(start: Any, api: FakeApiserver, df: FakeDeepflowGrpc,
                                                  caplog: Any) -> None:
    """A slow paged list (40 pods, 2 a page, 50 ms a page) and etcd compacting every 0.3 s: every
    continue token expires. The pager's fallback, one unpaged list, completes; error_msg says why once."""
    caplog.set_level(logging.INFO, "hostagent.k8s-sync")
    for i in range(37):
        api.add("pods", pod(f"many-{i}"))
    api.page_delay = 0.05
    api.compaction_window = 0.3
    started = time.monotonic()
    running = start()
    report = df.wait(lambda rs: len(rs) >= 1, timeout=30)[0]
    assert len(pods_of(report)) == 40, "the whole list, though no paged list could finish"
    assert "continue token expired" in report["error_msg"] and "that list completed" in report["error_msg"]
    pod_lists = [q for p, q in api.requests if p == "/api/v1/pods" and "watch=" not in q]
    unpaged = [q for q in pod_lists if "limit=" not in q]
    assert len(unpaged) == 1 and "resourceVersion=0" in unpaged[0], pod_lists
    assert any("outlasts the apiserver's compaction window" in r.getMessage() for r in caplog.records)
    print(f"\ncompaction: first report after {time.monotonic() - started:.1f} s, {len(pod_lists)} pod list requests")
    assert running.runner.store.error_text() == "", "said once: the next report goes without it"
    assert df.violations == [] and running.error is None


def test_slow_first_list_is_waited_for(start: Any, api: FakeApiserver, df: FakeDeepflowGrpc, caplog: Any,
                                      monkeypatch: Any) -> None:
    """Lists slower than the first report's patience (scaled: 1 s, not 30; 10 pages of 0.3 s): the
    first report waits for the whole list (half a list would tell the server the rest is gone), and
    the log says what it waits for."""
    caplog.set_level(logging.INFO, "hostagent.k8s-sync")
    monkeypatch.setattr(runner_mod, "INITIAL_WAIT", 1.0)
    for i in range(17):
        api.add("pods", pod(f"slow-{i}"))
    api.page_delay = 0.3
    running = start()
    first = df.wait(lambda rs: len(rs) >= 1, timeout=30)[0]
    assert len(pods_of(first)) == 20 and not first.get("error_msg"), (len(pods_of(first)), first.get("error_msg"))
    waits = [r.getMessage() for r in caplog.records if "the first report waits for the first list of pods" in r.getMessage()]
    assert waits and "pods" in waits[0] and "so far" in waits[0], waits
    assert df.violations == [] and running.error is None


def test_apiserver_death_mid_watch(start: Any, api: FakeApiserver, df: FakeDeepflowGrpc, caplog: Any) -> None:
    """The apiserver dies: open watches cut with no chunked end, new requests unanswered. error_msg
    says so, requests back off, the last good pods stay; after it comes back, changes flow again."""
    caplog.set_level(logging.INFO, "hostagent.k8s-sync")
    running = start()
    first = df.wait(lambda rs: len(rs) >= 1)[0]
    api.kill()
    down = df.wait(lambda rs: "pods:" in rs[-1].get("error_msg", ""), timeout=20)[-1]
    assert pods_of(down) == pods_of(first) and down["version"] == first["version"]
    pods_error = next(e for e in down["error_msg"].split(";") if e.startswith("pods: "))
    # the cut watch, or (when the retry came first) the request the dead apiserver left unanswered
    assert "Response ended prematurely" in pods_error or "without response" in pods_error, pods_error
    time.sleep(0.5)
    before = all_requests(api)
    time.sleep(3)
    assert all_requests(api) - before <= 11 * 3, "11 watchers backing off: no spin"
    assert any(r.getMessage().startswith("pods: ") and "; retry " in r.getMessage() for r in caplog.records
               if r.levelno >= logging.WARNING)

    api.revive()
    api.add("pods", pod("after-death"))
    after = df.wait(lambda rs: "after-death" in pods_of(rs[-1]) and not rs[-1].get("error_msg"), timeout=60)[-1]
    assert after["version"] == first["version"] + 1
    assert df.violations == [] and running.error is None


def test_deepflow_server_away_for_minutes(start: Any, api: FakeApiserver, df: FakeDeepflowGrpc, caplog: Any,
                                         monkeypatch: Any) -> None:
    """deepflow-server gone (connection refused) while the cluster changes. Scaled for CI: the send
    retry starts at 0.2 s (not 5) and caps at 1 s (not 60), the outage lasts 8 s — the same count of
    doublings as minutes at full scale. Attempts stay bounded, every one is logged, the changes wait
    merged, and the first report after carries them all with one version step."""
    caplog.set_level(logging.INFO, "hostagent.k8s-sync")
    monkeypatch.setattr(runner_mod, "RETRY", 0.2)
    monkeypatch.setattr(runner_mod, "RETRY_MAX", 1.0)
    running = start()
    first = df.wait(lambda rs: len(rs) >= 1)[0]
    port = df.port
    df.stop()
    time.sleep(0.5)
    for i in range(5):
        api.add("pods", pod(f"while-away-{i}"))
    time.sleep(8)
    failures = running.runner.failures
    # 0.2 s doubling to 1 s with jitter: between 8 / 2 and 8 / 0.2 tries, far from a spin
    assert 4 <= failures <= 16, failures
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "report failed" in r.getMessage()]
    assert len(logged) == failures and "in a row" in logged[-1] and "127.0.0.1" in logged[-1], logged[-1:]

    back = FakeDeepflowGrpc(port=port).start()
    try:
        report = back.wait(lambda rs: len(rs) >= 1, timeout=30)[0]
        assert len(pods_of(report)) == len(pods_of(first)) + 5 and report["version"] == first["version"] + 1
        wait_for(lambda: running.runner.failures == 0)
        assert any("go through again, after" in r.getMessage() for r in caplog.records)
        assert back.violations == []
    finally:
        running.stop()
        back.stop()


def test_report_over_the_message_limit(start: Any, api: FakeApiserver, df: FakeDeepflowGrpc, caplog: Any) -> None:
    """--max-message-mib 1: a big ConfigMap is left out (said in error_msg); a pod too big for the
    limit even then: nothing is sent (the server keeps the last report), the log says why, once per
    change or interval, never in a loop; once it is gone, reports resume."""
    caplog.set_level(logging.INFO, "hostagent.k8s-sync")
    noise = lambda n: os.urandom(n).hex()  # noqa: E731  (incompressible)
    api.add("configmaps", simple("ConfigMap", "big", data={"blob": noise(1200 << 10)}))
    running = start(max_message_mib="1")
    first = df.wait(lambda rs: len(rs) >= 1)[0]
    assert "ConfigMaps left out" in first["error_msg"] and "*v1.ConfigMap" not in first["objects"]
    huge = pod("huge")
    huge["metadata"]["annotations"] = {"blob": noise(1200 << 10)}  # trimming keeps annotations
    big = api.add("pods", huge)
    wait_for(lambda: any(s.skipped for s in running.runner.sent))
    time.sleep(3)
    skipped = [s for s in running.runner.sent if s.skipped]
    assert len(skipped) <= 2, "not sent once per change (and interval), not in a loop"
    assert any("not sent: over the server's 1 MiB limit" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert len(df.reports) == 1, "the server keeps the last report it took"
    api.delete("pods", big["metadata"]["uid"])
    again = df.wait(lambda rs: len(rs) >= 2, timeout=20)[-1]
    assert pods_of(again) == pods_of(first) and "ConfigMaps left out" in again["error_msg"]
    assert df.violations == [] and running.error is None


CHURN_SECONDS = float(os.environ.get("K8S_SYNC_CHURN_SECONDS", "20"))


def rss_mib(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / (1 << 20)


def test_churn_at_30k_pods_rss_bounded(tmp_path: Path, api: FakeApiserver, df: FakeDeepflowGrpc) -> None:
    """`k8s-sync run` as its own process over 30k pods while pods are replaced (a delete and an add,
    about 70 changes/s here). The issue asks 10 minutes: K8S_SYNC_CHURN_SECONDS=600 runs that; CI runs
    20 s, because the whole k8s-sync tier must stay near 2 minutes (setup and the first 30k-pod report
    take another ~35 s). RSS must not keep climbing: the second half's peak stays within 10 % + 16 MiB
    of the first half's. 20 s catches gross growth (a report or the history kept per change); a slow
    leak needs the 10-minute run."""
    import random

    for i in range(30_000 - 3):
        api.add("pods", pod(f"p-{i}", ip=f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"))
    api.history.clear()  # the fake's own memory: the initial load needs no history
    kc = write_kubeconfig(tmp_path / "kc", api)
    proc = subprocess.Popen([sys.executable, "-m", "hostagent", "k8s-sync", "run", "--controller-ip", "127.0.0.1",
                             "--controller-port", str(df.port), "--cluster-id", "d-churn001", "--kubeconfig", kc,
                             "--interval", "10"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        df.wait(lambda rs: len(rs) >= 1 and len(rs[-1]["objects"].get("*v1.Pod", [])) == 30_000, timeout=180)
        samples: list[float] = []
        live = [uid for uid in api.objects["pods"]]
        end = time.monotonic() + CHURN_SECONDS
        n = 0
        next_sample = time.monotonic()
        while time.monotonic() < end:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            uid = live.pop(random.randrange(len(live)))
            api.delete("pods", uid)
            live.append(api.add("pods", pod(f"churn-{n}"))["metadata"]["uid"])
            n += 1
            if time.monotonic() >= next_sample:
                samples.append(rss_mib(proc.pid))
                next_sample += 1.0
            time.sleep(0.02)
        half = len(samples) // 2
        first_peak, second_peak = max(samples[:half]), max(samples[half:])
        print(f"\nchurn {CHURN_SECONDS:.0f} s, {n} pods replaced, RSS MiB first half peak {first_peak:.0f}, "
              f"second half peak {second_peak:.0f}, min {min(samples):.0f}, reports {len(df.reports)}")
        assert second_peak <= first_peak * 1.10 + 16, samples
        last = df.wait(lambda rs: len(rs[-1]["objects"]["*v1.Pod"]) == 30_000 and f"churn-{n - 1}" in pods_of(rs[-1]),
                       timeout=60)[-1]
        assert not last.get("error_msg") and df.violations == []
    finally:
        proc.terminate()
        proc.wait(20)
