"""Rewriting addresses, ports and ICMP ids for NAT, checksums adjusted as the kernel does.

Mirrors net/netfilter/nf_nat_proto.c: nf_nat_manip_pkt() -> nf_nat_ipv4_manip_pkt()
(l3proto manip) -> l4proto_manip_pkt() with tcp_manip_pkt(), udp_manip_pkt() /
__udp_manip_pkt(), icmp_manip_pkt(), and nf_nat_ipv4_csum_update(); and
nf_nat_icmp_reply_translation() for ICMP errors about a NATed connection.

The work is done on the packet's bytes, at the offsets the kernel writes, so that quoted
packets cut short inside ICMP errors behave exactly as in the kernel: what counts is how many
bytes follow the header being rewritten up to the end of the whole packet (skb->len).

Which target and which manip type to use is decided by the NAT core (nf_nat_packet: target =
invert(tuple of the other direction)); this module only does the byte-exact mechanics.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

from nat.checksum import (
    CSUM_MANGLED_0,
    csum_replace4,
    inet_proto_csum_replace2,
    inet_proto_csum_replace4,
    internet_checksum,
)
from nat.maniptype import ManipType
from nat.packet import Packet, parse
from nat.tuple import Proto, Tuple

__all__ = ["ICMP_QUERY_TYPES", "ManipError", "ManipType", "icmp_reply_translation", "manip_pkt"]

ICMP_QUERY_TYPES: frozenset[int] = frozenset({0, 8, 13, 14, 15, 16, 17, 18})
"""ICMP types whose identifier NAT rewrites (echo, timestamp, info, address mask)."""


class ManipError(ValueError):
    """The packet is too short for the rewrite: the kernel's skb_ensure_writable() fails and the
    NAT hook drops the packet. Cannot happen for a packet conntrack could track."""


def _u16(buf: bytearray, off: int) -> int:
    return int.from_bytes(buf[off:off + 2], "big")


def _put16(buf: bytearray, off: int, value: int) -> None:
    buf[off:off + 2] = value.to_bytes(2, "big")


def _u32(buf: bytearray, off: int) -> int:
    return int.from_bytes(buf[off:off + 4], "big")


def _need(buf: bytearray, end: int, what: str) -> None:
    if len(buf) < end:
        raise ManipError(f"{what}: needs {end} bytes, packet has {len(buf)}")


def _address_change(buf: bytearray, iphdroff: int, target: Tuple,
                    maniptype: ManipType) -> tuple[int, int]:
    """nf_nat_ipv4_csum_update(): (old, new) address for the pseudo-header adjustment."""
    if maniptype is ManipType.SRC:
        return _u32(buf, iphdroff + 12), int(target.src)
    return _u32(buf, iphdroff + 16), int(target.dst)


def _tcp_manip(buf: bytearray, iphdroff: int, hdroff: int, target: Tuple,
               maniptype: ManipType) -> None:
    """tcp_manip_pkt(): the port always; the checksum only if the whole 20-byte header is there
    (a quoted header inside an ICMP error may carry just the 8 bytes conntrack needs)."""
    _need(buf, hdroff + 8, "TCP ports")
    portoff = hdroff + (0 if maniptype is ManipType.SRC else 2)
    newport = target.sport if maniptype is ManipType.SRC else target.dport
    oldport = _u16(buf, portoff)
    _put16(buf, portoff, newport)
    if len(buf) < hdroff + 20:
        return
    old, new = _address_change(buf, iphdroff, target, maniptype)
    check = inet_proto_csum_replace4(_u16(buf, hdroff + 16), old, new, pseudohdr=True)
    check = inet_proto_csum_replace2(check, oldport, newport, pseudohdr=False)
    _put16(buf, hdroff + 16, check)


def _udp_manip(buf: bytearray, iphdroff: int, hdroff: int, target: Tuple,
               maniptype: ManipType) -> None:
    """udp_manip_pkt() / __udp_manip_pkt(): a zero checksum ("none") stays zero; otherwise it
    is adjusted for the address and the port, and a result of 0 is stored as 0xFFFF."""
    _need(buf, hdroff + 8, "UDP header")
    portoff = hdroff + (0 if maniptype is ManipType.SRC else 2)
    newport = target.sport if maniptype is ManipType.SRC else target.dport
    check = _u16(buf, hdroff + 6)
    if check:
        old, new = _address_change(buf, iphdroff, target, maniptype)
        check = inet_proto_csum_replace4(check, old, new, pseudohdr=True)
        check = inet_proto_csum_replace2(check, _u16(buf, portoff), newport, pseudohdr=False)
        _put16(buf, hdroff + 6, check or CSUM_MANGLED_0)
    _put16(buf, portoff, newport)


def _icmp_manip(buf: bytearray, hdroff: int, target: Tuple) -> None:
    """icmp_manip_pkt(): for query types only, the identifier becomes the target's id
    (src.u.icmp.id, whatever the manip type); the ICMP checksum has no pseudo-header."""
    _need(buf, hdroff + 8, "ICMP header")
    if buf[hdroff] not in ICMP_QUERY_TYPES:
        return
    newid = target.icmp_id
    check = inet_proto_csum_replace2(_u16(buf, hdroff + 2), _u16(buf, hdroff + 4), newid,
                                     pseudohdr=False)
    _put16(buf, hdroff + 2, check)
    _put16(buf, hdroff + 4, newid)


def _l4proto_manip(buf: bytearray, iphdroff: int, hdroff: int, target: Tuple,
                   maniptype: ManipType) -> None:
    """l4proto_manip_pkt(): chosen by the *target's* protocol; unknown protocols untouched."""
    if target.proto == Proto.TCP:
        _tcp_manip(buf, iphdroff, hdroff, target, maniptype)
    elif target.proto == Proto.UDP:
        _udp_manip(buf, iphdroff, hdroff, target, maniptype)
    elif target.proto == Proto.ICMP:
        _icmp_manip(buf, hdroff, target)


def _ipv4_manip(buf: bytearray, iphdroff: int, target: Tuple, maniptype: ManipType) -> None:
    """nf_nat_ipv4_manip_pkt(): L4 first (its pseudo-header update reads the old address),
    then the address, with the IP header checksum adjusted by csum_replace4."""
    _need(buf, iphdroff + 20, "IPv4 header")
    hdroff = iphdroff + (buf[iphdroff] & 0x0F) * 4
    _l4proto_manip(buf, iphdroff, hdroff, target, maniptype)
    addroff = iphdroff + (12 if maniptype is ManipType.SRC else 16)
    new = int(target.src if maniptype is ManipType.SRC else target.dst)
    _put16(buf, iphdroff + 10, csum_replace4(_u16(buf, iphdroff + 10), _u32(buf, addroff), new))
    buf[addroff:addroff + 4] = new.to_bytes(4, "big")


def _rebuild(pkt: Packet, buf: bytearray) -> Packet:
    """The packet read back from the rewritten bytes. The IP header keeps its dataclass (only
    addresses and checksum change); the L4 part is re-read with the same structure."""
    src, dst = IPv4Address(bytes(buf[12:16])), IPv4Address(bytes(buf[16:20]))
    ip = replace(pkt.ip, src=src, dst=dst, checksum=_u16(buf, 10))
    l4 = bytes(buf[ip.header_length:])
    head = replace(ip, options=b"", total_length=20 + len(l4)).to_bytes()
    reread = parse(head + l4, quoted=True)
    return Packet(ip, reread.l4, reread.payload)


def manip_pkt(pkt: Packet, target: Tuple, maniptype: ManipType) -> Packet:
    """nf_nat_manip_pkt() for IPv4: make `pkt` look like `target` on one side.

    SRC: source address := target.src, and the source port := target.sport (TCP/UDP) or the
    ICMP id := target.sport (query types). DST: destination address := target.dst and the
    destination port := target.dport (TCP/UDP); for ICMP queries the id := target.sport here
    too. Checksums are adjusted incrementally (never recomputed): the IP header for the
    address; TCP/UDP for the pseudo-header address and the port; ICMP for the id.
    Raises ManipError where the kernel would drop the packet as too short.
    """
    buf = bytearray(pkt.to_bytes())
    _ipv4_manip(buf, 0, target, maniptype)
    return _rebuild(pkt, buf)


def icmp_reply_translation(pkt: Packet, inner_target: Tuple, inner_manip: ManipType,
                           outer_target: Tuple, outer_manip: ManipType) -> Packet:
    """The byte work of nf_nat_icmp_reply_translation() for an ICMP error about a NATed flow.

    1. The quoted packet is rewritten with `inner_manip` towards `inner_target` (the kernel
       passes tuple[!dir] itself and the opposite manip type): its IP header checksum always,
       its TCP/UDP checksum only if the quote holds enough of that header.
    2. The ICMP checksum is computed from scratch over the whole ICMP message.
    3. The outer header is rewritten with `outer_manip` towards `outer_target` (the kernel
       passes invert(tuple[!dir]) with its protocol forced to ICMP, so for an error message
       only the outer address changes).
    The quoted bytes keep their length. The checks the kernel makes before (ICMP checksum
    valid, redirects, whether the status bit for this direction is set) are the caller's.
    Raises ManipError if there is no ICMP header and quoted IP header to rewrite.
    """
    hdrlen = pkt.ip.header_length
    buf = bytearray(pkt.to_bytes())
    _need(buf, hdrlen + 8 + 20, "ICMP error with a quoted IPv4 header")
    _ipv4_manip(buf, hdrlen + 8, inner_target, inner_manip)
    _put16(buf, hdrlen + 2, 0)
    _put16(buf, hdrlen + 2, internet_checksum(bytes(buf[hdrlen:])))
    _ipv4_manip(buf, 0, replace(outer_target, proto=Proto.ICMP), outer_manip)
    return _rebuild(pkt, buf)

