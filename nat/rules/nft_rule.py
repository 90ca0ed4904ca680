"""One nft rule: its statements read into a `Match` and at most one verdict or NAT statement.

Mirrors how nft 1.0.6 reads the statements of a rule in the model's subset: payload and meta
matches (`ip saddr`, `tcp dport`, `meta l4proto`, `iifname`, `ct state`, `icmp type`, `tcp
flags`), with the protocol dependency nft adds itself in front of a transport field; then a
terminal statement (accept/drop/return/continue/jump/goto, reject, snat/dnat, masquerade,
redirect), after which nft refuses another statement. Its refusals follow nft's own: a port
mapping without a transport protocol match, an inet address without `ip`, priority keywords
elsewhere. Which base chains may hold a NAT or reject statement is checked over the whole
table in `checks.py` (nft_nat.c, nft_masq.c, nft_redir.c, nft_reject.c validate()).
"""

from __future__ import annotations

import re
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from nat.rules.ast import (
    CTSTATES,
    PROTO_NUMBERS,
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
    Return,
    Snat,
    Target,
    TcpFlagsMatch,
)
from nat.rules.common import (
    ICMP_TYPE_NUMBERS,
    IFNAMSIZ,
    PortProblem,
    PortSpelling,
    nat_range,
    parse_address_range,
    parse_port_range,
    protocol_number,
    read_network,
)
from nat.rules.common import TCP_FLAG_BITS as XT_TCP_FLAG_BITS
from nat.rules.ct_match import (
    CT_STATUS_BITS,
    CtAddrTest,
    CtDirectionTest,
    CtPortTest,
    CtStatusTest,
    CtTest,
    End,
    Side,
)
from nat.rules.cursor import RuleCursor, Token

# `tcp flags` names: xtables' ece is nft's ecn.
TCP_FLAG_BITS: dict[str, int] = {("ecn" if k == "ece" else k): v
                                 for k, v in XT_TCP_FLAG_BITS.items()}
# `tcp dport 80`, `tcp dport 1-1023`: the scanner takes the word's shape first.
MATCH_PORTS = PortSpelling("-", open_ends=False, empty_hi_is_lo=False, lowest=0,
                           shape_first=True, messages={
    PortProblem.SERVICE: (True, "service name {text!r} (needs /etc/services)"),
    PortProblem.NOT_A_NUMBER: (False, "bad port {text!r}"),
    PortProblem.OUT_OF_RANGE: (False, "bad port range {text!r}"),
    PortProblem.MIN_ABOVE_MAX: (False, "bad port range {text!r}"),
})
# `dnat to a:80-90`, `redirect to :8080`: `a-` is `a`.
NAT_PORTS = PortSpelling("-", open_ends=False, empty_hi_is_lo=True, lowest=0,
                         shape_first=True, messages={
    PortProblem.SERVICE: (True, "service name {text!r}"),
    PortProblem.NOT_A_NUMBER: (False, "bad port range {text!r}"),
    PortProblem.OUT_OF_RANGE: (False, "bad port range {text!r}"),
    PortProblem.MIN_ABOVE_MAX: (False, "bad port range {text!r}"),
})
# NAT statement flags (nft's spellings, as NatRange prints them).
NAT_FLAG_WORDS: dict[str, NatFlag] = {"random": NatFlag.PROTO_RANDOM,
                                      "fully-random": NatFlag.PROTO_RANDOM_FULLY,
                                      "persistent": NatFlag.PERSISTENT}
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


# What may follow `log`, and nft's level names (nft_log.c, nft's parser).
LOG_KEYS = frozenset({"prefix", "level", "flags", "group", "snaplen", "queue-threshold"})
NFT_LOG_LEVELS = frozenset({"emerg", "alert", "crit", "err", "warn", "notice", "info", "debug",
                            "audit"})
LOG_FLAG_WORDS = frozenset({"tcp", "ip", "sequence", "options", "sequence,options", "skuid",
                            "ether", "all"})

# nft's ordering operators, in both spellings, as the symbol.
ORDER_WORDS: dict[str, str] = {"<": "<", "lt": "<", "<=": "<=", "le": "<=",
                               ">": ">", "gt": ">", ">=": ">=", "ge": ">="}


def ordered_ports(op: str, port: int) -> PortMatch:
    """`dport < 1024` and friends as a PortMatch; an empty set (`< 0`) matches nothing."""
    lo, hi = {"<": (0, port - 1), "<=": (0, port), ">": (port + 1, 65535),
              ">=": (port, 65535)}[op]
    if lo > hi:
        return PortMatch((PortRange(0, 65535),), True)
    return PortMatch((PortRange(lo, hi),), False)


def ordered_addresses(op: str, addr: IPv4Address) -> tuple[IPv4Address, IPv4Address]:
    """`ip saddr < A` and friends as an inclusive range; lo > hi when it is empty."""
    a = int(addr)
    lo, hi = {"<": (0, a - 1), "<=": (0, a), ">": (a + 1, 2**32 - 1),
              ">=": (a, 2**32 - 1)}[op]
    if lo > hi:
        return IPv4Address(1), IPv4Address(0)
    return IPv4Address(lo), IPv4Address(hi)


def parse_rule(toks: list[Token], *, family: str, lineno: int,
               line: str) -> tuple[Match, Target | None]:
    """The match and the verdict (None: none, or `continue`) of one rule's tokens, in a
    table of `family`; `lineno` and `line` are where the rule starts, for messages."""
    return _RuleParser(toks, family, lineno, line).parse()


class _RuleParser(RuleCursor[Token]):
    """The statements of one rule: matches, then at most one terminal statement."""

    def __init__(self, toks: list[Token], family: str, lineno: int, line: str) -> None:
        super().__init__(toks, Token("eof", "", lineno, 0, 0), lineno, line)
        self.family = family
        self.match = Match()     # filled in statement by statement (frozen: replaced)
        self.target: Target | None = None
        self.terminal: Token | None = None
        self.set_fields: set[str] = set()

    def set(self, **fields: Any) -> None:
        """Record match fields (the Match is frozen: each statement makes a new one)."""
        self.match = replace(self.match, **fields)

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

    def statement(self, tok: Token) -> None:
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
            if key == "state":
                self.ct_state()
            elif key == "status":
                self.ct_status()
            elif key == "direction":
                self.ct_direction()
            elif key in ("original", "reply"):
                self.ct_tuple(key)
            else:
                raise self.unsupported(f"ct {key}")
            return
        if w in ("accept", "drop", "return", "continue", "jump", "goto"):
            self.verdict(tok)
            return
        if w == "reject":
            self.reject(tok)
            return
        if w == "log":
            self.log()
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
        """An optional relational operator; True for negation (`!=`, `!`, `ne`). An ordering
        (`<`, `le`, ...) is refused here: only ports and addresses take one (`order()`)."""
        t = self.peek().text
        if t in ("==", "eq"):
            self.next()
            return False
        if t in ("!=", "ne", "!"):
            self.next()
            return True
        if t in ORDER_WORDS:
            raise self.unsupported(f"comparison {t!r} here")
        return False

    def order(self) -> str | None:
        """An optional ordering operator (`<`, `lt`, `<=`, `le`, `>`, `gt`, `>=`, `ge`), as
        `<`, `<=`, `>` or `>=`; None (nothing consumed) when the next word is not one."""
        op = ORDER_WORDS.get(self.peek().text)
        if op is not None:
            self.next()
        return op

    def no_set(self, what: str) -> None:
        if self.peek().kind == "{":
            raise self.unsupported(f"anonymous set for {what}")
        if self.peek().text.startswith(("@", "$")):
            raise self.unsupported(f"named set or variable {self.peek().text!r} for {what}")

    def address(self, field_: str) -> None:
        self.once(f"ip {field_}")
        order = self.order()
        neg = False if order is not None else self.op()
        self.no_set(f"ip {field_}")
        text = self.word("an address")
        rng: tuple[IPv4Address, IPv4Address] | None = None
        if order is not None:
            rng = ordered_addresses(order, self.one_address(text))
        elif "-" in text:
            lo_s, _, hi_s = text.partition("-")
            lo, hi = self.one_address(lo_s), self.one_address(hi_s)
            if lo > hi:   # nft: "Range has zero or negative size"
                raise self.syntax(f"range {text!r} has zero or negative size")
            rng = (lo, hi)
        if rng is not None:
            if field_ == "saddr":
                self.set(src_range=rng, src_neg=neg)
            else:
                self.set(dst_range=rng, dst_neg=neg)
            return
        net = read_network(text)
        if net is None:
            raise self.syntax(f"bad address {text!r}")
        if field_ == "saddr":
            self.set(src=net, src_neg=neg)
        else:
            self.set(dst=net, dst_neg=neg)

    def one_address(self, text: str) -> IPv4Address:
        try:
            return IPv4Address(text)
        except ValueError:
            raise self.syntax(f"bad address {text!r}") from None

    def protocol(self, what: str) -> None:
        neg = self.op()
        self.no_set(what)
        name = self.word("a protocol")
        number = protocol_number(name)
        if number is None:
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
        if self.family != "inet":
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
        if len(name) >= IFNAMSIZ:
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

    def one_port(self, text: str) -> int:
        """A single port after an ordering operator (nft refuses a range or set there)."""
        if not text.isdigit() or int(text) > 65535:
            raise self.syntax(f"expected one port (0-65535) after a comparison, found {text!r}")
        return int(text)

    def port_range(self, text: str) -> PortRange:
        return parse_port_range(text, MATCH_PORTS, self)

    def l4(self, proto: str) -> None:
        fld = self.word(f"a {proto} field")
        if fld in ("sport", "dport"):
            self.set_proto(PROTO_NUMBERS[proto], False)
            self.once(fld)
            order = self.order()
            if order is not None:
                pm = ordered_ports(order, self.one_port(self.word("a port")))
            else:
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

    def names(self, what: str) -> list[str]:
        """`a`, `a,b` or `{ a, b }`."""
        names: list[str] = []
        if self.peek().kind == "{":
            self.next()
            while True:
                names.append(self.word(what))
                sep = self.next()
                if sep.kind == "}":
                    return names
                if sep.kind != ",":
                    raise self.syntax(f"expected `,` or `}}` in a set, found {sep.text!r}")
        names.append(self.word(what))
        while self.peek().kind == ",":
            self.next()
            names.append(self.word(what))
        return names

    def add_ct_test(self, test: CtTest) -> None:
        self.set(ct_tests=(*self.match.ct_tests, test))

    def ct_status(self) -> None:
        """`ct status dnat`, `ct status != snat`, `ct status assured,seen-reply`: any of the
        bits (nft_ct.c reads ct->status; nft compiles a flag list to `& mask != 0`)."""
        self.once("ct status")
        neg = self.op()
        mask = 0
        for name in self.names("a ct status"):
            if name not in CT_STATUS_BITS:
                raise self.unsupported(f"ct status {name}")
            mask |= CT_STATUS_BITS[name]
        self.add_ct_test(CtStatusTest(mask, neg))

    def ct_direction(self) -> None:
        self.once("ct direction")
        neg = self.op()
        word = self.word("original or reply")
        if word not in ("original", "reply"):
            raise self.syntax(f"unknown ct direction {word!r}")
        self.add_ct_test(CtDirectionTest(word == "reply", neg))

    def ct_tuple(self, side: str) -> None:
        """`ct original|reply [ip] saddr|daddr A` and `ct original|reply proto-src|proto-dst
        P`: one field of one of the entry's tuples."""
        key = self.word("a ct tuple field")
        if key == "ip":
            key = self.word("saddr or daddr")
        if key not in ("saddr", "daddr", "proto-src", "proto-dst"):
            raise self.unsupported(f"ct {side} {key}")
        self.once(f"ct {side} {key}")
        neg = self.op()
        self.no_set(f"ct {side} {key}")
        text = self.word("a value")
        sd: Side = "original" if side == "original" else "reply"
        end: End = "src" if key in ("saddr", "proto-src") else "dst"
        if key.startswith("proto-"):
            rng = self.port_range(text)
            self.add_ct_test(CtPortTest(sd, end, rng.lo, rng.hi, neg))
            return
        net = read_network(text)
        if net is None:
            raise self.syntax(f"bad address {text!r}")
        self.add_ct_test(CtAddrTest(sd, end, net, neg))

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
    def finish(self, tok: Token, target: Target | None) -> None:
        self.terminal = tok
        self.target = target

    def verdict(self, tok: Token) -> None:
        simple: dict[str, Target | None] = {"accept": Accept(), "drop": Drop(),
                                            "return": Return(), "continue": None}
        if tok.text in simple:
            self.finish(tok, simple[tok.text])
            return
        name = self.word("a chain name")
        self.finish(tok, Jump(name) if tok.text == "jump" else Goto(name))

    def log(self) -> None:
        """`log [prefix "p"] [level l] [flags ...]` (nft_log.c): not terminal; the model
        only notes it in the journey. `group` (nflog to user space) is refused."""
        if self.match.log:
            raise self.unsupported("two log statements in one rule")
        while self.peek().text in LOG_KEYS:
            key = self.next().text
            if key in ("group", "snaplen", "queue-threshold"):
                raise self.unsupported(f"log {key} (logging to user space through nflog)")
            if key == "prefix":
                tok = self.next()
                if tok.kind not in ("string", "word"):
                    raise self.syntax("expected a prefix after `log prefix`")
                if len(tok.text) > 127:
                    raise self.syntax("log prefix is longer than 127 characters")
            elif key == "level":
                level = self.word("a log level")
                if level not in NFT_LOG_LEVELS:
                    raise self.syntax(f"unknown log level {level!r}")
            else:  # flags
                self.word("log flags")
                while self.peek().text in LOG_FLAG_WORDS or self.peek().kind == ",":
                    self.next()
        self.set(log=True)

    def reject(self, tok: Token) -> None:
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
        flags = NatFlag.NONE
        while self.peek().text in NAT_FLAG_WORDS or (self.peek().kind == "," and flags):
            tok = self.next()
            if tok.kind == ",":
                continue
            flags |= NAT_FLAG_WORDS[tok.text]
        return flags

    def need_l4(self) -> None:
        if self.match.proto is None or self.match.proto_neg:
            raise self.syntax("transport protocol mapping is only valid after transport "
                              "protocol match")

    def nat_ports(self, text: str) -> PortRange:
        ports = parse_port_range(text, NAT_PORTS, self)
        self.need_l4()
        return ports

    def nat(self, tok: Token) -> None:
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
        addresses = ports = None
        if addr_s:
            if self.family == "inet" and not has_ip:
                raise self.syntax("ip or ip6 must be specified with address for inet tables")
            # `nft list` prints aligned address ranges as prefixes.
            addresses = parse_address_range(addr_s, self, bad=f"bad address {addr_s!r}",
                                            prefixes=True)
        if colon:
            ports = self.nat_ports(port_s)
        if addresses is None and ports is None:
            raise self.syntax(f"bad {tok.text} address {spec!r}")
        rng = nat_range(addresses, ports, flags=self.flags())
        self.finish(tok, Snat(rng) if tok.text == "snat" else Dnat(rng))

    def masq_redirect(self, tok: Token) -> None:
        """`masquerade [to :P[-Q]] [flags]`, `redirect [to [:]P[-Q]] [flags]`."""
        rng = NatRange()
        if self.peek().text == "to":
            self.next()
            spec = self.word("ports")
            if spec.startswith(":"):
                spec = spec[1:]
            elif tok.text == "masquerade":
                raise self.syntax("masquerade takes only ports: `to :PORT[-PORT]`")
            rng = nat_range(None, self.nat_ports(spec))
        rng = replace(rng, flags=rng.flags | self.flags())
        self.finish(tok, Masquerade(rng) if tok.text == "masquerade" else Redirect(rng))

