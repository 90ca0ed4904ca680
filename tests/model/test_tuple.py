"""Tuples: nf_ct_invert_tuple, and the tuple of an answer being the inverse of the request's."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packet_strategies import ICMP_QUERY, addresses, icmp_packets, tcp_packets, tuples, udp_packets

from nat.checksum import with_fresh_checksums
from nat.extract import get_tuple
from nat.packet import Packet, TcpHeader, UdpHeader
from nat.tuple import ICMP_INVERSE, NotInvertible, Proto, Tuple, invert, invertible

A = IPv4Address


@given(tuples())
def test_invert_twice_is_identity(t: Tuple) -> None:
    assert invertible(t)
    assert invert(invert(t)) == t


@given(st.sampled_from([6, 17, 47, 132, 253]), addresses, addresses, st.integers(0, 65535),
       st.integers(0, 65535))
def test_non_icmp_swaps_addresses_and_keys(proto: int, a: IPv4Address, b: IPv4Address,
                                           k1: int, k2: int) -> None:
    assert invert(Tuple(proto, a, b, k1, k2)) == Tuple(proto, b, a, k2, k1)


def test_icmp_request_reply_pairs() -> None:
    pairs = {(8, 0), (13, 14), (15, 16), (17, 18)}
    assert set(ICMP_INVERSE.items()) == pairs | {(b, a) for a, b in pairs}
    for req, rep in pairs:
        t = Tuple.icmp(A("192.0.2.10"), A("198.51.100.2"), req, 0, 19021)
        assert invert(t) == Tuple.icmp(A("198.51.100.2"), A("192.0.2.10"), rep, 0, 19021)


@pytest.mark.parametrize("type_", [t for t in range(256) if t not in ICMP_QUERY])
def test_other_icmp_types_cannot_be_inverted(type_: int) -> None:
    t = Tuple.icmp(A("1.1.1.1"), A("2.2.2.2"), type_, 0, 1)
    assert not invertible(t)
    with pytest.raises(NotInvertible):
        invert(t)


@given(st.one_of(tcp_packets(), udp_packets()))
def test_answer_tuple_is_inverse_of_request(pkt: Packet) -> None:
    l4 = pkt.l4
    assert isinstance(l4, TcpHeader | UdpHeader)
    answer = with_fresh_checksums(Packet(replace(pkt.ip, src=pkt.ip.dst, dst=pkt.ip.src),
                                         replace(l4, sport=l4.dport, dport=l4.sport),
                                         pkt.payload))
    request_tuple = get_tuple(pkt)
    assert request_tuple is not None
    assert get_tuple(answer) == invert(request_tuple)


@given(icmp_packets(types=[8, 13, 15, 17]))
def test_echo_reply_tuple_is_inverse_of_request(pkt: Packet) -> None:
    reply = with_fresh_checksums(Packet(replace(pkt.ip, src=pkt.ip.dst, dst=pkt.ip.src),
                                        replace(pkt.icmp, type=ICMP_INVERSE[pkt.icmp.type]),
                                        pkt.payload))
    request_tuple = get_tuple(pkt)
    assert request_tuple is not None
    assert get_tuple(reply) == invert(request_tuple)


def test_with_src_and_with_dst() -> None:
    t = Tuple(Proto.UDP, A("10.0.0.2"), A("10.0.0.1"), 37611, 9999)
    assert t.with_src(A("203.0.113.1")) == Tuple(Proto.UDP, A("203.0.113.1"), A("10.0.0.1"),
                                                 37611, 9999)
    assert t.with_dst(A("192.168.1.8"), 80).dport == 80
    icmp = Tuple.icmp(A("1.1.1.1"), A("2.2.2.2"), 8, 0, 5)
    assert icmp.with_dst(A("3.3.3.3"), 99) == Tuple.icmp(A("1.1.1.1"), A("3.3.3.3"), 8, 0, 5)
    assert icmp.with_src(A("4.4.4.4"), 6).icmp_id == 6
