"""Runs that tell the truth, end to end on the kernel: UNMODELED on every backend, a failed step
that fails the run, and ERROR (exit status 4, with its bundle) when a helper dies mid-run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from experiments.backends import BACKENDS, Backend
from experiments.cli import INFRA, NOT_CLEAN, OK, main
from experiments.kernel.run import before_each_step
from experiments.kernel.traffic import Traffic
from experiments.records.bundle import judge

SPECS = Path(__file__).parent / "specs"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    status = main(["run", "--json", *argv])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1, (status, out, err)
    return status, json.loads(lines[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_rules_outside_the_model_run_on_the_kernel_alone(
        backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = SPECS / "unmodeled-statistic.toml"
    assert main(["check", "--model", "--backend", backend, str(spec)]) == 2
    assert "not supported by the model" in capsys.readouterr().err
    status, result = _run(["--out", str(tmp_path), "--backend", backend, str(spec)], capsys)
    assert result["verdict"] == "UNMODELED", result
    construct = "numgen" if backend == "nft" else "-m statistic"
    assert construct in str(result["unmodeled"])
    assert result["expect"] == {"status": "PASS", "failures": []}
    assert status == OK
    rejudged = judge(Path(str(result["bundle"])))
    assert rejudged.same and rejudged.status == "UNMODELED", rejudged.render()


def test_a_step_that_waited_in_vain_fails_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, result = _run(["--out", str(tmp_path), str(SPECS / "step-unanswered.toml")], capsys)
    assert result["verdict"] == "MATCH"          # the model agrees the datagram is dropped
    warnings = result["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 1
    assert "#1 udp" in warnings[0] and "deadline passed" in warnings[0]
    assert result["expect"] == {"status": "FAIL", "failures": warnings}
    assert status == NOT_CLEAN
    rejudged = judge(Path(str(result["bundle"])))
    assert rejudged.same and rejudged.judgement.warnings == tuple(warnings)


def _kill_desktop_agent(index: int, traffic: Traffic) -> None:
    """A real failure, not a raised exception: the desktop's agent is SIGKILLed before the
    first step, so the step cannot be run (what a crashed helper does to a run)."""
    if index == 0:
        agent = traffic._agents["desktop"]       # tests only: reach the helper to kill it
        os.kill(agent.proc.pid, signal.SIGKILL)
        agent.proc.wait(5)


def test_a_helper_dying_mid_run_is_error_with_a_bundle(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with before_each_step(_kill_desktop_agent):
        status, result = _run(["--out", str(tmp_path), "seed-dnat-udp"], capsys)
    assert result["verdict"] == "ERROR", result
    assert "step #1 failed" in str(result["error"]) and "desktop" in str(result["error"])
    assert status == INFRA
    bundle = Path(str(result["bundle"]))
    rejudged = judge(bundle)
    assert rejudged.same and rejudged.status == "ERROR"
    assert main(["judge", str(bundle)]) == NOT_CLEAN
