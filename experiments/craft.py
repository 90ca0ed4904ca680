"""Building well-formed IPv4 packets from a few fields, with correct lengths and checksums.

Used by the model-only world (`experiments/modelrun/world.py`) to stand in for the hosts'
kernels, and
for the `raw` spec step's field form. Pure: built on `nat.packet`, no scapy, no sockets.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

from nat.checksum import with_fresh_checksums
from nat.packet import IcmpHeader, IPv4Header, Packet, TcpHeader, UdpHeader
from nat.tuple import Proto

TCP_FLAG_LETTERS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20,
                    "E": 0x40, "C": 0x80}


def tcp_flags(letters: str) -> int:
    """"SA" -> SYN|ACK, as scapy and tcpdump spell flags."""
    value = 0
    for ch in letters.upper():
        if ch not in TCP_FLAG_LETTERS:
            raise ValueError(f"unknown TCP flag {ch!r} (use F S R P A U E C)")
        value |= TCP_FLAG_LETTERS[ch]
    return value


def finish(pkt: Packet) -> Packet:
    """Fill in the IP total length, the UDP length and every checksum."""
    l4_len = len(pkt.l4_bytes())
    if isinstance(pkt.l4, UdpHeader):
        pkt = replace(pkt, l4=replace(pkt.l4, length=l4_len))
    pkt = replace(pkt, ip=replace(pkt.ip, total_length=pkt.ip.header_length + l4_len))
    return with_fresh_checksums(pkt)


def _ip(src: IPv4Address, dst: IPv4Address, proto: int, ttl: int, ident: int) -> IPv4Header:
    return IPv4Header(src=src, dst=dst, proto=proto, ttl=ttl, ident=ident)


def udp(src: IPv4Address, sport: int, dst: IPv4Address, dport: int, payload: bytes = b"",
        *, ttl: int = 64, ident: int = 0) -> Packet:
    return finish(Packet(_ip(src, dst, Proto.UDP, ttl, ident), UdpHeader(sport, dport), payload))


def tcp(src: IPv4Address, sport: int, dst: IPv4Address, dport: int, flags: int, *,
        seq: int = 0, ack: int = 0, window: int = 64240, payload: bytes = b"", ttl: int = 64,
        ident: int = 0) -> Packet:
    header = TcpHeader(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, window)
    return finish(Packet(_ip(src, dst, Proto.TCP, ttl, ident), header, payload))


def icmp(src: IPv4Address, dst: IPv4Address, type_: int, code: int = 0, *, id_: int = 0,
         seq: int = 0, payload: bytes = b"", ttl: int = 64, ident: int = 0) -> Packet:
    header = IcmpHeader(type_, code, 0, (id_ << 16) | seq)
    return finish(Packet(_ip(src, dst, Proto.ICMP, ttl, ident), header, payload))


def icmp_error(src: IPv4Address, about: Packet, type_: int, code: int, *,
               ttl: int = 64) -> Packet:
    """An ICMP error quoting `about` as Linux does (icmp_send): as much of the offending
    packet as fits in 576 bytes in all."""
    quoted = about.to_bytes()[: 576 - 28]
    return icmp(src, about.ip.src, type_, code, payload=quoted, ttl=ttl)
