"""The conntrack table, nf_conntrack_in's bookkeeping, confirm, and the sysctls."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from ct_helpers import CLIENT, SERVER, Gateway, generic, tcp, udp
from hypothesis import given, settings
from hypothesis import strategies as st

from nat.conn import Conn
from nat.conntrack import Table, TableError
from nat.core import nf_conntrack_confirm, nf_conntrack_in
from nat.hooks import Hook
from nat.packet import SYN
from nat.status import CtInfo, Status
from nat.sysctl import Sysctls
from nat.tuple import Direction, Proto, Tuple, invert

A = IPv4Address("10.0.0.2")
B = IPv4Address("10.0.0.1")
ROUTER = IPv4Address("198.51.100.1")


def _conn(table: Table, orig: Tuple, reply: Tuple | None = None, timeout: float = 30.0,
          zone: int = 0, status: Status = Status.CONFIRMED) -> Conn:
    return Conn(table.next_id(), orig, invert(orig) if reply is None else reply, status,
                timeout=timeout, zone=zone)


T1 = Tuple(Proto.UDP, A, B, 1000, 53)

# ---------------------------------------------------------------------------------------------
# Table


def test_lookup_both_directions() -> None:
    t = Table()
    c = _conn(t, T1)
    t.insert(c)
    assert t.lookup(T1, 0, 1.0) == (c, Direction.ORIGINAL)
    assert t.lookup(invert(T1), 0, 1.0) == (c, Direction.REPLY)
    assert t.lookup(T1, 1, 1.0) is None                  # other zone
    assert t.lookup(replace(T1, sport=1001), 0, 1.0) is None


def test_nat_reply_tuple_is_found() -> None:
    t = Table()
    reply = Tuple(Proto.UDP, B, ROUTER, 53, 40000)
    c = _conn(t, T1, reply)
    t.insert(c)
    assert t.lookup(reply, 0, 0.0) == (c, Direction.REPLY)
    assert t.lookup(invert(T1), 0, 0.0) is None


def test_expiry_exactly_at_timeout_and_reaping() -> None:
    t = Table()
    t.insert(_conn(t, T1, timeout=30.0))
    assert t.lookup(T1, 0, 29.999) is not None
    assert len(t.entries(29.999)) == 1
    assert t.entries(30.0) == []
    assert len(t) == 1                                    # listed out, not yet reaped
    assert t.lookup(T1, 0, 30.0) is None
    assert len(t) == 0                                    # the lookup reaped it


def test_reap_removes_every_expired_entry() -> None:
    t = Table()
    t.insert(_conn(t, T1, timeout=10))
    t.insert(_conn(t, replace(T1, sport=2), timeout=20))
    assert [c.id for c in t.reap(15)] == [1]
    assert len(t) == 1


def test_insert_rules() -> None:
    t = Table()
    c = _conn(t, T1)
    with pytest.raises(TableError):
        t.insert(replace(c, status=Status.NONE))          # unconfirmed
    t.insert(c)
    with pytest.raises(TableError):
        t.insert(c)                                       # twice
    with pytest.raises(TableError):
        t.insert(_conn(t, invert(T1)))                    # its tuples are taken
    with pytest.raises(TableError):
        t.replace(_conn(t, replace(T1, sport=9)))         # unknown id


def test_replace_and_delete() -> None:
    t = Table()
    c = _conn(t, T1)
    t.insert(c)
    t.replace(replace(c, timeout=99.0))
    got = t.get(c.id)
    assert got is not None and got.timeout == 99.0
    assert t.delete(c.id) is not None
    assert t.delete(c.id) is None
    assert t.lookup(T1, 0, 0.0) is None and len(t) == 0


def test_entry_with_equal_tuples_is_found_as_reply() -> None:
    t = Table()
    same = Tuple(Proto.UDP, A, A, 5, 5)
    c = _conn(t, same)
    t.insert(c)
    assert t.lookup(same, 0, 0.0) == (c, Direction.REPLY)
    t.delete(c.id)
    assert t.lookup(same, 0, 0.0) is None


def test_ids_are_fresh() -> None:
    t = Table()
    assert [t.next_id() for _ in range(3)] == [1, 2, 3]


# tuple_taken (kernel-semantics 4.3)


def test_tuple_taken_by_either_tuple_of_another_entry() -> None:
    t = Table()
    reply = Tuple(Proto.UDP, B, ROUTER, 53, 1000)
    other = _conn(t, T1, reply)
    t.insert(other)
    me = Conn(t.next_id(), Tuple(Proto.UDP, IPv4Address("10.0.0.3"), B, 1000, 53),
              Tuple(Proto.UDP, B, IPv4Address("10.0.0.3"), 53, 1000))
    assert t.tuple_taken(reply, me, 0.0)                  # other's reply tuple
    assert t.tuple_taken(T1, me, 0.0)                     # other's original tuple
    assert not t.tuple_taken(replace(reply, dport=1001), me, 0.0)
    assert not t.tuple_taken(reply, replace(me, zone=3), 0.0)     # zones differ
    assert not t.tuple_taken(reply, me, 30.0)             # expired does not count


def test_tuple_taken_ignores_itself_and_the_same_flow() -> None:
    t = Table()
    reply = Tuple(Proto.UDP, B, ROUTER, 53, 1000)
    other = _conn(t, T1, reply)
    t.insert(other)
    assert not t.tuple_taken(reply, other, 0.0)
    racing = Conn(t.next_id(), T1, invert(T1))            # same original tuple, other entry
    assert not t.tuple_taken(reply, racing, 0.0)


# by_source


def test_by_source_newest_first_confirmed_only_no_expiry_check() -> None:
    t = Table()
    c1 = _conn(t, T1, timeout=5.0)
    c2 = _conn(t, replace(T1, dst=IPv4Address("10.9.9.9")), timeout=100.0)
    pending = Conn(t.next_id(), replace(T1, dst=IPv4Address("10.8.8.8")),
                   invert(replace(T1, dst=IPv4Address("10.8.8.8"))))
    t.add_by_source(c1, 10)
    t.add_by_source(c2, 20)
    t.add_by_source(pending, 30)                          # not confirmed yet
    t.insert(c1)
    t.insert(c2)
    assert [c.id for c in t.by_source(Proto.UDP, A, 1000, 0)] == [c2.id, c1.id]
    assert t.by_source(Proto.UDP, A, 1001, 0) == []
    assert t.by_source(Proto.TCP, A, 1000, 0) == []
    assert t.by_source(Proto.UDP, A, 1000, 7) == []
    # c1 has expired but nobody reaped it: still listed, as find_appropriate_src sees it
    assert len(t.by_source(Proto.UDP, A, 1000, 0)) == 2
    t.delete(c2.id)
    assert [c.id for c in t.by_source(Proto.UDP, A, 1000, 0)] == [c1.id]
    t.insert(replace(pending, status=Status.CONFIRMED, timeout=50.0))
    assert [c.id for c in t.by_source(Proto.UDP, A, 1000, 0)] == [pending.id, c1.id]


def test_find_clash() -> None:
    t = Table()
    winner = _conn(t, T1)
    t.insert(winner)
    same = Conn(t.next_id(), T1, invert(T1))
    assert t.find_clash(same, 0.0) == winner
    reply_clash = Conn(t.next_id(), Tuple(Proto.UDP, A, B, 1234, 53), invert(T1))
    assert t.find_clash(reply_clash, 0.0) == winner
    assert t.find_clash(Conn(t.next_id(), replace(T1, sport=7), invert(replace(T1, sport=7))),
                        0.0) is None
    assert t.find_clash(same, 30.0) is None               # expired: gone


# ---------------------------------------------------------------------------------------------
# nf_conntrack_in and confirm


def test_not_tracked_when_disabled() -> None:
    t = Table()
    res = nf_conntrack_in(t, udp(A, B, 1, 2), Hook.PRE_ROUTING, 0.0, Sysctls(), enabled=False)
    assert res.conn is None and res.verdict == "ACCEPT"
    assert len(t) == 0


def test_new_entry_is_unconfirmed_until_confirm() -> None:
    t = Table()
    pkt = udp(A, B, 1000, 53)
    res = nf_conntrack_in(t, pkt, Hook.PRE_ROUTING, 0.0, Sysctls(), enabled=True)
    assert res.new and res.ctinfo is CtInfo.NEW and res.conn is not None
    assert not res.conn.confirmed
    assert len(t) == 0 and t.entries(0.0) == []
    # Another packet of the same flow before confirm does not see it: a second new entry.
    res2 = nf_conntrack_in(t, pkt, Hook.PRE_ROUTING, 0.0, Sysctls(), enabled=True)
    assert res2.new and res2.conn is not None and res2.conn.id != res.conn.id
    ok = nf_conntrack_confirm(t, res.conn, res.ctinfo, 0.0)
    assert ok.verdict == "ACCEPT" and ok.conn is not None and ok.conn.confirmed
    assert len(t) == 1
    # The second one clashes at confirm: UDP, same tuples → merged into the first.
    merged = nf_conntrack_confirm(t, res2.conn, res2.ctinfo, 0.0)
    assert merged.verdict == "ACCEPT" and merged.conn is not None
    assert merged.conn.id == res.conn.id and len(t) == 1


def test_dropped_before_confirm_leaves_nothing() -> None:
    t = Table()
    nf_conntrack_in(t, udp(A, B, 1000, 53), Hook.PRE_ROUTING, 0.0, Sysctls(), enabled=True)
    assert len(t) == 0 and t.entries(0.0) == []


def test_tcp_clash_at_confirm_drops() -> None:
    t = Table()
    syn = tcp(A, B, 1000, 80, SYN, 1)
    r1 = nf_conntrack_in(t, syn, Hook.PRE_ROUTING, 0.0, Sysctls(), enabled=True)
    r2 = nf_conntrack_in(t, syn, Hook.PRE_ROUTING, 0.0, Sysctls(), enabled=True)
    nf_conntrack_confirm(t, r1.conn, r1.ctinfo, 0.0)
    lost = nf_conntrack_confirm(t, r2.conn, r2.ctinfo, 0.0)
    assert lost.verdict == "DROP" and len(t) == 1


def test_udp_clash_with_different_reply_drops() -> None:
    t = Table()
    r1 = nf_conntrack_in(t, udp(A, B, 1000, 53), Hook.PRE_ROUTING, 0.0, Sysctls(), enabled=True)
    r2 = nf_conntrack_in(t, udp(A, B, 1000, 53), Hook.PRE_ROUTING, 0.0, Sysctls(), enabled=True)
    assert r1.conn is not None and r2.conn is not None
    nf_conntrack_confirm(t, r1.conn, r1.ctinfo, 0.0)
    natted = replace(r2.conn, reply=Tuple(Proto.UDP, B, ROUTER, 53, 1000))
    assert nf_conntrack_confirm(t, natted, r2.ctinfo, 0.0).verdict == "DROP"


def test_confirm_writes_back_confirmed_entries_and_skips_replies() -> None:
    gw = Gateway()
    gw.send(udp(A, B, 1000, 53), 0.0)
    res = nf_conntrack_in(gw.table, udp(B, A, 53, 1000), Hook.PRE_ROUTING, 1.0, Sysctls(),
                          enabled=True)
    assert res.conn is not None and res.ctinfo is CtInfo.ESTABLISHED_REPLY
    assert res.conn.status & Status.SEEN_REPLY
    stored = gw.table.get(res.conn.id)
    assert stored is not None and stored.status & Status.SEEN_REPLY   # written at once
    out = nf_conntrack_confirm(gw.table, replace(res.conn, mark=7), res.ctinfo, 1.0)
    assert out.verdict == "ACCEPT"
    stored = gw.table.get(res.conn.id)
    assert stored is not None and stored.mark == 7
    assert nf_conntrack_confirm(gw.table, None, CtInfo.INVALID, 1.0).verdict == "ACCEPT"


def test_ctinfo_new_until_reply_then_established() -> None:
    gw = Gateway()
    assert gw.send(udp(A, B, 1000, 53), 0.0).ctinfo is CtInfo.NEW
    assert gw.send(udp(A, B, 1000, 53), 0.1).ctinfo is CtInfo.NEW
    assert gw.send(udp(B, A, 53, 1000), 0.2).ctinfo is CtInfo.ESTABLISHED_REPLY
    assert gw.send(udp(A, B, 1000, 53), 0.3).ctinfo is CtInfo.ESTABLISHED


def test_generic_protocol_600_seconds_never_assured() -> None:
    gw = Gateway()
    gw.send(generic(A, B, 253), 0.0)
    gw.send(generic(B, A, 253), 1.0)
    gw.send(generic(A, B, 253), 5.0)
    e = gw.only(5.5)
    assert e.timeout == 599 and not e.assured and not e.unreplied
    assert e.orig == Tuple(253, A, B)


def test_fragment_is_invalid() -> None:
    pkt = udp(A, B, 1000, 53)
    frag = replace(pkt, ip=replace(pkt.ip, frag=0x0010))
    gw = Gateway()
    assert gw.send(frag, 0.0).ctinfo is CtInfo.INVALID
    assert len(gw.table) == 0


def test_zone_separates_entries() -> None:
    t = Table()
    pkt = udp(A, B, 1000, 53)
    for zone in (0, 5):
        r = nf_conntrack_in(t, pkt, Hook.PRE_ROUTING, 0.0, Sysctls(), enabled=True, zone=zone)
        assert r.new
        nf_conntrack_confirm(t, r.conn, r.ctinfo, 0.0)
    assert sorted(c.zone for c in t.conns(0.0)) == [0, 5]


def test_local_out_skips_checksum_checks() -> None:
    pkt = udp(A, B, 1000, 53)
    bad = replace(pkt, l4=replace(pkt.udp, checksum=pkt.udp.checksum ^ 0x10))
    gw = Gateway()
    assert gw.send(bad, 0.0, hook=Hook.LOCAL_OUT).ctinfo is CtInfo.NEW


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.sampled_from([6, 17, 47]),
                          st.floats(0, 200)), max_size=30))
def test_entries_never_listed_after_expiry(steps: list[tuple[int, bool, int, float]]) -> None:
    gw = Gateway()
    now = 0.0
    for port, outbound, proto, dt in steps:
        now += dt
        a, b = (A, B) if outbound else (B, A)
        if proto == 6:
            pkt = tcp(a, b, 1000 + port, 80, SYN, port)
        elif proto == 17:
            pkt = udp(a, b, 1000 + port, 53)
        else:
            pkt = generic(a, b, 47)
        gw.send(pkt, now)
        for probe in (now, now + 1, now + 31, now + 121, now + 601):
            listed = gw.entries(probe)
            assert all(e.timeout is not None and e.timeout >= 0 for e in listed)
            alive = [c for c in gw.table.conns(probe)]
            assert len(listed) == len(alive)
            assert all(c.timeout > probe for c in alive)
        keys = [(c.orig, c.zone) for c in gw.table] + [(c.reply, c.zone) for c in gw.table]
        assert len(keys) == len(set(keys))                # no tuple held twice


# ---------------------------------------------------------------------------------------------
# Sysctls


def test_sysctl_defaults() -> None:
    s = Sysctls()
    assert (s.tcp_timeout_syn_sent, s.tcp_timeout_syn_recv, s.tcp_timeout_established,
            s.tcp_timeout_fin_wait, s.tcp_timeout_close_wait, s.tcp_timeout_last_ack,
            s.tcp_timeout_time_wait, s.tcp_timeout_close, s.tcp_timeout_max_retrans,
            s.tcp_timeout_unacknowledged) == (120, 60, 432000, 120, 60, 30, 120, 10, 300, 300)
    assert (s.tcp_loose, s.tcp_be_liberal, s.tcp_ignore_invalid_rst, s.tcp_max_retrans) \
        == (True, False, False, 3)
    assert (s.udp_timeout, s.udp_timeout_stream, s.icmp_timeout, s.generic_timeout,
            s.checksum) == (30, 120, 30, 600, True)


def test_sysctl_from_mapping() -> None:
    s = Sysctls.from_mapping({
        "net.netfilter.nf_conntrack_tcp_loose": "0",
        "net/netfilter/nf_conntrack_udp_timeout": 45,
        "net.netfilter.nf_conntrack_tcp_max_retrans": "7",
        "net.netfilter.nf_conntrack_frag6_timeout": "60",
        "net.ipv4.ip_forward": "1",
    })
    assert s.tcp_loose is False and s.udp_timeout == 45 and s.tcp_max_retrans == 7
    assert dict(s.other) == {"net.netfilter.nf_conntrack_frag6_timeout": "60",
                             "net.ipv4.ip_forward": "1"}
    assert Sysctls.from_mapping({}) == Sysctls()


@pytest.mark.parametrize(("key", "value"), [
    ("net.netfilter.nf_conntrack_tcp_loose", "2"),
    ("net.netfilter.nf_conntrack_tcp_loose", "yes"),
    ("net.netfilter.nf_conntrack_udp_timeout", "-1"),
    ("net.netfilter.nf_conntrack_udp_timeout", "1.5"),
    ("net.netfilter.nf_conntrack_tcp_max_retrans", "256"),
    ("net.netfilter.nf_conntrack_checksum", None),
])
def test_sysctl_bad_values_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        Sysctls.from_mapping({key: value})


def test_sysctls_change_the_model() -> None:
    gw = Gateway(Sysctls.from_mapping({"net.netfilter.nf_conntrack_udp_timeout": "10",
                                       "net.netfilter.nf_conntrack_generic_timeout": "20"}))
    gw.send(udp(CLIENT, SERVER, 1, 2), 0.0)
    gw.send(generic(CLIENT, SERVER), 0.0)
    assert sorted(e.timeout or 0 for e in gw.entries(0.0)) == [10, 20]


def test_replace_with_new_tuples_moves_the_nodes_or_refuses() -> None:
    t = Table()
    c = _conn(t, T1)
    t.insert(c)
    blocker = _conn(t, Tuple(Proto.UDP, A, B, 7, 7))
    t.insert(blocker)
    moved = replace(c, reply=Tuple(Proto.UDP, B, ROUTER, 53, 1000))
    t.replace(moved)
    assert t.lookup(invert(T1), 0, 0.0) is None
    assert t.lookup(moved.reply, 0, 0.0) == (moved, Direction.REPLY)
    with pytest.raises(TableError):
        t.replace(replace(moved, reply=blocker.orig))
    assert t.lookup(moved.reply, 0, 0.0) == (moved, Direction.REPLY)   # left as it was
