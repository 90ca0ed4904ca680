"""One iptables rule: the options of an `-A`/`-I` line read into a `Rule` (or several).

Mirrors how iptables 1.8.9 reads a rule's words: getopt_long() over the generic options, the
options of each loaded match (`-m`, and the protocol's own match loaded implicitly for an
option nobody claimed) and of the `-j` target, with unambiguous prefixes of long options;
libxt_tcp/udp/icmp/conntrack/state/multiport/comment and libxt_REJECT/SNAT/DNAT/MASQUERADE/
REDIRECT for what each option accepts and how it words a refusal. The per-rule kernel
checks live here too: the tcp/udp/icmp matches' protocol requirement (xt_tcpudp.c), REJECT's
table and tcp-reset protocol checks (ipt_REJECT.c), the NAT targets' nat-table requirement.
The checks over the whole table are in `checks.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network

from nat.hooks import IPTABLES_CHAIN_HOOK, Hook
from nat.rules.ast import (
    CT_NAT_STATES,
    CTSTATES,
    SYN_ONLY,
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
    Rule,
    Snat,
    Target,
    TcpFlagsMatch,
)
from nat.rules.common import (
    ICMP_TYPE_NUMBERS,
    IFNAMSIZ,
    nat_range,
    parse_address_range,
    parse_port_range,
    protocol_number,
    read_network,
)
from nat.rules.ct_match import (
    XT_CTSTATUS,
    CtAddrTest,
    CtDirectionTest,
    CtPortTest,
    CtProtoTest,
    CtStatusTest,
    CtTest,
    End,
    Side,
)
from nat.rules.cursor import RuleCursor
from nat.rules.xtables_names import (
    GENERIC_LONG_OPTIONS,
    ICMP_ALIASES,
    ICMP_CODE_NAMES,
    KNOWN_MODULES,
    KNOWN_TARGETS,
    LOG_LEVELS,
    MATCH_PORTS,
    MODULE_OPTIONS,
    MULTIPORT_PROTOS,
    NAT_FLAG_OPTIONS,
    NAT_PORTS,
    NAT_TARGET_NAMES,
    PORT_PROTOS,
    REJECT_ALIASES,
    SUPPORTED_MODULES,
    TARGET_OPTIONS,
    TCP_FLAG_NAMES,
)


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
    log: bool = False
    ct_tests: list[CtTest] = field(default_factory=list)
    ct_state_in_conntrack: bool = False


def parse_rule(words: list[str], *, table: str, chains: Collection[str], chain: str,
               hook: Hook | None, lineno: int, raw: str) -> list[Rule]:
    """The rules one `-A`/`-I` line adds to `chain` (a base chain on `hook`, or a user chain
    with hook None) of `table`, whose chains are `chains`: one per source/destination pair
    of a comma list. `words` are the line's words after the chain name (and position)."""
    return _RuleParser(words, table, chains, chain, hook, lineno, raw).parse()


class _RuleParser(RuleCursor[str]):
    """Walks the words of one -A/-I line, as iptables' command parser does."""

    def __init__(self, words: list[str], table: str, chains: Collection[str], chain: str,
                 hook: Hook | None, lineno: int, raw: str) -> None:
        super().__init__(words, "", lineno, raw)
        self.table = table
        self.chains = chains
        self.chain = chain
        self.hook = hook
        self.f = _Fields()
        self.modules: list[str] = []   # loaded matches, in order (explicit and implicit)
        self.seen: set[str] = set()    # options given (for "can only be used once")
        self.target_name: str | None = None
        self.goto = False
        self.topts: dict[str, str | bool] = {}

    # -- token stream ---------------------------------------------------------------------
    def value(self, option: str) -> str:
        if self.at_end():
            raise self.syntax(f"option {option!r} requires an argument")
        return self.next()

    def once(self, key: str, shown: str) -> None:
        if key in self.seen:
            raise self.syntax(f"option {shown!r} can only be used once")
        self.seen.add(key)

    # -- main loop ------------------------------------------------------------------------
    def parse(self) -> list[Rule]:
        while not self.at_end():
            negate = False
            word = self.next()
            if word == "!":
                negate = True
                if self.at_end():
                    raise self.syntax("`!` at the end of the rule")
                word = self.next()
            if not word.startswith("-"):
                raise self.syntax(f"Bad argument {word!r}")
            if word.startswith("--") and "=" in word:  # getopt's --option=value
                word, value = word.split("=", 1)
                self.push(value)
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
        number = 0 if word == "all" else protocol_number(word)
        if number is None:
            raise self.syntax(f"unknown protocol {word!r} specified")
        proto = number
        if proto == 0:
            if negate:
                raise self.syntax("rule would never match protocol (! -p all)")
            return
        self.f.proto, self.f.proto_neg = proto, negate

    def addresses(self, opt: str) -> list[IPv4Network]:
        return self.networks(self.value(opt))

    def networks(self, word: str) -> list[IPv4Network]:
        nets = []
        for part in word.split(","):
            net = read_network(part)
            if net is None:
                host = part.split("/")[0]
                if _xtables_numeric(host):
                    raise self.unsupported(f"address written as {host!r} (iptables reads "
                                           "short, octal and hex forms its own way)")
                if any(c.isalpha() for c in host):
                    raise self.unsupported(f"host name {part!r} (needs a DNS lookup)")
                raise self.syntax(f"host/network {part!r} not found")
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
        if self.hook in (Hook.POST_ROUTING, Hook.LOCAL_OUT):
            raise self.syntax(f"Can't use -i with {self.chain}")
        self.f.in_iface, self.f.in_iface_neg = self.iface(opt), negate

    def opt_out(self, opt: str, negate: bool) -> None:
        self.once("-o", "-o")
        if self.hook in (Hook.PRE_ROUTING, Hook.LOCAL_IN):
            raise self.syntax(f"Can't use -o with {self.chain}")
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
            self.f.ctstate = self.ctstates(self.value(opt), nat_states=module == "conntrack")
            self.f.ctstate_neg = negate
            self.f.ct_state_in_conntrack = module == "conntrack"
            return True
        if module == "conntrack" and opt.startswith("--ct"):
            self.once(opt, opt)
            self.f.ct_tests.append(self.ct_test(opt, negate))
            return True
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

    def port_range(self, opt: str, word: str | None = None) -> PortRange:
        return parse_port_range(self.value(opt) if word is None else word, MATCH_PORTS, self)

    def port_list(self, opt: str) -> tuple[PortRange, ...]:
        ranges = tuple(self.port_range(opt, part) for part in self.value(opt).split(","))
        if sum(1 if r.lo == r.hi else 2 for r in ranges) > 15:
            raise self.syntax("too many ports specified")
        return ranges

    def tcp_flag_set(self, opt: str) -> int:
        value = 0
        for part in self.value(opt).split(","):
            if part.upper() not in TCP_FLAG_NAMES:
                raise self.syntax(f"unknown TCP flag {part!r}")
            value |= TCP_FLAG_NAMES[part.upper()]
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

    def ctstates(self, word: str, *, nat_states: bool) -> frozenset[str]:
        states = set()
        for part in word.split(","):
            name = part.upper()
            if name not in CTSTATES and not (nat_states and name in CT_NAT_STATES):
                raise self.syntax(f"Bad ctstate {part!r}")
            states.add(name)
        return frozenset(states)

    def ct_test(self, opt: str, negate: bool) -> CtTest:
        """One of xt_conntrack's other options, as libxt_conntrack reads it."""
        word = self.value(opt)
        if opt == "--ctexpire":
            raise self.unsupported("conntrack match option --ctexpire (it depends on the "
                                   "moment the packet passes)")
        if opt == "--ctstatus":
            mask = 0
            for part in word.split(","):
                if part.upper() not in XT_CTSTATUS:
                    raise self.syntax(f"Bad ctstatus {part!r}")
                mask |= XT_CTSTATUS[part.upper()]
            return CtStatusTest(mask, negate)
        if opt == "--ctdir":
            if word.upper() not in ("ORIGINAL", "REPLY"):
                raise self.syntax(f"Unknown --ctdir {word!r}")
            return CtDirectionTest(word.upper() == "REPLY", negate)
        if opt == "--ctproto":
            number = protocol_number(word)
            if number is None or number == 0:
                raise self.syntax(f"unknown protocol {word!r} for --ctproto")
            return CtProtoTest(number, negate)
        side: Side = "original" if opt.startswith("--ctorig") else "reply"
        end: End = "src" if opt[len("--ctorig"):].startswith("src") else "dst"
        if opt.endswith("port"):
            rng = parse_port_range(word, MATCH_PORTS, self)
            return CtPortTest(side, end, rng.lo, rng.hi, negate)
        nets = self.networks(word)
        if len(nets) != 1:
            raise self.syntax(f"{opt} takes one address")
        return CtAddrTest(side, end, nets[0], negate)

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
                                                     "--to-destination", "--to-ports",
                                                     "--log-prefix", "--log-level") else True
        return True

    def target(self) -> Target | None:
        name = self.target_name
        if name is None:
            return None
        simple: dict[str, Target] = {"ACCEPT": Accept(), "DROP": Drop(), "RETURN": Return()}
        if name in simple:
            if self.goto:
                raise self.syntax(f"goto {name} is not a chain")
            if name == "DROP" and self.table == "nat":
                raise self.syntax('The "nat" table is not intended for filtering, '
                                  "the use of DROP is therefore inhibited")
            return simple[name]
        if name == "REJECT":
            return self.reject()
        if name == "LOG":
            self.log()
            return None
        if name in NAT_TARGET_NAMES:
            return self.nat_target(name)
        if name in KNOWN_TARGETS:
            raise self.unsupported(f"target -j {name}")
        if name in IPTABLES_CHAIN_HOOK:
            raise self.syntax(f"cannot jump to built-in chain {name}")
        if name not in self.chains:
            raise self.syntax(f"Chain {name!r} does not exist")
        return Goto(name) if self.goto else Jump(name)

    def log(self) -> None:
        """-j LOG: checked as libxt_LOG checks it; the rule then only logs (no verdict)."""
        if self.goto:
            raise self.syntax("goto LOG is not a chain")
        # A long --log-prefix is accepted as well (measured: 31 characters load).
        level = str(self.topts.get("--log-level", "warning"))
        if level.lower() not in LOG_LEVELS and not (level.isdigit() and int(level) <= 7):
            raise self.syntax(f'log level "{level}" unknown')
        self.f.log = True

    def reject(self) -> Reject:
        if self.table != "filter":
            raise self.syntax(f"REJECT is only valid in the filter table, not {self.table}")
        with_ = str(self.topts.get("--reject-with", "icmp-port-unreachable"))
        if with_ not in REJECT_ALIASES:
            raise self.syntax(f"unknown reject type {with_!r}")
        canonical = REJECT_ALIASES[with_]
        if canonical == "tcp-reset" and (self.f.proto != 6 or self.f.proto_neg):
            raise self.syntax("REJECT --reject-with tcp-reset needs -p tcp "
                              "(the kernel says: Invalid argument)")
        return Reject(canonical)

    def nat_target(self, name: str) -> Target:
        if self.table != "nat":
            raise self.syntax(f"{name} is only valid in the nat table, not {self.table}")
        flags = NatFlag.NONE
        for option, flag in NAT_FLAG_OPTIONS.items():
            if self.topts.get(option):
                flags |= flag
        if name in ("SNAT", "DNAT"):
            opt = "--to-source" if name == "SNAT" else "--to-destination"
            if opt not in self.topts:
                raise self.syntax(f'{name}: option "{opt}" must be specified')
            rng = self.nat_spec(str(self.topts[opt]), allow_offset=name == "DNAT")
            rng = replace(rng, flags=rng.flags | flags)
            return Snat(rng) if name == "SNAT" else Dnat(rng)
        rng = NatRange(flags)
        if "--to-ports" in self.topts:
            rng = nat_range(None, self.nat_ports(str(self.topts["--to-ports"])), flags=flags)
        return Masquerade(rng) if name == "MASQUERADE" else Redirect(rng)

    def nat_ports(self, word: str) -> PortRange:
        if self.f.proto not in PORT_PROTOS:
            raise self.syntax("Need TCP, UDP, SCTP or DCCP with port specification")
        return parse_port_range(word, NAT_PORTS, self)

    def nat_spec(self, word: str, *, allow_offset: bool) -> NatRange:
        """`a[-b][:p[-q][/base]]` (libxt_SNAT/libxt_DNAT)."""
        addr_s, colon, port_s = word.partition(":")
        addresses = ports = base = None
        if addr_s:
            addresses = parse_address_range(addr_s, self, bad=f"Bad IP address {addr_s!r}",
                                            prefixes=False)
        if colon:
            ports_s, slash, base_s = port_s.partition("/")
            if slash and not allow_offset:
                raise self.syntax(f"Bad port range {port_s!r}")
            ports = self.nat_ports(ports_s)
            if slash:
                if not base_s.isdigit() or not 0 < int(base_s) <= 65535:
                    raise self.syntax(f"Port {base_s!r} not valid")
                base = int(base_s)
        if addresses is None and ports is None:
            raise self.syntax(f"Bad IP address {word!r}")
        return nat_range(addresses, ports, base)

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
        source = self.line.strip()
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
                    icmp_type=f.icmp_type, icmp_code=f.icmp_code, tcp_flags=f.tcp_flags,
                    log=f.log, ct_tests=tuple(f.ct_tests),
                    ct_tests_without_ct=f.ct_state_in_conntrack and bool(f.ct_tests))
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

