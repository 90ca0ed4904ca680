"""`--json` on `check` and `judge` (issue 16: scripts and notebooks read natlab's answers as
data): one object per line, the same facts the text says, the same exit status."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.library import builtin_spec_paths

GOLDEN = Path(__file__).parent / "golden"


def test_check_json_gives_one_object_per_spec(capsys: pytest.CaptureFixture[str]) -> None:
    paths = builtin_spec_paths()[:3]
    assert main(["check", "--model", "--json", *map(str, paths)]) == 0
    lines = capsys.readouterr().out.splitlines()
    docs = [json.loads(line) for line in lines]
    assert [d["path"] for d in docs] == [str(p) for p in paths]
    assert all(d["ok"] is True and d["model"] is True and d["steps"] >= 1 for d in docs)


def test_check_json_on_a_bad_spec_is_one_line_on_stderr(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\ntopology = "home"\n[[steps]]\naction = "udp"\ndprot = 9\n')
    assert main(["check", "--json", str(bad)]) == 2
    said = capsys.readouterr()
    assert said.out == ""
    assert len(said.err.strip().splitlines()) == 1 and "dprot" in said.err


def test_judge_json_is_the_verdict_document(capsys: pytest.CaptureFixture[str]) -> None:
    bundle = GOLDEN / "seed-dnat-udp"
    assert main(["judge", "--json", str(bundle)]) == 0
    doc = json.loads(capsys.readouterr().out)
    recorded = json.loads((bundle / "verdict.json").read_text())
    assert doc["verdict"] == recorded["verdict"] == "MATCH"
    assert doc["status"] == "MATCH" and doc["same_as_recorded"] is True
    assert doc["differences"] == [] and doc["bundle"] == str(bundle)


def test_judge_json_says_what_changed(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A bundle whose recorded verdict was edited: exit 3, CHANGED, and the difference named."""
    bundle = tmp_path / "b"
    shutil.copytree(GOLDEN / "seed-dnat-udp", bundle)
    doc = json.loads((bundle / "verdict.json").read_text())
    doc["verdict"] = "MISMATCH"
    (bundle / "verdict.json").write_text(json.dumps(doc))
    assert main(["judge", "--json", str(bundle)]) == 3
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "CHANGED" and out["same_as_recorded"] is False
    assert any("MISMATCH" in d for d in out["differences"])
