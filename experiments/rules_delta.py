"""A change to a ruleset written as `iptables-restore --noflush` input (`-A`, `-I`, `-D`, `-F`,
`-N`, `-X`, `-P` inside `*table` ... `COMMIT` blocks), applied to the ruleset's text: the
ruleset after the change, as iptables-restore text again.

Why text: a `rules` step with `change` is resolved once, in the plan, into the whole ruleset
after it; the kernel run loads that as a table replace on every backend (translated for nft),
and the model parses the same text. So the kernel and the model hold the very same rules
after the step, whatever the backend, and a rule is deleted (`-D chain SPEC`) when SPEC is
written as it was added (token for token; or `-D chain N` by number), which is checked when
the spec is read.

What a table replace does that an incremental `iptables -A` would not: nothing the conntrack
table or the packets can see (counters and nft rule handles are not compared). Tables the
text names keep the chains they had, a flushed chain stays (empty), as `iptables -F` leaves it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from nat.rules.builtin_chains import BUILTIN_CHAINS


class DeltaError(ValueError):
    """The change cannot be applied: `lineno` is the line of the change text."""

    def __init__(self, lineno: int, message: str) -> None:
        self.lineno = lineno
        super().__init__(f"line {lineno}: {message}")


@dataclass
class _Table:
    policies: dict[str, str] = field(default_factory=dict)          # chain -> policy ("-": user)
    rules: dict[str, list[list[str]]] = field(default_factory=dict)  # chain -> rule arguments

    def chain(self, table: str, name: str, lineno: int) -> list[list[str]]:
        """The rules of chain `name`; a built-in chain comes into being on first use."""
        if name not in self.rules:
            if name not in BUILTIN_CHAINS.get(table, {}):
                raise DeltaError(lineno, f"chain {name!r} does not exist in table {table}")
            self.policies[name] = "ACCEPT"
            self.rules[name] = []
        return self.rules[name]


def _blocks(text: str) -> list[tuple[str, list[tuple[int, list[str]]]]]:
    """The `*table` blocks of iptables-restore text: (table, [(lineno, tokens)])."""
    blocks: list[tuple[str, list[tuple[int, list[str]]]]] = []
    current: list[tuple[int, list[str]]] | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = []
            blocks.append((line[1:].strip(), current))
        elif line == "COMMIT":
            current = None
        elif current is None:
            raise DeltaError(lineno, "outside a `*table` ... `COMMIT` block")
        elif line.startswith(":"):
            current.append((lineno, [":", *line[1:].split()[:2]]))
        else:
            try:
                current.append((lineno, shlex.split(line)))
            except ValueError as e:
                raise DeltaError(lineno, f"bad quoting ({e})") from None
    return blocks


def _apply(tables: dict[str, _Table], table: str, lineno: int, tokens: list[str]) -> None:
    t = tables.setdefault(table, _Table())
    cmd, args = tokens[0], tokens[1:]
    if cmd == ":":
        name, policy = (args + ["-"])[:2]
        if name not in t.rules:
            t.rules[name] = []
        t.policies[name] = policy
    elif cmd in ("-N", "--new-chain"):
        if len(args) != 1 or args[0] in t.rules:
            raise DeltaError(lineno, "-N takes one chain name that does not exist yet")
        t.policies[args[0]], t.rules[args[0]] = "-", []
    elif cmd in ("-P", "--policy") and len(args) == 2:
        t.chain(table, args[0], lineno)
        t.policies[args[0]] = args[1]
    elif cmd in ("-A", "--append") and args:
        t.chain(table, args[0], lineno).append(args[1:])
    elif cmd in ("-I", "--insert") and args:
        rules = t.chain(table, args[0], lineno)
        rest, position = args[1:], 1
        if rest and rest[0].isdigit():
            position, rest = int(rest[0]), rest[1:]
        if not 1 <= position <= len(rules) + 1:
            raise DeltaError(lineno, f"-I {args[0]} {position}: index of insertion too big")
        rules.insert(position - 1, rest)
    elif cmd in ("-D", "--delete") and len(args) >= 2:
        rules = t.chain(table, args[0], lineno)
        rest = args[1:]
        if len(rest) == 1 and rest[0].isdigit():
            index = int(rest[0]) - 1
            if not 0 <= index < len(rules):
                raise DeltaError(lineno, f"-D {args[0]} {rest[0]}: no rule with that number")
        elif rest in rules:
            index = rules.index(rest)
        else:
            raise DeltaError(lineno, f"-D {args[0]}: no such rule (a rule is deleted as it "
                             "was written when added, or by its number)")
        del rules[index]
    elif cmd in ("-F", "--flush") and len(args) <= 1:
        for name in args or list(t.rules):
            t.chain(table, name, lineno).clear()
    elif cmd in ("-X", "--delete-chain") and len(args) == 1:
        if t.policies.get(args[0]) != "-" or t.rules[args[0]]:
            raise DeltaError(lineno, f"-X {args[0]}: only an empty user chain can be deleted")
        if any("-j" in r and r[r.index("-j") + 1:][:1] == [args[0]]
               for rs in t.rules.values() for r in rs):
            raise DeltaError(lineno, f"-X {args[0]}: the chain is still jumped to")
        del t.rules[args[0]], t.policies[args[0]]
    else:
        raise DeltaError(lineno, f"not a change natlab applies: {shlex.join(tokens)!r} "
                         "(it takes -A, -I, -D, -F, -N, -X, -P)")


def apply_delta(ruleset: str, change: str) -> str:
    """The ruleset (iptables-restore text) after `change` (--noflush input). Raises
    DeltaError naming the line of `change` it cannot apply."""
    tables: dict[str, _Table] = {}
    try:
        for table, commands in _blocks(ruleset):
            for lineno, tokens in commands:
                _apply(tables, table, lineno, tokens)
    except DeltaError as e:
        raise DeltaError(e.lineno, f"the ruleset before the change: {e}") from None
    for table, commands in _blocks(change):
        if table not in BUILTIN_CHAINS:
            raise DeltaError(commands[0][0] if commands else 1, f"no table {table!r}")
        for lineno, tokens in commands:
            _apply(tables, table, lineno, tokens)
    return render(tables)


def _quote(word: str) -> str:
    """A word as iptables-restore reads it back (double quotes around blanks and quotes)."""
    if word and not any(c.isspace() or c in "\"'\\" for c in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(tables: dict[str, _Table]) -> str:
    out: list[str] = []
    for name, t in tables.items():
        out.append(f"*{name}")
        out += [f":{chain} {t.policies[chain]} [0:0]" for chain in t.rules]
        out += [" ".join(["-A", _quote(chain), *map(_quote, rule)])
                for chain, rules in t.rules.items() for rule in rules]
        out.append("COMMIT")
    return "".join(line + "\n" for line in out)
