"""The hook registration table: which callbacks run at each netfilter hook, in which order.

The kernel keeps, per namespace and per hook, an array of registered callbacks; a packet at
that hook calls them one after the other until one does not accept it (nf_hook_slow(),
net/netfilter/core.c). This module builds that array for a ruleset, as data:

* net/netfilter/core.c, nf_register_net_hook() / nf_hook_entries_grow(): the array is kept
  sorted by priority. A callback registered with the same priority as one already there is
  put IN FRONT of it, so among equals the one registered last runs first (`in_hook_order` in
  nat/hooks.py; kernels before 4.16 did the opposite).
* net/netfilter/nf_conntrack_proto.c, ipv4_conntrack_ops: ipv4_conntrack_in (PRE_ROUTING) and
  ipv4_conntrack_local (LOCAL_OUT) at -200, the confirm callback at INT_MAX on POST_ROUTING and
  LOCAL_IN (nf_confirm since 6.12; 6.1 registers its wrapper ipv4_confirm). nf_ct_netns_get()
  registers them only once something needs conntrack, and with them defrag
  (net/ipv4/netfilter/nf_defrag_ipv4.c: ipv4_conntrack_defrag at -400 on PRE_ROUTING and
  LOCAL_OUT). The model does not reassemble: its defrag passes every packet on as it came, and
  conntrack calls a fragment INVALID (nat/core.py).
* net/netfilter/nf_nat_proto.c, nf_nat_ipv4_ops: nf_nat_ipv4_pre_routing and
  nf_nat_ipv4_local_fn (DST manip, -100), nf_nat_ipv4_out and nf_nat_ipv4_local_in (SRC manip,
  100). nf_nat_register_fn() (net/netfilter/nf_nat_core.c) registers all four when the first
  nat chain of the namespace is registered, and puts the nat chain itself not on the hook but
  in the NAT core's private list for that hook (nf_hook_entries_insert_raw(), the same order
  rule). nf_nat_inet_fn() walks that list for a connection's first packet per manip type. So a
  nat chain's priority orders it among nat chains only: it always runs at the NAT core's -100
  or 100 (a filter chain at -150 runs before a nat chain at -150, because that one really
  runs at -100).
* net/netfilter/nft_chain_filter.c (nft_do_chain_ipv4) and net/ipv4/netfilter/iptable_filter.c
  (ipt_do_table): a filter base chain is a callback of its own, at its own hook and priority.
  At PRE_ROUTING and POST_ROUTING too, and below conntrack: a chain at -250 on LOCAL_OUT sees
  no conntrack entry yet (ct state INVALID, checked live on 6.18).

Ties. Between chains of the ruleset: a ruleset lists its chains in the order they were
created, which is the order iptables or nft registered them in (nft registers a base chain's
hook when it adds the chain, in command order), so among equals the chain created last runs
first (checked live on 6.18). Between a chain and a fixed callback (a filter chain at -200 on
LOCAL_OUT, at -100 where NAT runs, ...): the winner is whichever was registered last, and that
depends on the namespace's history, not on the ruleset: a chain at `output priority -200`
loaded with the rule that made conntrack register ran after ipv4_conntrack_local (it saw
ct state NEW), the same chain added by a later `nft -f` ran before it (ct state INVALID). The
model knows the ruleset, not the order it was loaded in, so such a chain is refused
(`ChainNotModelled`) rather than guessed; so is any chain kind or hook the model cannot run.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, replace

from nat.hooks import NFT_HOOK, Hook, Priority, in_hook_order
from nat.rules.ast import Chain, RuleError, Ruleset


class Kind(enum.Enum):
    """What a registered callback does, as far as the pipeline is concerned."""

    DEFRAG = "defrag"                # ipv4_conntrack_defrag
    CONNTRACK = "conntrack"          # nf_conntrack_in
    NAT = "nat"                      # the NAT core hook (nf_nat_inet_fn)
    NAT_CHAIN = "nat chain"          # a nat chain, in the NAT core's own list
    FILTER_CHAIN = "filter chain"    # a filter base chain
    CONFIRM = "confirm"              # __nf_conntrack_confirm


@dataclass(frozen=True)
class Registration:
    """One callback on one hook: struct nf_hook_ops's hooknum, priority and hook function.

    `chain` is the ruleset's chain a FILTER_CHAIN or NAT_CHAIN registration runs; a NAT
    registration lists the nat chains it runs in `nat_chains`, in the order it runs them."""

    hook: Hook
    priority: int
    callback: str
    kind: Kind
    chain: Chain | None = None
    nat_chains: tuple[Registration, ...] = ()

    def describe(self) -> str:
        """`PRE_ROUTING -200 ipv4_conntrack_in`, with the chain a chain callback runs."""
        what = self.callback
        if self.chain is not None:
            what += f" ({self.chain.table} {self.chain.name})"
        return f"{self.hook.name} {priority_text(self.priority)} {what}"


def priority_text(priority: int) -> str:
    return "INT_MAX" if priority == Priority.CONNTRACK_CONFIRM else str(priority)


class ChainNotModelled(RuleError):
    """A base chain the kernel accepts but the model cannot run (or cannot place)."""

    def __init__(self, chain: Chain, reason: str, lineno: int = 0, line: str = "") -> None:
        self.chain = chain
        self.reason = reason
        self.lineno = lineno
        self.line = line
        where = f"line {lineno}: " if lineno else ""
        super().__init__(f"{where}not supported by the model: {chain_words(chain)}: {reason}")


_NFT_HOOK_NAME = {hook: name for name, hook in NFT_HOOK.items()}


def chain_words(chain: Chain) -> str:
    """`chain pre of table ip t (type filter hook prerouting priority -250)`."""
    hook = _NFT_HOOK_NAME[chain.hook] if chain.hook is not None else "none"
    return (f"chain {chain.name} of table {chain.table} "
            f"(type {chain.kind} hook {hook} priority {chain.priority})")


# The callbacks that are not chains (kernel 6.18 names). DST manip at PRE_ROUTING/LOCAL_OUT,
# SRC manip at POST_ROUTING/LOCAL_IN (HOOK2MANIP).
DEFRAG_OPS = (
    Registration(Hook.PRE_ROUTING, Priority.CONNTRACK_DEFRAG, "ipv4_conntrack_defrag",
                 Kind.DEFRAG),
    Registration(Hook.LOCAL_OUT, Priority.CONNTRACK_DEFRAG, "ipv4_conntrack_defrag",
                 Kind.DEFRAG),
)
CONNTRACK_OPS = (
    Registration(Hook.PRE_ROUTING, Priority.CONNTRACK, "ipv4_conntrack_in", Kind.CONNTRACK),
    Registration(Hook.LOCAL_OUT, Priority.CONNTRACK, "ipv4_conntrack_local", Kind.CONNTRACK),
    Registration(Hook.POST_ROUTING, Priority.CONNTRACK_CONFIRM, "nf_confirm", Kind.CONFIRM),
    Registration(Hook.LOCAL_IN, Priority.CONNTRACK_CONFIRM, "nf_confirm", Kind.CONFIRM),
)
NAT_OPS = (
    Registration(Hook.PRE_ROUTING, Priority.NAT_DST, "nf_nat_ipv4_pre_routing", Kind.NAT),
    Registration(Hook.POST_ROUTING, Priority.NAT_SRC, "nf_nat_ipv4_out", Kind.NAT),
    Registration(Hook.LOCAL_OUT, Priority.NAT_DST, "nf_nat_ipv4_local_fn", Kind.NAT),
    Registration(Hook.LOCAL_IN, Priority.NAT_SRC, "nf_nat_ipv4_local_in", Kind.NAT),
)
NAT_HOOKS = frozenset(op.hook for op in NAT_OPS)

# What runs a chain's rules: nft's hook function, or iptables' table walker (iptables-nft
# loads iptables rules as nft chains, so the kernel runs them with nft_do_chain_ipv4 there).
CHAIN_CALLBACK = {
    ("nft", "filter"): "nft_do_chain_ipv4",
    ("nft", "nat"): "nft_nat_do_chain",
    ("iptables", "filter"): "ipt_do_table",
    ("iptables", "nat"): "ipt_do_table",
}


def fixed_registrations(*, conntrack: bool = True, nat: bool = True) -> tuple[Registration, ...]:
    """The callbacks a namespace gets from conntrack and the NAT core, in registration order
    (conntrack first: NAT needs it, nf_nat_register_fn is reached after nf_ct_netns_get)."""
    return (DEFRAG_OPS + CONNTRACK_OPS if conntrack else ()) + (NAT_OPS if nat else ())


@dataclass(frozen=True)
class HookTable:
    """Every hook's callbacks, in the order a packet meets them. `hooks[h]` is hook h's."""

    hooks: tuple[tuple[Registration, ...], ...]

    def at(self, hook: Hook) -> tuple[Registration, ...]:
        return self.hooks[hook]

    def __iter__(self) -> Iterator[Registration]:
        """Every registration, hook by hook (Hook order), each hook in run order."""
        return (reg for regs in self.hooks for reg in regs)


def build_hook_table(ruleset: Ruleset) -> HookTable:
    """The table for `ruleset` in a fresh namespace: conntrack's callbacks when a rule needs
    conntrack, the NAT core's when a nat chain exists, every base chain at its hook and
    priority (nat chains inside the NAT core's callback). Raises ChainNotModelled."""
    fixed = fixed_registrations(conntrack=ruleset.needs_conntrack(), nat=ruleset.has_nat())
    chains: list[Registration] = []
    nat_chains: dict[Hook, list[Registration]] = {hook: [] for hook in NAT_HOOKS}
    for chain in ruleset.chains:                 # creation order: the registration order
        if chain.hook is None:
            continue
        callback = CHAIN_CALLBACK.get((ruleset.source_syntax, chain.kind))
        if callback is None:
            raise ChainNotModelled(chain, f"chain type {chain.kind} is not modelled")
        if chain.kind == "nat":
            if chain.hook not in NAT_HOOKS:
                raise ChainNotModelled(chain, f"no NAT is done at {chain.hook.name}")
            nat_chains[chain.hook].append(
                Registration(chain.hook, chain.priority, callback, Kind.NAT_CHAIN, chain))
            continue
        tie = next((op for op in fixed
                    if op.hook == chain.hook and op.priority == chain.priority), None)
        if tie is not None:
            raise ChainNotModelled(
                chain, f"same priority as {tie.callback} on {tie.hook.name}: the kernel runs "
                "whichever registered last, which depends on the load order, not on the "
                "ruleset (pick another priority)")
        chains.append(Registration(chain.hook, chain.priority, callback, Kind.FILTER_CHAIN,
                                   chain))
    fixed = tuple(replace(op, nat_chains=tuple(in_hook_order(nat_chains[op.hook], _prio)))
                  if op.kind is Kind.NAT else op for op in fixed)
    registered = fixed + tuple(chains)
    return HookTable(tuple(tuple(in_hook_order((r for r in registered if r.hook == hook), _prio))
                           for hook in Hook))


def _prio(reg: Registration) -> int:
    return reg.priority
