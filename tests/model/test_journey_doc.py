"""docs/journey.md shows the seed's journey as `natlab model` prints it: the doc cannot drift
from the model."""

from __future__ import annotations

from pathlib import Path

from experiments.modelrun.run import run_on_model
from experiments.spec import load_spec

ROOT = Path(__file__).parents[2]


def test_journey_doc_matches_the_model() -> None:
    doc = (ROOT / "docs" / "journey.md").read_text()
    start = doc.index("<!-- journey:seed-dnat-udp")
    opening = doc.index("```\n", start) + 4
    block = doc[opening: doc.index("\n```", opening)]
    result = run_on_model(load_spec(ROOT / "experiments" / "specs" / "seed-dnat-udp.toml"))
    assert block == "\n\n".join(j.render() for j in result.journeys), (
        "docs/journey.md is out of date with the model's journey of seed-dnat-udp")
