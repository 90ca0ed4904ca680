"""The indexes that keep the model's NAT fast with many entries (found by `natlab bench`):
Table.held_keys / earliest_expiry / by_source, and the port search's bisection shortcut.

Each is checked against the slow answer it replaces: a brute-force reading of the table, and
get_unique_tuple on a table that hides the index (so it probes key by key).
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from nat.conn import Conn
from nat.conntrack import Table
from nat.maniptype import ManipType
from nat.nat_core import MAP_IPS, PROTO_SPECIFIED, IndexedTupleSpace
from nat.nat_setup import get_unique_tuple
from nat.profile import LINUX_6_1, LINUX_LATEST
from nat.rules.ast import NatRange
from nat.status import Status
from nat.tuple import Direction, Proto, Tuple, invert

A = IPv4Address
WAN = A("203.0.113.1")
SERVERS = (A("198.51.100.1"), A("198.51.100.2"))
CLIENTS = (A("192.168.1.2"), A("192.168.1.3"), A("192.168.1.4"))
NOW = 100.0


class Unindexed:
    """A Table seen only through the TupleSpace protocol: the port search probes each key."""

    def __init__(self, table: Table) -> None:
        self.t = table

    def tuple_taken(self, candidate_reply: Tuple, ignored: Conn, now: float) -> bool:
        return self.t.tuple_taken(candidate_reply, ignored, now)

    def lookup(self, t: Tuple, zone: int, now: float) -> tuple[Conn, Direction] | None:
        return self.t.lookup(t, zone, now)

    def by_source(self, proto: int, src: IPv4Address, sport: int, zone: int) -> list[Conn]:
        return self.t.by_source(proto, src, sport, zone)

    def add_by_source(self, conn: Conn, seq: int) -> None:
        self.t.add_by_source(conn, seq)

    def __len__(self) -> int:
        return len(self.t)


def conn(id_: int, proto: int, src: IPv4Address, sport: int, dst: IPv4Address, dport: int,
         timeout: float = NOW + 30, zone: int = 0) -> Conn:
    orig = Tuple(proto, src, dst, sport, dport)
    return Conn(id_, orig, invert(orig), Status.CONFIRMED, timeout=timeout, zone=zone)


def masqueraded(id_: int, proto: int, client: IPv4Address, sport: int, server: IPv4Address,
                dport: int, outside_port: int, timeout: float) -> Conn:
    c = conn(id_, proto, client, sport, server, dport, timeout)
    return replace(c, reply=Tuple(proto, server, WAN, dport, outside_port),
                   status=c.status | Status.SRC_NAT | Status.SRC_NAT_DONE)


# --- the table's indexes against brute force ---------------------------------------------------

ops = st.lists(st.tuples(
    st.sampled_from(["insert", "delete", "retime", "bind"]),
    st.integers(1, 12),                       # entry id
    st.sampled_from([Proto.UDP, Proto.TCP]),
    st.sampled_from(CLIENTS), st.integers(1000, 1003),
    st.sampled_from(SERVERS), st.integers(53, 54),
    st.integers(0, 1),                        # zone
    st.floats(90, 110),                       # timeout
), max_size=40)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_indexes_agree_with_brute_force(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    t = Table()
    for op, id_, proto, client, sport, server, dport, zone, timeout in steps:
        c = conn(id_, proto, client, sport, server, dport, timeout, zone)
        if op == "insert" and id_ not in t and t.find_clash(c, 0.0) is None:
            t.insert(c)
        elif op == "delete":
            t.delete(id_)
        elif op == "retime" and id_ in t:
            old = t.get(id_)
            assert old is not None
            t.replace(replace(old, timeout=timeout))
        elif op == "bind":
            t.add_by_source(t.get(id_) or c, int(timeout))
    held = {(x, c.zone) for c in t for x in (c.orig, c.reply)}
    addresses = CLIENTS + SERVERS
    for proto in (Proto.UDP, Proto.TCP):
        for src in addresses:
            for dst in addresses:
                for fixed in (53, 54, 1000, 1001, 1002, 1003):
                    for zone in (0, 1):
                        probe = Tuple(proto, src, dst, fixed, fixed)
                        assert list(t.held_keys(probe, "sport", zone)) == sorted(
                            x.sport for x, z in held if z == zone
                            and (x.proto, x.src, x.dst, x.dport) == (proto, src, dst, fixed))
                        assert list(t.held_keys(probe, "dport", zone)) == sorted(
                            x.dport for x, z in held if z == zone
                            and (x.proto, x.src, x.dst, x.sport) == (proto, src, dst, fixed))
    assert t.earliest_expiry() == (min(c.timeout for c in t) if len(t) else None)
    for proto in (Proto.UDP, Proto.TCP):
        for client in CLIENTS:
            for sport in range(1000, 1004):
                for zone in (0, 1):
                    brute = sorted(
                        (c for c in t if c.id in t._bysource and c.orig.proto == proto
                         and c.orig.src == client and c.orig.sport == sport
                         and c.zone == zone),
                        key=lambda c: (t._bysource[c.id], c.id), reverse=True)
                    assert t.by_source(proto, client, sport, zone) == brute


def test_table_is_an_indexed_tuple_space() -> None:
    assert isinstance(Table(), IndexedTupleSpace)
    assert not isinstance(Unindexed(Table()), IndexedTupleSpace)


# --- the search shortcut against probing key by key ----------------------------------------------

occupants = st.lists(st.tuples(
    st.integers(0, 40),                       # outside port offset from the range start
    st.sampled_from([NOW + 30, NOW + 30, NOW + 30, NOW - 1, NOW]),   # some expired
    st.booleans(),                            # same original tuple as the new connection
), max_size=40)


def _fill(table: Table, proto: int, server: IPv4Address, lo: int,
          occ: list[tuple[int, float, bool]], new: Conn) -> None:
    for i, (off, timeout, same_orig) in enumerate(occ, start=1):
        c = masqueraded(1000 + i, proto, CLIENTS[i % 2], 30000 + i, server, 53, lo + off,
                        timeout)
        if same_orig:
            c = replace(c, orig=new.orig)
        if table.find_clash(c, 0.0) is None:
            table.insert(c)


@settings(max_examples=200, deadline=None)
@given(occupants, st.sampled_from([Proto.UDP, Proto.TCP]), st.booleans(),
       st.sampled_from([LINUX_6_1, LINUX_LATEST]))
def test_masquerade_search_picks_what_probing_picks(occ: list[tuple[int, float, bool]],
                                                    proto: int, with_range: bool,
                                                    profile: object) -> None:
    # The new client's own port is taken by the first occupant, so step 4 searches.
    new = conn(1, proto, CLIENTS[2], 1024, SERVERS[0], 53)
    new = replace(new, status=Status.NONE)
    rng = (NatRange(MAP_IPS | PROTO_SPECIFIED, WAN, WAN, 1024, 1064) if with_range
           else NatRange(MAP_IPS, WAN, WAN))
    occ = [(0, NOW + 30, False), *occ]
    fast, slow = Table(), Table()
    _fill(fast, proto, SERVERS[0], 1024, occ, new)
    _fill(slow, proto, SERVERS[0], 1024, occ, new)
    cur = invert(new.reply)
    got = get_unique_tuple(cur, rng, new, ManipType.SRC, fast, NOW, profile)  # type: ignore[arg-type]
    want = get_unique_tuple(cur, rng, new, ManipType.SRC, Unindexed(slow), NOW,
                            profile)  # type: ignore[arg-type]
    assert got.default == want.default
    assert got.description == want.description
    assert len(fast) == len(slow)             # the same expired entries were reaped


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 20), max_size=25), st.booleans())
def test_dnat_and_icmp_searches_pick_what_probing_picks(taken: list[int], icmp: bool) -> None:
    fast, slow = Table(), Table()
    if icmp:   # ICMP ids of echo requests masqueraded to WAN
        new_orig = Tuple.icmp(CLIENTS[2], SERVERS[0], 8, 0, 7)
        for i, off in enumerate([0, *taken], start=2):
            orig = Tuple.icmp(CLIENTS[i % 2], SERVERS[0], 8, 0, 100 + i)
            c = Conn(i, orig, Tuple.icmp(SERVERS[0], WAN, 0, 0, off), Status.CONFIRMED,
                     timeout=NOW + 30)
            for t in (fast, slow):
                if t.find_clash(c, 0.0) is None:
                    t.insert(c)
        rng = NatRange(MAP_IPS | PROTO_SPECIFIED, WAN, WAN, 0, 20)
        manip = ManipType.SRC
        new = Conn(1, new_orig, invert(new_orig))
    else:      # DNAT to a port range on one inside server (6.1: random start)
        inside = A("192.168.1.8")
        new_orig = Tuple(Proto.TCP, SERVERS[1], WAN, 40000, 8080)
        for i, off in enumerate([0, *taken], start=2):
            orig = Tuple(Proto.TCP, SERVERS[1], WAN, 40000 + i, 8080)
            c = Conn(i, orig, Tuple(Proto.TCP, inside, SERVERS[1], 7000 + off, 40000),
                     Status.CONFIRMED, timeout=NOW + 30)
            for t in (fast, slow):
                if t.find_clash(c, 0.0) is None:
                    t.insert(c)
        rng = NatRange(MAP_IPS | PROTO_SPECIFIED, inside, inside, 7000, 7020)
        manip = ManipType.DST
        new = Conn(1, new_orig, invert(new_orig))
    cur = new_orig
    got = get_unique_tuple(cur, rng, new, manip, fast, NOW, LINUX_6_1)
    want = get_unique_tuple(cur, rng, new, manip, Unindexed(slow), NOW, LINUX_6_1)
    assert got.default == want.default and got.description == want.description
