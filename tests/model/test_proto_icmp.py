"""The ICMP tracker and ICMP errors: echo by id, 30 s, never ASSURED, request types only,
errors RELATED / RELATED_REPLY via the quoted packet without creating anything."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from ct_helpers import CLIENT, SERVER, Gateway, icmp, icmp_error, line, tcp, udp
from hypothesis import given, settings
from hypothesis import strategies as st

from nat.hooks import Hook
from nat.packet import SYN
from nat.status import CtInfo, Status

ROUTER = IPv4Address("198.51.100.1")


def test_echo_request_and_reply() -> None:
    gw = Gateway()
    res = gw.send(icmp(CLIENT, SERVER, 8, id_=19021), 0.0)
    assert res.new and res.ctinfo is CtInfo.NEW
    e = gw.only(0.0)
    assert (e.orig.icmp_type, e.orig.icmp_id, e.reply.icmp_type) == (8, 19021, 0)
    assert line(e) == "30 [UNREPLIED]"
    res = gw.send(icmp(SERVER, CLIENT, 0, id_=19021), 0.2)
    assert res.ctinfo is CtInfo.ESTABLISHED_REPLY
    assert line(gw.only(0.5)) == "29"


def test_ping_c3_is_one_entry_refreshed_and_never_assured() -> None:
    gw = Gateway()
    for i in range(3):
        gw.send(icmp(CLIENT, SERVER, 8, id_=7, seq=i + 1), float(i))
        gw.send(icmp(SERVER, CLIENT, 0, id_=7, seq=i + 1), i + 0.01)
    e = gw.only(2.5)
    assert line(e) == "29"
    assert not e.assured
    assert gw.entries(32.01) == []


@pytest.mark.parametrize("type_", [8, 13, 15, 17])
def test_request_types_create(type_: int) -> None:
    gw = Gateway()
    assert gw.send(icmp(CLIENT, SERVER, type_, id_=1), 0.0).new
    assert len(gw.entries(0.0)) == 1


@pytest.mark.parametrize("type_", [0, 14, 16, 18, 9, 10, 1, 2, 6, 7, 19, 40, 255])
def test_other_types_are_invalid_and_create_nothing(type_: int) -> None:
    gw = Gateway()
    res = gw.send(icmp(CLIENT, SERVER, type_, id_=1), 0.0)
    assert res.ctinfo is CtInfo.INVALID and res.conn is None
    assert gw.entries(0.0) == []
    assert len(gw.table) == 0


def test_bad_checksum_invalid_only_at_prerouting() -> None:
    good = icmp(CLIENT, SERVER, 8, id_=5)
    bad = replace(good, l4=replace(good.icmp, checksum=good.icmp.checksum ^ 0x00FF))
    gw = Gateway()
    assert gw.send(bad, 0.0).ctinfo is CtInfo.INVALID
    assert gw.send(bad, 0.0, hook=Hook.LOCAL_OUT).ctinfo is CtInfo.NEW


def test_port_unreachable_is_related_reply_and_does_not_reply() -> None:
    gw = Gateway()
    out = udp(CLIENT, SERVER, 49000, 5000)
    gw.send(out, 0.0)
    err = icmp_error(SERVER, CLIENT, out)
    res = gw.send(err, 0.1)
    assert res.ctinfo is CtInfo.RELATED_REPLY and not res.new
    assert res.conn is not None and not res.conn.status & Status.SEEN_REPLY
    e = gw.only(0.5)
    assert e.unreplied and e.timeout == 29                    # untouched
    assert len(gw.table) == 1


def test_error_in_original_direction_is_related() -> None:
    gw = Gateway()
    gw.send(udp(CLIENT, SERVER, 49000, 5000), 0.0)
    back = udp(SERVER, CLIENT, 5000, 49000)
    gw.send(back, 0.1)
    res = gw.send(icmp_error(CLIENT, SERVER, back), 0.2)
    assert res.ctinfo is CtInfo.RELATED


def test_error_from_a_router_on_the_way_is_related() -> None:
    gw = Gateway()
    syn = tcp(CLIENT, SERVER, 40000, 80, SYN, 1)
    gw.send(syn, 0.0)
    res = gw.send(icmp_error(ROUTER, CLIENT, syn, type_=11, code=0), 0.1)
    assert res.ctinfo is CtInfo.RELATED_REPLY


def test_error_with_wrong_outer_destination_is_invalid() -> None:
    gw = Gateway()
    out = udp(CLIENT, SERVER, 49000, 5000)
    gw.send(out, 0.0)
    res = gw.send(icmp_error(SERVER, IPv4Address("192.0.2.99"), out), 0.1)
    assert res.ctinfo is CtInfo.INVALID


def test_error_about_an_unknown_flow_is_invalid_and_creates_nothing() -> None:
    gw = Gateway()
    res = gw.send(icmp_error(SERVER, CLIENT, udp(CLIENT, SERVER, 1, 2)), 0.0)
    assert res.ctinfo is CtInfo.INVALID
    assert len(gw.table) == 0


def test_error_about_an_echo_request_is_related() -> None:
    gw = Gateway()
    ping = icmp(CLIENT, SERVER, 8, id_=3, payload=b"abcdefgh")
    gw.send(ping, 0.0)
    res = gw.send(icmp_error(ROUTER, CLIENT, ping, type_=11), 0.1)
    assert res.ctinfo is CtInfo.RELATED_REPLY


def test_error_quoting_an_error_is_invalid() -> None:
    gw = Gateway()
    inner = icmp_error(SERVER, CLIENT, udp(CLIENT, SERVER, 1, 2))
    res = gw.send(icmp_error(ROUTER, SERVER, inner), 0.0)
    assert res.ctinfo is CtInfo.INVALID


def test_error_after_expiry_is_invalid() -> None:
    gw = Gateway()
    out = udp(CLIENT, SERVER, 49000, 5000)
    gw.send(out, 0.0)
    assert gw.send(icmp_error(SERVER, CLIENT, out), 30.0).ctinfo is CtInfo.INVALID


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 3), st.booleans(),
                          st.floats(0, 40)), max_size=15))
def test_random_icmp_never_assures_and_only_requests_create(
        pkts: list[tuple[int, int, bool, float]]) -> None:
    gw = Gateway()
    now = 0.0
    for type_, id_, outbound, dt in pkts:
        now += dt
        src, dst = (CLIENT, SERVER) if outbound else (SERVER, CLIENT)
        gw.send(icmp(src, dst, type_, id_=id_), now)
        for e in gw.entries(now):
            assert not e.assured
            assert e.orig.icmp_type in (8, 13, 15, 17)
            assert e.timeout is not None and e.timeout <= 30
