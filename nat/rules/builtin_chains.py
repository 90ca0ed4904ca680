"""The xtables built-in chains: for each iptables table, its chains, their hooks and priorities.

One table for the whole tree: the iptables reader (which chains a `*table` block may name or
create), the kernel runner (which chains to declare before `iptables-restore-translate`, and
which to name when emptying a table) and the model (the priority a chain runs at) all read it.

Mirrors the iptable_filter.c, iptable_nat.c, iptable_mangle.c, iptable_raw.c and
iptable_security.c modules of net/ipv4/netfilter/: each table's `valid_hooks` mask says which
built-in chains it has, and its hook registration gives the priority (nat splits: destination
NAT at NF_IP_PRI_NAT_DST on PREROUTING and OUTPUT, source NAT at NF_IP_PRI_NAT_SRC on
POSTROUTING and INPUT). iptables names the chain after the hook (PREROUTING, INPUT, ...).

The hook names and the per-table priorities the model's pipeline uses stay in `nat/hooks.py`
(IPTABLES_CHAIN_HOOK, IPTABLES_TABLE_PRIORITY); this table is built from them, so the two
cannot disagree. Only `security`, which the model never runs, is added here.
"""

from __future__ import annotations

from dataclasses import dataclass

from nat.hooks import IPTABLES_CHAIN_HOOK, IPTABLES_TABLE_PRIORITY, Hook, Priority


@dataclass(frozen=True)
class BuiltinChain:
    """One built-in chain of an iptables table: its name, the hook it sits on, its priority."""

    name: str
    hook: Hook
    priority: int


# iptable_security.c: INPUT, FORWARD, OUTPUT at NF_IP_PRI_SECURITY. Not in hooks.py because
# the model has no security table (the iptables reader refuses one).
_SECURITY: dict[Hook, int] = {h: Priority.SECURITY
                              for h in (Hook.LOCAL_IN, Hook.FORWARD, Hook.LOCAL_OUT)}

# table -> {chain name -> chain}, in hook order (the order iptables-save prints them).
BUILTIN_CHAINS: dict[str, dict[str, BuiltinChain]] = {
    table: {name: BuiltinChain(name, hook, priorities[hook])
            for name, hook in IPTABLES_CHAIN_HOOK.items() if hook in priorities}
    for table, priorities in {**IPTABLES_TABLE_PRIORITY, "security": _SECURITY}.items()
}


def chain_names(table: str) -> tuple[str, ...]:
    """The built-in chain names of `table` (empty for a table iptables does not have)."""
    return tuple(BUILTIN_CHAINS.get(table, {}))
