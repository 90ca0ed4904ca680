"""The rules a gateway is given, as one syntax-free tree (an AST shared by iptables and nft).

`nat/rules/iptables.py` (iptables-restore text) and `nat/rules/nft.py` (nft text) both build
these values, so the same rule written either way is the same `Rule` (apart from `source` and
`lineno`), and `nat/rule_eval.py` walks them the way ipt_do_table (net/ipv4/netfilter/
ip_tables.c) and nft_do_chain (net/netfilter/nf_tables_core.c) walk theirs.

NAT ranges mirror struct nf_nat_range2 and its NF_NAT_RANGE_* flags
(include/uapi/linux/netfilter/nf_nat.h); a NAT target keeps the range *as the rule states it*
(MASQUERADE and REDIRECT have no address: the NAT core picks it from the device at run time).

Only what the model supports can be represented; the parsers refuse everything else with
`UnsupportedRule` (never silently ignore), and refuse malformed text with `RuleSyntaxError`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from nat.hooks import Hook, in_hook_order
from nat.rules.ct_match import CtTest
from nat.rules.ct_match import describe as describe_ct_test

# ---------------------------------------------------------------------------------------------
# Errors: one line each, naming the line of the input.


class RuleError(ValueError):
    """Base of the two rule errors; `lineno` is 1-based in the text given to the parser."""

    lineno: int
    line: str


class RuleSyntaxError(RuleError):
    """Malformed text, or a rule the kernel (or iptables) itself would refuse."""

    def __init__(self, lineno: int, message: str, line: str) -> None:
        self.lineno = lineno
        self.message = message
        self.line = line
        super().__init__(f"line {lineno}: {message}: {line.strip()!r}")


class UnsupportedRule(RuleError):
    """Valid for the kernel, but outside the subset the model understands."""

    def __init__(self, lineno: int, construct: str, line: str) -> None:
        self.lineno = lineno
        self.construct = construct
        self.line = line
        super().__init__(f"line {lineno}: not supported by the model: {construct}: "
                         f"{line.strip()!r}")


# ---------------------------------------------------------------------------------------------
# NAT ranges (struct nf_nat_range2).


class NatFlag(enum.IntFlag):
    """NF_NAT_RANGE_* (include/uapi/linux/netfilter/nf_nat.h)."""

    NONE = 0
    MAP_IPS = 1
    PROTO_SPECIFIED = 2
    PROTO_RANDOM = 4
    PERSISTENT = 8
    PROTO_RANDOM_FULLY = 16
    PROTO_OFFSET = 32
    NETMAP = 64


@dataclass(frozen=True)
class NatRange:
    """struct nf_nat_range2: addresses (with MAP_IPS), L4 keys (with PROTO_SPECIFIED), flags.

    Ports are host-order integers; `base_proto` is only meaningful with PROTO_OFFSET.
    """

    flags: NatFlag = NatFlag.NONE
    min_addr: IPv4Address | None = None
    max_addr: IPv4Address | None = None
    min_proto: int = 0
    max_proto: int = 0
    base_proto: int = 0

    def __str__(self) -> str:
        text = ""
        if self.flags & NatFlag.MAP_IPS and self.min_addr is not None:
            text = str(self.min_addr)
            if self.max_addr is not None and self.max_addr != self.min_addr:
                text += f"-{self.max_addr}"
        if self.flags & NatFlag.PROTO_SPECIFIED:
            text += f":{self.min_proto}"
            if self.max_proto != self.min_proto:
                text += f"-{self.max_proto}"
            if self.flags & NatFlag.PROTO_OFFSET:
                text += f"/{self.base_proto}"
        words = [name for flag, name in ((NatFlag.PROTO_RANDOM, "random"),
                                         (NatFlag.PROTO_RANDOM_FULLY, "fully-random"),
                                         (NatFlag.PERSISTENT, "persistent"))
                 if self.flags & flag]
        return " ".join(([text] if text else []) + words)


# ---------------------------------------------------------------------------------------------
# Matches.


@dataclass(frozen=True)
class PortRange:
    """An inclusive range of ports (a single port has lo == hi)."""

    lo: int
    hi: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.lo <= port <= self.hi

    def __str__(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"


@dataclass(frozen=True)
class PortMatch:
    """`--dport 80`, `--dport 1:1023`, multiport `--dports 53,123:130`, nft `{ 53, 123-130 }`;
    `negate` for `! --dport` / `!=`."""

    ranges: tuple[PortRange, ...]
    negate: bool = False

    def matches(self, port: int) -> bool:
        return any(port in r for r in self.ranges) != self.negate

    def __str__(self) -> str:
        body = ",".join(str(r) for r in self.ranges)
        return ("!=" if self.negate else "") + body


@dataclass(frozen=True)
class TcpFlagsMatch:
    """`(flags & mask) == comp` (xt_tcp's --tcp-flags / --syn, nft `tcp flags comp / mask`)."""

    mask: int
    comp: int
    negate: bool = False

    def matches(self, flags: int) -> bool:
        return ((flags & self.mask) == self.comp) != self.negate


# The SYN-only test `--syn` stands for: SYN set, FIN/RST/ACK clear.
SYN_ONLY = TcpFlagsMatch(mask=0x17, comp=0x02)

CTSTATES: frozenset[str] = frozenset({"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"})
# --ctstate (not --state) also takes these: the entry has SRC_NAT / DST_NAT (xt_conntrack.c).
CT_NAT_STATES: frozenset[str] = frozenset({"SNAT", "DNAT"})


def iface_matches(pattern: str, name: str | None) -> bool:
    """iptables interface names: a trailing `+` matches any name with that prefix (nft's `*`
    is normalised to `+` by the nft parser). No device (None) compares as the empty name, as
    in the kernel (ip_packet_match(); nft_meta_store_ifname()), so only `+` matches it."""
    name = name or ""
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


@dataclass(frozen=True)
class Match:
    """Everything a rule tests; a None field is "any". Each `*_neg` negates its field."""

    proto: int | None = None
    proto_neg: bool = False
    src: IPv4Network | None = None
    src_neg: bool = False
    dst: IPv4Network | None = None
    dst_neg: bool = False
    sport: PortMatch | None = None
    dport: PortMatch | None = None
    in_iface: str | None = None
    in_iface_neg: bool = False
    out_iface: str | None = None
    out_iface_neg: bool = False
    ctstate: frozenset[str] | None = None
    ctstate_neg: bool = False
    icmp_type: int | None = None
    icmp_code: int | None = None
    tcp_flags: TcpFlagsMatch | None = None
    # nft `ip saddr < A`, `ip saddr A-B` ...: an inclusive address range (empty if lo > hi);
    # negated by src_neg / dst_neg like src / dst (a rule has one or the other).
    src_range: tuple[IPv4Address, IPv4Address] | None = None
    dst_range: tuple[IPv4Address, IPv4Address] | None = None
    log: bool = False     # LOG / log: a no-op for the model that the journey shows
    # Tests on the entry itself (nat/rules/ct_match.py). With no entry they fail, except in
    # an iptables conntrack match that also has --ctstate (xt_conntrack then stops early).
    ct_tests: tuple[CtTest, ...] = ()
    ct_tests_without_ct: bool = False

    def describe(self) -> str:
        """A short iptables-like text, for journeys."""
        words: list[str] = []

        def neg(flag: bool) -> str:
            return "! " if flag else ""

        if self.proto is not None:
            words.append(f"{neg(self.proto_neg)}-p {PROTO_NAMES.get(self.proto, self.proto)}")
        if self.src is not None:
            words.append(f"{neg(self.src_neg)}-s {self.src}")
        if self.dst is not None:
            words.append(f"{neg(self.dst_neg)}-d {self.dst}")
        for flag, rng, is_neg in (("--src-range", self.src_range, self.src_neg),
                                  ("--dst-range", self.dst_range, self.dst_neg)):
            if rng is not None:
                words.append(f"{neg(is_neg)}{flag} {rng[0]}-{rng[1]}")
        if self.in_iface is not None:
            words.append(f"{neg(self.in_iface_neg)}-i {self.in_iface}")
        if self.out_iface is not None:
            words.append(f"{neg(self.out_iface_neg)}-o {self.out_iface}")
        for name, pm in (("sport", self.sport), ("dport", self.dport)):
            if pm is not None:
                ports = ",".join(str(r).replace("-", ":") for r in pm.ranges)
                words.append(f"{neg(pm.negate)}--{name} {ports}")
        if self.icmp_type is not None:
            code = "" if self.icmp_code is None else f"/{self.icmp_code}"
            words.append(f"--icmp-type {self.icmp_type}{code}")
        if self.tcp_flags is not None:
            words.append(f"{neg(self.tcp_flags.negate)}--tcp-flags "
                         f"{self.tcp_flags.mask:#x} {self.tcp_flags.comp:#x}")
        if self.ctstate is not None:
            words.append(f"{neg(self.ctstate_neg)}--ctstate {','.join(sorted(self.ctstate))}")
        words += [describe_ct_test(t) for t in self.ct_tests]
        if self.log:
            words.append("LOG")
        return " ".join(words)


# Protocol names both syntaxes accept (/etc/protocols subset), and their numbers.
PROTO_NUMBERS: dict[str, int] = {
    "icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "egp": 8, "udp": 17, "dccp": 33,
    "ipv6": 41, "gre": 47, "esp": 50, "ah": 51, "sctp": 132, "udplite": 136,
}
PROTO_NAMES: dict[int, str] = {v: k for k, v in PROTO_NUMBERS.items()}


# ---------------------------------------------------------------------------------------------
# Targets (iptables) / verdicts and statements (nft).


@dataclass(frozen=True)
class Accept:
    def __str__(self) -> str:
        return "ACCEPT"


@dataclass(frozen=True)
class Drop:
    def __str__(self) -> str:
        return "DROP"


# REJECT's answers, in iptables' spelling (nft's are normalised to these).
REJECT_WITH: frozenset[str] = frozenset({
    "icmp-net-unreachable", "icmp-host-unreachable", "icmp-port-unreachable",
    "icmp-proto-unreachable", "icmp-net-prohibited", "icmp-host-prohibited",
    "icmp-admin-prohibited", "tcp-reset",
})


# The answers the model builds (nat/reject.py); the parsers refuse the others as unmodelled.
MODELLED_REJECT: frozenset[str] = frozenset({"tcp-reset"})


@dataclass(frozen=True)
class Reject:
    """REJECT: drop, and answer with an ICMP error or a TCP RST (ipt_REJECT / nft_reject)."""

    with_: str = "icmp-port-unreachable"

    def __str__(self) -> str:
        return f"REJECT --reject-with {self.with_}"


@dataclass(frozen=True)
class Return:
    def __str__(self) -> str:
        return "RETURN"


@dataclass(frozen=True)
class Jump:
    chain: str

    def __str__(self) -> str:
        return f"jump {self.chain}"


@dataclass(frozen=True)
class Goto:
    chain: str

    def __str__(self) -> str:
        return f"goto {self.chain}"


@dataclass(frozen=True)
class Snat:
    """SNAT (xt_nat.c / nft_nat.c, SRC manip): the range as given."""

    range: NatRange

    def __str__(self) -> str:
        return f"SNAT to {self.range}"


@dataclass(frozen=True)
class Dnat:
    """DNAT (xt_nat.c / nft_nat.c, DST manip): the range as given."""

    range: NatRange

    def __str__(self) -> str:
        return f"DNAT to {self.range}"


@dataclass(frozen=True)
class Masquerade:
    """MASQUERADE (nf_nat_masquerade.c): no address; only ports (PROTO_SPECIFIED) and flags."""

    range: NatRange = NatRange()

    def __str__(self) -> str:
        text = str(self.range)
        return "MASQUERADE" + (f" {text}" if text else "")


@dataclass(frozen=True)
class Redirect:
    """REDIRECT (nf_nat_redirect.c): no address; only ports (PROTO_SPECIFIED) and flags."""

    range: NatRange = NatRange()

    def __str__(self) -> str:
        text = str(self.range)
        return "REDIRECT" + (f" {text}" if text else "")


Target = Accept | Drop | Reject | Return | Jump | Goto | Snat | Dnat | Masquerade | Redirect
NatTarget = Snat | Dnat | Masquerade | Redirect
NAT_TARGETS = (Snat, Dnat, Masquerade, Redirect)


# ---------------------------------------------------------------------------------------------
# Rules, chains, rulesets.


@dataclass(frozen=True)
class Rule:
    """One rule. `target` None: a rule without a verdict (only counts; evaluation goes on).
    `source` is the text as written and `lineno` where (1-based), both for messages and
    journeys; neither takes part in equality."""

    match: Match
    target: Target | None
    source: str = field(default="", compare=False)
    lineno: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return self.source or f"{self.match.describe()} -> {self.target}"


ChainKind = Literal["nat", "filter"]
Policy = Literal["ACCEPT", "DROP"]


@dataclass(frozen=True)
class Chain:
    """A chain. `table` is the iptables table or the nft table name; `kind` is what the
    chain does (iptables: the table; nft: the chain `type`). Base chains have a `hook`, a
    `priority` and a `policy`; user chains (jump/goto targets) have hook None and policy None.
    """

    table: str
    name: str
    kind: ChainKind
    hook: Hook | None = None
    priority: int = 0
    policy: Policy | None = None
    rules: tuple[Rule, ...] = ()

    @property
    def is_base(self) -> bool:
        return self.hook is not None


@dataclass(frozen=True)
class Ruleset:
    """All chains, in the order they were created (the order the kernel registered their
    hooks in: among base chains of equal priority the one created last runs first)."""

    chains: tuple[Chain, ...] = ()
    source_syntax: Literal["iptables", "nft"] = "iptables"

    def chain(self, table: str, name: str) -> Chain:
        """The chain `name` of `table` (KeyError if absent)."""
        for c in self.chains:
            if c.table == table and c.name == name:
                return c
        raise KeyError(f"no chain {name!r} in table {table!r}")

    def base_chains(self, hook: Hook, kind: ChainKind) -> tuple[Chain, ...]:
        """The base chains of `kind` on `hook`, in the order the kernel runs them."""
        chosen = [c for c in self.chains if c.hook == hook and c.kind == kind]
        return tuple(in_hook_order(chosen, lambda c: c.priority))

    def has_nat(self) -> bool:
        """A NAT base chain exists: the NAT core hooks are registered (kernel-semantics 1.3)."""
        return any(c.kind == "nat" and c.is_base for c in self.chains)

    def needs_conntrack(self) -> bool:
        """Conntrack runs in the namespace: a rule has a NAT target or tests ct state.

        What takes the namespace's conntrack reference (nf_ct_netns_get) is the rule, not the
        chain: the NAT targets' checkentry/init (xt_nat.c, xt_MASQUERADE.c, xt_REDIRECT.c,
        nft_nat.c, nft_masq.c, nft_redir.c) and the conntrack matches; a NAT base chain alone
        (iptable_nat.c, nft_chain_nat.c) registers the NAT hooks but tracks nothing. Seen on
        6.18 with every backend: after the last NAT rule is flushed from a nat chain that
        stays, a new flow gets no entry (spec rules-add-delete-flush)."""
        return any(isinstance(r.target, NAT_TARGETS) or r.match.ctstate is not None
                   for c in self.chains for r in c.rules)

    def rules(self) -> tuple[Rule, ...]:
        """Every rule of every chain, in chain order."""
        return tuple(r for c in self.chains for r in c.rules)
