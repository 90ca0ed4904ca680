"""Rendering: conntrack entries in columns, received traffic, kernel | model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from rich.text import Text

from experiments.records.report import (
    conntrack_table,
    entry_row,
    payload_text,
    received_rows,
    render_text,
    side_by_side,
    to_jsonable,
)
from nat.listing import parse_line
from nat.status import TcpState

UDP = ("udp      17 29 src=203.0.113.10 dst=192.168.1.9 sport=37611 dport=9999 "
       "src=192.168.1.8 dst=203.0.113.10 sport=9999 dport=37611 mark=0 use=1")
UDP_MODEL = ("udp      17 30 src=203.0.113.10 dst=192.168.1.9 sport=37611 dport=9999 "
             "[UNREPLIED] src=192.168.1.8 dst=203.0.113.10 sport=9999 dport=37611 mark=0 use=1")
TCP = ("tcp      6 119 TIME_WAIT src=192.168.1.8 dst=203.0.113.10 sport=37611 dport=443 "
       "src=203.0.113.10 dst=203.0.113.1 sport=443 dport=37611 [ASSURED] mark=0 use=1")
ICMP = ("icmp     1 30 src=192.0.2.10 dst=198.51.100.2 type=8 code=0 id=19021 "
        "src=198.51.100.2 dst=198.51.100.1 type=0 code=0 id=19021 mark=0 use=1 id=3049959454")


@dataclass(frozen=True)
class Diff:
    where: str
    field: str
    kernel: str
    model: str


def test_tcp_entry_in_columns() -> None:
    row = entry_row(parse_line(TCP))
    assert (row.proto, row.timeout, row.state) == ("tcp", "119", "TIME_WAIT")
    assert row.original == "192.168.1.8:37611 → 203.0.113.10:443"
    assert row.reply == "203.0.113.10:443 → 203.0.113.1:37611"
    assert row.flags == ("ASSURED",)
    assert row.extra == ("mark=0", "use=1")
    assert row.line.split() == TCP.split()


def test_icmp_entry_keeps_the_entry_id_apart() -> None:
    row = entry_row(parse_line(ICMP))
    assert row.original == "192.0.2.10 → 198.51.100.2 type 8 code 0 id 19021"
    assert row.reply == "198.51.100.2 → 198.51.100.1 type 0 code 0 id 19021"
    assert row.extra[-1] == "id=3049959454"


def test_extended_and_timeoutless_entries() -> None:
    row = entry_row(parse_line("ipv4     2 " + UDP))
    assert (row.proto, row.timeout) == ("udp", "29")
    row = entry_row(parse_line("tcp 6 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
                               "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 mark=0 use=1"))
    assert (row.timeout, row.state) == ("", "TIME_WAIT")
    row = entry_row(parse_line(UDP.replace("mark=0", "mark=0 zone=3")))
    assert "zone=3" in row.extra


def test_conntrack_table_hides_only_noise() -> None:
    text = render_text(conntrack_table([parse_line(UDP_MODEL), parse_line(TCP)], "t"))
    assert "UNREPLIED" in text and "ASSURED" in text and "TIME_WAIT" in text
    assert "mark=0" not in text and "use=1" not in text
    assert "mark=7" in render_text(conntrack_table([parse_line(UDP.replace("mark=0", "mark=7"))]))
    assert "(no entries)" in render_text(conntrack_table([]))


def test_received_rows_from_mapping_and_records() -> None:
    @dataclass
    class Rec:
        host: str
        proto: str
        src: IPv4Address
        dst: IPv4Address
        sport: int | None
        dport: int | None
        payload: bytes
        note: str = ""

    r = Rec("laptop", "udp", IPv4Address("203.0.113.10"), IPv4Address("192.168.1.8"), 37611,
            9999, b"hello\r\n")
    icmp = Rec("desktop", "icmp", IPv4Address("192.168.1.9"), IPv4Address("203.0.113.10"),
               None, None, b"\xff\x00", "port unreachable")
    expected = [("laptop", "udp", "203.0.113.10:37611", "192.168.1.8:9999", "hello\\r\\n"),
                ("desktop", "icmp", "192.168.1.9", "203.0.113.10",
                 "\\\\xff\\x00  (port unreachable)")]
    assert received_rows([r, icmp]) == expected
    assert received_rows({"laptop": [r], "desktop": [icmp]}) == expected


def test_payload_text_is_one_short_line() -> None:
    assert payload_text(b"a\nb") == "a\\nb"
    assert len(payload_text("x" * 500)) == 60
    assert payload_text(None) == ""


def test_side_by_side_pairs_by_original_tuple_and_lists_diffs() -> None:
    diffs = [Diff("conntrack final: udp 203.0.113.10:37611 -> 192.168.1.9:9999", "unreplied",
                  "False", "True")]
    table = side_by_side([parse_line(UDP), parse_line(ICMP)],
                         [parse_line(TCP), parse_line(UDP_MODEL)], diffs)
    text = render_text(table, width=400)
    rows = [ln for ln in text.splitlines() if "│" in ln]
    udp_row = next(ln for ln in rows if "udp 203.0.113.10:37611" in ln)
    assert "udp      17 29" not in udp_row  # lines are re-spaced token by token
    assert "udp 17 29 src=203.0.113.10" in udp_row and "udp 17 30 src=203.0.113.10" in udp_row
    icmp_row = next(ln for ln in rows if ln.lstrip("│ ").startswith("icmp"))
    assert icmp_row.rstrip(" │").endswith("(none)")  # no model entry for it
    tcp_row = next(ln for ln in rows if ln.lstrip("│ ").startswith("tcp"))
    assert "(none)" in tcp_row.split("│")[2]  # no kernel entry for it
    assert any("≠ unreplied" in ln for ln in rows)
    assert any("False" in ln and "True" in ln for ln in rows)
    # Exactly the differing tokens are highlighted.
    kernel_cell = table.columns[1]._cells[0]
    model_cell = table.columns[2]._cells[0]
    assert isinstance(kernel_cell, Text) and isinstance(model_cell, Text)
    marked = {kernel_cell.plain[s.start:s.end] for s in kernel_cell.spans if s.style}
    assert marked == {"29"}
    marked = {model_cell.plain[s.start:s.end] for s in model_cell.spans if s.style}
    assert marked == {"30", "[UNREPLIED]"}


def test_side_by_side_empty() -> None:
    assert "(no entries)" in render_text(side_by_side([], [], []))


def test_to_jsonable() -> None:
    @dataclass(frozen=True)
    class V:
        a: IPv4Address
        b: bytes
        c: tuple[int, ...]
        d: TcpState
        e: Path
        f: dict[int, bytes]

    value = V(IPv4Address("1.2.3.4"), b"\xff", (1, 2), TcpState.TIME_WAIT, Path("/x"),
              {1: b"ok"})
    out = to_jsonable(value)
    assert out == {"a": "1.2.3.4", "b": {"hex": "ff"}, "c": [1, 2], "d": "TIME_WAIT",
                   "e": "/x", "f": {"1": "ok"}}
    json.dumps(out)
