"""XPASS and XFAIL from a live run (root): a spec that declares a known divergence (`xfail`)
is XPASS, not clean (exit status 3), when the kernel and the model agree; and XFAIL, clean
(exit status 0), when the divergence it declares shows (here a model that forgets to take one
from the TTL). The rootless twins are in tests/model/test_oracle_says_no.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nat.pipeline
from experiments.cli import main
from experiments.library import builtin_spec_paths

pytestmark = pytest.mark.kernel


def _declared(tmp_path: Path) -> Path:
    seed = next(p for p in builtin_spec_paths() if p.stem == "seed-dnat-udp")
    spec = tmp_path / "seed-dnat-udp.toml"
    spec.write_text('xfail = "the model forwards without decrementing the TTL"\n'
                    + seed.read_text())
    return spec


def test_xpass_then_xfail_on_the_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    spec = _declared(tmp_path)
    status = main(["run", "--json", "--out", str(tmp_path / "a"), str(spec)])
    result = json.loads(capsys.readouterr().out)
    assert (status, result["verdict"], result["diffs"]) == (3, "XPASS", [])
    assert result["expect"]["status"] == "PASS"

    with monkeypatch.context() as m:
        m.setattr(nat.pipeline, "ip_decrease_ttl", lambda pkt: pkt)
        status = main(["run", "--json", "--out", str(tmp_path / "b"), str(spec)])
    result = json.loads(capsys.readouterr().out)
    assert (status, result["verdict"]) == (0, "XFAIL")
    assert {d["field"] for d in result["diffs"]} == {"ip.ttl", "ip.checksum"}
    assert result["xfail"] == "the model forwards without decrementing the TTL"
