"""Result bundles: one directory per run, written atomically, never overwritten.

A bundle holds everything needed to re-judge the run without root (the spec, the captured
packets, the conntrack dumps, the gateway's sysctls and the kernel release) and the record
a reader wants (versions, the ruleset as loaded, pcaps per interface, the event log, the
prediction, the diffs and the verdict):

    spec.toml  meta.json  observed.json  packets.jsonl  prediction.json  verdict.json
    ruleset.txt  conntrack/<snapshot>.txt  events.txt  pcap/<iface>.pcap  pcap/all.pcap

It is written into a hidden sibling directory and renamed into place as a whole, so an
interrupted run leaves either a complete bundle or none.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from experiments.errors import UserError
from experiments.judging.judgement import (
    FINAL,
    Judgement,
    Observed,
    ObservedReceived,
    ObservedSnapshot,
    judge_observed,
)
from experiments.kernel.run import Observation
from experiments.observed import WirePacket
from experiments.spec import Spec, load_spec, spec_hash

FORMAT = 1


def observed_from(obs: Observation) -> Observed:
    snaps = [*obs.checkpoints, obs.final]
    received = tuple(
        ObservedReceived(r.host, r.proto, str(r.src), str(r.dst), r.sport, r.dport, r.payload)
        for items in obs.received.values() for r in items)
    return Observed(
        kernel_release=obs.versions.kernel,
        sysctls=dict(obs.sysctls),
        snapshots=tuple(ObservedSnapshot(s.name if s is not obs.final else FINAL, s.time,
                                         tuple(s.lines)) for s in snaps),
        packets=tuple(obs.wire_packets()),
        received=received,
        incomplete_steps=tuple(f"#{s.index + 1} {s.action}: {s.detail}"
                               for s in obs.steps if not s.completed),
        ruleset_fed=obs.ruleset.fed if obs.ruleset.fed.strip() else None,
    )


def write_bundle(results: Path, spec: Spec, obs: Observation, observed: Observed,
                 judgement: Judgement) -> Path:
    """Write the bundle under `results/` and return its path."""
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    final = results / f"{stamp}-{spec.name}-{spec.backend}-{obs.run_id}"
    if final.exists():
        raise UserError(f"{final}: a bundle of that name exists; natlab never overwrites one")
    tmp = results / f".partial-{obs.run_id}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:  # from the mkdir on: a Ctrl-C right after it must not leave the directory
        tmp.mkdir()
        (tmp / "spec.toml").write_bytes(spec.path.read_bytes())
        _json(tmp / "meta.json", {
            "format": FORMAT, "name": spec.name, "backend": spec.backend,
            "run_id": obs.run_id, "spec_hash": spec_hash(spec.path),
            "spec_path": str(spec.path), "versions": obs.versions.to_json(),
            "timing": obs.timing, "capture_dropped": obs.capture_dropped,
            "steps": [{"index": s.index, "action": s.action, "start": s.start, "end": s.end,
                       "completed": s.completed, "detail": s.detail} for s in obs.steps],
        })
        _json(tmp / "observed.json", observed.to_json())
        with (tmp / "packets.jsonl").open("w") as f:
            for p in observed.packets:
                f.write(json.dumps(p.to_json()) + "\n")
        (tmp / "ruleset.txt").write_text(_ruleset_text(obs))
        (tmp / "conntrack").mkdir()
        for s in observed.snapshots:
            (tmp / "conntrack" / f"{s.name}.txt").write_text("".join(x + "\n" for x in s.lines))
        if obs.event_log.exists():
            shutil.copyfile(obs.event_log, tmp / "events.txt")
        (tmp / "pcap").mkdir()
        for iface, path in obs.pcaps.items():
            if path.exists():
                shutil.copyfile(path, tmp / "pcap" / f"{iface}.pcap")
        if obs.pcap.exists():
            shutil.copyfile(obs.pcap, tmp / "pcap" / "all.pcap")
        _json(tmp / "prediction.json", prediction_json(judgement))
        _json(tmp / "verdict.json", verdict_json(judgement))
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _ruleset_text(obs: Observation) -> str:
    """The ruleset as the kernel holds it (read back after loading)."""
    return obs.ruleset.readback


def prediction_json(j: Judgement) -> dict[str, Any]:
    from nat.listing import render

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


def _json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def load_observed(bundle: Path) -> tuple[Spec, Observed, dict[str, Any]]:
    """Read back what `judge` needs; errors name the bundle and the file."""
    try:
        meta = json.loads((bundle / "meta.json").read_text())
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
