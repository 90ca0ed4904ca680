"""A real run's bundle, opened as a user would: tcpdump and tshark read every capture without
a warning, tshark shows the gateway's interface names, directions and the model's comments,
natlab's marker frame and marker entry are not in what the user gets, and `natlab judge`
still re-judges the bundle.

tshark refuses nothing as root, but says "Running as user root ... dangerous" on stderr; it
runs here as `nobody` (setpriv), on a world-readable copy of the captures, so its stderr must
be empty. Needs root (the run) and Debian's tshark (Makefile APT list).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.kernel.capture import ETH_P_MARKER
from experiments.kernel.conntrack import MARKER_SRC
from experiments.kernel.wireshark import ALL, BY_INTERFACE

SPECS = ("seed-dnat-udp", "redirect")
NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")
FIELDS = ("frame.number", "frame.interface_name", "frame.packet_flags_direction",
          "sll.pkttype", "sll.etype", "ip.src", "frame.comment")


@pytest.fixture(scope="module")
def bundles() -> Iterator[dict[str, Path]]:
    out = Path(tempfile.mkdtemp(prefix="natlab-captures-"))
    try:
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert main(["run", "--json", "--out", str(out), *SPECS]) == 0
        results = [json.loads(line) for line in printed.getvalue().splitlines()]
        yield {r["name"]: Path(r["bundle"]) for r in results}
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def readable(bundles: dict[str, Path]) -> Iterator[dict[str, Path]]:
    """The bundles' pcap folders copied where `nobody` can read them."""
    top = Path(tempfile.mkdtemp(prefix="natlab-captures-ro-"))
    try:
        top.chmod(0o755)
        copies = {}
        for name, bundle in bundles.items():
            copies[name] = shutil.copytree(bundle / "pcap", top / name)
            for path in [copies[name], *copies[name].rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
        yield copies
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _captures(folder: Path) -> list[Path]:
    return [folder / ALL, *sorted((folder / BY_INTERFACE).glob("*.pcapng"))]


def _tshark(path: Path) -> list[list[str]]:
    argv = [*NOBODY, "tshark", "-r", str(path), "-T", "fields", "-E", "separator=/t",
            "-E", "occurrence=f", *(x for f in FIELDS for x in ("-e", f))]
    # A home of nobody's own (an empty readable folder), not root's: tshark reads its
    # preferences from there. The working directory too: tshark looks for files in it
    # (IOR.txt), and a checkout under /root (mode 0700) is not nobody's to read.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(path.parent),
           "LANG": "C.UTF-8"}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          env=env, cwd=path.parent)
    assert proc.returncode == 0 and proc.stderr == "", (argv, proc.stderr)
    return [line.split("\t") for line in proc.stdout.splitlines()]


@pytest.mark.parametrize("spec", SPECS)
def test_tcpdump_reads_every_capture_without_a_warning(bundles: dict[str, Path],
                                                       spec: str) -> None:
    files = _captures(bundles[spec] / "pcap")
    assert len(files) > 1                 # all.pcapng and one per interface that carried one
    for path in files:
        proc = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True,
                              text=True, timeout=30, check=False)
        assert proc.returncode == 0, proc.stderr
        # tcpdump's one line about the file (on stderr), nothing else: no "Warning".
        assert proc.stderr.splitlines() == [
            f"reading from file {path}, link-type LINUX_SLL (Linux cooked v1), "
            "snapshot length 262144"], proc.stderr
        assert " IP " in proc.stdout


@pytest.mark.parametrize("spec", SPECS)
def test_tshark_shows_names_directions_and_the_models_comments(
        bundles: dict[str, Path], readable: dict[str, Path], spec: str) -> None:
    packets = [json.loads(line) for line in
               (bundles[spec] / "packets.jsonl").read_text().splitlines()]
    rows = _tshark(readable[spec] / ALL)
    ipv4 = [r for r in rows if r[4] == "0x0800"]
    # The judged packets, in order, on the interfaces and directions the run recorded.
    assert [(r[1], r[2], r[5]) for r in ipv4] == [
        (p["iface"], "0x00000001" if p["direction"] == "in" else "0x00000002",
         _src(p["data"])) for p in packets]
    # epb_flags and the SLL packet type agree (4: PACKET_OUTGOING)
    assert all((r[3] == "4") == (r[2] == "0x00000002") for r in rows)
    assert all(r[6].startswith(f"packet #{n} {p['direction']} {p['iface']}")
               for n, (r, p) in enumerate(zip(ipv4, packets, strict=True), 1))
    assert all(r[6] == "" for r in rows if r[4] != "0x0800")
    assert not [r for r in rows if r[4] == f"{ETH_P_MARKER:#06x}"]
    for path in _captures(readable[spec])[1:]:
        assert {r[1] for r in _tshark(path)} == {path.stem}


def test_the_model_journey_is_in_the_comments(readable: dict[str, Path]) -> None:
    rows = _tshark(readable["seed-dnat-udp"] / ALL)
    comments = [r[6] for r in rows if r[6]]
    assert comments[0].startswith("packet #1 in wan0, the model's journey: NEW; PRE_ROUTING "
                                  "nat PREROUTING: rule 1 of PREROUTING")
    assert comments[1] == ("packet #2 out lan0: packet #1 after the gateway, as the model "
                           "predicted (see packet #1's journey)")


@pytest.mark.parametrize("spec", SPECS)
def test_no_marker_in_the_events_and_judge_still_works(
        bundles: dict[str, Path], spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    events = (bundles[spec] / "events.txt").read_text()
    assert "[NEW]" in events and MARKER_SRC not in events
    assert all(line.split("\t", 1)[1].strip() for line in events.splitlines())
    assert json.loads((bundles[spec] / "meta.json").read_text())["format"] == 3
    assert main(["judge", str(bundles[spec])]) == 0
    capsys.readouterr()


def _src(data_hex: str) -> str:
    raw = bytes.fromhex(data_hex)
    return ".".join(str(b) for b in raw[12:16])
