"""Read iptables-restore text (the subset the model supports) into the rules AST.

Mirrors what iptables 1.8.9 (`iptables-restore`, nf_tables and legacy backends) accepts and
refuses for that subset, and the kernel checks it triggers: the hook masks of the NAT targets
(net/netfilter/xt_nat.c, xt_MASQUERADE.c, xt_REDIRECT.c), REJECT's table and protocol checks
(net/ipv4/netfilter/ipt_REJECT.c), the tcp/udp/icmp matches' protocol requirement
(net/netfilter/xt_tcpudp.c), and the jump-loop check (mark_source_chains() in
net/ipv4/netfilter/ip_tables.c). Messages follow iptables' own where it has one.

Chains, as iptables-nft creates them: a built-in chain exists when it is declared (`:CHAIN`)
or used (`-A`), not otherwise (an empty `*nat` block registers no NAT hook). iptables-legacy
instantiates every built-in chain of a table it touches: pass `all_builtin_chains=True`.
A repeated `*table` block replaces the earlier one (iptables-restore flushes it).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError

from nat.hooks import IPTABLES_CHAIN_HOOK, Hook
from nat.rules.ast import (
    ICMP_TYPE_NUMBERS,
    PROTO_NUMBERS,
    SYN_ONLY,
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
from nat.rules.builtin_chains import BUILTIN_CHAINS
from nat.rules.checks import check_table

# Tables the model evaluates; raw and mangle may appear only without rules.
RULE_TABLES: frozenset[str] = frozenset({"nat", "filter"})
OTHER_TABLES: frozenset[str] = frozenset({"security"})

# Match modules (-m) the model reads, and others iptables knows but the model does not.
SUPPORTED_MODULES: frozenset[str] = frozenset(
    {"tcp", "udp", "icmp", "conntrack", "state", "multiport", "comment"})
KNOWN_MODULES: frozenset[str] = frozenset({
    "addrtype", "ah", "bpf", "cgroup", "cluster", "connbytes", "connlabel", "connlimit",
    "connmark", "cpu", "dccp", "devgroup", "dscp", "ecn", "esp", "hashlimit", "helper",
    "hl", "icmp6", "iprange", "ipvs", "length", "limit", "mac", "mark", "nfacct", "osf",
    "owner", "physdev", "pkttype", "policy", "quota", "rateest", "realm", "recent", "rpfilter",
    "sctp", "set", "socket", "statistic", "string", "tcpmss", "time", "tos", "ttl", "u32",
    "udplite",
})
# Targets iptables knows that the model does not evaluate.
KNOWN_TARGETS: frozenset[str] = frozenset({
    "AUDIT", "CHECKSUM", "CLASSIFY", "CLUSTERIP", "CONNMARK", "CONNSECMARK", "CT", "DSCP",
    "ECN", "HMARK", "IDLETIMER", "LED", "LOG", "MARK", "NETMAP", "NFLOG", "NFQUEUE",
    "NOTRACK", "QUEUE", "RATEEST", "SECMARK", "SET", "SYNPROXY", "TCPMSS", "TCPOPTSTRIP",
    "TEE", "TOS", "TPROXY", "TRACE", "TTL", "ULOG",
})
NAT_TARGET_NAMES = ("SNAT", "DNAT", "MASQUERADE", "REDIRECT")

# --reject-with names and aliases (libxt_REJECT) -> the canonical name.
REJECT_ALIASES: dict[str, str] = {
    "icmp-net-unreachable": "icmp-net-unreachable", "net-unreach": "icmp-net-unreachable",
    "icmp-host-unreachable": "icmp-host-unreachable", "host-unreach": "icmp-host-unreachable",
    "icmp-port-unreachable": "icmp-port-unreachable", "port-unreach": "icmp-port-unreachable",
    "icmp-proto-unreachable": "icmp-proto-unreachable",
    "proto-unreach": "icmp-proto-unreachable",
    "icmp-net-prohibited": "icmp-net-prohibited", "net-prohib": "icmp-net-prohibited",
    "icmp-host-prohibited": "icmp-host-prohibited", "host-prohib": "icmp-host-prohibited",
    "icmp-admin-prohibited": "icmp-admin-prohibited", "admin-prohib": "icmp-admin-prohibited",
    "tcp-reset": "tcp-reset", "tcp-rst": "tcp-reset",
}

# ICMP names that stand for a type and one code (libxt_icmp's table), beyond ICMP_TYPE_NUMBERS.
ICMP_CODE_NAMES: dict[str, tuple[int, int]] = {
    "network-unreachable": (3, 0), "host-unreachable": (3, 1),
    "protocol-unreachable": (3, 2), "port-unreachable": (3, 3),
    "fragmentation-needed": (3, 4), "source-route-failed": (3, 5),
    "network-unknown": (3, 6), "host-unknown": (3, 7), "network-prohibited": (3, 9),
    "host-prohibited": (3, 10), "TOS-network-unreachable": (3, 11),
    "TOS-host-unreachable": (3, 12), "communication-prohibited": (3, 13),
    "host-precedence-violation": (3, 14), "precedence-cutoff": (3, 15),
    "network-redirect": (5, 0), "host-redirect": (5, 1), "TOS-network-redirect": (5, 2),
    "TOS-host-redirect": (5, 3), "ttl-zero-during-transit": (11, 0),
    "ttl-zero-during-reassembly": (11, 1), "ip-header-bad": (12, 0),
    "required-option-missing": (12, 1),
}
ICMP_ALIASES: dict[str, int] = {"ping": 8, "pong": 0, "ttl-exceeded": 11}

# libxt_SNAT/DNAT/MASQUERADE/REDIRECT accept ports with these protocols (ICMP: the id), and do
# not look at `!` before -p (measured: `! -p tcp -j DNAT --to-destination a:5` loads).
PORT_PROTOS = frozenset({PROTO_NUMBERS[p] for p in ("tcp", "udp", "sctp", "dccp", "icmp")})
MULTIPORT_PROTOS = frozenset({PROTO_NUMBERS[p] for p in ("tcp", "udp", "udplite", "sctp",
                                                         "dccp")})
IFNAMSIZ = 16

# Long options, for getopt_long()-style prefix matching (iptables merges these tables).
GENERIC_LONG_OPTIONS: frozenset[str] = frozenset({
    "--protocol", "--source", "--src", "--destination", "--dst", "--in-interface",
    "--out-interface", "--jump", "--goto", "--match", "--fragment", "--set-counters",
    "--ipv4", "--ipv6"})
MODULE_OPTIONS: dict[str, frozenset[str]] = {
    "tcp": frozenset({"--source-port", "--sport", "--destination-port", "--dport", "--syn",
                      "--tcp-flags", "--tcp-option"}),
    "udp": frozenset({"--source-port", "--sport", "--destination-port", "--dport"}),
    "icmp": frozenset({"--icmp-type"}),
    "conntrack": frozenset({"--ctstate", "--ctproto", "--ctorigsrc", "--ctorigdst",
                            "--ctreplsrc", "--ctrepldst", "--ctorigsrcport", "--ctorigdstport",
                            "--ctreplsrcport", "--ctrepldstport", "--ctstatus", "--ctexpire",
                            "--ctdir"}),
    "state": frozenset({"--state"}),
    "multiport": frozenset({"--source-ports", "--sports", "--destination-ports", "--dports",
                            "--ports"}),
    "comment": frozenset({"--comment"}),
}
TARGET_OPTIONS: dict[str, frozenset[str]] = {
    "REJECT": frozenset({"--reject-with"}),
    "SNAT": frozenset({"--to-source", "--random", "--random-fully", "--persistent"}),
    "DNAT": frozenset({"--to-destination", "--random", "--persistent"}),
    "MASQUERADE": frozenset({"--to-ports", "--random", "--random-fully"}),
    "REDIRECT": frozenset({"--to-ports", "--random"}),
}


@dataclass
class _ChainBuild:
    name: str
    hook: Hook | None
    policy: Policy | None
    rules: list[Rule] = field(default_factory=list)


@dataclass
class _TableBuild:
    name: str
    lineno: int
    chains: dict[str, _ChainBuild] = field(default_factory=dict)

    def builtin(self, name: str) -> _ChainBuild:
        """The built-in chain `name`, created (policy ACCEPT) on first use."""
        if name not in self.chains:
            self.chains[name] = _ChainBuild(name, BUILTIN_CHAINS[self.name][name].hook, "ACCEPT")
        return self.chains[name]


def parse_iptables_restore(text: str, *, all_builtin_chains: bool = False) -> Ruleset:
    """Parse iptables-restore input. Raises RuleSyntaxError / UnsupportedRule (one line each)."""
    tables: dict[str, _TableBuild] = {}
    current: _TableBuild | None = None
    lines = text.splitlines()
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            if current is not None:
                raise RuleSyntaxError(lineno, f"COMMIT expected before table {line!r}", raw)
            current = _start_table(lineno, line[1:].strip(), raw)
            continue
        if current is None:
            raise RuleSyntaxError(lineno, "no table given (a `*table` line must come first)",
                                  raw)
        if line == "COMMIT":
            _check_table(current, all_builtin_chains)
            tables[current.name] = current
            current = None
        elif line.startswith(":"):
            _declare_chain(current, lineno, line, raw)
        else:
            _command(current, lineno, raw)
    if current is not None:
        raise RuleSyntaxError(len(lines) + 1, "COMMIT expected (iptables-restore)", "")
    chains: list[Chain] = []
    for table in tables.values():
        kind: ChainKind = "nat" if table.name == "nat" else "filter"
        if table.name not in RULE_TABLES:
            continue  # raw / mangle without rules: nothing to evaluate
        for cb in table.chains.values():
            prio = BUILTIN_CHAINS[table.name][cb.name].priority if cb.hook is not None else 0
            chains.append(Chain(table.name, cb.name, kind, cb.hook, prio, cb.policy,
                                tuple(cb.rules)))
    return Ruleset(tuple(chains), "iptables")


def _start_table(lineno: int, name: str, raw: str) -> _TableBuild:
    if name in OTHER_TABLES:
        raise UnsupportedRule(lineno, f"table {name!r}", raw)
    if name not in BUILTIN_CHAINS:
        raise RuleSyntaxError(lineno, f"table name {name!r} invalid", raw)
    return _TableBuild(name, lineno)


def _declare_chain(table: _TableBuild, lineno: int, line: str, raw: str) -> None:
    """`:NAME POLICY [packets:bytes]`; POLICY is `-` for a user chain."""
    words = line[1:].split()
    if len(words) not in (2, 3) or (len(words) == 3 and not _is_counters(words[2])):
        raise RuleSyntaxError(lineno, "bad chain line (expected `:CHAIN POLICY [p:b]`)", raw)
    name, policy = words[0], words[1]
    if name in BUILTIN_CHAINS[table.name]:
        if policy not in ("ACCEPT", "DROP"):
            raise RuleSyntaxError(lineno, f"bad policy {policy!r} for built-in chain {name}",
                                  raw)
        table.builtin(name).policy = "ACCEPT" if policy == "ACCEPT" else "DROP"
        return
    if name in IPTABLES_CHAIN_HOOK:
        raise RuleSyntaxError(lineno, f"table {table.name} has no built-in chain {name}", raw)
    if policy != "-":
        raise RuleSyntaxError(lineno, f"can't set policy {policy!r} on user chain {name!r}",
                              raw)
    if name in table.chains:
        raise RuleSyntaxError(lineno, f"chain {name!r} already exists", raw)
    _check_chain_name(lineno, name, raw)
    table.chains[name] = _ChainBuild(name, None, None)


def _is_counters(word: str) -> bool:
    if not (word.startswith("[") and word.endswith("]")):
        return False
    parts = word[1:-1].split(":")
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def _check_chain_name(lineno: int, name: str, raw: str) -> None:
    if name.startswith("-") or name.startswith("!") or len(name) > 28 or not name:
        raise RuleSyntaxError(lineno, f"invalid chain name {name!r}", raw)


def _command(table: _TableBuild, lineno: int, raw: str) -> None:
    """One command line: -A/-I (rules), -N (new chain), -P (policy)."""
    try:
        tokens = shlex.split(raw, comments=False, posix=True)
    except ValueError as exc:
        raise RuleSyntaxError(lineno, f"bad quoting ({exc})", raw) from None
    cmd, args = tokens[0], tokens[1:]
    if cmd in ("-N", "--new-chain", "--new"):
        if len(args) != 1:
            raise RuleSyntaxError(lineno, "-N takes exactly one chain name", raw)
        name = args[0]
        if name in table.chains or name in BUILTIN_CHAINS[table.name]:
            raise RuleSyntaxError(lineno, "Chain already exists", raw)
        _check_chain_name(lineno, name, raw)
        table.chains[name] = _ChainBuild(name, None, None)
        return
    if cmd in ("-P", "--policy"):
        if len(args) != 2:
            raise RuleSyntaxError(lineno, "-P takes a chain and a policy", raw)
        if args[0] not in BUILTIN_CHAINS[table.name]:
            raise RuleSyntaxError(lineno, f"bad built-in chain name {args[0]!r}", raw)
        if args[1] not in ("ACCEPT", "DROP"):
            raise RuleSyntaxError(lineno, f"bad policy {args[1]!r}", raw)
        table.builtin(args[0]).policy = "ACCEPT" if args[1] == "ACCEPT" else "DROP"
        return
    if cmd in ("-A", "--append", "-I", "--insert"):
        if not args:
            raise RuleSyntaxError(lineno, f"{cmd} needs a chain name", raw)
        chain_name, rest = args[0], args[1:]
        position: int | None = None
        if cmd in ("-I", "--insert"):
            position = 1
            if rest and rest[0].isdigit():
                position = int(rest[0])
                rest = rest[1:]
                if position < 1:
                    raise RuleSyntaxError(lineno, "invalid rule number", raw)
        chain = _find_chain(table, lineno, chain_name, raw)
        if table.name not in RULE_TABLES:
            raise UnsupportedRule(lineno, f"rules in table {table.name!r}", raw)
        rules = _RuleParser(table, chain, lineno, raw, rest).parse()
        if position is None:
            chain.rules.extend(rules)
        else:
            if position > len(chain.rules) + 1:
                raise RuleSyntaxError(lineno, "Index of insertion too big", raw)
            chain.rules[position - 1:position - 1] = rules
        return
    if cmd in ("-F", "-X", "-D", "-R", "-Z", "-E", "--flush", "--delete-chain", "--delete",
               "--replace", "--zero", "--rename-chain"):
        raise UnsupportedRule(lineno, f"command {cmd}", raw)
    if cmd in ("-t", "--table"):
        raise RuleSyntaxError(lineno, "the -t option cannot be used in iptables-restore", raw)
    raise RuleSyntaxError(lineno, f"unknown command {cmd!r}", raw)


def _find_chain(table: _TableBuild, lineno: int, name: str, raw: str) -> _ChainBuild:
    if name in BUILTIN_CHAINS[table.name]:
        return table.builtin(name)
    if name in table.chains:
        return table.chains[name]
    if name in IPTABLES_CHAIN_HOOK:
        raise RuleSyntaxError(lineno, f"table {table.name} has no built-in chain {name}", raw)
    raise RuleSyntaxError(lineno, f"Chain {name!r} does not exist", raw)


# ---------------------------------------------------------------------------------------------
# One rule's options.


@dataclass
class _Fields:
    """Match fields as they are collected (then frozen into `Match`)."""

    proto: int | None = None
    proto_neg: bool = False
    srcs: list[IPv4Network] = field(default_factory=list)
    src_neg: bool = False
    dsts: list[IPv4Network] = field(default_factory=list)
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


class _RuleParser:
    """Walks the words of one -A/-I line, as iptables' command parser does."""

    def __init__(self, table: _TableBuild, chain: _ChainBuild, lineno: int, raw: str,
                 words: list[str]) -> None:
        self.table = table
        self.chain = chain
        self.lineno = lineno
        self.raw = raw
        self.words = words
        self.pos = 0
        self.f = _Fields()
        self.modules: list[str] = []   # loaded matches, in order (explicit and implicit)
        self.seen: set[str] = set()    # options given (for "can only be used once")
        self.target_name: str | None = None
        self.goto = False
        self.topts: dict[str, str | bool] = {}

    # -- errors ---------------------------------------------------------------------------
    def syntax(self, message: str) -> RuleSyntaxError:
        return RuleSyntaxError(self.lineno, message, self.raw)

    def unsupported(self, construct: str) -> UnsupportedRule:
        return UnsupportedRule(self.lineno, construct, self.raw)

    # -- token stream ---------------------------------------------------------------------
    def value(self, option: str) -> str:
        if self.pos >= len(self.words):
            raise self.syntax(f"option {option!r} requires an argument")
        word = self.words[self.pos]
        self.pos += 1
        return word

    def once(self, key: str, shown: str) -> None:
        if key in self.seen:
            raise self.syntax(f"option {shown!r} can only be used once")
        self.seen.add(key)

    # -- main loop ------------------------------------------------------------------------
    def parse(self) -> list[Rule]:
        while self.pos < len(self.words):
            negate = False
            word = self.words[self.pos]
            self.pos += 1
            if word == "!":
                negate = True
                if self.pos >= len(self.words):
                    raise self.syntax("`!` at the end of the rule")
                word = self.words[self.pos]
                self.pos += 1
            if not word.startswith("-"):
                raise self.syntax(f"Bad argument {word!r}")
            if word.startswith("--") and "=" in word:  # getopt's --option=value
                word, value = word.split("=", 1)
                self.words.insert(self.pos, value)
            if word.startswith("--"):
                word = self.resolve_long(word)
            self.option(word, negate)
        return self.finish()

    def resolve_long(self, opt: str) -> str:
        """getopt_long() over the merged option table: an exact name, or an unambiguous
        prefix of one (`--to` for `--to-destination`, `--dp` for `--dport`)."""
        names = set(GENERIC_LONG_OPTIONS)
        for module in self.modules:
            names |= MODULE_OPTIONS[module]
        proto_module = {1: "icmp", 6: "tcp", 17: "udp"}.get(self.f.proto or -1)
        if proto_module and not self.f.proto_neg:
            names |= MODULE_OPTIONS[proto_module]
        if self.target_name is not None:
            names |= TARGET_OPTIONS.get(self.target_name, frozenset())
        if opt in names:
            return opt
        found = sorted(n for n in names if n.startswith(opt))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise self.syntax(f"option {opt!r} is ambiguous ({', '.join(found)})")
        return opt  # unknown here; option() decides what to say

    def option(self, opt: str, negate: bool) -> None:
        generic: dict[str, Callable[[str, bool], None]] = {
            "-p": self.opt_proto, "--protocol": self.opt_proto,
            "-s": self.opt_src, "--source": self.opt_src, "--src": self.opt_src,
            "-d": self.opt_dst, "--destination": self.opt_dst, "--dst": self.opt_dst,
            "-i": self.opt_in, "--in-interface": self.opt_in,
            "-o": self.opt_out, "--out-interface": self.opt_out,
            "-j": self.opt_jump, "--jump": self.opt_jump,
            "-g": self.opt_goto, "--goto": self.opt_goto,
            "-m": self.opt_module, "--match": self.opt_module,
        }
        if opt in generic:
            generic[opt](opt, negate)
            return
        if opt in ("-f", "--fragment"):
            raise self.unsupported("fragment match -f")
        if opt in ("-c", "--set-counters"):
            self.value(opt)
            self.value(opt)  # counters do not change what the rule does
            return
        if opt in ("-4", "--ipv4"):
            return
        if opt in ("-6", "--ipv6"):
            raise self.unsupported("IPv6-only rule (-6)")
        if self.target_name is not None and self.target_option(opt, negate):
            return
        for module in reversed(self.modules):
            if self.module_option(module, opt, negate):
                return
        # iptables loads the protocol's own match for an option nobody claimed.
        proto_module = {1: "icmp", 6: "tcp", 17: "udp"}.get(self.f.proto or -1)
        if proto_module and not self.f.proto_neg and proto_module not in self.modules:
            self.modules.append(proto_module)
            if self.module_option(proto_module, opt, negate):
                return
        raise self.syntax(f"unknown option {opt!r}")

    # -- generic options ------------------------------------------------------------------
    def opt_proto(self, opt: str, negate: bool) -> None:
        self.once("-p", "-p")
        word = self.value(opt).lower()
        if word == "all":
            proto = 0
        elif word.isdigit():
            proto = int(word)
            if proto > 255:
                raise self.syntax(f"unknown protocol {word!r} specified")
        elif word in PROTO_NUMBERS:
            proto = PROTO_NUMBERS[word]
        else:
            raise self.syntax(f"unknown protocol {word!r} specified")
        if proto == 0:
            if negate:
                raise self.syntax("rule would never match protocol (! -p all)")
            return
        self.f.proto, self.f.proto_neg = proto, negate

    def addresses(self, opt: str) -> list[IPv4Network]:
        nets = []
        for part in self.value(opt).split(","):
            try:
                net = IPv4Network(part, strict=False)
            except (AddressValueError, NetmaskValueError, ValueError):
                host = part.split("/")[0]
                if _xtables_numeric(host):
                    raise self.unsupported(f"address written as {host!r} (iptables reads "
                                           "short, octal and hex forms its own way)") from None
                if any(c.isalpha() for c in host):
                    raise self.unsupported(f"host name {part!r} (needs a DNS lookup)") from None
                raise self.syntax(f"host/network {part!r} not found") from None
            nets.append(net)
        return nets

    def opt_src(self, opt: str, negate: bool) -> None:
        self.once("-s", "-s")
        self.f.srcs, self.f.src_neg = self.addresses(opt), negate

    def opt_dst(self, opt: str, negate: bool) -> None:
        self.once("-d", "-d")
        self.f.dsts, self.f.dst_neg = self.addresses(opt), negate

    def iface(self, opt: str) -> str:
        name = self.value(opt)
        if len(name) >= IFNAMSIZ:
            raise self.syntax(f"interface name {name!r} must be shorter than IFNAMSIZ (15)")
        if not name or any(c in name for c in " /\t") or "+" in name[:-1]:
            raise self.syntax(f"invalid interface name {name!r}")
        return name

    def opt_in(self, opt: str, negate: bool) -> None:
        self.once("-i", "-i")
        if self.chain.hook in (Hook.POST_ROUTING, Hook.LOCAL_OUT):
            raise self.syntax(f"Can't use -i with {self.chain.name}")
        self.f.in_iface, self.f.in_iface_neg = self.iface(opt), negate

    def opt_out(self, opt: str, negate: bool) -> None:
        self.once("-o", "-o")
        if self.chain.hook in (Hook.PRE_ROUTING, Hook.LOCAL_IN):
            raise self.syntax(f"Can't use -o with {self.chain.name}")
        self.f.out_iface, self.f.out_iface_neg = self.iface(opt), negate

    def opt_jump(self, opt: str, negate: bool) -> None:
        if negate:
            raise self.syntax("cannot have ! before -j")
        if self.target_name is not None:
            raise self.syntax("multiple -j flags not allowed")
        self.target_name = self.value(opt)
        if self.target_name in KNOWN_TARGETS:  # before its options, which we cannot read
            raise self.unsupported(f"target -j {self.target_name}")

    def opt_goto(self, opt: str, negate: bool) -> None:
        self.opt_jump(opt, negate)
        self.goto = True

    def opt_module(self, opt: str, negate: bool) -> None:
        if negate:
            raise self.syntax("cannot have ! before -m")
        name = self.value(opt)
        if name in SUPPORTED_MODULES:
            if name not in self.modules:
                self.modules.append(name)
            return
        if name in KNOWN_MODULES:
            raise self.unsupported(f"match module -m {name}")
        raise self.syntax(f"Couldn't load match {name!r}")

    # -- match modules --------------------------------------------------------------------
    def module_option(self, module: str, opt: str, negate: bool) -> bool:
        """Handle `opt` if `module` owns it; False if it does not."""
        if module in ("tcp", "udp"):
            if opt in ("--sport", "--source-port"):
                self.once(f"{module}-sport", "--source-port")
                self.port_field("sport", PortMatch((self.port_range(opt),), negate))
                return True
            if opt in ("--dport", "--destination-port"):
                self.once(f"{module}-dport", "--destination-port")
                self.port_field("dport", PortMatch((self.port_range(opt),), negate))
                return True
            if module == "tcp" and opt == "--syn":
                self.once("tcp-flags", "--tcp-flags")
                self.f.tcp_flags = replace(SYN_ONLY, negate=negate)
                return True
            if module == "tcp" and opt == "--tcp-flags":
                self.once("tcp-flags", "--tcp-flags")
                mask, comp = self.tcp_flag_set(opt), self.tcp_flag_set(opt)
                self.f.tcp_flags = TcpFlagsMatch(mask, comp, negate)
                return True
            if module == "tcp" and opt == "--tcp-option":
                raise self.unsupported("--tcp-option")
            return False
        if module == "icmp" and opt == "--icmp-type":
            self.once("icmp-type", "--icmp-type")
            if negate:
                raise self.unsupported("negated --icmp-type")
            self.icmp_type(self.value(opt))
            return True
        if module in ("conntrack", "state") and opt == ("--ctstate" if module == "conntrack"
                                                        else "--state"):
            self.once("ctstate", opt)
            self.f.ctstate, self.f.ctstate_neg = self.ctstates(self.value(opt)), negate
            return True
        if module == "conntrack" and opt.startswith("--ct"):
            raise self.unsupported(f"conntrack match option {opt}")
        if module == "multiport":
            if opt in ("--sports", "--source-ports", "--dports", "--destination-ports"):
                which = "sport" if opt in ("--sports", "--source-ports") else "dport"
                self.once(f"multiport-{which}", opt)
                self.port_field(which, PortMatch(self.port_list(opt), negate))
                self.seen.add("multiport")
                return True
            if opt == "--ports":
                raise self.unsupported("multiport --ports (either direction)")
            return False
        if module == "comment" and opt == "--comment":
            if negate:
                raise self.syntax("cannot have ! before --comment")
            text = self.value(opt)
            if len(text) > 255:
                raise self.syntax("COMMENT must be shorter than 256 characters")
            return True  # a comment does not change what the rule does
        return False

    def port_field(self, which: str, pm: PortMatch) -> None:
        if getattr(self.f, which) is not None:
            raise self.unsupported(f"two {which} matches in one rule (tcp/udp and multiport)")
        setattr(self.f, which, pm)

    def port(self, word: str) -> int:
        if not word.isdigit() or int(word) > 65535:
            if any(c.isalpha() for c in word):
                raise self.unsupported(f"service name {word!r} (needs /etc/services)")
            raise self.syntax(f"invalid port/service {word!r} specified")
        return int(word)

    def port_range(self, opt: str, word: str | None = None) -> PortRange:
        """`p`, `a:b`, `:b` (from 0), `a:` (to 65535), as xtables_parse_port_range()."""
        word = self.value(opt) if word is None else word
        if ":" in word:
            lo_s, hi_s = word.split(":", 1)
            lo = self.port(lo_s) if lo_s else 0
            hi = self.port(hi_s) if hi_s else 65535
            if lo > hi:
                raise self.syntax("invalid portrange (min > max)")
            return PortRange(lo, hi)
        p = self.port(word)
        return PortRange(p, p)

    def port_list(self, opt: str) -> tuple[PortRange, ...]:
        ranges = tuple(self.port_range(opt, part) for part in self.value(opt).split(","))
        if sum(1 if r.lo == r.hi else 2 for r in ranges) > 15:
            raise self.syntax("too many ports specified")
        return ranges

    def tcp_flag_set(self, opt: str) -> int:
        names = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10,
                 "URG": 0x20, "ECE": 0x40, "CWR": 0x80, "ALL": 0x3F, "NONE": 0}
        value = 0
        for part in self.value(opt).split(","):
            if part.upper() not in names:
                raise self.syntax(f"unknown TCP flag {part!r}")
            value |= names[part.upper()]
        return value

    def icmp_type(self, word: str) -> None:
        if word == "any":
            return
        if word in ICMP_CODE_NAMES:
            self.f.icmp_type, self.f.icmp_code = ICMP_CODE_NAMES[word]
            return
        if word in ICMP_TYPE_NUMBERS or word in ICMP_ALIASES:
            self.f.icmp_type = ICMP_TYPE_NUMBERS.get(word, ICMP_ALIASES.get(word))
            return
        type_s, _, code_s = word.partition("/")
        if not type_s.isdigit() or int(type_s) > 255 or (
                code_s and (not code_s.isdigit() or int(code_s) > 255)):
            raise self.syntax(f"Invalid ICMP type {word!r}")
        self.f.icmp_type = int(type_s)
        self.f.icmp_code = int(code_s) if code_s else None

    def ctstates(self, word: str) -> frozenset[str]:
        states = set()
        for part in word.split(","):
            name = part.upper()
            if name in ("SNAT", "DNAT"):
                raise self.unsupported(f"ctstate {name}")
            if name not in ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"):
                raise self.syntax(f"Bad ctstate {part!r}")
            states.add(name)
        return frozenset(states)

    # -- target options -------------------------------------------------------------------
    def target_option(self, opt: str, negate: bool) -> bool:
        """Options of the -j target; False if the target does not own `opt`."""
        name = self.target_name
        if opt not in TARGET_OPTIONS.get(name or "", frozenset()):
            return False
        if negate:
            raise self.syntax(f"cannot have ! before {opt}")
        if opt in self.topts:
            raise self.syntax(f"{name}: option {opt!r} can only be used once")
        self.topts[opt] = self.value(opt) if opt in ("--reject-with", "--to-source",
                                                     "--to-destination", "--to-ports") else True
        return True

    def target(self) -> Target | None:
        name = self.target_name
        if name is None:
            return None
        simple: dict[str, Target] = {"ACCEPT": Accept(), "DROP": Drop(), "RETURN": Return()}
        if name in simple:
            if self.goto:
                raise self.syntax(f"goto {name} is not a chain")
            if name == "DROP" and self.table.name == "nat":
                raise self.syntax('The "nat" table is not intended for filtering, '
                                  "the use of DROP is therefore inhibited")
            return simple[name]
        if name == "REJECT":
            return self.reject()
        if name in NAT_TARGET_NAMES:
            return self.nat_target(name)
        if name in KNOWN_TARGETS:
            raise self.unsupported(f"target -j {name}")
        if name in IPTABLES_CHAIN_HOOK:
            raise self.syntax(f"cannot jump to built-in chain {name}")
        if name not in self.table.chains:
            raise self.syntax(f"Chain {name!r} does not exist")
        return Goto(name) if self.goto else Jump(name)

    def reject(self) -> Reject:
        if self.table.name != "filter":
            raise self.syntax(f"REJECT is only valid in the filter table, not {self.table.name}")
        with_ = str(self.topts.get("--reject-with", "icmp-port-unreachable"))
        if with_ not in REJECT_ALIASES:
            raise self.syntax(f"unknown reject type {with_!r}")
        canonical = REJECT_ALIASES[with_]
        if canonical == "tcp-reset" and (self.f.proto != 6 or self.f.proto_neg):
            raise self.syntax("REJECT --reject-with tcp-reset needs -p tcp "
                              "(the kernel says: Invalid argument)")
        return Reject(canonical)

    def nat_target(self, name: str) -> Target:
        if self.table.name != "nat":
            raise self.syntax(f"{name} is only valid in the nat table, not {self.table.name}")
        flags = NatFlag.NONE
        if self.topts.get("--random"):
            flags |= NatFlag.PROTO_RANDOM
        if self.topts.get("--random-fully"):
            flags |= NatFlag.PROTO_RANDOM_FULLY
        if self.topts.get("--persistent"):
            flags |= NatFlag.PERSISTENT
        if name in ("SNAT", "DNAT"):
            opt = "--to-source" if name == "SNAT" else "--to-destination"
            if opt not in self.topts:
                raise self.syntax(f'{name}: option "{opt}" must be specified')
            rng = self.nat_spec(str(self.topts[opt]), allow_offset=name == "DNAT")
            rng = replace(rng, flags=rng.flags | flags)
            return Snat(rng) if name == "SNAT" else Dnat(rng)
        rng = NatRange(flags)
        if "--to-ports" in self.topts:
            lo, hi = self.nat_ports(str(self.topts["--to-ports"]))
            rng = NatRange(flags | NatFlag.PROTO_SPECIFIED, min_proto=lo, max_proto=hi)
        return Masquerade(rng) if name == "MASQUERADE" else Redirect(rng)

    def nat_ports(self, word: str) -> tuple[int, int]:
        if self.f.proto not in PORT_PROTOS:
            raise self.syntax("Need TCP, UDP, SCTP or DCCP with port specification")
        lo_s, _, hi_s = word.partition("-")
        for p in (lo_s, hi_s or lo_s):
            if not p.isdigit() or not 0 < int(p) <= 65535:
                raise self.syntax(f"Port {p!r} not valid")
        lo, hi = int(lo_s), int(hi_s or lo_s)
        if hi < lo:
            raise self.syntax(f"Port range {word!r} funky")
        return lo, hi

    def nat_spec(self, word: str, *, allow_offset: bool) -> NatRange:
        """`a[-b][:p[-q][/base]]` (libxt_SNAT/libxt_DNAT)."""
        addr_s, colon, port_s = word.partition(":")
        flags = NatFlag.NONE
        lo_a = hi_a = None
        if addr_s:
            first, _, last = addr_s.partition("-")
            try:
                lo_a = IPv4Address(first)
                hi_a = IPv4Address(last) if last else lo_a
            except AddressValueError:
                raise self.syntax(f"Bad IP address {addr_s!r}") from None
            if hi_a < lo_a:
                raise self.unsupported(f"address range {addr_s} with min > max")
            flags |= NatFlag.MAP_IPS
        lo_p = hi_p = base = 0
        if colon:
            ports, slash, base_s = port_s.partition("/")
            if slash and not allow_offset:
                raise self.syntax(f"Bad port range {port_s!r}")
            lo_p, hi_p = self.nat_ports(ports)
            flags |= NatFlag.PROTO_SPECIFIED
            if slash:
                if not base_s.isdigit() or not 0 < int(base_s) <= 65535:
                    raise self.syntax(f"Port {base_s!r} not valid")
                base = int(base_s)
                flags |= NatFlag.PROTO_OFFSET
        if not flags:
            raise self.syntax(f"Bad IP address {word!r}")
        return NatRange(flags, lo_a, hi_a, lo_p, hi_p, base)

    # -- the end of the line --------------------------------------------------------------
    def finish(self) -> list[Rule]:
        f = self.f
        for module, proto in (("tcp", 6), ("udp", 17), ("icmp", 1)):
            if module in self.modules and (f.proto != proto or f.proto_neg):
                raise self.syntax(f"{module.upper()} match requires '-p {module}'")
        if "multiport" in self.seen and (f.proto not in MULTIPORT_PROTOS or f.proto_neg):
            raise self.syntax("multiport needs `-p tcp', `-p udp', `-p udplite', "
                              "`-p sctp' or `-p dccp'")
        target = self.target()
        rules = []
        srcs: list[IPv4Network | None] = list(f.srcs) or [None]
        dsts: list[IPv4Network | None] = list(f.dsts) or [None]
        source = self.raw.strip()
        for src in srcs:  # iptables expands comma lists into one rule per address pair
            for dst in dsts:
                match = Match(
                    proto=f.proto, proto_neg=f.proto_neg,
                    src=_any_is_none(src, f.src_neg), src_neg=f.src_neg,
                    dst=_any_is_none(dst, f.dst_neg), dst_neg=f.dst_neg,
                    sport=f.sport, dport=f.dport,
                    in_iface=f.in_iface, in_iface_neg=f.in_iface_neg,
                    out_iface=f.out_iface, out_iface_neg=f.out_iface_neg,
                    ctstate=f.ctstate, ctstate_neg=f.ctstate_neg,
                    icmp_type=f.icmp_type, icmp_code=f.icmp_code, tcp_flags=f.tcp_flags)
                rules.append(Rule(match, target, source, self.lineno))
        return rules


def _xtables_numeric(text: str) -> bool:
    """Would xtables_numeric_to_ipaddr() take it: 1 to 4 dotted parts, each a C number
    (decimal, 0-octal or 0x-hex) up to 255? (It pads missing parts with zeros.)"""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return False
    for part in parts:
        try:
            value = int(part, 16) if part.lower().startswith("0x") else (
                int(part, 8) if part.startswith("0") and len(part) > 1 else int(part, 10))
        except ValueError:
            return False
        if not 0 <= value <= 255:
            return False
    return True


def _any_is_none(net: IPv4Network | None, negate: bool) -> IPv4Network | None:
    """`-s 0.0.0.0/0` tests nothing (iptables-save drops it); `! -s 0/0` is kept."""
    if net is not None and net.prefixlen == 0 and not negate:
        return None
    return net


def _check_table(table: _TableBuild, all_builtin_chains: bool) -> None:
    """At COMMIT: fill in built-in chains (legacy), then the kernel's table-wide checks."""
    if all_builtin_chains:
        for name in BUILTIN_CHAINS[table.name]:
            table.builtin(name)
    if table.name not in RULE_TABLES:
        return
    kind: ChainKind = "nat" if table.name == "nat" else "filter"
    chains = [Chain(table.name, c.name, kind, c.hook, 0, c.policy, tuple(c.rules))
              for c in table.chains.values()]
    check_table(chains, "iptables")
