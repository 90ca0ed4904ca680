"""Results are never lost (issue 6, item 6): interrupting a multi-spec `natlab run` keeps every
finished bundle complete, leaves no partial one and nothing in the kernel; re-running the same
command runs every spec again (nothing is skipped).

The interrupt is a SIGINT to the natlab process, or to its whole process group as a terminal's
Ctrl-C sends it (then natlab's own children get it too), at several points: in the middle of a
spec's run, while a bundle is being written (its `.partial-*` directory exists), and with
`-j 3` while several workers run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
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
)

SPECS = ("seed-dnat-udp", "seed-snat-tcp", "icmp-echo-nat", "redirect", "tcp-rst")


def _children(pid: int) -> set[int]:
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


def interrupt(out_dir: Path, *, after_lines: int, delay: float, group: bool,
              jobs: int = 1, on_partial: bool = False, signum: int = signal.SIGINT
              ) -> tuple[int, str, str, set[str]]:
    """Start a multi-spec run, SIGINT it `delay` s into the run of the spec after its
    `after_lines`-th result line (or as soon as a bundle is being written, with
    `on_partial`). Returns (status, stdout, stderr, ids of every run it made)."""
    proc = natlab(["run", "--json", "-j", str(jobs), "--out", str(out_dir), *SPECS])
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    runs: set[str] = set()
    fire_at: float | None = None
    sent = False
    while proc.poll() is None:
        runs |= set(runs_owned_by({proc.pid} | _children(proc.pid)))
        if not sent:
            if on_partial:
                partial = out_dir.exists() and any(p.name.startswith(".partial-")
                                                   for p in out_dir.iterdir())
                fire = partial and len(lines) >= after_lines
            else:
                # `delay` s into the next spec's run (its state file seen)
                if fire_at is None and len(lines) >= after_lines and len(runs) > after_lines:
                    fire_at = time.monotonic() + delay
                fire = fire_at is not None and time.monotonic() >= fire_at
            if fire:
                if group:
                    os.killpg(proc.pid, signum)
                else:
                    os.kill(proc.pid, signum)
                sent = True
        time.sleep(0.0005 if on_partial else 0.005)
    reader.join(timeout=60)
    err = proc.stderr.read()
    proc.wait()
    return proc.returncode, "".join(lines), err, runs


def check_results(out_dir: Path, stdout: str, runs: set[str], jobs: int = 1) -> list[Path]:
    """Every bundle complete, the reported ones among them, nothing else in the directory
    (no .partial-*), and nothing of any run left in the kernel."""
    bundles, other = results_entries(out_dir)
    assert other == [], f"left in {out_dir}: {other}"
    for bundle in bundles:
        assert bundle_problems(bundle) == [], bundle
    reported = [Path(json.loads(line)["bundle"]) for line in stdout.splitlines()]
    assert set(reported) <= set(bundles)
    # Interrupted just after a rename, a bundle may be complete but not reported yet (one
    # per worker: with -j N each may have just finished one).
    assert len(bundles) - len(reported) <= jobs, (bundles, reported)
    for run_id in runs:
        assert leftovers(run_id) == [], run_id
    return bundles


def test_interrupting_a_run_keeps_finished_bundles_and_nothing_else(tmp_path: Path) -> None:
    rng = random.Random()
    points = [(0, rng.uniform(0.1, 0.5), False), (1, rng.uniform(0.0, 0.3), True),
              (2, rng.uniform(0.2, 0.6), False), (3, rng.uniform(0.0, 0.4), True)]
    for n, (after, delay, group) in enumerate(points):
        out_dir = tmp_path / f"results-{n}"
        status, out, err, runs = interrupt(out_dir, after_lines=after, delay=delay, group=group)
        where = f"after line {after} + {delay:.2f} s, {'group' if group else 'process'}"
        assert status == 130, (where, status, err)
        assert own_lines(err) == ["natlab: interrupted"], (where, err)
        assert len(out.splitlines()) >= after, where
        assert runs, where
        bundles = check_results(out_dir, out, runs)
        assert len(bundles) < len(SPECS), where


def test_interrupt_while_a_bundle_is_written(tmp_path: Path) -> None:
    """SIGINT while a `.partial-*` directory exists: either the bundle finished (renamed
    whole) or it is gone; never a partial one."""
    hits = 0
    for n in range(4):
        out_dir = tmp_path / f"results-{n}"
        status, out, err, runs = interrupt(out_dir, after_lines=n % 2, delay=0.0, group=False,
                                           on_partial=True)
        check_results(out_dir, out, runs)
        if status == 130:
            hits += 1
            assert own_lines(err) == ["natlab: interrupted"], err
        else:  # the bundle was too quick to catch: the run finished
            assert status == 0, err
    print(f"{hits} of 4 interrupts landed while a bundle was written")
    assert hits >= 1


def test_interrupting_parallel_workers(tmp_path: Path) -> None:
    for n, group in enumerate((False, True)):
        out_dir = tmp_path / f"results-{n}"
        status, out, err, runs = interrupt(out_dir, after_lines=1, delay=0.1 + 0.2 * n,
                                           group=group, jobs=3)
        assert status == 130, (status, err)
        assert own_lines(err) == ["natlab: interrupted"], err
        assert len(runs) >= 3  # several workers were running
        check_results(out_dir, out, runs, jobs=3)


def test_rerunning_after_an_interrupt_runs_every_spec(tmp_path: Path) -> None:
    out_dir = tmp_path / "results"
    status, out, _, runs = interrupt(out_dir, after_lines=2, delay=0.2, group=False)
    assert status == 130
    before = check_results(out_dir, out, runs)
    again = natlab_run(["run", "--json", "--out", str(out_dir), *SPECS])
    assert again.returncode == 0, again.stderr
    results = [json.loads(line) for line in again.stdout.splitlines()]
    assert [r["name"] for r in results] == list(SPECS)
    new = [Path(r["bundle"]) for r in results]
    assert not set(new) & set(before)
    bundles, other = results_entries(out_dir)
    assert other == [] and sorted(bundles) == sorted([*before, *new])
    for bundle in bundles:
        assert bundle_problems(bundle) == [], bundle
