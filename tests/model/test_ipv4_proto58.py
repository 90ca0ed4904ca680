"""IPv4 packets with protocol 58 (IPPROTO_ICMPV6) are never tracked, as on the kernel.

The kernel picks the ICMPv6 tracker by the protocol number alone (nf_ct_l4proto_find,
nf_ct_get_tuple), also for IPv4: a header shorter than struct icmp6hdr (8 bytes) has no tuple,
and nf_conntrack_icmpv6_packet refuses a new entry when the hook's family is not IPv6. So no
entry, the packet goes on INVALID and is not NATed. Shown on the kernel by
experiments/specs/ipv4-proto58.toml (MATCH on iptables, iptables-legacy and nft): its final
`conntrack -L` holds only the ping's
`icmp     1 29 src=192.168.1.8 dst=203.0.113.10 type=8 code=0 id=4660 src=203.0.113.10
dst=203.0.113.1 type=0 code=0 id=4660 mark=0 use=1`, and the event log has no protocol-58 NEW.

Found by hypothesis (test_bad_input.py::test_the_modelled_gateway_takes_any_bytes): the
model made an `icmpv6 58 600 ...` entry with IPv4 addresses that nat/listing.py then refused.
"""

from __future__ import annotations

import struct
from functools import cache
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from ct_helpers import CLIENT, SERVER, Gateway, icmp_error
from ct_helpers import generic as generic_packet

from experiments.library import builtin_spec_paths
from experiments.model_config import model_config
from experiments.spec import Spec, load_spec
from nat.checksum import with_fresh_checksums
from nat.hooks import Hook
from nat.listing import ListingError, parse_line, parse_pattern, render
from nat.packet import IPv4Header, Packet, parse
from nat.pipeline import Gateway as ModelGateway
from nat.pipeline import GatewayConfig
from nat.status import CtInfo
from nat.tuple import ICMPV6

HYPOTHESIS_EXAMPLE = b"E\x00\x00\x14\x00\x00\x00\x00\x00:\x00\x00\x00\x00\x00\x00\x7f\x00\x00\x00"
"""The failing example: a bare 20-byte header, protocol 58, 0.0.0.0 -> 127.0.0.0."""

LAPTOP = IPv4Address("192.168.1.8")
DESKTOP = IPv4Address("203.0.113.10")
SPEC = Path(__file__).parents[2] / "experiments" / "specs" / "ipv4-proto58.toml"


def proto58(src: IPv4Address, dst: IPv4Address, l4: bytes) -> Packet:
    return with_fresh_checksums(Packet(IPv4Header(src, dst, ICMPV6), None, l4), lengths=True)


def echo6(type_: int = 128, id_: int = 0x1234, seq: int = 1) -> bytes:
    """struct icmp6hdr of an echo request (128) / reply (129); checksum left 0."""
    return struct.pack("!BBHHH", type_, 0, 0, id_, seq)


@pytest.mark.parametrize("l4", [b"", b"\x80\x00\x00", echo6(128), echo6(129), echo6(0),
                                echo6(139), echo6(128) + b"payload"],
                         ids=["none", "short", "echo-request", "echo-reply", "type0",
                              "ni-query", "echo-with-data"])
@pytest.mark.parametrize("hook", [Hook.PRE_ROUTING, Hook.LOCAL_OUT])
def test_never_tracked(l4: bytes, hook: Hook) -> None:
    gw = Gateway()
    for now, (src, dst) in enumerate([(CLIENT, SERVER), (SERVER, CLIENT), (CLIENT, SERVER)]):
        res = gw.send(proto58(src, dst, l4), float(now), hook=hook)
        assert res.conn is None and res.ctinfo is CtInfo.INVALID and res.verdict == "ACCEPT"
    assert len(gw.table) == 0


def test_other_unknown_protocols_stay_generic() -> None:
    """Only 58 is special: 59 (no next header) is tracked by the generic tracker."""
    gw = Gateway()
    gw.send(generic_packet(CLIENT, SERVER, 59), 0.0)
    assert render(gw.only(0.0)).startswith("unknown  59 600 ")


def test_icmp_error_quoting_protocol_58_is_invalid() -> None:
    gw = Gateway()
    err = icmp_error(SERVER, CLIENT, proto58(CLIENT, SERVER, echo6()), type_=3, code=2)
    res = gw.send(err, 0.0)
    assert res.conn is None and res.ctinfo is CtInfo.INVALID
    assert len(gw.table) == 0


@cache
def _configs() -> list[tuple[Spec, GatewayConfig]]:
    out = []
    for path in builtin_spec_paths():
        spec = load_spec(path)
        out.append((spec, model_config(spec, "6.18.0", {})))
    return out


def test_the_hypothesis_example_makes_no_entry_on_any_library_gateway() -> None:
    pkt = parse(HYPOTHESIS_EXAMPLE)
    for spec, config in _configs():
        ifaces = [i.name for i in spec.topology.gateway_host.interfaces]
        for iface in [*ifaces, None]:
            gw = ModelGateway(config)
            journey = gw.receive(pkt, iface, 0.0) if iface else gw.send_local(pkt, 0.0)
            assert journey.entry is None, (spec.name, iface)
            assert gw.entries(0.0) == [], (spec.name, iface)


def test_masquerade_leaves_protocol_58_alone() -> None:
    """The library spec's two packets: forwarded out wan0 with the laptop's own source."""
    spec = load_spec(SPEC)
    assert SPEC in builtin_spec_paths()
    gw = ModelGateway(model_config(spec, "6.18.0", {}))
    for l4 in (echo6(), b""):
        pkt = proto58(LAPTOP, DESKTOP, l4)
        journey = gw.receive(pkt, "lan0", 1.0)
        assert journey.verdict == "ACCEPT" and journey.out_iface == "wan0"
        assert journey.packet_out is not None
        assert journey.packet_out.ip.src == LAPTOP and journey.packet_out.ip.dst == DESKTOP
        assert journey.entry is None
    assert gw.entries(1.0) == []


def test_listing_refuses_an_ipv4_icmpv6_line_and_says_why() -> None:
    line = ("icmpv6   58 600 src=0.0.0.0 dst=127.0.0.0 [UNREPLIED] src=127.0.0.0 dst=0.0.0.0 "
            "mark=0 use=1")
    for read in (parse_line, parse_pattern):
        with pytest.raises(ListingError, match="tracked for IPv6 only"):
            read(line)
