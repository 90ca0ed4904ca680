"""Checking a spec's `[expect]` predicates against what a run observed.

The predicates are `[[expect.entry]]` (conntrack entries matching a pattern, counted, in the
final table or at a checkpoint), `[[expect.received]]` (what a host received, counted) and
`relations` (between values the patterns captured). Captures make them one problem, not a
list: "$P in the first entry differs from $Q in the second" holds if SOME choice of matching
entries and packets gives values that satisfy everything. So the check is a small search:
each item, in file order, takes one of the observations that match it given the captures so
far (a capture's first use takes its value), and the relations are checked when every item
has had its turn. The first assignment with no failure wins; if there is none, the assignment
with the fewest failures is reported, one line per failed predicate, naming the field and the
values seen (issue 13: the oracle must say why it says no).

Pure: the observations come in as values (experiments.observed), nothing is read here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from experiments.expect_patterns import (
    EntryPattern,
    Env,
    Miss,
    Relation,
    Term,
    Value,
    bind,
    parse_entry_pattern,
    parse_relation,
)
from experiments.observed import FINAL, Received
from experiments.spec_model import EntryExpect, Expect
from experiments.spec_model import Received as ReceivedExpect
from nat.entry import Entry
from nat.listing import render

MAX_ASSIGNMENTS = 5000      # bounds the search on large tables; plenty for a spec's few items
_SHOWN = 3                  # observations listed in one failure line
_ICMP_NOTE = re.compile(r"type (\d+) code (\d+)")
_PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1}


@dataclass(frozen=True)
class Observations:
    """What the predicates look at: the conntrack tables by snapshot name (checkpoints and
    `final`), with the time each was taken, and what every host received."""

    tables: Mapping[str, Sequence[Entry]]
    times: Mapping[str, float]
    received: Sequence[Received]
    addresses: Mapping[str, tuple[IPv4Address, ...]]   # host name -> its addresses


# --- one item ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """One counted predicate: where it is in the spec, what it looks at, how to match one
    observation, and how to show one."""

    where: str
    label: str
    candidates: tuple[object, ...]
    matcher: Callable[[object, Env], dict[str, Value] | Miss]
    show: Callable[[object], str]
    count: int | None
    at_least: int | None
    at_most: int | None

    def bounds(self) -> tuple[int, int | None]:
        if self.count is not None:
            return self.count, self.count
        if self.at_least is None and self.at_most is None:
            return 1, None
        return self.at_least or 0, self.at_most

    def evaluate(self, env: Env) -> tuple[list[dict[str, Value]], str | None]:
        """The extended captures of every matching observation, and the failure line (None if
        the count is as wanted)."""
        found: list[dict[str, Value]] = []
        shown: list[str] = []
        misses: list[tuple[object, Miss]] = []
        for obs in self.candidates:
            got = self.matcher(obs, env)
            if isinstance(got, Miss):
                misses.append((obs, got))
            else:
                found.append(got)
                shown.append(self.show(obs))
        low, high = self.bounds()
        n = len(found)
        if low <= n and (high is None or n <= high):
            return found, None
        wanted = (f"exactly {low}" if low == high else
                  f"at least {low}" if high is None else
                  f"at most {high}" if low == 0 else f"{low} to {high}")
        head = f"{self.where}: {self.label.format(n=n)}{_known(env, self.label)}"
        if n == 0:
            near = _nearest(misses)
            seen = (f"; nearest: {near[1]} in {self.show(near[0])}" if near
                    else "; nothing of this kind was seen")
            return found, f"{head}, wanted {wanted}{seen}"
        listed = "; ".join(shown[:_SHOWN]) + (f"; ... ({n - _SHOWN} more)" if n > _SHOWN else "")
        return found, f"{head}, wanted {wanted}: {listed}"


def _known(env: Env, label: str) -> str:
    """The values of the captures a label names that are already fixed, e.g. ` (P=40000)`."""
    names = [n for n in re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", label) if n in env]
    if not names:
        return ""
    return " (" + ", ".join(f"{n}={env[n]}" for n in dict.fromkeys(names)) + ")"


def _nearest(misses: list[tuple[object, Miss]]) -> tuple[object, Miss] | None:
    """The observation that fitted the most fields before one did not (the first on ties);
    one of another protocol says nothing and is never the nearest."""
    best: tuple[object, Miss] | None = None
    for obs, miss in misses:
        if miss.field != "proto" and (best is None or miss.depth > best[1].depth):
            best = (obs, miss)
    return best


def _entry_item(where: str, item: EntryExpect, tables: Mapping[str, Sequence[Entry]]
                ) -> _Item:
    pattern = parse_entry_pattern(item.match)
    timeout = item.timeout

    def matcher(obs: object, env: Env) -> dict[str, Value] | Miss:
        assert isinstance(obs, Entry)
        return pattern.match(obs, env, timeout)

    def show(obs: object) -> str:
        assert isinstance(obs, Entry)
        return f'"{render(obs)}"'

    table = "the final table" if item.at == FINAL else f"checkpoint {item.at!r}"
    quoted = repr(item.match).replace("{", "{{").replace("}", "}}")
    label = "{n} entries of " + table + " match " + quoted
    if timeout is not None:
        label += f" with timeout in {timeout[0]}..{timeout[1]}"
    return _Item(where, label, tuple(tables.get(item.at, ())), matcher, show,
                 item.count, item.at_least, item.at_most)


def _received_item(where: str, item: ReceivedExpect, obs: Observations) -> _Item:
    inner = parse_entry_pattern(item.inner) if item.inner is not None else None
    until = obs.times.get(item.at) if item.at != FINAL else None
    candidates = tuple(r for r in obs.received
                       if r.host == item.host and (until is None or r.time <= until))

    def matcher(o: object, env: Env) -> dict[str, Value] | Miss:
        assert isinstance(o, Received)
        return match_received(item, o, env, obs.addresses, inner)

    def show(o: object) -> str:
        assert isinstance(o, Received)
        return o.render()

    return _Item(where, describe_received(item), candidates, matcher, show, item.count,
                 item.at_least, item.at_most)


def describe_received(item: ReceivedExpect) -> str:
    """The item as a phrase with `{n}` for the count: `laptop received {n} packets like
    tcp [R] 203.0.113.10:* > *:443`."""
    words: list[str] = [item.proto]
    if item.flags is not None:
        words.append(f"[{item.flags}]")
    if item.icmp_type is not None:
        words.append(f"type {item.icmp_type}" + (f" code {item.icmp_code}"
                                                 if item.icmp_code is not None else ""))
    words.append(f"{item.src or '*'}:{item.sport or '*'} > {item.dst or '*'}:{item.dport or '*'}")
    if item.payload is not None:
        words.append(repr(item.payload))
    if item.inner is not None:
        words.append(f"quoting {item.inner!r}")
    at = "" if item.at == FINAL else f" by checkpoint {item.at!r}"
    text = " ".join(words).replace("{", "{{").replace("}", "}}")
    return f"{item.host} received {{n}} packets like {text}{at}"


def match_received(item: ReceivedExpect, got: Received, env: Env,
                   addresses: Mapping[str, tuple[IPv4Address, ...]],
                   inner: EntryPattern | None) -> dict[str, Value] | Miss:
    """Whether one received item fits the expectation, extending the captures."""
    new = dict(env)
    if got.proto != item.proto:
        return Miss("proto", item.proto, got.proto)
    if item.proto == "tcp" and (item.flags is None) != (got.flags is None):
        return Miss("flags", item.flags or "(data)", got.flags or "(data)")
    if item.flags is not None and set(item.flags) != set(got.flags or ""):
        return Miss("flags", item.flags, got.flags or "")
    for key, want, seen in (("src", item.src, got.src), ("dst", item.dst, got.dst)):
        if want is None or want == "*":
            continue
        if want.startswith("$"):
            miss = bind(Term(capture=want[1:]), seen, new, key)
            if miss:
                return miss
        elif want in addresses:
            if seen not in addresses[want]:
                return Miss(key, f"{want}'s address", str(seen))
        elif str(seen) != want:
            return Miss(key, want, str(seen))
    for key, port, seen_port in (("sport", item.sport, got.sport),
                                 ("dport", item.dport, got.dport)):
        if port is None:
            continue
        term = (Term(literal=port) if isinstance(port, int) else
                Term() if port == "*" else Term(capture=port[1:]))
        miss = bind(term, seen_port, new, key)
        if miss:
            return miss
    if item.payload is not None and item.payload.encode() != got.payload:
        return Miss("payload", repr(item.payload), repr(got.payload.decode("utf-8", "replace")))
    if item.proto == "icmp":
        type_code = _ICMP_NOTE.search(got.note)
        seen_type, seen_code = ((int(type_code[1]), int(type_code[2])) if type_code
                                else (None, None))
        for key, want_i, seen_i in (("icmp_type", item.icmp_type, seen_type),
                                    ("icmp_code", item.icmp_code, seen_code)):
            if want_i is not None and want_i != seen_i:
                return Miss(key, str(want_i), str(seen_i))
        if inner is not None:
            return _match_inner(inner, got.payload, new)
    return new


def _match_inner(pattern: EntryPattern, quoted: bytes, env: dict[str, Value]
                 ) -> dict[str, Value] | Miss:
    """The header an ICMP error quotes (IPv4 header + 8 bytes) against a one-direction
    pattern: proto, src, dst and sport/dport (or type/code/id for a quoted ICMP message)."""
    if len(quoted) < 20:
        return Miss("inner", pattern.text, "no quoted header")
    ihl = (quoted[0] & 0x0F) * 4
    proto = quoted[9]
    if pattern.proto is not None and proto != pattern.proto:
        return Miss("inner.proto", str(pattern.proto), str(proto))
    l4 = quoted[ihl:ihl + 8]
    values: dict[str, Value | None] = {"src": IPv4Address(quoted[12:16]),
                                       "dst": IPv4Address(quoted[16:20])}
    if len(l4) >= 4 and proto in (6, 17):
        values["sport"] = int.from_bytes(l4[0:2], "big")
        values["dport"] = int.from_bytes(l4[2:4], "big")
    if len(l4) >= 8 and proto == 1:
        values.update({"type": l4[0], "code": l4[1], "id": int.from_bytes(l4[4:6], "big")})
    for key, term in pattern.orig:
        miss = bind(term, values.get(key), env, f"inner.{key}")
        if miss:
            return miss
    return env


# --- the search ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """The failure lines of the best assignment found (empty: every predicate holds), and
    the capture values it used."""

    failures: tuple[str, ...]
    captures: Mapping[str, Value]


def check_predicates(expect: Expect, obs: Observations) -> Outcome:
    """Every predicate of `expect` against the observations (see the module docstring)."""
    items = [_entry_item(f"expect.entry.{i}", e, obs.tables)
             for i, e in enumerate(expect.entry)]
    items += [_received_item(f"expect.received.{i}", r, obs)
              for i, r in enumerate(expect.received)]
    relations = [(f"expect.relations.{i}", parse_relation(text))
                 for i, text in enumerate(expect.relations)]
    best: Outcome | None = None
    for failures, env in _assignments(items, 0, {}, [], [0]):
        failures = failures + _relation_failures(relations, env)
        if best is None or len(failures) < len(best.failures):
            best = Outcome(tuple(failures), dict(env))
        if not failures:
            break
    assert best is not None
    return best


def _assignments(items: Sequence[_Item], i: int, env: dict[str, Value], failures: list[str],
                 budget: list[int]) -> Iterator[tuple[list[str], dict[str, Value]]]:
    """Every way of giving each item one of its matches (or none, when it has none), depth
    first, at most MAX_ASSIGNMENTS of them."""
    if i == len(items):
        budget[0] += 1
        yield failures, env
        return
    found, failure = items[i].evaluate(env)
    here = failures + ([failure] if failure else [])
    choices = _distinct(found) or [env]
    for choice in choices:
        if budget[0] >= MAX_ASSIGNMENTS:
            return
        yield from _assignments(items, i + 1, choice, here, budget)


def _distinct(envs: list[dict[str, Value]]) -> list[dict[str, Value]]:
    """The capture assignments without repeats (many entries may give the same values)."""
    seen: set[tuple[tuple[str, str], ...]] = set()
    out = []
    for env in envs:
        key = tuple(sorted((k, str(v)) for k, v in env.items()))
        if key not in seen:
            seen.add(key)
            out.append(env)
    return out


def _relation_failures(relations: Sequence[tuple[str, Relation]], env: Env) -> list[str]:
    out = []
    for where, rel in relations:
        holds = rel.holds(env)
        names = sorted(rel.captures())
        values = ", ".join(f"{n}={env[n]}" if n in env else f"{n} has no value"
                           for n in names)
        if holds is None:
            out.append(f"{where}: {rel.text!r} cannot be checked: {values} (no item "
                       "matched to give it one)")
        elif not holds:
            out.append(f"{where}: {rel.text!r} is false: {values}")
    return out
