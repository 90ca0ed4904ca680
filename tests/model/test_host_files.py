"""A spec never reaches the host's files (issue 11, item 1): rule text that names a file of
the machine (nft `include`, iptables `--modprobe`, ...) is refused before anything is built,
with exit status 2 and one line naming the spec's file and field, by `natlab check`, `model`
and `run`; the secret it reaches for appears nowhere in what natlab prints or writes.

The kernel side of the same promise (the tools run jailed, so even text that got past this
check names no host file) is tests/kernel/test_host_files_kernel.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.cli import main
from experiments.rulefiles import file_reading_problem
from experiments.spec import load_spec
from tests.model.host_file_attacks import Attack, Secrets, attacks, make_secrets, spec_text
from tests.model.test_bad_input import assert_one_line_error
from topologies.jail import JAILED_PROGRAMS


def _cases() -> list[tuple[str, bool]]:
    probe = Secrets(Path("/x"), "s")
    out = [(a.name, False) for a in attacks(probe)]
    out += [(a.name, True) for a in attacks(probe) if a.syntax == "iptables"]
    return out


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Secrets:
    return make_secrets(tmp_path / "host")


@pytest.mark.parametrize(("name", "in_host_rules"), _cases())
@pytest.mark.parametrize("command", ["check", "model", "run"])
def test_rule_text_naming_a_host_file_is_refused_up_front(
        name: str, in_host_rules: bool, command: str, secrets_dir: Secrets,
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    attack = next(a for a in attacks(secrets_dir) if a.name == name)
    spec = secrets_dir.folder / f"{name}.toml"
    spec.write_text(spec_text(attack, host_rules=in_host_rules))
    monkeypatch.chdir(secrets_dir.folder)          # a relative include would find the marker
    out_dir = tmp_path / "results"
    argv = [command, str(spec)] + (["--out", str(out_dir)] if command == "run" else [])
    status = main(argv)
    out, err = capsys.readouterr()
    field = "host_rules.a" if in_host_rules else attack.field
    assert_one_line_error(status, err, spec, field, "natlab refuses it")
    assert out == ""
    assert not secrets_dir.leaked(out, err)
    assert not out_dir.exists()                     # nothing built, no bundle
    assert not secrets_dir.ran.exists()


def test_every_attack_is_refused_by_the_checker_itself(secrets_dir: Secrets) -> None:
    for attack in attacks(secrets_dir):
        problem = file_reading_problem(attack.text, attack.syntax)  # type: ignore[arg-type]
        assert problem is not None and problem.startswith("line "), attack.name
        assert "\n" not in problem


@pytest.mark.parametrize(("syntax", "text"), [
    ("nft", 'table ip t { chain c { type filter hook input priority 0; '
            'meta mark 1 comment "include /etc/shadow" accept; } }\n'),
    ("nft", "# include \"/etc/shadow\" is refused, a comment about it is not\nflush ruleset\n"),
    ("nft", 'define lan = "lan0"\ntable ip t { chain c { type filter hook input priority 0; '
            'iifname $lan accept; } }\n'),
    ("iptables", "*nat\n-A POSTROUTING -o wan0 -jMASQUERADE\n"
                 "-A PREROUTING -m statistic --mode random --probability 0.5 -j ACCEPT\n"
                 '-A PREROUTING -m comment --comment "-M --modprobe=/x" -j ACCEPT\nCOMMIT\n'),
    ("iptables", "*filter\n-A INPUT -m mark --mark 1 -j DROP\nCOMMIT\n"),
    # names that hold the word: only the keyword `include` reads a file
    ("nft", "table ip no-include { chain included { type filter hook input priority 0; } }\n"),
])
def test_ordinary_rules_are_not_refused(syntax: str, text: str) -> None:
    assert file_reading_problem(text, syntax) is None  # type: ignore[arg-type]


def test_no_library_spec_is_refused() -> None:
    for path in sorted((Path(__file__).parents[2] / "experiments" / "specs").glob("*.toml")):
        load_spec(path)


def test_the_attack_texts_are_what_the_corpus_says(secrets_dir: Secrets) -> None:
    names = [a.name for a in attacks(secrets_dir)]
    assert len(names) == len(set(names)) >= 20
    assert secrets_dir.secret in secrets_dir.marker.read_text()
    assert secrets_dir.link.resolve() == secrets_dir.marker
    assert isinstance(attacks(secrets_dir)[0], Attack)


def test_the_safety_doc_says_what_is_jailed_and_refused() -> None:
    """docs/safety.md names every jailed program and every refused construct, as tested here
    and in tests/kernel/test_host_files_kernel.py."""
    doc = (Path(__file__).parents[2] / "docs" / "safety.md").read_text()
    text = " ".join(doc.split())
    for program in sorted(JAILED_PROGRAMS - {"iptables-save", "iptables-legacy-save"}):
        assert f"`{program}`" in text or f"`{program} " in text, program
    assert "the save tools" in text
    for construct in ("`include`", "`-M`/`--modprobe`", "`--object-pinned`", "`define`"):
        assert construct in text, construct
    for sentence in ("is refused before anything is built, with exit status 2 and one line "
                     "naming the spec file and field",
                     "So no host file's content ever appears in natlab's output or in a bundle",
                     "`tests/model/test_host_files.py`, `tests/kernel/test_host_files_kernel.py`",
                     "`tests/model/test_terminal.py`, `tests/kernel/test_terminal_kernel.py`"):
        assert sentence in text, sentence
