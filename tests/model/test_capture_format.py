"""Reading SLL2 captures and writing per-interface pcaps, on synthetic bytes (no root)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.kernel.capture import (
    LINKTYPE_LINUX_SLL2,
    CaptureError,
    parse_sll2_capture,
    read_raw_pcap,
    write_raw_pcap,
)

IP_PACKET = bytes.fromhex("450000280001400040110000cb00710ac0a80109932b270f00140000") + b"hello"


def sll2(proto: int, ifindex: int, pkttype: int, payload: bytes) -> bytes:
    return struct.pack("!HHIHBB8s", proto, 0, ifindex, 1, pkttype, 6, b"\x02" * 8) + payload


def pcap(records: list[tuple[float, bytes]], *, nano: bool = True, big: bool = False,
         linktype: int = LINKTYPE_LINUX_SLL2) -> bytes:
    e = ">" if big else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for t, data in records:
        sec = int(t)
        frac = round((t - sec) * (1e9 if nano else 1e6))
        out.append(struct.pack(e + "IIII", sec, frac, len(data), len(data)) + data)
    return b"".join(out)


def test_directions_interfaces_and_non_ipv4_skipped() -> None:
    blob = pcap([
        (100.25, sll2(0x0800, 3, 0, IP_PACKET)),
        (100.5, sll2(0x0806, 3, 0, b"\0" * 28)),            # ARP: skipped
        (100.75, sll2(0x0800, 2, 4, IP_PACKET)),            # PACKET_OUTGOING
        (101.0, sll2(0x0800, 9, 3, IP_PACKET)),             # unknown index
    ])
    got = parse_sll2_capture(blob, {2: "lan0", 3: "wan0"})
    assert [(p.time, p.ifindex, p.ifname, p.direction) for p in got] == [
        (100.25, 3, "wan0", "in"), (100.75, 2, "lan0", "out"), (101.0, 9, "if9", "in")]
    assert all(p.data == IP_PACKET for p in got)
    wire = got[1].to_wire(100.0)
    assert (wire.time, wire.iface, wire.direction, wire.data) == (0.75, "lan0", "out", IP_PACKET)


@pytest.mark.parametrize(("nano", "big"), [(True, False), (False, False), (True, True),
                                           (False, True)])
def test_both_precisions_and_byte_orders(nano: bool, big: bool) -> None:
    blob = pcap([(5.5, sll2(0x0800, 1, 0, IP_PACKET))], nano=nano, big=big)
    (p,) = parse_sll2_capture(blob, {1: "lo"})
    assert p.time == pytest.approx(5.5) and p.ifname == "lo"


def test_a_partly_written_last_record_is_left_for_later() -> None:
    blob = pcap([(1.0, sll2(0x0800, 2, 0, IP_PACKET)), (2.0, sll2(0x0800, 2, 4, IP_PACKET))])
    assert len(parse_sll2_capture(blob[:-3], {})) == 1
    assert parse_sll2_capture(blob[:20], {}) == []      # header not even complete


def test_wrong_files_are_refused_in_one_line() -> None:
    with pytest.raises(CaptureError, match="link type 101"):
        parse_sll2_capture(pcap([], linktype=101), {})
    with pytest.raises(CaptureError, match="not a pcap"):
        parse_sll2_capture(b"\x0a\x0d\x0d\x0a" + b"\0" * 40, {})


@given(st.lists(st.tuples(st.floats(0, 4e9, allow_nan=False),
                          st.binary(min_size=20, max_size=200)), max_size=20))
def test_raw_pcap_round_trip(tmp_path_factory: pytest.TempPathFactory,
                             packets: list[tuple[float, bytes]]) -> None:
    path = tmp_path_factory.mktemp("pcap") / "x.pcap"
    write_raw_pcap(path, packets)
    back = read_raw_pcap(path)
    assert [d for _, d in back] == [d for _, d in packets]
    assert all(abs(a - b) < 2e-6 for (a, _), (b, _) in
               zip(back, packets, strict=True))


def test_raw_pcap_header(tmp_path: Path) -> None:
    path = write_raw_pcap(tmp_path / "y.pcap", [(1.5, IP_PACKET)])
    head = path.read_bytes()[:24]
    assert struct.unpack("<IHHiIII", head) == (0xA1B23C4D, 2, 4, 0, 0, 262144, 101)
