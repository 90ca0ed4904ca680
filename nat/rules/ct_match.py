"""Tests on the packet's conntrack entry beyond its state: iptables `-m conntrack` options
(--ctstatus, --ctdir, --ctproto, --ctorigsrc/--ctorigdst/--ctreplsrc/--ctrepldst and the
--ct*port options) and nft `ct status`, `ct direction`, `ct original|reply saddr|daddr|
proto-src|proto-dst`.

Mirrors net/netfilter/xt_conntrack.c (conntrack_mt, revision 3: each option tests one field
of the entry, `!` inverts it; ports are ranges) and nft_ct.c's get expression (with no entry
the rule does not match, negated or not). What neither has: --ctexpire / `ct expiration`,
which depend on the clock at the moment the packet passes; the parsers refuse them.

Why a test is a value with a `matches` method: the parsers of both syntaxes produce the same
tests, and rule_eval runs them without knowing which syntax wrote them.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

# ct status bits by the names iptables (--ctstatus) and nft (ct status) use, as
# include/uapi/linux/netfilter/nf_conntrack_common.h numbers them.
CT_STATUS_BITS: dict[str, int] = {
    "expected": 1 << 0, "seen-reply": 1 << 1, "assured": 1 << 2, "confirmed": 1 << 3,
    "snat": 1 << 4, "dnat": 1 << 5, "dying": 1 << 9,
}
# --ctstatus takes these (libxt_conntrack); NONE is the empty mask, which never matches.
XT_CTSTATUS: dict[str, int] = {
    "NONE": 0, "EXPECTED": 1 << 0, "SEEN_REPLY": 1 << 1, "ASSURED": 1 << 2,
    "CONFIRMED": 1 << 3,
}

Side = Literal["original", "reply"]
End = Literal["src", "dst"]


@dataclass(frozen=True)
class CtView:
    """What these tests read of the entry: its two tuples' fields and status bits, and the
    packet's direction (True: reply)."""

    status: int
    proto: int
    orig_src: IPv4Address
    orig_dst: IPv4Address
    orig_sport: int
    orig_dport: int
    reply_src: IPv4Address
    reply_dst: IPv4Address
    reply_sport: int
    reply_dport: int
    reply_direction: bool


@dataclass(frozen=True)
class CtStatusTest:
    """Any of `mask`'s bits set (xt: `!!(status_mask & ct->status)`; nft `ct status a,b`)."""

    mask: int
    negate: bool = False

    def matches(self, ct: CtView) -> bool:
        return bool(ct.status & self.mask) != self.negate


@dataclass(frozen=True)
class CtDirectionTest:
    reply: bool
    negate: bool = False

    def matches(self, ct: CtView) -> bool:
        return (ct.reply_direction == self.reply) != self.negate


@dataclass(frozen=True)
class CtProtoTest:
    proto: int
    negate: bool = False

    def matches(self, ct: CtView) -> bool:
        return (ct.proto == self.proto) != self.negate


@dataclass(frozen=True)
class CtAddrTest:
    side: Side
    end: End
    net: IPv4Network
    negate: bool = False

    def matches(self, ct: CtView) -> bool:
        orig = self.side == "original"
        if self.end == "src":
            addr = ct.orig_src if orig else ct.reply_src
        else:
            addr = ct.orig_dst if orig else ct.reply_dst
        return (addr in self.net) != self.negate


@dataclass(frozen=True)
class CtPortTest:
    """The tuple's port (the ICMP id for ICMP, 0 for protocols without ports)."""

    side: Side
    end: End
    lo: int
    hi: int
    negate: bool = False

    def matches(self, ct: CtView) -> bool:
        orig = self.side == "original"
        if self.end == "src":
            port = ct.orig_sport if orig else ct.reply_sport
        else:
            port = ct.orig_dport if orig else ct.reply_dport
        return (self.lo <= port <= self.hi) != self.negate


CtTest = CtStatusTest | CtDirectionTest | CtProtoTest | CtAddrTest | CtPortTest


def describe(test: CtTest) -> str:
    """An iptables-like text, for journeys."""
    neg = "! " if test.negate else ""
    match test:
        case CtStatusTest():
            names = [n for n, b in CT_STATUS_BITS.items() if test.mask & b] or ["NONE"]
            return f"{neg}--ctstatus {','.join(names)}"
        case CtDirectionTest():
            return f"{neg}--ctdir {'REPLY' if test.reply else 'ORIGINAL'}"
        case CtProtoTest():
            return f"{neg}--ctproto {test.proto}"
        case CtAddrTest():
            return f"{neg}--ct{test.side[:4]}{test.end} {test.net}"
        case CtPortTest():
            return f"{neg}--ct{test.side[:4]}{test.end}port {test.lo}:{test.hi}"
