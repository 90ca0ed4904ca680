"""Text from a spec or a bundle is data on the terminal (issue 11, item 2).

Hostile descriptions, payloads, known-divergence reasons, file and bundle names (ESC
sequences, `\\r` overwrites, Rich markup, bidi overrides, NUL, C1 controls) go through `natlab
model`, `list`, `check` and `judge` (and `run`: tests/kernel/test_terminal_kernel.py): the
bytes printed hold no control character and the markup shows as written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from experiments import cli
from experiments.cli import main
from experiments.terminal import literal
from tests.model.hostile_text import EVERYTHING, HOSTILE, SHOWN, assert_inert, toml_string
from tests.model.test_bad_input import HOME

GOLDEN = Path(__file__).parent / "golden" / "seed-dnat-udp"
ALL = tuple(HOSTILE)


def hostile_spec(folder: Path, name: str = "hostile.toml") -> Path:
    """The home DNAT spec with every hostile piece in its description, its payload, its
    reply and its known-divergence reason."""
    text = HOME.replace('name = "bad"\n',
                        f'name = "bad"\ndescription = {toml_string(EVERYTHING)}\n'
                        f'xfail = {toml_string(EVERYTHING)}\n')
    text = text.replace('payload = "hello"', f"payload = {toml_string(EVERYTHING)}\n"
                        f"reply = {toml_string(EVERYTHING)}")
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("key", ALL)
def test_literal_escapes_each_piece(key: str) -> None:
    shown = literal(HOSTILE[key], markup=False)
    assert shown == SHOWN[key]
    assert all(c.isprintable() for c in shown)


def test_literal_escapes_markup_only_where_markup_is_read() -> None:
    assert literal("[bold]x[/]") == "\\[bold]x\\[/]"
    assert literal("[bold]x[/]", markup=False) == "[bold]x[/]"
    assert literal("a\nb\x1b", markup=False, newlines=True) == "a\nb\\x1b"
    assert literal("café → ok", markup=False) == "café → ok"


def test_model_prints_hostile_text_as_data(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["model", str(hostile_spec(tmp_path))])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert_inert(out + err, *ALL)


def test_list_prints_hostile_descriptions_as_data(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = hostile_spec(tmp_path)
    monkeypatch.setattr(cli, "builtin_spec_paths", lambda: [spec])
    assert main(["list"]) == 0
    out, err = capsys.readouterr()
    assert_inert(out + err, *ALL)


# (NUL and / cannot be in a file name)
@pytest.mark.parametrize("key", [k for k in ALL if not {"\x00", "/"} & set(HOSTILE[k])])
def test_check_prints_a_hostile_file_name_as_data(key: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = hostile_spec(tmp_path, f"s{HOSTILE[key]}.toml")
    assert main(["check", str(spec)]) == 0
    out, err = capsys.readouterr()
    assert_inert(out + err, key)


@pytest.mark.parametrize("key", ALL)
def test_errors_show_hostile_values_as_data(key: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A spec's bad value (here an unknown topology) echoed in the one-line error."""
    spec = tmp_path / "bad.toml"
    spec.write_text(HOME.replace('topology = "home"', f"topology = {toml_string(HOSTILE[key])}"))
    assert main(["check", str(spec)]) == 2
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1
    assert_inert(out + err, key)


def _hostile_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "b[bold green]MATCH[/]\x1b[2J"
    shutil.copytree(GOLDEN, bundle)
    spec = bundle / "spec.toml"
    spec.write_text(spec.read_text().replace(
        'topology = "home"', f'xfail = {toml_string(EVERYTHING)}\ntopology = "home"'))
    meta = json.loads((bundle / "meta.json").read_text())
    meta["spec_hash"] = hashlib.sha256(spec.read_bytes()).hexdigest()
    (bundle / "meta.json").write_text(json.dumps(meta))
    return bundle


def test_judge_prints_a_hostile_bundle_as_data(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    main(["judge", str(_hostile_bundle(tmp_path))])
    out, err = capsys.readouterr()
    assert_inert(out + err, *ALL)
    assert "\\x1b[2J" in out                      # the bundle's own name, escaped
