"""The `natlab` command line without root: help, list, check, model, and the one-line
errors (exit status 2) for everything a user can fix."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from experiments import cli, library, session
from experiments.cli import main
from experiments.errors import MissingBinary, UserError
from experiments.preflight import require_binaries, require_root

SEEDS = ("seed-dnat-udp", "seed-snat-tcp")
SUBCOMMANDS = ("run", "model", "check", "list", "judge", "clean", "up", "bench")


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("natlab: ")
    assert "Traceback" not in err
    return lines[0]


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out
    assert "exit status" in out


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: natlab {command}")


def test_usage_error_is_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main([]) == 2


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in SEEDS:
        assert name in out
    assert "DNATs it to the laptop" in out


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["name"] for r in rows} >= set(SEEDS)
    for r in rows:
        assert r["description"] and "\n" not in r["description"]
        assert Path(r["path"]).is_file()


def test_check_accepts_names_files_and_directories(capsys: pytest.CaptureFixture[str]) -> None:
    spec_dir = Path(library.BUILTIN_SPECS)
    assert main(["check", "--model", "seed-dnat-udp", str(spec_dir / "seed-snat-tcp.toml"),
                 str(spec_dir), "seed-snat-tcp.toml"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + len(list(spec_dir.glob("*.toml"))) + 1
    assert all(line.endswith("steps)") for line in out)


def test_unknown_spec_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "no-such-seed"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "no-such-seed" in line and "natlab list" in line


def test_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path)]) == 2
    assert "no *.toml spec" in _one_error_line(capsys.readouterr().err)


def test_specs_are_all_loaded_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad spec after a good one: nothing is modelled, one error line."""
    bad = tmp_path / "bad.toml"
    bad.write_text('topology = "home"\n')
    ran: list[str] = []
    import experiments.modelrun.run as model_run

    monkeypatch.setattr(model_run, "run_on_model", lambda spec: ran.append(spec.name))
    assert main(["model", "seed-dnat-udp", str(bad)]) == 2
    assert ran == []
    assert f"{bad}: steps: missing" in _one_error_line(capsys.readouterr().err)


def test_model_json_dnat_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "--json", "seed-dnat-udp"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    result = json.loads(line)
    assert result["name"] == "seed-dnat-udp"
    (entry,) = result["model"]["conntrack"]
    assert entry.startswith("udp ")
    assert "src=203.0.113.10 dst=192.168.1.9 sport=37611 dport=9999" in entry
    assert "src=192.168.1.8 dst=203.0.113.10 sport=9999 dport=37611" in entry
    assert result["model"]["journeys"]


def test_model_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "seed-snat-tcp"]) == 0
    out = capsys.readouterr().out
    assert "seed-snat-tcp" in out
    assert "TIME_WAIT" in out
    assert "203.0.113.1:37611" in out  # the masqueraded source the desktop saw
    assert "nf_conntrack_in" in out  # journeys are printed


def test_run_needs_root(monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["run", "seed-dnat-udp"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("natlab: natlab run needs root")
    for command in (["clean"], ["up"]):
        assert main(command) == 2
        assert "needs root" in _one_error_line(capsys.readouterr().err)


def test_run_names_a_missing_binary_and_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["run", "seed-dnat-udp"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "mnexec not found" in line and "mininet" in line


def test_require_binaries_per_backend(tmp_path: Path) -> None:
    nft = tmp_path / "nft"
    nft.write_text("#!/bin/sh\n")
    nft.chmod(0o755)
    with pytest.raises(MissingBinary) as info:
        require_binaries(["nft", "iptables-restore-translate"], path=str(tmp_path))
    assert info.value.binary == "iptables-restore-translate"
    assert info.value.package == "iptables"
    require_binaries(["nft"], path=str(tmp_path))
    if shutil.which("sh"):
        require_binaries(["sh"])


def test_require_root() -> None:
    require_root("run", euid=0)
    with pytest.raises(UserError, match="natlab up needs root"):
        require_root("up", euid=1000)


def test_up_unknown_topology(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "office"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "'office'" in line and "home" in line


def test_judge_missing_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["judge", str(tmp_path / "nothing")]) == 2
    _one_error_line(capsys.readouterr().err)


def test_lazy_reports_a_missing_module_as_user_error() -> None:
    with pytest.raises(UserError, match="experiments.no_such_module is missing"):
        cli._lazy("experiments.no_such_module", "main", "bench")
    assert cli._lazy("json", "dumps", "x") is json.dumps


def test_a_bug_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "cmd_list", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["list"])


def test_user_error_with_newlines_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def fails(args: object) -> int:
        raise UserError("first\nsecond")

    monkeypatch.setattr(cli, "cmd_list", fails)
    assert main(["list"]) == 2
    assert _one_error_line(capsys.readouterr().err) == "natlab: first second"


def test_workdirs_are_never_reused(tmp_path: Path) -> None:
    made = {session.workdir(str(tmp_path), "x") for _ in range(3)}
    assert len(made) == 3 and all(p.is_dir() and p.parent == tmp_path for p in made)
    temp = session.workdir(None, "y")
    try:
        assert temp.is_dir() and "natlab-y-" in temp.name
        # marked with its owner, so a sweep removes it only once this process is dead
        assert (temp / ".natlab-owner").read_text() == f"{os.getpid()}-" \
            f"{Path(f'/proc/{os.getpid()}/stat').read_text().rsplit(')', 1)[1].split()[19]}"
    finally:
        shutil.rmtree(temp)
