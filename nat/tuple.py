"""Connection tuples and their inversion.

Mirrors include/net/netfilter/nf_conntrack_tuple.h (struct nf_conntrack_tuple) and
nf_ct_invert_tuple() in net/netfilter/nf_conntrack_core.c, with the ICMP rules of
nf_conntrack_invert_icmp_tuple() in net/netfilter/nf_conntrack_proto_icmp.c.

The kernel keeps a 16-bit "key" on each side of a tuple: the ports for TCP and UDP, and for
ICMP the echo identifier on the source side and (type, code) on the destination side. We keep
the same layout (`sport`, `dport`) and offer ICMP-named accessors, so a reader can hold this
next to the kernel's union without translation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from ipaddress import IPv4Address


class Proto(enum.IntEnum):
    """IP protocol numbers the model tracks specially (anything else is 'generic')."""

    ICMP = 1
    TCP = 6
    UDP = 17


ICMPV6 = 58
"""IPPROTO_ICMPV6. The kernel picks its ICMPv6 tracker by this number alone, also for an IPv4
packet (nf_ct_l4proto_find), and that tracker refuses IPv4 packets: an IPv4 packet with
protocol 58 is never tracked (see nat.core)."""


class Direction(enum.IntEnum):
    """IP_CT_DIR_ORIGINAL / IP_CT_DIR_REPLY."""

    ORIGINAL = 0
    REPLY = 1

    def other(self) -> Direction:
        return Direction.REPLY if self is Direction.ORIGINAL else Direction.ORIGINAL


# ICMP query types that can be inverted (request <-> reply): nf_conntrack_invert_icmp_tuple().
ICMP_INVERSE: dict[int, int] = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}
# Only these request types may create a new entry (icmp_new() in nf_conntrack_proto_icmp.c).
ICMP_NEW_TYPES: frozenset[int] = frozenset({8, 13, 15, 17})
# Error types: never create entries, may be RELATED (icmp_is_err()).
ICMP_ERROR_TYPES: frozenset[int] = frozenset({3, 4, 5, 11, 12})


class NotInvertible(ValueError):
    """The tuple has no inverse (an ICMP type outside the request/reply pairs)."""


@dataclass(frozen=True, order=True)
class Tuple:
    """One direction of a connection, as the kernel hashes it.

    `sport`/`dport` are the L4 keys: ports for TCP/UDP; for ICMP `sport` is the identifier
    (src.u.icmp.id) and `dport` packs type and code as (type << 8) | code (dst.u.icmp).
    For other protocols both are 0. The direction is not part of equality, as in the kernel.
    """

    proto: int
    src: IPv4Address
    dst: IPv4Address
    sport: int = 0
    dport: int = 0

    @classmethod
    def icmp(cls, src: IPv4Address, dst: IPv4Address, type_: int, code: int, id_: int) -> Tuple:
        return cls(Proto.ICMP, src, dst, id_, (type_ << 8) | code)

    @property
    def has_ports(self) -> bool:
        return self.proto in (Proto.TCP, Proto.UDP)

    @property
    def icmp_type(self) -> int:
        return self.dport >> 8

    @property
    def icmp_code(self) -> int:
        return self.dport & 0xFF

    @property
    def icmp_id(self) -> int:
        return self.sport

    def with_src(self, addr: IPv4Address, key: int | None = None) -> Tuple:
        """The tuple with its source side replaced (key = port, or ICMP id)."""
        return replace(self, src=addr, sport=self.sport if key is None else key)

    def with_dst(self, addr: IPv4Address, port: int | None = None) -> Tuple:
        """The tuple with its destination side replaced (port ignored for ICMP: see manip)."""
        if self.proto == Proto.ICMP or port is None:
            return replace(self, dst=addr)
        return replace(self, dst=addr, dport=port)

    def __str__(self) -> str:
        return " ".join(render_tuple_fields(self))


def invert(t: Tuple) -> Tuple:
    """nf_ct_invert_tuple(): swap the two sides and their keys; ICMP instead maps request <->
    reply and keeps the id."""
    if t.proto == Proto.ICMP:
        inverse = ICMP_INVERSE.get(t.icmp_type)
        if inverse is None:
            raise NotInvertible(f"ICMP type {t.icmp_type} has no reply type")
        return Tuple(t.proto, t.dst, t.src, t.sport, (inverse << 8) | t.icmp_code)
    # Every other protocol swaps the two keys (ports; GRE keys; 0 and 0 for generic).
    return Tuple(t.proto, t.dst, t.src, t.dport, t.sport)


def invertible(t: Tuple) -> bool:
    return t.proto != Proto.ICMP or t.icmp_type in ICMP_INVERSE


def render_tuple_fields(t: Tuple) -> list[str]:
    """The tuple in `conntrack -L` words: src=.. dst=.. then sport/dport or type/code/id."""
    words = [f"src={t.src}", f"dst={t.dst}"]
    if t.has_ports:
        words += [f"sport={t.sport}", f"dport={t.dport}"]
    elif t.proto == Proto.ICMP:
        words += [f"type={t.icmp_type}", f"code={t.icmp_code}", f"id={t.icmp_id}"]
    return words
