"""`conntrack -L` text: real kernel lines read and re-rendered, random entries round-tripped.

The REAL_* lines were printed by conntrack-tools 1.4.7 on Linux 6.18 (from kernel-semantics 7.1,
the machine notes, and a run made for this test file: two namespaces, raw-table CT zones, a
DNAT rule, nf_conntrack_acct=1 and nf_conntrack_timestamp=1).
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packet_strategies import addresses, tuples

from nat.entry import Entry
from nat.listing import (
    EntryPattern,
    ListingError,
    parse_line,
    parse_listing,
    parse_pattern,
    render,
)
from nat.status import TcpState
from nat.tuple import Proto, Tuple, invert

A = IPv4Address

# Lines whose every word the Entry carries: render(parse_line(line)) must give them back.
REAL_EXACT = [
    "udp      17 29 src=10.0.0.2 dst=10.0.0.1 sport=37611 dport=9999 [UNREPLIED] "
    "src=192.168.1.8 dst=10.0.0.2 sport=9999 dport=37611 mark=0 use=1",
    "tcp      6 431999 ESTABLISHED src=192.0.2.10 dst=198.51.100.2 sport=33000 dport=80 "
    "src=198.51.100.2 dst=198.51.100.1 sport=80 dport=33000 [ASSURED] mark=0 use=1",
    "icmp     1 30 src=192.0.2.10 dst=198.51.100.2 type=8 code=0 id=19021 src=198.51.100.2 "
    "dst=198.51.100.1 type=0 code=0 id=19021 mark=0 use=1",
    "tcp      6 118 TIME_WAIT src=10.0.0.2 dst=10.0.0.1 sport=48922 dport=8443 "
    "src=192.168.1.8 dst=192.168.1.1 sport=443 dport=48922 [ASSURED] mark=0 use=1",
    "udp      17 29 src=203.0.113.10 dst=192.168.1.9 sport=37611 dport=9999 src=192.168.1.8 "
    "dst=203.0.113.10 sport=9999 dport=37611 mark=0 use=1",
]

# Lines with words Entry drops (counters, delta-time, timestamps) or the extended prefix.
REAL_OTHER = {
    "ipv4     2 udp      17 27 src=192.0.2.13 dst=198.51.100.2 sport=1 dport=2 packets=2 "
    "bytes=76 src=198.51.100.2 dst=192.0.2.13 sport=2 dport=1 packets=2 bytes=76 mark=42 "
    "delta-time=2 use=1 id=3049959454":
    Entry(Tuple(17, A("192.0.2.13"), A("198.51.100.2"), 1, 2),
          Tuple(17, A("198.51.100.2"), A("192.0.2.13"), 2, 1),
          timeout=27, mark=42, use=1, id=3049959454),
    "udp      17 29 src=10.99.0.2 dst=10.99.0.1 sport=40001 dport=5001 packets=1 bytes=38 "
    "[UNREPLIED] src=10.99.0.1 dst=10.99.0.2 sport=5001 dport=40001 packets=0 bytes=0 mark=0 "
    "zone=5 use=1":
    Entry(Tuple(17, A("10.99.0.2"), A("10.99.0.1"), 40001, 5001),
          Tuple(17, A("10.99.0.1"), A("10.99.0.2"), 5001, 40001),
          timeout=29, unreplied=True, zone=5, use=1),
    "udp      17 29 src=10.99.0.2 dst=10.99.0.1 sport=40002 dport=5002 packets=1 bytes=38 "
    "[UNREPLIED] src=10.99.0.1 dst=10.99.0.2 sport=5002 dport=40002 zone-reply=9 packets=0 "
    "bytes=0 mark=0 use=1":
    Entry(Tuple(17, A("10.99.0.2"), A("10.99.0.1"), 40002, 5002),
          Tuple(17, A("10.99.0.1"), A("10.99.0.2"), 5002, 40002),
          timeout=29, unreplied=True, zone_reply=9, use=1),
    "udp      17 29 src=10.99.0.2 dst=10.99.0.1 sport=40000 dport=5000 zone-orig=7 packets=1 "
    "bytes=38 [UNREPLIED] src=10.99.0.1 dst=10.99.0.2 sport=5000 dport=40000 packets=0 "
    "bytes=0 mark=0 use=1":
    Entry(Tuple(17, A("10.99.0.2"), A("10.99.0.1"), 40000, 5000),
          Tuple(17, A("10.99.0.1"), A("10.99.0.2"), 5000, 40000),
          timeout=29, unreplied=True, zone_orig=7, use=1),
    "ipv4     2 unknown  253 599 src=10.99.0.2 dst=10.99.0.1 packets=1 bytes=25 [UNREPLIED] "
    "src=10.99.0.1 dst=10.99.0.2 packets=0 bytes=0 mark=0 use=1 id=857640254":
    Entry(Tuple(253, A("10.99.0.2"), A("10.99.0.1")), Tuple(253, A("10.99.0.1"), A("10.99.0.2")),
          timeout=599, unreplied=True, use=1, id=857640254),
    "tcp      6 59 CLOSE_WAIT src=10.99.0.2 dst=10.99.0.1 sport=37094 dport=8080 packets=3 "
    "bytes=164 src=10.99.0.1 dst=10.99.0.2 sport=8080 dport=37094 packets=2 bytes=112 "
    "[ASSURED] mark=0 delta-time=0 use=1":
    Entry(Tuple(6, A("10.99.0.2"), A("10.99.0.1"), 37094, 8080),
          Tuple(6, A("10.99.0.1"), A("10.99.0.2"), 8080, 37094),
          timeout=59, state=TcpState.CLOSE_WAIT, assured=True, use=1),
    "udp      17 28 src=10.99.0.2 dst=10.99.0.1 sport=40003 dport=5003 packets=1 bytes=38 "
    "[UNREPLIED] src=10.99.0.1 dst=10.99.0.2 sport=5003 dport=40003 packets=0 bytes=0 mark=42 "
    "delta-time=1 [start=Mon Nov 23 12:17:46 2026] use=1":
    Entry(Tuple(17, A("10.99.0.2"), A("10.99.0.1"), 40003, 5003),
          Tuple(17, A("10.99.0.1"), A("10.99.0.2"), 5003, 40003),
          timeout=28, unreplied=True, mark=42, use=1),
}


@pytest.mark.parametrize("line", REAL_EXACT)
def test_real_lines_round_trip_exactly(line: str) -> None:
    assert render(parse_line(line)) == line


@pytest.mark.parametrize("line", sorted(REAL_OTHER))
def test_real_lines_with_extra_words(line: str) -> None:
    assert parse_line(line) == REAL_OTHER[line]


def test_field_values_of_a_real_line() -> None:
    e = parse_line(REAL_EXACT[2])
    assert e.orig == Tuple.icmp(A("192.0.2.10"), A("198.51.100.2"), 8, 0, 19021)
    assert e.reply == Tuple.icmp(A("198.51.100.2"), A("198.51.100.1"), 0, 0, 19021)
    assert (e.timeout, e.state, e.unreplied, e.assured, e.mark, e.use) == \
        (30, None, False, False, 0, 1)


def test_render_pads_names_and_prints_use_1_when_unknown() -> None:
    e = Entry(Tuple(253, A("10.0.0.1"), A("10.0.0.2")), Tuple(253, A("10.0.0.2"), A("10.0.0.1")),
              timeout=599, unreplied=True)
    assert render(e) == ("unknown  253 599 src=10.0.0.1 dst=10.0.0.2 [UNREPLIED] "
                         "src=10.0.0.2 dst=10.0.0.1 mark=0 use=1")
    assert render(e, extended=True).startswith("ipv4     2 unknown  253 599 ")


def test_gre_keys_and_offload() -> None:
    line = ("gre      47 src=10.0.0.1 dst=10.0.0.2 srckey=0x0 dstkey=0x1a src=10.0.0.2 "
            "dst=10.0.0.1 srckey=0x1a dstkey=0x0 [OFFLOAD] mark=0 use=1")
    e = parse_line(line)
    assert e.timeout is None and not e.assured
    assert (e.orig.sport, e.orig.dport) == (0, 0x1A)
    assert render(e) == line.replace(" [OFFLOAD]", "")


def test_listing_skips_summary_blank_and_ipv6() -> None:
    skipped: list[str] = []
    text = "\n".join([
        REAL_EXACT[0], "",
        "udp      17 29 src=fe80::1 dst=fe80::2 sport=1 dport=2 [UNREPLIED] src=fe80::2 "
        "dst=fe80::1 sport=2 dport=1 mark=0 use=1",
        REAL_EXACT[1],
        "conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.",
    ])
    assert parse_listing(text, on_skip=skipped.append) == \
        [parse_line(REAL_EXACT[0]), parse_line(REAL_EXACT[1])]
    assert len(skipped) == 2


@pytest.mark.parametrize(("line", "says"), [
    ("", "empty line"),
    ("hello world", "protocol name"),
    ("udp      6 29 src=1.1.1.1", "protocol 6 is printed as 'tcp'"),
    ("udp      17 29 src=1.1.1.1 dst=2.2.2.2 sport=1", "expected dport="),
    ("udp      17 29 src=1.1.1.1 dst=2.2.2.999 sport=1 dport=2", "not an IPv4 address"),
    ("udp      17 29 src=1.1.1.1 dst=2.2.2.2 sport=70000 dport=2", "out of range"),
    ("tcp      6 29 NOPE src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 "
     "sport=2 dport=1 mark=0 use=1", "not a TCP conntrack state"),
    ("udp      17 29 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 "
     "dport=1 use=1", "expected mark="),
    ("udp      17 29 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 "
     "dport=1 mark=0 use=1 extra", "unexpected 'extra'"),
    ("ipv6     10 udp      17 29 src=::1 dst=::1", "IPv6"),
])
def test_garbage_gives_one_clear_error(line: str, says: str) -> None:
    with pytest.raises(ListingError) as info:
        parse_line(line)
    assert says in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.line == line


def test_pattern_leaves_out_timeout_mark_use_and_number() -> None:
    p = parse_pattern("udp src=10.0.0.2 dst=10.0.0.1 sport=37611 dport=9999 [UNREPLIED] "
                      "src=192.168.1.8 dst=10.0.0.2 sport=9999 dport=37611")
    assert (p.timeout, p.mark, p.use, p.id) == (None, None, None, None)
    assert p.matches(parse_line(REAL_EXACT[0]))
    assert not p.matches(parse_line(REAL_EXACT[4]))      # a different flow
    assured = parse_pattern(str(p).replace("[UNREPLIED] ", "") + " [ASSURED]")
    assert not assured.matches(parse_line(REAL_EXACT[0]))


def test_pattern_compares_given_fields() -> None:
    line = REAL_EXACT[1]
    assert parse_pattern(line).matches(parse_line(line))
    assert not parse_pattern(line.replace("431999", "431998")).matches(parse_line(line))
    assert not parse_pattern(line.replace("mark=0", "mark=1")).matches(parse_line(line))
    no_state = parse_pattern(line.replace("ESTABLISHED ", ""))
    assert no_state.state is None and no_state.matches(parse_line(line))
    assert parse_pattern("udp 17 17 " + REAL_EXACT[0].split(" 29 ", 1)[1]).timeout == 17
    assert parse_pattern("udp 17 " + REAL_EXACT[0].split(" 29 ", 1)[1]).timeout is None


states = st.sampled_from(TcpState)


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    orig = draw(tuples())
    reply = invert(orig) if draw(st.booleans()) else draw(tuples(proto=orig.proto))
    if orig.proto in (47,):
        reply = Tuple(47, draw(addresses), draw(addresses), draw(st.integers(0, 65535)), 0)
    maybe = st.none() | st.integers(0, 65535)
    return Entry(
        orig=orig, reply=reply,
        timeout=draw(st.none() | st.integers(0, 2**32 - 1)),
        state=draw(states) if orig.proto == Proto.TCP else None,
        unreplied=draw(st.booleans()), assured=draw(st.booleans()),
        mark=draw(st.integers(0, 2**32 - 1)), zone=draw(st.integers(0, 65535)),
        zone_orig=draw(maybe), zone_reply=draw(maybe),
        use=draw(st.integers(0, 2**32 - 1)), id=draw(st.none() | st.integers(0, 2**32 - 1)))


@given(entries(), st.booleans())
def test_render_then_parse_gives_the_entry_back(e: Entry, extended: bool) -> None:
    assert parse_line(render(e, extended=extended)) == e
    assert parse_pattern(render(e)).matches(e)


def test_pattern_renders_in_the_line_grammar() -> None:
    e = parse_line(REAL_EXACT[1])
    p = EntryPattern(orig=e.orig, reply=e.reply, state=TcpState.ESTABLISHED, assured=True)
    assert str(p) == ("tcp      6 ESTABLISHED src=192.0.2.10 dst=198.51.100.2 sport=33000 "
                      "dport=80 src=198.51.100.2 dst=198.51.100.1 sport=80 dport=33000 [ASSURED]")
    assert parse_pattern(str(p)) == p
    assert p.matches(e)


# `conntrack -E` bodies (Linux 6.18, timestamps on): no mark=, no use=; DESTROY keeps the last
# timeout and state here. parse_pattern reads them; the event prefix is the caller's.
REAL_EVENTS = [
    "tcp      6 120 SYN_SENT src=10.99.0.2 dst=10.99.0.1 sport=48634 dport=8080 [UNREPLIED] "
    "src=10.99.0.1 dst=10.99.0.2 sport=8080 dport=48634",
    "tcp      6 432000 ESTABLISHED src=10.99.0.2 dst=10.99.0.1 sport=48634 dport=8080 "
    "src=10.99.0.1 dst=10.99.0.2 sport=8080 dport=48634 [ASSURED]",
    "tcp      6 119 TIME_WAIT src=10.99.0.2 dst=10.99.0.1 sport=48634 dport=8080 "
    "src=10.99.0.1 dst=10.99.0.2 sport=8080 dport=48634 [ASSURED] delta-time=1",
    "udp      17 29 src=10.99.0.2 dst=10.99.0.1 sport=33909 dport=5000 [UNREPLIED] "
    "src=10.99.0.1 dst=10.99.0.2 sport=5000 dport=33909 delta-time=1",
]


@pytest.mark.parametrize("line", REAL_EVENTS)
def test_event_bodies_read_as_patterns(line: str) -> None:
    p = parse_pattern(line)
    assert (p.mark, p.use) == (None, None)
    assert p.timeout == int(line.split()[2])
    assert p.unreplied == ("[UNREPLIED]" in line) and p.assured == ("[ASSURED]" in line)
    with pytest.raises(ListingError, match="expected mark="):
        parse_line(line)
