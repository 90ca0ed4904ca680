"""Picks nothing shows: which allowed outcome the kernel may have taken, tried in turn.

The kernel's random picks are usually visible, on a forwarded packet or in its conntrack
table. Some are not: a DNAT `--random` pick that a FORWARD rule then drops leaves no entry
and no packet; a pick for a flow that dies at confirm leaves nothing either. The kernel then
took *some* member of the model's allowed set, and the honest verdict is MATCH when at least
one member makes the model agree with everything observed (kernel-semantics.md §8: the
comparison checks membership, then follows the kernel's pick). This module enumerates the
members worth trying and searches them, a bounded number of replays, first choice first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from nat.choice import Choice
from nat.tuple import Proto, Tuple

MAX_CANDIDATES = 24     # members tried per unseen choice (spread over the allowed keys)
MAX_REPLAYS = 64        # replays one judgement may spend on the search...
REPLAYED_PACKETS = 200_000  # ...and packets replayed in all (a long run gets fewer replays)

Pick = tuple[int, str]


@dataclass(frozen=True)
class Trial:
    """One replay with some picks forced: what it found, and what it left unseen."""

    forced: Mapping[Pick, Tuple]
    unseen: tuple[tuple[Pick, Choice[Tuple]], ...]
    differences: int


def candidates(choice: Choice[Tuple], manip: str) -> tuple[Tuple, ...]:
    """Members of `choice` other than its default, at most MAX_CANDIDATES, spread evenly
    over the allowed keys. Listed members when the set has them; else the 16-bit key the
    manip changes (source port for SRC, destination port for DST, ICMP id for either) is
    walked over its whole range and each tuple asked of the set. Other addresses of an
    address range are not tried: a key's value is what rules and clashes tell apart."""
    members = choice.enumerate()
    if members is None:
        d = choice.default
        if d.proto == Proto.ICMP:
            make: Callable[[int], Tuple] = lambda k: replace(d, sport=k)  # noqa: E731
        elif d.has_ports and manip == "SRC":
            make = lambda k: replace(d, sport=k)  # noqa: E731
        elif d.has_ports:
            make = lambda k: replace(d, dport=k)  # noqa: E731
        else:
            return ()
        members = tuple(t for t in (make(k) for k in range(65536)) if choice.contains(t))
    others = [m for m in members if m != choice.default]
    if len(others) <= MAX_CANDIDATES:
        return tuple(others)
    step = len(others) / MAX_CANDIDATES
    return tuple(others[int(i * step)] for i in range(MAX_CANDIDATES))


def replay_budget(packets: int) -> int:
    """How many replays the search may spend on a run of `packets` captured packets."""
    return max(4, min(MAX_REPLAYS, REPLAYED_PACKETS // max(1, packets)))


def search(replay: Callable[[Mapping[Pick, Tuple]], Trial], first: Trial,
           budget: int = MAX_REPLAYS) -> Trial:
    """The trial with the fewest differences, found greedily: for each unseen choice in
    the order the replay met it, the member that lowers the count most is kept (the first
    that brings it to zero ends the search). At most `budget` replays."""
    best = first
    spent = 0
    tried: set[Pick] = set()
    while best.differences and spent < budget:
        todo = [(pick, choice) for pick, choice in best.unseen if pick not in tried]
        if not todo:
            break
        pick, choice = todo[0]
        tried.add(pick)
        improved = best
        for member in candidates(choice, pick[1]):
            if spent >= budget:
                break
            spent += 1
            trial = replay({**best.forced, pick: member})
            if trial.differences < improved.differences:
                improved = trial
                if not trial.differences:
                    break
        best = improved
    return best
