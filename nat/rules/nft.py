"""Read nft text (the subset the model supports) into the rules AST.

Three shapes of the same language are read: what people write by hand (`table ip nat { chain
... }` blocks), what `iptables-restore-translate` prints (`add table` / `add chain ... { type
nat hook prerouting priority -100; policy accept; }` / `add rule ...` commands), and what
`nft list ruleset` prints (blocks with `counter packets N bytes M`, priority keywords, address
ranges as prefixes). Measured with nftables 1.0.6 and iptables 1.8.9 on Linux 6.18.

This module scans the text into tokens (the shapes nft's scanner tells apart) and reads its
structure: commands, table and chain blocks, base-chain specs (`type T hook H priority P`,
policy). It mirrors the kernel's per-chain checks in net/netfilter/nf_tables_api.c (chain
types and their hooks, the NAT chain priority floor, a chain jumping to itself, jumps to
chains that do not exist) and nft's priority keywords (only on their hook). One rule's
statements are read by `nft_rule.py`; at the end each table goes through the kernel's
table-wide checks (`checks.py`: NAT/reject placement, jump loops). `table inet` is read as
IPv4 (the model is IPv4 only).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from nat.hook_table import ChainNotModelled, build_hook_table
from nat.hooks import NFT_HOOK, NFT_PRIORITY_KEYWORD, Hook, Priority
from nat.rules.ast import (
    Chain,
    ChainKind,
    Goto,
    Jump,
    Policy,
    Rule,
    Ruleset,
    RuleSyntaxError,
    UnsupportedRule,
)
from nat.rules.checks import check_table
from nat.rules.cursor import Cursor, Token
from nat.rules.nft_rule import parse_rule

FAMILIES = frozenset({"ip", "inet"})
OTHER_FAMILIES = frozenset({"ip6", "arp", "bridge", "netdev"})
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


# ---------------------------------------------------------------------------------------------
# Tokens.


_SINGLE = "{};,()|&"


def _tokenize(text: str) -> list[Token]:
    toks: list[Token] = []
    i, lineno, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and text[i + 1:i + 2] == "\n":  # line continuation
            i += 2
            lineno += 1
        elif c == "\n":
            toks.append(Token("nl", "\n", lineno, i, i + 1))
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
            toks.append(Token("string", text[i + 1:j], lineno, i, j + 1))
            i = j + 1
        elif c in _SINGLE:
            toks.append(Token(c, c, lineno, i, i + 1))
            i += 1
        else:
            j = i
            while j < n and text[j] not in ' \t\r\n"#' + _SINGLE:
                j += 1
            toks.append(Token("word", text[i:j], lineno, i, j))
            i = j
    toks.append(Token("eof", "", lineno, n, n))
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


class _Parser(Cursor[Token]):
    def __init__(self, text: str) -> None:
        toks = _tokenize(text)
        super().__init__(toks, toks[-1])
        self.text = text
        self.lines = text.splitlines()
        self.tables: dict[str, _TableBuild] = {}
        # Jumps whose target must exist by the end of the file (block form).
        self.pending: list[tuple[_TableBuild, Rule]] = []

    # -- token helpers --------------------------------------------------------------------
    def line_of(self, tok: Token) -> str:
        return self.lines[tok.lineno - 1] if 0 < tok.lineno <= len(self.lines) else ""

    def syntax(self, tok: Token, message: str) -> RuleSyntaxError:
        return RuleSyntaxError(tok.lineno, message, self.line_of(tok))

    def unsupported(self, tok: Token, construct: str) -> UnsupportedRule:
        return UnsupportedRule(tok.lineno, construct, self.line_of(tok))

    def expect(self, kind: str, what: str) -> Token:
        tok = self.next()
        if tok.kind != kind:
            raise self.syntax(tok, f"expected {what}, found {tok.text or 'end of input'!r}")
        return tok

    def word(self, what: str) -> Token:
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
        ruleset = Ruleset(tuple(chains), "nft")
        try:        # a base chain the model cannot place on its hook is refused here too
            build_hook_table(ruleset)
        except ChainNotModelled as e:
            lineno = self.tables[e.chain.table].chains[e.chain.name].lineno
            raise ChainNotModelled(e.chain, e.reason, lineno, self.lines[lineno - 1]) from None
        return ruleset

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
    def family_and_name(self, after: Token) -> tuple[str, Token]:
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

    def table_ref(self, after: Token) -> _TableBuild:
        family, name = self.family_and_name(after)
        key = f"{family} {name.text}"
        if key not in self.tables:
            raise self.syntax(name, f"no table {key} (No such file or directory)")
        return self.tables[key]

    def chain_ref(self, table: _TableBuild, name: Token) -> _ChainBuild:
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
    def chain_decl(self, table: _TableBuild, name: Token, *, create: bool = False) -> _ChainBuild:
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

    def chain_type(self, chain: _ChainBuild, at: Token) -> None:
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
    def rule(self, table: _TableBuild, chain: _ChainBuild, first: Token, *,
             immediate: bool, whole: Token | None = None) -> Rule:
        """Statements up to the end of the command; `immediate`: jumps must resolve now.
        `whole`: the command's first word (`add rule ...`), so the source quotes all of it."""
        start, depth = self.pos, 0
        while self.peek().kind != "eof":
            kind = self.peek().kind
            if depth <= 0 and kind in ("nl", ";", "}"):
                break  # a `}` here closes the chain block; inside a set it closes the set
            depth += 1 if kind == "{" else -1 if kind == "}" else 0
            self.next()
        toks = [t for t in self.items[start:self.pos] if t.kind != "nl"]
        if not toks:
            raise self.syntax(first, "empty rule")
        source = self.text[(whole or toks[0]).start:toks[-1].end]
        line = self.line_of(first)
        match, target = parse_rule(toks, family=table.family, lineno=first.lineno, line=line)
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


