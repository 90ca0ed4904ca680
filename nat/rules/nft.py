"""Read nft text (the subset the model supports) into the rules AST.

Three shapes of the same language are read: what people write by hand (`table ip nat { chain
... }` blocks), what `iptables-restore-translate` prints (`add table` / `add chain ... { type
nat hook prerouting priority -100; policy accept; }` / `add rule ...` commands), and what
`nft list ruleset` prints (blocks with `counter packets N bytes M`, priority keywords, address
ranges as prefixes). Measured with nftables 1.0.6 and iptables 1.8.9 on Linux 6.18.

Mirrors the kernel's checks for that subset (net/netfilter/nf_tables_api.c: chain types and
hooks, the NAT chain priority floor, jump loops; nft_nat.c, nft_masq.c, nft_redir.c and
nft_reject.c validate(): which hooks and chain types may hold each statement) and nft's own
refusals (a statement after a terminal one; a port mapping without a transport protocol match;
priority keywords only on their hook). `table inet` is read as IPv4 (the model is IPv4 only).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from typing import Any

from nat.hooks import NFT_HOOK, NFT_PRIORITY_KEYWORD, Hook, Priority
from nat.rules.ast import (
    CTSTATES,
    PROTO_NUMBERS,
    Accept,
    Chain,
    ChainKind,
    Dnat,
    Drop,
    Goto,
    Jump,
    Masquerade,
    Match,
    NatFlag,
    NatRange,
    Policy,
    PortMatch,
    PortRange,
    Redirect,
    Reject,
    Return,
    Rule,
    Ruleset,
    RuleSyntaxError,
    Snat,
    Target,
    TcpFlagsMatch,
    UnsupportedRule,
)
from nat.rules.checks import check_table
from nat.rules.common import ICMP_TYPE_NUMBERS

FAMILIES = frozenset({"ip", "inet"})
OTHER_FAMILIES = frozenset({"ip6", "arp", "bridge", "netdev"})
TCP_FLAG_BITS: dict[str, int] = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08,
                                 "ack": 0x10, "urg": 0x20, "ecn": 0x40, "cwr": 0x80}
# `icmp code` names (nft's icmp_code_type) -> code.
ICMP_CODES: dict[str, int] = {
    "net-unreachable": 0, "host-unreachable": 1, "prot-unreachable": 2,
    "port-unreachable": 3, "frag-needed": 4, "net-prohibited": 9, "host-prohibited": 10,
    "admin-prohibited": 13,
}
# `reject with icmp [type] X` / `reject with icmpx [type] X` -> iptables' --reject-with name.
REJECT_ICMP: dict[str, str] = {
    "net-unreachable": "icmp-net-unreachable", "host-unreachable": "icmp-host-unreachable",
    "prot-unreachable": "icmp-proto-unreachable", "port-unreachable": "icmp-port-unreachable",
    "net-prohibited": "icmp-net-prohibited", "host-prohibited": "icmp-host-prohibited",
    "admin-prohibited": "icmp-admin-prohibited",
}
REJECT_ICMPX: dict[str, str] = {
    "port-unreachable": "icmp-port-unreachable", "admin-prohibited": "icmp-admin-prohibited",
    "no-route": "icmp-net-unreachable", "host-unreachable": "icmp-host-unreachable",
}
# Statements nft knows that the model does not evaluate.
UNSUPPORTED_STATEMENTS = frozenset({
    "log", "limit", "quota", "notrack", "queue", "dup", "fwd", "tproxy", "synproxy", "flow",
    "numgen", "jhash", "symhash", "mark", "ether", "vlan", "arp", "ip6", "icmpv6", "sctp",
    "dccp", "udplite", "ah", "esp", "comp", "rt", "hbh", "frag", "dst", "mh", "exthdr", "osf",
    "socket", "fib", "xfrm", "secmark", "set", "update", "th", "igmp", "vmap", "last",
    "connlimit", "inner", "gre", "vxlan", "geneve", "cgroupv2", "ipsec", "tunnel",
})
# Words nft 1.0.6 refuses as a bare chain name (measured with `add chain ip t WORD`): they
# are keywords of its grammar and must be quoted. iptables-restore-translate does not quote.
_KEYWORD_TEXT = """
fwd log limit quota notrack queue dup tproxy synproxy flow numgen jhash symhash mark ether
vlan arp ip ip6 icmp icmpv6 tcp udp sctp dccp udplite ah esp comp rt hbh frag dst mh exthdr
osf socket fib secmark set update th igmp vmap accept drop return jump goto continue reject
snat dnat masquerade redirect counter comment meta ct table chain rule type hook priority
policy add delete insert flush ruleset random map element iifname oifname iif oif inet bridge
netdev flags devices device reset handle index position define include
"""
NFT_KEYWORDS = frozenset(_KEYWORD_TEXT.split())

# Priority keywords that nft 1.0.6 accepts only on one hook (family ip/inet).
KEYWORD_HOOK: dict[str, Hook] = {"dstnat": Hook.PRE_ROUTING, "srcnat": Hook.POST_ROUTING}
NAT_HOOKS = frozenset({Hook.PRE_ROUTING, Hook.LOCAL_IN, Hook.LOCAL_OUT, Hook.POST_ROUTING})
PORT_WORD = re.compile(r"^\d+(-\d+)?$")


# ---------------------------------------------------------------------------------------------
# Tokens.


@dataclass(frozen=True)
class _Tok:
    kind: str      # "word", "string", "{", "}", ";", ",", "nl", "(", ")", "|", "&", "eof"
    text: str
    lineno: int
    start: int     # offsets into the text, to quote a rule as written
    end: int


_SINGLE = "{};,()|&"


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, lineno, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and text[i + 1:i + 2] == "\n":  # line continuation
            i += 2
            lineno += 1
        elif c == "\n":
            toks.append(_Tok("nl", "\n", lineno, i, i + 1))
            lineno += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c == '"':
            j = text.find('"', i + 1)
            if j < 0 or "\n" in text[i:j]:
                raise RuleSyntaxError(lineno, "unterminated string",
                                      text[i:].split("\n", 1)[0])
            toks.append(_Tok("string", text[i + 1:j], lineno, i, j + 1))
            i = j + 1
        elif c in _SINGLE:
            toks.append(_Tok(c, c, lineno, i, i + 1))
            i += 1
        else:
            j = i
            while j < n and text[j] not in ' \t\r\n"#' + _SINGLE:
                j += 1
            toks.append(_Tok("word", text[i:j], lineno, i, j))
            i = j
    toks.append(_Tok("eof", "", lineno, n, n))
    return toks


# ---------------------------------------------------------------------------------------------
# The tables and chains being built.


@dataclass
class _ChainBuild:
    table: str
    name: str
    lineno: int
    kind: ChainKind = "filter"
    hook: Hook | None = None
    priority: int = 0
    policy: Policy | None = None
    rules: list[Rule] = field(default_factory=list)


@dataclass
class _TableBuild:
    family: str
    name: str
    chains: dict[str, _ChainBuild] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.family} {self.name}"


def parse_nft(text: str) -> Ruleset:
    """Parse nft text. Raises RuleSyntaxError / UnsupportedRule (one line each)."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines()
        self.toks = _tokenize(text)
        self.pos = 0
        self.tables: dict[str, _TableBuild] = {}
        # Jumps whose target must exist by the end of the file (block form).
        self.pending: list[tuple[_TableBuild, Rule]] = []

    # -- token helpers --------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.pos + ahead, len(self.toks) - 1)]

    def next(self) -> _Tok:
        tok = self.peek()
        self.pos = min(self.pos + 1, len(self.toks) - 1)
        return tok

    def line_of(self, tok: _Tok) -> str:
        return self.lines[tok.lineno - 1] if 0 < tok.lineno <= len(self.lines) else ""

    def syntax(self, tok: _Tok, message: str) -> RuleSyntaxError:
        return RuleSyntaxError(tok.lineno, message, self.line_of(tok))

    def unsupported(self, tok: _Tok, construct: str) -> UnsupportedRule:
        return UnsupportedRule(tok.lineno, construct, self.line_of(tok))

    def expect(self, kind: str, what: str) -> _Tok:
        tok = self.next()
        if tok.kind != kind:
            raise self.syntax(tok, f"expected {what}, found {tok.text or 'end of input'!r}")
        return tok

    def word(self, what: str) -> _Tok:
        tok = self.next()
        if tok.kind not in ("word", "string"):
            raise self.syntax(tok, f"expected {what}, found {tok.text or 'end of input'!r}")
        return tok

    def skip_separators(self) -> None:
        while self.peek().kind in ("nl", ";"):
            self.next()

    def end_of_command(self) -> None:
        tok = self.peek()
        if tok.kind not in ("nl", ";", "eof", "}"):
            raise self.syntax(tok, f"unexpected {tok.text!r}, expecting newline or semicolon")

    # -- top level ------------------------------------------------------------------------
    def parse(self) -> Ruleset:
        while True:
            self.skip_separators()
            tok = self.peek()
            if tok.kind == "eof":
                break
            self.command()
            self.end_of_command()
        for table, rule in self.pending:
            assert isinstance(rule.target, Jump | Goto)
            if rule.target.chain not in table.chains:
                raise RuleSyntaxError(rule.lineno, f"no chain {rule.target.chain!r} in table "
                                      f"{table.key} (No such file or directory)", rule.source)
        chains: list[Chain] = []
        for table in self.tables.values():
            built = [Chain(table.key, c.name, c.kind, c.hook, c.priority, c.policy,
                           tuple(c.rules)) for c in table.chains.values()]
            reach = check_table(built, "nft")
            # A regular chain has no type of its own; call it "nat" when only nat chains
            # reach it, as iptables' nat-table user chains are.
            chains += [replace(c, kind="nat") if c.hook is None and reach[c.name] and all(
                b.kind == "nat" for b in reach[c.name]) else c for c in built]
        return Ruleset(tuple(chains), "nft")

    def command(self) -> None:
        tok = self.word("a command")
        verb = tok.text
        if verb == "flush":
            what = self.word("ruleset, table or chain")
            if what.text == "ruleset":
                self.tables.clear()
            elif what.text == "table":
                self.table_ref(what).chains.clear()
            elif what.text == "chain":
                table = self.table_ref(what)
                self.chain_ref(table, self.word("a chain name")).rules.clear()
            else:
                raise self.unsupported(what, f"flush {what.text}")
        elif verb == "table":
            table = self.table_decl()
            self.table_block(table)
        elif verb in ("add", "create", "insert"):
            what = self.word("table, chain or rule")
            if what.text == "table" and verb != "insert":
                table = self.table_decl(create=verb == "create")
                if self.peek().kind == "{":
                    self.table_block(table)
            elif what.text == "chain" and verb != "insert":
                table = self.table_ref(what)
                name = self.word("a chain name")
                chain = self.chain_decl(table, name, create=verb == "create")
                if self.peek().kind == "{":
                    self.next()
                    self.chain_body(table, chain)
                    self.expect("}", "`}`")
            elif what.text == "rule":
                table = self.table_ref(what)
                chain = self.chain_ref(table, self.word("a chain name"))
                if self.peek().text in ("position", "handle", "index"):
                    raise self.unsupported(self.peek(), f"rule {self.peek().text}")
                rule = self.rule(table, chain, self.peek(), immediate=True, whole=tok)
                if verb == "insert":
                    chain.rules.insert(0, rule)
                else:
                    chain.rules.append(rule)
            else:
                raise self.unsupported(what, f"{verb} {what.text}")
        elif verb in ("delete", "destroy", "replace", "reset", "rename", "list", "monitor",
                      "describe", "export", "import", "define", "redefine", "undefine",
                      "include", "get"):
            raise self.unsupported(tok, f"command {verb!r}")
        else:
            raise self.syntax(tok, f"unknown command {verb!r}")

    # -- tables ---------------------------------------------------------------------------
    def family_and_name(self, after: _Tok) -> tuple[str, _Tok]:
        first = self.word("a table name")
        family = "ip"
        if first.text in FAMILIES | OTHER_FAMILIES and self.peek().kind in ("word", "string"):
            family, first = first.text, self.word("a table name")
        if family in OTHER_FAMILIES:
            raise self.unsupported(after, f"family {family!r} (the model is IPv4: ip, inet)")
        return family, first

    def table_decl(self, *, create: bool = False) -> _TableBuild:
        family, name = self.family_and_name(self.peek(-1))
        key = f"{family} {name.text}"
        if key in self.tables:
            if create:
                raise self.syntax(name, f"table {key} exists (File exists)")
            return self.tables[key]
        self.tables[key] = _TableBuild(family, name.text)
        return self.tables[key]

    def table_ref(self, after: _Tok) -> _TableBuild:
        family, name = self.family_and_name(after)
        key = f"{family} {name.text}"
        if key not in self.tables:
            raise self.syntax(name, f"no table {key} (No such file or directory)")
        return self.tables[key]

    def chain_ref(self, table: _TableBuild, name: _Tok) -> _ChainBuild:
        if name.text not in table.chains:
            raise self.syntax(name, f"no chain {name.text!r} in table {table.key} "
                              "(No such file or directory)")
        return table.chains[name.text]

    def table_block(self, table: _TableBuild) -> None:
        self.expect("{", "`{`")
        while True:
            self.skip_separators()
            tok = self.next()
            if tok.kind == "}":
                return
            if tok.text == "chain":
                chain = self.chain_decl(table, self.word("a chain name"))
                self.expect("{", "`{`")
                self.chain_body(table, chain)
                self.expect("}", "`}`")
            elif tok.text == "comment":
                self.word("a comment")
            elif tok.text in ("set", "map", "flowtable", "counter", "quota", "ct", "limit",
                              "secmark", "synproxy", "flags"):
                raise self.unsupported(tok, f"table {tok.text}")
            else:
                raise self.syntax(tok, f"unexpected {tok.text or 'end of input'!r} in table")
            self.end_of_command()

    # -- chains ---------------------------------------------------------------------------
    def chain_decl(self, table: _TableBuild, name: _Tok, *, create: bool = False) -> _ChainBuild:
        if name.kind == "word" and name.text in NFT_KEYWORDS:
            raise self.syntax(name, f"chain name {name.text!r} is an nft keyword "
                              "(write it in double quotes)")
        if name.text in table.chains:
            if create:
                raise self.syntax(name, f"chain {name.text!r} exists (File exists)")
            return table.chains[name.text]
        chain = _ChainBuild(table.key, name.text, name.lineno)
        table.chains[name.text] = chain
        return chain

    def chain_body(self, table: _TableBuild, chain: _ChainBuild) -> None:
        """Inside `chain NAME { ... }`: the base-chain spec, policy, comment, and rules."""
        while True:
            self.skip_separators()
            tok = self.peek()
            if tok.kind in ("}", "eof"):
                return
            if tok.text == "type":
                self.next()
                self.chain_type(chain, tok)
            elif tok.text == "policy":
                self.next()
                policy = self.word("accept or drop")
                if policy.text not in ("accept", "drop"):
                    raise self.syntax(policy, f"bad policy {policy.text!r}")
                if chain.hook is None:
                    raise self.syntax(tok, "a policy needs a base chain (Operation not "
                                      "supported)")
                chain.policy = "ACCEPT" if policy.text == "accept" else "DROP"
            elif tok.text == "comment" and self.peek(1).kind == "string" and \
                    self.peek(2).kind in ("nl", ";", "}"):
                self.next()
                self.next()
            elif tok.text in ("devices", "device", "flags"):
                raise self.unsupported(tok, f"chain {tok.text}")
            else:
                chain.rules.append(self.rule(table, chain, tok, immediate=False))
            self.end_of_command()

    def chain_type(self, chain: _ChainBuild, at: _Tok) -> None:
        """`type T hook H [device D] priority P`."""
        kind = self.word("a chain type")
        if kind.text == "route":
            raise self.unsupported(kind, "chain type route")
        if kind.text not in ("filter", "nat"):
            raise self.syntax(kind, f"unknown chain type {kind.text!r}")
        if self.word("`hook`").text != "hook":
            raise self.syntax(kind, "expected `hook` after the chain type")
        hook_tok = self.word("a hook name")
        if hook_tok.text in ("ingress", "egress"):
            raise self.unsupported(hook_tok, f"hook {hook_tok.text}")
        if hook_tok.text not in NFT_HOOK:
            raise self.syntax(hook_tok, f"unknown hook {hook_tok.text!r}")
        hook = NFT_HOOK[hook_tok.text]
        if self.peek().text == "device":
            raise self.unsupported(self.peek(), "chain device")
        if self.word("`priority`").text != "priority":
            raise self.syntax(hook_tok, "expected `priority` after the hook")
        words = []
        while self.peek().kind == "word":
            words.append(self.next())
        if not words:
            raise self.syntax(hook_tok, "a priority is missing")
        priority = _priority(" ".join(w.text for w in words), hook, lambda m: self.syntax(
            words[0], m))
        if kind.text == "nat":
            if hook not in NAT_HOOKS:
                raise self.syntax(hook_tok, f"a nat chain cannot hook {hook_tok.text} "
                                  "(Operation not supported)")
            if priority <= Priority.CONNTRACK:
                raise self.syntax(words[0], f"a nat chain needs a priority above "
                                  f"{int(Priority.CONNTRACK)} (Operation not supported)")
        if chain.hook is not None and (chain.hook, chain.priority, chain.kind) != (
                hook, priority, kind.text):
            raise self.syntax(at, f"chain {chain.name!r} already exists with another type, "
                              "hook or priority (Operation not supported)")
        if chain.hook is None and chain.rules:
            raise self.syntax(at, f"chain {chain.name!r} is a regular chain already")
        chain.kind = "nat" if kind.text == "nat" else "filter"
        chain.hook, chain.priority = hook, priority
        chain.policy = chain.policy or "ACCEPT"

    # -- rules ----------------------------------------------------------------------------
    def rule(self, table: _TableBuild, chain: _ChainBuild, first: _Tok, *,
             immediate: bool, whole: _Tok | None = None) -> Rule:
        """Statements up to the end of the command; `immediate`: jumps must resolve now.
        `whole`: the command's first word (`add rule ...`), so the source quotes all of it."""
        start, depth = self.pos, 0
        while self.peek().kind != "eof":
            kind = self.peek().kind
            if depth <= 0 and kind in ("nl", ";", "}"):
                break  # a `}` here closes the chain block; inside a set it closes the set
            depth += 1 if kind == "{" else -1 if kind == "}" else 0
            self.next()
        toks = [t for t in self.toks[start:self.pos] if t.kind != "nl"]
        if not toks:
            raise self.syntax(first, "empty rule")
        source = self.text[(whole or toks[0]).start:toks[-1].end]
        line = self.line_of(first)
        rp = _RuleParser(toks, table, first.lineno, line)
        match, target = rp.parse()
        rule = Rule(match, target, source, first.lineno)
        if isinstance(target, Jump | Goto):
            if target.chain == chain.name:
                raise RuleSyntaxError(first.lineno, f"chain {chain.name!r} jumps to itself "
                                      "(Operation not supported)", line)
            if immediate and target.chain not in table.chains:
                raise RuleSyntaxError(first.lineno, f"no chain {target.chain!r} in table "
                                      f"{table.key} (No such file or directory)", line)
            self.pending.append((table, rule))
        return rule


def _priority(text: str, hook: Hook, error: Callable[[str], RuleSyntaxError]) -> int:
    """`-100`, `dstnat`, `dstnat + 10`, `filter-5` -> a number (keywords of family ip)."""
    m = re.fullmatch(r"([a-z]+|[-+]?\d+)\s*(?:([-+])\s*(\d+))?", text.strip())
    if m is None:
        raise error(f"bad priority {text!r}")
    base, sign, offset = m.groups()
    if base[0].isalpha():
        if base not in NFT_PRIORITY_KEYWORD:
            raise error(f"unknown priority keyword {base!r}")
        if base in KEYWORD_HOOK and KEYWORD_HOOK[base] != hook:
            raise error("invalid priority expression value in this context")
        value = int(NFT_PRIORITY_KEYWORD[base])
    else:
        value = int(base)
    if sign:
        value += int(offset) if sign == "+" else -int(offset)
    return value


# ---------------------------------------------------------------------------------------------
# One rule's statements.


class _RuleParser:
    """The statements of one rule: matches, then at most one terminal statement."""

    def __init__(self, toks: list[_Tok], table: _TableBuild, lineno: int, line: str) -> None:
        self.toks = toks + [_Tok("eof", "", lineno, 0, 0)]
        self.pos = 0
        self.table = table
        self.lineno = lineno
        self.line = line
        self.match = Match()     # filled in statement by statement (frozen: replaced)
        self.target: Target | None = None
        self.terminal: _Tok | None = None
        self.set_fields: set[str] = set()

    def set(self, **fields: Any) -> None:
        """Record match fields (the Match is frozen: each statement makes a new one)."""
        self.match = replace(self.match, **fields)

    def syntax(self, message: str) -> RuleSyntaxError:
        return RuleSyntaxError(self.lineno, message, self.line)

    def unsupported(self, construct: str) -> UnsupportedRule:
        return UnsupportedRule(self.lineno, construct, self.line)

    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.pos + ahead, len(self.toks) - 1)]

    def next(self) -> _Tok:
        tok = self.peek()
        self.pos = min(self.pos + 1, len(self.toks) - 1)
        return tok

    def word(self, what: str) -> str:
        tok = self.next()
        if tok.kind not in ("word", "string"):
            raise self.syntax(f"expected {what}, found {tok.text or 'end of rule'!r}")
        return tok.text

    def once(self, key: str) -> None:
        if key in self.set_fields:
            raise self.unsupported(f"two {key} matches in one rule")
        self.set_fields.add(key)

    # -- statements -----------------------------------------------------------------------
    def parse(self) -> tuple[Match, Target | None]:
        while self.peek().kind != "eof":
            tok = self.next()
            if tok.kind != "word":
                raise self.syntax(f"unexpected {tok.text!r}")
            w = tok.text
            if w == "comment":
                self.word("a comment")
                continue
            if self.terminal is not None:
                raise self.syntax(f"statement {w!r} after terminal statement "
                                  f"{self.terminal.text!r} has no effect")
            self.statement(tok)
        return self.match, self.target

    def statement(self, tok: _Tok) -> None:
        w = tok.text
        if w == "counter":
            if self.peek().text == "name":
                raise self.unsupported("named counter")
            if self.peek().text == "packets":
                for expect in ("packets", None, "bytes", None):
                    value = self.word("counter values")
                    if (expect is not None and value != expect) or (
                            expect is None and not value.isdigit()):
                        raise self.syntax("bad counter (expected `packets N bytes M`)")
            return
        if w == "ip":
            field_ = self.word("an ip field")
            if field_ in ("saddr", "daddr"):
                self.address(field_)
            elif field_ == "protocol":
                self.protocol("ip protocol")
            else:
                raise self.unsupported(f"ip {field_}")
            return
        if w == "meta":
            key = self.word("a meta key")
            if key == "l4proto":
                self.protocol("meta l4proto")
            elif key in ("iifname", "oifname", "iif", "oif"):
                self.iface(key)
            elif key == "nfproto":
                self.nfproto()
            elif key == "protocol":
                neg = self.op()
                if self.word("an ethertype") != "ip" or neg:
                    raise self.unsupported("meta protocol other than ip")
            else:
                raise self.unsupported(f"meta {key}")
            return
        if w in ("iifname", "oifname", "iif", "oif"):
            self.iface(w)
            return
        if w in ("tcp", "udp"):
            self.l4(w)
            return
        if w == "icmp":
            self.icmp()
            return
        if w == "ct":
            key = self.word("a ct key")
            if key != "state":
                raise self.unsupported(f"ct {key}")
            self.ct_state()
            return
        if w in ("accept", "drop", "return", "continue", "jump", "goto"):
            self.verdict(tok)
            return
        if w == "reject":
            self.reject(tok)
            return
        if w in ("snat", "dnat"):
            self.nat(tok)
            return
        if w in ("masquerade", "redirect"):
            self.masq_redirect(tok)
            return
        if w in UNSUPPORTED_STATEMENTS:
            raise self.unsupported(f"statement {w!r}")
        raise self.syntax(f"unexpected {w!r}")

    # -- relational pieces ----------------------------------------------------------------
    def op(self) -> bool:
        """An optional relational operator; True for negation (`!=`, `!`, `ne`)."""
        t = self.peek().text
        if t in ("==", "eq"):
            self.next()
            return False
        if t in ("!=", "ne", "!"):
            self.next()
            return True
        if t in ("<", ">", "<=", ">=", "lt", "gt", "le", "ge"):
            raise self.unsupported(f"comparison {t!r}")
        return False

    def no_set(self, what: str) -> None:
        if self.peek().kind == "{":
            raise self.unsupported(f"anonymous set for {what}")
        if self.peek().text.startswith(("@", "$")):
            raise self.unsupported(f"named set or variable {self.peek().text!r} for {what}")

    def address(self, field_: str) -> None:
        self.once(f"ip {field_}")
        neg = self.op()
        self.no_set(f"ip {field_}")
        text = self.word("an address")
        if "-" in text:
            raise self.unsupported(f"address range {text!r}")
        try:
            net = IPv4Network(text, strict=False)
        except (AddressValueError, NetmaskValueError, ValueError):
            raise self.syntax(f"bad address {text!r}") from None
        if field_ == "saddr":
            self.set(src=net, src_neg=neg)
        else:
            self.set(dst=net, dst_neg=neg)

    def protocol(self, what: str) -> None:
        neg = self.op()
        self.no_set(what)
        name = self.word("a protocol")
        number = int(name) if name.isdigit() else PROTO_NUMBERS.get(name)
        if number is None or number > 255:
            raise self.syntax(f"unknown protocol {name!r}")
        self.set_proto(number, neg)

    def set_proto(self, number: int, neg: bool) -> None:
        """Record a protocol test; nft adds one itself in front of tcp/udp/icmp fields."""
        f = self.match
        if f.proto is None:
            self.set(proto=number, proto_neg=neg)
        elif (f.proto, f.proto_neg) != (number, neg):
            if not f.proto_neg and not neg:
                raise self.syntax(f"conflicting protocols specified: "
                                  f"{f.proto} vs. {number}")
            raise self.unsupported("two different protocol tests in one rule")

    def nfproto(self) -> None:
        neg = self.op()
        value = self.word("a family")
        if value != "ipv4" or neg:
            raise self.unsupported(f"meta nfproto {'!= ' if neg else ''}{value}")
        if self.table.family != "inet":
            raise self.syntax("meta nfproto only makes sense in an inet table")

    def iface(self, key: str) -> None:
        out = key.startswith("o")
        self.once("oifname" if out else "iifname")
        neg = self.op()
        self.no_set(key)
        name = self.word("an interface name")
        if name.endswith("\\*") or "+" in name:
            raise self.unsupported(f"interface name {name!r} (literal * or +)")
        if "*" in name[:-1]:
            raise self.unsupported(f"interface wildcard {name!r} not at the end")
        if len(name) >= 16:
            raise self.syntax(f"interface name {name!r} is longer than 15 characters")
        pattern = name[:-1] + "+" if name.endswith("*") else name
        if out:
            self.set(out_iface=pattern, out_iface_neg=neg)
        else:
            self.set(in_iface=pattern, in_iface_neg=neg)

    def ports(self) -> tuple[PortRange, ...]:
        if self.peek().kind == "{":
            self.next()
            ranges = []
            while True:
                ranges.append(self.port_range(self.word("a port")))
                sep = self.next()
                if sep.kind == "}":
                    return tuple(ranges)
                if sep.kind != ",":
                    raise self.syntax(f"expected `,` or `}}` in a port set, found {sep.text!r}")
        if self.peek().text.startswith(("@", "$")):
            raise self.unsupported(f"named set or variable {self.peek().text!r}")
        return (self.port_range(self.word("a port")),)

    def port_range(self, text: str) -> PortRange:
        if not PORT_WORD.match(text):
            if any(c.isalpha() for c in text):
                raise self.unsupported(f"service name {text!r} (needs /etc/services)")
            raise self.syntax(f"bad port {text!r}")
        lo_s, _, hi_s = text.partition("-")
        lo, hi = int(lo_s), int(hi_s or lo_s)
        if hi > 65535 or lo > hi:
            raise self.syntax(f"bad port range {text!r}")
        return PortRange(lo, hi)

    def l4(self, proto: str) -> None:
        fld = self.word(f"a {proto} field")
        if fld in ("sport", "dport"):
            self.set_proto(PROTO_NUMBERS[proto], False)
            self.once(fld)
            neg = self.op()
            pm = PortMatch(self.ports(), neg)
            if fld == "sport":
                self.set(sport=pm)
            else:
                self.set(dport=pm)
        elif fld == "flags" and proto == "tcp":
            self.set_proto(PROTO_NUMBERS[proto], False)
            self.once("tcp flags")
            self.set(tcp_flags=self.tcp_flags())
        else:
            raise self.unsupported(f"{proto} {fld}")

    def flag_value(self) -> int:
        """`syn`, `syn,ack`, `syn|ack`, `0x12`: flags OR'd together."""
        value = 0
        while True:
            tok = self.next()
            text = tok.text
            if text in TCP_FLAG_BITS:
                value |= TCP_FLAG_BITS[text]
            elif re.fullmatch(r"0x[0-9a-fA-F]+|\d+", text):
                value |= int(text, 0)
            else:
                raise self.syntax(f"unknown TCP flag {text!r}")
            if self.peek().kind in (",", "|"):
                self.next()
                continue
            return value & 0xFF

    def tcp_flags(self) -> TcpFlagsMatch:
        if self.peek().kind == "&":  # tcp flags & (a|b) ==|!= v
            self.next()
            paren = self.peek().kind == "("
            if paren:
                self.next()
            mask = self.flag_value()
            if paren and self.next().kind != ")":
                raise self.syntax("expected `)`")
            op = self.next().text
            if op not in ("==", "!="):
                raise self.syntax(f"expected == or != after the mask, found {op!r}")
            return TcpFlagsMatch(mask, self.flag_value(), op == "!=")
        explicit = self.peek().text in ("==", "!=", "eq", "ne")
        neg = self.op()
        self.no_set("tcp flags")
        value = self.flag_value()
        if self.peek().text == "/":
            self.next()
            return TcpFlagsMatch(self.flag_value(), value, neg)
        if explicit:
            return TcpFlagsMatch(0xFF, value, neg)
        # A bare flag list tests "any of these set" (nft's implicit bitmask relation);
        # with `!` none of them set.
        return TcpFlagsMatch(value, 0, not neg)

    def icmp(self) -> None:
        fld = self.word("an icmp field")
        self.set_proto(PROTO_NUMBERS["icmp"], False)
        if fld not in ("type", "code"):
            raise self.unsupported(f"icmp {fld}")
        self.once(f"icmp {fld}")
        if self.op():
            raise self.unsupported(f"negated icmp {fld}")
        self.no_set(f"icmp {fld}")
        text = self.word(f"an icmp {fld}")
        table = ICMP_TYPE_NUMBERS if fld == "type" else ICMP_CODES
        if text.isdigit() and int(text) <= 255:
            value = int(text)
        elif text in table:
            value = table[text]
        else:
            raise self.syntax(f"unknown icmp {fld} {text!r}")
        if fld == "type":
            self.set(icmp_type=value)
        else:
            self.set(icmp_code=value)

    def ct_state(self) -> None:
        self.once("ct state")
        neg = self.op()
        if self.peek().text == "vmap":
            raise self.unsupported("ct state vmap")
        names: list[str] = []
        if self.peek().kind == "{":
            self.next()
            while True:
                names.append(self.word("a ct state"))
                sep = self.next()
                if sep.kind == "}":
                    break
                if sep.kind != ",":
                    raise self.syntax(f"expected `,` or `}}` in a set, found {sep.text!r}")
        else:
            names.append(self.word("a ct state"))
            while self.peek().kind == ",":
                self.next()
                names.append(self.word("a ct state"))
        states = frozenset(n.upper() for n in names)
        bad = sorted(s for s in states if s not in CTSTATES)
        if bad:
            raise self.syntax(f"unknown ct state {bad[0].lower()!r}")
        self.set(ctstate=states, ctstate_neg=neg)

    # -- terminal statements --------------------------------------------------------------
    def finish(self, tok: _Tok, target: Target | None) -> None:
        self.terminal = tok
        self.target = target

    def verdict(self, tok: _Tok) -> None:
        simple: dict[str, Target | None] = {"accept": Accept(), "drop": Drop(),
                                            "return": Return(), "continue": None}
        if tok.text in simple:
            self.finish(tok, simple[tok.text])
            return
        name = self.word("a chain name")
        self.finish(tok, Jump(name) if tok.text == "jump" else Goto(name))

    def reject(self, tok: _Tok) -> None:
        with_ = "icmp-port-unreachable"
        if self.peek().text == "with":
            self.next()
            kind = self.word("icmp, icmpx or tcp")
            if kind == "tcp":
                if self.word("`reset`") != "reset":
                    raise self.syntax("expected `reset` after `reject with tcp`")
                if self.match.proto != PROTO_NUMBERS["tcp"] or self.match.proto_neg:
                    # nft adds the tcp dependency itself; the model wants it spelled out.
                    self.set_proto(PROTO_NUMBERS["tcp"], False)
                with_ = "tcp-reset"
            elif kind in ("icmp", "icmpx"):
                name = self.word("an icmp code")
                if name == "type":
                    name = self.word("an icmp code")
                names = REJECT_ICMP if kind == "icmp" else REJECT_ICMPX
                if name not in names:
                    raise self.syntax(f"unknown reject code {name!r}")
                with_ = names[name]
            elif kind == "icmpv6":
                raise self.unsupported("reject with icmpv6")
            else:
                raise self.syntax(f"unknown reject type {kind!r}")
        self.finish(tok, Reject(with_))

    def flags(self) -> NatFlag:
        """`random`, `fully-random`, `persistent`, comma- or space-separated."""
        names = {"random": NatFlag.PROTO_RANDOM, "fully-random": NatFlag.PROTO_RANDOM_FULLY,
                 "persistent": NatFlag.PERSISTENT}
        flags = NatFlag.NONE
        while self.peek().text in names or (self.peek().kind == "," and flags):
            tok = self.next()
            if tok.kind == ",":
                continue
            flags |= names[tok.text]
        return flags

    def need_l4(self) -> None:
        if self.match.proto is None or self.match.proto_neg:
            raise self.syntax("transport protocol mapping is only valid after transport "
                              "protocol match")

    def nat_ports(self, text: str) -> tuple[int, int]:
        lo_s, _, hi_s = text.partition("-")
        if not lo_s.isdigit() or (hi_s and not hi_s.isdigit()):
            if any(c.isalpha() for c in text):
                raise self.unsupported(f"service name {text!r}")
            raise self.syntax(f"bad port range {text!r}")
        lo, hi = int(lo_s), int(hi_s or lo_s)
        if hi > 65535 or lo > hi:
            raise self.syntax(f"bad port range {text!r}")
        self.need_l4()
        return lo, hi

    def nat(self, tok: _Tok) -> None:
        """`snat|dnat [ip] to ADDR[-ADDR|/LEN][:P[-Q]] [flags]`."""
        has_ip = False
        if self.peek().text == "ip":
            self.next()
            has_ip = True
            if self.peek().text in ("prefix", "addr"):
                raise self.unsupported(f"{tok.text} ip {self.peek().text} (NETMAP)")
        if self.word("`to`") != "to":
            raise self.syntax(f"expected `to` after {tok.text}")
        self.no_set(f"{tok.text} to")
        spec = self.word("an address")
        if self.peek().text == "map":
            raise self.unsupported(f"{tok.text} to ... map")
        addr_s, colon, port_s = spec.partition(":")
        flags = NatFlag.NONE
        lo = hi = None
        if addr_s:
            if self.table.family == "inet" and not has_ip:
                raise self.syntax("ip or ip6 must be specified with address for inet tables")
            lo, hi = self.nat_addresses(addr_s)
            flags |= NatFlag.MAP_IPS
        lo_p = hi_p = 0
        if colon:
            lo_p, hi_p = self.nat_ports(port_s)
            flags |= NatFlag.PROTO_SPECIFIED
        if not flags:
            raise self.syntax(f"bad {tok.text} address {spec!r}")
        rng = NatRange(flags | self.flags(), lo, hi, lo_p, hi_p)
        self.finish(tok, Snat(rng) if tok.text == "snat" else Dnat(rng))

    def nat_addresses(self, text: str) -> tuple[IPv4Address, IPv4Address]:
        try:
            if "/" in text:  # `nft list` prints aligned ranges as prefixes
                net = IPv4Network(text, strict=True)
                return net.network_address, net.broadcast_address
            first, _, last = text.partition("-")
            lo = IPv4Address(first)
            hi = IPv4Address(last) if last else lo
        except (AddressValueError, NetmaskValueError, ValueError):
            raise self.syntax(f"bad address {text!r}") from None
        if hi < lo:
            raise self.unsupported(f"address range {text} with min > max")
        return lo, hi

    def masq_redirect(self, tok: _Tok) -> None:
        """`masquerade [to :P[-Q]] [flags]`, `redirect [to [:]P[-Q]] [flags]`."""
        rng = NatRange()
        if self.peek().text == "to":
            self.next()
            spec = self.word("ports")
            if spec.startswith(":"):
                spec = spec[1:]
            elif tok.text == "masquerade":
                raise self.syntax("masquerade takes only ports: `to :PORT[-PORT]`")
            lo, hi = self.nat_ports(spec)
            rng = NatRange(NatFlag.PROTO_SPECIFIED, min_proto=lo, max_proto=hi)
        rng = replace(rng, flags=rng.flags | self.flags())
        self.finish(tok, Masquerade(rng) if tok.text == "masquerade" else Redirect(rng))
