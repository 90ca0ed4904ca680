"""Golden capture: the model's rewrite of every packet equals what Linux 6.18 put on the wire.

tests/model/kernel_captures/snat-udp-tcp-icmp/ holds tcpdump captures taken on both sides of a
real SNAT gateway (see capture.sh there for how), and the gateway's `conntrack -L`. Every
packet the client sent is rewritten by the model (POST_ROUTING, SRC manip towards
invert(reply)) and compared byte for byte with the copy the server received; every packet the
server sent (replies, and ICMP port unreachables quoting a translated UDP datagram, one of
them without a UDP checksum) is translated back (PRE_ROUTING, DST manip towards invert(orig),
or nf_nat_icmp_reply_translation) and compared with what the client received. Forwarding also
lowers the TTL by one (ip_decrease_ttl); that is done here with a fresh IP checksum, which is
the same value the kernel's incremental update gives.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dpkt

from nat.checksum import checksums_ok, ip_header_checksum
from nat.entry import Entry
from nat.extract import get_tuple, inner_tuple, is_icmp_error
from nat.listing import parse_listing
from nat.manip import icmp_reply_translation, manip_pkt
from nat.maniptype import ManipType
from nat.packet import Packet, parse
from nat.tuple import Tuple, invert

CAPTURE = Path(__file__).parent / "kernel_captures" / "snat-udp-tcp-icmp"
CLIENT, SERVER = "192.0.2.10", "198.51.100.2"


def load(name: str) -> list[Packet]:
    packets = []
    with open(CAPTURE / name, "rb") as f:
        for _ts, frame in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(frame)
            if eth.type == dpkt.ethernet.ETH_TYPE_IP:
                packets.append(parse(bytes(eth.data)))
    return packets


def forwarded(p: Packet) -> Packet:
    ip = replace(p.ip, ttl=p.ip.ttl - 1)
    return replace(p, ip=replace(ip, checksum=ip_header_checksum(ip)))


def entry_for(entries: list[Entry], t: Tuple) -> tuple[Entry, bool]:
    """The entry and whether `t` is its original direction."""
    for e in entries:
        if t in (e.orig, e.reply):
            return e, t == e.orig
    raise AssertionError(f"no conntrack entry for {t}")


def model_forward(entries: list[Entry], p: Packet) -> Packet:
    if is_icmp_error(p):
        inner = inner_tuple(p)
        assert inner is not None
        e, original = entry_for(entries, invert(inner))
        assert not original
        return forwarded(icmp_reply_translation(p, e.orig, ManipType.SRC, invert(e.orig),
                                                ManipType.DST))
    t = get_tuple(p)
    assert t is not None
    e, original = entry_for(entries, t)
    if original:
        return manip_pkt(forwarded(p), invert(e.reply), ManipType.SRC)
    return forwarded(manip_pkt(p, invert(e.orig), ManipType.DST))


def test_every_forwarded_packet_is_byte_exact() -> None:
    entries = parse_listing((CAPTURE / "conntrack.txt").read_text())
    client, server = load("client.pcap"), load("server.pcap")
    pairs = []   # (as sent, as received on the other side): same IP id and protocol
    for sender, receiver, me, peer in ((client, server, CLIENT, SERVER),
                                       (server, client, SERVER, CLIENT)):
        for sent in sender:
            if str(sent.ip.src) == me:
                got = [g for g in receiver if str(g.ip.src) != peer
                       and (g.ip.ident, g.ip.proto) == (sent.ip.ident, sent.ip.proto)]
                assert len(got) == 1, sent.summary()
                pairs.append((sent, got[0]))
    assert len(pairs) == len(client) == len(server) == 15
    kinds = {(p.proto, is_icmp_error(p)) for p, _ in pairs}
    assert kinds == {(1, False), (1, True), (6, False), (17, False)}
    assert any(p.proto == 17 and p.udp.checksum == 0 for p, _ in pairs)
    for sent, got in pairs:
        assert checksums_ok(got) == {"ip": True, "l4": True}
        assert model_forward(entries, sent).to_bytes() == got.to_bytes(), sent.summary()
