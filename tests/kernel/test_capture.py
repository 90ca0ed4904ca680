"""The gateway capture on the real kernel: order, interfaces, directions, real checksums, files.

Checksums are recomputed here from scratch (RFC 1071, with the TCP/UDP pseudo-header), not
with the model's code, so this test checks the capture and not the model.
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from scapy.utils import RawPcapNgReader

from experiments.kernel.capture import Capture, CapturedPacket, read_sll2_frames
from experiments.kernel.rules import load_rules
from experiments.kernel.traffic import Traffic
from experiments.kernel.wireshark import write_captures
from topologies.mininet_net import Network

RULES = """*nat
-A PREROUTING -i wan0 -p udp --dport 9999 -j DNAT --to-destination 192.168.1.8
-A POSTROUTING -o wan0 -j MASQUERADE
COMMIT
"""
LAPTOP = IPv4Address("192.168.1.8")
GW_LAN = IPv4Address("192.168.1.9")
GW_WAN = IPv4Address("203.0.113.1")
DESKTOP = IPv4Address("203.0.113.10")


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def checksums_verify(pkt: bytes) -> dict[str, bool]:
    """Summing a header with its checksum field gives 0 when the checksum is right."""
    ihl = (pkt[0] & 0x0F) * 4
    total_len = struct.unpack("!H", pkt[2:4])[0]
    l4 = pkt[ihl:total_len]
    result = {"ip": csum(pkt[:ihl]) == 0}
    proto = pkt[9]
    if proto in (6, 17):
        pseudo = pkt[12:20] + struct.pack("!BBH", 0, proto, len(l4))
        if proto == 17 and l4[6:8] == b"\0\0":
            result["l4"] = True   # UDP checksum 0: "none"
        else:
            result["l4"] = csum(pseudo + l4) == 0
    elif proto == 1:
        result["l4"] = csum(l4) == 0
    return result


def addrs(p: CapturedPacket) -> tuple[IPv4Address, IPv4Address]:
    return IPv4Address(p.data[12:16]), IPv4Address(p.data[16:20])


def ports(p: CapturedPacket) -> tuple[int, int]:
    ihl = (p.data[0] & 0x0F) * 4
    sport, dport = struct.unpack("!HH", p.data[ihl:ihl + 4])
    return sport, dport


@pytest.fixture(scope="module")
def traffic(home_net: Network) -> Iterator[Traffic]:
    load_rules(home_net.gateway, "iptables", RULES)
    with Traffic(home_net.hosts, home_net.topology) as tr:
        yield tr


@pytest.fixture
def capture(home_net: Network, tmp_path: Path) -> Iterator[Capture]:
    home_net.gateway.run(["conntrack", "-F"])
    cap = Capture(home_net.gateway, tmp_path / "gateway.pcap")
    cap.start()
    try:
        yield cap
    finally:
        cap.stop()


def test_dnat_exchange_in_order_with_interfaces_and_directions(
        home_net: Network, traffic: Traffic, capture: Capture) -> None:
    r = traffic.udp(0, "desktop", GW_LAN, 37611, 9999, b"hello laptop", reply=b"hello desktop",
                    listeners=["laptop"])
    assert r.completed
    capture.stop()
    udp = [p for p in capture.packets() if p.data[9] == 17]
    seen = [(p.ifname, p.direction, *addrs(p), *ports(p)) for p in udp]
    assert seen == [
        ("wan0", "in", DESKTOP, GW_LAN, 37611, 9999),
        ("lan0", "out", DESKTOP, LAPTOP, 37611, 9999),
        ("lan0", "in", LAPTOP, DESKTOP, 9999, 37611),
        ("wan0", "out", GW_LAN, DESKTOP, 9999, 37611),
    ]
    assert [p.time for p in udp] == sorted(p.time for p in udp)
    # The capture's wall clock and the agents' agree to well within a step.
    assert traffic.t0 + r.start - 0.05 < udp[0].time < traffic.t0 + r.end + 0.05
    assert {p.ifindex for p in udp if p.ifname == "lan0"} == {
        home_net.ifindex("gateway", "lan0")}
    assert {p.ifindex for p in udp if p.ifname == "wan0"} == {
        home_net.ifindex("gateway", "wan0")}
    assert capture.dropped == 0
    assert [p.to_wire(traffic.t0).iface for p in udp] == ["wan0", "lan0", "lan0", "wan0"]


def test_checksums_in_the_capture_are_real(traffic: Traffic, capture: Capture) -> None:
    assert traffic.tcp(0, "laptop", DESKTOP, 37611, 443, send=b"GET /", reply=b"200 OK",
                       close="fin", listeners=["desktop"]).completed
    assert traffic.udp(1, "laptop", DESKTOP, 40001, 5000, b"x" * 33, reply=b"y",
                       listeners=["desktop"]).completed
    assert traffic.ping(2, "laptop", DESKTOP, 99).completed
    assert traffic.udp(3, "laptop", DESKTOP, 40002, 5999, b"closed", listeners=[]).completed
    capture.stop()
    packets = capture.packets()
    protos = {p.data[9] for p in packets}
    assert protos >= {1, 6, 17}
    # Both sides of the NAT: translated packets carry recomputed, valid checksums.
    assert {p.direction for p in packets} == {"in", "out"}
    bad = [(p.ifname, p.direction, p.data.hex()) for p in packets
           if not all(checksums_verify(p.data).values())]
    assert bad == []
    masq = [p for p in packets if p.direction == "out" and p.ifname == "wan0"
            and p.data[9] == 6]
    assert masq and all(addrs(p)[0] == GW_WAN for p in masq)


def test_first_packet_after_start_is_captured(traffic: Traffic, capture: Capture) -> None:
    """start() returns only once tcpdump listens: nothing sent afterwards is missed."""
    assert traffic.ping(0, "desktop", GW_WAN, 7).completed
    capture.stop()
    icmp = [p for p in capture.packets() if p.data[9] == 1]
    assert [(p.ifname, p.direction) for p in icmp] == [("wan0", "in"), ("wan0", "out")]


def test_wait_for_sees_packets_while_running(traffic: Traffic, capture: Capture) -> None:
    assert traffic.udp(0, "laptop", DESKTOP, 40003, 5001, b"live", reply=b"ok",
                       listeners=["desktop"]).completed
    assert capture.wait_for(lambda ps: sum(p.data[9] == 17 for p in ps) >= 4, 2.0)
    assert not capture.wait_for(lambda ps: len(ps) > 10_000, 0.05)


def test_bundle_captures_of_a_live_capture_open_in_other_readers(
        traffic: Traffic, capture: Capture, tmp_path: Path) -> None:
    assert traffic.tcp(0, "laptop", DESKTOP, 37620, 443, send=b"a", reply=b"b",
                       close="rst", listeners=["desktop"]).completed
    capture.stop()
    everything = capture.packets()
    comments = {n: (f"packet #{n + 1}",) for n in range(len(everything))}
    written = write_captures(capture.path, capture.ifnames, comments, tmp_path / "pcap")
    assert {p.name for p in written} == {"all.pcapng", "lan0.pcapng", "wan0.pcapng"}
    frames = read_sll2_frames(capture.path.read_bytes())
    assert any(f.is_marker for f in frames)          # natlab's drain marker: in its own file,
    for path in written:                              # not in what people get
        name = path.stem
        mine = [p for p in everything if name in ("all", p.ifname)]
        with RawPcapNgReader(str(path)) as reader:
            back = list(reader)
        ipv4 = [(d, m) for d, m in back if d[14:16] == b"\x08\x00"]
        assert [d[16:] for d, _ in ipv4] == [p.data for p in mine]
        assert [m.ifname.decode() for _, m in ipv4] == [p.ifname for p in mine]
        assert [m.direction for _, m in ipv4] == [1 if p.direction == "in" else 2 for p in mine]
        assert [m.comments[0].decode() for _, m in ipv4] == [
            f"packet #{everything.index(p) + 1}" for p in mine]
        stamps = [((m.tshigh << 32) | m.tslow) / m.tsresol for _, m in ipv4]
        assert all(abs(t - p.time) < 1e-6 for t, p in zip(stamps, mine, strict=True))
        assert not [d for d, _ in back if d[14:16] == b"\x88\xb5"]
        out = subprocess.run(["tcpdump", "-n", "-r", str(path)], capture_output=True,
                             check=True, timeout=10)
        assert sum(" IP " in ln for ln in out.stdout.decode().splitlines()) == len(mine)
        assert b"arning" not in out.stderr


def test_stop_ends_our_tcpdump(home_net: Network, tmp_path: Path) -> None:
    cap = Capture(home_net.gateway, tmp_path / "x.pcap")
    cap.start()
    proc = cap._proc
    assert proc is not None and proc.poll() is None
    cap.stop()
    assert proc.poll() is not None
    assert " captured" in cap.stderr and cap.drained
    cap.stop()  # idempotent


def test_a_burst_is_captured_without_drops(traffic: Traffic, capture: Capture) -> None:
    """tcpdump's default ring holds 8 packets in immediate mode; ours must hold a burst."""
    r = traffic.udp(0, "laptop", DESKTOP, 40010, 5010, b"burst" * 20, count=300,
                    reply=b"ok", listeners=["desktop"])
    assert r.completed, r
    capture.stop()
    assert capture.drained and capture.dropped == 0
    udp = [p for p in capture.packets() if p.data[9] == 17]
    assert len(udp) == 4 * 300
    assert sum(p.direction == "out" and p.ifname == "wan0" for p in udp) == 300
