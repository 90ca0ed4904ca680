"""The TCP tracker: every cell of the state table, flag validity, the live sequences of
kernel-semantics §6.2, window checks, timeouts, and random sequences that must not break it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from ct_helpers import CLIENT, SERVER, Gateway, line, tcp
from hypothesis import given, settings
from hypothesis import strategies as st

from nat.conn import Conn
from nat.hooks import Hook
from nat.packet import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG
from nat.proto_tcp import (
    IG,
    IV,
    ORIGINAL,
    REPLY,
    PacketClass,
    Special,
    TcpConnState,
    TcpFlag,
    TcpPeer,
    highest_sack,
    packet_class,
    parse_options,
    render_state_table,
    tcp_error,
    tcp_packet,
)
from nat.status import CtInfo, Status, TcpState
from nat.sysctl import Sysctls
from nat.tuple import Direction, Proto, Tuple, invert

# ---------------------------------------------------------------------------------------------
# The state table, typed in again from kernel-semantics.md §6.2 (not from the module).

EXPECTED_ORIGINAL = """
syn    SS SS IG IG IG IG IG SS SS S2
synack IV IV SR IV IV IV IV IV IV SR
fin    IV IV FW FW LA LA LA TW CL IV
ack    ES IV ES ES CW CW TW TW CL IV
rst    IV CL CL CL CL CL CL CL CL CL
none   IV IV IV IV IV IV IV IV IV IV
"""
EXPECTED_REPLY = """
syn    IV S2 IV IV IV IV IV SS IV S2
synack IV SR IG IG IG IG IG IG IG SR
fin    IV IV FW FW LA LA LA TW CL IV
ack    IV IG SR ES CW CW TW TW CL IG
rst    IV CL CL CL CL CL CL CL CL CL
none   IV IV IV IV IV IV IV IV IV IV
"""
ABBREV = {"NO": TcpState.NONE, "SS": TcpState.SYN_SENT, "SR": TcpState.SYN_RECV,
          "ES": TcpState.ESTABLISHED, "FW": TcpState.FIN_WAIT, "CW": TcpState.CLOSE_WAIT,
          "LA": TcpState.LAST_ACK, "TW": TcpState.TIME_WAIT, "CL": TcpState.CLOSE,
          "S2": TcpState.SYN_SENT2}
COLUMN_ORDER = ["NO", "SS", "SR", "ES", "FW", "CW", "LA", "TW", "CL", "S2"]
CLASS_FLAGS = {"syn": SYN, "synack": SYN | ACK, "fin": FIN | ACK, "ack": ACK, "rst": RST,
               "none": 0}


def _cells(text: str) -> list[tuple[str, str, str]]:
    out = []
    for row in text.strip().splitlines():
        cls, *cells = row.split()
        assert len(cells) == 10
        out += [(cls, col, cell) for col, cell in zip(COLUMN_ORDER, cells, strict=True)]
    return out


CELLS = ([(Direction.ORIGINAL, *c) for c in _cells(EXPECTED_ORIGINAL)]
         + [(Direction.REPLY, *c) for c in _cells(EXPECTED_REPLY)])


def _as_next(cell: str) -> TcpState | Special:
    return {"IV": IV, "IG": IG}.get(cell) or ABBREV[cell]


@pytest.mark.parametrize(("direction", "cls", "col", "cell"), CELLS)
def test_table_cell_matches_the_spec(direction: Direction, cls: str, col: str, cell: str) -> None:
    table = ORIGINAL if direction is Direction.ORIGINAL else REPLY
    assert table[PacketClass[cls.upper()]][ABBREV[col]] == _as_next(cell)


def test_table_has_exactly_the_spec_cells() -> None:
    assert sum(len(row) for row in ORIGINAL.values()) == 60
    assert sum(len(row) for row in REPLY.values()) == 60
    assert len(CELLS) == 120


TUPLE = Tuple(Proto.TCP, CLIENT, SERVER, 40000, 80)


def _conn_in(state: TcpState) -> Conn:
    """A confirmed, replied, assured entry in `state` with neutral history (no FIN, no RST
    last, no MAXACK), so only the table and the fixed special cases decide."""
    peer = TcpPeer(end=1000, maxend=70000, maxwin=65535, flags=TcpFlag.NONE)
    st_ = TcpConnState(state=state, seen=(peer, peer), last_index=PacketClass.NONE)
    return Conn(1, TUPLE, invert(TUPLE),
                Status.CONFIRMED | Status.SEEN_REPLY | Status.ASSURED,
                timeout=500.0, created=0.0, proto_state=st_)


@pytest.mark.parametrize(("direction", "cls", "col", "cell"), CELLS)
def test_tracker_follows_each_cell(direction: Direction, cls: str, col: str, cell: str) -> None:
    """Drive tcp_packet with one packet of the class in the state; be_liberal=1 keeps the
    window checks out of the way. Expected behaviour comes from the typed-in cell plus the
    rules after the table: a SYN_SENT result from TIME_WAIT/CLOSE without a close or reset
    before it is ignored."""
    state = ABBREV[col]
    conn = _conn_in(state)
    src, dst, sport, dport = ((CLIENT, SERVER, 40000, 80) if direction is Direction.ORIGINAL
                              else (SERVER, CLIENT, 80, 40000))
    pkt = tcp(src, dst, sport, dport, CLASS_FLAGS[cls], seq=1000, ack=1000)
    ctinfo = CtInfo.ESTABLISHED if direction is Direction.ORIGINAL else CtInfo.ESTABLISHED_REPLY
    sysctls = Sysctls(tcp_be_liberal=True)
    res = tcp_packet(conn, pkt, direction, ctinfo, now=10.0, sysctls=sysctls)
    new_state = res.conn.tcp_state()
    expected = _as_next(cell)
    if expected is TcpState.SYN_SENT and state in (TcpState.TIME_WAIT, TcpState.CLOSE):
        expected = IG
    if expected is IV:
        assert res.verdict == "INVALID"
        assert new_state is state
    elif expected is IG:
        assert res.verdict == "ACCEPT"
        assert new_state is state
        assert res.conn.timeout == conn.timeout          # no refresh
    else:
        assert res.verdict == "ACCEPT"
        assert new_state is expected
        assert res.conn.timeout != conn.timeout          # refreshed
        assert not res.kill


def test_reopen_after_fin_repeats() -> None:
    conn = _conn_in(TcpState.TIME_WAIT)
    st_ = conn.proto_state
    assert isinstance(st_, TcpConnState)
    closing = replace(st_, seen=(replace(st_.seen[0], flags=TcpFlag.CLOSE_INIT), st_.seen[1]))
    res = tcp_packet(replace(conn, proto_state=closing), tcp(CLIENT, SERVER, 40000, 80, SYN, 5),
                     Direction.ORIGINAL, CtInfo.ESTABLISHED, 10.0, Sysctls())
    assert res.verdict == "REPEAT"


# ---------------------------------------------------------------------------------------------
# Classes and flag validity

VALID = {"SYN", "SYN URG", "SYN ACK", "RST", "RST ACK", "FIN ACK", "FIN ACK URG", "ACK",
         "ACK URG"}
BITS = {"FIN": FIN, "SYN": SYN, "RST": RST, "PSH": PSH, "ACK": ACK, "URG": URG, "ECE": ECE,
        "CWR": CWR}


@pytest.mark.parametrize("flags", range(256))
def test_flag_validity(flags: int) -> None:
    core = " ".join(n for n in ("SYN", "RST", "FIN", "ACK", "URG") if flags & BITS[n])
    canon = {" ".join(n for n in ("SYN", "RST", "FIN", "ACK", "URG") if n in v.split())
             for v in VALID}
    pkt = tcp(CLIENT, SERVER, 1, 2, flags, 0)
    error = tcp_error(pkt, Hook.PRE_ROUTING, Sysctls())
    assert (error is None) == (core in canon)


@pytest.mark.parametrize(("flags", "cls"), [
    (SYN, PacketClass.SYN), (SYN | ACK, PacketClass.SYNACK), (FIN | ACK, PacketClass.FIN),
    (ACK, PacketClass.ACK), (RST | ACK, PacketClass.RST), (RST | SYN, PacketClass.RST),
    (SYN | FIN, PacketClass.SYN), (PSH, PacketClass.NONE), (ACK | PSH, PacketClass.ACK),
])
def test_packet_class(flags: int, cls: PacketClass) -> None:
    assert packet_class(flags) is cls


def test_bad_checksum_only_at_prerouting_and_only_with_the_sysctl() -> None:
    good = tcp(CLIENT, SERVER, 1, 2, SYN, 0)
    bad = replace(good, l4=replace(good.tcp, checksum=good.tcp.checksum ^ 0x1111))
    assert tcp_error(bad, Hook.PRE_ROUTING, Sysctls()) == "bad TCP checksum"
    assert tcp_error(bad, Hook.LOCAL_OUT, Sysctls()) is None
    assert tcp_error(bad, Hook.PRE_ROUTING, Sysctls(checksum=False)) is None
    assert tcp_error(good, Hook.PRE_ROUTING, Sysctls()) is None


def test_options_parsing() -> None:
    mss, sackok, ws7, nop, eol = b"\x02\x04\x05\xb4", b"\x04\x02", b"\x03\x03\x07", b"\x01", b"\0"
    o = parse_options(mss + sackok + nop + ws7 + eol + b"\0\0")
    assert o.present and o.sack_perm and o.wscale == 7
    assert parse_options(b"").present is False
    assert parse_options(b"\x03\x03\x0f" + b"\0").wscale == 14            # capped
    assert parse_options(b"\x02\x09" + b"\0" * 6).sack_perm is False      # partial: stop
    sack = b"\x01\x01\x05\x0a" + (100).to_bytes(4, "big") + (900).to_bytes(4, "big")
    assert highest_sack(sack, 50) == 900
    assert highest_sack(sack, 1000) == 1000
    tsopt = b"\x01\x01\x08\x0a" + b"\0" * 8
    assert highest_sack(tsopt, 7) == 7


# ---------------------------------------------------------------------------------------------
# The live sequences (kernel-semantics §6.2, measured on 6.18.44)

C, S = CLIENT, SERVER
CS = (C, S, 33000, 80)
SC = (S, C, 80, 33000)


def _handshake(gw: Gateway, t: float = 0.0) -> None:
    gw.send(tcp(*CS, SYN, 1000), t)
    gw.send(tcp(*SC, SYN | ACK, 5000, 1001), t + 0.1)
    gw.send(tcp(*CS, ACK, 1001, 5001), t + 0.2)


def test_live_sequence_open_data_close() -> None:
    gw = Gateway()
    gw.send(tcp(*CS, SYN, 1000), 0.0)
    assert line(gw.only(0.5)) == "119 SYN_SENT [UNREPLIED]"
    gw.send(tcp(*SC, SYN | ACK, 5000, 1001), 1.0)
    assert line(gw.only(1.5)) == "59 SYN_RECV"
    gw.send(tcp(*CS, ACK, 1001, 5001), 2.0)
    assert line(gw.only(2.5)) == "431999 ESTABLISHED [ASSURED]"
    gw.send(tcp(*CS, ACK | PSH, 1001, 5001, b"d" * 100), 3.0)
    assert line(gw.only(3.5)) == "299 ESTABLISHED [ASSURED]"
    gw.send(tcp(*SC, ACK, 5001, 1101), 4.0)
    assert line(gw.only(4.5)) == "431999 ESTABLISHED [ASSURED]"
    gw.send(tcp(*CS, FIN | ACK, 1101, 5001), 5.0)
    assert line(gw.only(5.5)) == "119 FIN_WAIT [ASSURED]"
    gw.send(tcp(*SC, ACK, 5001, 1102), 6.0)
    assert line(gw.only(6.5)) == "59 CLOSE_WAIT [ASSURED]"
    gw.send(tcp(*SC, FIN | ACK, 5001, 1102), 7.0)
    assert line(gw.only(7.5)) == "29 LAST_ACK [ASSURED]"
    gw.send(tcp(*CS, ACK, 1102, 5002), 8.0)
    assert line(gw.only(8.5)) == "119 TIME_WAIT [ASSURED]"
    gw.send(tcp(*CS, RST, 1102), 9.0)
    assert line(gw.only(9.5)) == "9 CLOSE [ASSURED]"
    assert gw.entries(19.0) == []                      # expired exactly at 9 + 10


def test_inexact_rst_keeps_established_with_10_seconds() -> None:
    gw = Gateway()
    _handshake(gw)
    gw.send(tcp(*SC, ACK | PSH, 5001, 1001, b"r" * 10), 1.0)
    gw.send(tcp(*CS, ACK, 1001, 5011), 1.1)
    res = gw.send(tcp(*CS, RST, 1001 + 50), 2.0)       # inside the window, not at 1001
    assert res.ctinfo is CtInfo.ESTABLISHED
    assert line(gw.only(2.5)) == "9 ESTABLISHED [ASSURED]"
    gw.send(tcp(*CS, RST, 1001), 3.0)                  # exactly at the peer's ACK
    assert line(gw.only(3.5)) == "9 CLOSE [ASSURED]"


def test_rst_below_the_peers_ack_is_invalid_unless_ignored() -> None:
    for ignore in (False, True):
        gw = Gateway(Sysctls(tcp_ignore_invalid_rst=ignore))
        _handshake(gw)
        gw.send(tcp(*CS, ACK | PSH, 1001, 5001, b"x" * 100), 1.0)
        gw.send(tcp(*SC, ACK, 5001, 1101), 1.1)
        res = gw.send(tcp(*CS, RST, 1050), 2.0)        # below 1101, which the server ACKed
        assert (res.ctinfo is CtInfo.INVALID) is not ignore
        assert line(gw.only(2.5)).endswith("[ASSURED]")


def test_rst_timeout_under_the_6_12_profile() -> None:
    from nat.profile import LINUX_6_12
    gw = Gateway(profile=LINUX_6_12)
    _handshake(gw)
    gw.send(tcp(*CS, RST, 1001 + 50), 2.0)
    assert line(gw.only(2.5)) == "299 ESTABLISHED [ASSURED]"


def test_syn_retransmit_does_not_refresh() -> None:
    gw = Gateway()
    gw.send(tcp(*CS, SYN, 1000), 0.0)
    gw.send(tcp(*CS, SYN, 1000), 1.0)
    gw.send(tcp(*CS, SYN, 1000), 3.0)
    assert line(gw.only(4.5)) == "115 SYN_SENT [UNREPLIED]"
    assert gw.entries(120.0) == []


def test_rst_answer_to_syn_deletes_the_entry() -> None:
    gw = Gateway()
    gw.send(tcp(*CS, SYN, 1000), 0.0)
    res = gw.send(tcp(*SC, RST | ACK, 0, 1001), 0.1)
    assert res.ctinfo is CtInfo.ESTABLISHED_REPLY and res.conn is not None
    assert res.conn.status & Status.DYING
    assert gw.entries(0.2) == []
    assert len(gw.table) == 0


def test_loose_pickup() -> None:
    gw = Gateway()
    res = gw.send(tcp(*CS, ACK, 777_000, 999_000), 0.0)
    assert res.new and res.ctinfo is CtInfo.NEW
    assert line(gw.only(0.5)) == "299 ESTABLISHED [UNREPLIED]"
    gw.send(tcp(*SC, ACK, 999_000, 777_000), 1.0)
    assert line(gw.only(1.5)) == "299 ESTABLISHED"
    gw.send(tcp(*CS, ACK, 777_000, 999_000, b"z"), 2.0)
    gw.send(tcp(*SC, ACK, 999_000, 777_001), 2.1)
    assert line(gw.only(2.5)) == "431999 ESTABLISHED [ASSURED]"


def test_no_pickup_with_loose_off() -> None:
    gw = Gateway(Sysctls(tcp_loose=False))
    res = gw.send(tcp(*CS, ACK, 777_000, 999_000), 0.0)
    assert res.ctinfo is CtInfo.INVALID and res.conn is None
    assert gw.entries(0.0) == []


def test_reply_ack_in_syn_sent_is_ignored_but_sets_seen_reply() -> None:
    gw = Gateway()
    gw.send(tcp(*CS, SYN, 1000), 0.0)
    res = gw.send(tcp(*SC, ACK, 5000, 1001), 5.0)
    assert res.ctinfo is CtInfo.ESTABLISHED_REPLY
    assert line(gw.only(5.5)) == "114 SYN_SENT"         # no refresh, no [UNREPLIED]


def test_reopen_from_time_wait_makes_a_new_entry() -> None:
    gw = Gateway()
    _handshake(gw)
    gw.send(tcp(*CS, FIN | ACK, 1001, 5001), 1.0)
    gw.send(tcp(*SC, FIN | ACK, 5001, 1002), 1.1)
    gw.send(tcp(*CS, ACK, 1002, 5002), 1.2)
    assert gw.only(1.5).state is TcpState.TIME_WAIT
    old_id = gw.table.lookup(Tuple(Proto.TCP, C, S, 33000, 80), 0, 1.5)
    assert old_id is not None
    res = gw.send(tcp(*CS, SYN, 90_000), 2.0)
    assert res.new and res.ctinfo is CtInfo.NEW
    assert res.conn is not None and res.conn.id != old_id[0].id
    assert line(gw.only(2.5)) == "119 SYN_SENT [UNREPLIED]"


def test_syn_after_server_rst_in_close_is_ignored() -> None:
    gw = Gateway()
    _handshake(gw)
    gw.send(tcp(*SC, RST, 5001), 1.0)
    assert line(gw.only(1.5)) == "9 CLOSE [ASSURED]"
    res = gw.send(tcp(*CS, SYN, 90_000), 2.0)
    assert not res.new and res.ctinfo is CtInfo.ESTABLISHED
    assert line(gw.only(2.5)) == "8 CLOSE [ASSURED]"     # timer kept running


def test_syn_after_own_rst_in_close_reopens() -> None:
    gw = Gateway()
    _handshake(gw)
    gw.send(tcp(*CS, RST, 1001), 1.0)
    res = gw.send(tcp(*CS, SYN, 90_000), 2.0)
    assert res.new
    assert line(gw.only(2.5)) == "119 SYN_SENT [UNREPLIED]"


def test_simultaneous_open() -> None:
    gw = Gateway()
    gw.send(tcp(*CS, SYN, 1000), 0.0)
    gw.send(tcp(*SC, SYN, 5000), 0.1)
    assert gw.only(0.2).state is TcpState.SYN_SENT2
    gw.send(tcp(*CS, SYN | ACK, 1000, 5001), 0.2)
    assert gw.only(0.3).state is TcpState.SYN_RECV
    gw.send(tcp(*SC, ACK, 5001, 1001), 0.3)
    e = gw.only(0.4)
    assert e.state is TcpState.ESTABLISHED


# ---------------------------------------------------------------------------------------------
# Window checks and timeout caps


def test_seq_beyond_window_is_invalid_and_liberal_accepts_it() -> None:
    for liberal in (False, True):
        gw = Gateway(Sysctls(tcp_be_liberal=liberal))
        _handshake(gw)
        res = gw.send(tcp(*CS, ACK, 1001 + 10_000_000, 5001, b"x"), 1.0)
        assert (res.ctinfo is CtInfo.INVALID) is not liberal


def test_ack_of_unsent_data_is_invalid() -> None:
    gw = Gateway()
    _handshake(gw)
    res = gw.send(tcp(*CS, ACK, 1001, 5001 + 500), 1.0)
    assert res.ctinfo is CtInfo.INVALID
    assert line(gw.only(1.5)) == "431998 ESTABLISHED [ASSURED]"   # not refreshed since 0.2


def test_old_retransmission_is_ignored_without_refresh() -> None:
    gw = Gateway(Sysctls(tcp_timeout_established=1000))
    _handshake(gw)
    res = gw.send(tcp(*CS, ACK, 1001 - 200_000, 5001, b"old"), 50.0)
    assert res.ctinfo is CtInfo.ESTABLISHED                        # accepted (IGNORE)
    assert gw.only(50.0).timeout == 950                           # refreshed at 0.2 only


def test_retransmitted_acks_cap_timeout_at_300() -> None:
    gw = Gateway()
    _handshake(gw)
    for i in range(2):        # the handshake's ACK was the same segment: repeats 1 and 2
        gw.send(tcp(*CS, ACK, 1001, 5001), 1.0 + i)
        assert gw.only(1.5 + i).timeout == 431999
    gw.send(tcp(*CS, ACK, 1001, 5001), 3.0)                       # repeat 3 = tcp_max_retrans
    assert gw.only(3.5).timeout == 299
    gw.send(tcp(*SC, ACK, 5001, 1001), 4.0)                       # another segment resets it
    gw.send(tcp(*CS, ACK, 1001, 5001), 5.0)
    assert gw.only(5.5).timeout == 431999


def test_zero_window_caps_timeout() -> None:
    gw = Gateway()
    _handshake(gw)
    gw.send(tcp(*SC, ACK, 5001, 1001, window=0), 1.0)
    assert gw.only(1.5).timeout == 299


def test_window_scale_only_when_both_sides_offer_it() -> None:
    ws = b"\x03\x03\x07\x00"
    gw = Gateway()
    gw.send(tcp(*CS, SYN, 1000, options=ws), 0.0)
    gw.send(tcp(*SC, SYN | ACK, 5000, 1001, options=ws), 0.1)
    conn = gw.table.get(1)
    assert conn is not None and isinstance(conn.proto_state, TcpConnState)
    assert [p.scale for p in conn.proto_state.seen] == [7, 7]
    gw2 = Gateway()
    gw2.send(tcp(*CS, SYN, 1000, options=ws), 0.0)
    gw2.send(tcp(*SC, SYN | ACK, 5000, 1001), 0.1)
    conn2 = gw2.table.get(1)
    assert conn2 is not None and isinstance(conn2.proto_state, TcpConnState)
    assert [p.scale for p in conn2.proto_state.seen] == [0, 0]


# ---------------------------------------------------------------------------------------------
# The generated document


def test_doc_is_up_to_date() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "tcp-states.md"
    assert doc.read_text() == render_state_table(), \
        "regenerate with: python -m nat.proto_tcp > docs/tcp-states.md"


# ---------------------------------------------------------------------------------------------
# Random sequences

flag_sets = st.sampled_from([SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, 0,
                             SYN | FIN, FIN, URG | ACK])
segments = st.tuples(st.booleans(), flag_sets, st.integers(0, 2**32 - 1),
                     st.integers(0, 2**32 - 1), st.integers(0, 3000), st.integers(0, 65535),
                     st.floats(0, 50))


@settings(max_examples=150, deadline=None)
@given(st.lists(segments, max_size=25), st.booleans(), st.booleans())
def test_random_sequences_never_break_the_tracker(
        segs: list[tuple[bool, int, int, int, int, int, float]], liberal: bool,
        loose: bool) -> None:
    gw = Gateway(Sysctls(tcp_be_liberal=liberal, tcp_loose=loose))
    now = 0.0
    for from_client, flags, seq, ack, length, window, dt in segs:
        now += dt
        ends = CS if from_client else SC
        res = gw.send(tcp(*ends, flags, seq, ack, b"p" * (length % 40), window), now)
        assert res.verdict == "ACCEPT"
        if res.conn is not None:
            assert res.ctinfo is not CtInfo.INVALID
        for e in gw.entries(now):
            assert isinstance(e.state, TcpState)
            assert e.timeout is not None and 0 <= e.timeout <= 432000
            if e.state is TcpState.NONE:
                pytest.fail("an entry in the table in state NONE")
        assert len(gw.table) <= 1 or all(c.expired(now) for c in list(gw.table)[:-1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40), st.floats(0.01, 3)), max_size=12))
def test_in_order_exchange_always_stays_valid(steps: list[tuple[bool, int, float]]) -> None:
    """A well-behaved connection (in-order data, each side acking all it got) is never
    INVALID and ends up ESTABLISHED and ASSURED."""
    gw = Gateway()
    _handshake(gw)
    cseq, sseq, now = 1001, 5001, 1.0
    for from_client, length, dt in steps:
        now += dt
        data = b"d" * length
        if from_client:
            res = gw.send(tcp(*CS, ACK | PSH, cseq, sseq, data), now)
            cseq += length
        else:
            res = gw.send(tcp(*SC, ACK | PSH, sseq, cseq, data), now)
            sseq += length
        assert res.ctinfo in (CtInfo.ESTABLISHED, CtInfo.ESTABLISHED_REPLY), res.notes
    e = gw.only(now)
    assert e.state is TcpState.ESTABLISHED and e.assured
