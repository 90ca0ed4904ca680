"""Walk a chain for one packet and say which target decided, as the kernel's table walkers do.

Mirrors ipt_do_table() (net/ipv4/netfilter/ip_tables.c: rules in order, a jump pushes the
return position, RETURN or the end of a user chain pops it, the end of a base chain or a
RETURN there falls to the policy) and nft_do_chain() (net/netfilter/nf_tables_core.c: the same
with `goto`, which does not push). Match semantics follow ip_packet_match() (addresses,
protocol, interfaces with `+` wildcards; a missing device compares as the empty name, as
nft_meta_store_ifname() does), xt_tcpudp.c / nft_payload.c (no L4 header, e.g. a later
fragment: port, flag and ICMP tests never match, negated or not), xt_conntrack.c / nft_ct.c
(ct state), xt_LOG.c / nft_log.c (LOG / log: the packet is written to the kernel log and
the walk goes on; the outcome lists the rules that logged it).

Outcomes only: a NAT target *decides* the chain (the kernel returns ACCEPT after
nf_nat_setup_info); applying it is the NAT core's job (nat/nat_core.py, nat/pipeline.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from nat.packet import IcmpHeader, Packet, TcpHeader, UdpHeader
from nat.rules.ast import (
    Accept,
    Chain,
    Drop,
    Goto,
    Jump,
    Match,
    Return,
    Rule,
    Ruleset,
    Target,
    iface_matches,
)
from nat.rules.ct_match import CT_STATUS_BITS, CtView


@dataclass(frozen=True)
class RuleContext:
    """What rules may look at: the packet as it is at this hook, the devices, the ct state
    (`CtInfo.ctstate`: "NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED")."""

    packet: Packet
    in_iface: str | None = None
    out_iface: str | None = None
    ctstate: str = "NEW"
    ct: CtView | None = None    # the entry, for --ctstate SNAT/DNAT and the other ct tests


@dataclass(frozen=True)
class RuleOutcome:
    """The verdict of one base chain for one packet.

    `target` is the rule's target that decided (Accept, Drop, Reject, Snat, Dnat, Masquerade,
    Redirect), or the policy as Accept()/Drop() when no rule decided (`rule` None).
    `chain` is where the deciding rule sits (the base chain for the policy); `trail` lists
    the chains entered by jump/goto, in order, from the base chain (returns not shown)."""

    target: Target
    rule: Rule | None
    chain: Chain
    base: Chain
    trail: tuple[str, ...] = ()
    position: int = 0  # 1-based index of `rule` in `chain`; 0 for the policy
    logged: tuple[Rule, ...] = ()  # LOG / log rules the packet matched on the way, in order

    @property
    def by_policy(self) -> bool:
        return self.rule is None

    def describe(self) -> str:
        """One line for a journey: where the decision was made and what it was."""
        via = "".join(f" -> {name}" for name in self.trail)
        if self.rule is None:
            return f"{self.base.table} {self.base.name}{via}: policy {self.target}"
        where = f"line {self.rule.lineno}: " if self.rule.lineno else ""
        text = self.rule.source or self.rule.match.describe()
        return (f"{self.base.table} {self.base.name}{via}: rule {self.position} of "
                f"{self.chain.name} ({where}{text}): {self.target}")


class EvalError(RuntimeError):
    """The ruleset cannot be walked (a jump to a missing chain, a call stack over the
    kernel's limit); the parsers refuse such rulesets, so this means a hand-built one."""


# XT_MAX_CHAIN_DEPTH / NFT_JUMP_STACK_SIZE: how deep jumps may nest.
MAX_DEPTH = 16
# A walk longer than this is a goto loop in a hand-built ruleset (parsers refuse loops).
MAX_STEPS = 100_000


def evaluate(ruleset: Ruleset, chain: Chain, ctx: RuleContext) -> RuleOutcome:
    """Run the base chain `chain` for the packet in `ctx` (ipt_do_table / nft_do_chain)."""
    if chain.hook is None:
        raise EvalError(f"{chain.name} is not a base chain")
    stack: list[tuple[Chain, int]] = []
    trail: list[str] = []
    logged: list[Rule] = []
    current, index = chain, 0
    for _ in range(MAX_STEPS):
        if index >= len(current.rules):
            if not stack:  # end of the base chain (or of a chain reached by goto from it)
                return _policy(chain, trail, logged)
            current, index = stack.pop()
            continue
        rule = current.rules[index]
        index += 1
        if not matches(rule.match, ctx):
            continue
        if rule.match.log:
            logged.append(rule)   # nf_log_packet(): a line in the kernel log, nothing else
        target = rule.target
        if target is None:
            continue  # a rule without a verdict: counters only
        if isinstance(target, Return):
            if not stack:
                return _policy(chain, trail, logged)
            current, index = stack.pop()
        elif isinstance(target, Jump | Goto):
            nxt = _find(ruleset, current.table, target.chain)
            if isinstance(target, Jump):
                stack.append((current, index))
            if len(stack) > MAX_DEPTH:
                raise EvalError(f"jumps nest deeper than {MAX_DEPTH} at {rule.source!r}")
            trail.append(nxt.name)
            current, index = nxt, 0
        else:
            return RuleOutcome(target, rule, current, chain, tuple(trail), index, tuple(logged))
    raise EvalError(f"no verdict after {MAX_STEPS} steps from {chain.name}: a goto loop?")


def _policy(base: Chain, trail: list[str], logged: list[Rule]) -> RuleOutcome:
    verdict: Target = Drop() if base.policy == "DROP" else Accept()
    return RuleOutcome(verdict, None, base, base, tuple(trail), 0, tuple(logged))


def _find(ruleset: Ruleset, table: str, name: str) -> Chain:
    try:
        return ruleset.chain(table, name)
    except KeyError:
        raise EvalError(f"jump to missing chain {name!r} in table {table!r}") from None


def matches(m: Match, ctx: RuleContext) -> bool:
    """Does the packet satisfy every test of `m`?"""
    pkt = ctx.packet
    ip = pkt.ip
    if m.proto is not None and (ip.proto == m.proto) == m.proto_neg:
        return False
    if m.src is not None and (ip.src in m.src) == m.src_neg:
        return False
    if m.dst is not None and (ip.dst in m.dst) == m.dst_neg:
        return False
    if m.src_range is not None and (m.src_range[0] <= ip.src <= m.src_range[1]) == m.src_neg:
        return False
    if m.dst_range is not None and (m.dst_range[0] <= ip.dst <= m.dst_range[1]) == m.dst_neg:
        return False
    if m.in_iface is not None and iface_matches(m.in_iface, ctx.in_iface) == m.in_iface_neg:
        return False
    if m.out_iface is not None and \
            iface_matches(m.out_iface, ctx.out_iface) == m.out_iface_neg:
        return False
    if m.ctstate is not None and bool(_states(ctx) & m.ctstate) == m.ctstate_neg:
        return False
    if m.ct_tests:
        if ctx.ct is None:
            if not m.ct_tests_without_ct:
                return False
        elif not all(t.matches(ctx.ct) for t in m.ct_tests):
            return False
    l4 = pkt.l4
    if m.sport is not None or m.dport is not None:
        if not isinstance(l4, TcpHeader | UdpHeader):
            return False
        if m.sport is not None and not m.sport.matches(l4.sport):
            return False
        if m.dport is not None and not m.dport.matches(l4.dport):
            return False
    if m.tcp_flags is not None and not (
            isinstance(l4, TcpHeader) and m.tcp_flags.matches(l4.flags)):
        return False
    if m.icmp_type is not None:
        if not isinstance(l4, IcmpHeader) or l4.type != m.icmp_type:
            return False
        if m.icmp_code is not None and l4.code != m.icmp_code:
            return False
    return True


def _states(ctx: RuleContext) -> set[str]:
    """The state names the packet has: its ct state, and SNAT / DNAT when its entry has
    SRC_NAT / DST_NAT (xt_conntrack adds these bits only when there is an entry)."""
    states = {ctx.ctstate}
    if ctx.ct is not None:
        if ctx.ct.status & CT_STATUS_BITS["snat"]:
            states.add("SNAT")
        if ctx.ct.status & CT_STATUS_BITS["dnat"]:
            states.add("DNAT")
    return states
