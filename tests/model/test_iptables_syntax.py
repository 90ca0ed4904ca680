"""iptables-restore text -> rules AST: the seeds, every supported construct, and the errors
iptables itself gives (messages and line numbers measured with iptables 1.8.9)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
import rules_fixtures as fx
from hypothesis import given
from hypothesis import strategies as st

from nat.hooks import Hook
from nat.rules.ast import (
    SYN_ONLY,
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
    Return,
    Rule,
    Ruleset,
    RuleSyntaxError,
    Snat,
    TcpFlagsMatch,
    UnsupportedRule,
)
from nat.rules.iptables import parse_iptables_restore

A = IPv4Address
N = IPv4Network


def ports(*ranges: tuple[int, int], negate: bool = False) -> PortMatch:
    return PortMatch(tuple(PortRange(lo, hi) for lo, hi in ranges), negate)


def one(lo: int) -> PortMatch:
    return ports((lo, lo))


def rules_of(rs: Ruleset, table: str, chain: str) -> list[tuple[Match, object]]:
    return [(r.match, r.target) for r in rs.chain(table, chain).rules]


# -- the seeds ------------------------------------------------------------------------------

def test_seed_dnat_udp_is_one_dnat_rule_in_prerouting() -> None:
    rs = parse_iptables_restore(fx.SEED_DNAT_UDP)
    rule = Rule(Match(proto=17, dport=one(9999), in_iface="wan0"),
                Dnat(NatRange(NatFlag.MAP_IPS, A("192.168.1.8"), A("192.168.1.8"))))
    assert rs == Ruleset((Chain("nat", "PREROUTING", "nat", Hook.PRE_ROUTING, -100, "ACCEPT",
                                (rule,)),), "iptables")
    assert rs.chains[0].rules[0].lineno == 2
    assert rs.chains[0].rules[0].source.startswith("-A PREROUTING -i wan0")
    assert rs.has_nat() and rs.needs_conntrack()


def test_seed_snat_tcp_is_one_masquerade_in_postrouting() -> None:
    rs = parse_iptables_restore(fx.SEED_SNAT_TCP)
    assert rs == Ruleset((Chain("nat", "POSTROUTING", "nat", Hook.POST_ROUTING, 100, "ACCEPT",
                                (Rule(Match(out_iface="wan0"), Masquerade()),)),), "iptables")
    assert rs.base_chains(Hook.POST_ROUTING, "nat") == rs.chains
    assert rs.base_chains(Hook.PRE_ROUTING, "nat") == ()


# -- fixture A, rule by rule ----------------------------------------------------------------

def test_fixture_a_nat_rules() -> None:
    rs = parse_iptables_restore(fx.A_RULES)
    pre = rules_of(rs, "nat", "PREROUTING")
    assert pre[1] == (
        Match(proto=6, dport=ports((8000, 8010)), in_iface="wan0"),
        Dnat(NatRange(NatFlag.MAP_IPS | NatFlag.PROTO_SPECIFIED | NatFlag.PROTO_RANDOM
                      | NatFlag.PERSISTENT, A("192.168.1.8"), A("192.168.1.9"), 7000, 7010)))
    assert pre[2] == (Match(proto=1, icmp_type=8), Accept())
    assert pre[3] == (Match(proto=1, icmp_type=8), Return())
    post = rules_of(rs, "nat", "POSTROUTING")
    assert post[0] == (
        Match(proto=17, src=N("192.168.1.0/24"), out_iface="wan0"),
        Masquerade(NatRange(NatFlag.PROTO_SPECIFIED | NatFlag.PROTO_RANDOM_FULLY,
                            min_proto=1024, max_proto=2000)))
    assert post[1] == (
        Match(proto=6, dst=N("10.0.0.0/8"), dst_neg=True, out_iface="eth+"),
        Snat(NatRange(NatFlag.MAP_IPS | NatFlag.PROTO_SPECIFIED, A("203.0.113.5"),
                      A("203.0.113.5"), 5000, 5000)))
    assert rules_of(rs, "nat", "OUTPUT") == [
        (Match(proto=6, dport=one(80)),
         Redirect(NatRange(NatFlag.PROTO_SPECIFIED, min_proto=8080, max_proto=8080)))]
    # Declaration order of the chains is kept; priorities come from the table.
    assert [(c.name, c.priority) for c in rs.chains if c.table == "nat"] == [
        ("PREROUTING", -100), ("POSTROUTING", 100), ("OUTPUT", -100)]


def test_fixture_a_filter_rules() -> None:
    rs = parse_iptables_restore(fx.A_RULES)
    fwd = rules_of(rs, "filter", "FORWARD")
    assert fwd == [
        (Match(ctstate=frozenset({"ESTABLISHED", "RELATED"})), Accept()),
        (Match(in_iface="lan0", ctstate=frozenset({"NEW"})), Jump("mychain")),
        (Match(proto=6, tcp_flags=SYN_ONLY), Reject("tcp-reset")),
        (Match(proto=17, dport=ports((53, 53), (123, 130))), Accept()),
        (Match(in_iface="lan+", in_iface_neg=True), Goto("mychain")),
    ]
    assert rs.chain("filter", "FORWARD").policy == "DROP"
    my = rs.chain("filter", "mychain")
    assert (my.hook, my.policy) == (None, None)
    assert rules_of(rs, "filter", "mychain") == [
        (Match(), Drop()),  # the comment match is only a comment
        (Match(proto=6, dport=ports((22, 22), negate=True)), Reject("icmp-port-unreachable")),
        (Match(proto=47), Drop()),
    ]
    inp = rules_of(rs, "filter", "INPUT")
    assert inp[0] == (Match(src=N("1.2.3.4/32")), Drop())  # -I INPUT 1 went first
    assert inp[1] == (Match(proto=6, sport=ports((1, 1023))), Accept())
    assert inp[2] == (Match(), Accept())  # -p all tests nothing
    assert inp[3] == (Match(ctstate=frozenset({"INVALID", "UNTRACKED"})), Drop())
    assert inp[4] == (Match(proto=1), Reject("icmp-host-unreachable"))


def test_fixture_b_user_chain_in_nat_and_snat_at_input() -> None:
    rs = parse_iptables_restore(fx.B_RULES)
    fwd = rs.chain("nat", "portfwd")
    assert (fwd.kind, fwd.hook) == ("nat", None)
    assert rules_of(rs, "nat", "PREROUTING") == [(Match(in_iface="wan0"), Jump("portfwd"))]
    assert rules_of(rs, "nat", "INPUT") == [
        (Match(src=N("10.0.0.0/8")),
         Snat(NatRange(NatFlag.MAP_IPS, A("10.0.0.1"), A("10.0.0.1"))))]
    assert rs.chain("nat", "INPUT").priority == 100
    inp = rules_of(rs, "filter", "INPUT")
    assert inp[1] == (Match(ctstate=frozenset({"NEW"}), ctstate_neg=True), Accept())
    assert inp[2] == (Match(proto=6, dport=one(22), tcp_flags=TcpFlagsMatch(0x12, 0x02)),
                      Jump("lan"))
    # -s with two addresses becomes two rules, as iptables expands it.
    assert inp[4:] == [(Match(proto=17, src=N("192.168.1.8/32")), Accept()),
                       (Match(proto=17, src=N("192.168.1.9/32")), Accept())]
    assert rs.chain("filter", "INPUT").rules[4].lineno == rs.chain("filter", "INPUT") \
        .rules[5].lineno
    assert rules_of(rs, "filter", "FORWARD")[0] == (
        Match(proto=6, sport=ports((1, 1023), negate=True)), Accept())


# -- chains ---------------------------------------------------------------------------------

def test_builtin_chains_exist_only_when_declared_or_used_like_iptables_nft() -> None:
    assert parse_iptables_restore("*nat\nCOMMIT\n*filter\nCOMMIT\n").chains == ()
    rs = parse_iptables_restore("*nat\nCOMMIT\n")
    assert not rs.has_nat() and not rs.needs_conntrack()
    legacy = parse_iptables_restore("*nat\nCOMMIT\n", all_builtin_chains=True)
    assert [c.name for c in legacy.chains] == ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]
    assert legacy.has_nat()


def test_ctstate_alone_needs_conntrack_but_is_not_nat() -> None:
    rs = parse_iptables_restore("*filter\n-A FORWARD -m conntrack --ctstate INVALID -j DROP\n"
                                "COMMIT\n")
    assert rs.needs_conntrack() and not rs.has_nat()
    plain = parse_iptables_restore("*filter\n-A FORWARD -p tcp -j DROP\nCOMMIT\n")
    assert not plain.needs_conntrack()


def test_new_chain_policy_insert_and_raw_mangle_tables() -> None:
    rs = parse_iptables_restore(
        "*raw\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*mangle\nCOMMIT\n"
        "*filter\n-N X\n-A X -j DROP\n-P INPUT DROP\n-A INPUT -j X\n-A INPUT -j ACCEPT\n"
        "-I INPUT 2 -p udp -j RETURN\n-I INPUT -p tcp -j ACCEPT\nCOMMIT\n")
    assert {c.table for c in rs.chains} == {"filter"}
    assert rs.chain("filter", "INPUT").policy == "DROP"
    assert rules_of(rs, "filter", "INPUT") == [
        (Match(proto=6), Accept()), (Match(), Jump("X")), (Match(proto=17), Return()),
        (Match(), Accept())]


def test_repeated_table_block_replaces_the_first() -> None:
    rs = parse_iptables_restore("*filter\n-A INPUT -j DROP\nCOMMIT\n"
                                "*filter\n-A FORWARD -j ACCEPT\nCOMMIT\n")
    assert [c.name for c in rs.chains] == ["FORWARD"]


def test_quoting_comments_counters_and_blank_lines() -> None:
    rs = parse_iptables_restore(
        "# a comment\n\n*filter\n:INPUT ACCEPT [12:345]\n"
        "-A INPUT -m comment --comment \"ssh from the lan\" -p tcp --dport 22 -j ACCEPT\n"
        "-A INPUT -c 5 600 -s 0.0.0.0/0 -j ACCEPT\n"
        "-A INPUT -s 192.168.1.77/255.255.255.0 -j DROP\nCOMMIT\n")
    assert rules_of(rs, "filter", "INPUT") == [
        (Match(proto=6, dport=one(22)), Accept()), (Match(), Accept()),
        (Match(src=N("192.168.1.0/24")), Drop())]
    assert rs.chain("filter", "INPUT").rules[0].lineno == 5


def test_port_range_forms_and_tcp_flags() -> None:
    rs = parse_iptables_restore(
        "*filter\n-A INPUT -p tcp --dport :1023 -j ACCEPT\n-A INPUT -p tcp --sport 1000: "
        "-j ACCEPT\n-A INPUT -p tcp ! --syn -j DROP\n-A INPUT -p tcp --tcp-flags ALL NONE "
        "-j DROP\n-A INPUT -p icmp --icmp-type port-unreachable -j ACCEPT\n"
        "-A INPUT -p icmp --icmp-type 3/1 -j ACCEPT\n-A INPUT -p icmp --icmp-type any -j ACCEPT"
        "\n-A INPUT -p udp -m udp ! --sport 53 -j ACCEPT\nCOMMIT\n")
    assert rules_of(rs, "filter", "INPUT") == [
        (Match(proto=6, dport=ports((0, 1023))), Accept()),
        (Match(proto=6, sport=ports((1000, 65535))), Accept()),
        (Match(proto=6, tcp_flags=TcpFlagsMatch(0x17, 0x02, negate=True)), Drop()),
        (Match(proto=6, tcp_flags=TcpFlagsMatch(0x3F, 0)), Drop()),
        (Match(proto=1, icmp_type=3, icmp_code=3), Accept()),
        (Match(proto=1, icmp_type=3, icmp_code=1), Accept()),
        (Match(proto=1), Accept()),
        (Match(proto=17, sport=ports((53, 53), negate=True)), Accept()),
    ]


def test_nat_spec_forms() -> None:
    rs = parse_iptables_restore(
        "*nat\n-A PREROUTING -p tcp -j DNAT --to-destination :80\n"
        "-A PREROUTING -p tcp -j DNAT --to-destination 1.2.3.4:1000-2000/3000\n"
        "-A PREROUTING -p icmp -j DNAT --to-destination 1.2.3.4:5\n"
        "-A PREROUTING -p tcp -j REDIRECT --to-ports 80-90 --random\n"
        "-A POSTROUTING -j SNAT --to-source 1.1.1.1-1.1.1.9 --persistent\n"
        "-A POSTROUTING -p udp -j MASQUERADE --to-ports 80 --random\nCOMMIT\n")
    targets = [r.target for c in rs.chains for r in c.rules]
    assert targets == [
        Dnat(NatRange(NatFlag.PROTO_SPECIFIED, None, None, 80, 80)),
        Dnat(NatRange(NatFlag.MAP_IPS | NatFlag.PROTO_SPECIFIED | NatFlag.PROTO_OFFSET,
                      A("1.2.3.4"), A("1.2.3.4"), 1000, 2000, 3000)),
        Dnat(NatRange(NatFlag.MAP_IPS | NatFlag.PROTO_SPECIFIED, A("1.2.3.4"), A("1.2.3.4"),
                      5, 5)),
        Redirect(NatRange(NatFlag.PROTO_SPECIFIED | NatFlag.PROTO_RANDOM, None, None, 80, 90)),
        Snat(NatRange(NatFlag.MAP_IPS | NatFlag.PERSISTENT, A("1.1.1.1"), A("1.1.1.9"))),
        Masquerade(NatRange(NatFlag.PROTO_SPECIFIED | NatFlag.PROTO_RANDOM, None, None, 80,
                            80)),
    ]
    assert str(targets[1]) == "DNAT to 1.2.3.4:1000-2000/3000"


def test_getopt_prefixes_and_equals_as_iptables_accepts_them() -> None:
    # Measured: iptables-restore-translate reads these as --dport, --to-destination, ...
    rs = parse_iptables_restore(
        "*nat\n-A PREROUTING -p tcp --dport=80 -j DNAT --to 1.2.3.4\n"
        "-A POSTROUTING -p tcp -j SNAT --to 1.2.3.4\n"
        "-A POSTROUTING -p tcp -j MASQUERADE --to 1000\n"
        "-A PREROUTING -p tcp --dp 80 -j REDIRECT --to-port 8080\n"
        "-A PREROUTING --proto udp -j ACCEPT\nCOMMIT\n")
    one_ip = NatRange(NatFlag.MAP_IPS, A("1.2.3.4"), A("1.2.3.4"))
    assert [(r.match, r.target) for r in rs.rules()] == [
        (Match(proto=6, dport=one(80)), Dnat(one_ip)),
        (Match(proto=6, dport=one(80)),
         Redirect(NatRange(NatFlag.PROTO_SPECIFIED, None, None, 8080, 8080))),
        (Match(proto=17), Accept()),
        (Match(proto=6), Snat(one_ip)),
        (Match(proto=6), Masquerade(NatRange(NatFlag.PROTO_SPECIFIED, None, None, 1000, 1000))),
    ]


def test_nat_target_in_user_chain_reached_from_the_right_hook_is_fine() -> None:
    rs = parse_iptables_restore("*nat\n:X - [0:0]\n-A X -j DNAT --to-destination 1.2.3.4\n"
                                "-A PREROUTING -j X\n-A OUTPUT -j X\nCOMMIT\n")
    assert rules_of(rs, "nat", "X")[0][1] == Dnat(
        NatRange(NatFlag.MAP_IPS, A("1.2.3.4"), A("1.2.3.4")))


# -- errors ---------------------------------------------------------------------------------

BAD: list[tuple[str, type[Exception], int, str]] = [
    ("*nat\n-A PREROUTING -j DROP\nCOMMIT\n", RuleSyntaxError, 2, "not intended for filtering"),
    ("*nat\n-A INPUT -j REJECT\nCOMMIT\n", RuleSyntaxError, 2, "only valid in the filter"),
    ("*nat\n-A POSTROUTING -j DNAT --to-destination 1.2.3.4\nCOMMIT\n", RuleSyntaxError, 2,
     "DNAT is not valid in POST_ROUTING"),
    ("*nat\n-A PREROUTING -j SNAT --to-source 1.2.3.4\nCOMMIT\n", RuleSyntaxError, 2,
     "SNAT is not valid in PRE_ROUTING"),
    ("*nat\n-A INPUT -j MASQUERADE\nCOMMIT\n", RuleSyntaxError, 2,
     "MASQUERADE is not valid in LOCAL_IN"),
    ("*nat\n:X - [0:0]\n-A X -j DNAT --to-destination 1.2.3.4\n-A POSTROUTING -j X\nCOMMIT\n",
     RuleSyntaxError, 3, "DNAT is not valid in POST_ROUTING"),
    ("*filter\n-A FORWARD -j DNAT --to-destination 1.2.3.4\nCOMMIT\n", RuleSyntaxError, 2,
     "only valid in the nat table"),
    ("*filter\n-A FORWARD -j REJECT --reject-with tcp-reset\nCOMMIT\n", RuleSyntaxError, 2,
     "needs -p tcp"),
    ("*filter\n-A PREROUTING -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2, "no built-in chain"),
    ("*filter\n-A INPUT -j X\n:X - [0:0]\nCOMMIT\n", RuleSyntaxError, 2, "does not exist"),
    ("*filter\n-A INPUT -m udp --dport 5 -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2,
     "UDP match requires '-p udp'"),
    ("*filter\n-A INPUT -p tcp -m udp --dport 5 -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2,
     "UDP match requires"),
    ("*filter\n-A INPUT -i verylonginterface0 -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2,
     "IFNAMSIZ"),
    ("*filter\n-A INPUT -o eth0 -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2,
     "Can't use -o with INPUT"),
    ("*nat\n-A POSTROUTING -i eth0 -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2,
     "Can't use -i with POSTROUTING"),
    ("*filter\n:X - [0:0]\n:Y - [0:0]\n-A INPUT -j X\n-A X -j Y\n-A Y -j X\nCOMMIT\n",
     RuleSyntaxError, 6, "loop"),
    ("*filter\n-A INPUT -j INPUT\nCOMMIT\n", RuleSyntaxError, 2, "built-in chain"),
    ("*filter\n:X ACCEPT [0:0]\nCOMMIT\n", RuleSyntaxError, 2, "policy"),
    ("*filter\n-A INPUT -j ACCEPT\n", RuleSyntaxError, 3, "COMMIT expected"),
    ("*filter\n-I INPUT 3 -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2, "Index of insertion"),
    ("*filter\n-A INPUT -p udp --dport 5 --dport 6 -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2,
     "can only be used once"),
    ("*filter\n-N X\n-N X\nCOMMIT\n", RuleSyntaxError, 3, "already exists"),
    ("*filter\n-A INPUT -m nosuch -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2,
     "Couldn't load match"),
    ("*filter\n-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2,
     "invalid port/service"),
    ("*filter\n-A INPUT -p tcp --dport 1-1023 -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2,
     "invalid port/service"),
    ("*filter\n-A INPUT -p tcp --dport 1023:1 -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2,
     "min > max"),
    ("*filter\n-A INPUT -p nosuch -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2, "unknown protocol"),
    ("*filter\n-A INPUT -m conntrack --ctstate NEW,FOO -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2,
     "Bad ctstate"),
    ("*nat\n-A PREROUTING -p tcp -j DNAT --to-destination 1.2.3.4:90-80\nCOMMIT\n",
     RuleSyntaxError, 2, "funky"),
    ("*nat\n-A PREROUTING -j DNAT --to-destination 1.2.3.4 --to-destination 1.2.3.5\nCOMMIT\n",
     RuleSyntaxError, 2, "only be used once"),
    ("*nat\n-A PREROUTING -j DNAT --to-destination 1.2.3.4 --random-fully\nCOMMIT\n",
     RuleSyntaxError, 2, "unknown option"),
    ("*nat\n-A POSTROUTING -j SNAT\nCOMMIT\n", RuleSyntaxError, 2, "must be specified"),
    ("*nat\n-A POSTROUTING -j MASQUERADE --to-ports 1024\nCOMMIT\n", RuleSyntaxError, 2,
     "Need TCP, UDP"),
    ("*nat\n-A POSTROUTING -p gre -j SNAT --to-source 1.2.3.4:5\nCOMMIT\n", RuleSyntaxError, 2,
     "Need TCP, UDP"),
    ("*filter\n-A INPUT -j ACCEPT extra\nCOMMIT\n", RuleSyntaxError, 2, "Bad argument"),
    ("*filter\n-A INPUT -s 1.2.3.4 -s 5.6.7.8 -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2,
     "only be used once"),
    ("*foo\nCOMMIT\n", RuleSyntaxError, 1, "table name"),
    ("-A INPUT -j ACCEPT\n", RuleSyntaxError, 1, "no table"),
    ("*filter\n-A INPUT -m comment --comment \"open\n", RuleSyntaxError, 2, "quoting"),
    ("*filter\n-A INPUT -s 1.2.3.256 -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2, "not found"),
    ("*nat\n-A PREROUTING -p tcp --d 80 -j ACCEPT\nCOMMIT\n", RuleSyntaxError, 2, "ambiguous"),
    # Valid for the kernel, outside the model:
    ("*filter\n-A INPUT -j NFLOG\nCOMMIT\n", UnsupportedRule, 2, "target -j NFLOG"),
    ("*filter\n-A INPUT -j LOG --log-level bogus\nCOMMIT\n", RuleSyntaxError, 2,
     'log level "bogus" unknown'),
    ("*filter\n-A INPUT -m limit --limit 1/s -j ACCEPT\nCOMMIT\n", UnsupportedRule, 2,
     "-m limit"),
    ("*raw\n-A PREROUTING -j CT --notrack\nCOMMIT\n", UnsupportedRule, 2, "table 'raw'"),
    ("*security\nCOMMIT\n", UnsupportedRule, 1, "table 'security'"),
    ("*filter\n-A INPUT -p tcp --dport ssh -j ACCEPT\nCOMMIT\n", UnsupportedRule, 2,
     "service name"),
    ("*filter\n-A INPUT -s host.example -j DROP\nCOMMIT\n", UnsupportedRule, 2, "host name"),
    ("*filter\n-A INPUT -f -j DROP\nCOMMIT\n", UnsupportedRule, 2, "fragment"),
    ("*filter\n-A INPUT -s 010.1 -j DROP\nCOMMIT\n", UnsupportedRule, 2, "address written as"),
    ("*filter\n-A INPUT -m conntrack --ctexpire 1:10 -j DROP\nCOMMIT\n", UnsupportedRule, 2,
     "--ctexpire"),
    ("*filter\n-A INPUT -m state --state DNAT -j DROP\nCOMMIT\n", RuleSyntaxError, 2,
     "Bad ctstate"),
    ("*filter\n-A INPUT -p tcp -m multiport --ports 1,2 -j DROP\nCOMMIT\n", UnsupportedRule, 2,
     "--ports"),
    ("*filter\n-A INPUT -p udp -m multiport --dports 1,2 -m udp --dport 5 -j ACCEPT\nCOMMIT\n",
     UnsupportedRule, 2, "two dport matches"),
    ("*filter\n-F INPUT\nCOMMIT\n", UnsupportedRule, 2, "command -F"),
    ("*nat\n-A PREROUTING -p tcp -j DNAT --to-destination 1.2.3.9-1.2.3.4\nCOMMIT\n",
     UnsupportedRule, 2, "min > max"),
    ("*nat\n-A POSTROUTING -j NETMAP --to 10.0.0.0/24\nCOMMIT\n", UnsupportedRule, 2,
     "NETMAP"),
]


@pytest.mark.parametrize(("text", "kind", "lineno", "needle"), BAD,
                         ids=[f"{i}-{b[3][:24]}" for i, b in enumerate(BAD)])
def test_bad_input_is_one_precise_error(text: str, kind: type[Exception], lineno: int,
                                        needle: str) -> None:
    with pytest.raises(kind) as info:
        parse_iptables_restore(text)
    err = info.value
    assert isinstance(err, RuleSyntaxError | UnsupportedRule)
    assert err.lineno == lineno
    assert needle in str(err)
    assert "\n" not in str(err)
    assert str(err).startswith(f"line {lineno}: ")


def test_unsupported_error_names_the_construct() -> None:
    with pytest.raises(UnsupportedRule) as info:
        parse_iptables_restore("*filter\n-A INPUT -m recent --set\nCOMMIT\n")
    assert info.value.construct == "match module -m recent"
    assert info.value.line == "-A INPUT -m recent --set"


# -- properties -----------------------------------------------------------------------------

port_ranges = st.tuples(st.integers(0, 65535), st.integers(0, 65535)).map(sorted)


@given(port_ranges, st.booleans(), st.sampled_from(["tcp", "udp"]))
def test_any_port_range_reads_back(rng: list[int], negate: bool, proto: str) -> None:
    lo, hi = rng
    text = f"{lo}" if lo == hi else f"{lo}:{hi}"
    bang = "! " if negate else ""
    rs = parse_iptables_restore(f"*filter\n-A INPUT -p {proto} {bang}--dport {text} -j ACCEPT\n"
                                "COMMIT\n")
    m = rs.chains[0].rules[0].match
    assert m.dport == PortMatch((PortRange(lo, hi),), negate)
    assert all(m.dport.matches(p) != negate for p in {lo, hi, (lo + hi) // 2})
    if lo > 0:
        assert m.dport.matches(lo - 1) == negate


@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_any_address_prefix_reads_back_masked(addr: int, plen: int) -> None:
    text = f"{IPv4Address(addr)}/{plen}"
    rs = parse_iptables_restore(f"*filter\n-A INPUT -d {text} -j DROP\nCOMMIT\n")
    expected = None if plen == 0 else IPv4Network(text, strict=False)
    assert rs.chains[0].rules[0].match.dst == expected
