"""The port search's allowed sets are exactly what the kernel may pick: not one key more.

Every other test of the NAT core checks that the kernel's (or the model's) pick is *in* the
set; a set that is too broad ("any port" instead of the port's class) would pass them all.
Here each set is enumerated in full (every key 0-65535, every address of the range) and
compared with the set the kernel source implies, typed in below from
net/netfilter/nf_nat_core.c (nf_nat_l4proto_unique_tuple, get_unique_tuple,
find_best_ips_proto; kernel-semantics.md §4.3-4.5), not computed by the model's helpers:

- no port range given, SRC manip: a port below 512 is searched in 1-511, 512-1023 in
  600-1023 (512-599 never chosen), 1024 and above in 1024-65535;
- a port range `lo-hi`: lo..hi (the range is probed in full before giving up, so with a free
  key the search never ends on a taken one);
- DNAT with a port range on 6.12+: the search starts at offset 0, so the first free key from
  lo, and nothing else; on 6.1 at a random offset, so any free key of the range;
- an address range: one address (a jhash of the addresses, seeded with 0 under `persistent`),
  whatever the port search does; the live picks are those of tests/model/test_jhash.py;
- `random` / `random-fully`: step 1 and step 3 are skipped, so the key is searched even when
  the current one is free: any free key of the class (or range), the current one included.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from nat.conn import Conn
from nat.conntrack import Table
from nat.maniptype import ManipType
from nat.nat_core import (
    MAP_IPS,
    PERSISTENT,
    PROTO_RANDOM,
    PROTO_RANDOM_FULLY,
    PROTO_SPECIFIED,
    TupleChoice,
)
from nat.nat_setup import get_unique_tuple, nf_nat_setup_info
from nat.profile import LINUX_6_1, LINUX_LATEST, KernelProfile
from nat.rules.ast import NatFlag, NatRange
from nat.status import Status
from nat.tuple import Proto, Tuple, invert

A = IPv4Address
WAN = A("203.0.113.1")
SERVER = A("203.0.113.10")
NOW = 100.0
EVERY_KEY = range(65536)

# The classes of nf_nat_l4proto_unique_tuple, typed in from the kernel source.
BELOW_512 = set(range(1, 512))
FROM_512 = set(range(600, 1024))
FROM_1024 = set(range(1024, 65536))

_ids = itertools.count(1)


def new_conn(src: A, sport: int, dst: A, dport: int, proto: int = Proto.UDP) -> Conn:
    orig = Tuple(proto, src, dst, sport, dport)
    return Conn(id=next(_ids), orig=orig, reply=invert(orig), created=NOW)


def confirm(table: Table, c: Conn) -> Conn:
    c = replace(c, status=c.status | Status.CONFIRMED, timeout=NOW + 30.0)
    table.insert(c)
    return c


def occupy(table: Table, outside: A, port: int, server: A = SERVER, dport: int = 443,
           proto: int = Proto.UDP) -> None:
    """An entry whose reply tuple is server:dport -> outside:port: that mapping is taken."""
    orig = Tuple(proto, server, outside, dport, port)
    confirm(table, Conn(id=next(_ids), orig=orig, reply=invert(orig), created=NOW))


def src_choice(table: Table, c: Conn, rng: NatRange,
               profile: KernelProfile = LINUX_LATEST) -> TupleChoice:
    return get_unique_tuple(invert(c.reply), rng, c, ManipType.SRC, table, NOW, profile)


def allowed_sports(choice: TupleChoice, template: Tuple) -> set[int]:
    """Every source port the choice accepts with the template's addresses and other port."""
    return {k for k in EVERY_KEY if choice.contains(replace(template, sport=k))}


def allowed_dports(choice: TupleChoice, template: Tuple) -> set[int]:
    return {k for k in EVERY_KEY if choice.contains(replace(template, dport=k))}


def masq(flags: int = 0, lo: int | None = None, hi: int | None = None) -> NatRange:
    if lo is None:
        return NatRange(NatFlag(MAP_IPS | flags), WAN, WAN)
    assert hi is not None
    return NatRange(NatFlag(MAP_IPS | PROTO_SPECIFIED | flags), WAN, WAN, lo, hi)


# --- a clash without a port range: remapped within the class, nothing else ---------------------

@pytest.mark.parametrize(("port", "kernel_set"), [
    (1, BELOW_512), (80, BELOW_512), (511, BELOW_512),
    (512, FROM_512), (550, FROM_512), (599, FROM_512), (600, FROM_512), (1023, FROM_512),
    (1024, FROM_1024), (40010, FROM_1024), (65535, FROM_1024),
])
def test_clash_without_a_range_allows_exactly_the_free_ports_of_the_class(
        port: int, kernel_set: set[int]) -> None:
    table = Table()
    occupy(table, WAN, port)          # a first client already holds WAN:port -> SERVER:443
    occupy(table, WAN, 1000)          # and two more keys, one in the two upper classes each
    occupy(table, WAN, 50000)
    c = new_conn(A("192.168.1.7"), port, SERVER, 443)
    choice = src_choice(table, c, masq())
    template = Tuple(Proto.UDP, WAN, SERVER, port, 443)
    assert allowed_sports(choice, template) == kernel_set - {port, 1000, 50000}
    # Only the outside address and the source port may change.
    assert not choice.contains(replace(template, sport=choice.default.sport, src=A("10.0.0.1")))
    assert not choice.contains(replace(template, sport=choice.default.sport, dport=444))
    assert not choice.may_drop()


def test_without_a_clash_the_port_is_kept_and_nothing_else_is_allowed() -> None:
    table = Table()
    occupy(table, WAN, 40011)
    c = new_conn(A("192.168.1.7"), 40010, SERVER, 443)
    choice = src_choice(table, c, masq())
    assert allowed_sports(choice, Tuple(Proto.UDP, WAN, SERVER, 40010, 443)) == {40010}


def test_icmp_id_clash_allows_every_other_free_id() -> None:
    table = Table()
    first = Conn(id=next(_ids), orig=Tuple.icmp(A("192.168.1.8"), SERVER, 8, 0, 777),
                 reply=invert(Tuple.icmp(A("192.168.1.8"), SERVER, 8, 0, 777)))
    confirm(table, nf_nat_setup_info(first, masq(), ManipType.SRC, table, NOW,
                                     LINUX_LATEST).conn)
    orig = Tuple.icmp(A("192.168.1.9"), SERVER, 8, 0, 777)
    c = Conn(id=next(_ids), orig=orig, reply=invert(orig))
    choice = src_choice(table, c, masq())
    # ICMP ids: 0-65535, whatever the id (no classes).
    allowed = {k for k in EVERY_KEY if choice.contains(Tuple.icmp(WAN, SERVER, 8, 0, k))}
    assert allowed == set(range(65536)) - {777}


# --- an explicit port range ----------------------------------------------------------------------

def test_snat_port_range_allows_exactly_its_free_ports() -> None:
    table = Table()
    for p in (20000, 20001, 20004, 20009):
        occupy(table, WAN, p)
    c = new_conn(A("192.168.1.7"), 40010, SERVER, 443)
    choice = src_choice(table, c, masq(lo=20000, hi=20009))
    assert allowed_sports(choice, Tuple(Proto.UDP, WAN, SERVER, 40010, 443)) == \
        {20002, 20003, 20005, 20006, 20007, 20008}


def test_snat_port_range_given_reversed_is_the_same_range() -> None:
    table = Table()
    occupy(table, WAN, 20003)
    c = new_conn(A("192.168.1.7"), 40010, SERVER, 443)
    choice = src_choice(table, c, masq(lo=20005, hi=20000))
    assert allowed_sports(choice, Tuple(Proto.UDP, WAN, SERVER, 40010, 443)) == \
        {20000, 20001, 20002, 20004, 20005}


def test_snat_port_range_all_taken_allows_only_the_taken_ports_and_may_drop() -> None:
    table = Table()
    for p in range(20000, 20004):
        occupy(table, WAN, p)
    c = new_conn(A("192.168.1.7"), 40010, SERVER, 443)
    choice = src_choice(table, c, masq(lo=20000, hi=20003))
    # One full round from a random start ends on the key before the start: any of the four.
    assert allowed_sports(choice, Tuple(Proto.UDP, WAN, SERVER, 40010, 443)) == \
        {20000, 20001, 20002, 20003}
    assert choice.may_drop()


def test_snat_source_port_inside_the_range_and_free_is_kept_alone() -> None:
    table = Table()
    c = new_conn(A("192.168.1.7"), 20005, SERVER, 443)
    choice = src_choice(table, c, masq(lo=20000, hi=20009))
    assert allowed_sports(choice, Tuple(Proto.UDP, WAN, SERVER, 20005, 443)) == {20005}


BACKEND = A("192.168.1.8")


def dnat_choice(table: Table, c: Conn, profile: KernelProfile) -> TupleChoice:
    rng = NatRange(NatFlag(MAP_IPS | PROTO_SPECIFIED), BACKEND, BACKEND, 7000, 7010)
    return get_unique_tuple(invert(c.reply), rng, c, ManipType.DST, table, NOW, profile)


def _backend_holds(table: Table, ports: list[int]) -> None:
    """Earlier DNATed flows from the same client port: their replies come from BACKEND:p."""
    for p in ports:
        orig = Tuple(Proto.UDP, A("198.51.100.2"), WAN, 5000, 9999)
        reply = Tuple(Proto.UDP, BACKEND, A("198.51.100.2"), p, 5000)
        confirm(table, Conn(id=next(_ids), orig=replace(orig, dport=9000 + p - 7000),
                            reply=reply, created=NOW))


def test_dnat_port_range_on_6_12_and_later_allows_only_the_first_free_port() -> None:
    table = Table()
    _backend_holds(table, [7000, 7001, 7002, 7004])
    c = new_conn(A("198.51.100.2"), 5000, WAN, 9999)
    choice = dnat_choice(table, c, LINUX_LATEST)
    assert allowed_dports(choice, Tuple(Proto.UDP, A("198.51.100.2"), BACKEND, 5000, 9999)) \
        == {7003}


def test_dnat_port_range_on_6_1_allows_every_free_port_of_the_range() -> None:
    table = Table()
    _backend_holds(table, [7000, 7001, 7002, 7004])
    c = new_conn(A("198.51.100.2"), 5000, WAN, 9999)
    choice = dnat_choice(table, c, LINUX_6_1)
    assert allowed_dports(choice, Tuple(Proto.UDP, A("198.51.100.2"), BACKEND, 5000, 9999)) \
        == {7003} | set(range(7005, 7011))


# --- an address range: one address, with and without persistent ---------------------------------

LO, HI = A("203.0.113.10"), A("203.0.113.20")
DEST = A("198.51.100.2")
# Live picks on 6.18.44 (tests/model/test_jhash.py): (client, persistent, address).
LIVE = [
    ("192.0.2.2", False, "203.0.113.15"), ("192.0.2.16", False, "203.0.113.19"),
    ("192.0.2.2", True, "203.0.113.10"), ("192.0.2.10", True, "203.0.113.19"),
]
RANGE_ADDRS = [A(int(LO) + i) for i in range(int(HI) - int(LO) + 1)]


@pytest.mark.parametrize(("client", "persistent", "seen"), LIVE)
def test_address_range_allows_exactly_the_jhash_address(client: str, persistent: bool,
                                                        seen: str) -> None:
    table = Table()
    c = new_conn(A(client), 40010, DEST, 53)
    flags = MAP_IPS | (PERSISTENT if persistent else 0)
    choice = src_choice(table, c, NatRange(NatFlag(flags), LO, HI))
    allowed = {a for a in [*RANGE_ADDRS, A(client), WAN]
               if choice.contains(Tuple(Proto.UDP, a, DEST, 40010, 53))}
    assert allowed == {A(seen)}


@pytest.mark.parametrize("persistent", [False, True])
def test_address_range_with_a_port_clash_allows_the_class_on_that_address_only(
        persistent: bool) -> None:
    client = A("192.0.2.2")
    seen = A("203.0.113.10") if persistent else A("203.0.113.15")
    table = Table()
    occupy(table, seen, 40010, server=DEST, dport=53)
    c = new_conn(client, 40010, DEST, 53)
    flags = MAP_IPS | (PERSISTENT if persistent else 0)
    choice = src_choice(table, c, NatRange(NatFlag(flags), LO, HI))
    for a in RANGE_ADDRS:
        ports = allowed_sports(choice, Tuple(Proto.UDP, a, DEST, 40010, 53))
        assert ports == (FROM_1024 - {40010} if a == seen else set()), a


# --- random and random-fully: searched even without a clash -------------------------------------

@pytest.mark.parametrize("flag", [PROTO_RANDOM, PROTO_RANDOM_FULLY])
@pytest.mark.parametrize(("port", "kernel_set"), [
    (80, BELOW_512), (700, FROM_512), (550, FROM_512), (40010, FROM_1024)])
def test_random_allows_the_whole_class_the_current_port_included(
        flag: int, port: int, kernel_set: set[int]) -> None:
    table = Table()
    occupy(table, WAN, 1000)
    occupy(table, WAN, 300)
    c = new_conn(A("192.168.1.7"), port, SERVER, 443)
    choice = src_choice(table, c, masq(flag))
    assert allowed_sports(choice, Tuple(Proto.UDP, WAN, SERVER, port, 443)) == \
        kernel_set - {1000, 300}


@pytest.mark.parametrize("flag", [PROTO_RANDOM, PROTO_RANDOM_FULLY])
def test_random_with_a_port_range_allows_the_whole_range(flag: int) -> None:
    table = Table()
    occupy(table, WAN, 20002)
    c = new_conn(A("192.168.1.7"), 20005, SERVER, 443)   # inside the range, free: still moved
    choice = src_choice(table, c, masq(flag, 20000, 20009))
    assert allowed_sports(choice, Tuple(Proto.UDP, WAN, SERVER, 20005, 443)) == \
        set(range(20000, 20010)) - {20002}


@pytest.mark.parametrize("flag", [PROTO_RANDOM, PROTO_RANDOM_FULLY])
def test_random_skips_the_sticky_mapping_of_step_1(flag: int) -> None:
    table = Table()
    first = new_conn(A("192.168.1.7"), 40010, SERVER, 443)
    bound = nf_nat_setup_info(first, masq(), ManipType.SRC, table, NOW, LINUX_LATEST)
    confirm(table, bound.conn)
    again = new_conn(A("192.168.1.7"), 40010, A("203.0.113.11"), 443)
    choice = src_choice(table, again, masq(flag))
    # Without the flag the earlier mapping (port 40010) would be reused alone.
    assert allowed_sports(choice, Tuple(Proto.UDP, WAN, A("203.0.113.11"), 40010, 443)) == \
        FROM_1024
