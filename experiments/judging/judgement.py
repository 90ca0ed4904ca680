"""Judging a run: what the kernel did (as recorded) against what the model predicts.

`judge_observed` is a pure function of the spec and the `Observed` part of a kernel run
(experiments.observed), used both right after a run and by `natlab judge BUNDLE` later,
anywhere, without root.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from experiments.judging.compare import Diff, Verdict, compare_conntrack, compare_packets, verdict
from experiments.judging.moments import timed_moves
from experiments.judging.picks import Pick, Trial, replay_budget, search
from experiments.judging.predicates import Observations, check_predicates
from experiments.judging.replay import (
    FORCED,
    TABLE,
    UNSEEN,
    WIRE,
    ChoiceRecord,
    Prediction,
    unseen_picks,
)
from experiments.model_config import model_config
from experiments.observed import FINAL, Observed, Received
from experiments.spec import Spec
from nat.entry import Entry
from nat.hook_table import ChainNotModelled
from nat.listing import parse_pattern
from nat.rules.ast import UnsupportedRule
from nat.tuple import Tuple

NO_PREDICTION = Prediction((), (), (), (), ())
"""What an UNMODELED run predicts: nothing (the model refused the rules)."""


@dataclass(frozen=True)
class ExpectResult:
    status: str                     # PASS / FAIL / NONE
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Judgement:
    name: str
    status: Verdict
    diffs: tuple[Diff, ...]
    expect: ExpectResult
    prediction: Prediction
    kernel_conntrack: tuple[Entry, ...]     # the kernel's table at the end, as parsed
    model_conntrack: tuple[Entry, ...]      # the model's table at the end
    xfail: str | None = None
    notes: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())   # steps that failed: the run is not whole
    unmodeled: str | None = None                    # the construct the model refused
    error: str | None = None                        # the infrastructure failure, if any

    @property
    def clean(self) -> bool:
        """Exit status 0: MATCH or XFAIL, or UNMODELED (nothing to compare: the expectation
        is the only judge), with no expectation failing."""
        return (self.status in ("MATCH", "XFAIL", "UNMODELED")
                and self.expect.status != "FAIL")

    def render(self) -> str:
        lines = [f"{self.name}: {self.status}  (expect: {self.expect.status})"]
        lines += [f"  {d.where}: {d.field}: kernel {d.kernel} | model {d.model}"
                  for d in self.diffs]
        lines += [f"  expect: {f}" for f in self.expect.failures]
        if self.error:
            lines.append(f"  error: {self.error}")
        if self.unmodeled:
            lines.append(f"  unmodeled: {self.unmodeled} (kernel only: nothing compared)")
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.xfail:
            lines.append(f"  known divergence: {self.xfail}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def judge_observed(spec: Spec, observed: Observed) -> Judgement:
    """Replay the captured input through the model and compare everything. Rules the model
    refuses (a construct outside its scope) give UNMODELED: the kernel's run stands alone and
    only [expect] judges it. A recorded infrastructure failure gives ERROR.

    Where the kernel's pick among allowed outcomes shows neither on the wire nor in its
    table, the picks the model allows are tried (`experiments.judging.picks`): the verdict
    is MATCH when one of them agrees with everything observed."""
    warnings, notes = step_warnings(spec, observed.incomplete_steps)
    try:
        config = model_config(spec, observed.kernel_release, observed.sysctls,
                              observed.ruleset_fed)
    except (UnsupportedRule, ChainNotModelled) as e:
        return _unmodeled(spec, observed, str(e), warnings, notes)
    times = [(s.name, s.time) for s in observed.snapshots]
    moves, move_problems = timed_moves(spec, observed)
    evidence = tuple((s.time, tuple(s.entries())) for s in observed.snapshots)
    packets = list(observed.packets)
    results: dict[int, tuple[Prediction, list[Diff]]] = {}

    def attempt(forced: Mapping[Pick, Tuple]) -> Trial:
        prediction, unseen = unseen_picks(config, packets, times, evidence=evidence,
                                          forced=forced, moves=moves)
        diffs = _differences(observed, prediction) + move_problems
        trial = Trial(dict(forced), tuple((u.pick, u.choice) for u in unseen), len(diffs))
        results[id(trial)] = (prediction, diffs)
        return trial

    best = search(attempt, attempt({}), replay_budget(len(packets)))
    prediction, diffs = results[id(best)]
    model_by_name = {name: list(entries) for name, _, entries in prediction.snapshots}
    final_kernel = next((s.entries() for s in observed.snapshots if s.name == FINAL), [])
    final_model = model_by_name.get(FINAL, []) if any(
        s.name == FINAL for s in observed.snapshots) else []
    notes += tuple(_unseen_note(c) for c in prediction.choices if c.source in (UNSEEN, FORCED))
    return Judgement(
        name=spec.name,
        status=verdict(diffs, spec.xfail, observed.error),
        diffs=tuple(diffs),
        expect=_with_warnings(check_expect(spec, final_kernel, observed.received,
                                           _checkpoints(observed)), warnings),
        prediction=prediction,
        kernel_conntrack=tuple(final_kernel),
        model_conntrack=tuple(final_model),
        xfail=spec.xfail,
        notes=notes,
        warnings=warnings,
        error=observed.error,
    )


def _differences(observed: Observed, prediction: Prediction) -> list[Diff]:
    """Everything that differs between the run and one replay of it."""
    diffs: list[Diff] = []
    model_by_name = {name: list(entries) for name, _, entries in prediction.snapshots}
    for snap in observed.snapshots:
        diffs += compare_conntrack(snap.name, snap.entries(), model_by_name.get(snap.name, []))
    diffs += compare_packets(list(observed.packets), list(prediction.sent))
    for c in prediction.choices:
        if c.source in (WIRE, TABLE) and not c.allowed_kernel:
            seen_in = "" if c.source == WIRE else " (seen in the kernel's table)"
            diffs.append(Diff(f"choice at packet #{c.packet_index + 1}{seen_in}",
                              f"{c.manip} binding", c.kernel, f"allowed: {c.allowed}"))
    for index, why in prediction.unparsed:
        diffs.append(Diff(f"packet #{index + 1}", "unreadable by the model", why, ""))
    return diffs


def _unseen_note(c: ChoiceRecord) -> str:
    how = ("a pick consistent with everything observed" if c.source == FORCED
           else "the model's default")
    return (f"choice at packet #{c.packet_index + 1} ({c.manip}): the kernel's pick shows "
            f"neither on the wire nor in its table; followed {how}: {c.chosen} "
            f"(allowed: {c.allowed})")


def _unmodeled(spec: Spec, observed: Observed, construct: str, warnings: tuple[str, ...],
               notes: tuple[str, ...]) -> Judgement:
    """The kernel's run judged by [expect] alone: the model refused `construct`."""
    final = next((s.entries() for s in observed.snapshots if s.name == FINAL), [])
    return Judgement(
        name=spec.name,
        status=verdict([], spec.xfail, observed.error, construct),
        diffs=(),
        expect=_with_warnings(check_expect(spec, final, observed.received, _checkpoints(observed)),
                              warnings),
        prediction=NO_PREDICTION,
        kernel_conntrack=tuple(final),
        model_conntrack=(),
        xfail=spec.xfail,
        notes=notes,
        warnings=warnings,
        unmodeled=construct,
        error=observed.error,
    )


_STEP_NUMBER = re.compile(r"#(\d+) ")


def step_warnings(spec: Spec, incomplete: tuple[str, ...]) -> tuple[tuple[str, ...],
                                                                     tuple[str, ...]]:
    """(warnings, notes) for the steps that did not complete (`#N action: detail`, N counted
    from 1). A step the spec marks `unanswered = true` is expected to wait in vain (its
    answer is dropped on purpose): its passed deadline is only a note. Everything else (a
    send that failed, a deadline passed where an answer was due) is a warning."""
    warnings, notes = [], []
    for text in incomplete:
        m = _STEP_NUMBER.match(text)
        n = int(m.group(1)) - 1 if m else -1
        step = spec.steps[n] if 0 <= n < len(spec.steps) else None   # sleeps never fail
        on_purpose = (getattr(step, "unanswered", False) is True
                      and "failed" not in text.split(":", 1)[-1])
        if on_purpose:
            notes.append(f"step left unanswered, as the spec says: {text}")
        else:
            warnings.append(f"step did not complete: {text}")
    return tuple(warnings), tuple(notes)


def _with_warnings(result: ExpectResult, warnings: tuple[str, ...]) -> ExpectResult:
    """A failed step fails the expectation too: a run that did not happen as written cannot
    pass, with or without [expect]."""
    if not warnings:
        return result
    return ExpectResult("FAIL", result.failures + warnings)


def _checkpoints(observed: Observed) -> dict[str, tuple[float, list[Entry]]]:
    """The kernel's tables by snapshot name, with their times (for [expect]'s `at`)."""
    return {s.name: (s.time, s.entries()) for s in observed.snapshots}


def check_expect(spec: Spec, kernel: list[Entry], received: tuple[Received, ...],
                 checkpoints: Mapping[str, tuple[float, list[Entry]]] | None = None
                 ) -> ExpectResult:
    """A spec's [expect]: each exact conntrack line must match one kernel entry at the end;
    the predicates (entries, received, relations) are checked by
    experiments.judging.predicates, at the end or at the checkpoints they name (`checkpoints`:
    name -> (time, table))."""
    e = spec.expect
    if e is None or not (e.conntrack or e.received or e.entry or e.relations):
        return ExpectResult("NONE")
    failures = []
    for line in e.conntrack:
        pattern = parse_pattern(line)
        if not any(pattern.matches(entry) for entry in kernel):
            failures.append(f"no kernel entry matches: {line}")
    tables: dict[str, list[Entry]] = {FINAL: kernel}
    times: dict[str, float] = {}
    for name, (time, entries) in (checkpoints or {}).items():
        if name != FINAL:
            tables[name], times[name] = entries, time
    addresses = {h.name: h.addresses() for h in spec.topology.hosts}
    outcome = check_predicates(e, Observations(tables, times, received, addresses))
    failures += outcome.failures
    return ExpectResult("FAIL" if failures else "PASS", tuple(failures))
