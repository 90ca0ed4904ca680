"""Judging a run: what the kernel did (as recorded) against what the model predicts.

`judge_observed` is a pure function of the spec and the `Observed` part of a kernel run
(experiments.observed), used both right after a run and by `natlab judge BUNDLE` later,
anywhere, without root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from experiments.judging.compare import Diff, Verdict, compare_conntrack, compare_packets, verdict
from experiments.judging.moments import timed_moves
from experiments.judging.replay import Prediction, replay
from experiments.model_config import model_config
from experiments.observed import FINAL, Observed, Received
from experiments.spec import Spec
from nat.entry import Entry
from nat.listing import parse_pattern


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

    @property
    def clean(self) -> bool:
        return self.status in ("MATCH", "XFAIL") and self.expect.status != "FAIL"

    def render(self) -> str:
        lines = [f"{self.name}: {self.status}  (expect: {self.expect.status})"]
        lines += [f"  {d.where}: {d.field}: kernel {d.kernel} | model {d.model}"
                  for d in self.diffs]
        lines += [f"  expect: {f}" for f in self.expect.failures]
        if self.xfail:
            lines.append(f"  known divergence: {self.xfail}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def judge_observed(spec: Spec, observed: Observed) -> Judgement:
    """Replay the captured input through the model and compare everything."""
    config = model_config(spec, observed.kernel_release, observed.sysctls,
                          observed.ruleset_fed)
    times = [(s.name, s.time) for s in observed.snapshots]
    moves, move_problems = timed_moves(spec, observed)
    prediction = replay(config, list(observed.packets), times, moves)
    diffs: list[Diff] = []
    model_by_name = {name: list(entries) for name, _, entries in prediction.snapshots}
    final_model: list[Entry] = []
    final_kernel: list[Entry] = []
    for snap in observed.snapshots:
        kernel_entries = snap.entries()
        model_entries = model_by_name.get(snap.name, [])
        diffs += compare_conntrack(snap.name, kernel_entries, model_entries)
        if snap.name == FINAL:
            final_model, final_kernel = model_entries, kernel_entries
    diffs += compare_packets(list(observed.packets), list(prediction.sent))
    diffs += move_problems
    for c in prediction.choices:
        if not c.allowed_kernel:
            diffs.append(Diff(f"choice at packet #{c.packet_index + 1}", f"{c.manip} binding",
                              c.kernel or "(not seen)", f"allowed: {c.allowed}"))
    for index, why in prediction.unparsed:
        diffs.append(Diff(f"packet #{index + 1}", "unreadable by the model", why, ""))
    notes = tuple(f"step did not complete: {s}" for s in observed.incomplete_steps)
    return Judgement(
        name=spec.name,
        status=verdict(diffs, spec.xfail),
        diffs=tuple(diffs),
        expect=check_expect(spec, final_kernel, observed.received),
        prediction=prediction,
        kernel_conntrack=tuple(final_kernel),
        model_conntrack=tuple(final_model),
        xfail=spec.xfail,
        notes=notes,
    )


def check_expect(spec: Spec, kernel: list[Entry],
                 received: tuple[Received, ...]) -> ExpectResult:
    """A spec's [expect]: each conntrack line must match one kernel entry on the fields it
    names; each `received` item must match something the host received."""
    if spec.expect is None or (not spec.expect.conntrack and not spec.expect.received):
        return ExpectResult("NONE")
    failures = []
    for line in spec.expect.conntrack:
        pattern = parse_pattern(line)
        if not any(pattern.matches(e) for e in kernel):
            failures.append(f"no kernel entry matches: {line}")
    for want in spec.expect.received:
        if not any(_received_matches(want, got) for got in received):
            failures.append(f"{want.host} did not receive {want.proto} "
                            f"{want.src or '*'}:{want.sport or '*'} > "
                            f"{want.dst or '*'}:{want.dport or '*'}"
                            + (f" {want.payload!r}" if want.payload is not None else ""))
    return ExpectResult("FAIL" if failures else "PASS", tuple(failures))


def _received_matches(want: Any, got: Received) -> bool:
    return (want.host == got.host and want.proto == got.proto
            and (want.src is None or want.src == str(got.src))
            and (want.dst is None or want.dst == str(got.dst))
            and (want.sport is None or want.sport == got.sport)
            and (want.dport is None or want.dport == got.dport)
            and (want.payload is None or want.payload.encode() == got.payload))
