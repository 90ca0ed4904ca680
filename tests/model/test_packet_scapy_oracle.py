"""scapy as an independent oracle for nat/packet.py, nat/checksum.py and experiments/craft.py.

Two builders and two dissectors written apart must agree: packets built by the model
(`packet_strategies`, `experiments.craft`) dissect in scapy to the same fields, and scapy,
asked to compute every checksum itself, produces the very same bytes; packets built by scapy
parse in `nat.packet` to the same fields, with checksums the model verifies. scapy stays in
the tests (a `dev` dependency): the model itself imports nothing of it.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from ipaddress import IPv4Address
from types import ModuleType
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from packet_strategies import addresses, icmp_packets, ports, tcp_packets, u16, udp_packets

from experiments import craft
from nat.checksum import checksums_ok, with_fresh_checksums
from nat.packet import IcmpHeader, Packet, TcpHeader, UdpHeader, parse
from nat.tuple import Proto


@cache
def inet() -> ModuleType:
    """scapy's IPv4 layers (imported once, on first use: scapy is slow to import)."""
    from scapy.layers import inet as layers

    return layers


def nop_options(pkt: Packet) -> Packet:
    """The same packet with its IP options replaced by as many NOPs: random option bytes may
    hold a source route, with which scapy checksums against the route's final address."""
    ip = replace(pkt.ip, options=b"\x01" * len(pkt.ip.options))
    return with_fresh_checksums(Packet(ip, pkt.l4, pkt.payload), lengths=True)


def model_packets() -> st.SearchStrategy[Packet]:
    # ICMP echo only: scapy reads the other query types' bodies as fixed fields (a timestamp
    # request needs 12 bytes), and random bodies would not be one; craft's test below has them.
    return st.one_of(tcp_packets(), udp_packets(), icmp_packets([0, 8])).map(nop_options)


def assert_scapy_reads(pkt: Packet) -> None:
    """scapy dissects the model's bytes to the model's fields, and recomputes its checksums."""
    layers = inet()
    raw = pkt.to_bytes()
    s = layers.IP(raw)
    ip = pkt.ip
    assert (s.version, s.ihl * 4, s.tos, s.len, s.id, s.ttl, s.proto, s.chksum) == (
        4, ip.header_length, ip.tos, ip.total_length, ip.ident, ip.ttl, ip.proto, ip.checksum)
    assert (int(s.flags) << 13) | s.frag == ip.frag
    assert (IPv4Address(s.src), IPv4Address(s.dst)) == (ip.src, ip.dst)
    l4: Any
    if isinstance(pkt.l4, TcpHeader):
        l4 = s[layers.TCP]
        t = pkt.l4
        assert (l4.sport, l4.dport, l4.seq, l4.ack, l4.window, l4.chksum, l4.urgptr) == (
            t.sport, t.dport, t.seq, t.ack, t.window, t.checksum, t.urgent)
        assert l4.dataofs * 4 == t.header_length
        # scapy: 3 reserved bits, then 9 flag bits (NS first); the model: 4 bits, 8 flags
        assert (int(l4.flags) & 0xFF, (l4.reserved << 1) | (int(l4.flags) >> 8)) == (
            t.flags, t.reserved)
        assert raw[ip.header_length + 20:ip.header_length + t.header_length] == t.options
    elif isinstance(pkt.l4, UdpHeader):
        l4 = s[layers.UDP]
        u = pkt.l4
        assert (l4.sport, l4.dport, l4.len, l4.chksum) == (u.sport, u.dport, u.length,
                                                           u.checksum)
    else:
        assert isinstance(pkt.l4, IcmpHeader)
        l4 = s[layers.ICMP]
        i = pkt.l4
        assert (l4.type, l4.code, l4.chksum) == (i.type, i.code, i.checksum)
        if i.type in (0, 8):
            assert (l4.id, l4.seq) == (i.id, i.seq)
    # scapy's checksum functions over the model's bytes, the checksum fields zeroed
    hl = ip.header_length
    assert layers.checksum(raw[:10] + b"\0\0" + raw[10 + 2:hl]) == ip.checksum
    at = {TcpHeader: 16, UdpHeader: 6, IcmpHeader: 2}[type(pkt.l4)]
    zeroed = raw[hl:hl + at] + b"\0\0" + raw[hl + at + 2:]
    if isinstance(pkt.l4, IcmpHeader):
        assert layers.checksum(zeroed) == pkt.l4.checksum
    elif not (isinstance(pkt.l4, UdpHeader) and pkt.l4.checksum == 0):   # 0: "no checksum"
        expected = layers.in4_chksum(ip.proto, s, zeroed)
        assert (expected or 0xFFFF) == pkt.l4.checksum
    # scapy building the dissected packet again gives the same bytes, and so does scapy
    # computing the cleared checksums itself. (Not with TCP options: scapy rebuilds its
    # dissected option list canonically, e.g. dropping bytes after an end-of-options.)
    if isinstance(pkt.l4, TcpHeader) and pkt.l4.options:
        return
    assert bytes(s) == raw
    s.chksum = None
    if not (isinstance(pkt.l4, UdpHeader) and pkt.l4.checksum == 0):
        l4.chksum = None
    assert bytes(s) == raw


@given(model_packets())
def test_model_built_packets_dissect_in_scapy_to_the_same_fields(pkt: Packet) -> None:
    assert_scapy_reads(pkt)


payloads = st.binary(max_size=64)
ttls = st.integers(1, 255)


@given(st.data())
def test_craft_built_packets_dissect_in_scapy_to_the_same_fields(data: st.DataObject) -> None:
    src, dst = data.draw(addresses), data.draw(addresses)
    kind = data.draw(st.sampled_from(["udp", "tcp", "icmp", "icmp_error"]))
    if kind == "udp":
        pkt = craft.udp(src, data.draw(ports), dst, data.draw(ports), data.draw(payloads),
                        ttl=data.draw(ttls), ident=data.draw(u16))
    elif kind == "tcp":
        pkt = craft.tcp(src, data.draw(ports), dst, data.draw(ports),
                        craft.tcp_flags(data.draw(st.text("FSRPAUEC", max_size=8))),
                        seq=data.draw(st.integers(0, 2**32 - 1)),
                        ack=data.draw(st.integers(0, 2**32 - 1)), window=data.draw(u16),
                        payload=data.draw(payloads), ttl=data.draw(ttls))
    elif kind == "icmp":
        type_ = data.draw(st.sampled_from([0, 8, 13, 14]))
        body = data.draw(st.binary(min_size=12, max_size=12) if type_ in (13, 14) else payloads)
        pkt = craft.icmp(src, dst, type_, 0, id_=data.draw(u16), seq=data.draw(u16),
                         payload=body)
    else:
        about = craft.udp(dst, data.draw(ports), src, data.draw(ports), data.draw(payloads))
        pkt = craft.icmp_error(src, about, 3, data.draw(st.integers(0, 15)))
    assert checksums_ok(pkt) == {"ip": True, "l4": True}
    assert_scapy_reads(pkt)


@st.composite
def scapy_packets(draw: st.DrawFn) -> tuple[Any, dict[str, int]]:
    """A packet built by scapy (checksums and lengths computed by scapy), and its fields."""
    layers = inet()
    f = {"src": draw(st.integers(0, 2**32 - 1)), "dst": draw(st.integers(0, 2**32 - 1)),
         "ttl": draw(ttls), "tos": draw(st.integers(0, 255)), "id": draw(u16),
         "df": draw(st.booleans()), "sport": draw(ports), "dport": draw(ports)}
    options = draw(st.sampled_from([[], [layers.IPOption_NOP()] * 4,
                                    [layers.IPOption_RR(routers=["192.0.2.1"])]]))
    ip = layers.IP(src=str(IPv4Address(f["src"])), dst=str(IPv4Address(f["dst"])),
                   ttl=f["ttl"], tos=f["tos"], id=f["id"], flags="DF" if f["df"] else 0,
                   options=options)
    payload = draw(payloads)
    proto = draw(st.sampled_from([Proto.TCP, Proto.UDP, Proto.ICMP]))
    f["proto"] = proto
    if proto == Proto.TCP:
        f |= {"seq": draw(st.integers(0, 2**32 - 1)), "ack": draw(st.integers(0, 2**32 - 1)),
              "flags": draw(st.integers(0, 255)), "window": draw(u16)}
        tcp_options = draw(st.sampled_from([
            [], [("MSS", 1460)], [("MSS", 536), ("NOP", None), ("WScale", 7)],
            [("SAckOK", b""), ("Timestamp", (123456, 0))]]))
        l4 = layers.TCP(sport=f["sport"], dport=f["dport"], seq=f["seq"], ack=f["ack"],
                        flags=f["flags"], window=f["window"], options=tcp_options)
    elif proto == Proto.UDP:
        l4 = layers.UDP(sport=f["sport"], dport=f["dport"])
    else:
        f |= {"type": draw(st.sampled_from([0, 8])), "code": 0}
        l4 = layers.ICMP(type=f["type"], id=f["sport"], seq=f["dport"])
    return layers.IP(bytes(ip / l4 / payload)), f


@given(scapy_packets())
def test_scapy_built_packets_parse_to_the_same_fields(case: tuple[Any, dict[str, int]]) -> None:
    s, f = case
    raw = bytes(s)
    pkt = parse(raw)
    ip = pkt.ip
    assert (int(ip.src), int(ip.dst), ip.ttl, ip.tos, ip.ident, ip.proto) == (
        f["src"], f["dst"], f["ttl"], f["tos"], f["id"], f["proto"])
    assert ip.frag == (0x4000 if f["df"] else 0)
    assert (ip.total_length, ip.checksum, ip.header_length) == (s.len, s.chksum, s.ihl * 4)
    if f["proto"] == Proto.TCP:
        t = pkt.tcp
        assert (t.sport, t.dport, t.seq, t.ack, t.flags, t.window) == (
            f["sport"], f["dport"], f["seq"], f["ack"], f["flags"], f["window"])
        assert t.checksum == s[inet().TCP].chksum
    elif f["proto"] == Proto.UDP:
        u = pkt.udp
        assert (u.sport, u.dport, u.length, u.checksum) == (
            f["sport"], f["dport"], s[inet().UDP].len, s[inet().UDP].chksum)
    else:
        i = pkt.icmp
        assert (i.type, i.code, i.id, i.seq, i.checksum) == (
            f["type"], 0, f["sport"], f["dport"], s[inet().ICMP].chksum)
    assert checksums_ok(pkt) == {"ip": True, "l4": True}
    assert with_fresh_checksums(pkt) == pkt
    assert pkt.to_bytes() == raw
