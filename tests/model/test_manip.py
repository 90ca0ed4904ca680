"""NAT header rewrite: incremental checksums equal a full recompute, ICMP errors translate back.

The property tests state the kernel's claim in one line each: after nf_nat_manip_pkt the packet
is byte for byte what you would get by building the rewritten packet from scratch, with two
spelled-out exceptions (a UDP checksum of 0 stays 0; an all-zero ICMP message, the one's
complement "negative zero", cannot occur for a query with a non-zero id/sequence/payload and is
excluded). And an ICMP error about a translated packet, translated back, is exactly the error
the untranslated packet would have caused.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from packet_strategies import (
    ICMP_ERRORS,
    addresses,
    generic_packets,
    icmp_packets,
    ports,
    tcp_packets,
    tuples,
    udp_packets,
)

from nat.checksum import CSUM_MANGLED_0, checksums_ok, with_fresh_checksums
from nat.extract import get_tuple, icmp_error_inner
from nat.manip import ICMP_QUERY_TYPES, ManipError, icmp_reply_translation, manip_pkt
from nat.maniptype import ManipType
from nat.packet import IcmpHeader, IPv4Header, Packet, TcpHeader, UdpHeader, parse
from nat.tuple import Proto, Tuple, invert

A = IPv4Address


def rebuilt(pkt: Packet, target: Tuple, m: ManipType) -> Packet:
    """The rewritten packet built from scratch: fields replaced, checksums recomputed."""
    ip = replace(pkt.ip, src=target.src) if m is ManipType.SRC else replace(pkt.ip, dst=target.dst)
    l4 = pkt.l4
    if isinstance(l4, TcpHeader | UdpHeader):
        l4 = replace(l4, sport=target.sport) if m is ManipType.SRC \
            else replace(l4, dport=target.dport)
    elif isinstance(l4, IcmpHeader) and l4.type in ICMP_QUERY_TYPES:
        l4 = l4.with_id(target.sport)
    fresh = with_fresh_checksums(Packet(ip, l4, pkt.payload))
    if isinstance(pkt.l4, UdpHeader) and pkt.l4.checksum == 0:
        fresh = replace(fresh, l4=replace(fresh.udp, checksum=0))   # "no checksum" stays so
    return fresh


packets_and_targets = st.one_of(tcp_packets(), udp_packets(),
                                icmp_packets(types=[0, 3, 5, 8, 9, 13, 14, 17, 18, 40]),
                                generic_packets()).flatmap(
    lambda p: st.tuples(st.just(p), tuples(proto=p.proto, invertible_only=False)))


@given(packets_and_targets, st.sampled_from(ManipType))
def test_incremental_rewrite_equals_full_recompute(case: tuple[Packet, Tuple],
                                                   m: ManipType) -> None:
    pkt, target = case
    if isinstance(pkt.l4, IcmpHeader):
        assume(any(rebuilt(pkt, target, m).l4_bytes()[4:]) or pkt.l4.type or pkt.l4.code)
    out = manip_pkt(pkt, target, m)
    assert out == rebuilt(pkt, target, m)
    assert checksums_ok(out) == {"ip": True, "l4": True}
    assert len(out.to_bytes()) == len(pkt.to_bytes())


@given(udp_packets(zero_checksum=True), tuples(proto=Proto.UDP), st.sampled_from(ManipType))
def test_udp_without_checksum_stays_without(pkt: Packet, target: Tuple, m: ManipType) -> None:
    out = manip_pkt(pkt, target, m)
    assert out.udp.checksum == 0
    assert out.ip.checksum == with_fresh_checksums(out).ip.checksum


def test_udp_sum_of_zero_is_stored_as_ffff() -> None:
    """The one UDP case where "incremental = recompute" needs care: a result of 0 would mean
    "no checksum", so __udp_manip_pkt stores CSUM_MANGLED_0 (0xFFFF), which is also what a
    sender computes (RFC 768). Build the rewritten packet so that its checksum is exactly
    that, then check the incremental path lands on it from the unrewritten one."""
    target = Tuple(Proto.UDP, A("198.51.100.1"), A("198.51.100.2"), 40000, 5000)
    after = with_fresh_checksums(Packet(
        IPv4Header(target.src, target.dst, Proto.UDP), UdpHeader(40000, 5000), b"\0\0"),
        lengths=True)
    after = with_fresh_checksums(replace(after, payload=after.udp.checksum.to_bytes(2, "big")))
    assert after.udp.checksum == CSUM_MANGLED_0
    before = with_fresh_checksums(Packet(replace(after.ip, src=A("192.0.2.10")),
                                         replace(after.udp, sport=1234), after.payload))
    assert before.udp.checksum not in (0, CSUM_MANGLED_0)
    assert manip_pkt(before, target, ManipType.SRC) == after


def udp(src: str, sport: int, dst: str, dport: int, payload: bytes = b"ping") -> Packet:
    return with_fresh_checksums(Packet(IPv4Header(A(src), A(dst), Proto.UDP, ident=1),
                                       UdpHeader(sport, dport), payload), lengths=True)


def test_dnat_then_reply_snat_as_in_the_machine_notes() -> None:
    """DNAT 10.0.0.1:9999 -> 192.168.1.8 (machine notes): the request's destination, then the
    reply's source are rewritten; the reply tuple is what `conntrack -L` showed."""
    orig = Tuple(Proto.UDP, A("10.0.0.2"), A("10.0.0.1"), 37611, 9999)
    reply = Tuple(Proto.UDP, A("192.168.1.8"), A("10.0.0.2"), 9999, 37611)
    request = udp("10.0.0.2", 37611, "10.0.0.1", 9999)
    out = manip_pkt(request, invert(reply), ManipType.DST)
    assert (out.ip.src, out.ip.dst, out.udp.sport, out.udp.dport) == \
        (A("10.0.0.2"), A("192.168.1.8"), 37611, 9999)
    answer = udp("192.168.1.8", 9999, "10.0.0.2", 37611, b"pong")
    back = manip_pkt(answer, invert(orig), ManipType.SRC)
    assert back == udp("10.0.0.1", 9999, "10.0.0.2", 37611, b"pong")


def test_icmp_id_comes_from_target_sport_for_both_manip_types() -> None:
    echo = with_fresh_checksums(Packet(IPv4Header(A("192.0.2.10"), A("198.51.100.2"),
                                                  Proto.ICMP),
                                       IcmpHeader(8, 0, 0, (777 << 16) | 1), b"x" * 8),
                                lengths=True)
    target = Tuple.icmp(A("198.51.100.1"), A("198.51.100.9"), 8, 0, 43280)
    for m in ManipType:
        out = manip_pkt(echo, target, m)
        assert out.icmp.id == 43280
        assert out.icmp.seq == 1
        assert checksums_ok(out)["l4"]
    assert manip_pkt(echo, target, ManipType.SRC).ip.src == A("198.51.100.1")
    assert manip_pkt(echo, target, ManipType.DST).ip.dst == A("198.51.100.9")


def test_generic_protocol_only_addresses_change() -> None:
    gre = with_fresh_checksums(Packet(IPv4Header(A("10.0.0.2"), A("10.0.0.1"), 47), None,
                                      bytes(range(12))), lengths=True)
    out = manip_pkt(gre, Tuple(47, A("203.0.113.5"), A("10.0.0.1")), ManipType.SRC)
    assert out.payload == gre.payload
    assert out.ip.src == A("203.0.113.5")
    assert checksums_ok(out)["ip"]


def quoted(about: Packet, keep: int) -> bytes:
    return about.to_bytes()[:keep]


def icmp_error(src: IPv4Address, dst: IPv4Address, type_: int, code: int, quote: bytes,
               ttl: int = 64) -> Packet:
    return with_fresh_checksums(Packet(IPv4Header(src, dst, Proto.ICMP, ttl=ttl),
                                       IcmpHeader(type_, code), quote), lengths=True)


def test_quoted_tcp_cut_to_8_bytes_changes_only_the_port() -> None:
    tcp = with_fresh_checksums(Packet(IPv4Header(A("192.0.2.10"), A("198.51.100.2"),
                                                 Proto.TCP),
                                      TcpHeader(33000, 80, 1, 0, 0x02)), lengths=True)
    inner = parse(quoted(tcp, 28), quoted=True)
    assert inner.l4 is None                         # 8 bytes of TCP: no header object
    target = Tuple(Proto.TCP, A("198.51.100.1"), A("198.51.100.2"), 40000, 80)
    out = manip_pkt(inner, target, ManipType.SRC)
    assert out.payload[:2] == (40000).to_bytes(2, "big")
    assert out.payload[2:] == inner.payload[2:]
    assert out.ip.src == A("198.51.100.1")
    assert checksums_ok(out)["ip"]


def test_quoted_tcp_with_20_bytes_but_cut_options_gets_its_checksum_adjusted() -> None:
    """tcp_manip_pkt looks at the bytes present (skb->len), not at the data offset: a quote
    holding the fixed 20-byte header but not all options still has its checksum updated."""
    tcp = with_fresh_checksums(Packet(IPv4Header(A("192.0.2.10"), A("198.51.100.2"),
                                                 Proto.TCP),
                                      TcpHeader(33000, 80, 1, 0, 0x02,
                                                options=b"\x02\x04\x05\xb4" * 2)),
                               lengths=True)
    inner = parse(quoted(tcp, 20 + 24), quoted=True)
    assert inner.l4 is None
    target = Tuple(Proto.TCP, A("198.51.100.1"), A("198.51.100.2"), 40000, 80)
    out = manip_pkt(inner, target, ManipType.SRC)
    full = manip_pkt(tcp, target, ManipType.SRC)
    assert out.to_bytes()[20:44] == full.to_bytes()[20:44]
    assert out.to_bytes()[36:38] != inner.to_bytes()[36:38]   # the checksum moved


def test_quoted_tcp_with_19_bytes_keeps_its_checksum() -> None:
    """18 or 19 bytes of quoted TCP include the checksum field but not a whole header: the
    kernel changes the port and leaves the checksum as it was."""
    tcp = with_fresh_checksums(Packet(IPv4Header(A("192.0.2.10"), A("198.51.100.2"),
                                                 Proto.TCP),
                                      TcpHeader(33000, 80, 1, 0, 0x02)), lengths=True)
    inner = parse(quoted(tcp, 20 + 19), quoted=True)
    target = Tuple(Proto.TCP, A("198.51.100.1"), A("198.51.100.2"), 40000, 80)
    out = manip_pkt(inner, target, ManipType.SRC).to_bytes()
    assert out[20:22] == (40000).to_bytes(2, "big")
    assert out[36:38] == tcp.to_bytes()[36:38]
    assert out[22:] == inner.to_bytes()[22:]


def test_quote_ending_after_the_first_checksum_byte_keeps_its_length() -> None:
    """Hypothesis' example: an ICMP error (65 bytes) quoting 37 bytes of a DNATed TCP segment,
    20 of IP and 17 of TCP, the quote ending after the first byte of the TCP checksum (0x0f of
    0x0fbc). tcp_manip_pkt sees skb->len < hdroff + 20, rewrites only the port, and nothing in
    nf_nat_icmp_reply_translation changes the length: the error comes out 65 bytes long, the
    quote still ending in that single 0x0f."""
    sent = bytes.fromhex(                     # the segment as the client sent it (81 bytes)
        "45000051000000000106b9a80000000000000000"
        "000000000000000000000000f00000000fbc0000" + "00" * 41)
    pkt = parse(sent)
    orig = get_tuple(pkt)
    assert orig is not None
    forwarded = manip_pkt(pkt, orig.with_dst(A("0.0.0.0"), 0), ManipType.DST)
    error = bytes.fromhex(
        "4500004100004000010179bd0000000000000000"       # outer IPv4, total length 65
        "0300fdfe00000000"                               # port unreachable (type 3, code 0)
        "45000051000000000106b9a80000000000000000"       # quoted IPv4 header
        "000000000000000000000000f00000000f")            # 17 bytes of TCP: ... window, 0x0f
    assert error[28:] == forwarded.to_bytes()[:37]
    out = icmp_reply_translation(parse(error), orig, ManipType.DST, invert(orig), ManipType.SRC)
    assert out.ip.total_length == 65
    assert out.to_bytes() == error                   # NAT to the same address and port
    assert checksums_ok(out)["ip"]
    # The same segment DNATed for real (to 10.0.0.8:8080): the error about it comes back with
    # the original address and port, the lone checksum byte as the forwarded segment had it.
    forwarded = manip_pkt(pkt, orig.with_dst(A("10.0.0.8"), 8080), ManipType.DST)
    assert forwarded.to_bytes()[36] != sent[36]
    error2 = icmp_error(A("10.0.0.8"), A("0.0.0.0"), 3, 0, forwarded.to_bytes()[:37], 1)
    out = icmp_reply_translation(error2, orig, ManipType.DST, invert(orig), ManipType.SRC)
    assert out.ip.total_length == 65
    assert out.payload == sent[:36] + forwarded.to_bytes()[36:37]
    assert checksums_ok(out)["ip"]


def test_too_short_for_the_rewrite_raises() -> None:
    inner = parse(bytes.fromhex("4500001c0000400040110000c0000202c6336402") + b"\x9c\x40",
                  quoted=True)
    target = Tuple(Proto.UDP, A("198.51.100.1"), A("198.51.100.2"), 1, 2)
    with pytest.raises(ManipError, match="UDP header"):
        manip_pkt(inner, target, ManipType.SRC)
    error = icmp_error(A("198.51.100.2"), A("198.51.100.1"), 3, 3, b"\x45" + bytes(10))
    with pytest.raises(ManipError, match="quoted IPv4 header"):
        icmp_reply_translation(error, target, ManipType.SRC, invert(target), ManipType.DST)


def test_port_unreachable_for_a_masqueraded_flow() -> None:
    """kernel-semantics 5.4 (live): the server's port unreachable about a masqueraded UDP flow
    reaches the client with outer dst 192.0.2.10, inner src 192.0.2.10:49000, the inner UDP
    checksum exactly the client's original, and a valid ICMP checksum."""
    orig = Tuple(Proto.UDP, A("192.0.2.10"), A("198.51.100.2"), 49000, 5000)
    reply = Tuple(Proto.UDP, A("198.51.100.2"), A("198.51.100.1"), 5000, 49000)
    sent = udp("192.0.2.10", 49000, "198.51.100.2", 5000)
    on_wire = manip_pkt(sent, invert(reply), ManipType.SRC)           # POST_ROUTING SNAT
    assert on_wire.ip.src == A("198.51.100.1")
    error = icmp_error(A("198.51.100.2"), A("198.51.100.1"), 3, 3, on_wire.to_bytes())
    # At PRE_ROUTING (DST manip), found via the reply tuple: inner gets SRC manip towards
    # tuple[ORIGINAL], the outer DST manip towards invert(tuple[ORIGINAL]).
    out = icmp_reply_translation(error, orig, ManipType.SRC, invert(orig), ManipType.DST)
    assert out == icmp_error(A("198.51.100.2"), A("192.0.2.10"), 3, 3, sent.to_bytes())
    inner = icmp_error_inner(out)
    assert inner is not None
    assert (inner.ip.src, inner.udp.sport, inner.udp.checksum) == \
        (A("192.0.2.10"), 49000, sent.udp.checksum)
    assert checksums_ok(out) == {"ip": True, "l4": True}


flows = st.one_of(tcp_packets(), udp_packets(), icmp_packets(types=[8, 13, 15, 17]))


@given(flows, addresses, ports, st.booleans(), st.integers(0, 2000), st.sampled_from(ICMP_ERRORS),
       st.integers(0, 255), st.integers(1, 255))
def test_icmp_error_about_a_translated_packet_translates_back(
        pkt: Packet, nat_addr: IPv4Address, nat_key: int, snat: bool, cut: int,
        err_type: int, err_code: int, ttl: int) -> None:
    orig = get_tuple(pkt)
    assert orig is not None
    if snat:   # SNAT/MASQUERADE at POST_ROUTING; the error comes back to the NAT address
        reply = invert(orig.with_src(nat_addr, nat_key))
        forwarded = manip_pkt(pkt, invert(reply), ManipType.SRC)
        reporter, inner_m, outer_m = orig.dst, ManipType.SRC, ManipType.DST
        expected_src, expected_dst = reporter, orig.src
    else:      # DNAT at PRE_ROUTING; the new destination reports to the client
        key = nat_key if orig.has_ports else orig.dport
        reply = invert(orig.with_dst(nat_addr, key))
        forwarded = manip_pkt(pkt, invert(reply), ManipType.DST)
        reporter, inner_m, outer_m = nat_addr, ManipType.DST, ManipType.SRC
        expected_src, expected_dst = orig.dst, orig.src
    keep = max(pkt.ip.header_length + 8, len(pkt.to_bytes()) - cut)
    error = icmp_error(reporter, forwarded.ip.src, err_type, err_code,
                       quoted(forwarded, keep), ttl)
    # The error travels in the reply direction: the inner packet gets the opposite manip
    # towards tuple[ORIGINAL], the outer header the hook's manip towards its inverse.
    out = icmp_reply_translation(error, orig, inner_m, invert(orig), outer_m)
    expected_quote = bytearray(quoted(pkt, keep))
    tcp_bytes = keep - pkt.ip.header_length
    if pkt.proto == Proto.TCP and 17 <= tcp_bytes < 20:
        # The quote holds the TCP checksum (or its first byte) but not the whole 20-byte
        # header: tcp_manip_pkt changes only the port, so the checksum stays as the
        # translated packet had it.
        # With 17 bytes only the checksum's first byte is quoted: the slice stops at the quote's
        # end (NAT rewrites in place, the error keeps its length).
        at = pkt.ip.header_length + 16
        end = min(at + 2, keep)
        expected_quote[at:end] = forwarded.to_bytes()[at:end]
    assert out == icmp_error(expected_src, expected_dst, err_type, err_code,
                             bytes(expected_quote), ttl)
