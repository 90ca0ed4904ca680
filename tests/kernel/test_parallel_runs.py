"""Parallel runs (issue 6, item 5): eight experiments at once with `natlab run -j 8` finish with
the same verdicts as one at a time, with no name collision, and leave nothing behind."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.kernel.natlab_process import (
    bundle_problems,
    leftovers,
    natlab,
    natlab_run,
    own_lines,
    results_entries,
    runs_owned_by,
    state_files,
)

# Eight runs: seven library specs and one of them twice (same name, same second: the two
# runs may differ only by their run ids). udp-stream-assured sleeps 2.5 s mid-run.
SPECS = ("seed-dnat-udp", "seed-snat-tcp", "icmp-echo-nat", "redirect", "tcp-rst",
         "masquerade-clash", "udp-stream-assured", "seed-dnat-udp")


def _summary(line: str) -> tuple[str, str, str, int]:
    r = json.loads(line)
    return r["name"], r["verdict"], r["expect"]["status"], len(r["kernel"]["conntrack"])


def test_eight_at_once_match_one_at_a_time(tmp_path: Path) -> None:
    serial = natlab_run(["run", "--json", "--out", str(tmp_path / "serial"), *SPECS])
    assert serial.returncode == 0, serial.stderr

    proc = natlab(["run", "--json", "-j", "8", "--out", str(tmp_path / "parallel"), *SPECS])
    # Watch the state files while it runs: whose runs, how many at once.
    seen: dict[str, dict[str, object]] = {}
    most_at_once = 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        owners = _children(proc.pid)
        now = runs_owned_by(owners)
        seen |= now
        most_at_once = max(most_at_once, len(now))
        time.sleep(0.01)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert own_lines(err) == [], err

    lines = out.splitlines()
    assert [_summary(x) for x in lines] == [_summary(x) for x in serial.stdout.splitlines()]
    assert [json.loads(x)["verdict"] for x in lines] == ["MATCH"] * len(SPECS)
    results = [json.loads(x) for x in lines]
    run_ids = [r["run_id"] for r in results]
    assert len(set(run_ids)) == len(SPECS)
    assert set(run_ids) == set(seen), (run_ids, sorted(seen))
    print(f"at most {most_at_once} runs at once")
    assert most_at_once >= 4, f"at most {most_at_once} runs at once"

    bundles, other = results_entries(tmp_path / "parallel")
    assert other == []
    assert sorted(Path(r["bundle"]) for r in results) == bundles
    for r in results:
        bundle = Path(r["bundle"])
        assert r["run_id"] in bundle.name and r["name"] in bundle.name
        assert json.loads((bundle / "meta.json").read_text())["run_id"] == r["run_id"]
        assert bundle_problems(bundle) == []
    for run_id in run_ids:
        assert leftovers(run_id) == []
    assert not set(state_files()) & set(run_ids)


def test_a_spec_the_kernel_refuses_does_not_stop_the_others(tmp_path: Path) -> None:
    """Keep going (issue 11, item 5): the refused spec gets its own line, every other spec
    still runs to a complete bundle, and the exit status (2) says one could not be run."""
    spec = tmp_path / "refused.toml"
    library = Path(__file__).parents[2] / "experiments" / "specs"
    spec.write_text((library / "seed-dnat-udp.toml").read_text().replace(
        "--to-destination 192.168.1.8", "--to-destination 192.168.1.999"))
    out_dir = tmp_path / "out"
    proc = natlab(["run", "--json", "-j", "3", "--out", str(out_dir), "seed-dnat-udp",
                   str(spec), "udp-stream-assured", "seed-snat-tcp"])
    owners: set[int] = set()
    runs: dict[str, dict[str, object]] = {}
    while proc.poll() is None:
        owners |= _children(proc.pid)
        runs |= runs_owned_by(owners)
        time.sleep(0.01)
    out, err = proc.communicate()
    assert proc.returncode == 2, (out, err)
    lines = own_lines(err)
    assert len(lines) == 2 and lines[0].startswith(f"natlab: {spec}: "), err
    assert "iptables-restore" in lines[0]
    assert lines[1] == "natlab: 1 of 4 specs could not be run"
    assert [json.loads(x)["name"] for x in out.splitlines()] == \
        ["seed-dnat-udp", "udp-stream-assured", "seed-snat-tcp"]
    bundles, other = results_entries(out_dir)
    assert other == [] and len(bundles) == 3
    for bundle in bundles:
        assert bundle_problems(bundle) == []
    assert len(runs) == 4
    for run_id in runs:  # every run is gone, finished or refused
        assert leftovers(run_id) == []


def test_jobs_must_be_a_positive_number() -> None:
    for bad in ("0", "-2", "many"):
        proc = natlab_run(["run", "-j", bad, "seed-dnat-udp"])
        assert proc.returncode == 2
        assert "not a number of jobs" in proc.stderr and "Traceback" not in proc.stderr


def _children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (no /proc/<pid>/task/*/children on every kernel)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                out.add(int(entry.name))
    return out
