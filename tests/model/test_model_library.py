"""`natlab model` on the built-in library: without root or kernel, the model alone predicts
the entries each spec's [expect] names (coursework runs exactly this)."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.modelrun.run import run_on_model
from experiments.spec import load_spec
from nat.listing import parse_pattern

SPECS = sorted((Path(__file__).parents[2] / "experiments" / "specs").glob("*.toml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_model_alone_meets_the_specs_expectations(path: Path) -> None:
    spec = load_spec(path)
    result = run_on_model(spec)
    assert result.journeys, "the gateway saw no packet"
    if spec.expect is None:
        return
    for line in spec.expect.conntrack:
        pattern = parse_pattern(line)
        assert any(pattern.matches(e) for e in result.entries), (line, result.conntrack_lines)


def test_filter_ctstate_drop_leaves_no_entry() -> None:
    spec = load_spec(SPECS[0].parent / "filter-ctstate.toml")
    result = run_on_model(spec)
    assert len(result.entries) == 1
    dropped = [j for j in result.journeys if j.verdict == "DROP"]
    assert dropped and dropped[0].entry is None
    assert any("dropped" in s.did for s in dropped[0].steps)
