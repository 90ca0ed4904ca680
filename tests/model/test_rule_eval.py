"""Walking chains for packets: first terminal target wins, jump/goto/return, policies, and
every match kind (interfaces with wildcards and negation, ranges, ct state, fragments)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
import rules_fixtures as fx
from hypothesis import given, settings
from hypothesis import strategies as st

from nat.hooks import Hook
from nat.packet import ACK, SYN, IcmpHeader, IPv4Header, Packet, TcpHeader, UdpHeader
from nat.rule_eval import EvalError, RuleContext, RuleOutcome, evaluate, matches
from nat.rules.ast import (
    Accept,
    Chain,
    Dnat,
    Drop,
    Goto,
    Jump,
    Masquerade,
    Match,
    NatFlag,
    NatRange,
    PortMatch,
    PortRange,
    Redirect,
    Reject,
    Rule,
    Ruleset,
    Snat,
)
from nat.rules.iptables import parse_iptables_restore
from nat.rules.nft import parse_nft

A = IPv4Address


def udp(src: str, dst: str, sport: int, dport: int) -> Packet:
    return Packet(IPv4Header(A(src), A(dst), 17), UdpHeader(sport, dport))


def tcp(src: str, dst: str, sport: int, dport: int, flags: int = SYN) -> Packet:
    return Packet(IPv4Header(A(src), A(dst), 6), TcpHeader(sport, dport, flags=flags))


def icmp(src: str, dst: str, type_: int, code: int = 0) -> Packet:
    return Packet(IPv4Header(A(src), A(dst), 1), IcmpHeader(type_, code))


def run(rs: Ruleset, hook: Hook, kind: str, pkt: Packet, in_: str | None = None,
        out: str | None = None, state: str = "NEW") -> RuleOutcome:
    (chain,) = rs.base_chains(hook, kind)  # type: ignore[arg-type]
    return evaluate(rs, chain, RuleContext(pkt, in_, out, state))


# -- the seeds ------------------------------------------------------------------------------

def test_seed_dnat_only_for_udp_9999_arriving_on_wan0() -> None:
    rs = parse_iptables_restore(fx.SEED_DNAT_UDP)
    hit = run(rs, Hook.PRE_ROUTING, "nat", udp("203.0.113.10", "192.168.1.9", 37611, 9999),
              "wan0")
    assert hit.target == Dnat(NatRange(NatFlag.MAP_IPS, A("192.168.1.8"), A("192.168.1.8")))
    assert (hit.position, hit.chain.name, hit.by_policy) == (1, "PREROUTING", False)
    assert "line 2" in hit.describe() and "DNAT to 192.168.1.8" in hit.describe()
    for pkt, iface in [(udp("203.0.113.10", "192.168.1.9", 37611, 9999), "lan0"),
                       (udp("203.0.113.10", "192.168.1.9", 37611, 9998), "wan0"),
                       (tcp("203.0.113.10", "192.168.1.9", 37611, 9999), "wan0"),
                       (icmp("203.0.113.10", "192.168.1.9", 8), "wan0")]:
        miss = run(rs, Hook.PRE_ROUTING, "nat", pkt, iface)
        assert (miss.target, miss.rule, miss.by_policy) == (Accept(), None, True)
        assert miss.describe() == "nat PREROUTING: policy ACCEPT"


def test_seed_masquerade_by_output_interface() -> None:
    rs = parse_iptables_restore(fx.SEED_SNAT_TCP)
    pkt = tcp("192.168.1.8", "203.0.113.10", 37611, 443)
    assert run(rs, Hook.POST_ROUTING, "nat", pkt, None, "wan0").target == Masquerade()
    assert run(rs, Hook.POST_ROUTING, "nat", pkt, None, "lan0").target == Accept()


# -- matches --------------------------------------------------------------------------------

def test_interface_wildcards_negation_and_missing_device() -> None:
    m = Match(out_iface="eth+")
    pkt = udp("1.1.1.1", "2.2.2.2", 1, 2)
    assert matches(m, RuleContext(pkt, None, "eth0"))
    assert matches(m, RuleContext(pkt, None, "eth"))
    assert not matches(m, RuleContext(pkt, None, "wan0"))
    assert not matches(m, RuleContext(pkt, None, None))
    neg = Match(in_iface="lan0", in_iface_neg=True)
    assert matches(neg, RuleContext(pkt, "wan0")) and not matches(neg, RuleContext(pkt, "lan0"))
    # No input device (a locally generated packet) compares as the empty name.
    assert matches(neg, RuleContext(pkt, None))
    assert matches(Match(in_iface="+"), RuleContext(pkt, None))
    assert not matches(Match(in_iface="lan0"), RuleContext(pkt, "lan01"))


def test_port_ranges_at_their_edges() -> None:
    rs = parse_iptables_restore(fx.A_RULES)
    for port, dnat in [(7999, False), (8000, True), (8005, True), (8010, True), (8011, False)]:
        out = run(rs, Hook.PRE_ROUTING, "nat", tcp("9.9.9.9", "203.0.113.1", 5555, port),
                  "wan0")
        assert isinstance(out.target, Dnat) == dnat, port
        if isinstance(out.target, Dnat):
            assert out.target.range.min_proto == 7000


def test_address_negation_and_protocol() -> None:
    rs = parse_iptables_restore(fx.A_RULES)
    out_ok = run(rs, Hook.POST_ROUTING, "nat", tcp("192.168.1.8", "8.8.8.8", 1000, 80), None,
                 "eth1")
    assert isinstance(out_ok.target, Snat)
    inside = run(rs, Hook.POST_ROUTING, "nat", tcp("192.168.1.8", "10.1.2.3", 1000, 80), None,
                 "eth1")
    assert inside.target == Accept()  # ! -d 10.0.0.0/8
    not_tcp = run(rs, Hook.POST_ROUTING, "nat", udp("192.168.1.8", "8.8.8.8", 1000, 80), None,
                  "eth1")
    assert not_tcp.target == Accept()
    masq = run(rs, Hook.POST_ROUTING, "nat", udp("192.168.1.8", "8.8.8.8", 1000, 80), None,
               "wan0")
    assert isinstance(masq.target, Masquerade)
    other_lan = run(rs, Hook.POST_ROUTING, "nat", udp("192.168.2.8", "8.8.8.8", 1000, 80),
                    None, "wan0")
    assert other_lan.target == Accept()


def test_icmp_type_and_code() -> None:
    m = Match(proto=1, icmp_type=3, icmp_code=4)
    assert matches(m, RuleContext(icmp("1.1.1.1", "2.2.2.2", 3, 4)))
    assert not matches(m, RuleContext(icmp("1.1.1.1", "2.2.2.2", 3, 3)))
    assert not matches(m, RuleContext(icmp("1.1.1.1", "2.2.2.2", 11, 4)))
    any_code = Match(proto=1, icmp_type=3)
    assert matches(any_code, RuleContext(icmp("1.1.1.1", "2.2.2.2", 3, 13)))


def test_syn_only_flags() -> None:
    rs = parse_iptables_restore(fx.A_RULES)
    syn = run(rs, Hook.FORWARD, "filter", tcp("10.0.0.1", "10.0.0.2", 1, 2, SYN), "wan0", "lan0")
    assert syn.target == Reject("tcp-reset")
    synack = run(rs, Hook.FORWARD, "filter", tcp("10.0.0.1", "10.0.0.2", 1, 2, SYN | ACK),
                 "wan0", "lan0")
    # Not SYN-only: on to `! -i lan+ -g mychain`, whose first rule drops.
    assert (synack.target, synack.chain.name, synack.trail) == (Drop(), "mychain",
                                                                ("mychain",))


def test_later_fragment_never_matches_port_tests_even_negated() -> None:
    frag = Packet(IPv4Header(A("1.1.1.1"), A("2.2.2.2"), 6, frag=0x0010), None, b"x" * 16)
    ctx = RuleContext(frag, "wan0")
    assert matches(Match(proto=6), ctx)
    assert not matches(Match(proto=6, dport=_pm(22, negate=True)), ctx)
    assert not matches(Match(proto=6, dport=_pm(22)), ctx)


def _pm(port: int, negate: bool = False) -> PortMatch:
    return PortMatch((PortRange(port, port),), negate)


@pytest.mark.parametrize(("state", "expected"), [
    ("ESTABLISHED", Accept()), ("RELATED", Accept()), ("INVALID", Drop()),
    ("UNTRACKED", Drop()), ("NEW", Drop())])
def test_ctstate(state: str, expected: object) -> None:
    rs = parse_iptables_restore(fx.B_RULES)
    # INPUT: `! --ctstate NEW` accepts, then (for NEW) the udp rule needs a lan address.
    out = run(rs, Hook.LOCAL_IN, "filter", udp("8.8.8.8", "203.0.113.1", 53, 5353), "wan0",
              None, state)
    assert out.target == (Accept() if state != "NEW" else Drop()), out.describe()
    fwd = run(parse_iptables_restore(fx.A_RULES), Hook.FORWARD, "filter",
              udp("8.8.8.8", "192.168.1.8", 53, 5353), "wan0", "lan0", state)
    assert fwd.target == expected, fwd.describe()


# -- control flow ---------------------------------------------------------------------------

FLOW = """\
*filter
:FORWARD DROP [0:0]
:X - [0:0]
:Y - [0:0]
-A FORWARD -p udp -j X
-A FORWARD -p udp -j ACCEPT
-A FORWARD -p tcp -g X
-A FORWARD -p tcp -j ACCEPT
-A FORWARD -p icmp -j RETURN
-A FORWARD -p icmp -j ACCEPT
-A X --dst 10.0.0.9 -j REJECT
-A X -s 10.0.0.7
-A X -s 10.0.0.8 -j Y
-A X -s 10.0.0.8 -j DROP
-A Y -p udp -j RETURN
-A Y -j ACCEPT
COMMIT
"""


def test_jump_returns_at_the_end_of_a_user_chain_goto_does_not() -> None:
    rs = parse_iptables_restore(FLOW)
    j = run(rs, Hook.FORWARD, "filter", udp("10.0.0.1", "10.0.0.2", 1, 2), "a", "b")
    assert (j.target, j.chain.name, j.position, j.trail) == (Accept(), "FORWARD", 2, ("X",))
    g = run(rs, Hook.FORWARD, "filter", tcp("10.0.0.1", "10.0.0.2", 1, 2), "a", "b")
    assert (g.target, g.by_policy, g.trail) == (Drop(), True, ("X",))
    assert g.describe() == "filter FORWARD -> X: policy DROP"


def test_return_in_a_base_chain_falls_to_the_policy() -> None:
    rs = parse_iptables_restore(FLOW)
    r = run(rs, Hook.FORWARD, "filter", icmp("10.0.0.1", "10.0.0.2", 8), "a", "b")
    assert (r.target, r.by_policy) == (Drop(), True)


def test_nested_jumps_return_and_rules_without_target() -> None:
    rs = parse_iptables_restore(FLOW)
    # udp from .8: X (rule without target goes on) -> Y -> RETURN to X -> DROP in X.
    out = run(rs, Hook.FORWARD, "filter", udp("10.0.0.8", "10.0.0.2", 1, 2), "a", "b")
    assert (out.target, out.chain.name, out.position, out.trail) == (Drop(), "X", 4,
                                                                      ("X", "Y"))
    assert "rule 4 of X (line 14: -A X -s 10.0.0.8 -j DROP): DROP" in out.describe()
    tcp8 = run(rs, Hook.FORWARD, "filter", tcp("10.0.0.8", "10.0.0.2", 1, 2), "a", "b")
    assert (tcp8.target, tcp8.chain.name) == (Accept(), "Y")
    rej = run(rs, Hook.FORWARD, "filter", udp("10.0.0.7", "10.0.0.9", 1, 2), "a", "b")
    assert rej.target == Reject("icmp-port-unreachable")


def test_nft_goto_and_continue() -> None:
    rs = parse_nft(fx.HAND_NFT)
    (fwd,) = rs.base_chains(Hook.FORWARD, "filter")
    ctx = RuleContext(tcp("192.168.1.8", "8.8.8.8", 1, 2, SYN), "lan0", "wan0", "NEW")
    out = evaluate(rs, fwd, ctx)
    assert (out.target, out.chain.name, out.trail) == (Accept(), "allow", ("lan_out", "allow"))
    spoofed = evaluate(rs, fwd, RuleContext(tcp("10.9.9.9", "8.8.8.8", 1, 2), "lan0", "wan0"))
    assert (spoofed.target, spoofed.chain.name) == (Drop(), "lan_out")
    wan = evaluate(rs, fwd, RuleContext(udp("8.8.8.8", "192.168.1.8", 1, 2), "wan0", "lan0"))
    assert wan.target == Reject("icmp-admin-prohibited")


def test_nat_target_decides_and_redirect_in_output() -> None:
    rs = parse_nft(fx.HAND_NFT)
    (out_chain,) = rs.base_chains(Hook.LOCAL_OUT, "nat")
    out = evaluate(rs, out_chain, RuleContext(tcp("127.0.0.1", "1.2.3.4", 5, 8080), None,
                                              "wan0"))
    assert out.target == Redirect(NatRange(NatFlag.PROTO_SPECIFIED, min_proto=80, max_proto=80))


def test_base_chains_run_in_priority_order_and_policy_drop() -> None:
    rs = parse_nft("table ip t {\n chain late {\n  type filter hook input priority 10; "
                   "policy drop;\n }\n chain early {\n  type filter hook input priority -10;"
                   "\n  udp dport 53 accept\n }\n}\n")
    early, late = rs.base_chains(Hook.LOCAL_IN, "filter")
    assert (early.name, late.name) == ("early", "late")
    pkt = udp("1.1.1.1", "2.2.2.2", 1, 53)
    assert evaluate(rs, early, RuleContext(pkt, "x")).target == Accept()
    assert evaluate(rs, late, RuleContext(pkt, "x")).target == Drop()


def test_hand_built_rulesets_that_cannot_be_walked() -> None:
    user = Chain("filter", "U", "filter")
    base = Chain("filter", "INPUT", "filter", Hook.LOCAL_IN, 0, "ACCEPT",
                 (Rule(Match(), Jump("missing")),))
    rs = Ruleset((base, user))
    ctx = RuleContext(udp("1.1.1.1", "2.2.2.2", 1, 2), "x")
    with pytest.raises(EvalError, match="not a base chain"):
        evaluate(rs, user, ctx)
    with pytest.raises(EvalError, match="missing chain"):
        evaluate(rs, base, ctx)
    loop = Chain("filter", "L", "filter", rules=(Rule(Match(), Jump("L")),))
    base2 = Chain("filter", "INPUT", "filter", Hook.LOCAL_IN, 0, "ACCEPT",
                  (Rule(Match(), Jump("L")),))
    with pytest.raises(EvalError, match="deeper"):
        evaluate(Ruleset((base2, loop)), base2, ctx)
    spin = Chain("filter", "L", "filter", rules=(Rule(Match(), Goto("L")),))
    with pytest.raises(EvalError, match="goto loop"):
        evaluate(Ruleset((base2, spin)), base2, ctx)


# -- property: every syntax of a ruleset decides every packet the same way --------------------

IFACES = [None, "wan0", "lan0", "lan1", "eth0", "lo"]
ADDRS = ["192.168.1.8", "192.168.1.9", "192.168.2.1", "10.0.0.7", "203.0.113.1", "1.2.3.4",
         "8.8.8.8"]
PORTS = [0, 22, 53, 80, 123, 130, 131, 1023, 1024, 2222, 5000, 5010, 6000, 7999, 8000,
         8010, 8080, 9999, 65535]


@st.composite
def contexts(draw: st.DrawFn) -> RuleContext:
    src, dst = A(draw(st.sampled_from(ADDRS))), A(draw(st.sampled_from(ADDRS)))
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "gre", "frag"]))
    port = st.one_of(st.sampled_from(PORTS), st.integers(0, 65535))
    pkt: Packet
    if kind == "tcp":
        pkt = Packet(IPv4Header(src, dst, 6), TcpHeader(draw(port), draw(port),
                                                        flags=draw(st.integers(0, 255))))
    elif kind == "udp":
        pkt = Packet(IPv4Header(src, dst, 17), UdpHeader(draw(port), draw(port)))
    elif kind == "icmp":
        pkt = Packet(IPv4Header(src, dst, 1), IcmpHeader(draw(st.integers(0, 18)),
                                                         draw(st.integers(0, 15))))
    elif kind == "gre":
        pkt = Packet(IPv4Header(src, dst, 47), None, b"\0" * 8)
    else:
        pkt = Packet(IPv4Header(src, dst, draw(st.sampled_from([6, 17])), frag=0x0020), None,
                     b"\0" * 8)
    state = draw(st.sampled_from(["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"]))
    return RuleContext(pkt, draw(st.sampled_from(IFACES)), draw(st.sampled_from(IFACES)), state)


FORMS = {
    name: [parse_iptables_restore(getattr(fx, f"{name}_RULES"))] + [
        parse_nft(getattr(fx, f"{name}_{form}")) for form in ("TRANSLATED", "LISTED",
                                                              "IPT_LISTED")]
    for name in ("A", "B")
}
FORMS["HAND"] = [parse_nft(fx.HAND_NFT), parse_nft(fx.HAND_LISTED)]


@settings(max_examples=300)
@given(st.sampled_from(sorted(FORMS)), contexts())
def test_every_form_of_a_ruleset_decides_alike(name: str, ctx: RuleContext) -> None:
    forms = FORMS[name]
    for hook in Hook:
        for kind in ("nat", "filter"):
            results = []
            for rs in forms:
                chains = rs.base_chains(hook, kind)
                results.append([(o.target, o.chain.name, o.position, o.trail)
                                for o in (evaluate(rs, c, ctx) for c in chains)])
            assert all(r == results[0] for r in results), (hook, kind)
