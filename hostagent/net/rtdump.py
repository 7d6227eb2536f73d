"""Streamed rtnetlink dumps that decode only the attributes layout detection needs.

The replies are framed here with ``struct``: a full pyroute2 decode of every attribute
costs ~48x ``ip``'s time at 10k links, so each RTM_NEWLINK body is read with ``struct``
and everything else is skipped. The two dump requests (a fixed header and body) are
packed with ``struct`` too: importing pyroute2's message classes costs ~11 ms of a
detect start; tests/unit/test_netlayout_recorded.py checks both equal pyroute2's
encoding. pyroute2 makes the netns-id exchange, when other namespaces are read; it
is imported there, without its package ``__init__`` (``_light_pyroute2``).
"""

from __future__ import annotations

import importlib.util
import operator
import os
import socket
import struct
import sys
from typing import Any, Iterator, NamedTuple

from hostagent.net.model import Link

# rtnetlink numbers (linux/rtnetlink.h, linux/if_link.h); stable kernel ABI.
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTM_NEWNSID = 88
RTM_GETNSID = 90
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_EXT_MASK = 29
IFLA_LINK_NETNSID = 37
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_TUN_TYPE = 3  # u8: 1 tun, 2 tap
IFLA_MACVLAN_MODE = 1  # u32
IFLA_IPVLAN_MODE = 1  # u16
RTEXT_FILTER_SKIP_STATS = 1 << 3  # leaves out per-VF stats (link stats still come)
RTA_DST = 1
RTA_OIF = 4
RTA_TABLE = 15
RT_TABLE_MAIN = 254
ARPHRD_LOOPBACK = 772
NLA_TYPE_MASK = 0x3FFF

OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
MACVLAN_MODES = {1: "private", 2: "vepa", 4: "bridge", 8: "passthru", 16: "source"}
IPVLAN_MODES = {0: "l2", 1: "l3", 2: "l3s"}

_IFI = struct.Struct("=BxHiII")  # ifinfomsg
_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
_NLMSGHDR = struct.Struct("=IHHII")  # nlmsg_len, type, flags, seq, pid
_U16 = struct.Struct("=H")
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
RECV_BUFSIZE = 1 << 16


def _nested(data: Any, start: int, end: int) -> dict[int, tuple[int, int]]:
    """Map attribute type -> (payload start, payload end) for one nesting level."""
    found: dict[int, tuple[int, int]] = {}
    pos = start
    while pos + 4 <= end:
        nla_len, nla_type = _NLA.unpack_from(data, pos)
        if nla_len < 4:
            break
        found[nla_type & NLA_TYPE_MASK] = (pos + 4, pos + nla_len)
        pos += (nla_len + 3) & ~3
    return found


def _kind_details(data: Any, start: int, end: int) -> tuple[str | None, str | None]:
    """Read IFLA_LINKINFO: the kind, plus the one detail that tells link flavours apart."""
    info = _nested(data, start, end)
    if IFLA_INFO_KIND not in info:
        return None, None
    k0, k1 = info[IFLA_INFO_KIND]
    kind = bytes(data[k0:k1]).rstrip(b"\0").decode("ascii", "replace")
    if IFLA_INFO_DATA not in info or kind not in ("tun", "macvlan", "macvtap", "ipvlan", "ipvtap"):
        return kind, None
    d0, d1 = info[IFLA_INFO_DATA]
    sub = _nested(data, d0, d1)
    if kind == "tun" and IFLA_TUN_TYPE in sub:
        return kind, {1: "tun", 2: "tap"}.get(data[sub[IFLA_TUN_TYPE][0]])
    if kind in ("macvlan", "macvtap") and IFLA_MACVLAN_MODE in sub:
        return kind, MACVLAN_MODES.get(_U32.unpack_from(data, sub[IFLA_MACVLAN_MODE][0])[0])
    if kind in ("ipvlan", "ipvtap") and IFLA_IPVLAN_MODE in sub:
        return kind, IPVLAN_MODES.get(_U16.unpack_from(data, sub[IFLA_IPVLAN_MODE][0])[0])
    return kind, None


_WANTED_TYPES = (IFLA_IFNAME, IFLA_LINKINFO, IFLA_MASTER, IFLA_LINK, IFLA_LINK_NETNSID, IFLA_ADDRESS, IFLA_OPERSTATE)
NLA_F_NESTED = 0x8000
# Some kernels flag nested attributes; accept both spellings of the nested one.
_WANTED = frozenset(_WANTED_TYPES + (IFLA_LINKINFO | NLA_F_NESTED,))


def _walk(
    data: Any, offset: int, length: int, headers: list[int] | None = None
) -> tuple[dict[int, tuple[int, int]], bool]:
    """One pass over the top-level attributes: where the wanted ones are (message-relative
    payload start and end) and whether the chain ended exactly at the message end. With
    ``headers``, every header is appended to it (relative offset, length, type)."""
    end = offset + length
    pos = offset + 32
    unpack_nla = _NLA.unpack_from
    wanted = _WANTED
    found: dict[int, tuple[int, int]] = {}
    while pos + 4 <= end:
        nla_len, nla_type = unpack_nla(data, pos)
        if headers is not None:
            headers += (pos - offset, nla_len, nla_type)
        if nla_type in wanted:
            found[nla_type & NLA_TYPE_MASK] = (pos + 4 - offset, pos + nla_len - offset)
        # A zero length would loop forever: treat it as the end of the message.
        pos += ((nla_len + 3) & ~3) or end
    return found, pos == end


def parse_link(data: Any, offset: int, length: int) -> Link:
    """Decode one RTM_NEWLINK message (header at ``offset``) into a Link; pure."""
    return _link_from(data, offset, _walk(data, offset, length)[0])


class _Compiled(NamedTuple):
    headers: struct.Struct  # reads every attribute header of a message, payloads skipped
    expected: tuple[int, ...]  # their (length, type) pairs as first seen
    values: struct.Struct  # reads ifinfomsg's type and index and the wanted payloads
    pick: Any  # itemgetter: (type, index, *_FIELDS) from values' tuple + (None,), None for an absent one


# The payloads a compiled chain reads, in _make_link's order, and the struct code of the fixed-size ones.
_FIELDS = (IFLA_IFNAME, IFLA_LINKINFO, IFLA_MASTER, IFLA_LINK, IFLA_LINK_NETNSID, IFLA_ADDRESS, IFLA_OPERSTATE)
_CODES = {IFLA_MASTER: "I", IFLA_LINK: "I", IFLA_LINK_NETNSID: "i", IFLA_OPERSTATE: "B"}
_SIZES = {"I": 4, "i": 4, "B": 1}
_ABSENT = (None,)


class LinkParser:
    """parse_link with a memory of attribute layouts, for one dump.

    Links of one kind and name length come with identical attribute chains (same
    lengths and types in the same order; only values differ). Once a chain has been
    walked, it is compiled into two structs: one reads every header of a message,
    compared with the remembered ones, so a match proves the very chain (exact, not a
    guess); the other reads the wanted payloads at their now known places. Either is
    one C call where the walk is ~40 Python steps.
    """

    MAX_LAYOUTS = 256
    MAX_KINDS = 1024

    def __init__(self) -> None:
        self.layouts: dict[int, list[_Compiled]] = {}
        self.remembered = 0
        self.kinds: dict[bytes, tuple[str | None, str | None]] = {}  # IFLA_LINKINFO payload -> kind, detail

    def __call__(self, data: Any, offset: int, length: int) -> Link:
        layouts = self.layouts.get(length)
        if layouts:
            for i, layout in enumerate(layouts):
                if layout.headers.unpack_from(data, offset + 32) == layout.expected:
                    if i:  # links come in runs of one chain: keep the last one met first
                        layouts.insert(0, layouts.pop(i))
                    return self._read(layout, data, offset)
        headers: list[int] = []
        found, complete = _walk(data, offset, length, headers)
        if complete and headers and self.remembered < self.MAX_LAYOUTS:
            compiled = _compile(found, headers)
            if compiled is not None:
                self.layouts.setdefault(length, []).append(compiled)
                self.remembered += 1
        return _link_from(data, offset, found)

    def _read(self, layout: _Compiled, data: Any, offset: int) -> Link:
        ifi_type, index, name, info, master, lower, netnsid, mac, state = layout.pick(
            layout.values.unpack_from(data, offset + 16) + _ABSENT)
        kind = detail = None
        if info is not None:
            known = self.kinds.get(info)
            if known is None:
                known = _kind_details(info, 0, len(info))
                if len(self.kinds) < self.MAX_KINDS:
                    self.kinds[info] = known
            kind, detail = known
        return _make_link(ifi_type, index, name.rstrip(b"\0").decode("utf-8", "replace") if name is not None else "",
                          kind, detail, master, lower, netnsid, mac.hex(":") if mac is not None else None, state)


def _compile(found: dict[int, tuple[int, int]], headers: list[int]) -> _Compiled | None:
    """The two structs for one walked chain; None for a malformed one (a header, or a number,
    shorter than its kind), which the walk reads every time. A wanted payload is read where
    _walk found it: the last of its type, as there."""
    header_fmt = "="
    values_fmt = "=2xHi"  # ifinfomsg's type and index (from offset 16)
    position = 24  # the message-relative offset values_fmt has reached
    previous_end = 32
    expected: list[int] = []
    for i in range(0, len(headers), 3):
        rel, nla_len, nla_type = headers[i : i + 3]
        if nla_len < 4:
            return None
        header_fmt += f"{rel - previous_end}xHH" if rel > previous_end else "HH"
        previous_end = rel + 4
        expected += (nla_len, nla_type)
    spans = sorted((span, attr) for attr, span in found.items())
    order: list[int] = []
    for (start, end), attr in spans:
        code = _CODES.get(attr, f"{end - start}s")
        if _SIZES.get(code, 0) > end - start:
            return None
        values_fmt += (f"{start - position}x" if start > position else "") + code
        position = start + _SIZES.get(code, end - start)
        order.append(attr)
    values = struct.Struct(values_fmt)
    absent = 2 + len(order)  # the index of the None appended to values' tuple
    pick = operator.itemgetter(0, 1, *(2 + order.index(attr) if attr in order else absent for attr in _FIELDS))
    return _Compiled(struct.Struct(header_fmt), tuple(expected), values, pick)


def _link_from(data: Any, offset: int, found: dict[int, tuple[int, int]]) -> Link:
    """Build the Link from the wanted attributes' payload spans (relative to ``offset``)."""
    _family, ifi_type, index, _flags, _change = _IFI.unpack_from(data, offset + 16)
    name = ""
    if IFLA_IFNAME in found:
        n0, n1 = found[IFLA_IFNAME]
        name = bytes(data[offset + n0 : offset + n1]).rstrip(b"\0").decode("utf-8", "replace")
    kind: str | None = None
    detail: str | None = None
    if IFLA_LINKINFO in found:
        i0, i1 = found[IFLA_LINKINFO]
        kind, detail = _kind_details(data, offset + i0, offset + i1)
    master = _U32.unpack_from(data, offset + found[IFLA_MASTER][0])[0] if IFLA_MASTER in found else None
    lower = _U32.unpack_from(data, offset + found[IFLA_LINK][0])[0] if IFLA_LINK in found else None
    netnsid = (
        _I32.unpack_from(data, offset + found[IFLA_LINK_NETNSID][0])[0] if IFLA_LINK_NETNSID in found else None
    )
    mac = None
    if IFLA_ADDRESS in found:
        a0, a1 = found[IFLA_ADDRESS]
        mac = bytes(data[offset + a0 : offset + a1]).hex(":")
    state = data[offset + found[IFLA_OPERSTATE][0]] if IFLA_OPERSTATE in found else None
    return _make_link(ifi_type, index, name, kind, detail, master, lower, netnsid, mac, state)


def _make_link(ifi_type: int, index: int, name: str, kind: str | None, detail: str | None, master: int | None,
               lower: int | None, netnsid: int | None, mac: str | None, state: int | None) -> Link:
    """The Link from decoded values: the rules both the walk and a compiled chain share."""
    operstate = OPERSTATES[state] if state is not None and state < len(OPERSTATES) else "unknown"
    if kind is None:
        kind = "loopback" if ifi_type == ARPHRD_LOOPBACK else "physical"
    elif kind == "tun" and detail == "tap":
        kind, detail = "tap", None
    # IFLA_LINK equal to the link's own index carries no information (e.g. some tunnels),
    # unless it names a device in another netns, where the same number is another device.
    if lower == 0 or (lower == index and netnsid is None):
        lower = None
    return Link(index, name, kind, detail, master or None, lower,
                netnsid if netnsid is not None and netnsid >= 0 else None, mac, operstate)


def _light_pyroute2() -> None:
    """Let ``pyroute2.<submodule>`` imports skip the package's ``__init__``: it imports every
    protocol (ndb, ipdb, conntrack, ...), 3/4 of detect's import time. The package's own names still
    load on first use, so ``from pyroute2 import IPRoute`` elsewhere in the process keeps working."""
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None:
        return  # the import that follows fails as it would have
    package = importlib.util.module_from_spec(spec)  # __path__ set, __init__ not run
    loader = spec.loader

    def attribute(name: str) -> Any:
        # A submodule (`from pyroute2 import config`, as pyroute2's own modules say): import just it.
        if not name.startswith("__") and importlib.util.find_spec(f"pyroute2.{name}") is not None:
            return importlib.import_module(f"pyroute2.{name}")
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return object.__getattribute__(package, name)

    package.__dict__["__getattr__"] = attribute
    sys.modules["pyroute2"] = package


def _route_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, 0))
    return sock


def open_route_socket(netns_path: str | None = None) -> socket.socket:
    """A NETLINK_ROUTE socket bound in the netns at ``netns_path`` (None: the caller's).

    A socket keeps the netns it was made in, so this thread enters the target, makes the
    socket and returns home; no child process is needed. Both namespaces are given as
    open fds, so none is ever created.
    """
    if netns_path is None:
        return _route_socket()
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        os.close(home)
        raise OSError(f"cannot open netns {netns_path}: {exc.strerror}") from None
    try:
        _setns(target)
        try:
            return _route_socket()
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    """setns(2) into the network namespace open at ``fd``: os.setns from Python 3.12, before it
    libc's through ctypes (pyroute2.netns wraps the same call, but importing it pulls in
    multiprocessing and logging: ~12 ms of detect's start)."""
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def pyroute2_encoded(msg: Any, msg_type: int, flags: int, seq: int) -> bytes:
    """A pyroute2 message as sent: its header filled in, then encoded."""
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = 0
    msg.encode()
    return bytes(msg.data)


def _dump_request(msg_type: int, body: bytes, seq: int) -> bytes:
    return _NLMSGHDR.pack(16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def getlink_request(seq: int) -> bytes:
    """RTM_GETLINK dump of every link, per-VF stats left out (ifinfomsg + IFLA_EXT_MASK)."""
    body = _IFI.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _NLA.pack(8, IFLA_EXT_MASK) + _U32.pack(RTEXT_FILTER_SKIP_STATS)
    return _dump_request(RTM_GETLINK, body, seq)


def getroute_request(family: int, seq: int) -> bytes:
    """RTM_GETROUTE dump of one address family (an all-zero rtmsg but the family)."""
    return _dump_request(RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0), seq)


def _stream(sock: socket.socket, handlers: dict[int, Any], seq: int) -> Iterator[Any]:
    """Yield each handled message's value until NLMSG_DONE; one receive buffer is reused throughout.
    Framed here with struct (pyroute2's Marshal.parse cost ~1/4 of a 10k-link dump)."""
    buf = bytearray(RECV_BUFSIZE)
    view = memoryview(buf)
    while True:
        size = sock.recv_into(view)
        if size <= 0:
            raise OSError("netlink dump failed: the socket closed")
        data = bytes(view[:size])
        offset = 0
        while offset + _NLMSGHDR.size <= size:
            length, mtype, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size or offset + length > size:
                raise OSError("netlink dump failed: a truncated message")
            if mtype == NLMSG_DONE:
                return
            if mtype == NLMSG_ERROR:
                code = _I32.unpack_from(data, offset + 16)[0] if length >= 20 else 0
                if code:
                    raise OSError(f"netlink dump failed: {os.strerror(abs(code))}")
                return
            handler = handlers.get(mtype)
            if handler is not None:
                yield handler(data, offset, length)
            offset += (length + 3) & ~3


def dump_links(sock: socket.socket, seq: int = 1) -> Iterator[Link]:
    """Stream every link of the socket's netns as a Link (RTM_GETLINK dump)."""
    sock.send(getlink_request(seq))
    yield from _stream(sock, {RTM_NEWLINK: LinkParser()}, seq)


def parse_default_route_oif(data: Any, offset: int, length: int) -> int | None:
    """The output ifindex of a main-table default route in one RTM_NEWROUTE, else None."""
    _family, dst_len, _src_len, _tos, table = struct.unpack_from("=BBBBB", data, offset + 16)
    if dst_len != 0:
        return None
    attrs = _nested(data, offset + 28, offset + length)
    if RTA_TABLE in attrs:
        table = _U32.unpack_from(data, attrs[RTA_TABLE][0])[0]
    if table != RT_TABLE_MAIN or RTA_OIF not in attrs:
        return None
    return int(_U32.unpack_from(data, attrs[RTA_OIF][0])[0])


def default_route_ifindexes(sock: socket.socket, seq: int = 2) -> list[int]:
    """Ifindexes of the default routes (IPv4 first, then IPv6), without duplicates."""
    found: list[int] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        sock.send(getroute_request(family, seq))
        for oif in _stream(sock, {RTM_NEWROUTE: parse_default_route_oif}, seq):
            if oif is not None and oif not in found:
                found.append(oif)
        seq += 1
    return found


def peer_nsid(sock: socket.socket, target_ns_path: str, seq: int = 9) -> int | None:
    """The id the socket's netns has assigned to the netns at ``target_ns_path``, if any.

    A link whose IFLA_LINK_NETNSID equals this id has its peer or lower device there.
    """
    _light_pyroute2()
    from pyroute2.netlink.rtnl.nsidmsg import nsidmsg

    fd = os.open(target_ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        msg = nsidmsg()
        msg["attrs"] = [("NETNSA_FD", fd)]
        sock.send(pyroute2_encoded(msg, RTM_GETNSID, NLM_F_REQUEST, seq))
        data = sock.recv(RECV_BUFSIZE)
    finally:
        os.close(fd)
    for reply in _parse_plain(data):
        nsid = reply.get_attr("NETNSA_NSID")
        if nsid is not None:
            nsid = struct.unpack("=i", struct.pack("=I", nsid))[0]
            return nsid if nsid >= 0 else None
    return None


def _parse_plain(data: bytes) -> list[Any]:
    _light_pyroute2()
    from pyroute2.netlink.rtnl.marshal import MarshalRtnl

    return [m for m in MarshalRtnl().parse(data) if m["header"]["type"] == RTM_NEWNSID]
