"""The bundle's pcapng captures, read back by independent readers (scapy's PcapNgReader for
the blocks and options, dpkt's SLL parser for the link header), on synthetic SLL2 captures:
names, directions, exact time stamps, comments on the right packets, no marker frames; and
the event log without the marker entry. tcpdump and tshark read a real run's files in
tests/kernel/test_bundle_captures.py."""

from __future__ import annotations

import struct
from decimal import Decimal
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.utils import RawPcapNgReader

from experiments.kernel.capture import (
    ETH_P_IP,
    ETH_P_MARKER,
    LINKTYPE_LINUX_SLL2,
    PACKET_OUTGOING,
    parse_sll2_capture,
    read_sll2_frames,
)
from experiments.kernel.conntrack import event_text
from experiments.kernel.pcapng import Interface, Packet, write_pcapng
from experiments.kernel.wireshark import ALL, BY_INTERFACE, LINKTYPE_LINUX_SLL, write_captures

IP_PACKET = bytes.fromhex("450000210001400040110000cb00710ac0a80109932b270f000d0000") + b"hello"
ARP = b"\0\x01\x08\x00\x06\x04\0\x01" + b"\x02" * 20
MAC = bytes.fromhex("0200cb007101")


def sll2(proto: int, ifindex: int, pkttype: int, payload: bytes) -> bytes:
    return struct.pack("!HHIHBB8s", proto, 0, ifindex, 1, pkttype, 6, MAC + b"\0\0") + payload


def nano_pcap(records: list[tuple[int, bytes]]) -> bytes:
    """A nanosecond LINUX_SLL2 pcap as tcpdump writes it; times in integer nanoseconds."""
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, LINKTYPE_LINUX_SLL2)]
    for ns, data in records:
        out.append(struct.pack("<IIII", ns // 10**9, ns % 10**9, len(data), len(data)) + data)
    return b"".join(out)


def read(path: Path) -> list[tuple[Decimal, str, int, list[str], bytes]]:
    """(time, interface name, direction flag, comments, frame) of each packet, by scapy's
    raw reader (the frame's bytes as stored, whatever scapy could dissect of them)."""
    out = []
    with RawPcapNgReader(str(path)) as reader:
        for data, meta in reader:
            ticks = (meta.tshigh << 32) | meta.tslow
            out.append((Decimal(ticks) / meta.tsresol, meta.ifname.decode(), meta.direction,
                        [c.decode() for c in meta.comments or []], data))
    return out


T0 = 1_796_411_682_114_513_789      # ns: more digits than a float keeps


def test_names_directions_stamps_comments_and_no_marker(tmp_path: Path) -> None:
    sll2_path = tmp_path / "gateway.pcap"
    sll2_path.write_bytes(nano_pcap([
        (T0, sll2(0x0806, 3, 0, ARP)),                              # ARP: kept, no number
        (T0 + 1, sll2(ETH_P_IP, 3, 0, IP_PACKET)),                   # packet #1
        (T0 + 2, sll2(ETH_P_IP, 2, PACKET_OUTGOING, IP_PACKET)),     # packet #2
        (T0 + 3, sll2(ETH_P_MARKER, 1, PACKET_OUTGOING, b"natlab-end")),   # marker: gone
        (T0 + 4, sll2(ETH_P_MARKER, 1, 0, b"natlab-end")),
        (T0 + 5, sll2(ETH_P_IP, 9, 0, IP_PACKET)),                   # packet #3, unknown if
    ]))
    ifnames = {1: "lo", 2: "lan0", 3: "wan0"}
    comments = {0: ("packet #1 in wan0: first", "second line"), 2: ("packet #3 in if9",)}
    written = write_captures(sll2_path, ifnames, comments, tmp_path / "pcap", header="run x")
    assert [p.relative_to(tmp_path / "pcap").as_posix() for p in written] == [
        ALL, f"{BY_INTERFACE}/lan0.pcapng", f"{BY_INTERFACE}/wan0.pcapng",
        f"{BY_INTERFACE}/if9.pcapng"]

    everything = read(tmp_path / "pcap" / ALL)
    assert [(t, name, d, c) for t, name, d, c, _ in everything] == [
        (Decimal(T0) / 10**9, "wan0", 1, []),
        (Decimal(T0 + 1) / 10**9, "wan0", 1, ["packet #1 in wan0: first", "second line"]),
        (Decimal(T0 + 2) / 10**9, "lan0", 2, []),
        (Decimal(T0 + 5) / 10**9, "if9", 1, ["packet #3 in if9"]),
    ]
    frames = [dpkt.sll.SLL(f) for *_, f in everything]
    assert [(s.type, s.hrd, s.hlen, s.hdr[:6], s.ethtype) for s in frames] == [
        (0, 1, 6, MAC, 0x0806), (0, 1, 6, MAC, ETH_P_IP), (4, 1, 6, MAC, ETH_P_IP),
        (0, 1, 6, MAC, ETH_P_IP)]
    assert [f[16:] for *_, f in everything[1:]] == [IP_PACKET] * 3   # after the 16-byte SLL
    assert all(ETH_P_MARKER.to_bytes(2, "big") not in f[14:16] for *_, f in everything)

    wan = read(tmp_path / "pcap" / BY_INTERFACE / "wan0.pcapng")
    assert [(name, c) for _, name, _, c, _ in wan] == [
        ("wan0", []), ("wan0", ["packet #1 in wan0: first", "second line"])]
    # The numbering is the judged packets': the same as parse_sll2_capture's.
    judged = parse_sll2_capture(sll2_path.read_bytes(), ifnames)
    assert [(p.ifname, p.direction) for p in judged] == [
        ("wan0", "in"), ("lan0", "out"), ("if9", "in")]


def test_every_gateway_interface_is_described_even_without_packets(tmp_path: Path) -> None:
    sll2_path = tmp_path / "gateway.pcap"
    sll2_path.write_bytes(nano_pcap([(T0, sll2(ETH_P_MARKER, 1, 0, b"end"))]))
    written = write_captures(sll2_path, {1: "lo", 2: "lan0"}, {}, tmp_path / "pcap")
    assert written == [tmp_path / "pcap" / ALL]     # no interface carried a frame
    raw = written[0].read_bytes()
    assert raw.count(b"lan0") == 2 and raw.count(b"lo\0\0") == 1   # name (+ description)
    assert read(written[0]) == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=70),
                          st.sampled_from(["in", "out", None]),
                          st.lists(st.text(max_size=40), max_size=3)), max_size=8))
def test_writer_round_trip(tmp_path_factory: pytest.TempPathFactory,
                           items: list[tuple[int, bytes, str | None, list[str]]]) -> None:
    """Whatever the stamps, bytes, directions and (Unicode) comments, scapy reads back the
    same: exact nanoseconds, padding invisible, flags 1 in / 2 out / none."""
    path = tmp_path_factory.mktemp("ng") / "x.pcapng"
    ifaces = [Interface("lan0", LINKTYPE_LINUX_SLL), Interface("wan0", LINKTYPE_LINUX_SLL)]
    packets = [Packet(n % 2, ns, data, d, tuple(c))  # type: ignore[arg-type]
               for n, (ns, data, d, c) in enumerate(items)]
    write_pcapng(path, ifaces, packets, application="natlab")
    back = read(path)
    assert len(back) == len(packets)
    for p, (t, name, d, comments, frame) in zip(packets, back, strict=True):
        assert t == Decimal(p.stamp_ns) / 10**9
        assert name == ifaces[p.interface].name and frame == p.data
        assert d == {"in": 1, "out": 2, None: None}[p.direction]
        assert comments == [c.encode("utf-8", "backslashreplace").decode() for c in p.comments]


def test_a_packet_on_an_undescribed_interface_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only 1 interface"):
        write_pcapng(tmp_path / "x.pcapng", [Interface("lan0", LINKTYPE_LINUX_SLL)],
                     [Packet(1, 0, b"")], application="natlab")
    assert not (tmp_path / "x.pcapng").exists()
    assert not list(tmp_path.iterdir())     # no temporary file left either


def test_event_text_leaves_out_the_marker_and_the_cut_last_line(tmp_path: Path) -> None:
    log = tmp_path / "events.txt"
    real = ("[1795437230.558427]\t    [NEW] udp      17 30 src=203.0.113.10 dst=192.168.1.9 "
            "sport=37611 dport=9999 [UNREPLIED] src=192.168.1.8 dst=203.0.113.10 sport=9999 "
            "dport=37611")
    log.write_text(real + "\n"
                   "[1795437230.594653]\t    [NEW] udp      17 5 src=127.255.0.1 "
                   "dst=127.255.0.2 sport=9 dport=52159 [UNREPLIED] src=127.255.0.2 "
                   "dst=127.255.0.1 sport=52159 dport=9 mark=0 [USERSPACE] portid=13894\n"
                   "[1795437230.605633]\t")
    assert event_text(log) == real + "\n"
    assert event_text(tmp_path / "absent.txt") == ""


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**40), st.sampled_from([ETH_P_IP, 0x0806, ETH_P_MARKER,
                                                                  0x86DD]),
                          st.integers(1, 5), st.sampled_from([0, 1, PACKET_OUTGOING]),
                          st.binary(max_size=30), st.booleans()), max_size=12))
def test_the_numbered_frames_are_the_judged_packets(
        records: list[tuple[int, int, int, int, bytes, bool]]) -> None:
    """The bundle numbers the IPv4 frames of `read_sll2_frames` as packet #1, #2 ...;
    `parse_sll2_capture` (its own fast loop) must give exactly those packets, in order;
    records too short for an SLL2 header count in neither."""
    blob = nano_pcap([(ns, sll2(proto, ifindex, pkttype, payload) if whole else b"\0" * 7)
                      for ns, proto, ifindex, pkttype, payload, whole in records])
    names = {1: "lo", 2: "lan0"}
    frames = [f for f in read_sll2_frames(blob) if f.is_ipv4]
    judged = parse_sll2_capture(blob, names)
    assert [(p.time, p.ifindex, p.ifname, p.direction, p.data) for p in judged] == [
        (f.time, f.ifindex, names.get(f.ifindex, f"if{f.ifindex}"), f.direction, f.payload)
        for f in frames]
