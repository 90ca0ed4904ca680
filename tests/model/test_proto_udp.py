"""The UDP tracker: 30 s until a stream, the 2-second rule, ASSURED, validity checks."""

from __future__ import annotations

from dataclasses import replace

from ct_helpers import CLIENT, SERVER, Gateway, line, udp
from hypothesis import given, settings
from hypothesis import strategies as st

from nat.hooks import Hook
from nat.proto_udp import udp_error
from nat.status import CtInfo, Status
from nat.sysctl import Sysctls

OUT = (CLIENT, SERVER, 37611, 9999)
BACK = (SERVER, CLIENT, 9999, 37611)


def test_request_and_quick_reply_stay_unassured_at_30() -> None:
    gw = Gateway()
    gw.send(udp(*OUT), 0.0)
    assert line(gw.only(0.5)) == "29 [UNREPLIED]"
    res = gw.send(udp(*BACK), 0.1)
    assert res.ctinfo is CtInfo.ESTABLISHED_REPLY
    assert line(gw.only(0.5)) == "29"                    # reply alone does not assure


def test_packet_after_two_seconds_makes_a_stream() -> None:
    gw = Gateway()
    gw.send(udp(*OUT), 0.0)
    gw.send(udp(*BACK), 0.1)
    gw.send(udp(*OUT), 2.5)
    assert line(gw.only(3.0)) == "119 [ASSURED]"


def test_seven_exchanges_at_half_a_second() -> None:
    gw = Gateway()
    t = 0.0
    for _ in range(7):
        gw.send(udp(*OUT), t)
        gw.send(udp(*BACK), t + 0.01)
        t += 0.5
    assert line(gw.only(t - 0.5 + 3.0)) == "117 [ASSURED]"


def test_three_quick_exchanges_stay_at_30() -> None:
    gw = Gateway()
    for i in range(3):
        gw.send(udp(*OUT), 0.3 * i)
        gw.send(udp(*BACK), 0.3 * i + 0.01)
    assert line(gw.only(0.62)) == "29"


def test_no_reply_stays_unreplied_and_expires_at_30() -> None:
    gw = Gateway()
    gw.send(udp(*OUT), 0.0)
    gw.send(udp(*OUT), 2.5)                               # no reply: still 30 s, refreshed
    assert line(gw.only(5.5)) == "27 [UNREPLIED]"
    assert gw.entries(32.49) != []
    assert gw.entries(32.5) == []


def test_two_second_boundary_is_strict() -> None:
    gw = Gateway()
    gw.send(udp(*OUT), 10.0)
    gw.send(udp(*BACK), 10.5)
    gw.send(udp(*OUT), 12.0)                              # exactly stream_ts: not after it
    assert not gw.only(12.0).assured
    gw.send(udp(*BACK), 12.001)
    assert gw.only(12.1).assured


def test_reply_after_two_seconds_is_still_30_then_next_assures() -> None:
    gw = Gateway()
    gw.send(udp(*OUT), 0.0)
    gw.send(udp(*BACK), 5.0)                              # first reply: SEEN_REPLY not yet set
    assert line(gw.only(5.0)) == "30"
    gw.send(udp(*BACK), 5.1)
    assert line(gw.only(5.1)) == "120 [ASSURED]"


def test_nat_clash_entries_never_assure() -> None:
    gw = Gateway()
    gw.send(udp(*OUT), 0.0)
    gw.send(udp(*BACK), 0.1)
    conn = gw.table.get(1)
    assert conn is not None
    gw.table.replace(replace(conn, status=conn.status | Status.NAT_CLASH))
    gw.send(udp(*OUT), 3.0)
    e = gw.only(3.0)
    assert e.timeout == 120 and not e.assured


def test_validity() -> None:
    good = udp(*OUT)
    assert udp_error(good, Hook.PRE_ROUTING, Sysctls()) is None
    long = replace(good, l4=replace(good.udp, length=good.udp.length + 1))
    assert udp_error(long, Hook.LOCAL_OUT, Sysctls()) is not None
    short = replace(good, l4=replace(good.udp, length=7))
    assert udp_error(short, Hook.LOCAL_OUT, Sysctls()) is not None
    bad = replace(good, l4=replace(good.udp, checksum=good.udp.checksum ^ 0x0101))
    assert udp_error(bad, Hook.PRE_ROUTING, Sysctls()) == "bad UDP checksum"
    assert udp_error(bad, Hook.LOCAL_OUT, Sysctls()) is None
    assert udp_error(bad, Hook.PRE_ROUTING, Sysctls(checksum=False)) is None
    none = replace(good, l4=replace(good.udp, checksum=0))
    assert udp_error(none, Hook.PRE_ROUTING, Sysctls()) is None


def test_bad_checksum_creates_nothing() -> None:
    gw = Gateway()
    good = udp(*OUT)
    res = gw.send(replace(good, l4=replace(good.udp, checksum=good.udp.checksum ^ 1)), 0.0)
    assert res.ctinfo is CtInfo.INVALID and res.conn is None
    assert gw.entries(0.0) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0.001, 29.9)), min_size=1, max_size=12))
def test_assured_iff_a_packet_after_the_reply_and_two_seconds(
        steps: list[tuple[bool, float]]) -> None:
    """§6.3 restated on random exchanges (gaps under 30 s, so the one entry never expires):
    ASSURED exactly once a packet is handled after the first reply and after creation + 2 s;
    then 120 s, else 30 s."""
    gw = Gateway()
    gw.send(udp(*OUT), 0.0)
    now, replied, assured = 0.0, False, False
    for outbound, dt in steps:
        now += dt
        gw.send(udp(*(OUT if outbound else BACK)), now)
        stream = replied and now > 2.0
        assured = assured or stream
        if not outbound:
            replied = True
        entry = gw.only(now)
        assert entry.assured == assured
        assert entry.unreplied == (not replied)
        assert entry.timeout == (120 if stream else 30)
