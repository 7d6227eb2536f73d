"""Watcher Domain lookup against the local fake deepflow-server (documented envelope and fields)."""
from __future__ import annotations

import socket
import time

import pytest

from hostagent import server
from hostagent.server import ServerError


def test_finds_cluster_id(fake_server) -> None:
    fake_server.add_domain("prod-k8s", "d-Xy12AbCd34")
    fake_server.add_domain("other", "d-Other00001")
    assert server.domain_cluster_id(fake_server.url, "prod-k8s", timeout=1) == "d-Xy12AbCd34"


def test_waits_for_the_watcher_to_register(fake_server) -> None:
    fake_server.add_domain("late", "d-Late000001", appear_after=0.6)
    started = time.monotonic()
    assert server.domain_cluster_id(fake_server.url, "late", timeout=5, poll=0.1) == "d-Late000001"
    assert time.monotonic() - started >= 0.5


def test_gives_up_after_the_timeout(fake_server) -> None:
    with pytest.raises(ServerError, match="no domain named 'missing'.*after 0.3s"):
        server.domain_cluster_id(fake_server.url, "missing", timeout=0.3, poll=0.1)


@pytest.mark.parametrize("mode, message", [
    ("fail", "deepflow-server refused: FAIL"),
    ("http500", "HTTP 500"),
    ("duplicate", "2 domains are named 'dup'"),
])
def test_server_errors_are_one_clear_line(fake_server, mode, message) -> None:
    fake_server.add_domain("dup", "d-Dup0000001")
    fake_server.set_failure(mode)
    with pytest.raises(ServerError) as e:
        server.domain_cluster_id(fake_server.url, "dup", timeout=0)
    assert message in str(e.value) and "\n" not in str(e.value) and e.value.exit_code == 2


def test_hanging_server_times_out(fake_server) -> None:
    fake_server.set_failure("hang", hang_seconds=5)
    with pytest.raises(ServerError, match="timed out"):
        server.domain_cluster_id(fake_server.url, "x", timeout=0, request_timeout=0.3)


def test_refused_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    with pytest.raises(ServerError, match="cannot reach deepflow-server"):
        server.domain_cluster_id(f"http://127.0.0.1:{port}", "x", timeout=0)


def test_invalid_cluster_id_from_server_is_refused(fake_server) -> None:
    fake_server.add_domain("weird", "bad id: {}")
    with pytest.raises(ServerError, match="invalid CLUSTER_ID"):
        server.domain_cluster_id(fake_server.url, "weird", timeout=0)


class RawServer:
    """A loopback TCP server that answers every connection with `reply(conn)`: for answers no real
    HTTP server library would give (drips, huge bodies, broken-off responses, redirects)."""

    def __init__(self, reply) -> None:
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                try:
                    self.reply(conn)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def _drip(conn) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(40):
        conn.sendall(b"x")
        time.sleep(0.1)


def _huge(conn) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (64 << 20))
    chunk = b"x" * (1 << 20)
    for _ in range(64):
        conn.sendall(chunk)


def _cut(conn) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"OPT_STATUS\": ")


def _redirect(conn) -> None:
    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://192.0.2.1/v2/domains/\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("reply, message", [
    (_drip, "timed out after 1s"),  # a slow drip runs into the total deadline, not past it
    (_huge, "larger than 16 MiB"),
    (_cut, "broke off"),
    (_redirect, "follows no redirects"),
])
def test_hostile_answers_end_in_one_clear_error(reply, message) -> None:
    srv = RawServer(reply)
    started = time.monotonic()
    try:
        with pytest.raises(ServerError, match=message) as e:
            server.domain_cluster_id(srv.url, "x", timeout=0, request_timeout=1)
    finally:
        srv.close()
    assert "\n" not in str(e.value) and time.monotonic() - started < 10


def test_ids_with_a_trailing_newline_are_refused(fake_server) -> None:
    fake_server.add_domain("nl", "d-abc\n")
    with pytest.raises(ServerError, match="invalid CLUSTER_ID"):
        server.domain_cluster_id(fake_server.url, "nl", timeout=0)


def _trickle_headers(conn) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for _ in range(80):  # 8 s of header bytes, each well inside the socket timeout
        conn.sendall(b"X")
        time.sleep(0.1)


def test_a_server_trickling_headers_runs_into_the_total_deadline() -> None:
    srv = RawServer(_trickle_headers)
    started = time.monotonic()
    try:
        with pytest.raises(ServerError, match=r"timed out after 1s \(GET /v2/domains/\)"):
            server.Client(srv.url, timeout=1).call("GET", "/v2/domains/")
    finally:
        srv.close()
    assert time.monotonic() - started < 1.5  # the deadline covers the headers, not each byte of them
