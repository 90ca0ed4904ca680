"""Packets: bytes -> Packet -> the same bytes; tuples read from packets; quoted ICMP payloads."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packet_strategies import any_packets, icmp_packets, tcp_packets, udp_packets

from nat.checksum import with_fresh_checksums
from nat.extract import get_tuple, icmp_error_inner, inner_tuple, is_icmp_error
from nat.packet import IcmpHeader, IPv4Header, MalformedPacket, Packet, TcpHeader, UdpHeader, parse
from nat.tuple import Proto, Tuple

A = IPv4Address


@given(any_packets())
def test_packet_bytes_round_trip(pkt: Packet) -> None:
    raw = pkt.to_bytes()
    assert parse(raw) == pkt
    assert parse(raw).to_bytes() == raw


@given(any_packets(), st.data())
def test_whatever_parses_builds_back_to_the_same_bytes(pkt: Packet, data: st.DataObject) -> None:
    """Damage a few bytes: parse either refuses with MalformedPacket or keeps every byte."""
    raw = bytearray(pkt.to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    for quoted in (False, True):
        try:
            parsed = parse(bytes(raw), quoted=quoted)
        except MalformedPacket:
            continue
        assert parsed.to_bytes() == bytes(raw)


def test_scapy_built_packets_parse_field_by_field() -> None:
    import scapy.all as scapy  # slow to import: only here

    raw = bytes(scapy.IP(src="192.0.2.10", dst="198.51.100.2", ttl=63, id=4242, tos=0x10)
                / scapy.TCP(sport=33000, dport=80, flags="SA", seq=10, ack=20, window=512,
                            options=[("MSS", 1460), ("NOP", None), ("WScale", 7)])
                / b"data")
    pkt = parse(raw)
    assert pkt.ip == IPv4Header(A("192.0.2.10"), A("198.51.100.2"), Proto.TCP, ttl=63, tos=0x10,
                                ident=4242, frag=0, total_length=len(raw),
                                checksum=pkt.ip.checksum)
    assert isinstance(pkt.l4, TcpHeader)
    assert (pkt.l4.sport, pkt.l4.dport, pkt.l4.seq, pkt.l4.ack, pkt.l4.flags, pkt.l4.window) \
        == (33000, 80, 10, 20, 0x12, 512)
    assert pkt.l4.options == b"\x02\x04\x05\xb4\x01\x03\x03\x07"
    assert pkt.payload == b"data"
    assert pkt.to_bytes() == raw


@pytest.mark.parametrize(("raw", "says"), [
    (bytes(10), "needs 20 bytes"),
    (bytes.fromhex("65000014000000004011000001010101 02020202"), "version is 6"),
    (bytes.fromhex("44000014000000004011000001010101 02020202"), "header length 16"),
    (bytes.fromhex("45000015000000004011000001010101 02020202"), "total length 21"),
    (bytes.fromhex("45000018000000004011000001010101 02020202 00010002"), "UDP header truncated"),
    (bytes.fromhex("45000028000000004006000001010101 02020202") + bytes(12) + b"\x40" + bytes(7),
     "data offset 16"),
])
def test_malformed(raw: bytes, says: str) -> None:
    with pytest.raises(MalformedPacket, match=says):
        parse(raw)


def test_quoted_packets_may_be_cut_short() -> None:
    full = with_fresh_checksums(Packet(IPv4Header(A("1.1.1.1"), A("2.2.2.2"), Proto.TCP),
                                       TcpHeader(1000, 80)), lengths=True).to_bytes()
    cut = parse(full[:28], quoted=True)
    assert cut.l4 is None and cut.payload == full[20:28]
    assert cut.ip.total_length == 40
    with pytest.raises(MalformedPacket):
        parse(full[:28])


def test_non_first_fragment_has_no_l4_header() -> None:
    frag = with_fresh_checksums(Packet(IPv4Header(A("1.1.1.1"), A("2.2.2.2"), Proto.UDP,
                                                  frag=0x0010), None, bytes(16)), lengths=True)
    assert parse(frag.to_bytes()).l4 is None
    assert get_tuple(frag) is None


@given(tcp_packets())
def test_tcp_tuple(pkt: Packet) -> None:
    assert get_tuple(pkt) == Tuple(Proto.TCP, pkt.ip.src, pkt.ip.dst, pkt.tcp.sport, pkt.tcp.dport)


@given(udp_packets())
def test_udp_tuple(pkt: Packet) -> None:
    assert get_tuple(pkt) == Tuple(Proto.UDP, pkt.ip.src, pkt.ip.dst, pkt.udp.sport, pkt.udp.dport)


@given(icmp_packets(types=list(range(0, 20))))
def test_icmp_tuple_is_id_type_code(pkt: Packet) -> None:
    t = get_tuple(pkt)
    assert t is not None
    assert (t.icmp_id, t.icmp_type, t.icmp_code) == (pkt.icmp.id, pkt.icmp.type, pkt.icmp.code)


def test_generic_tuple_has_no_keys() -> None:
    gre = Packet(IPv4Header(A("1.1.1.1"), A("2.2.2.2"), 47), None, b"\x00\x00\x08\x00")
    assert get_tuple(gre) == Tuple(47, A("1.1.1.1"), A("2.2.2.2"), 0, 0)


def test_ports_need_only_four_bytes_and_icmp_eight() -> None:
    """nf_ct_get_tuple_ports reads 4 bytes; icmp_pkt_to_tuple needs the 8-byte header."""
    head = IPv4Header(A("1.1.1.1"), A("2.2.2.2"), Proto.UDP)
    assert get_tuple(Packet(head, None, b"\x9c\x40\x13\x88")) == \
        Tuple(Proto.UDP, A("1.1.1.1"), A("2.2.2.2"), 40000, 5000)
    assert get_tuple(Packet(head, None, b"\x9c\x40\x13")) is None
    icmp = replace(head, proto=Proto.ICMP)
    assert get_tuple(Packet(icmp, None, bytes(7))) is None
    assert get_tuple(Packet(icmp, None, b"\x08\x00\x00\x00\x03\x09\x00\x01")) == \
        Tuple.icmp(A("1.1.1.1"), A("2.2.2.2"), 8, 0, 777)


def error_about(about: Packet, type_: int, keep: int = 10_000) -> Packet:
    return with_fresh_checksums(Packet(IPv4Header(about.ip.dst, about.ip.src, Proto.ICMP),
                                       IcmpHeader(type_, 3), about.to_bytes()[:keep]),
                                lengths=True)


@pytest.mark.parametrize("type_", [3, 4, 5, 11, 12])
def test_icmp_error_inner_packet(type_: int) -> None:
    about = with_fresh_checksums(Packet(IPv4Header(A("192.0.2.10"), A("198.51.100.2"),
                                                   Proto.UDP), UdpHeader(49000, 5000), b"hi"),
                                 lengths=True)
    err = error_about(about, type_)
    assert is_icmp_error(err)
    assert icmp_error_inner(err) == about
    assert inner_tuple(err) == get_tuple(about)
    cut = error_about(about, type_, keep=24)       # 4 bytes of UDP: ports only
    inner = icmp_error_inner(cut)
    assert inner is not None and inner.l4 is None
    assert inner_tuple(cut) == get_tuple(about)


def test_not_an_error_or_unreadable_quote() -> None:
    echo = with_fresh_checksums(Packet(IPv4Header(A("1.1.1.1"), A("2.2.2.2"), Proto.ICMP),
                                       IcmpHeader(8, 0, 0, 1 << 16), b""), lengths=True)
    assert not is_icmp_error(echo)
    assert icmp_error_inner(echo) is None and inner_tuple(echo) is None
    garbage = replace(error_about(echo, 3), payload=b"\x60" + bytes(30))
    assert icmp_error_inner(garbage) is None and inner_tuple(garbage) is None
    short = replace(error_about(echo, 3), payload=bytes(12))
    assert icmp_error_inner(short) is None


def test_quoted_tcp_with_a_bad_data_offset_still_gives_its_ports() -> None:
    """The kernel reads only the ports of a quoted header; a garbage data offset there does not
    stop the RELATED lookup."""
    raw = bytes.fromhex("45000028000000004006000001010101 02020202 9c400050") + bytes(8) \
        + b"\x10" + bytes(7)
    with pytest.raises(MalformedPacket, match="data offset 4"):
        parse(raw)
    inner = parse(raw, quoted=True)
    assert inner.l4 is None and inner.to_bytes() == raw
    assert get_tuple(inner) == Tuple(Proto.TCP, A("1.1.1.1"), A("2.2.2.2"), 40000, 80)
