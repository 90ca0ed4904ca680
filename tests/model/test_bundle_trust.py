"""A bundle is untrusted input: the attacker's corpus for `natlab judge` (issue 11, item 3).

Each case is a golden bundle with one thing done to it (a symlink to /dev/zero or /etc/shadow in
place of each file it reads, a FIFO, a socket, a directory, a sparse 3 GB file, a real 100 MB
packets.jsonl, JSON nested 100 000 deep, a forged or broken spec_hash, an edited spec.toml,
format 99 / "x" / missing, missing files, a bundle path that is a symlink, ...). `natlab judge`
runs in a subprocess whose address space is limited (RLIMIT_AS 256 MiB) and must answer with
its exit status (2: refused; 3: re-judged, but not as recorded), one line naming the file and
the field, no traceback, no byte of a host file. docs/safety.md states these guarantees.

A hypothesis test then mutates golden bundles at random (truncated files, each field given a
wrong type, huge numbers, NaN, Infinity, non-UTF-8 bytes, missing keys) and requires the same:
exit status 0, 2 or 3, and a refusal in one line naming the bundle and a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.bundle_format import FILE_LIMITS, JUDGED_FILES, MAX_JSON_DEPTH, MAX_PACKET_LINES
from experiments.cli import main
from experiments.records import safe_read
from experiments.records.safe_read import BundleError, json_depth

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[2]
AS_LIMIT = 256 << 20
GB3 = 3 << 30

# natlab judge in a child with a bounded address space (and a deadline: a FIFO must not block).
CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from experiments.cli import main
sys.exit(main(["judge", sys.argv[1]]))
"""


@dataclass(frozen=True)
class Outcome:
    status: int
    out: str
    err: str


def judge_in_child(bundle: Path) -> Outcome:
    proc = subprocess.run([sys.executable, "-c", CHILD.format(limit=AS_LIMIT), str(bundle)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def _copy(tmp: Path, name: str = "seed-dnat-udp") -> Path:
    bundle = tmp / name
    shutil.copytree(GOLDEN / name, bundle)
    return bundle


def _edit_json(bundle: Path, file: str, edit: Callable[[Any], Any]) -> None:
    path = bundle / file
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _set(key: str, value: Any) -> Callable[[Any], Any]:
    def edit(doc: dict[str, Any]) -> Any:
        doc[key] = value
        return doc
    return edit


def _rehash(bundle: Path) -> None:
    digest = hashlib.sha256((bundle / "spec.toml").read_bytes()).hexdigest()
    _edit_json(bundle, "meta.json", _set("spec_hash", digest))


def _flip_expectation(bundle: Path) -> None:
    """An [expect] the kernel's table does not meet: the recorded PASS turns into FAIL."""
    spec = bundle / "spec.toml"
    text = spec.read_text()
    assert "dport=9999" in text
    spec.write_text(text.replace("dport=9999", "dport=9998", 1))


def _flip_and_rehash(bundle: Path) -> None:
    _flip_expectation(bundle)
    _rehash(bundle)


def _replace(file: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(bundle: Path) -> None:
        (bundle / file).unlink()
        make(bundle / file)
    return setup


def _symlink_to(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def _sparse(size: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with path.open("wb") as f:
            f.truncate(size)
    return make


def _hardlink(path: Path) -> None:
    host_file = path.parent.parent / "host-file"
    host_file.write_text("secret: not for the bundle's author")
    os.link(host_file, path)


def _escape_line(bundle: Path) -> None:
    path = bundle / "observed.json"
    doc = json.loads(path.read_text())
    doc["snapshots"][0]["lines"] = ["udp 17 \x1b[2J\x1b[1A MATCH"]
    path.write_text(json.dumps(doc))


def _socket(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Path], None]
    status: int
    says: tuple[str, ...]             # each in the one line of stderr (or stdout for status 3)
    bundle: Callable[[Path], Path] = lambda b: b


def _cases() -> list[Case]:
    cases = []
    for file in JUDGED_FILES:
        cases.append(Case(f"{file}->/dev/zero", _replace(file, _symlink_to("/dev/zero")), 2,
                          (f": {file}: a symlink, not a regular file",)))
        cases.append(Case(f"{file}->/etc/shadow", _replace(file, _symlink_to("/etc/shadow")),
                          2, (f": {file}: a symlink, not a regular file",)))
        cases.append(Case(f"{file} missing", lambda b, f=file: (b / f).unlink(), 2,
                          (f": {file}: missing from the bundle",)))
    cases += [
        Case("observed.json a hard link to a host file", _replace("observed.json", _hardlink),
             2, (": observed.json: has 2 hard links; a bundle's files have one",)),
        Case("a conntrack line with escape sequences", _escape_line, 2,
             (": observed.json: snapshots[0].lines[0]: not a conntrack -L line: ",
              "\\x1b[2J")),
        Case("recorded rules the model cannot read",
             _edit_json_case("observed.json", _set("ruleset_fed", "*nat\n-A BOGUS -j X\n")),
             2, (": observed.json: ruleset_fed: rules the model cannot read: ",)),
        Case("observed.json a FIFO", _replace("observed.json", os.mkfifo), 2,
             (": observed.json: a FIFO, not a regular file",)),
        Case("packets.jsonl a socket", _replace("packets.jsonl", _socket), 2,
             (": packets.jsonl: a socket, not a regular file",)),
        Case("verdict.json a directory", _replace("verdict.json", Path.mkdir), 2,
             (": verdict.json: a directory, not a regular file",)),
        Case("packets.jsonl sparse 3 GB", _replace("packets.jsonl", _sparse(GB3)), 2,
             (f": packets.jsonl: {GB3} bytes, over the limit of "
              f"{FILE_LIMITS['packets.jsonl']} bytes",)),
        Case("observed.json sparse 3 GB", _replace("observed.json", _sparse(GB3)), 2,
             (f": observed.json: {GB3} bytes, over the limit",)),
        Case("spec.toml sparse 3 GB", _replace("spec.toml", _sparse(GB3)), 2,
             (f": spec.toml: {GB3} bytes, over the limit",)),
        Case("packets.jsonl one byte over its limit",
             _replace("packets.jsonl", _sparse(FILE_LIMITS["packets.jsonl"] + 1)), 2,
             (": packets.jsonl: ", "bytes, over the limit")),
        Case("packets.jsonl of too many lines",
             lambda b: (b / "packets.jsonl").write_text("\n" * (MAX_PACKET_LINES + 5)), 2,
             (f": packets.jsonl: more than {MAX_PACKET_LINES} lines",)),
        Case("observed.json nested 100000 deep",
             lambda b: (b / "observed.json").write_text("[" * 100_000 + "]" * 100_000), 2,
             (": observed.json: JSON nested 100000 deep, over the limit of 16",)),
        Case("meta.json nested 40 deep",
             _edit_json_case("meta.json", _set("versions", json.loads("[" * 40 + "]" * 40))),
             2, (": meta.json: JSON nested 41 deep",)),
        Case("a packet line nested deep",
             lambda b: (b / "packets.jsonl").write_text(_first_packet_line() + "[" * 5000
                                                        + "]" * 5000), 2,
             (": packets.jsonl: line 2: JSON nested 5000 deep",)),
        Case("spec.toml nested deep (rehashed)", _deep_toml, 2,
             (": spec.toml: TOML: nested too deeply",)),
        Case("forged spec_hash", _edit_json_case("meta.json", _set("spec_hash", "0" * 64)), 2,
             (": spec.toml: hashes to ", "but meta.json's spec_hash is " + "0" * 64)),
        Case("spec_hash not a digest", _edit_json_case("meta.json", _set("spec_hash", 7)), 2,
             (": meta.json: spec_hash: expected a string, got an integer",)),
        Case("edited spec.toml flips the expectation", _flip_expectation, 2,
             (": spec.toml: hashes to ", "the spec was changed after the run")),
        Case("edited spec.toml flips the expectation, hash forged to match",
             _flip_and_rehash, 3,
             ("differs: expectation status: recorded \"PASS\", re-judged \"FAIL\"",
              "differs: expectation failures: recorded 0 item(s)")),
        Case("verdict.json records MISMATCH",
             _edit_json_case("verdict.json", _set("verdict", "MISMATCH")), 3,
             ("differs: verdict: recorded \"MISMATCH\", re-judged \"MATCH\"",)),
        Case("verdict.json records a note",
             _edit_json_case("verdict.json", _set("notes", ["made up"])), 3,
             ("differs: notes: recorded 1 item(s), first \"made up\", re-judged 0 item(s)",)),
        Case("format 99", _edit_json_case("meta.json", _set("format", 99)), 2,
             (": meta.json: format: ", "format 99 is unknown to this natlab")),
        Case("format \"x\"", _edit_json_case("meta.json", _set("format", "x")), 2,
             (": meta.json: format: ", "format 'x' is not a bundle format version")),
        Case("format missing", _edit_json_case("meta.json", _drop("format")), 2,
             (": meta.json: format: missing",)),
        Case("non-UTF-8 packets.jsonl",
             lambda b: (b / "packets.jsonl").write_bytes(b"\xff\xfe{}\n"), 2,
             (": packets.jsonl: not UTF-8 text (byte 0)",)),
        Case("NaN as a snapshot time", _nan_time, 2,
             (": observed.json: invalid JSON: NaN is not a JSON number natlab reads",)),
        Case("1e999 as a packet time",
             lambda b: (b / "packets.jsonl").write_text(
                 '{"time": 1e999, "iface": "wan0", "direction": "in", "data": ""}\n'), 2,
             (": packets.jsonl: line 1.time: not a finite number",)),
        Case("a port of 10**30", _edit_json_case("observed.json", _huge_port), 2,
             (": observed.json: received[0].sport: expected a port number",)),
        Case("an integer of 5000 digits",
             lambda b: (b / "observed.json").write_text('{"kernel_release": ' + "9" * 5000
                                                        + "}"), 2,
             (": observed.json: invalid JSON: ",)),
        Case("a bundle path that is a symlink", lambda b: None, 2,
             (": a bundle is a directory; this is a symlink",), bundle=_link_to),
        Case("a bundle path that is a file", lambda b: None, 2,
             (": a bundle is a directory; this is not a regular file",),
             bundle=lambda b: b / "meta.json"),
        Case("no such bundle", lambda b: None, 2, (": no such bundle",),
             bundle=lambda b: b / "nothing"),
    ]
    return cases


def _edit_json_case(file: str, edit: Callable[[Any], Any]) -> Callable[[Path], None]:
    return lambda b: _edit_json(b, file, edit)


def _drop(key: str) -> Callable[[Any], Any]:
    def edit(doc: dict[str, Any]) -> Any:
        del doc[key]
        return doc
    return edit


def _first_packet_line() -> str:
    return (GOLDEN / "seed-dnat-udp" / "packets.jsonl").read_text().splitlines()[0] + "\n"


def _deep_toml(bundle: Path) -> None:
    (bundle / "spec.toml").write_text("x = " + "[" * 20_000 + "]" * 20_000 + "\n")
    _rehash(bundle)


def _nan_time(bundle: Path) -> None:
    path = bundle / "observed.json"
    doc = json.loads(path.read_text())
    doc["snapshots"][0]["time"] = float("nan")
    path.write_text(json.dumps(doc))


def _huge_port(doc: Any) -> Any:
    doc["received"][0]["sport"] = 10**30
    return doc


def _link_to(bundle: Path) -> Path:
    link = bundle.parent / "link"
    link.symlink_to(bundle)
    return link


CASES = _cases()


def test_the_corpus_is_at_least_25_cases() -> None:
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_attacker_bundle(case: Case, tmp_path: Path) -> None:
    bundle = _copy(tmp_path)
    case.setup(bundle)
    target = case.bundle(bundle)
    outcome = judge_in_child(target)
    try:
        assert outcome.status == case.status, outcome
        assert "Traceback" not in outcome.err and "MemoryError" not in outcome.err
        assert "root:" not in outcome.out + outcome.err          # nothing of /etc/shadow
        assert "secret" not in outcome.out + outcome.err
        assert "\x1b" not in outcome.out + outcome.err
        if case.status == 2:
            assert outcome.out == ""
            lines = outcome.err.splitlines()
            assert len(lines) == 1, outcome.err
            assert lines[0].startswith(f"natlab: {target}: ")
            text = lines[0]
        else:
            assert outcome.err == ""
            assert f"(re-judged from {target}: DIFFERENT from the recorded " in outcome.out
            text = outcome.out
        for needle in case.says:
            assert needle in text, text
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)     # the 100 MB file goes at once


def test_golden_bundles_judge_clean_within_the_memory_limit(tmp_path: Path) -> None:
    outcome = judge_in_child(GOLDEN / "tcp-lifecycle")
    assert outcome.status == 0 and outcome.err == "", outcome
    assert outcome.out.endswith("the same as recorded)\n")


# --- the reader's own bounds ----------------------------------------------------------------


def test_a_file_that_lies_about_its_size_is_read_at_most_limit_plus_one_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file may grow after fstat (or report size 0, as /proc does): the read stops at the
    limit + 1 bytes and refuses, whatever fstat said."""
    (tmp_path / "meta.json").write_bytes(b"x" * 10_000)
    real_fstat, real_read = os.fstat, os.read
    asked: list[int] = []

    class Small:
        def __init__(self, st: os.stat_result) -> None:
            self.st_mode, self.st_ino, self.st_dev, self.st_nlink, self.st_size = (
                st.st_mode, st.st_ino, st.st_dev, st.st_nlink, 0)

    def counting_read(fd: int, n: int) -> bytes:
        asked.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(safe_read.os, "fstat", lambda fd: Small(real_fstat(fd)))
    monkeypatch.setattr(safe_read.os, "read", counting_read)
    fd = safe_read.open_bundle(tmp_path)
    try:
        with pytest.raises(BundleError, match="meta.json: more than the limit of 100 bytes"):
            safe_read.read_bytes(tmp_path, fd, "meta.json", limit=100)
    finally:
        os.close(fd)
    assert sum(asked) <= 101


def test_a_symlink_in_a_subdirectory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f.txt").write_text("hi")
    (tmp_path / "conntrack").symlink_to(tmp_path / "real")
    fd = safe_read.open_bundle(tmp_path)
    try:
        assert safe_read.read_bytes(tmp_path, fd, "real/f.txt", limit=10) == b"hi"
        with pytest.raises(BundleError, match="conntrack/f.txt: a symlink, not a directory"):
            safe_read.read_bytes(tmp_path, fd, "conntrack/f.txt", limit=10)
        with pytest.raises(BundleError, match="not a plain path inside the bundle"):
            safe_read.read_bytes(tmp_path, fd, "../etc", limit=10)
    finally:
        os.close(fd)


@pytest.mark.parametrize(("text", "depth"), [
    ("{}", 1), ('{"a": [1, {"b": []}]}', 4), ('["[[[[", "\\"[["]', 1), ("1", 0)])
def test_json_depth_skips_strings(text: str, depth: int) -> None:
    assert json_depth(text) == depth


# --- mutated golden bundles ------------------------------------------------------------------

WEIRD = [None, True, -1, 0, 10**30, 1.5, 1e308, float("nan"), float("inf"), "", "x", "zz",
         "999.1.1.1", [], [1], {}, {"a": 1}]


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*at, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*at, i))
    return out


def _put(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, str, Callable[[Path], None]]:
    name = draw(st.sampled_from(sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())))
    file = draw(st.sampled_from(JUDGED_FILES))
    kind = draw(st.sampled_from(["field", "field", "field", "truncate", "bytes"]))
    if kind == "field" and file.endswith(".json"):
        doc = json.loads((GOLDEN / name / file).read_text())
        path = draw(st.sampled_from(_paths(doc)))
        value = draw(st.sampled_from(WEIRD))
        delete = draw(st.booleans())

        def field(bundle: Path) -> None:
            (bundle / file).write_text(json.dumps(_put(doc, path, value, delete)))
        return name, file, field
    raw = (GOLDEN / name / file).read_bytes()
    cut = draw(st.integers(0, len(raw)))
    junk = draw(st.sampled_from([b"", b"\xff", b"\xc3", b"\x00", b"NaN", b"]]]", b"\n\n"]))
    rehash = draw(st.booleans())

    def damage(bundle: Path) -> None:
        (bundle / file).write_bytes(raw[:cut] + (junk + raw[cut:] if kind == "bytes" else b""))
        if file == "spec.toml" and rehash:
            _rehash(bundle)
    return name, file, damage


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_a_mutated_golden_bundle_is_judged_or_refused_in_one_line(
        mutation: tuple[str, str, Callable[[Path], None]]) -> None:
    name, _, mutate = mutation
    with tempfile.TemporaryDirectory() as tmp:
        bundle = _copy(Path(tmp), name)
        mutate(bundle)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["judge", str(bundle)])
    assert status in (0, 2, 3), (status, err.getvalue())
    if status == 2:
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"natlab: {bundle}: "), err.getvalue()
        assert any(f": {f}" in lines[0] for f in JUDGED_FILES), lines[0]
    else:
        assert err.getvalue() == "" and "(re-judged from" in out.getvalue()


def test_docs_safety_states_the_limits_the_reader_enforces() -> None:
    """docs/safety.md's numbers are the reader's: a changed limit must change the doc too."""
    doc = " ".join((ROOT / "docs" / "safety.md").read_text().split())
    for file, limit in FILE_LIMITS.items():
        size = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"
        assert f"`{file}`" in doc and size in doc, (file, size)
    assert f"JSON may nest at most {MAX_JSON_DEPTH} deep" in doc
    assert f"at most {MAX_PACKET_LINES:,} lines".replace(",", " ") in doc
    assert f"within a {AS_LIMIT >> 20} MiB address space" in doc
    assert f"on {len(CASES)} attacker bundles" in doc
    assert all(f"`{file}`" in doc for file in JUDGED_FILES)
