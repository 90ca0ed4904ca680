"""IPv4 packets with TCP, UDP, ICMP or any other payload: parsed from bytes, built back to bytes.

Immutable values. `Packet.to_bytes(parse(b)) == b` for every packet `parse` accepts: fields are
kept exactly as they were on the wire (checksums, lengths, options), never "fixed" on the way.
Checksums are computed only when asked (`nat/checksum.py`), and rewritten incrementally by the
NAT manip code as the kernel does.

Mirrors what the kernel reads from struct iphdr, tcphdr, udphdr and icmphdr
(include/uapi/linux/{ip,tcp,udp,icmp}.h).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from nat.tuple import Proto

# TCP flag bits (byte 13 of the TCP header).
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = (1 << i for i in range(8))


class MalformedPacket(ValueError):
    """The bytes are not an IPv4 packet the model can read; says which field is wrong."""


@dataclass(frozen=True)
class IPv4Header:
    """struct iphdr. `frag` holds the 16-bit flags + fragment offset word as on the wire."""

    src: IPv4Address
    dst: IPv4Address
    proto: int
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    frag: int = 0x4000  # DF, offset 0
    total_length: int = 0
    checksum: int = 0
    options: bytes = b""

    @property
    def header_length(self) -> int:
        return 20 + len(self.options)

    @property
    def is_fragment(self) -> bool:
        """More fragments set, or a non-zero offset."""
        return bool(self.frag & 0x2000) or (self.frag & 0x1FFF) != 0

    def to_bytes(self) -> bytes:
        ihl = self.header_length // 4
        return struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            self.tos,
            self.total_length,
            self.ident,
            self.frag,
            self.ttl,
            self.proto,
            self.checksum,
            self.src.packed,
            self.dst.packed,
        ) + self.options


@dataclass(frozen=True)
class TcpHeader:
    """struct tcphdr. `offset_flags` keeps data offset, reserved bits and flags as on the wire."""

    sport: int
    dport: int
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 64240
    checksum: int = 0
    urgent: int = 0
    options: bytes = b""
    reserved: int = 0  # the 4 bits between data offset and flags (incl. the old NS bit)

    @property
    def header_length(self) -> int:
        return 20 + len(self.options)

    def to_bytes(self) -> bytes:
        doff = self.header_length // 4
        return struct.pack(
            "!HHIIBBHHH",
            self.sport,
            self.dport,
            self.seq,
            self.ack,
            (doff << 4) | self.reserved,
            self.flags,
            self.window,
            self.checksum,
            self.urgent,
        ) + self.options


@dataclass(frozen=True)
class UdpHeader:
    """struct udphdr. A checksum of 0 means "no checksum" and stays 0 through NAT."""

    sport: int
    dport: int
    length: int = 8
    checksum: int = 0

    header_length = 8

    def to_bytes(self) -> bytes:
        return struct.pack("!HHHH", self.sport, self.dport, self.length, self.checksum)


@dataclass(frozen=True)
class IcmpHeader:
    """struct icmphdr. `rest` is the second 32-bit word: id and sequence for queries,
    unused / next-hop MTU / pointer for errors."""

    type: int
    code: int = 0
    checksum: int = 0
    rest: int = 0

    header_length = 8

    @property
    def id(self) -> int:
        return self.rest >> 16

    @property
    def seq(self) -> int:
        return self.rest & 0xFFFF

    def with_id(self, id_: int) -> IcmpHeader:
        return replace(self, rest=(id_ << 16) | (self.rest & 0xFFFF))

    def to_bytes(self) -> bytes:
        return struct.pack("!BBHI", self.type, self.code, self.checksum, self.rest)


L4Header = TcpHeader | UdpHeader | IcmpHeader


@dataclass(frozen=True)
class Packet:
    """An IPv4 packet. `l4` is None when the protocol is not TCP/UDP/ICMP, when the packet is
    a non-first fragment, or (for quoted packets inside ICMP errors) when the L4 header is
    incomplete; then `payload` holds all the bytes after the IP header."""

    ip: IPv4Header
    l4: L4Header | None
    payload: bytes = b""

    @property
    def proto(self) -> int:
        return self.ip.proto

    @property
    def tcp(self) -> TcpHeader:
        assert isinstance(self.l4, TcpHeader)
        return self.l4

    @property
    def udp(self) -> UdpHeader:
        assert isinstance(self.l4, UdpHeader)
        return self.l4

    @property
    def icmp(self) -> IcmpHeader:
        assert isinstance(self.l4, IcmpHeader)
        return self.l4

    def l4_bytes(self) -> bytes:
        """Everything after the IP header, as it is on the wire."""
        return (self.l4.to_bytes() if self.l4 is not None else b"") + self.payload

    def to_bytes(self) -> bytes:
        return self.ip.to_bytes() + self.l4_bytes()

    def summary(self) -> str:
        """One line, tcpdump-like, for journeys and diffs."""
        ip = self.ip
        if isinstance(self.l4, TcpHeader):
            bits = (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR)
            names = "".join(c for c, bit in zip("FSRPAUEC", bits, strict=True)
                            if self.l4.flags & bit)
            return (f"TCP {ip.src}:{self.l4.sport} > {ip.dst}:{self.l4.dport} [{names or '.'}] "
                    f"seq={self.l4.seq} ack={self.l4.ack} len={len(self.payload)}")
        if isinstance(self.l4, UdpHeader):
            return (f"UDP {ip.src}:{self.l4.sport} > {ip.dst}:{self.l4.dport} "
                    f"len={len(self.payload)}")
        if isinstance(self.l4, IcmpHeader):
            return (f"ICMP {ip.src} > {ip.dst} type={self.l4.type} code={self.l4.code} "
                    f"id={self.l4.id} seq={self.l4.seq}")
        return f"IP proto={ip.proto} {ip.src} > {ip.dst} len={len(self.payload)}"


def parse(data: bytes, *, quoted: bool = False) -> Packet:
    """Read one IPv4 packet. `quoted=True` reads the packet embedded in an ICMP error, which
    the sender may have cut short (only the IP header and 8 bytes of L4 are guaranteed)."""
    if len(data) < 20:
        raise MalformedPacket(f"IPv4 header needs 20 bytes, got {len(data)}")
    vihl, tos, total, ident, frag, ttl, proto, csum, src, dst = struct.unpack_from(
        "!BBHHHBBH4s4s", data
    )
    if vihl >> 4 != 4:
        raise MalformedPacket(f"IP version is {vihl >> 4}, not 4")
    hlen = (vihl & 0x0F) * 4
    if hlen < 20 or hlen > len(data):
        raise MalformedPacket(f"IP header length {hlen} does not fit in {len(data)} bytes")
    if not quoted and total != len(data):
        raise MalformedPacket(f"IP total length {total} but {len(data)} bytes present")
    ip = IPv4Header(IPv4Address(src), IPv4Address(dst), proto, ttl, tos, ident, frag, total,
                    csum, bytes(data[20:hlen]))
    rest = bytes(data[hlen:])
    if ip.frag & 0x1FFF:
        return Packet(ip, None, rest)
    l4: L4Header | None = None
    if proto == Proto.TCP and len(rest) >= 20:
        sport, dport, seq, ack, offres, flags, win, tcsum, urg = struct.unpack_from(
            "!HHIIBBHHH", rest)
        doff = (offres >> 4) * 4
        if doff < 20 or doff > len(rest):
            # A quoted header is only looked at for its ports (the kernel's ICMP error path
            # does not validate it): keep its bytes as they are.
            if not quoted and doff < 20:
                raise MalformedPacket(f"TCP data offset {doff} is below 20")
            if not quoted:
                raise MalformedPacket(
                    f"TCP header length {doff} beyond the packet's {len(rest)} bytes")
            return Packet(ip, None, rest)
        l4 = TcpHeader(sport, dport, seq, ack, flags, win, tcsum, urg, rest[20:doff], offres & 0x0F)
        return Packet(ip, l4, rest[doff:])
    if proto == Proto.UDP and len(rest) >= 8:
        sport, dport, length, ucsum = struct.unpack_from("!HHHH", rest)
        return Packet(ip, UdpHeader(sport, dport, length, ucsum), rest[8:])
    if proto == Proto.ICMP and len(rest) >= 8:
        itype, icode, icsum, irest = struct.unpack_from("!BBHI", rest)
        return Packet(ip, IcmpHeader(itype, icode, icsum, irest), rest[8:])
    if proto in (Proto.TCP, Proto.UDP, Proto.ICMP) and not quoted:
        raise MalformedPacket(f"{Proto(proto).name} header truncated: {len(rest)} bytes")
    return Packet(ip, None, rest)
