"""Conntrack status bits, ctinfo and TCP states, with the kernel's numeric values.

Mirrors include/uapi/linux/netfilter/nf_conntrack_common.h (enum ip_conntrack_status,
enum ip_conntrack_info) and include/uapi/linux/netfilter/nf_conntrack_tcp.h
(enum tcp_conntrack).
"""

from __future__ import annotations

import enum


class Status(enum.IntFlag):
    """enum ip_conntrack_status (IPS_*)."""

    EXPECTED = 1 << 0
    SEEN_REPLY = 1 << 1
    ASSURED = 1 << 2
    CONFIRMED = 1 << 3
    SRC_NAT = 1 << 4
    DST_NAT = 1 << 5
    SEQ_ADJUST = 1 << 6
    SRC_NAT_DONE = 1 << 7
    DST_NAT_DONE = 1 << 8
    DYING = 1 << 9
    FIXED_TIMEOUT = 1 << 10
    TEMPLATE = 1 << 11
    NAT_CLASH = 1 << 12  # the kernel reuses the old UNTRACKED bit for clash losers
    HELPER = 1 << 13
    OFFLOAD = 1 << 14
    HW_OFFLOAD = 1 << 15

    NONE = 0


class CtInfo(enum.IntEnum):
    """enum ip_conntrack_info: what the packet is to its connection (seen by --ctstate).

    The kernel adds IP_CT_IS_REPLY (3) for reply-direction packets; RELATED_REPLY and
    ESTABLISHED_REPLY are those sums. INVALID and UNTRACKED are not ctinfo values in the
    kernel (no ct attached / the untracked template) but are kept here so a packet's state is
    one value.
    """

    ESTABLISHED = 0
    RELATED = 1
    NEW = 2
    ESTABLISHED_REPLY = 3
    RELATED_REPLY = 4
    INVALID = 100
    UNTRACKED = 101

    @property
    def is_reply(self) -> bool:
        return self in (CtInfo.ESTABLISHED_REPLY, CtInfo.RELATED_REPLY)

    @property
    def ctstate(self) -> str:
        """The name `-m conntrack --ctstate` / nft `ct state` uses for this packet."""
        return {
            CtInfo.ESTABLISHED: "ESTABLISHED",
            CtInfo.ESTABLISHED_REPLY: "ESTABLISHED",
            CtInfo.RELATED: "RELATED",
            CtInfo.RELATED_REPLY: "RELATED",
            CtInfo.NEW: "NEW",
            CtInfo.INVALID: "INVALID",
            CtInfo.UNTRACKED: "UNTRACKED",
        }[self]


class TcpState(enum.IntEnum):
    """enum tcp_conntrack (TCP_CONNTRACK_*), numbered as in netlink dumps."""

    NONE = 0
    SYN_SENT = 1
    SYN_RECV = 2
    ESTABLISHED = 3
    FIN_WAIT = 4
    CLOSE_WAIT = 5
    LAST_ACK = 6
    TIME_WAIT = 7
    CLOSE = 8
    SYN_SENT2 = 9
