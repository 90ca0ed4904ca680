"""The kernel's table-wide checks on a ruleset, written once for both syntaxes.

When a table is committed, the kernel validates every rule against each base chain that can
reach it through jumps and gotos, and refuses the whole table if one fails:

- a NAT statement only on the hooks its target allows (the hook masks of xt_nat.c,
  xt_MASQUERADE.c and xt_REDIRECT.c; the validate() callbacks of nft_nat.c, nft_masq.c and
  nft_redir.c, which also require the reaching base chain to be of type nat);
- REJECT only on the hooks it allows (ipt_REJECT.c registers for INPUT, FORWARD and OUTPUT
  of the filter table; nft_reject.c's validate() allows prerouting as well);
- no jump back into a chain on the current call path (mark_source_chains() in ip_tables.c,
  nf_tables_check_loops() in nf_tables_api.c): ELOOP.

The two APIs refuse the same things with different words (x_tables: EINVAL, which iptables
prints as "Invalid argument"; nf_tables: EOPNOTSUPP), so each syntax keeps its own message.
"""

from __future__ import annotations

from typing import Literal

from nat.hooks import Hook
from nat.rules.ast import (
    Chain,
    Dnat,
    Goto,
    Jump,
    Masquerade,
    Redirect,
    Reject,
    RuleSyntaxError,
    Snat,
    Target,
)

Syntax = Literal["iptables", "nft"]

NAT_TARGETS = (Snat, Dnat, Masquerade, Redirect)

# Where each NAT target may sit: the same masks in both APIs.
NAT_TARGET_HOOKS: dict[type, frozenset[Hook]] = {
    Snat: frozenset({Hook.POST_ROUTING, Hook.LOCAL_IN}),
    Masquerade: frozenset({Hook.POST_ROUTING}),
    Dnat: frozenset({Hook.PRE_ROUTING, Hook.LOCAL_OUT}),
    Redirect: frozenset({Hook.PRE_ROUTING, Hook.LOCAL_OUT}),
}

# Where REJECT may sit, per API.
REJECT_HOOKS: dict[Syntax, frozenset[Hook]] = {
    "iptables": frozenset({Hook.LOCAL_IN, Hook.FORWARD, Hook.LOCAL_OUT}),
    "nft": frozenset({Hook.PRE_ROUTING, Hook.LOCAL_IN, Hook.FORWARD, Hook.LOCAL_OUT}),
}


def reaching_base_chains(chains: tuple[Chain, ...] | list[Chain]) -> dict[str, tuple[Chain, ...]]:
    """For the chains of ONE table: the base chains from which each chain is reached
    (itself included for a base chain), following jump/goto.

    A chain reachable from a base chain that jumps back into its own call path is a
    RuleSyntaxError naming the rule that closes the loop. Loops among chains no base chain
    reaches are allowed, as in the kernel. Jumps to unknown chains are skipped here (the
    parsers refuse them first).
    """
    by_name = {c.name: c for c in chains}
    reach: dict[str, list[Chain]] = {c.name: [] for c in chains}
    done: set[str] = set()

    def visit(chain: Chain, path: tuple[str, ...]) -> None:
        """Depth-first walk; a jump back onto the current path is a loop."""
        for rule in chain.rules:
            if not isinstance(rule.target, Jump | Goto) or rule.target.chain not in by_name:
                continue
            name = rule.target.chain
            if name in path or name == chain.name:
                raise RuleSyntaxError(rule.lineno, f"jump loop through chain {name!r} "
                                      "(the kernel refuses it: ELOOP)", rule.source)
            if name not in done:
                visit(by_name[name], path + (chain.name,))
        done.add(chain.name)

    for base in chains:
        if base.hook is None:
            continue
        visit(base, ())
        todo = [base.name]
        while todo:
            name = todo.pop()
            if any(b is base for b in reach[name]):
                continue
            reach[name].append(base)
            todo += [r.target.chain for r in by_name[name].rules
                     if isinstance(r.target, Jump | Goto) and r.target.chain in by_name]
    return {name: tuple(bases) for name, bases in reach.items()}


def refused_at(target: Target | None, base: Chain, syntax: Syntax) -> bool:
    """Does the kernel refuse `target` in a chain reached from the base chain `base`?"""
    if isinstance(target, NAT_TARGETS):
        return base.kind != "nat" or base.hook not in NAT_TARGET_HOOKS[type(target)]
    if isinstance(target, Reject):
        return base.hook not in REJECT_HOOKS[syntax]
    return False


def check_table(chains: tuple[Chain, ...] | list[Chain],
                syntax: Syntax) -> dict[str, tuple[Chain, ...]]:
    """The kernel's validation of one table (see the module docstring); the first refused
    rule, in chain and rule order, is a RuleSyntaxError worded as `syntax`'s tool words it.
    Returns the base chains reaching each chain."""
    reach = reaching_base_chains(chains)
    for chain in chains:
        for rule in chain.rules:
            target = rule.target
            if not isinstance(target, NAT_TARGETS + (Reject,)):
                continue
            refused = [b for b in reach[chain.name] if refused_at(target, b, syntax)]
            if refused:
                raise RuleSyntaxError(rule.lineno, _refusal(target, refused, syntax),
                                      rule.source)
    return reach


def _refusal(target: Target, bases: list[Chain], syntax: Syntax) -> str:
    """The message for `target` refused in the base chains `bases` (at least one)."""
    name = type(target).__name__
    hooks = [b.hook.name for b in bases if b.hook is not None]
    if syntax == "iptables":  # every refused hook, as x_tables checks them all
        return (f"{name.upper()} is not valid in {'/'.join(sorted(set(hooks)))} "
                "(the kernel says: Invalid argument)")
    if isinstance(target, Reject):  # nf_tables stops at the first refused base chain
        return f"reject is not valid at {hooks[0]} (Operation not supported)"
    return (f"{name.lower()} is not valid in a {bases[0].kind} chain at {hooks[0]} "
            "(Operation not supported)")
