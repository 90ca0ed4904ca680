"""Reading a result bundle back and re-judging it (`natlab judge`): no root, no kernel side.

The layout and format versions are in `experiments.bundle_format`; the kernel side writes
bundles (`experiments.kernel.bundle`). The prediction and verdict documents are made here, from
a `Judgement`, so the kernel side never needs to know what a verdict is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.bundle_format import format_problem
from experiments.errors import UserError
from experiments.judging.judgement import Judgement, judge_observed
from experiments.observed import Observed, WirePacket
from experiments.spec import Spec, load_spec
from nat.listing import render


def documents(j: Judgement) -> dict[str, dict[str, Any]]:
    """The bundle's judgement files, by name."""
    return {"prediction.json": prediction_json(j), "verdict.json": verdict_json(j)}


def prediction_json(j: Judgement) -> dict[str, Any]:
    p = j.prediction
    return {
        "conntrack": {name: [render(e) for e in entries] for name, _, entries in p.snapshots},
        "sent": [{"input": i, "iface": iface, "data": data.hex()} for i, iface, data in p.sent],
        "choices": [c.__dict__ for c in p.choices],
        "journeys": [jr.render() for jr in p.journeys],
    }


def verdict_json(j: Judgement) -> dict[str, Any]:
    return {"name": j.name, "verdict": j.status, "diffs": [d.to_json() for d in j.diffs],
            "expect": {"status": j.expect.status, "failures": list(j.expect.failures)},
            "xfail": j.xfail, "notes": list(j.notes)}


def load_observed(bundle: Path) -> tuple[Spec, Observed, dict[str, Any]]:
    """Read back what `judge` needs; errors name the bundle and the file."""
    try:
        meta = json.loads((bundle / "meta.json").read_text())
        problem = format_problem(meta.get("format"))
        if problem is not None:
            raise UserError(f"{bundle}: not a bundle this natlab can read: {problem}")
        spec = load_spec(bundle / "spec.toml", backend=meta["backend"])
        packets = [WirePacket.from_json(json.loads(line))
                   for line in (bundle / "packets.jsonl").read_text().splitlines() if line]
        observed = Observed.from_json(json.loads((bundle / "observed.json").read_text()),
                                      packets)
        recorded = json.loads((bundle / "verdict.json").read_text())
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{bundle}: not a readable natlab bundle: {e}") from None
    return spec, observed, recorded


class Rejudged:
    """`natlab judge`: the verdict recomputed from a bundle, next to the recorded one."""

    def __init__(self, bundle: Path, judgement: Judgement, recorded: dict[str, Any]) -> None:
        self.bundle = bundle
        self.judgement = judgement
        self.recorded = recorded

    @property
    def same(self) -> bool:
        return (self.recorded.get("verdict") == self.judgement.status
                and self.recorded.get("diffs") == [d.to_json() for d in self.judgement.diffs])

    @property
    def status(self) -> str:
        return self.judgement.status if self.same else "CHANGED"

    def render(self) -> str:
        agreement = ("the same as recorded" if self.same else
                     f"DIFFERENT from the recorded {self.recorded.get('verdict')}")
        return f"{self.judgement.render()}\n(re-judged from {self.bundle}: {agreement})"


def judge(bundle: Path) -> Rejudged:
    spec, observed, recorded = load_observed(bundle)
    return Rejudged(bundle, judge_observed(spec, observed), recorded)
