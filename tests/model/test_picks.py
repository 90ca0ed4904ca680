"""The search for picks nothing shows (experiments/judging/picks.py), on made-up replays.

Properties: candidates are members of the allowed set other than its default, spread over
it and bounded; the search never returns a trial worse than the first, never spends more
replays than its budget, and finds a consistent pick whenever one is among the candidates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.judging.picks import (
    MAX_CANDIDATES,
    Pick,
    Trial,
    candidates,
    replay_budget,
    search,
)
from nat.choice import Choice
from nat.tuple import Proto, Tuple

BASE = Tuple(Proto.UDP, IPv4Address("203.0.113.10"), IPv4Address("192.168.1.8"), 40000, 7000)
PICK: Pick = (0, "DST")


def _range_choice(lo: int, hi: int) -> Choice[Tuple]:
    return Choice.where(lambda t: t.proto == BASE.proto and t.src == BASE.src
                        and t.dst == BASE.dst and t.sport == BASE.sport and lo <= t.dport <= hi,
                        replace(BASE, dport=lo), f"any free port in {lo}-{hi}")


@settings(max_examples=12, deadline=None)    # each example walks all 65536 keys
@given(st.integers(1, 65535), st.integers(0, 3000))
def test_candidates_are_other_members_spread_and_bounded(lo: int, width: int) -> None:
    hi = min(65535, lo + width)
    choice = _range_choice(lo, hi)
    got = candidates(choice, "DST")
    assert all(choice.contains(t) and t != choice.default for t in got)
    assert len(got) == min(MAX_CANDIDATES, hi - lo)
    assert len(set(got)) == len(got)
    if hi - lo > MAX_CANDIDATES:       # spread: the last candidate is in the upper half
        assert got[-1].dport > (lo + hi) // 2


@settings(max_examples=15, deadline=None)    # each example walks all 65536 keys once
@given(st.integers(7000, 7003), st.integers(1, 64))
def test_search_finds_the_consistent_pick(kernel_port: int, budget: int) -> None:
    """A made-up replay that differs unless the pick is `kernel_port`."""
    choice = _range_choice(7000, 7003)
    calls: list[Mapping[Pick, Tuple]] = []

    def replay(forced: Mapping[Pick, Tuple]) -> Trial:
        calls.append(forced)
        pick = forced.get(PICK, choice.default)
        unseen = () if PICK in forced else ((PICK, choice),)
        return Trial(dict(forced), unseen, 0 if pick.dport == kernel_port else 2)

    best = search(replay, replay({}), budget)
    assert len(calls) - 1 <= budget
    assert best.differences <= 2
    if budget >= 3:
        assert best.differences == 0
        assert best.forced.get(PICK, choice.default).dport == kernel_port


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 5), st.integers(1, 64))
def test_search_never_makes_things_worse_nor_up(first_diffs: int, budget: int) -> None:
    """No member is consistent: the result is never better than the best trial seen, and
    never a trial that was not replayed."""
    choice = _range_choice(1024, 1200)
    seen: list[Trial] = []

    def replay(forced: Mapping[Pick, Tuple]) -> Trial:
        trial = Trial(dict(forced), () if forced else ((PICK, choice),),
                      first_diffs if not forced else first_diffs + 1)
        seen.append(trial)
        return trial

    first = replay({})
    best = search(replay, first, budget)
    assert best is first
    assert len(seen) - 1 <= min(budget, MAX_CANDIDATES)


def test_the_budget_shrinks_for_long_runs() -> None:
    assert replay_budget(10) == 64
    assert replay_budget(100_000) == 4
    assert replay_budget(0) == 64
