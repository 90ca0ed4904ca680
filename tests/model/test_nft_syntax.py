"""nft text -> rules AST: iptables text, its real `iptables-restore-translate` output and the
real `nft list ruleset` listings parse to the same rules per hook; hand-written blocks; errors
with line numbers (kernel and nft refusals measured with nftables 1.0.6 on Linux 6.18)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
import rules_fixtures as fx
from hypothesis import given
from hypothesis import strategies as st

from nat.hooks import Hook
from nat.rules.ast import (
    Accept,
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
    RuleSyntaxError,
    TcpFlagsMatch,
    UnsupportedRule,
)
from nat.rules.iptables import parse_iptables_restore
from nat.rules.nft import parse_nft

A = IPv4Address
N = IPv4Network

Shape = list[tuple[str, str, Hook | None, int, str | None, tuple[tuple[Match, object], ...]]]


def shape(rs: Ruleset) -> Shape:
    """What the kernel runs, without table names, line numbers or source text."""
    return sorted(((c.kind, c.name, c.hook, c.priority, c.policy,
                    tuple((r.match, r.target) for r in c.rules)) for c in rs.chains),
                  key=repr)


# -- iptables text == its translation == the listings ----------------------------------------

@pytest.mark.parametrize("name", ["A", "B"])
@pytest.mark.parametrize("form", ["TRANSLATED", "LISTED", "IPT_LISTED"])
def test_translation_and_listings_equal_the_iptables_text(name: str, form: str) -> None:
    ipt = parse_iptables_restore(getattr(fx, f"{name}_RULES"))
    nft = parse_nft(getattr(fx, f"{name}_{form}"))
    assert nft.source_syntax == "nft"
    assert shape(nft) == shape(ipt)
    for hook in Hook:
        for kind in ("nat", "filter"):
            assert [c.name for c in nft.base_chains(hook, kind)] == \
                [c.name for c in ipt.base_chains(hook, kind)]
    assert nft.has_nat() == ipt.has_nat() and nft.needs_conntrack() == ipt.needs_conntrack()


@pytest.mark.parametrize("name", ["SEED_DNAT_UDP", "SEED_SNAT_TCP"])
def test_seeds_as_loaded_by_iptables_nft_equal_the_iptables_text(name: str) -> None:
    assert shape(parse_nft(getattr(fx, f"{name}_IPT_LISTED"))) == \
        shape(parse_iptables_restore(getattr(fx, name)))


@pytest.mark.parametrize("name", ["SEED_DNAT_UDP", "SEED_SNAT_TCP"])
def test_seed_translations_are_refused_like_nft_refuses_them(name: str) -> None:
    # The seeds declare no chains, so the translation adds rules to chains that do not
    # exist; `nft -f` says "Could not process rule: No such file or directory" on line 3.
    with pytest.raises(RuleSyntaxError) as info:
        parse_nft(getattr(fx, f"{name}_TRANSLATED"))
    assert info.value.lineno == 3
    assert "No such file or directory" in str(info.value)


def test_table_and_line_of_translated_rules() -> None:
    rs = parse_nft(fx.A_TRANSLATED)
    pre = rs.chain("ip nat", "PREROUTING")
    assert (pre.kind, pre.hook, pre.priority, pre.policy) == ("nat", Hook.PRE_ROUTING, -100,
                                                               "ACCEPT")
    assert pre.rules[0].lineno == 6  # line 1 is the translator's comment
    assert pre.rules[0].source == ('add rule ip nat PREROUTING iifname "wan0" udp dport 9999 '
                                   'counter dnat to 192.168.1.8')
    # `insert rule` put its rule first.
    assert rs.chain("ip filter", "INPUT").rules[0].match == Match(src=N("1.2.3.4/32"))


# -- hand-written nft ------------------------------------------------------------------------

def test_hand_written_blocks() -> None:
    rs = parse_nft(fx.HAND_NFT)
    pre = rs.chain("inet gw", "pre")
    assert (pre.kind, pre.hook, pre.priority) == ("nat", Hook.PRE_ROUTING, -90)
    assert [(r.match, r.target) for r in pre.rules] == [
        (Match(proto=6, in_iface="wan0", dport=PortMatch((PortRange(80, 80),
                                                          PortRange(443, 443)))),
         Dnat(NatRange(NatFlag.MAP_IPS, A("192.168.1.8"), A("192.168.1.8")))),
        (Match(proto=17, in_iface="wan0", dport=PortMatch((PortRange(9999, 9999),))),
         Dnat(NatRange(NatFlag.MAP_IPS | NatFlag.PROTO_SPECIFIED, A("192.168.1.8"),
                       A("192.168.1.8"), 9000, 9000))),
    ]
    post = rs.chain("inet gw", "post")
    assert (post.priority, post.policy) == (100, "ACCEPT")
    assert post.rules[0].target == Masquerade(
        NatRange(NatFlag.PROTO_RANDOM | NatFlag.PERSISTENT))
    assert post.rules[0].match == Match(out_iface="wan+")
    fwd = rs.chain("inet gw", "forward_filter")
    assert (fwd.kind, fwd.priority, fwd.policy) == ("filter", -5, "DROP")
    assert [(r.match, r.target) for r in fwd.rules] == [
        (Match(ctstate=frozenset({"ESTABLISHED", "RELATED"})), Accept()),
        (Match(ctstate=frozenset({"INVALID"})), Drop()),
        (Match(in_iface="lan0"), Jump("lan_out")),
        (Match(proto=6, tcp_flags=TcpFlagsMatch(0x12, 0x02), dport=PortMatch(
            (PortRange(22, 22),)), ctstate=frozenset({"NEW"})), Accept()),
        (Match(proto=1, icmp_type=3, icmp_code=4), Accept()),
        (Match(), Reject("icmp-admin-prohibited")),
    ]
    assert [(r.match, r.target) for r in rs.chain("inet gw", "lan_out").rules] == [
        (Match(src=N("192.168.1.0/24"), src_neg=True), Drop()),
        (Match(proto=6, tcp_flags=TcpFlagsMatch(0x02, 0, negate=True)), None),  # continue
        (Match(), Goto("allow")),
    ]
    assert rs.chain("ip extra", "out").rules[0].target == Redirect(
        NatRange(NatFlag.PROTO_SPECIFIED, min_proto=80, max_proto=80))
    assert [r.target for r in rs.chain("ip extra", "in").rules] == [
        Reject("tcp-reset"), Reject("icmp-port-unreachable")]
    assert [c.name for c in rs.base_chains(Hook.PRE_ROUTING, "nat")] == ["pre"]


def test_hand_written_equals_its_listing() -> None:
    assert shape(parse_nft(fx.HAND_NFT)) == shape(parse_nft(fx.HAND_LISTED))


def test_tcp_flags_forms() -> None:
    text = ("table ip t {\n chain c {\n type filter hook input priority 0;\n"
            " tcp flags syn accept\n tcp flags == syn accept\n tcp flags != syn accept\n"
            " tcp flags syn / syn,ack accept\n tcp flags != syn / fin,syn,rst,ack accept\n"
            " tcp flags & (fin|syn|rst|ack) != syn accept\n tcp flags ! syn,fin accept\n"
            " tcp flags 0x0 / fin,syn,rst,psh,ack,urg accept\n }\n}\n")
    flags = [r.match.tcp_flags for r in parse_nft(text).rules()]
    assert flags == [
        TcpFlagsMatch(0x02, 0, negate=True),      # any of syn set
        TcpFlagsMatch(0xFF, 0x02),                # exactly syn
        TcpFlagsMatch(0xFF, 0x02, negate=True),
        TcpFlagsMatch(0x12, 0x02),
        TcpFlagsMatch(0x17, 0x02, negate=True),
        TcpFlagsMatch(0x17, 0x02, negate=True),
        TcpFlagsMatch(0x03, 0),                   # none of syn, fin set
        TcpFlagsMatch(0x3F, 0),
    ]
    assert flags[0] is not None and flags[0].matches(0x12) and not flags[0].matches(0x10)


def test_priorities_flush_and_insert() -> None:
    rs = parse_nft(
        "add table ip a\nadd chain ip a x { type filter hook forward priority filter + 3; }\n"
        "add chain ip a y { type filter hook forward priority -7 ; policy drop ; }\n"
        "add rule ip a x accept\ninsert rule ip a x drop\nflush ruleset\n"
        "table ip b {\n\tchain z {\n\t\ttype filter hook forward priority 10; policy accept;\n"
        "\t}\n\tchain w {\n\t\ttype filter hook forward priority mangle;\n\t}\n}\n"
        "add rule b z tcp dport 1-2 drop\nadd rule ip b w accept; add rule ip b w drop\n")
    assert [(c.name, c.priority) for c in rs.base_chains(Hook.FORWARD, "filter")] == [
        ("w", -150), ("z", 10)]
    assert [r.target for r in rs.chain("ip b", "w").rules] == [Accept(), Drop()]
    rs2 = parse_nft("add table ip a\nadd chain ip a x { type filter hook input priority 0; }\n"
                    "add rule ip a x accept\ninsert rule ip a x drop\n")
    assert [r.target for r in rs2.rules()] == [Drop(), Accept()]
    assert [r.lineno for r in rs2.rules()] == [4, 3]


def test_jump_to_a_chain_defined_later_in_the_block_is_fine() -> None:
    rs = parse_nft("table ip t {\n chain c {\n  type filter hook input priority 0;\n"
                   "  jump d\n }\n chain d {\n  accept\n }\n}\n")
    assert rs.chain("ip t", "c").rules[0].target == Jump("d")


def test_multi_line_set_and_nft_keyword_chain_names_in_quotes() -> None:
    rs = parse_nft('table ip t {\n chain "fwd" {\n  type filter hook forward priority 0;\n'
                   '  tcp dport {\n   22,\n   80-81\n  } accept\n }\n}\n')
    rule = rs.chain("ip t", "fwd").rules[0]
    assert rule.match.dport == PortMatch((PortRange(22, 22), PortRange(80, 81)))
    assert rule.lineno == 4


# -- errors -----------------------------------------------------------------------------------

def chain(body: str, head: str = "type filter hook input priority 0;",
          family: str = "ip") -> str:
    """A one-chain table; the body starts on line 4."""
    return f"table {family} t {{\n chain c {{\n  {head}\n  {body}\n }}\n}}\n"


BAD: list[tuple[str, type[Exception], int, str]] = [
    ("add rule ip nat PREROUTING accept\n", RuleSyntaxError, 1, "no table ip nat"),
    ("add table ip nat\nadd rule ip nat PREROUTING accept\n", RuleSyntaxError, 2,
     "no chain 'PREROUTING'"),
    (chain("accept", "type nat hook postrouting priority dstnat;"), RuleSyntaxError, 3,
     "invalid priority"),
    (chain("accept", "type nat hook output priority dstnat;"), RuleSyntaxError, 3,
     "invalid priority"),
    (chain("accept", "type nat hook prerouting priority -200;"), RuleSyntaxError, 3,
     "above -200"),
    (chain("accept", "type nat hook forward priority 0;"), RuleSyntaxError, 3,
     "cannot hook forward"),
    ("table ip t {\n chain u {\n  dnat to 1.2.3.4\n }\n chain c {\n"
     "  type filter hook prerouting priority 0;\n  jump u\n }\n}\n", RuleSyntaxError, 3,
     "not valid in a filter chain"),
    ("table ip t {\n chain u {\n  dnat to 1.2.3.4\n }\n chain c {\n"
     "  type nat hook postrouting priority 100;\n  jump u\n }\n}\n", RuleSyntaxError, 3,
     "at POST_ROUTING"),
    (chain("tcp dport 80 masquerade"), RuleSyntaxError, 4, "masquerade is not valid"),
    (chain("reject", "type nat hook postrouting priority 100;"), RuleSyntaxError, 4,
     "reject is not valid at POST_ROUTING"),
    (chain("accept counter"), RuleSyntaxError, 4, "after terminal statement"),
    (chain("dnat to 1.2.3.4:80", "type nat hook prerouting priority -100;"), RuleSyntaxError,
     4, "transport protocol mapping"),
    (chain("masquerade to :80", "type nat hook postrouting priority 100;"), RuleSyntaxError,
     4, "transport protocol mapping"),
    (chain("dnat to 1.2.3.4", "type nat hook prerouting priority -100;", "inet"),
     RuleSyntaxError, 4, "ip or ip6 must be specified"),
    (chain("ip protocol udp tcp dport 80 accept"), RuleSyntaxError, 4,
     "conflicting protocols"),
    (chain("jump c"), RuleSyntaxError, 4, "jumps to itself"),
    ("table ip t {\n chain c {\n  type filter hook input priority 0;\n  jump x\n }\n"
     " chain x {\n  jump y\n }\n chain y {\n  jump x\n }\n}\n", RuleSyntaxError, 10, "loop"),
    (chain("jump nope"), RuleSyntaxError, 4, "no chain 'nope'"),
    ("table ip t {\n chain fwd {\n  accept\n }\n}\n", RuleSyntaxError, 2, "nft keyword"),
    ("table ip t {\n chain u {\n  policy drop;\n }\n}\n", RuleSyntaxError, 3,
     "needs a base chain"),
    ("table ip t {\n chain c {\n  type filter hook input priority 0;\n }\n}\n"
     "table ip t {\n chain c {\n  type filter hook input priority 10;\n }\n}\n",
     RuleSyntaxError, 8, "another type, hook or priority"),
    (chain("ct state foo accept"), RuleSyntaxError, 4, "unknown ct state"),
    (chain("tcp dport 70000 accept"), RuleSyntaxError, 4, "bad port range"),
    (chain('iifname "lan0 accept'), RuleSyntaxError, 4, "unterminated string"),
    (chain("frobnicate"), RuleSyntaxError, 4, "unexpected 'frobnicate'"),
    ("frob ruleset\n", RuleSyntaxError, 1, "unknown command"),
    (chain("icmp type nosuch accept"), RuleSyntaxError, 4, "unknown icmp type"),
    (chain("accept", "type filter hook input priority bogus;"), RuleSyntaxError, 3,
     "priority keyword"),
    (chain("ip saddr 300.1.1.1 drop"), RuleSyntaxError, 4, "bad address"),
    (chain("reject with tcp reset", "type filter hook input priority 0;") +
     "add rule ip t c udp dport 53 reject with tcp reset\n", RuleSyntaxError, 7,
     "conflicting protocols"),
    ("table ip t {\n chain c {\n  type filter hook input priority 0;\n  accept\n }\n",
     RuleSyntaxError, 6, "end of input"),
    # Valid nft, outside the model:
    (chain("log group 2 accept"), UnsupportedRule, 4, "log group"),
    (chain("ip saddr { 1.1.1.1, 2.2.2.2 } drop"), UnsupportedRule, 4, "anonymous set"),
    (chain("tcp dport ssh accept"), UnsupportedRule, 4, "service name"),
    ("table ip6 t {\n}\n", UnsupportedRule, 1, "family 'ip6'"),
    (chain("ct mark 1 accept"), UnsupportedRule, 4, "ct mark"),
    (chain("accept", "type route hook output priority 0;"), UnsupportedRule, 3, "route"),
    (chain("accept", "type filter hook ingress device eth0 priority 0;", "netdev"),
     UnsupportedRule, 1, "family 'netdev'"),
    ("table ip t {\n}\ndelete table ip t\n", UnsupportedRule, 3, "command 'delete'"),
    (chain("snat ip prefix to 10.0.0.0/24", "type nat hook postrouting priority 100;"),
     UnsupportedRule, 4, "NETMAP"),
    ("table ip t {\n set s {\n  type ipv4_addr\n }\n}\n", UnsupportedRule, 2, "table set"),
    (chain("meta mark set 1"), UnsupportedRule, 4, "meta mark"),
    (chain("ip saddr 1.2.3.9-1.2.3.4 drop"), RuleSyntaxError, 4, "negative size"),
    (chain('iifname { "a", "b" } accept'), UnsupportedRule, 4, "anonymous set"),
    (chain("tcp flags { syn, ack } accept"), UnsupportedRule, 4, "anonymous set"),
    (chain("ip ttl 1 drop"), UnsupportedRule, 4, "ip ttl"),
    (chain("meta l4proto < 17 accept"), UnsupportedRule, 4, "comparison"),
    (chain("tcp dport < 1000-2000 accept"), RuleSyntaxError, 4, "one port"),
    (chain("ct expiration 5s accept"), UnsupportedRule, 4, "ct expiration"),
    (chain("ct state vmap { new : accept }"), UnsupportedRule, 4, "vmap"),
    (chain('iifname "eth+" accept'), UnsupportedRule, 4, "literal"),
    (chain("accept") + "add rule ip t c index 0 drop\n", UnsupportedRule, 7, "rule index"),
]


@pytest.mark.parametrize(("text", "kind", "lineno", "needle"), BAD,
                         ids=[f"{i}-{b[3][:24]}" for i, b in enumerate(BAD)])
def test_bad_input_is_one_precise_error(text: str, kind: type[Exception], lineno: int,
                                        needle: str) -> None:
    with pytest.raises(kind) as info:
        parse_nft(text)
    err = info.value
    assert isinstance(err, RuleSyntaxError | UnsupportedRule)
    assert (err.lineno, needle in str(err)) == (lineno, True), str(err)
    assert "\n" not in str(err)


# -- property: the same rule written both ways -------------------------------------------------

@st.composite
def rule_texts(draw: st.DrawFn) -> tuple[str, str, str]:
    """One random filter rule as (chain, iptables options, nft statements)."""
    ipt: list[str] = []
    nft: list[str] = []
    chain_name = draw(st.sampled_from(["INPUT", "FORWARD", "OUTPUT"]))
    proto = draw(st.sampled_from([None, "tcp", "udp", "icmp"]))
    if draw(st.booleans()):
        net = IPv4Network((draw(st.integers(0, 2**32 - 1)), draw(st.integers(1, 32))),
                          strict=False)
        neg = draw(st.booleans())
        ipt.append(f"{'! ' if neg else ''}-s {net}")
        nft.append(f"ip saddr {'!= ' if neg else ''}{net}")
    if chain_name != "OUTPUT" and draw(st.booleans()):
        name = draw(st.from_regex(r"[a-z]{1,6}[0-9]?", fullmatch=True))
        wild, neg = draw(st.booleans()), draw(st.booleans())
        ipt.append(f"{'! ' if neg else ''}-i {name}{'+' if wild else ''}")
        nft.append(f"iifname {'!= ' if neg else ''}\"{name}{'*' if wild else ''}\"")
    if proto is not None:
        ipt.append(f"-p {proto}")
        if proto in ("tcp", "udp") and draw(st.booleans()):
            lo, hi = sorted(draw(st.tuples(st.integers(0, 65535), st.integers(0, 65535))))
            neg = draw(st.booleans())
            ipt.append(f"{'! ' if neg else ''}--dport {lo}:{hi}")
            nft.append(f"{proto} dport {'!= ' if neg else ''}{lo}-{hi}")
        elif proto == "icmp" and draw(st.booleans()):
            t = draw(st.sampled_from(["echo-request", "echo-reply", "time-exceeded"]))
            ipt.append(f"--icmp-type {t}")
            nft.append(f"icmp type {t}")
        else:
            nft.append(f"meta l4proto {proto}")
    if draw(st.booleans()):
        states = draw(st.sets(st.sampled_from(["NEW", "ESTABLISHED", "RELATED", "INVALID"]),
                              min_size=1))
        neg = draw(st.booleans())
        ipt.append(f"-m conntrack {'! ' if neg else ''}--ctstate {','.join(sorted(states))}")
        nft.append(f"ct state {'!= ' if neg else ''}"
                   f"{{ {', '.join(s.lower() for s in sorted(states))} }}")
    verdict = draw(st.sampled_from(["ACCEPT", "DROP", "RETURN"]))
    ipt.append(f"-j {verdict}")
    nft.append(f"counter {verdict.lower()}")
    return chain_name, " ".join(ipt), " ".join(nft)


@given(st.lists(rule_texts(), min_size=1, max_size=5))
def test_the_same_rules_in_both_syntaxes_parse_equal(rules: list[tuple[str, str, str]]) -> None:
    ipt = "*filter\n" + "".join(f"-A {c} {o}\n" for c, o, _ in rules) + "COMMIT\n"
    hooks = {"INPUT": "input", "FORWARD": "forward", "OUTPUT": "output"}
    chains = list(dict.fromkeys(c for c, _, _ in rules))
    nft = "add table ip filter\n" + "".join(
        f"add chain ip filter {c} {{ type filter hook {hooks[c]} priority 0; policy accept; }}\n"
        for c in chains) + "".join(f"add rule ip filter {c} {s}\n" for c, _, s in rules)
    a, b = parse_iptables_restore(ipt), parse_nft(nft)
    assert shape(a) == shape(b)
    assert all(isinstance(r, Rule) and r.lineno > 0 for r in b.rules())
