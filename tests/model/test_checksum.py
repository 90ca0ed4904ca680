"""Checksums: RFC 1071 vectors, scapy as an independent oracle, RFC 1624 incremental updates."""

from __future__ import annotations

import struct
from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packet_strategies import any_packets, icmp_packets, tcp_packets, udp_packets

from nat.checksum import (
    CSUM_MANGLED_0,
    checksums_ok,
    csum_replace2,
    csum_replace4,
    inet_proto_csum_replace2,
    inet_proto_csum_replace4,
    internet_checksum,
    ip_header_checksum,
    l4_checksum,
    ones_sum,
    with_fresh_checksums,
)
from nat.packet import IPv4Header, Packet, UdpHeader, parse
from nat.tuple import Proto


def test_rfc1071_example() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (with end-around carry).
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


def test_odd_length_is_padded_with_zero() -> None:
    assert internet_checksum(b"\x01") == internet_checksum(b"\x01\x00") == 0xFEFF


def test_known_ipv4_header() -> None:
    # A widely used worked example: 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
    raw = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    h = parse(raw + bytes(0x73 - 20)).ip
    assert ip_header_checksum(h) == 0xB861
    assert checksums_ok(Packet(replace(h, checksum=0xB861), None, b""))["ip"]
    assert not checksums_ok(Packet(replace(h, checksum=0xB862), None, b""))["ip"]


def test_against_scapy() -> None:
    """scapy computes checksums its own way; ours must agree on the same bytes."""
    import scapy.all as scapy  # slow to import: only here
    cases = [
        scapy.IP(src="192.0.2.10", dst="198.51.100.2", id=7, ttl=63)
        / scapy.TCP(sport=33000, dport=80, flags="S", seq=1234, options=[("MSS", 1460)]),
        scapy.IP(src="10.0.0.2", dst="10.0.0.1") / scapy.UDP(sport=37611, dport=9999) / b"hello",
        scapy.IP(src="192.0.2.10", dst="198.51.100.2") / scapy.ICMP(type=8, id=19021, seq=1)
        / b"abcdefgh",
        scapy.IP(src="198.51.100.2", dst="198.51.100.1", options=[scapy.IPOption_RR()])
        / scapy.UDP(sport=1, dport=2) / bytes(11),
    ]
    for case in cases:
        raw = bytes(case)
        pkt = parse(raw)
        assert pkt.to_bytes() == raw
        assert checksums_ok(pkt) == {"ip": True, "l4": True}
        assert ip_header_checksum(pkt.ip) == pkt.ip.checksum
        assert pkt.l4 is not None
        assert l4_checksum(pkt) == pkt.l4.checksum
        assert with_fresh_checksums(pkt) == pkt


@given(any_packets())
def test_fresh_checksums_verify(pkt: Packet) -> None:
    assert checksums_ok(pkt) == {"ip": True, "l4": True}
    assert parse(pkt.to_bytes()) == pkt


@given(st.one_of(tcp_packets(), udp_packets(zero_checksum=False), icmp_packets()),
       st.integers(0, 15))
def test_a_flipped_bit_is_detected(pkt: Packet, bit: int) -> None:
    assert pkt.l4 is not None
    broken = replace(pkt, l4=replace(pkt.l4, checksum=pkt.l4.checksum ^ (1 << bit)))
    assert checksums_ok(broken)["l4"] is False
    broken_ip = replace(pkt, ip=replace(pkt.ip, ttl=pkt.ip.ttl ^ 1))
    assert checksums_ok(broken_ip)["ip"] is False


def test_udp_checksum_zero_means_none() -> None:
    ip = IPv4Header(IPv4Address("10.0.0.2"), IPv4Address("10.0.0.1"), Proto.UDP,
                    total_length=28)
    pkt = Packet(ip, UdpHeader(1, 2, 8, 0))
    assert checksums_ok(pkt)["l4"]
    assert with_fresh_checksums(pkt).udp.checksum != 0  # building a packet does fill it in


def test_udp_computed_zero_is_stored_as_ffff() -> None:
    """CSUM_MANGLED_0: choose two payload bytes so that the sum comes out as 0xFFFF."""
    base = with_fresh_checksums(Packet(
        IPv4Header(IPv4Address("10.0.0.2"), IPv4Address("10.0.0.1"), Proto.UDP),
        UdpHeader(40000, 53), b"\0\0"), lengths=True)
    # With the payload word w added, the complement of the sum becomes base - w: pick w = base.
    assert isinstance(base.l4, UdpHeader)
    pkt = with_fresh_checksums(replace(base, payload=struct.pack("!H", base.l4.checksum)))
    assert isinstance(pkt.l4, UdpHeader)
    assert pkt.l4.checksum == CSUM_MANGLED_0
    assert checksums_ok(pkt)["l4"]


def test_fresh_lengths() -> None:
    pkt = Packet(IPv4Header(IPv4Address("1.2.3.4"), IPv4Address("5.6.7.8"), Proto.UDP),
                 UdpHeader(1, 2), b"12345")
    fresh = with_fresh_checksums(pkt, lengths=True)
    assert fresh.ip.total_length == 33
    assert isinstance(fresh.l4, UdpHeader)
    assert fresh.l4.length == 13
    assert with_fresh_checksums(pkt).ip.total_length == 0  # lengths only when asked


def test_no_checksum_for_unknown_protocols() -> None:
    pkt = Packet(IPv4Header(IPv4Address("1.2.3.4"), IPv4Address("5.6.7.8"), 47), None, b"x")
    with pytest.raises(ValueError, match="no checksum"):
        l4_checksum(pkt)
    assert checksums_ok(with_fresh_checksums(pkt, lengths=True)) == {"ip": True, "l4": True}


words16 = st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=30)


@given(words16, st.data())
def test_csum_replace2_equals_full_recompute(words: list[int], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(words) - 1))
    new = data.draw(st.integers(0, 0xFFFF))
    before = internet_checksum(struct.pack(f"!{len(words)}H", *words))
    after_words = words[:i] + [new] + words[i + 1:]
    after = internet_checksum(struct.pack(f"!{len(words)}H", *after_words))
    if any(after_words):  # an all-zero message is the one's complement "negative zero" case
        assert csum_replace2(before, words[i], new) == after
        assert inet_proto_csum_replace2(before, words[i], new, pseudohdr=False) == after


@given(words16, st.data())
def test_csum_replace4_equals_full_recompute(words: list[int], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(words) - 2))
    new = data.draw(st.integers(0, 2**32 - 1))
    old = (words[i] << 16) | words[i + 1]
    before = internet_checksum(struct.pack(f"!{len(words)}H", *words))
    after_words = words[:i] + [new >> 16, new & 0xFFFF] + words[i + 2:]
    after = internet_checksum(struct.pack(f"!{len(after_words)}H", *after_words))
    if any(after_words):
        assert csum_replace4(before, old, new) == after
        assert inet_proto_csum_replace4(before, old, new, pseudohdr=True) == after


def test_incremental_carries_an_existing_error() -> None:
    """A wrong checksum stays exactly as wrong: NAT adjusts, it does not repair."""
    words = [0x4500, 0x0054, 0x1234, 0xC0A8, 0x0001]
    good = internet_checksum(struct.pack("!5H", *words))
    bad = good ^ 0x0F0F
    new_good = csum_replace4(good, 0x12340000 | 0xC0A8, 0x0A000001)
    new_bad = csum_replace4(bad, 0x12340000 | 0xC0A8, 0x0A000001)
    m = 0xFFFF
    assert ((~new_bad & m) - (~new_good & m)) % m == ((~bad & m) - (~good & m)) % m


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF))
def test_partial_checksum_only_follows_the_pseudo_header(old: int, new: int, seed: int) -> None:
    """CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum; an address change moves
    it like a sum, a port change leaves it alone (the NIC sums the L4 header later)."""
    pseudo = struct.pack("!IIBBH", old, 0x0A000001, 0, 6, 20 + seed % 1000)
    moved = struct.pack("!IIBBH", new, 0x0A000001, 0, 6, 20 + seed % 1000)
    field = ones_sum(pseudo)
    assert inet_proto_csum_replace4(field, old, new, pseudohdr=True, partial=True) \
        == ones_sum(moved)
    assert inet_proto_csum_replace2(field, 1, 2, pseudohdr=False, partial=True) == field
