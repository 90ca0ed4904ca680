"""Runs that tell the truth, judged without root: UNMODELED when the model refuses a construct
(judged by [expect] alone), ERROR when the run recorded an infrastructure failure, a step left
unanswered on purpose only a note. Each re-derived by `natlab judge` from the bundle."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from experiments.cli import INFRA, NOT_CLEAN, OK, gravest, main, run_status
from experiments.judging.judgement import judge_observed, step_warnings
from experiments.records.bundle import judge, load_observed
from experiments.spec import spec_from_bytes, spec_hash

GOLDEN = Path(__file__).parent / "golden"


def _rewritten(tmp_path: Path, old: bytes, new: bytes,
               observed_edit: dict[str, object] | None = None) -> Path:
    """seed-dnat-udp's bundle with its spec (and the rules fed) edited, the hash updated, and
    observed.json fields set."""
    bundle = tmp_path / "b"
    shutil.copytree(GOLDEN / "seed-dnat-udp", bundle)
    spec = bundle / "spec.toml"
    raw = spec.read_bytes()
    assert old in raw
    spec.write_bytes(raw.replace(old, new))
    meta = json.loads((bundle / "meta.json").read_text())
    meta["spec_hash"] = spec_hash(spec)
    (bundle / "meta.json").write_text(json.dumps(meta))
    obs = json.loads((bundle / "observed.json").read_text())
    if obs.get("ruleset_fed"):     # the model reads the rules as the kernel was fed them
        obs["ruleset_fed"] = obs["ruleset_fed"].replace(old.decode(), new.decode())
    obs.update(observed_edit or {})
    (bundle / "observed.json").write_text(json.dumps(obs))
    return bundle


STATISTIC = (b"-A PREROUTING -i wan0 -p udp --dport 9999 -j DNAT",
             b"-A PREROUTING -i wan0 -p udp --dport 9999 -m statistic --mode nth --every 1 "
             b"--packet 0 -j DNAT")


def test_rules_outside_the_model_judge_unmodeled_by_expect_alone(tmp_path: Path) -> None:
    bundle = _rewritten(tmp_path, *STATISTIC)
    j = judge(bundle).judgement
    assert j.status == "UNMODELED" and j.diffs == ()
    assert j.unmodeled is not None and "-m statistic" in j.unmodeled
    assert j.expect.status == "PASS" and j.clean          # the kernel's table still matches
    assert j.kernel_conntrack and j.model_conntrack == ()


def test_unmodeled_with_a_failing_expectation_is_not_clean(tmp_path: Path) -> None:
    bundle = _rewritten(tmp_path, *STATISTIC)
    spec, observed, _ = load_observed(bundle)
    final = replace(observed.snapshots[-1], lines=())
    j = judge_observed(spec, replace(observed, snapshots=(*observed.snapshots[:-1], final)))
    assert j.status == "UNMODELED" and j.expect.status == "FAIL" and not j.clean


def test_a_recorded_infrastructure_failure_is_error(tmp_path: Path) -> None:
    why = "step #1 failed, 0 later step(s) not run: agent on desktop is not running"
    bundle = _rewritten(tmp_path, b'name = "seed-dnat-udp"', b'name = "seed-dnat-udp"',
                        {"error": why})
    j = judge(bundle).judgement
    assert j.status == "ERROR" and j.error == why and not j.clean
    assert f"error: {why}" in j.render()
    assert run_status(j.status, j.clean) == INFRA


def test_error_outranks_unmodeled(tmp_path: Path) -> None:
    bundle = _rewritten(tmp_path, *STATISTIC, {"error": "conntrack -L failed"})
    assert judge(bundle).judgement.status == "ERROR"


def test_a_step_unanswered_on_purpose_is_a_note_unless_its_send_failed() -> None:
    raw = (GOLDEN / "seed-dnat-udp" / "spec.toml").read_bytes()
    raw = raw.replace(b'action = "udp"', b'action = "udp"\nunanswered = true')
    spec = spec_from_bytes(raw, Path("s.toml"))
    waited = "#1 udp: waited for 1 replies at desktop:37611: deadline passed"
    failed = "#1 udp: send failed: 99 Cannot assign requested address"
    assert step_warnings(spec, (waited,)) == (
        (), (f"step left unanswered, as the spec says: {waited}",))
    assert step_warnings(spec, (failed,)) == ((f"step did not complete: {failed}",), ())


@pytest.mark.parametrize(("statuses", "want"), [
    ([], OK), ([OK, OK], OK), ([OK, NOT_CLEAN], NOT_CLEAN), ([NOT_CLEAN, 2], 2),
    ([2, INFRA, NOT_CLEAN], INFRA), ([OK, INFRA], INFRA)])
def test_several_runs_exit_with_the_gravest_status(statuses: list[int], want: int) -> None:
    assert gravest(statuses) == want


def test_judge_exits_3_on_an_error_bundle(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _rewritten(tmp_path, b'name = "seed-dnat-udp"', b'name = "seed-dnat-udp"',
                        {"error": "agent died"})
    assert main(["judge", str(bundle)]) == NOT_CLEAN
    assert capsys.readouterr().out.startswith("seed-dnat-udp: ERROR")
