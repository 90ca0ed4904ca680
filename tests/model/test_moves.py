"""Steps that change the world, on the model side (no root): nat/ctnetlink.py's table changes,
the gateway's ruleset and sysctl swaps, the replay applying moves at their moment, the spec's
checks of the new steps, and the bundle's record of the moments."""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import craft
from experiments.judging.judgement import judge_observed
from experiments.judging.replay import replay
from experiments.model_config import spec_config
from experiments.model_moves import GatewayMoves
from experiments.modelrun.run import run_on_model
from experiments.observed import FINAL, Moment, Observed, Snapshot, WirePacket
from experiments.plan import ConntrackChange, CtMatch, SetRules, SetSysctls, plan
from experiments.records.bundle_fields import observed as read_observed
from experiments.records.safe_read import BundleError
from experiments.spec import SpecError, load_spec
from nat import ctnetlink
from nat.conn import Conn
from nat.conntrack import Table
from nat.ctnetlink import CtFilter, EntryExists
from nat.pipeline import Gateway
from nat.rules.iptables import parse_iptables_restore
from nat.status import Status
from nat.tuple import Proto, Tuple, invert

SPECS = Path(__file__).parents[2] / "experiments" / "specs"
LAPTOP, DESKTOP, GW_WAN = (IPv4Address(a) for a in ("192.168.1.8", "203.0.113.10",
                                                      "203.0.113.1"))
MASQ = "*nat\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n"


def _udp(sport: int, dport: int = 7000) -> Tuple:
    return Tuple(Proto.UDP, LAPTOP, DESKTOP, sport, dport)


def _table_with(sports: list[int], now: float = 0.0) -> Table:
    table = Table()
    for sport in sports:
        t = _udp(sport)
        table.insert(Conn(table.next_id(), t, invert(t), Status.CONFIRMED, timeout=now + 30))
    return table


# --- nat/ctnetlink.py ---------------------------------------------------------------------------


def test_flush_deletes_every_entry_expired_or_not() -> None:
    table = _table_with([1000, 1001])
    table.insert(Conn(table.next_id(), _udp(1002), invert(_udp(1002)), Status.CONFIRMED,
                      timeout=-1))
    assert len(ctnetlink.flush(table)) == 3
    assert len(table) == 0


def test_delete_takes_only_what_the_filter_matches() -> None:
    table = _table_with([1000, 1001, 1002])
    gone = ctnetlink.delete(table, CtFilter(proto=Proto.UDP, sport=1001), 1.0)
    assert [c.orig.sport for c in gone] == [1001]
    assert sorted(c.orig.sport for c in table) == [1000, 1002]
    assert ctnetlink.delete(table, CtFilter(proto=Proto.TCP), 1.0) == []
    # A reply-tuple field filters on the reply tuple.
    assert len(ctnetlink.delete(table, CtFilter(reply_dport=1000), 1.0)) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1024, 1040), unique=True, max_size=12),
       st.one_of(st.none(), st.integers(1024, 1040)),
       st.one_of(st.none(), st.sampled_from([Proto.UDP, Proto.TCP])))
def test_delete_partitions_the_table(sports: list[int], sport: int | None,
                                     proto: int | None) -> None:
    """What delete removes and what it leaves are exactly the matching and the other live
    entries: nothing else is touched."""
    table = _table_with(sports)
    flt = CtFilter(proto=proto, sport=sport)
    before = {c.id: c for c in table}
    gone = ctnetlink.delete(table, flt, 0.5)
    assert all(flt.matches(c) for c in gone)
    assert not any(flt.matches(c) for c in table)
    assert {c.id for c in gone} | {c.id for c in table} == set(before)
    assert all(before[c.id] == c for c in table)


def test_insert_is_a_confirmed_entry_without_nat() -> None:
    table = Table()
    orig = _udp(5000, 6000)
    conn = ctnetlink.insert(table, orig, invert(orig), 2.0, timeout=60,
                            status=("SEEN_REPLY",), mark=7)
    assert conn.status == Status.CONFIRMED | Status.SEEN_REPLY    # no *_NAT_DONE, no NAT bits
    entry = table.entries(2.0)[0]
    assert (entry.timeout, entry.mark, entry.unreplied, entry.assured) == (60, 7, False, False)
    with pytest.raises(EntryExists):
        ctnetlink.insert(table, invert(orig), orig, 2.0, timeout=5)
    assert len(table) == 1


def test_update_sets_timeout_from_now_and_mark() -> None:
    table = _table_with([1000, 1001])
    done = ctnetlink.update(table, CtFilter(sport=1000), 10.0, timeout=300, mark=9)
    assert len(done) == 1
    by_port = {e.orig.sport: e for e in table.entries(10.0)}
    assert (by_port[1000].timeout, by_port[1000].mark) == (300, 9)
    assert (by_port[1001].timeout, by_port[1001].mark) == (20, 0)


# --- the modelled gateway -----------------------------------------------------------------------


def test_a_ruleset_swap_keeps_bindings_and_tracking_follows_the_rules() -> None:
    spec = load_spec(SPECS / "ct-flush-new-entry.toml")
    gw = Gateway(spec_config(spec))
    first = gw.receive(craft.udp(LAPTOP, 41000, DESKTOP, 7000, b"a"), "lan0", 0.1)
    assert first.packet_out is not None and first.packet_out.ip.src == GW_WAN
    gw.load_ruleset(parse_iptables_restore(""))
    assert not gw.tracking
    # The flow's entry keeps its MASQUERADE binding, but nothing is tracked any more: the
    # next datagram passes untouched (the entry stays, counting down).
    again = gw.receive(craft.udp(LAPTOP, 41000, DESKTOP, 7000, b"b"), "lan0", 0.2)
    assert again.packet_out is not None and again.packet_out.ip.src == LAPTOP
    assert len(gw.entries(0.2)) == 1
    gw.load_ruleset(parse_iptables_restore(MASQ))
    third = gw.receive(craft.udp(LAPTOP, 41000, DESKTOP, 7000, b"c"), "lan0", 0.3)
    assert third.packet_out is not None and third.packet_out.ip.src == GW_WAN


def test_sysctl_moves_merge_with_the_values_before() -> None:
    spec = load_spec(SPECS / "sysctl-udp-timeout-shrink.toml")
    gw = Gateway(spec_config(spec))
    movers = GatewayMoves({"net.netfilter.nf_conntrack_icmp_timeout": "12"},
                          lambda mv, fed: parse_iptables_restore(mv.rules))
    movers.apply(gw, SetSysctls((("net.netfilter.nf_conntrack_udp_timeout", "5"),)), 0.0)
    assert (gw.config.sysctls.udp_timeout, gw.config.sysctls.icmp_timeout) == (5, 12)


# --- natlab model runs the library's moving specs -------------------------------------------


def test_model_run_rules_swap_keeps_the_old_entry_until_deleted() -> None:
    result = run_on_model(load_spec(SPECS / "rules-swap-keeps-entry.toml"))
    (after_change,) = dict(result.checkpoints)["after-rule-change"]
    assert after_change.reply.src == GW_WAN and after_change.unreplied
    (final,) = result.entries
    assert final.reply.src == LAPTOP
    assert [r.payload for r in result.received if r.host == "laptop"] == [b"knock once more"]


def test_model_run_inserted_entry_is_never_masqueraded() -> None:
    result = run_on_model(load_spec(SPECS / "ct-insert-then-send.toml"))
    got = [r for r in result.received if r.host == "desktop"]
    assert [(r.src, r.payload) for r in got] == [(LAPTOP, b"hello")]
    (final,) = result.entries
    assert final.assured and final.timeout is not None and final.timeout > 100


def test_model_run_host_rules_reject_then_lift() -> None:
    result = run_on_model(load_spec(SPECS / "host-reject-window.toml"))
    laptop = [(r.proto, r.payload) for r in result.received if r.host == "laptop"]
    assert laptop[0][0] == "icmp" and laptop[-1] == ("udp", b"here")


# --- the replay applies moves at their moment -------------------------------------------------


def _wire(t: float, sport: int) -> WirePacket:
    return WirePacket(t, "lan0", "in", craft.udp(LAPTOP, sport, DESKTOP, 7000, b"x").to_bytes())


def test_replay_applies_a_move_between_the_packets_around_it() -> None:
    spec = load_spec(SPECS / "ct-flush-new-entry.toml")
    flush = ConntrackChange("flush", CtMatch())
    movers = GatewayMoves({}, lambda mv, fed: parse_iptables_restore(mv.rules))

    def apply(gw: Gateway, now: float) -> str:
        return movers.apply(gw, flush, now)

    packets = [_wire(0.1, 41000), _wire(5.0, 41001)]
    pred = replay(spec_config(spec), packets, [("a", 1.0), ("b", 3.0), (FINAL, 6.0)],
                  moves=[(2.0, apply)])
    counts = {name: len(entries) for name, _, entries in pred.snapshots}
    assert counts == {"a": 1, "b": 0, FINAL: 1}
    # Without the move, the first flow's entry is still there at the end.
    pred = replay(spec_config(spec), packets, [(FINAL, 6.0)])
    assert len(pred.snapshots[0][2]) == 2


def test_judging_reports_moments_that_do_not_fit_the_plan() -> None:
    spec = load_spec(SPECS / "ct-flush-new-entry.toml")
    flush_step = next(i for i, a in enumerate(plan(spec).actions)
                      if isinstance(a, ConntrackChange))
    base = Observed("6.18.0", {}, (Snapshot(FINAL, 1.0, ()),), ())
    unrecorded = judge_observed(spec, base)
    assert any(d.field == "moment" for d in unrecorded.diffs)
    stray = Observed("6.18.0", {}, (Snapshot(FINAL, 1.0, ()),), (),
                     moments=(Moment(flush_step, 0.5), Moment(0, 0.6)))
    assert [d.where for d in judge_observed(spec, stray).diffs] == ["moment of step #1"]


# --- the bundle keeps the moments --------------------------------------------------------------


def test_moments_round_trip_through_observed_json(tmp_path: Path) -> None:
    obs = Observed("6.18.0", {}, (Snapshot(FINAL, 1.0, ()),), (),
                   moments=(Moment(2, 0.25, "*nat\nCOMMIT\n"), Moment(4, 0.5)))
    doc = json.loads(json.dumps(obs.to_json()))
    assert Observed.from_json(doc, []).moments == obs.moments
    assert read_observed(tmp_path, doc, ()).moments == obs.moments
    doc["moments"][0]["step"] = -1
    with pytest.raises(BundleError, match=re.escape("moments[0].step")):
        read_observed(tmp_path, doc, ())


# --- the spec's checks of the new steps ---------------------------------------------------------

BASE = 'topology = "home"\n'


@pytest.mark.parametrize(("step", "field", "words"), [
    ('action = "conntrack"\nop = "flush"\nsrc = "1.2.3.4"', "steps.0.src", "not taken by"),
    ('action = "conntrack"\nop = "delete"\nsrc = "1.2.3"', "steps.0.src", "not an IPv4"),
    ('action = "conntrack"\nop = "delete"\nsport = 5', "steps.0.sport", "ports need proto"),
    ('action = "conntrack"\nop = "insert"\nproto = "tcp"', "steps.0.proto", "udp"),
    ('action = "conntrack"\nop = "insert"\nproto = "udp"\nsrc = "1.2.3.4"',
     "steps.0.dst", "missing"),
    ('action = "conntrack"\nop = "update"\nsrc = "1.2.3.4"', "steps.0", "timeout"),
    ('action = "conntrack"\nop = "update"\nproto = "udp"\ntimeout = 3', "steps.0.proto",
     "not taken by"),
    ('action = "conntrack"\nop = "delete"\nstatus = ["DYING"]', "steps.0.status.0", ""),
    ('action = "conntrack"\nop = "clear"', "steps.0.op", ""),
    ('action = "sysctl"\nset = { "net.netfilter.nf_conntrack_max" = 5 }',
     'steps.0.set."net.netfilter.nf_conntrack_max"', "read-only"),
    ('action = "sysctl"\nset = { "net.netfilter.nf_conntrack_tcp_loose" = 2 }',
     'steps.0.set."net.netfilter.nf_conntrack_tcp_loose"', "range"),
    ('action = "sysctl"\nset = {}', "steps.0.set", "empty"),
    ('action = "host_rules"\nhost = "router"', "steps.0.host", "unknown host"),
    ('action = "host_rules"\nhost = "gateway"', "steps.0.host", "`rules` step"),
    ('action = "rules"\nnft = "include \\"/etc/passwd\\""', "steps.0.nft", "include"),
])
def test_bad_moving_steps_are_one_line_naming_the_field(tmp_path: Path, step: str, field: str,
                                                        words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BASE + "[[steps]]\n" + step + "\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field_path == field, str(info.value)
    assert words in info.value.message
    assert "\n" not in str(info.value)


def test_an_insert_defaults_its_reply_to_the_inverse(tmp_path: Path) -> None:
    path = tmp_path / "ins.toml"
    path.write_text(BASE + '[[steps]]\naction = "conntrack"\nop = "insert"\nproto = "udp"\n'
                    'src = "192.168.1.8"\ndst = "203.0.113.10"\nsport = 1\ndport = 2\n'
                    'timeout = 9\n')
    (move,) = plan(load_spec(path)).actions
    assert isinstance(move, ConntrackChange)
    m = move.match
    assert (m.reply_src, m.reply_dst, m.reply_sport, m.reply_dport) == (DESKTOP, LAPTOP, 2, 1)


def test_a_rules_step_is_checked_by_the_model_parser(tmp_path: Path) -> None:
    from experiments.model_config import check_rules
    path = tmp_path / "r.toml"
    path.write_text(BASE + '[[steps]]\naction = "rules"\nrules = "*nat\\n-A BOGUS -j ACCEPT\\n'
                    'COMMIT\\n"\n')
    with pytest.raises(SpecError) as info:
        check_rules(load_spec(path))
    assert info.value.field_path == "steps.0.rules"
    assert isinstance(plan(load_spec(path)).actions[0], SetRules)


# --- the documentation's examples of these steps run through the model -------------------------

_DOC = Path(__file__).parents[2] / "docs" / "spec-format.md"
_MOVING = [b for b in re.findall(r"```toml\n(.*?)```", _DOC.read_text(), re.S)
           if re.search(r'action = "(rules|conntrack|sysctl|host_rules)"', b)]


def test_the_docs_show_every_moving_step() -> None:
    shown = {kind for b in _MOVING for kind in re.findall(r'action = "(\w+)"', b)}
    assert shown == {"rules", "conntrack", "sysctl", "host_rules"}


@pytest.mark.parametrize("block", _MOVING, ids=lambda b: b.splitlines()[1][:40])
def test_doc_example_of_a_moving_step_runs_on_the_model(block: str, tmp_path: Path) -> None:
    path = tmp_path / "doc.toml"
    path.write_text(BASE + f'rules = """\n{MASQ}"""\n' + block + '\n[[steps]]\naction = "udp"\n'
                    'from = "laptop"\nto = "desktop"\nsport = 5000\ndport = 6000\n'
                    'reply = "r"\n')
    result = run_on_model(load_spec(path))
    assert [r.host for r in result.received] == ["desktop", "laptop"]


def test_model_run_shrunk_udp_timeout_applies_to_the_next_flow_only() -> None:
    result = run_on_model(load_spec(SPECS / "sysctl-udp-timeout-shrink.toml"))
    timeouts = {e.orig.sport: e.timeout for e in result.entries}
    assert timeouts[42001] is not None and timeouts[42001] > 25
    assert timeouts[42002] is not None and timeouts[42002] <= 5


def test_model_run_a_flushed_nat_chain_stops_tracking_new_flows() -> None:
    """No rule needing conntrack is left after `-F POSTROUTING` (the DNAT was deleted
    before): the laptop's new flow makes no entry and leaves unmasqueraded."""
    result = run_on_model(load_spec(SPECS / "rules-add-delete-flush.toml"))
    assert 40012 not in {e.orig.sport for e in result.entries}
    assert [r.src for r in result.received if r.payload == b"unmasked"] == [LAPTOP]
