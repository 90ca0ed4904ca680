"""Internet checksums: computed from scratch, and updated incrementally the way NAT does it.

Mirrors include/net/checksum.h (csum_add, csum_sub, csum_fold, csum_replace4, csum_replace2,
csum16_add, CSUM_MANGLED_0), inet_proto_csum_replace4/2 (net/core/utils.c), and RFC 1071
(the sum) and RFC 1624 (the incremental update, eqn. 3: HC' = ~(~HC + ~m + m')).

All values here are in network byte order read as big-endian integers. The kernel does the
same arithmetic on little-endian loads; a one's complement sum does not care about byte order
(swapping the bytes of every word swaps the bytes of the sum), so the results are the same
16-bit field values the kernel writes.

Why the incremental form matters: NAT never recomputes a TCP/UDP checksum, it adjusts it. For a
checksum that was correct before, the adjusted value equals a fresh computation; for a wrong one
the error is carried along unchanged. A UDP checksum field of 0 means "none" and stays 0.
"""

from __future__ import annotations

import struct
from dataclasses import replace

from nat.packet import IcmpHeader, IPv4Header, Packet, TcpHeader, UdpHeader
from nat.tuple import Proto

CSUM_MANGLED_0 = 0xFFFF
"""What a UDP checksum that computes to 0 is stored as (0 on the wire means "no checksum")."""

_M32 = 0xFFFFFFFF
_M16 = 0xFFFF

# Where each protocol keeps its checksum, counted from the start of its header.
CHECKSUM_OFFSET: dict[int, int] = {Proto.TCP: 16, Proto.UDP: 6, Proto.ICMP: 2}


# -- the one's complement primitives (include/net/checksum.h) ------------------------------


def csum_add(csum: int, addend: int) -> int:
    """csum_add(): 32-bit add with the carry folded back in (end-around carry)."""
    res = (csum + addend) & _M32
    return (res + (res < addend)) & _M32


def csum_sub(csum: int, addend: int) -> int:
    """csum_sub(): add the one's complement."""
    return csum_add(csum, ~addend & _M32)


def csum16_add(csum: int, addend: int) -> int:
    """csum16_add(): the same on 16 bits."""
    res = (csum + addend) & _M16
    return (res + (res < addend)) & _M16


def csum16_sub(csum: int, addend: int) -> int:
    return csum16_add(csum, ~addend & _M16)


def csum_fold(csum: int) -> int:
    """csum_fold(): fold a 32-bit partial sum to 16 bits and complement it."""
    s = (csum & _M16) + (csum >> 16)
    s = (s & _M16) + (s >> 16)
    return ~s & _M16


def ones_sum(data: bytes, start: int = 0) -> int:
    """RFC 1071 sum of 16-bit big-endian words (odd length padded with a zero byte), folded to
    16 bits with end-around carry but not complemented. `start` is a partial sum to add to."""
    if len(data) % 2:
        data += b"\0"
    total: int = start + sum(int(w) for (w,) in struct.iter_unpack("!H", data))
    while total >> 16:
        total = (total & _M16) + (total >> 16)
    return total


def internet_checksum(data: bytes) -> int:
    """The checksum to store for `data` whose checksum field is zero (RFC 1071):
    the complement of the one's complement sum."""
    return ~ones_sum(data) & _M16


# -- incremental updates (RFC 1624) ---------------------------------------------------------


def csum_replace4(csum: int, old: int, new: int) -> int:
    """csum_replace4(): adjust checksum `csum` for a 32-bit field changing from `old` to `new`
    (an IPv4 address). Done on 32-bit words, then folded (RFC 1624 eqn. 3)."""
    tmp = csum_sub(~csum & _M32, old & _M32)
    return csum_fold(csum_add(tmp, new & _M32))


def csum_replace2(csum: int, old: int, new: int) -> int:
    """csum_replace2(): the same for a 16-bit field, in 16-bit arithmetic."""
    return ~csum16_add(csum16_sub(~csum & _M16, old), new) & _M16


def inet_proto_csum_replace4(csum: int, old: int, new: int, *, pseudohdr: bool,
                             partial: bool = False) -> int:
    """inet_proto_csum_replace4(): adjust a TCP/UDP/ICMP checksum for a changed field.

    `pseudohdr` says the field is part of the pseudo-header (an IP address), not of the L4
    header itself. For a fully computed checksum (the only kind the model carries, and what a
    capture with offloads off shows) this is plain csum_replace4 either way. With
    `partial=True` (CHECKSUM_PARTIAL: the field holds only the un-complemented pseudo-header
    sum that the NIC will finish) only pseudo-header changes are applied, uncomplemented.
    """
    if not partial:
        return csum_replace4(csum, old, new)
    if not pseudohdr:
        return csum
    return ~csum_fold(csum_add(csum_sub(csum, old & _M32), new & _M32)) & _M16


def inet_proto_csum_replace2(csum: int, old: int, new: int, *, pseudohdr: bool,
                             partial: bool = False) -> int:
    """inet_proto_csum_replace2(): a 16-bit field (a port, an ICMP id), via the 32-bit path."""
    return inet_proto_csum_replace4(csum, old, new, pseudohdr=pseudohdr, partial=partial)


# -- full computation -----------------------------------------------------------------------


def ip_header_checksum(h: IPv4Header) -> int:
    """The IPv4 header checksum (ip_fast_csum over ihl words with the field zeroed)."""
    return internet_checksum(replace(h, checksum=0).to_bytes())


def _pseudo_header(pkt: Packet, length: int) -> bytes:
    """The TCP/UDP pseudo-header: saddr, daddr, zero, protocol, L4 length."""
    return pkt.ip.src.packed + pkt.ip.dst.packed + struct.pack("!BBH", 0, pkt.proto, length)


def _l4_with_zero_checksum(pkt: Packet) -> bytes:
    offset = CHECKSUM_OFFSET.get(pkt.proto)
    if offset is None:
        raise ValueError(f"protocol {pkt.proto} has no checksum the model knows")
    data = pkt.l4_bytes()
    if len(data) < offset + 2:
        raise ValueError(f"{Proto(pkt.proto).name} header cut short: {len(data)} bytes")
    return data[:offset] + b"\0\0" + data[offset + 2:]


def l4_checksum(pkt: Packet) -> int:
    """The L4 checksum to store: TCP and UDP over the pseudo-header and every byte after the IP
    header, ICMP over the ICMP message alone. A UDP sum of 0 is stored as 0xFFFF."""
    data = _l4_with_zero_checksum(pkt)
    if pkt.proto == Proto.ICMP:
        return internet_checksum(data)
    value = internet_checksum(_pseudo_header(pkt, len(data)) + data)
    if pkt.proto == Proto.UDP and value == 0:
        return CSUM_MANGLED_0
    return value


def with_fresh_checksums(pkt: Packet, *, lengths: bool = False) -> Packet:
    """The packet with its L4 checksum (TCP, UDP, ICMP, when the header is present) and IP
    header checksum computed from scratch. With `lengths=True` the IP total length and UDP
    length are first set from the bytes present. Used to build packets, never by NAT."""
    if lengths:
        l4_len = len(pkt.l4_bytes())
        if isinstance(pkt.l4, UdpHeader):
            pkt = replace(pkt, l4=replace(pkt.l4, length=l4_len))
        pkt = replace(pkt, ip=replace(pkt.ip, total_length=pkt.ip.header_length + l4_len))
    if isinstance(pkt.l4, TcpHeader | UdpHeader | IcmpHeader):
        pkt = replace(pkt, l4=replace(pkt.l4, checksum=l4_checksum(pkt)))
    return replace(pkt, ip=replace(pkt.ip, checksum=ip_header_checksum(pkt.ip)))


def checksums_ok(pkt: Packet) -> dict[str, bool]:
    """Whether the checksums verify, as the kernel checks them (the one's complement sum over
    the data including the checksum folds to zero). Keys: "ip" and "l4". "l4" is True when
    there is nothing to check (no L4 header the model knows) and for UDP checksum 0 ("none")."""
    ip_ok = ones_sum(pkt.ip.to_bytes()) == _M16
    l4_ok = True
    if isinstance(pkt.l4, TcpHeader | UdpHeader | IcmpHeader):
        data = pkt.l4_bytes()
        if isinstance(pkt.l4, IcmpHeader):
            l4_ok = ones_sum(data) == _M16
        elif isinstance(pkt.l4, UdpHeader) and pkt.l4.checksum == 0:
            l4_ok = True
        else:
            l4_ok = ones_sum(_pseudo_header(pkt, len(data)) + data) == _M16
    return {"ip": ip_ok, "l4": l4_ok}
