"""The ICMP tracker: echo (and the other query pairs) by identifier, 30 s, never ASSURED.

Mirrors net/netfilter/nf_conntrack_proto_icmp.c: nf_conntrack_icmpv4_error() (the checks
every ICMP packet gets before the lookup; errors are then matched to the entry they quote, in
nat/core.py) and nf_conntrack_icmp_packet() (valid_new[], nf_ct_icmp_timeout).

Only request types 8, 13, 15, 17 may have created an entry: the check is on the entry's
ORIGINAL type, so an unsolicited echo reply (type 0) gets a fresh entry whose original type is
0, the check fails, and the packet is INVALID (the unconfirmed entry is thrown away), while
the answer to a tracked request is found in the reply direction and passes.
"""

from __future__ import annotations

from nat.checksum import checksums_ok
from nat.conn import Conn
from nat.hooks import Hook
from nat.packet import IcmpHeader, Packet
from nat.proto_generic import TrackResult, refresh
from nat.status import CtInfo
from nat.sysctl import Sysctls
from nat.tuple import ICMP_ERROR_TYPES, ICMP_NEW_TYPES, Direction

NR_ICMP_TYPES = 18


def icmp_error(pkt: Packet, hook: Hook, sysctls: Sysctls) -> str | None:
    """The validity checks of nf_conntrack_icmpv4_error(): header present, checksum (only at
    PRE_ROUTING with nf_conntrack_checksum=1), type at most 18. None if all pass."""
    icmp = pkt.l4
    if not isinstance(icmp, IcmpHeader):
        return "short ICMP packet"
    if sysctls.checksum and hook is Hook.PRE_ROUTING and not checksums_ok(pkt)["l4"]:
        return "bad ICMP checksum"
    if icmp.type > NR_ICMP_TYPES:
        return f"ICMP type {icmp.type} is above {NR_ICMP_TYPES}"
    return None


def is_error_type(type_: int) -> bool:
    """icmp_is_err(): 3, 4, 5, 11, 12."""
    return type_ in ICMP_ERROR_TYPES


def icmp_new(conn: Conn) -> Conn | None:
    """May this entry exist at all? Only if its original type is a request (valid_new[])."""
    return conn if conn.orig.icmp_type in ICMP_NEW_TYPES else None


def icmp_packet(conn: Conn, pkt: Packet, direction: Direction, ctinfo: CtInfo, now: float,
                sysctls: Sysctls) -> TrackResult:
    """nf_conntrack_icmp_packet(): refresh to 30 s, or INVALID if the entry's original type
    cannot start a connection."""
    if icmp_new(conn) is None:
        return TrackResult(conn, "INVALID",
                           (f"ICMP type {conn.orig.icmp_type} cannot create an entry",))
    t = sysctls.icmp_timeout
    return TrackResult(refresh(conn, now, t), "ACCEPT", (f"timeout {t} s",))
