"""Hypothesis strategies for IPv4 packets with correct checksums and for tuples (test helper)."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import strategies as st

from nat.checksum import with_fresh_checksums
from nat.packet import IcmpHeader, IPv4Header, Packet, TcpHeader, UdpHeader
from nat.tuple import ICMP_INVERSE, Proto, Tuple

ICMP_QUERY = sorted(ICMP_INVERSE)          # 0, 8, 13..18
ICMP_ERRORS = [3, 4, 5, 11, 12]

addresses = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
ports = st.integers(0, 65535)
u16 = st.integers(0, 65535)


def options(max_words: int) -> st.SearchStrategy[bytes]:
    return st.integers(0, max_words).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))


@st.composite
def ip_headers(draw: st.DrawFn, proto: int) -> IPv4Header:
    return IPv4Header(
        src=draw(addresses), dst=draw(addresses), proto=proto,
        ttl=draw(st.integers(1, 255)), tos=draw(st.integers(0, 255)), ident=draw(u16),
        frag=draw(st.sampled_from([0, 0x4000])), options=draw(options(2)))


@st.composite
def tcp_packets(draw: st.DrawFn) -> Packet:
    tcp = TcpHeader(draw(ports), draw(ports), draw(st.integers(0, 2**32 - 1)),
                    draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 255)), draw(u16),
                    0, draw(u16), draw(options(10)))
    pkt = Packet(draw(ip_headers(Proto.TCP)), tcp, draw(st.binary(max_size=64)))
    return with_fresh_checksums(pkt, lengths=True)


@st.composite
def udp_packets(draw: st.DrawFn, zero_checksum: bool | None = None) -> Packet:
    pkt = Packet(draw(ip_headers(Proto.UDP)), UdpHeader(draw(ports), draw(ports)),
                 draw(st.binary(max_size=64)))
    pkt = with_fresh_checksums(pkt, lengths=True)
    zero = draw(st.booleans()) if zero_checksum is None else zero_checksum
    if zero:
        assert isinstance(pkt.l4, UdpHeader)
        pkt = Packet(pkt.ip, UdpHeader(pkt.l4.sport, pkt.l4.dport, pkt.l4.length, 0),
                     pkt.payload)
    return pkt


@st.composite
def icmp_packets(draw: st.DrawFn, types: list[int] | None = None) -> Packet:
    type_ = draw(st.sampled_from(types or ICMP_QUERY))
    header = IcmpHeader(type_, draw(st.integers(0, 255)), 0, draw(st.integers(0, 2**32 - 1)))
    pkt = Packet(draw(ip_headers(Proto.ICMP)), header, draw(st.binary(max_size=64)))
    return with_fresh_checksums(pkt, lengths=True)


@st.composite
def generic_packets(draw: st.DrawFn) -> Packet:
    proto = draw(st.integers(0, 255).filter(lambda p: p not in (1, 6, 17)))
    pkt = Packet(draw(ip_headers(proto)), None, draw(st.binary(max_size=64)))
    return with_fresh_checksums(pkt, lengths=True)


def any_packets() -> st.SearchStrategy[Packet]:
    return st.one_of(tcp_packets(), udp_packets(), icmp_packets(), generic_packets())


@st.composite
def tuples(draw: st.DrawFn, proto: int | None = None, invertible_only: bool = True) -> Tuple:
    """Tuples as the model makes them: ports for TCP/UDP, (type, code, id) for ICMP, keys 0
    for any other protocol."""
    p = proto if proto is not None else draw(st.sampled_from([1, 6, 17, 47, 132, 253]))
    src, dst = draw(addresses), draw(addresses)
    if p == Proto.ICMP:
        types = ICMP_QUERY if invertible_only else list(range(256))
        return Tuple.icmp(src, dst, draw(st.sampled_from(types)), draw(st.integers(0, 255)),
                          draw(u16))
    if p in (Proto.TCP, Proto.UDP):
        return Tuple(p, src, dst, draw(ports), draw(ports))
    return Tuple(p, src, dst)
