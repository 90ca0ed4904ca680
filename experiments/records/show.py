"""What `natlab run` and `natlab model` print for a spec, as a table view or one JSON line.

Rendering only: the inputs are plain values (a `RunRecord` made by the session from a kernel
run, or a `ModelResult`), so this room needs no root and knows no kernel side.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from experiments.judging.judgement import Judgement
from experiments.modelrun.run import ModelResult
from experiments.observed import Received, Snapshot
from experiments.records.report import conntrack_table, received_table, side_by_side, to_jsonable
from experiments.spec import Spec
from experiments.terminal import literal
from nat.listing import render

VERDICT_STYLE = {"MATCH": "bold green", "XFAIL": "bold yellow", "UNMODELED": "bold yellow"}


@dataclass(frozen=True)
class RunRecord:
    """One `natlab run` of a spec, as shown to the user."""

    spec: Spec
    run_id: str
    checkpoints: tuple[Snapshot, ...]                  # the kernel's, in order
    final: Snapshot                                    # the kernel's table at the end
    received: Mapping[str, tuple[Received, ...]]       # per host, as the kernel delivered
    judgement: Judgement
    bundle: Path

    @property
    def clean(self) -> bool:
        return self.judgement.clean


def console() -> Console:
    """The console natlab prints on. Piped output is not cut to 80 columns: conntrack tuples
    are long."""
    return Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else 200)


def json_line(obj: dict[str, Any]) -> str:
    return json.dumps(to_jsonable(obj), separators=(",", ":")) + "\n"


def heading(out: Console, spec: Spec, side: str) -> None:
    out.rule(f"[bold]{literal(spec.name)}[/bold]  ({side}, topology "
             f"{literal(spec.topology.name)}, backend {literal(spec.backend)})")
    if spec.summary:
        out.print(literal(spec.summary))


def run_json(rec: RunRecord) -> str:
    spec, j = rec.spec, rec.judgement
    return json_line({
        "name": spec.name, "spec": spec.path, "backend": spec.backend,
        "run_id": rec.run_id, "verdict": j.status,
        "expect": {"status": j.expect.status, "failures": list(j.expect.failures)},
        "diffs": [d.to_json() for d in j.diffs],
        "xfail": spec.xfail,
        "warnings": list(j.warnings), "unmodeled": j.unmodeled, "error": j.error,
        "notes": list(j.notes),
        "kernel": {
            "conntrack": list(rec.final.lines),
            "checkpoints": {s.name: list(s.lines) for s in rec.checkpoints},
            "received": rec.received,
        },
        "model": {"conntrack": [render(e) for e in j.model_conntrack]},
        "bundle": rec.bundle,
    })


def run_text(out: Console, rec: RunRecord, verbose: bool) -> str:
    """The table view of one run, as text (rendered where the run happened: a worker)."""
    j = rec.judgement
    with out.capture() as captured:
        heading(out, rec.spec, "kernel and model")
        for snap in rec.checkpoints:
            out.print(conntrack_table(snap.entries(),
                                      f"kernel: conntrack at checkpoint {snap.name!r}"))
        if j.unmodeled is not None:     # no model side to show: the model refused the rules
            out.print(conntrack_table(j.kernel_conntrack,
                                      "kernel: conntrack at the end (kernel only)"))
        else:
            out.print(side_by_side(j.kernel_conntrack, j.model_conntrack, list(j.diffs)))
        out.print(received_table(rec.received, "kernel: received by the hosts"))
        if verbose:
            for journey in j.prediction.journeys:
                out.print(literal(journey.render(), markup=False, newlines=True), markup=False)
        style = VERDICT_STYLE.get(j.status, "bold red")
        out.print(f"[{style}]{literal(j.status)}[/{style}]  expect: {literal(j.expect.status)}")
        lines = [f"  expect: {failure}" for failure in j.expect.failures]
        lines += [f"  error: {j.error}"] if j.error else []
        lines += ([f"  unmodeled: {j.unmodeled} (kernel only: nothing compared)"]
                  if j.unmodeled else [])
        lines += [f"  warning: {w}" for w in j.warnings]
        lines += [f"  known divergence: {j.xfail}"] if j.xfail else []
        lines += [f"  note: {note}" for note in j.notes] + [f"bundle: {rec.bundle}"]
        for line in lines:
            out.print(literal(line, markup=False), markup=False)
    return captured.get()


def model_json(spec: Spec, result: ModelResult) -> str:
    return json_line({
        "name": spec.name, "spec": spec.path, "backend": spec.backend,
        "model": {
            "conntrack": result.conntrack_lines,
            "checkpoints": {n: [render(e) for e in es] for n, es in result.checkpoints},
            "received": result.received,
            "journeys": [j.render() for j in result.journeys],
        },
    })


def show_model(out: Console, spec: Spec, result: ModelResult) -> None:
    heading(out, spec, "model")
    for j in result.journeys:
        out.print(literal(j.render(), markup=False, newlines=True), markup=False,
                  highlight=False, soft_wrap=True)
    for name, entries in result.checkpoints:
        out.print(conntrack_table(entries,
                                  f"model: conntrack at checkpoint {name!r}"))
    out.print(conntrack_table(result.entries, "model: conntrack at the end"))
    out.print(received_table(result.received, "model: received by the hosts"))
