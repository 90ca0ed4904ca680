"""Read iptables-restore text (the subset the model supports) into the rules AST.

Mirrors what iptables 1.8.9 (`iptables-restore`, nf_tables and legacy backends) accepts and
refuses for that subset. This module reads the file's structure as iptables-restore does:
`*table` blocks closed by COMMIT, `:CHAIN POLICY [p:b]` declarations, and the -A/-I/-N/-P
commands; the options of one rule are read by `iptables_rule.py`, and at COMMIT the table
goes through the kernel's table-wide checks (`checks.py`: NAT target hook masks of xt_nat.c,
xt_MASQUERADE.c and xt_REDIRECT.c; the jump-loop check of mark_source_chains() in
net/ipv4/netfilter/ip_tables.c). Which chains a table has comes from `builtin_chains.py`.
Messages follow iptables' own where it has one.

Chains, as iptables-nft creates them: a built-in chain exists when it is declared (`:CHAIN`)
or used (`-A`), not otherwise (an empty `*nat` block registers no NAT hook). iptables-legacy
instantiates every built-in chain of a table it touches: pass `all_builtin_chains=True`.
A repeated `*table` block replaces the earlier one (iptables-restore flushes it).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from nat.hooks import IPTABLES_CHAIN_HOOK, Hook
from nat.rules.ast import (
    Chain,
    ChainKind,
    Policy,
    Rule,
    Ruleset,
    RuleSyntaxError,
    UnsupportedRule,
)
from nat.rules.builtin_chains import BUILTIN_CHAINS
from nat.rules.checks import check_table
from nat.rules.iptables_rule import parse_rule

# Tables the model evaluates; raw and mangle may appear only without rules.
RULE_TABLES: frozenset[str] = frozenset({"nat", "filter"})
OTHER_TABLES: frozenset[str] = frozenset({"security"})


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
        rules = parse_rule(rest, table=table.name, chains=table.chains, chain=chain.name,
                           hook=chain.hook, lineno=lineno, raw=raw)
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
