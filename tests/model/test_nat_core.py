"""The NAT core: keeping, reusing and searching tuples, as measured on the live kernel.

Live values (machine-notes, kernel-semantics §4.5): a second client on the same source port is
remapped within the port's class, 80 → 154, 600 → 935, 37611 → 27630; DNAT to :7000-7010 of
colliding flows → 7000, 7001, … on 6.12+; ICMP id 777 → 43280; a router-local flow colliding
with a masqueraded one → null binding moves 45000 → 40792.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nat.conn import Conn
from nat.conntrack import Table
from nat.maniptype import ManipType
from nat.nat_core import (
    MAP_IPS,
    PROTO_OFFSET,
    PROTO_RANDOM,
    PROTO_RANDOM_FULLY,
    PROTO_SPECIFIED,
    port_class,
    seq_has_advanced,
)
from nat.nat_setup import get_unique_tuple, nf_nat_setup_info, null_binding
from nat.profile import LINUX_6_1, LINUX_6_12, LINUX_LATEST, KernelProfile
from nat.proto_tcp import TcpConnState, TcpPeer, after
from nat.rules.ast import NatRange
from nat.status import Status, TcpState
from nat.tuple import Direction, Proto, Tuple, invert

A = IPv4Address
WAN = A("203.0.113.1")
SERVER = A("203.0.113.10")
NOW = 100.0


class FakeTable:
    """Just enough of nat.conntrack.Table: confirmed entries, tuple_taken, lookup, by-source."""

    def __init__(self) -> None:
        self.conns: dict[int, Conn] = {}
        self.bysrc: list[tuple[int, Conn]] = []

    def __len__(self) -> int:
        return len(self.conns)

    def insert(self, c: Conn) -> None:
        self.conns[c.id] = c

    def tuple_taken(self, candidate_reply: Tuple, ignored: Conn, now: float) -> bool:
        for c in self.conns.values():
            if c.id == ignored.id or c.expired(now) or c.zone != ignored.zone:
                continue
            if c.orig == ignored.orig:
                continue
            if candidate_reply in (c.orig, c.reply):
                return True
        return False

    def lookup(self, t: Tuple, zone: int, now: float) -> tuple[Conn, Direction] | None:
        for c in self.conns.values():
            if c.expired(now) or c.zone != zone:
                continue
            if c.orig == t:
                return c, Direction.ORIGINAL
            if c.reply == t:
                return c, Direction.REPLY
        return None

    def by_source(self, proto: int, src: IPv4Address, sport: int, zone: int) -> list[Conn]:
        current = [(seq, self.conns.get(c.id, c)) for seq, c in self.bysrc]
        hits = [(seq, c) for seq, c in current
                if c.orig.proto == proto and c.orig.src == src and c.orig.sport == sport
                and c.zone == zone]
        return [c for _, c in sorted(hits, key=lambda h: -h[0])]

    def add_by_source(self, conn: Conn, seq: int) -> None:
        self.bysrc.append((seq, conn))


Space = FakeTable | Table


@pytest.fixture(params=[FakeTable, Table], ids=["fake", "table"])
def table(request: pytest.FixtureRequest) -> Space:
    """Each test runs on the test's own fake and on nat.conntrack.Table."""
    made: Space = request.param()
    return made


_ids = itertools.count(1)


def new_conn(src: str, sport: int, dst: str, dport: int, proto: int = Proto.UDP,
             **kw: object) -> Conn:
    orig = Tuple(proto, A(src), A(dst), sport, dport)
    return Conn(id=next(_ids), orig=orig, reply=invert(orig), created=NOW, **kw)  # type: ignore[arg-type]


def confirm(table: Space, c: Conn, life: float = 30.0) -> Conn:
    c = replace(c, status=c.status | Status.CONFIRMED, timeout=NOW + life)
    table.insert(c)
    return c


def masq(port_lo: int | None = None, port_hi: int | None = None, flags: int = 0) -> NatRange:
    if port_lo is None:
        return NatRange(MAP_IPS | flags, WAN, WAN)
    return NatRange(MAP_IPS | PROTO_SPECIFIED | flags, WAN, WAN, port_lo,
                   port_hi if port_hi is not None else port_lo)


def snat_and_confirm(table: Space, c: Conn, rng: NatRange,
                     profile: KernelProfile = LINUX_LATEST) -> Conn:
    res = nf_nat_setup_info(c, rng, ManipType.SRC, table, NOW, profile)
    return confirm(table, res.conn)


def src_of(c: Conn) -> Tuple:
    """What the original direction looks like after the binding."""
    return invert(c.reply)


# --- keeping the port, remapping within the class -------------------------------------------

@pytest.mark.parametrize(("port", "live", "lo", "hi"), [
    (80, 154, 1, 511),
    (600, 935, 600, 1023),
    (37611, 27630, 1024, 65535),
    (1023, 957, 600, 1023),
    (550, 601, 600, 1023),
])
def test_second_client_is_remapped_within_the_port_class(port: int, live: int, lo: int,
                                                         hi: int, table: Space) -> None:
    first = snat_and_confirm(table, new_conn("192.168.1.8", port, str(SERVER), 443), masq())
    assert src_of(first) == Tuple(Proto.UDP, WAN, SERVER, port, 443)  # kept
    assert first.status & Status.SRC_NAT  # the address changed

    second = new_conn("192.168.1.9", port, str(SERVER), 443)
    choice = get_unique_tuple(invert(second.reply), masq(), second, ManipType.SRC, table,
                              NOW, LINUX_LATEST)
    assert choice.contains(Tuple(Proto.UDP, WAN, SERVER, live, 443))
    assert not choice.contains(Tuple(Proto.UDP, WAN, SERVER, port, 443))   # taken
    assert not choice.contains(Tuple(Proto.UDP, WAN, SERVER, lo - 1, 443))  # out of class
    if hi < 65535:
        assert not choice.contains(Tuple(Proto.UDP, WAN, SERVER, hi + 1, 443))
    assert not choice.contains(Tuple(Proto.UDP, WAN, SERVER, live, 444))   # other fields fixed
    assert not choice.contains(Tuple(Proto.UDP, A("203.0.113.2"), SERVER, live, 443))
    assert not choice.determined and not choice.may_drop()
    assert lo <= choice.default.sport <= hi and choice.default.sport != port
    assert f"{lo}-{hi}" in choice.describe()
    if lo <= port <= hi:
        assert f"except {port}" in choice.describe()


def test_class_boundaries() -> None:
    assert (port_class(511).min, port_class(511).size) == (1, 511)
    assert (port_class(512).min, port_class(512).size) == (600, 424)  # 512-599 never chosen
    assert (port_class(1024).min, port_class(1024).size) == (1024, 64512)


def test_setup_info_sets_bits_and_records_by_source(table: Space) -> None:
    c = new_conn("192.168.1.8", 5000, str(SERVER), 53)
    res = nf_nat_setup_info(c, masq(), ManipType.SRC, table, NOW, LINUX_LATEST)
    assert res.conn.status & Status.SRC_NAT and res.conn.status & Status.SRC_NAT_DONE
    assert not res.conn.status & Status.DST_NAT_DONE
    assert res.conn.reply == Tuple(Proto.UDP, SERVER, WAN, 53, 5000)
    assert res.conn.orig == c.orig
    stored = confirm(table, res.conn)
    assert table.by_source(Proto.UDP, A("192.168.1.8"), 5000, 0) == [stored]
    assert stored.src_bound_seq == c.id
    assert res.choice is not None and res.choice.determined
    assert not res.tuple_in_use and res.notes


def test_setup_info_on_confirmed_entry_does_nothing_and_twice_is_an_error(table: Space) -> None:
    c = confirm(table, new_conn("192.168.1.8", 5000, str(SERVER), 53))
    res = nf_nat_setup_info(c, masq(), ManipType.SRC, table, NOW, LINUX_LATEST)
    assert res.conn == c and res.choice is None
    d = new_conn("192.168.1.8", 5001, str(SERVER), 53)
    done = nf_nat_setup_info(d, masq(), ManipType.SRC, table, NOW, LINUX_LATEST).conn
    with pytest.raises(ValueError, match="already set up"):
        nf_nat_setup_info(done, masq(), ManipType.SRC, table, NOW, LINUX_LATEST)


def test_choose_must_pick_an_allowed_tuple(table: Space) -> None:
    snat_and_confirm(table, new_conn("192.168.1.8", 37611, str(SERVER), 443), masq())
    c = new_conn("192.168.1.9", 37611, str(SERVER), 443)
    observed = Tuple(Proto.UDP, WAN, SERVER, 27630, 443)
    res = nf_nat_setup_info(c, masq(), ManipType.SRC, table, NOW, LINUX_LATEST,
                            choose=lambda ch: ch.adopt(observed))
    assert src_of(res.conn) == observed
    with pytest.raises(ValueError, match="not an allowed binding"):
        nf_nat_setup_info(c, masq(), ManipType.SRC, table, NOW, LINUX_LATEST,
                          choose=lambda ch: replace(observed, sport=37611))


def test_rand_follows_one_draw_exactly(table: Space) -> None:
    snat_and_confirm(table, new_conn("192.168.1.8", 37611, str(SERVER), 443), masq())
    c = new_conn("192.168.1.9", 37611, str(SERVER), 443)
    got = get_unique_tuple(invert(c.reply), masq(), c, ManipType.SRC, table, NOW, LINUX_LATEST,
                           rand=lambda: 5)
    assert got.determined and got.default.sport == 1024 + 5
    # Start offset 36587 lands on 37611, which is taken: the next one is probed.
    got = get_unique_tuple(invert(c.reply), masq(), c, ManipType.SRC, table, NOW, LINUX_LATEST,
                           rand=lambda: 37611 - 1024)
    assert got.default.sport == 37612


# --- random flags ---------------------------------------------------------------------------

@pytest.mark.parametrize("flag", [PROTO_RANDOM, PROTO_RANDOM_FULLY])
def test_random_is_a_full_class_choice_even_without_collision(flag: int, table: Space) -> None:
    c = new_conn("192.168.1.8", 40010, str(SERVER), 443)
    choice = get_unique_tuple(invert(c.reply), masq(flags=flag), c, ManipType.SRC, table, NOW,
                              LINUX_LATEST)
    assert not choice.determined
    for port in (40010, 14988, 29931, 26629, 55283, 1024, 65535):  # live --random picks
        assert choice.contains(Tuple(Proto.UDP, WAN, SERVER, port, 443))
    assert not choice.contains(Tuple(Proto.UDP, WAN, SERVER, 1023, 443))


# --- sticky mapping (find_appropriate_src) --------------------------------------------------

def test_sticky_mapping_across_destinations(table: Space) -> None:
    snat_and_confirm(table, new_conn("192.168.1.8", 40000, str(SERVER), 443), masq())
    # Second client, same port, same server: remapped (follow the kernel's pick 51483).
    c2 = new_conn("192.168.1.9", 40000, str(SERVER), 443)
    res = nf_nat_setup_info(c2, masq(), ManipType.SRC, table, NOW, LINUX_LATEST,
                            choose=lambda ch: ch.adopt(Tuple(Proto.UDP, WAN, SERVER, 51483, 443)))
    confirm(table, res.conn)
    # The same inside (address, port) to another server keeps the outside port 51483, even
    # though 40000 would be free there.
    other = A("198.51.100.7")
    c3 = new_conn("192.168.1.9", 40000, str(other), 8080)
    choice = get_unique_tuple(invert(c3.reply), masq(), c3, ManipType.SRC, table, NOW,
                              LINUX_LATEST)
    assert choice.determined
    assert choice.default == Tuple(Proto.UDP, WAN, other, 51483, 8080)
    assert "earlier connection" in choice.reason
    # The first client keeps its own (unchanged) port towards the new server too.
    c4 = new_conn("192.168.1.8", 40000, str(other), 8080)
    got = get_unique_tuple(invert(c4.reply), masq(), c4, ManipType.SRC, table, NOW, LINUX_LATEST)
    assert got.default == Tuple(Proto.UDP, WAN, other, 40000, 8080)


def test_sticky_mapping_of_an_expired_entry_allows_both_outcomes(table: Space) -> None:
    snat_and_confirm(table, new_conn("192.168.1.8", 40000, str(SERVER), 443), masq())
    c2 = new_conn("192.168.1.9", 40000, str(SERVER), 443)
    res = nf_nat_setup_info(c2, masq(), ManipType.SRC, table, NOW, LINUX_LATEST,
                            choose=lambda ch: ch.adopt(Tuple(Proto.UDP, WAN, SERVER, 51483, 443)))
    table.insert(replace(res.conn, status=res.conn.status | Status.CONFIRMED, timeout=NOW + 1))
    later = NOW + 5  # expired, maybe not yet reaped
    other = A("198.51.100.7")
    c3 = new_conn("192.168.1.9", 40000, str(other), 8080)
    choice = get_unique_tuple(invert(c3.reply), masq(), c3, ManipType.SRC, table, later,
                              LINUX_LATEST)
    assert choice.contains(Tuple(Proto.UDP, WAN, other, 51483, 8080))
    assert choice.contains(Tuple(Proto.UDP, WAN, other, 40000, 8080))
    assert not choice.contains(Tuple(Proto.UDP, WAN, other, 40001, 8080))


def test_sticky_mapping_outside_the_range_is_not_used(table: Space) -> None:
    snat_and_confirm(table, new_conn("192.168.1.8", 40000, str(SERVER), 443), masq())
    c2 = new_conn("192.168.1.9", 40000, str(SERVER), 443)
    res = nf_nat_setup_info(c2, masq(), ManipType.SRC, table, NOW, LINUX_LATEST,
                            choose=lambda ch: ch.adopt(Tuple(Proto.UDP, WAN, SERVER, 51483, 443)))
    confirm(table, res.conn)
    # Now a rule with a port range that excludes 51483: the mapping does not fit.
    c3 = new_conn("192.168.1.9", 40000, "198.51.100.7", 8080)
    choice = get_unique_tuple(invert(c3.reply), masq(2000, 3000), c3, ManipType.SRC, table,
                              NOW, LINUX_LATEST)
    assert all(2000 <= m.sport <= 3000 for m in [choice.default])
    assert not choice.contains(Tuple(Proto.UDP, WAN, A("198.51.100.7"), 51483, 8080))


# --- IP from a range ------------------------------------------------------------------------

def test_snat_address_range_uses_the_jhash_pick(table: Space) -> None:
    from nat.jhash import pick_ip
    lo, hi = A("203.0.113.10"), A("203.0.113.20")
    for i in range(2, 12):
        c = new_conn(f"192.0.2.{i}", 40000 + i, "198.51.100.2", 5000)
        choice = get_unique_tuple(invert(c.reply), NatRange(MAP_IPS, lo, hi), c, ManipType.SRC,
                                  table, NOW, LINUX_LATEST)
        want = pick_ip(A(f"192.0.2.{i}"), A("198.51.100.2"), lo, hi, 0, False)
        assert choice.determined
        assert choice.default == Tuple(Proto.UDP, want, A("198.51.100.2"), 40000 + i, 5000)


def test_source_already_inside_the_range_is_kept(table: Space) -> None:
    c = new_conn("203.0.113.15", 40000, "198.51.100.2", 5000)
    rng = NatRange(MAP_IPS, A("203.0.113.10"), A("203.0.113.20"))
    choice = get_unique_tuple(invert(c.reply), rng, c, ManipType.SRC, table, NOW, LINUX_LATEST)
    assert choice.determined and choice.default == c.orig


# --- DNAT -----------------------------------------------------------------------------------

def dnat(addr: str, lo: int | None = None, hi: int | None = None) -> NatRange:
    if lo is None:
        return NatRange(MAP_IPS, A(addr), A(addr))
    return NatRange(MAP_IPS | PROTO_SPECIFIED, A(addr), A(addr), lo, hi if hi is not None else lo)


@pytest.mark.parametrize("profile", [LINUX_6_1, LINUX_6_12, LINUX_LATEST])
def test_dnat_without_ports_never_changes_the_port(profile: KernelProfile, table: Space) -> None:
    c1 = new_conn("10.0.0.2", 37611, "10.0.0.1", 9999)
    r1 = nf_nat_setup_info(c1, dnat("192.168.1.8"), ManipType.DST, table, NOW, profile)
    assert r1.conn.reply == Tuple(Proto.UDP, A("192.168.1.8"), A("10.0.0.2"), 9999, 37611)
    assert r1.conn.status & Status.DST_NAT and r1.conn.status & Status.DST_NAT_DONE
    confirm(table, r1.conn)
    # Same client port to a second gateway address mapped to the same server: reply tuple
    # taken, but DNAT without ports keeps the port anyway (the clash happens at confirm).
    c2 = new_conn("10.0.0.2", 37611, "10.0.0.3", 9999)
    r2 = nf_nat_setup_info(c2, dnat("192.168.1.8"), ManipType.DST, table, NOW, profile)
    assert r2.choice is not None and r2.choice.determined and r2.choice.may_drop()
    assert invert(r2.conn.reply).dport == 9999 and r2.tuple_in_use


@pytest.mark.parametrize("profile", [LINUX_6_12, LINUX_LATEST])
def test_dnat_port_range_is_sequential_from_min_on_6_12_and_later(
        profile: KernelProfile, table: Space) -> None:
    got = []
    for dport in range(1000, 1005):
        c = new_conn("10.0.0.2", 5555, "10.0.0.1", dport)
        res = nf_nat_setup_info(c, dnat("192.168.1.8", 7000, 7010), ManipType.DST, table,
                                NOW, profile)
        assert res.choice is not None and res.choice.determined
        confirm(table, res.conn)
        got.append(invert(res.conn.reply).dport)
    assert got == [7000, 7001, 7002, 7003, 7004]


def test_dnat_port_range_on_6_1_is_any_free_port_in_range(table: Space) -> None:
    c1 = new_conn("10.0.0.2", 5555, "10.0.0.1", 1000)
    r1 = nf_nat_setup_info(c1, dnat("192.168.1.8", 7000, 7010), ManipType.DST, table, NOW,
                           LINUX_6_1, choose=lambda ch: ch.adopt(
                               Tuple(Proto.UDP, A("10.0.0.2"), A("192.168.1.8"), 5555, 7007)))
    confirm(table, r1.conn)
    c2 = new_conn("10.0.0.2", 5555, "10.0.0.1", 1001)
    choice = get_unique_tuple(invert(c2.reply), dnat("192.168.1.8", 7000, 7010), c2,
                              ManipType.DST, table, NOW, LINUX_6_1)
    ports = {p for p in range(6990, 7020)
             if choice.contains(Tuple(Proto.UDP, A("10.0.0.2"), A("192.168.1.8"), 5555, p))}
    assert ports == set(range(7000, 7011)) - {7007}


def test_dnat_port_inside_the_range_and_free_is_kept(table: Space) -> None:
    c = new_conn("10.0.0.2", 5555, "10.0.0.1", 7005)
    choice = get_unique_tuple(invert(c.reply), dnat("192.168.1.8", 7000, 7010), c,
                              ManipType.DST, table, NOW, LINUX_LATEST)
    assert choice.determined and choice.default.dport == 7005


def test_single_port_range_in_use_is_kept_and_dropped_at_confirm(table: Space) -> None:
    c1 = new_conn("10.0.0.2", 5555, "10.0.0.1", 80)
    confirm(table, nf_nat_setup_info(c1, dnat("192.168.1.8", 8080), ManipType.DST, table, NOW,
                                     LINUX_LATEST).conn)
    c2 = new_conn("10.0.0.2", 5555, "10.0.0.3", 80)
    res = nf_nat_setup_info(c2, dnat("192.168.1.8", 8080), ManipType.DST, table, NOW,
                            LINUX_LATEST)
    assert res.choice is not None and res.choice.determined and res.choice.may_drop()
    assert invert(res.conn.reply).dport == 8080 and res.tuple_in_use


def test_proto_offset_maps_deterministically(table: Space) -> None:
    rng = NatRange(MAP_IPS | PROTO_SPECIFIED | PROTO_OFFSET, A("192.168.1.8"), A("192.168.1.8"),
                  8000, 8099, 1000)
    c = new_conn("10.0.0.2", 5555, "10.0.0.1", 1005)
    choice = get_unique_tuple(invert(c.reply), rng, c, ManipType.DST, table, NOW, LINUX_6_1)
    assert choice.determined and choice.default.dport == 8005


# --- ICMP and the null binding --------------------------------------------------------------

def test_icmp_id_remap_on_collision(table: Space) -> None:
    def ping(src: str) -> Conn:
        orig = Tuple.icmp(A(src), SERVER, 8, 0, 777)
        return Conn(id=next(_ids), orig=orig, reply=invert(orig))
    first = snat_and_confirm(table, ping("192.168.1.8"), masq())
    assert src_of(first).icmp_id == 777
    c = ping("192.168.1.9")
    choice = get_unique_tuple(invert(c.reply), masq(), c, ManipType.SRC, table, NOW, LINUX_LATEST)
    for live in (43280, 61269, 15551, 0, 65535):
        assert choice.contains(Tuple.icmp(WAN, SERVER, 8, 0, live))
    assert not choice.contains(Tuple.icmp(WAN, SERVER, 8, 0, 777))
    assert "0-65535" in choice.describe()


def test_null_binding_moves_a_colliding_source_port(table: Space) -> None:
    router = A("198.51.100.1")
    server = A("198.51.100.2")
    rng = NatRange(MAP_IPS, router, router)
    client = new_conn("192.0.2.10", 45000, str(server), 53)
    confirm(table, nf_nat_setup_info(client, rng, ManipType.SRC, table, NOW, LINUX_LATEST).conn)
    local = new_conn(str(router), 45000, str(server), 53)
    res = null_binding(local, ManipType.SRC, table, NOW, LINUX_LATEST,
                       choose=lambda ch: ch.adopt(Tuple(Proto.UDP, router, server, 40792, 53)))
    assert res.conn.reply == Tuple(Proto.UDP, server, router, 53, 40792)
    assert res.conn.status & Status.SRC_NAT and res.conn.status & Status.SRC_NAT_DONE
    assert res.choice is not None
    assert not res.choice.contains(Tuple(Proto.UDP, router, server, 45000, 53))
    assert "null binding" in res.notes[0]


def test_null_binding_without_collision_changes_nothing(table: Space) -> None:
    c = new_conn("192.0.2.10", 45000, "198.51.100.2", 53)
    for manip in (ManipType.DST, ManipType.SRC):
        res = null_binding(c, manip, table, NOW, LINUX_LATEST)
        c = res.conn
    assert c.reply == invert(c.orig)
    assert c.status == Status.SRC_NAT_DONE | Status.DST_NAT_DONE  # e.g. 0x18a once replied


def test_generic_protocol_has_nothing_to_search(table: Space) -> None:
    c1 = new_conn("192.168.1.8", 0, str(SERVER), 0, proto=47)
    snat_and_confirm(table, c1, masq())
    c2 = new_conn("192.168.1.8", 0, str(SERVER), 0, proto=47)
    c2 = replace(c2, orig=replace(c2.orig, src=A("192.168.1.9")),
                 reply=invert(replace(c2.orig, src=A("192.168.1.9"))))
    choice = get_unique_tuple(invert(c2.reply), masq(), c2, ManipType.SRC, table, NOW,
                              LINUX_LATEST)
    assert choice.determined and choice.may_drop()


# --- 6.12 differences -----------------------------------------------------------------------

def test_reverse_direction_race_is_not_a_collision_on_6_12(table: Space) -> None:
    e = confirm(table, new_conn("10.0.0.2", 5000, "10.0.0.3", 6000))
    # A new entry that is e seen from the other side (a race between two CPUs).
    c = Conn(id=next(_ids), orig=e.reply, reply=e.orig)
    rng = NatRange(MAP_IPS, A("10.0.0.3"), A("10.0.0.3"))
    old = get_unique_tuple(invert(c.reply), rng, c, ManipType.SRC, table, NOW, LINUX_6_1)
    new = get_unique_tuple(invert(c.reply), rng, c, ManipType.SRC, table, NOW, LINUX_LATEST)
    assert new.determined and new.default == c.orig
    assert not old.contains(c.orig)


def tcp_state(state: TcpState, orig_end: int) -> TcpConnState:
    """The TCP part of an entry whose originator's data ends at `orig_end` (seen[0].td_end)."""
    return TcpConnState(state=state, seen=(TcpPeer(end=orig_end), TcpPeer()))


def test_time_wait_entry_may_be_evicted_on_6_12_only(table: Space) -> None:
    """Live (6.18.44): MASQUERADE --to-ports 1000-1001; 192.0.2.2:40000 and 192.0.2.3:40000
    connect to 198.51.100.2:443 and close (TIME_WAIT, ports 1000 and 1001); a SYN from
    192.0.2.4:40000 connected, on port 1001, and the .3 entry was gone."""
    rng = masq(1000, 1001)
    server = A("198.51.100.2")
    for port, client in ((1000, "192.0.2.2"), (1001, "192.0.2.3")):
        c = new_conn(client, 40000, str(server), 443, proto=Proto.TCP,
                     proto_state=tcp_state(TcpState.TIME_WAIT, 5000))
        want = Tuple(Proto.TCP, WAN, server, port, 443)
        res = nf_nat_setup_info(c, rng, ManipType.SRC, table, NOW, LINUX_LATEST,
                                choose=lambda ch, w=want: ch.adopt(w))  # type: ignore[misc]
        confirm(table, res.conn, life=120)
    syn = new_conn("192.0.2.4", 40000, str(server), 443, proto=Proto.TCP,
                   proto_state=tcp_state(TcpState.SYN_SENT, 9001))
    choice = get_unique_tuple(invert(syn.reply), rng, syn, ManipType.SRC, table, NOW,
                              LINUX_LATEST)
    both = [Tuple(Proto.TCP, WAN, server, p, 443) for p in (1000, 1001)]
    assert all(choice.contains(t) for t in both)
    live = both[1]
    res = nf_nat_setup_info(syn, rng, ManipType.SRC, table, NOW, LINUX_LATEST,
                            choose=lambda ch: ch.adopt(live))
    assert len(res.evicted) == 1 and not res.tuple_in_use
    evicted = table.get(res.evicted[0]) if isinstance(table, Table) else table.conns[res.evicted[0]]
    assert evicted is not None and evicted.orig.src == A("192.0.2.3")
    old = nf_nat_setup_info(syn, rng, ManipType.SRC, table, NOW, LINUX_6_1)
    assert old.tuple_in_use and not old.evicted  # 6.1: gives up, clash at confirm
    assert old.choice is not None and old.choice.may_drop()


# --- properties -----------------------------------------------------------------------------

def _table_with_ports(ports: list[int], kind: type[Space], proto: int = Proto.UDP) -> Space:
    table = kind()
    for i, port in enumerate(ports):
        c = new_conn(f"10.1.{i // 250}.{i % 250 + 1}", port, str(SERVER), 443, proto=proto)
        table.insert(replace(c, reply=Tuple(proto, SERVER, WAN, 443, port),
                             status=Status.CONFIRMED | Status.SRC_NAT | Status.SRC_NAT_DONE,
                             timeout=NOW + 30))
    return table


profiles = st.sampled_from([LINUX_6_1, LINUX_6_12, LINUX_LATEST])
kinds: st.SearchStrategy[type[Space]] = st.sampled_from([FakeTable, Table])


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(1000, 1015), max_size=16), st.integers(1000, 1015),
       st.lists(st.integers(0, 65535), min_size=8, max_size=8), profiles, kinds)
def test_every_member_is_free_unless_the_choice_may_drop(
        used: set[int], want: int, draws: list[int], profile: KernelProfile,
        kind: type[Space]) -> None:
    table = _table_with_ports(sorted(used), kind)
    rng = masq(1000, 1015)
    c = new_conn("192.168.1.50", want, str(SERVER), 443)
    choice = get_unique_tuple(invert(c.reply), rng, c, ManipType.SRC, table, NOW, profile)
    members = [p for p in range(990, 1030)
               if choice.contains(Tuple(Proto.UDP, WAN, SERVER, p, 443))]
    assert members, "a choice is never empty"
    assert all(1000 <= p <= 1015 for p in members)
    free = set(range(1000, 1016)) - used
    if free:
        assert not choice.may_drop()
        assert set(members) == ({want} if want in free else free)
    else:
        assert choice.may_drop()
    # Following one draw of the kernel's random numbers lands inside the allowed set.
    it = iter(draws * 40)
    one = get_unique_tuple(invert(c.reply), rng, c, ManipType.SRC, table, NOW, profile,
                           rand=lambda: next(it))
    assert choice.contains(one.default)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1024, 1024 + 400), max_size=300, unique=True),
       st.lists(st.integers(0, 65535), min_size=10, max_size=10), profiles,
       st.sampled_from([0, PROTO_RANDOM]), kinds)
def test_class_search_result_is_always_allowed_and_free(
        used: list[int], draws: list[int], profile: KernelProfile, flags: int,
        kind: type[Space]) -> None:
    table = _table_with_ports(used, kind)
    rng = masq(flags=flags)
    want = used[0] if used else 1500
    c = new_conn("192.168.1.50", want, str(SERVER), 443)
    choice = get_unique_tuple(invert(c.reply), rng, c, ManipType.SRC, table, NOW, profile)
    it = iter(draws * 40)
    one = get_unique_tuple(invert(c.reply), rng, c, ManipType.SRC, table, NOW, profile,
                           rand=lambda: next(it)).default
    assert choice.contains(one)
    assert choice.contains(choice.default)
    for m in (one, choice.default):
        taken = table.tuple_taken(invert(m), c, NOW)
        assert not taken or choice.may_drop()
    if not used or len(used) < 128:
        assert not choice.may_drop()  # no window of 128 used ports: the search cannot fail
    for p in used:
        assert not choice.contains(Tuple(Proto.UDP, WAN, SERVER, p, 443)) or choice.may_drop()


# --- kernel profiles and the Choice type ----------------------------------------------------

@pytest.mark.parametrize(("release", "name"), [
    ("6.1.0-28-amd64", "6.1"),
    ("6.1.192", "6.1"),
    ("5.10.0-30-amd64", "6.1"),
    ("6.11.3", "6.1"),
    ("6.12.117-1", "6.12"),
    ("6.12.0", "6.12"),
    ("6.13.1", "6.18"),
    ("6.18.44-fc-v595", "6.18"),
    ("7.2.13", "6.18"),
    ("weird", "6.18"),
])
def test_profile_for_release(release: str, name: str) -> None:
    from nat.profile import profile_for_release
    assert profile_for_release(release).name == name


def test_profiles_differ_as_appendix_a_says() -> None:
    assert not LINUX_6_1.dnat_port_search_from_min and LINUX_6_12.dnat_port_search_from_min
    assert LINUX_LATEST.dnat_port_search_from_min and LINUX_LATEST.tcp_timewait_eviction
    assert LINUX_6_1.clash_merge == "6.1" and LINUX_LATEST.clash_merge == "6.12"
    assert LINUX_6_12.rst_timeout == "unack300"
    assert LINUX_6_1.rst_timeout == LINUX_LATEST.rst_timeout == "close10"


def test_choice_basics() -> None:
    from nat.choice import Choice, NotAllowed
    one = Choice.only(7)
    assert one.determined and one.contains(7) and not one.contains(8)
    assert one.enumerate() == (7,)
    some = Choice.among([3, 1, 3, 2])
    assert some.enumerate() == (3, 1, 2) and some.default == 3 and not some.determined
    big = Choice.where(lambda p: 1024 <= p <= 65535 and p != 37611, 1024,
                       "any free port in 1024-65535 except 37611")
    assert big.enumerate() is None and big.contains(27630) and not big.contains(37611)
    assert big.adopt(27630) == 27630
    with pytest.raises(NotAllowed, match="except 37611"):
        big.adopt(37611)
    both = one.union(some)
    assert both.default == 7 and both.contains(2) and not both.contains(9)
    assert both.enumerate() == (7, 3, 1, 2)
    with pytest.raises(ValueError, match="not in its own choice"):
        Choice.where(lambda p: p > 5, 1, "more than 5")
    with pytest.raises(ValueError, match="at least one"):
        Choice.among([])


def _time_wait_holder_and_syn(table: Space, old_end: int, new_end: int) -> tuple[Conn, Conn]:
    rng = masq(1000, 1000)
    server = A("198.51.100.2")
    c = new_conn("192.0.2.2", 40000, str(server), 443, proto=Proto.TCP,
                 proto_state=tcp_state(TcpState.TIME_WAIT, old_end))
    res = nf_nat_setup_info(c, rng, ManipType.SRC, table, NOW, LINUX_LATEST)
    held = confirm(table, res.conn, life=120)
    syn = new_conn("192.0.2.4", 40000, str(server), 443, proto=Proto.TCP,
                   proto_state=tcp_state(TcpState.SYN_SENT, new_end))
    return held, syn


@pytest.mark.parametrize(("old_end", "new_end", "evicts"), [
    (1000002, 11, False),               # masq-timewait-keep: the SYN's sequence is older
    (1000002, 2000001, True),           # masq-timewait-evict: it has advanced
    (1000002, 1000002, False),          # equal is not "advanced"
    (0xFFFFFFF0, 5, True),              # 32-bit serial arithmetic: 5 comes after 0xFFFFFFF0
    (5, 0x80000005, False),             # exactly half the space away counts as before
])
def test_eviction_needs_the_sequence_to_have_advanced(table: Space, old_end: int, new_end: int,
                                                      evicts: bool) -> None:
    """nf_seq_has_advanced(): (s32)(new.seen[0].td_end - old.seen[0].td_end) > 0."""
    held, syn = _time_wait_holder_and_syn(table, old_end, new_end)
    rng = masq(1000, 1000)
    res = nf_nat_setup_info(syn, rng, ManipType.SRC, table, NOW, LINUX_LATEST)
    assert res.choice is not None and res.choice.determined
    assert res.evicted == ((held.id,) if evicts else ())
    assert res.tuple_in_use is not evicts
    assert res.choice.may_drop() is not evicts


@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))
def test_seq_has_advanced_is_serial_after(old_end: int, new_end: int) -> None:
    old = new_conn("192.0.2.2", 1, "198.51.100.2", 2, proto=Proto.TCP,
                   proto_state=tcp_state(TcpState.TIME_WAIT, old_end))
    new = new_conn("192.0.2.3", 1, "198.51.100.2", 2, proto=Proto.TCP,
                   proto_state=tcp_state(TcpState.SYN_SENT, new_end))
    diff = (new_end - old_end) & 0xFFFFFFFF
    signed = diff - (1 << 32) if diff >= 1 << 31 else diff
    assert seq_has_advanced(old, new) is (signed > 0)
    assert seq_has_advanced(old, new) is after(new_end, old_end)
