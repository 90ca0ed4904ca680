"""Each kind of predicate can say no, with one line naming the field and the values seen
(issue 20: an oracle that cannot fail proves nothing), and bad predicates are refused in one
line naming the file's field (exit 2, through SpecError)."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.expect_patterns import parse_entry_pattern, parse_relation
from experiments.judging.judgement import check_expect
from experiments.observed import Received
from experiments.spec import SpecError, load_spec
from nat.listing import parse_line, render
from nat.nat_core import port_class

HEAD = '''topology = "home"
[[steps]]
action = "udp"
from = "laptop"
to = "desktop"
sport = 37611
dport = 443

[[steps]]
action = "checkpoint"
name = "mid"
'''
UDP = ("udp      17 29 src=192.168.1.8 dst=203.0.113.10 sport=37611 dport=443 "
       "src=203.0.113.10 dst=203.0.113.1 sport=443 dport=37611 mark=0 use=1")
TCP = ("tcp      6 117 TIME_WAIT src=192.168.1.8 dst=203.0.113.10 sport=40000 dport=80 "
       "src=203.0.113.10 dst=203.0.113.1 sport=80 dport=40000 [ASSURED] mark=0 use=1")
TABLE = [parse_line(UDP), parse_line(TCP)]
RST = Received("laptop", 0.5, "tcp", IPv4Address("203.0.113.10"), IPv4Address("192.168.1.8"),
               80, 40000, b"", "segment", "RA")
# port unreachable quoting udp 192.168.1.8:5000 > 203.0.113.10:9
QUOTED = bytes.fromhex("4500001c0000400040110000c0a80108cb00710a13880009000800")
UNREACH = Received("laptop", 0.7, "icmp", IPv4Address("192.168.1.9"),
                   IPv4Address("192.168.1.8"), None, None, QUOTED, "type 3 code 3")
GOT = (RST, UNREACH)


def _check(tmp_path: Path, expect: str, table: list[object] | None = None,
           received: tuple[Received, ...] = GOT) -> tuple[str, ...]:
    path = tmp_path / "p.toml"
    path.write_text(HEAD + expect)
    checkpoints = {"mid": (0.6, [parse_line(UDP)])}
    result = check_expect(load_spec(path), TABLE if table is None else table,  # type: ignore[arg-type]
                          received, checkpoints)
    return result.failures


PASSING = [
    '[[expect.entry]]\nmatch = "udp sport=$P src=203.0.113.10 dport=$P"\ncount = 1\n',
    '[[expect.entry]]\nmatch = "tcp TIME_WAIT [ASSURED] ![UNREPLIED]"\ntimeout = [100, 120]\n',
    '[[expect.entry]]\nat = "mid"\nmatch = "tcp"\ncount = 0\n',
    '[[expect.received]]\nhost = "laptop"\nproto = "tcp"\nflags = "AR"\ncount = 1\n',
    '[[expect.received]]\nhost = "laptop"\nproto = "icmp"\nicmp_type = 3\n'
    'inner = "udp src=192.168.1.8 sport=5000 dport=9"\ncount = 1\n',
    '[[expect.received]]\nhost = "laptop"\nproto = "tcp"\nflags = "RA"\nat = "mid"\n',
    '[expect]\nrelations = ["$A != $B", "$A other-class 80", "$B same-class $A",'
    ' "$A not in 1..1023"]\n[[expect.entry]]\nmatch = "udp sport=$A"\n'
    '[[expect.entry]]\nmatch = "tcp sport=$B"\n',
]


@pytest.mark.parametrize("expect", PASSING)
def test_predicates_that_hold(expect: str, tmp_path: Path) -> None:
    assert _check(tmp_path, expect) == ()


FAILING = [
    # present, but absent: the nearest entry and its first field that differs
    ('[[expect.entry]]\nmatch = "udp sport=37611 dport=53"\n',
     "expect.entry.0: 0 entries of the final table match 'udp sport=37611 dport=53', wanted "
     f'at least 1; nearest: orig.dport is 443, not 53 in "{UDP}"'),
    # absent, but present
    ('[[expect.entry]]\nmatch = "tcp dport=80"\ncount = 0\n',
     f"expect.entry.0: 1 entries of the final table match 'tcp dport=80', wanted exactly 0: "
     f'"{TCP}"'),
    # state
    ('[[expect.entry]]\nmatch = "tcp ESTABLISHED"\n',
     "expect.entry.0: 0 entries of the final table match 'tcp ESTABLISHED', wanted at least "
     f'1; nearest: state is TIME_WAIT, not ESTABLISHED in "{TCP}"'),
    # flags
    ('[[expect.entry]]\nmatch = "udp [ASSURED]"\n',
     "expect.entry.0: 0 entries of the final table match 'udp [ASSURED]', wanted at least 1; "
     f'nearest: [ASSURED] is not set, not set in "{UDP}"'),
    # mark
    ('[[expect.entry]]\nmatch = "udp mark=7"\n',
     "expect.entry.0: 0 entries of the final table match 'udp mark=7', wanted at least 1; "
     f'nearest: mark is 0, not 7 in "{UDP}"'),
    # timeout bounds
    ('[[expect.entry]]\nmatch = "udp"\ntimeout = [100, 120]\n',
     "expect.entry.0: 0 entries of the final table match 'udp' with timeout in 100..120, "
     f'wanted at least 1; nearest: timeout is 29, not in 100..120 in "{UDP}"'),
    # a count bound, at a checkpoint
    ('[[expect.entry]]\nat = "mid"\nmatch = "*"\nat_least = 2\n',
     "expect.entry.0: 1 entries of checkpoint 'mid' match '*', wanted at least 2: "
     f'"{UDP}"'),
    # a capture used twice must be equal
    ('[[expect.entry]]\nmatch = "udp sport=$P dport=$P"\n',
     "expect.entry.0: 0 entries of the final table match 'udp sport=$P dport=$P', wanted at "
     f'least 1; nearest: orig.dport is 443, not $P=37611 in "{UDP}"'),
    # relations: false, and impossible to check
    ('[expect]\nrelations = ["$A == $B"]\n[[expect.entry]]\nmatch = "udp sport=$A"\n'
     '[[expect.entry]]\nmatch = "tcp sport=$B"\n',
     "expect.relations.0: '$A == $B' is false: A=37611, B=40000"),
    ('[expect]\nrelations = ["$A in 1..1023"]\n[[expect.entry]]\nmatch = "udp sport=$A"\n',
     "expect.relations.0: '$A in 1..1023' is false: A=37611"),
    ('[expect]\nrelations = ["$A same-class 600"]\n[[expect.entry]]\nmatch = "udp sport=$A"\n',
     "expect.relations.0: '$A same-class 600' is false: A=37611"),
    # received: not received, but was
    ('[[expect.received]]\nhost = "laptop"\nproto = "tcp"\nflags = "RA"\ncount = 0\n',
     "expect.received.0: laptop received 1 packets like tcp [RA] *:* > *:*, wanted exactly "
     "0: laptop: tcp 203.0.113.10:80 > 192.168.1.8:40000 [RA] (segment)"),
    # received: flags differ
    ('[[expect.received]]\nhost = "laptop"\nproto = "tcp"\nflags = "SA"\n',
     "expect.received.0: laptop received 0 packets like tcp [SA] *:* > *:*, wanted at least "
     "1; nearest: flags is RA, not SA in laptop: tcp 203.0.113.10:80 > 192.168.1.8:40000 "
     "[RA] (segment)"),
    # received: the quoted header differs
    ('[[expect.received]]\nhost = "laptop"\nproto = "icmp"\ninner = "udp dport=53"\n',
     "expect.received.0: laptop received 0 packets like icmp *:* > *:* quoting 'udp "
     "dport=53', wanted at least 1; nearest: inner.dport is 9, not 53 in laptop: icmp "
     "192.168.1.9 > 192.168.1.8 "),
    # received before a checkpoint: the unreachable came after it
    ('[[expect.received]]\nhost = "laptop"\nproto = "icmp"\nat = "mid"\n',
     "expect.received.0: laptop received 0 packets like icmp *:* > *:* by checkpoint 'mid', "
     "wanted at least 1; nothing of this kind was seen"),
]


@pytest.mark.parametrize(("expect", "line"), FAILING)
def test_each_predicate_kind_can_fail(expect: str, line: str, tmp_path: Path) -> None:
    (failure,) = _check(tmp_path, expect)
    assert failure.startswith(line) if line.endswith(" ") else failure == line


BAD = [
    ('[[expect.entry]]\nmatch = "udp sport=x"\n', "expect.entry.0.match",
     "word 2 (sport): 'x' is not a number, * or $NAME"),
    ('[[expect.entry]]\nmatch = "udp"\nat = "nowhere"\n', "expect.entry.0.at",
     "no checkpoint named 'nowhere'"),
    ('[[expect.entry]]\nmatch = "udp"\ncount = 1\nat_least = 1\n', "expect.entry.0.count",
     "give count alone"),
    ('[expect]\nrelations = ["$Z != 1"]\n', "expect.relations.0", "$Z is captured by no"),
    ('[expect]\nrelations = ["$Z ~ 1"]\n', "expect.relations.0", "is not VALUE OP VALUE"),
    ('[[expect.received]]\nhost = "laptop"\nproto = "udp"\nflags = "R"\n',
     "expect.received.0.flags", "only TCP segments have flags"),
    ('[[expect.received]]\nhost = "laptop"\nproto = "icmp"\ninner = "udp dport=1 dport=2"\n',
     "expect.received.0.inner", "one direction"),
    ('[[expect.entry]]\nmatch = "udp dport=1 src=* sport=2 src=*"\n', "expect.entry.0.match",
     "word 5: src= out of order in the reply direction"),
    ('[[expect.entry]]\nmatch = "udp"\ntimeout = [5, 1]\n', "expect.entry.0.timeout",
     "is not [low, high]"),
]


@pytest.mark.parametrize(("expect", "field", "message"), BAD)
def test_bad_predicates_are_refused(expect: str, field: str, message: str,
                                    tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(HEAD + expect)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field_path == field
    assert message in info.value.message
    assert "\n" not in str(info.value)


PORTS = st.integers(1, 65535)


@given(PORTS, PORTS)
def test_same_class_is_the_kernels_port_class(a: int, b: int) -> None:
    same = parse_relation("$A same-class $B").holds({"A": a, "B": b})
    assert same == (port_class(a) == port_class(b))
    assert parse_relation("$A other-class $B").holds({"A": a, "B": b}) is (not same)


@given(PORTS, PORTS, PORTS)
def test_in_is_the_closed_range(a: int, lo: int, hi: int) -> None:
    lo, hi = sorted((lo, hi))
    rel = parse_relation(f"$A in {lo}..{hi}")
    assert rel.holds({"A": a}) == (lo <= a <= hi)
    assert parse_relation(f"$A not in {lo}..{hi}").holds({"A": a}) == (not lo <= a <= hi)


@given(st.sampled_from(TABLE))
def test_an_entry_matches_its_own_listing(entry: object) -> None:
    """Every word of the listing, as a pattern, fits the entry (and captures nothing)."""
    line = render(entry).replace(" use=1", "")  # type: ignore[arg-type]
    assert parse_entry_pattern(line).match(entry, {}) == {}  # type: ignore[arg-type]
