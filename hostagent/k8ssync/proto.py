"""The KubernetesAPISync messages, hand-encoded (proto2 wire format).

Why by hand rather than protobuf classes: the messages are seven scalar fields and one repeated
sub-message, and encoding them here lets the store keep every entry already encoded (field 10, with
its tag and length), so a full report of 150k objects is one bytes.join instead of building 150k
message objects and serializing them (and no protoc step, no protobuf runtime to pin). The field
numbers are DeepFlow's (message/agent.proto; message/trident.proto up to v6.6.9, same wire format):

    KubernetesAPISyncRequest:  1 cluster_id string, 2 version uint64, 3 error_msg string,
                               4 agent_id uint32 (trident: vtap_id), 5 source_ip string,
                               6 team_id string, 10 repeated KubernetesAPIInfo entries
    KubernetesAPIInfo:         1 type string, 2 info string (unused), 3 compressed_info bytes
    KubernetesAPISyncResponse: 1 version uint64
    KubernetesClusterIDRequest:  1 ca_md5 string, 2 team_id string, 46 kubernetes_cluster_name string
    KubernetesClusterIDResponse: 1 error_msg string, 2 cluster_id string

The decoder is strict (truncation, bad wire types), for the answers and for the test server."""
from __future__ import annotations

from typing import Any, Iterator, Optional

SERVICES = ("agent.Synchronizer", "trident.Synchronizer")  # v7+ first, then v6.6.9 and older
SYNC = "KubernetesAPISync"
CLUSTER_ID = "GetKubernetesClusterID"

VARINT, LEN = 0, 2


class DecodeError(ValueError):
    pass


def varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("negative varint")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def _len_field(field: int, data: bytes) -> bytes:
    return _key(field, LEN) + varint(len(data)) + data


def _str(field: int, value: Optional[str]) -> bytes:
    return b"" if value is None else _len_field(field, value.encode())


def _uint(field: int, value: Optional[int]) -> bytes:
    return b"" if value is None else _key(field, VARINT) + varint(value)


def entry(type_name: str, compressed_info: bytes) -> bytes:
    """One KubernetesAPIInfo as request field 10, ready to be joined into a request."""
    return _len_field(10, _str(1, type_name) + _len_field(3, compressed_info))


def sync_request_head(cluster_id: str, version: int, error_msg: str = "", source_ip: Optional[str] = None,
                      team_id: Optional[str] = None, agent_id: int = 0) -> bytes:
    return (_str(1, cluster_id) + _uint(2, version) + _str(3, error_msg) + _uint(4, agent_id)
            + _str(5, source_ip) + _str(6, team_id))


def sync_request(head: bytes, entries: list[bytes]) -> bytes:
    return b"".join([head, *entries])  # one copy of the entries, not two


def cluster_id_request(ca_md5: Optional[str], team_id: Optional[str] = None, cluster_name: Optional[str] = None) -> bytes:
    return _str(1, ca_md5) + _str(2, team_id) + _str(46, cluster_name)


def fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field, wire type, value) for each field: int for varints, bytes for length-delimited."""
    i, n = 0, len(data)
    while i < n:
        key, i = _read_varint(data, i)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise DecodeError("field number 0")
        if wire == VARINT:
            value, i = _read_varint(data, i)
            yield field, wire, value
        elif wire == LEN:
            length, i = _read_varint(data, i)
            if i + length > n:
                raise DecodeError("truncated length-delimited field")
            yield field, wire, data[i:i + length]
            i += length
        elif wire == 1:
            if i + 8 > n:
                raise DecodeError("truncated fixed64")
            yield field, wire, data[i:i + 8]
            i += 8
        elif wire == 5:
            if i + 4 > n:
                raise DecodeError("truncated fixed32")
            yield field, wire, data[i:i + 4]
            i += 4
        else:
            raise DecodeError(f"unsupported wire type {wire}")


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(data):
            raise DecodeError("truncated varint")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def _expect(wire: int, want: int, name: str) -> None:
    if wire != want:
        raise DecodeError(f"{name}: wire type {wire}, want {want}")


_SYNC_FIELDS = {1: ("cluster_id", LEN), 2: ("version", VARINT), 3: ("error_msg", LEN), 4: ("agent_id", VARINT),
                5: ("source_ip", LEN), 6: ("team_id", LEN)}


def decode_sync_request(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"entries": []}
    for field, wire, value in fields(data):
        if field == 10:
            _expect(wire, LEN, "entries")
            e: dict[str, Any] = {}
            for f2, w2, v2 in fields(value):
                name = {1: "type", 2: "info", 3: "compressed_info"}.get(f2)
                if name:
                    _expect(w2, LEN, name)
                    e[name] = v2 if name == "compressed_info" else v2.decode()
            out["entries"].append(e)
        elif field in _SYNC_FIELDS:
            name, want = _SYNC_FIELDS[field]
            _expect(wire, want, name)
            out[name] = value.decode() if want == LEN else value
    return out


def decode_sync_response(data: bytes) -> Optional[int]:
    version = None
    for field, wire, value in fields(data):
        if field == 1:
            _expect(wire, VARINT, "version")
            version = value
    return version


def sync_response(version: Optional[int]) -> bytes:
    return _uint(1, version)


def decode_cluster_id_request(data: bytes) -> dict[str, str]:
    names = {1: "ca_md5", 2: "team_id", 46: "kubernetes_cluster_name"}
    out = {}
    for field, wire, value in fields(data):
        if field in names:
            _expect(wire, LEN, names[field])
            out[names[field]] = value.decode()
    return out


def cluster_id_response(cluster_id: Optional[str] = None, error_msg: Optional[str] = None) -> bytes:
    return _str(1, error_msg) + _str(2, cluster_id)


def decode_cluster_id_response(data: bytes) -> tuple[str, str]:
    """(cluster_id, error_msg), empty strings when absent."""
    cluster_id = error = ""
    for field, wire, value in fields(data):
        if field in (1, 2):
            _expect(wire, LEN, "cluster_id" if field == 2 else "error_msg")
            if field == 1:
                error = value.decode()
            else:
                cluster_id = value.decode()
    return cluster_id, error
