"""One spec's run, whole: the kernel run, the judgement, the bundle.

The flow of design.md written once: `run_on_kernel` (kernel side) gives an `Observation`; its
`Observed` part goes to `judge_observed` (judging); the bundle is written with the judgement's
documents (records). The command line (`natlab run`) and the benchmark both run specs through
here, so the steps of a run cannot drift apart. Needs root.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from experiments.errors import InfrastructureError, UserError
from experiments.judging.judgement import Judgement, judge_observed
from experiments.kernel.bundle import write_bundle
from experiments.kernel.run import (
    InfrastructureFailure,
    Observation,
    observed_from,
    run_on_kernel,
)
from experiments.observed import Observed
from experiments.records.bundle import documents
from experiments.records.packet_notes import packet_comments
from experiments.records.show import RunRecord
from experiments.spec import Spec
from topologies.hostexec import KernelError
from topologies.names import OWNER_FILE, owner_mark


@dataclass(frozen=True)
class Judged:
    """A kernel run and its judgement, before any bundle: what the benchmark times."""

    observation: Observation
    observed: Observed
    judgement: Judgement
    kernel_seconds: float
    judge_seconds: float


def workdir(out: str | None, name: str) -> Path:
    """A fresh directory for one run's files; never an existing one (a temporary directory
    when `out` is None)."""
    if out is None:
        path = Path(tempfile.mkdtemp(prefix=f"natlab-{name}-"))
        (path / OWNER_FILE).write_text(owner_mark())  # the sweeper removes it once we are dead
        return path
    base = Path(out)
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = base / (f"{name}-{stamp}" + (f"-{n}" if n else ""))
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise UserError(f"{base}: cannot make a fresh run directory for {name}")


def run_and_judge(spec: Spec, files: Path, model_problem: UserError | None = None) -> Judged:
    """Run `spec` on the kernel (its captures go to `files`) and judge the run. A kernel-side
    failure before the traffic (a `KernelError`: a tool refused the rules, a program failed
    or timed out) is something the user can act on: it becomes a UserError naming the spec
    (one line, exit status 2); natlab's own machinery failing there (`InfrastructureFailure`)
    becomes an InfrastructureError (exit status 4). A failure during the traffic is in the
    observation (`error`), and the judgement says ERROR. Anything else raised here is a bug
    in natlab and keeps its traceback. `model_problem` (the model cannot read the rules'
    syntax) is raised after the kernel had its say on the same rules; rules the model merely
    does not cover are judged UNMODELED instead."""
    start = time.perf_counter()
    try:
        obs = run_on_kernel(spec, workdir=files)
    except InfrastructureFailure as e:
        raise InfrastructureError(f"{spec.path}: {e}") from None
    except (KernelError, UserError) as e:
        raise UserError(f"{spec.path}: {e}") from None
    kernel_seconds = time.perf_counter() - start
    if model_problem is not None:
        raise model_problem
    start = time.perf_counter()
    observed = observed_from(obs)
    judgement = judge_observed(spec, observed)
    return Judged(obs, observed, judgement, kernel_seconds, time.perf_counter() - start)


def run_spec(spec: Spec, results: Path, model_problem: UserError | None = None) -> RunRecord:
    """`natlab run` for one spec: kernel run, judgement, bundle under `results/`."""
    files = workdir(None, spec.name)
    try:
        judged = run_and_judge(spec, files, model_problem)
        obs = judged.observation
        comments = packet_comments(judged.observed.packets, judged.judgement.prediction)
        bundle = write_bundle(results, spec, obs, judged.observed, documents(judged.judgement),
                              comments)
    finally:
        shutil.rmtree(files, ignore_errors=True)
    return RunRecord(spec, obs.run_id, obs.checkpoints, obs.final, obs.received,
                     judged.judgement, bundle)
