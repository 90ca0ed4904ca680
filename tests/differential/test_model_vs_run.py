"""`natlab model` against `natlab run` on the gateway's own flows (issue 13, part 3).

`natlab model` runs a spec with stand-in hosts and no kernel; `natlab run` judges the kernel's
run through the replay. For flows the gateway itself starts (through nat OUTPUT DNAT, through
MASQUERADE --random, an answer that goes through lo) the two must tell the same story: the
same entries (the kernel's random port aside, which the model cannot know), the same hosts
receiving from the same addresses. Each on every backend.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from experiments.backends import BACKENDS
from experiments.backends import BackendName as Backend
from experiments.cli import main
from experiments.library import builtin_spec_paths
from experiments.modelrun.run import run_on_model
from experiments.observed import FINAL, Received
from experiments.records.bundle import load_observed
from experiments.spec import load_spec
from nat.entry import Entry

pytestmark = pytest.mark.kernel

OWN_FLOWS = {"output-dnat-own-flow": False, "masquerade-random-own-flow": True,
             "input-snat-answer-via-lo": False}
PATHS = {p.stem: p for p in builtin_spec_paths() if p.stem in OWN_FLOWS}
RUNS = [(name, backend) for name in sorted(OWN_FLOWS) for backend in BACKENDS]


@pytest.mark.parametrize(("name", "backend"), RUNS, ids=[f"{n}-{b}" for n, b in RUNS])
def test_model_alone_predicts_the_judged_run(name: str, backend: Backend, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["run", "--json", "--out", str(tmp_path), "--backend", backend,
                   str(PATHS[name])])
    out, err = capsys.readouterr()
    result = json.loads(out.splitlines()[0])
    assert status == 0 and result["verdict"] == "MATCH", (out, err)
    _, observed, _ = load_observed(Path(result["bundle"]))
    kernel = next(s.entries() for s in observed.snapshots if s.name == FINAL)
    alone = run_on_model(load_spec(PATHS[name], backend=backend))
    random_port = OWN_FLOWS[name]

    def shape(e: Entry) -> tuple[object, ...]:
        reply = replace(e.reply, dport=0) if random_port else e.reply
        return (e.orig, reply, e.state, e.unreplied, e.assured)

    def got(r: Received) -> tuple[object, ...]:
        return (r.host, r.proto, r.src, r.dst, r.payload if r.proto != "icmp" else b"")

    assert sorted(map(shape, alone.entries), key=str) == sorted(map(shape, kernel), key=str)
    assert sorted(map(got, alone.received), key=str) == sorted(map(got, observed.received),
                                                               key=str)
