"""Patterns over conntrack entries and packet headers, with wildcards and named captures, and
relations between captured values: the vocabulary of `[expect]` predicates.

Why not `nat.listing.parse_pattern`: that grammar describes one exact entry (the tuples are
always compared). A predicate names only what it cares about (`udp dport=5000 sport=$P`),
leaves the rest free, and captures values to relate them across entries and packets ("the
second flow got a different port than the first"). This module only parses and matches; the
search for values that satisfy every predicate at once is `experiments.judging.predicates`.

Pattern words, in `conntrack -L` order (each optional):

    PROTO [NUMBER] [TIMEOUT] [STATE] src= dst= sport= dport= [UNREPLIED] src= dst= sport=
    dport= [ASSURED] mark= zone= use=

A value is a literal, `*` (anything) or `$NAME` (a capture: the first use takes the seen
value, later uses must equal it). The tuple keys come in `conntrack -L` order (src, dst,
sport, dport; type, code, id for icmp), once per direction: the first group is the original
direction, and a key that does not come after the previous one (or `[UNREPLIED]`) starts the
reply group. `[ASSURED]` / `[UNREPLIED]` require the flag; `![ASSURED]` / `![UNREPLIED]`
require its absence; a flag not written is not compared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from ipaddress import AddressValueError, IPv4Address

from nat.entry import Entry
from nat.listing import L4_NAMES
from nat.nat_core import port_class
from nat.status import TcpState
from nat.tuple import Tuple

Value = int | IPv4Address
Env = Mapping[str, Value]

_PROTOS = {name: num for num, name in L4_NAMES.items()}
_TUPLE_KEYS = ("src", "dst", "sport", "dport", "type", "code", "id")
_ENTRY_KEYS = ("mark", "zone", "use")
_FLAGS = ("UNREPLIED", "ASSURED")
_CAPTURE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")


class PatternError(ValueError):
    """A pattern or relation that cannot be read; the message says which word and why."""


@dataclass(frozen=True)
class Term:
    """One value in a pattern: a literal, a capture (`$P`) or anything (`*`)."""

    literal: Value | None = None
    capture: str | None = None

    def __str__(self) -> str:
        if self.capture is not None:
            return f"${self.capture}"
        return "*" if self.literal is None else str(self.literal)


@dataclass(frozen=True)
class Miss:
    """Why one observation does not fit: the field, what was wanted, what was seen."""

    field: str
    wanted: str
    seen: str
    depth: int = 0      # how many fields fitted before this one (the nearest miss is deepest)

    def __str__(self) -> str:
        return f"{self.field} is {self.seen}, not {self.wanted}"


def parse_term(text: str, *, address: bool, what: str) -> Term:
    """`*`, `$NAME`, an IPv4 address (address fields) or a number."""
    if text == "*":
        return Term()
    if text.startswith("$"):
        if not _CAPTURE.fullmatch(text):
            raise PatternError(f"{what}: {text!r} is not a capture name ($ then letters, "
                               "digits, '_')")
        return Term(capture=text[1:])
    if address:
        try:
            return Term(literal=IPv4Address(text))
        except AddressValueError:
            raise PatternError(f"{what}: {text!r} is not an IPv4 address, * or $NAME") from None
    if not text.isdigit():
        raise PatternError(f"{what}: {text!r} is not a number, * or $NAME")
    return Term(literal=int(text))


def bind(term: Term, seen: Value | None, env: dict[str, Value], field: str) -> Miss | None:
    """Match `seen` against `term`, extending `env` with a new capture; a Miss if it fails."""
    if term.capture is None and term.literal is None:
        return None
    if seen is None:
        return Miss(field, str(term), "absent")
    if term.capture is not None:
        have = env.get(term.capture)
        if have is None:
            env[term.capture] = seen
            return None
        if have != seen:
            return Miss(field, f"${term.capture}={have}", str(seen))
        return None
    return None if term.literal == seen else Miss(field, str(term.literal), str(seen))


# --- entries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryPattern:
    """A conntrack entry pattern (see the module docstring)."""

    text: str
    proto: int | None
    timeout: Term
    state: TcpState | None
    orig: tuple[tuple[str, Term], ...]
    reply: tuple[tuple[str, Term], ...]
    fields: tuple[tuple[str, Term], ...]
    flags: tuple[tuple[str, bool], ...]

    def captures(self) -> set[str]:
        terms = [self.timeout, *(t for _, t in self.orig + self.reply + self.fields)]
        return {t.capture for t in terms if t.capture is not None}

    def match(self, entry: Entry, env: Env,
              timeout: tuple[int, int] | None = None) -> dict[str, Value] | Miss:
        """The captures `env` extended by this entry's values, or the first field that does
        not fit (with how many fitted before it)."""
        got = self._match(entry, env, timeout)
        if isinstance(got, Miss):
            order = self._order()
            return replace(got, depth=order.index(got.field) if got.field in order else 0)
        return got

    def _order(self) -> list[str]:
        return (["proto", "state", *(f"[{f}]" for f, _ in self.flags), "timeout"]
                + [f"orig.{k}" for k, _ in self.orig] + [f"reply.{k}" for k, _ in self.reply]
                + [k for k, _ in self.fields])

    def _match(self, entry: Entry, env: Env,
               timeout: tuple[int, int] | None) -> dict[str, Value] | Miss:
        new = dict(env)
        if self.proto is not None and entry.proto != self.proto:
            return Miss("proto", L4_NAMES.get(self.proto, str(self.proto)),
                        L4_NAMES.get(entry.proto, str(entry.proto)))
        if self.state is not None and entry.state != self.state:
            return Miss("state", self.state.name,
                        entry.state.name if entry.state else "none")
        for flag, wanted in self.flags:
            have = entry.unreplied if flag == "UNREPLIED" else entry.assured
            if have != wanted:
                return Miss(f"[{flag}]", "set" if wanted else "not set",
                            "set" if have else "not set")
        miss = bind(self.timeout, entry.timeout, new, "timeout")
        if miss:
            return miss
        if timeout is not None:
            lo, hi = timeout
            if entry.timeout is None or not lo <= entry.timeout <= hi:
                return Miss("timeout", f"in {lo}..{hi}", str(entry.timeout))
        for direction, words, t in (("orig", self.orig, entry.orig),
                                    ("reply", self.reply, entry.reply)):
            for key, term in words:
                miss = bind(term, tuple_value(t, key), new, f"{direction}.{key}")
                if miss:
                    return miss
        values: dict[str, Value | None] = {"mark": entry.mark, "zone": entry.zone,
                                           "use": entry.use}
        for key, term in self.fields:
            miss = bind(term, values[key], new, key)
            if miss:
                return miss
        return new


def tuple_value(t: Tuple, key: str) -> Value | None:
    """One field of a conntrack tuple by its `conntrack -L` key (None if it has none)."""
    if key in ("src", "dst"):
        return t.src if key == "src" else t.dst
    if t.proto == 1:
        return {"type": t.icmp_type, "code": t.icmp_code, "id": t.icmp_id}.get(key)
    if key in ("sport", "dport") and t.proto in (6, 17, 132, 33, 136):
        return t.sport if key == "sport" else t.dport
    return None


def parse_entry_pattern(text: str) -> EntryPattern:
    """Read an entry pattern; PatternError names the word that does not fit."""
    words = text.split()
    if not words:
        raise PatternError("empty pattern: start with a protocol name (tcp, udp, icmp) or *")
    first = words.pop(0)
    if first == "*":
        proto = None
    elif first in _PROTOS:
        proto = _PROTOS[first]
        if words and words[0] == str(proto):
            words.pop(0)
    else:
        raise PatternError(f"word 1: {first!r} is not a protocol name (tcp, udp, icmp, ...) "
                           "or *")
    timeout, state = Term(), None
    orig: list[tuple[str, Term]] = []
    reply: list[tuple[str, Term]] = []
    fields: list[tuple[str, Term]] = []
    flags: dict[str, bool] = {}
    current = orig
    for n, word in enumerate(words, start=2):
        where = f"word {n}"
        if word.lstrip("!").strip("[]") in _FLAGS and word.lstrip("!").startswith("["):
            name = word.lstrip("!").strip("[]")
            if not word.lstrip("!").endswith("]"):
                raise PatternError(f"{where}: {word!r}: write [{name}] or ![{name}]")
            if name in flags:
                raise PatternError(f"{where}: [{name}] given twice")
            flags[name] = not word.startswith("!")
            if name == "UNREPLIED" and current is orig:
                current = reply
            continue
        if "=" not in word:
            if word.isdigit() or word.startswith("$") or word == "*":
                if orig or state is not None or timeout != Term():
                    raise PatternError(f"{where}: {word!r}: the timeout comes right after "
                                       "the protocol")
                timeout = parse_term(word, address=False, what=where)
                continue
            if word in TcpState.__members__:
                if proto not in (None, 6) or orig or state is not None:
                    raise PatternError(f"{where}: {word!r}: a TCP state comes before src=, "
                                       "once, in a tcp pattern")
                state = TcpState[word]
                continue
            raise PatternError(f"{where}: {word!r} is not key=value, a timeout, a TCP state, "
                               "[ASSURED] or [UNREPLIED]")
        key, _, value = word.partition("=")
        if key in _TUPLE_KEYS:
            if current and _TUPLE_KEYS.index(key) <= _TUPLE_KEYS.index(current[-1][0]):
                if current is reply:
                    raise PatternError(f"{where}: {key}= out of order in the reply direction "
                                       "(the order is src, dst, sport, dport or type, code, "
                                       "id; there are two directions)")
                current = reply
            term = parse_term(value, address=key in ("src", "dst"), what=f"{where} ({key})")
            current.append((key, term))
        elif key in _ENTRY_KEYS:
            if any(k == key for k, _ in fields):
                raise PatternError(f"{where}: {key}= given twice")
            fields.append((key, parse_term(value, address=False, what=f"{where} ({key})")))
        else:
            raise PatternError(f"{where}: unknown key {key!r} (known: "
                               f"{', '.join(_TUPLE_KEYS + _ENTRY_KEYS)})")
    return EntryPattern(text, proto, timeout, state, tuple(orig), tuple(reply), tuple(fields),
                        tuple(flags.items()))


# --- relations -----------------------------------------------------------------------------

_OPS = ("==", "!=", "<=", ">=", "<", ">", "not in", "in", "same-class", "other-class")


@dataclass(frozen=True)
class Relation:
    """`LEFT OP RIGHT`: OP one of == != < <= > >= (values), in / not in (a range LOW..HIGH),
    same-class / other-class (the kernel's source port classes: 1-511, 512-1023,
    1024-65535)."""

    text: str
    left: Term
    op: str
    right: Term
    high: int | None = None          # for in / not in: right is the low end

    def captures(self) -> set[str]:
        return {t.capture for t in (self.left, self.right) if t.capture is not None}

    def holds(self, env: Env) -> bool | None:
        """True/False, or None when a capture it names has no value."""
        a, b = self.value(self.left, env), self.value(self.right, env)
        if a is None or b is None:
            return None
        if self.op in ("==", "!="):
            return (a == b) == (self.op == "==")
        if not isinstance(a, int) or not isinstance(b, int):
            return False       # an address has no order, range nor port class
        if self.op in ("in", "not in"):
            assert self.high is not None
            return (b <= a <= self.high) == (self.op == "in")
        if self.op in ("same-class", "other-class"):
            same = _port_class_of(a) == _port_class_of(b)
            return same == (self.op == "same-class")
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[self.op]

    @staticmethod
    def value(term: Term, env: Env) -> Value | None:
        return env.get(term.capture) if term.capture is not None else term.literal


def _port_class_of(port: int) -> int:
    """The kernel's class of a source port (nat_core.port_class: sources 1-511, 512-1023 and
    1024-65535 are remapped within 1-511, 600-1023 and 1024-65535), named by its lowest port."""
    return port_class(port).min


def parse_relation(text: str) -> Relation:
    """Read `$A != $B`, `$P in 1024..65535`, `$P same-class $Q`...; PatternError says why not."""
    stripped = text.strip()
    for op in _OPS:
        left, sep, right = stripped.partition(f" {op} ")
        if not sep or (op == "in" and left.endswith(" not")):
            continue
        lterm = _relation_term(left.strip(), "left side")
        if op in ("in", "not in"):
            low, dots, high = right.strip().partition("..")
            if not dots or not low.isdigit() or not high.isdigit() or int(low) > int(high):
                raise PatternError(f"after {op!r}: {right.strip()!r} is not a range LOW..HIGH")
            return Relation(text, lterm, op, Term(literal=int(low)), int(high))
        rterm = _relation_term(right.strip(), "right side")
        if lterm.capture is None and rterm.capture is None:
            raise PatternError("a relation compares at least one $capture")
        return Relation(text, lterm, op, rterm)
    raise PatternError(f"{stripped!r} is not VALUE OP VALUE (OP: {', '.join(_OPS)}; spaces "
                       "around OP)")


def _relation_term(text: str, what: str) -> Term:
    if text == "*" or not text:
        raise PatternError(f"{what}: expected $NAME, a number or an address, got {text!r}")
    try:
        return parse_term(text, address=False, what=what)
    except PatternError:
        return parse_term(text, address=True, what=what)
