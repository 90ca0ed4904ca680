"""Reading bundles: a format this natlab does not know, or a bundle without meta.json, is
refused by `natlab judge` in one line naming the file and the field (exit status 2); the golden
bundles (format 1) still re-judge to exactly what was recorded. The attacker's corpus is in
tests/model/test_bundle_trust.py."""

from __future__ import annotations

import json
import shutil
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from experiments.bundle_format import FORMAT, READABLE_FORMATS
from experiments.cli import main
from experiments.observed import Observed, Received
from experiments.records.bundle import judge, verdict_json
from experiments.records.bundle_fields import observed, recorded_verdict

GOLDEN = Path(__file__).parent / "golden"
BUNDLES = sorted(p for p in GOLDEN.iterdir() if p.is_dir())


def _copy(tmp_path: Path, name: str = "seed-dnat-udp") -> Path:
    bundle = tmp_path / name
    shutil.copytree(GOLDEN / name, bundle)
    return bundle


def _set_format(bundle: Path, value: object) -> None:
    meta_path = bundle / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["format"] = value
    meta_path.write_text(json.dumps(meta))


def _judge_refuses(bundle: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["judge", str(bundle)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert lines[0].startswith(f"natlab: {bundle}: ")
    return lines[0]


def test_a_newer_format_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _copy(tmp_path)
    _set_format(bundle, 99)
    line = _judge_refuses(bundle, capsys)
    assert "format 99 is unknown to this natlab" in line and "a newer natlab wrote it" in line


@pytest.mark.parametrize("value", ["x", "1", None, True, 1.0])
def test_a_format_that_is_no_version_is_refused(tmp_path: Path, value: object,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _copy(tmp_path)
    _set_format(bundle, value)
    line = _judge_refuses(bundle, capsys)
    assert f"format {value!r} is not a bundle format version" in line


def test_a_format_older_than_any_is_refused(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _copy(tmp_path)
    _set_format(bundle, 0)
    assert "not a natlab bundle" in _judge_refuses(bundle, capsys)


def test_a_bundle_without_meta_json_is_refused(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _copy(tmp_path)
    (bundle / "meta.json").unlink()
    assert _judge_refuses(bundle, capsys).endswith(": meta.json: missing from the bundle")


def test_meta_json_that_is_not_json_is_refused(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _copy(tmp_path)
    (bundle / "meta.json").write_text("{format: 1")
    assert ": meta.json: line 1, column 2: invalid JSON: " in _judge_refuses(bundle, capsys)


def test_the_golden_bundles_include_format_1_which_stays_readable() -> None:
    formats = {json.loads((b / "meta.json").read_text())["format"] for b in BUNDLES}
    assert 1 in formats and formats <= set(READABLE_FORMATS)
    assert 1 in READABLE_FORMATS and FORMAT in READABLE_FORMATS


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_golden_bundles_rejudge_exactly_as_recorded(bundle: Path) -> None:
    """The whole verdict document (verdict, diffs, expect, notes), not just the verdict. The
    parts added since (warnings, unmodeled, error) read as "none" from these older bundles;
    udp-stream-assured's failed step is the one exception (tests/model/test_golden_bundles)."""
    recorded = recorded_verdict(bundle, json.loads((bundle / "verdict.json").read_text()))
    assert {"warnings": [], "unmodeled": None, "error": None}.items() <= recorded.items()
    now = verdict_json(judge(bundle).judgement)
    if bundle.name == "udp-stream-assured":
        changed = ("expect", "notes", "warnings")
        now = {k: v for k, v in now.items() if k not in changed}
        recorded = {k: v for k, v in recorded.items() if k not in changed}
    assert now == recorded


def test_received_flags_go_to_json_and_back(tmp_path: Path) -> None:
    """Format 3 records the flags of TCP segments without payload; an item without them (as
    formats 1 and 2 write) reads as None."""
    rst = Received("laptop", 0.5, "tcp", IPv4Address("203.0.113.10"),
                   IPv4Address("192.168.1.8"), 443, 37800, b"", "segment", "RA")
    data = Received("laptop", 0.6, "tcp", IPv4Address("203.0.113.10"),
                    IPv4Address("192.168.1.8"), 443, 37800, b"bye")
    doc = Observed("6.18", {}, (), (), (rst, data)).to_json()
    assert observed(tmp_path, doc, ()).received == (rst, data)
    del doc["received"][0]["flags"]
    assert observed(tmp_path, doc, ()).received[0].flags is None
    doc["received"][0]["flags"] = 7
    with pytest.raises(Exception, match=r"received\[0\]\.flags"):
        observed(tmp_path, doc, ())
