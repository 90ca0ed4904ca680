"""Text from a spec is data on the terminal, for `natlab run` (issue 11, item 2): a hostile
description, payload, reply and known-divergence reason (tests/model/hostile_text.py), and a
rule the kernel refuses whose text (echoed in the tool's error) is hostile too."""

from __future__ import annotations

from pathlib import Path

from tests.kernel.natlab_process import natlab_run
from tests.model.hostile_text import ALL_KEYS, EVERYTHING, assert_inert, toml_string
from tests.model.test_bad_input import HOME
from tests.model.test_terminal import hostile_spec


def test_run_prints_hostile_spec_text_as_data(tmp_path: Path) -> None:
    spec = hostile_spec(tmp_path)
    proc = natlab_run(["run", "--out", str(tmp_path / "results"), str(spec)])
    assert proc.returncode in (0, 3), proc.stderr
    assert_inert(proc.stdout + proc.stderr, *ALL_KEYS)


def test_a_refused_rule_is_echoed_as_data(tmp_path: Path) -> None:
    """nft echoes the offending line (hostile text and all) in its error."""
    nft = ("table ip t {\n chain c {\n  type filter hook input priority 0;\n"
           '  meta mark 1 bogus_keyword comment "' + EVERYTHING.replace("\x00", "") + '"\n'
           " }\n}\n")
    spec = tmp_path / "refused.toml"
    spec.write_text(HOME.replace('topology = "home"',
                                 f'topology = "home"\nbackend = "nft"\nnft = {toml_string(nft)}'))
    proc = natlab_run(["run", "--out", str(tmp_path / "results"), str(spec)])
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "bogus_keyword" in proc.stderr
    assert_inert(proc.stdout + proc.stderr, "clear-screen", "markup", "bidi-override")
