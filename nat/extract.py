"""From a packet to the tuple conntrack looks it up by; the packet quoted inside an ICMP error.

Mirrors nf_ct_get_tuple(), nf_ct_get_tuple_ports(), ipv4_get_l4proto() and nf_ct_get_tuplepr()
in net/netfilter/nf_conntrack_core.c, icmp_pkt_to_tuple(), nf_conntrack_icmpv4_error() and
nf_conntrack_inet_error() in net/netfilter/nf_conntrack_proto_icmp.c.

Only the extraction lives here. Whether a packet is valid for its tracker (tcp_error,
udp_error: full header, lengths, checksums) is the trackers' business, and the lookup of the
inverted inner tuple is the conntrack table's.
"""

from __future__ import annotations

import struct

from nat.packet import IcmpHeader, MalformedPacket, Packet, parse
from nat.tuple import ICMP_ERROR_TYPES, ICMPV6, Proto, Tuple

NR_ICMP_TYPES = 18
"""The highest ICMP type conntrack knows; anything above is invalid (icmp_error)."""


def get_tuple(pkt: Packet) -> Tuple | None:
    """nf_ct_get_tuple(): the original-direction tuple of `pkt`, or None if none can be read.

    None for a non-first fragment (ipv4_get_l4proto refuses them; conntrack defragments, so
    only quoted packets inside ICMP errors can be fragments), for TCP/UDP with fewer than the
    4 bytes holding the ports (nf_ct_get_tuple_ports), and for ICMP with fewer than the 8
    bytes of struct icmphdr (icmp_pkt_to_tuple), and for protocol 58 (ICMPv6) with fewer than
    the 8 bytes of struct icmp6hdr (icmpv6_pkt_to_tuple: nf_ct_get_tuple picks it by the
    number alone, also inside IPv4). Any other protocol is tracked by addresses only
    ("generic"), with both keys 0. A protocol-58 tuple keeps keys 0 too: it never reaches the
    table, since the ICMPv6 tracker refuses IPv4 packets (nat.core).
    """
    ip = pkt.ip
    if ip.frag & 0x1FFF:
        return None
    data = pkt.l4_bytes()
    if ip.proto in (Proto.TCP, Proto.UDP):
        if len(data) < 4:
            return None
        sport, dport = struct.unpack_from("!HH", data)
        return Tuple(ip.proto, ip.src, ip.dst, sport, dport)
    if ip.proto == Proto.ICMP:
        if len(data) < 8:
            return None
        type_, code, _csum, id_ = struct.unpack_from("!BBHH", data)
        return Tuple.icmp(ip.src, ip.dst, type_, code, id_)
    if ip.proto == ICMPV6 and len(data) < 8:
        return None
    return Tuple(ip.proto, ip.src, ip.dst)


def is_icmp_error(pkt: Packet) -> bool:
    """icmp_is_err(): destination unreachable, source quench, redirect, time exceeded,
    parameter problem (types 3, 4, 5, 11, 12). These never create entries."""
    return isinstance(pkt.l4, IcmpHeader) and pkt.l4.type in ICMP_ERROR_TYPES


def icmp_error_inner(pkt: Packet) -> Packet | None:
    """The packet quoted in an ICMP error (the bytes after the 8-byte ICMP header), read with
    `parse(..., quoted=True)`; None if `pkt` is not an ICMP error or the quote is not a
    readable IPv4 header."""
    if not is_icmp_error(pkt):
        return None
    try:
        return parse(pkt.payload, quoted=True)
    except MalformedPacket:
        return None


def inner_tuple(pkt: Packet) -> Tuple | None:
    """The tuple of the quoted packet (nf_ct_get_tuplepr at the inner header, as
    nf_conntrack_inet_error does). It is the tuple of a packet travelling the *other* way, so
    the caller inverts it before the lookup, and then checks that the outer destination is the
    found entry's destination for that direction."""
    inner = icmp_error_inner(pkt)
    return None if inner is None else get_tuple(inner)
