"""Rule syntax users write (issue 12 part 5): nft ordering operators on ports and addresses,
ct status / --ctstate SNAT,DNAT and the other conntrack options, LOG / log."""

from __future__ import annotations

import operator
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments import craft
from nat.rule_eval import RuleContext, evaluate, matches
from nat.rules.ast import Match
from nat.rules.ct_match import CtView
from nat.rules.iptables import parse_iptables_restore
from nat.rules.nft import parse_nft

OPS: dict[str, Callable[[int, int], bool]] = {
    "<": operator.lt, "lt": operator.lt, "<=": operator.le, "le": operator.le,
    ">": operator.gt, "gt": operator.gt, ">=": operator.ge, "ge": operator.ge,
    "!=": operator.ne, "ne": operator.ne, "==": operator.eq, "eq": operator.eq,
}


def _nft_match(expr: str) -> Match:
    rules = parse_nft("table ip t {\n chain c {\n  type filter hook forward priority 0;\n"
                      f"  {expr} accept\n }}\n}}\n")
    return rules.chains[0].rules[0].match


@given(st.sampled_from(sorted(OPS)), st.integers(0, 65535), st.integers(0, 65535))
def test_port_comparisons_agree_with_python(op: str, bound: int, port: int) -> None:
    m = _nft_match(f"tcp dport {op} {bound}")
    pkt = craft.tcp(IPv4Address("10.0.0.1"), 1, IPv4Address("10.0.0.2"), port, 0x02)
    assert matches(m, RuleContext(pkt)) is OPS[op](port, bound)


@given(st.sampled_from(sorted(OPS)), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_address_comparisons_agree_with_python(op: str, bound: int, addr: int) -> None:
    m = _nft_match(f"ip saddr {op} {IPv4Address(bound)}")
    pkt = craft.udp(IPv4Address(addr), 1, IPv4Address("10.0.0.2"), 2)
    assert matches(m, RuleContext(pkt)) is OPS[op](addr, bound)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.booleans())
def test_address_ranges(lo: int, hi: int, addr: int, neg: bool) -> None:
    lo, hi = sorted((lo, hi))
    m = _nft_match(f"ip daddr {'!= ' if neg else ''}{IPv4Address(lo)}-{IPv4Address(hi)}")
    pkt = craft.udp(IPv4Address("10.0.0.1"), 1, IPv4Address(addr), 2)
    assert matches(m, RuleContext(pkt)) is ((lo <= addr <= hi) != neg)


def _ct(status: int, reply: bool = False) -> CtView:
    a = IPv4Address
    return CtView(status, 6, a("203.0.113.10"), a("203.0.113.1"), 40000, 8080,
                  a("192.168.1.8"), a("203.0.113.10"), 80, 40000, reply)


DNAT, SNAT, ASSURED = 1 << 5, 1 << 4, 1 << 2
PKT = craft.tcp(IPv4Address("203.0.113.10"), 40000, IPv4Address("192.168.1.8"), 80, 0x10)


@pytest.mark.parametrize(("ipt", "nft", "status", "reply", "want"), [
    ("--ctstate DNAT", "ct status dnat", DNAT, False, True),
    ("--ctstate SNAT", "ct status snat", DNAT, False, False),
    ("! --ctstate DNAT", "ct status != dnat", SNAT, False, True),
    ("--ctstatus ASSURED", "ct status assured", ASSURED | DNAT, False, True),
    ("--ctorigdst 203.0.113.1 --ctorigdstport 8080", "ct original daddr 203.0.113.1 "
     "ct original proto-dst 8080", DNAT, False, True),
    ("--ctreplsrc 192.168.1.8 --ctreplsrcport 80", "ct reply saddr 192.168.1.8 "
     "ct reply proto-src 80", DNAT, False, True),
    ("! --ctreplsrc 192.168.1.0/24", "ct reply saddr != 192.168.1.0/24", DNAT, False, False),
    ("--ctdir REPLY", "ct direction reply", DNAT, True, True),
    ("--ctdir REPLY", "ct direction reply", DNAT, False, False),
])
def test_conntrack_options_in_both_syntaxes(ipt: str, nft: str, status: int, reply: bool,
                                            want: bool) -> None:
    m_ipt = parse_iptables_restore(f"*filter\n-A FORWARD -m conntrack {ipt} -j ACCEPT\n"
                                   "COMMIT\n").chains[-1].rules[0].match
    m_nft = _nft_match(nft)
    ctx = RuleContext(PKT, ctstate="ESTABLISHED", ct=_ct(status, reply))
    assert matches(m_ipt, ctx) is want
    assert matches(m_nft, ctx) is want


def test_without_an_entry_only_a_conntrack_match_with_ctstate_skips_its_other_options() -> None:
    """xt_conntrack: with no entry, a match that has --ctstate returns after the state test;
    nft's ct expressions break the rule instead."""
    with_state = parse_iptables_restore(
        "*filter\n-A FORWARD -m conntrack --ctstate INVALID --ctorigdst 1.2.3.4 -j DROP\n"
        "COMMIT\n").chains[-1].rules[0].match
    alone = parse_iptables_restore(
        "*filter\n-A FORWARD -m conntrack ! --ctorigdst 1.2.3.4 -j DROP\nCOMMIT\n"
    ).chains[-1].rules[0].match
    ctx = RuleContext(PKT, ctstate="INVALID", ct=None)
    assert matches(with_state, ctx) and not matches(alone, ctx)
    assert not matches(_nft_match("ct status != dnat"), ctx)


def test_log_rules_are_listed_and_the_walk_goes_on() -> None:
    for text, parse in (
        ("*filter\n-A FORWARD -p tcp -j LOG --log-prefix \"fw: \"\n-A FORWARD -j DROP\nCOMMIT\n",
         parse_iptables_restore),
        ("table ip filter {\n chain FORWARD {\n  type filter hook forward priority 0;\n"
         "  ip protocol tcp log prefix \"fw: \" level info\n  drop\n }\n}\n", parse_nft),
    ):
        ruleset = parse(text)  # type: ignore[operator]
        out = evaluate(ruleset, ruleset.chains[0], RuleContext(PKT))
        assert str(out.target) == "DROP" and len(out.logged) == 1
        assert out.logged[0].lineno in (2, 4)
