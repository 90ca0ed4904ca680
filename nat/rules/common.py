"""What both rule readers parse the same way: ports and port ranges, addresses and prefixes,
NAT ranges, protocol, TCP flag and ICMP type names.

The two tools agree on what these values mean (a port is 0..65535 in host order, a range has
min <= max, a NAT range is struct nf_nat_range2 with the NF_NAT_RANGE_* flags of
include/uapi/linux/netfilter/nf_nat.h) but not on how they write them or word a refusal:
xtables (libxtables' xtables_parse_port() and the libxt_SNAT/DNAT/MASQUERADE/REDIRECT option
parsers) reads each end of a range in turn, `:` between match ports with open ends, `-`
between NAT ports from 1; nft's scanner judges a token's shape before its values and writes
every range with `-`. A `PortSpelling` is one such way, as data, with the messages of each
problem; `read_port_range` is the reading itself, once.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from nat.rules.ast import PROTO_NUMBERS, NatFlag, NatRange, PortRange, RuleError
from nat.rules.cursor import RuleCursor

PORT_MAX = 65535
IFNAMSIZ = 16  # interface names are shorter (include/uapi/linux/if.h)

# TCP flag bits by name (xtables spelling, lower case; nft calls 0x40 `ecn`).
TCP_FLAG_BITS: dict[str, int] = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08,
                                 "ack": 0x10, "urg": 0x20, "ece": 0x40, "cwr": 0x80}

# ICMP type names (iptables --icmp-type and nft `icmp type` agree on these spellings).
ICMP_TYPE_NUMBERS: dict[str, int] = {
    "echo-reply": 0, "destination-unreachable": 3, "source-quench": 4, "redirect": 5,
    "echo-request": 8, "router-advertisement": 9, "router-solicitation": 10,
    "time-exceeded": 11, "parameter-problem": 12, "timestamp-request": 13,
    "timestamp-reply": 14, "info-request": 15, "info-reply": 16,
    "address-mask-request": 17, "address-mask-reply": 18,
}


def protocol_number(word: str) -> int | None:
    """A protocol number (0..255) or a name from PROTO_NUMBERS; None if neither."""
    if word.isdigit():
        number = int(word)
        return number if number <= 255 else None
    return PROTO_NUMBERS.get(word)


def has_letters(word: str) -> bool:
    """A port written with letters is a service name: reading it needs /etc/services."""
    return any(c.isalpha() for c in word)


# -- ports --------------------------------------------------------------------------------------


class PortProblem(enum.Enum):
    SERVICE = "a service name"
    NOT_A_NUMBER = "not a number"
    OUT_OF_RANGE = "out of range"
    MIN_ABOVE_MAX = "min above max"


@dataclass(frozen=True)
class PortSpelling:
    """How one tool writes a port or port range, and words each problem.

    `messages` maps a problem to (unsupported?, template); a template may name `{part}`
    (the end at fault, or the whole text when the shape was judged first) and `{text}`."""

    sep: str                    # between the two ends
    open_ends: bool             # an empty end is 0 / 65535 (xtables match ranges: `:1023`)
    empty_hi_is_lo: bool        # `a-` is `a` (the NAT target parsers)
    lowest: int                 # 0, or 1 (xtables NAT ports)
    shape_first: bool           # nft: both ends must be digits before any value is judged
    messages: Mapping[PortProblem, tuple[bool, str]]


def read_port_range(text: str, how: PortSpelling) -> PortRange | tuple[PortProblem, str]:
    """`text` as a port range, or the problem with it and the part at fault."""
    lo_s, sep, hi_s = text.partition(how.sep)
    if not sep or (not hi_s and how.empty_hi_is_lo):
        hi_s = lo_s
    if how.shape_first and not (lo_s.isdecimal() and hi_s.isdecimal()):
        return (PortProblem.SERVICE if has_letters(text) else PortProblem.NOT_A_NUMBER), text
    ends: list[int] = []
    for part, default in ((lo_s, 0), (hi_s, PORT_MAX)):
        if not part and sep and how.open_ends:
            ends.append(default)
            continue
        if not part.isdecimal():
            return (PortProblem.SERVICE if has_letters(part) else PortProblem.NOT_A_NUMBER), part
        value = int(part)
        if not how.lowest <= value <= PORT_MAX:
            return PortProblem.OUT_OF_RANGE, part
        ends.append(value)
    if ends[0] > ends[1]:
        return PortProblem.MIN_ABOVE_MAX, text
    return PortRange(ends[0], ends[1])


def parse_port_range(text: str, how: PortSpelling, at: RuleCursor[Any]) -> PortRange:
    """`text` as a port range; a problem is the error `how` words for it, at `at`'s line."""
    got = read_port_range(text, how)
    if isinstance(got, PortRange):
        return got
    problem, part = got
    unsupported, template = how.messages[problem]
    message = template.format(part=part, text=text)
    error: RuleError = at.unsupported(message) if unsupported else at.syntax(message)
    raise error


# -- addresses ----------------------------------------------------------------------------------


def read_network(text: str) -> IPv4Network | None:
    """An address or a prefix (`a.b.c.d`, `a.b.c.d/len`, `a.b.c.d/mask`, host bits allowed,
    as both tools allow them); None if it is neither."""
    try:
        return IPv4Network(text, strict=False)
    except ValueError:
        return None


def parse_address_range(text: str, at: RuleCursor[Any], *, bad: str,
                        prefixes: bool) -> tuple[IPv4Address, IPv4Address]:
    """A NAT address range: `a`, `a-b`, or (`prefixes`: as `nft list` prints an aligned
    range) `a.b.c.d/len`. Unreadable text is a syntax error with message `bad`; min > max
    is refused as unsupported (the model's NAT core assumes min <= max)."""
    try:
        if prefixes and "/" in text:
            net = IPv4Network(text, strict=True)
            return net.network_address, net.broadcast_address
        first, _, last = text.partition("-")
        lo = IPv4Address(first)
        hi = IPv4Address(last) if last else lo
    except ValueError:
        raise at.syntax(bad) from None
    if hi < lo:
        raise at.unsupported(f"address range {text} with min > max")
    return lo, hi


def nat_range(addresses: tuple[IPv4Address, IPv4Address] | None,
              ports: PortRange | None, base: int | None = None,
              flags: NatFlag = NatFlag.NONE) -> NatRange:
    """struct nf_nat_range2 from its parts: MAP_IPS with addresses, PROTO_SPECIFIED with
    ports, PROTO_OFFSET with a base port (which comes with ports)."""
    if addresses is not None:
        flags |= NatFlag.MAP_IPS
    lo_p = hi_p = 0
    if ports is not None:
        flags |= NatFlag.PROTO_SPECIFIED
        lo_p, hi_p = ports.lo, ports.hi
    if base is not None:
        flags |= NatFlag.PROTO_OFFSET
    lo_a, hi_a = addresses if addresses is not None else (None, None)
    return NatRange(flags, lo_a, hi_a, lo_p, hi_p, base or 0)
