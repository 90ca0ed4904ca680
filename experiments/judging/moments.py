"""The moves of a recorded run as a timeline for the replay: each step that changed the world
(`rules`, `conntrack`, `sysctl`, `host_rules`), at the moment the kernel run recorded for it.

A `rules` step is parsed from the very text the kernel was fed for it (recorded in the
bundle), as the initial ruleset is. A recorded moment that names no move of the spec's plan
(a bundle edited, or a spec changed after the run) is reported as a difference, not applied;
so is a move of the plan with no recorded moment.
"""

from __future__ import annotations

from collections.abc import Callable

from experiments.judging.compare import Diff
from experiments.judging.replay import TimedMove
from experiments.model_config import move_ruleset
from experiments.model_moves import GatewayMoves
from experiments.observed import Observed
from experiments.plan import ConntrackChange, Move, SetHostRules, SetRules, SetSysctls, plan
from experiments.spec import Spec
from nat.pipeline import Gateway

MOVE_TYPES = (SetRules, ConntrackChange, SetSysctls, SetHostRules)


def timed_moves(spec: Spec, observed: Observed) -> tuple[list[TimedMove], list[Diff]]:
    """(time, apply) for every recorded moment, and what does not fit the spec's plan."""
    actions = plan(spec).actions
    base = {k: v for k, v in observed.sysctls.items() if k.startswith("net.netfilter.")}
    movers = GatewayMoves({**base, **spec.sysctls}, lambda mv, fed: move_ruleset(spec, mv, fed))
    timeline: list[TimedMove] = []
    problems: list[Diff] = []
    seen: set[int] = set()
    for m in observed.moments:
        action = actions[m.step] if 0 <= m.step < len(actions) else None
        if not isinstance(action, MOVE_TYPES) or m.step in seen:
            problems.append(Diff(f"moment of step #{m.step + 1}", "move", "recorded",
                                 "no such move in the spec"))
            continue
        seen.add(m.step)
        timeline.append((m.time, _applier(movers, action, m.fed)))
    problems += [Diff(f"step #{i + 1}", "moment", "(not recorded)", "a move of the spec")
                 for i, a in enumerate(actions) if isinstance(a, MOVE_TYPES) and i not in seen]
    return timeline, problems


def _applier(movers: GatewayMoves, move: Move,
             fed: str | None) -> Callable[[Gateway, float], object]:
    def apply(gateway: Gateway, now: float) -> str:
        return movers.apply(gateway, move, now, fed)
    return apply
