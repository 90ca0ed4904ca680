"""Every way a run can end leaves nothing (issue 11, item 4).

The signal matrix: `natlab run` and `natlab up --simple` get SIGINT (to the process group, as a
terminal's Ctrl-C), SIGTERM or SIGHUP (to natlab alone, as `kill` or `timeout` send them) or
SIGKILL in each phase of a run: while the topology is built, while the rules load, while a
capture runs, during traffic, during teardown. After INT, TERM and HUP natlab exits 130, 143 or
129 with one line (a second signal soon after the first does not cut the teardown) and
nothing of the run is left: no process, namespace, link, mount, state
file, work directory in $TMPDIR or partial bundle, and any bundle is whole. After SIGKILL the
next natlab (the next phase's run or up, then a final `natlab clean`) sweeps what was left and
says so (or another test's natlab did, as the record of ended runs says).

The sweep of files is checked directly too: partial bundles and work directories are removed
only when their owner (pid and start time in their mark) is dead, unmarked ones never.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from tests.kernel.natlab_process import (
    NATLAB,
    REPO,
    STATE_DIR,
    bundle_problems,
    in_namespaces_of,
    leftovers,
    natlab_run,
    own_lines,
    results_entries,
)
from tests.kernel.test_crash_cleanup import Watch, _spec
from topologies.names import OWNER_FILE, new_run_id, process_start_time

PHASES = ("topology", "rules", "capture", "traffic", "teardown")
SIGNALS = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "HUP": signal.SIGHUP,
           "KILL": signal.SIGKILL}
MESSAGES = {signal.SIGINT: "natlab: interrupted", signal.SIGTERM: "natlab: terminated (SIGTERM)",
            signal.SIGHUP: "natlab: hung up (SIGHUP)"}
TRIES = 5

# What `up --simple` is told in each phase (run: the spec's own steps do it).
UP_INPUT = {
    "topology": "",
    "rules": "",
    "capture": "gateway tcpdump -n -i any\n",
    "traffic": "laptop ping -c 400 -i 0.05 203.0.113.10\n",
    "teardown": "exit\n",
}

Trigger = Callable[[Watch], bool]


def _trigger(phase: str, command: str, rng: random.Random) -> Trigger:
    if phase == "topology":
        k = rng.randrange(3)
        return lambda w: w.nodes >= k
    if phase == "rules":
        return lambda w: w.running("iptables-restore")
    if phase == "capture":
        return lambda w: w.running("tcpdump")
    if phase == "traffic":
        program = "experiments.kernel.agent" if command == "run" else "ping"
        delay = rng.uniform(0.05, 0.3)
        seen: list[float] = []

        def traffic(w: Watch) -> bool:
            if w.running(program) and not seen:
                seen.append(time.monotonic())
            return bool(seen) and time.monotonic() - seen[0] >= delay

        return traffic
    # teardown: one of the node shells is gone
    return lambda w: w.max_shells > 0 and w.shells < w.max_shells


def _start(command: str, spec: Path, out: Path, env: dict[str, str], phase: str
           ) -> subprocess.Popen[str]:
    if command == "run":
        args = ["run", "--json", "--out", str(out), str(spec)]
    else:
        args = ["up", str(spec), "--simple"]
    proc = subprocess.Popen([*NATLAB, *args], cwd=REPO, text=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=env)
    assert proc.stdin is not None
    if command == "up" and UP_INPUT[phase]:
        proc.stdin.write(UP_INPUT[phase])
        proc.stdin.flush()
    return proc


def _signal(proc: subprocess.Popen[str], signum: int) -> None:
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)     # Ctrl-C: the terminal signals the whole group
    else:
        os.kill(proc.pid, signum)


def _second_ctrl_c(proc: subprocess.Popen[str], watch: Watch, phase: str) -> None:
    """In `up`'s shell a Ctrl-C stops the command that runs (as in any shell), and the
    session goes on; a second one at the prompt ends it."""
    program = "tcpdump" if phase == "capture" else "ping"
    deadline = time.monotonic() + 30
    while watch.update(proc.pid) and watch.running(program):
        assert proc.poll() is None and time.monotonic() < deadline, "the command went on"
        time.sleep(0.01)
    time.sleep(0.2)      # back at the prompt
    os.killpg(proc.pid, signal.SIGINT)


def _swept_elsewhere(run_id: str, not_by: int | None) -> bool:
    """Did a natlab other than `not_by` (another test's) sweep `run_id`? (the record of ended
    runs)"""
    try:
        lines = (STATE_DIR / "ended.log").read_text().splitlines()
    except OSError:
        return False
    return any(w[:1] == [run_id] and len(w) == 5 and w[3] == "swept" and w[2] != str(not_by)
               for w in map(str.split, lines))


def _available(pipe: IO[str] | None) -> str:
    """What a pipe holds now, without waiting for its end."""
    if pipe is None:
        return ""
    os.set_blocking(pipe.fileno(), False)
    try:
        return os.read(pipe.fileno(), 1 << 20).decode(errors="replace")
    except BlockingIOError:
        return ""


def _files_left(tmpdir: Path, out: Path) -> list[Path]:
    """Work directories in $TMPDIR and anything but whole bundles in the results dir."""
    work = sorted(tmpdir.glob("natlab-*"))
    bundles, other = results_entries(out)
    for bundle in bundles:
        assert bundle_problems(bundle) == [], bundle
    return work + other


@pytest.mark.parametrize("command", ["run", "up"])
@pytest.mark.parametrize("name", list(SIGNALS))
def test_signal_in_every_phase_leaves_nothing(tmp_path: Path, command: str, name: str) -> None:
    signum = SIGNALS[name]
    seed = int(os.environ.get("NATLAB_SIGNAL_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    spec = _spec(tmp_path, "home")           # 600 filter rules: loading them takes a while
    out, tmpdir = tmp_path / "results", tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    killed: list[tuple[str, set[tuple[int, str]]]] = []   # SIGKILLed runs not yet checked
    all_runs: list[str] = []
    for phase in PHASES:
        for attempt in range(1, TRIES + 1):
            where = f"seed {seed}, {command} {name} in {phase}, try {attempt}"
            proc = _start(command, spec, out, env, phase)
            watch = Watch()
            trigger = _trigger(phase, command, rng)
            fired = False
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                if command == "up" and watch.run_id is not None \
                        and time.monotonic() > watch.since + 10:
                    break   # missed: `up` would wait at its prompt; closing stdin ends it
                if watch.update(proc.pid):
                    # The run's state file exists: the sweep at its start is over.
                    for run_id, seen in killed:
                        assert leftovers(run_id, seen) == [], f"{where}: {run_id} not swept"
                    if trigger(watch):
                        seen_now = in_namespaces_of(watch.run_id or "")
                        _signal(proc, signum)
                        fired = True
                        if command == "up" and signum == signal.SIGINT \
                                and phase in ("capture", "traffic"):
                            _second_ctrl_c(proc, watch, phase)
                        elif signum != signal.SIGKILL:
                            # A second signal, as an impatient user sends it: it must not
                            # cut the teardown the first one started.
                            time.sleep(rng.uniform(0.01, 0.1))
                            if proc.poll() is None:
                                _signal(proc, signum)
                        break
                time.sleep(0.002)
            if fired and signum == signal.SIGKILL:
                # Its orphans (node shells, tcpdump, ping) may hold the pipes open until
                # they are swept: do not wait for the end of its output.
                proc.wait(timeout=30)
                stderr = _available(proc.stderr)
                for pipe in (proc.stdin, proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
            else:
                _, stderr = proc.communicate(timeout=90)
            assert watch.run_id is not None, f"{where}: never saw the run's state file"
            all_runs.append(watch.run_id)
            if killed:   # the first natlab after a SIGKILL said what it swept
                for run_id, _ in killed:
                    assert run_id in stderr or _swept_elsewhere(run_id, proc.pid), \
                        (where, stderr)
                killed = []
            assert "Traceback" not in stderr, (where, stderr)
            if not fired:
                assert proc.returncode == 0, (where, stderr)
                continue
            if signum == signal.SIGKILL:
                assert proc.returncode == -signal.SIGKILL, (where, proc.returncode, stderr)
                # Killed after its own teardown had removed everything: nothing to sweep.
                if leftovers(watch.run_id, seen_now):
                    killed.append((watch.run_id, seen_now))
                break
            if proc.returncode == 0 and phase == "teardown":
                # The signal came after natlab had finished: the run's status stands.
                assert leftovers(watch.run_id, seen_now) == [], where
                break
            assert proc.returncode == 128 + signum, (where, proc.returncode, stderr)
            lines = own_lines(stderr)
            if command == "run":
                assert lines == [MESSAGES[signum]], (where, stderr)
            else:       # a command's own output (tcpdump's "listening on") may come first
                assert lines[-1:] == [MESSAGES[signum]], (where, stderr)
            assert leftovers(watch.run_id, seen_now) == [], where
            assert _files_left(tmpdir, out) == [], where
            break
        else:
            pytest.fail(f"seed {seed}: no {name} landed in phase {phase} of {command} "
                        f"in {TRIES} tries")
    if killed:   # the last SIGKILLed run: the next natlab is a `clean`
        clean = natlab_run(["clean"], timeout=60)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        run_id, seen = killed[0]
        assert run_id in clean.stdout or _swept_elsewhere(run_id, None), clean.stdout
        assert leftovers(run_id, seen) == []
    if signum == signal.SIGKILL and command == "run":
        # A work directory or partial bundle of the last killed run: the next run that
        # uses the same $TMPDIR and results directory sweeps them.
        again = natlab_run(["run", "--out", str(out), "seed-dnat-udp"], env=env)
        assert again.returncode == 0, again.stderr
    for run_id in all_runs:
        assert leftovers(run_id) == [], run_id
    assert _files_left(tmpdir, out) == []


def _dead_mark() -> str:
    """`<pid>-<start>` of a process that has ended."""
    proc = subprocess.Popen(["sleep", "0.2"])
    start = process_start_time(proc.pid)
    proc.wait()
    return f"{proc.pid}-{start}"


def test_sweep_removes_files_of_dead_owners_only(tmp_path: Path) -> None:
    out, tmpdir = tmp_path / "results", tmp_path / "tmp"
    out.mkdir()
    tmpdir.mkdir()
    dead, live = _dead_mark(), f"{os.getpid()}-{process_start_time(os.getpid())}"
    doomed = [out / f".partial-{new_run_id()}-{dead}", tmpdir / "natlab-x-abc"]
    kept = [out / f".partial-{new_run_id()}-{live}", out / ".partial-nl0000-1",
            tmpdir / "natlab-y-def", tmpdir / "natlab-z-unmarked"]
    for d in doomed + kept:
        d.mkdir()
        (d / "file").write_text("x")
    (tmpdir / "natlab-x-abc" / OWNER_FILE).write_text(dead)
    (tmpdir / "natlab-y-def" / OWNER_FILE).write_text(live)
    proc = natlab_run(["run", "--out", str(out), "seed-dnat-udp"],
                      env={**os.environ, "TMPDIR": str(tmpdir)})
    assert proc.returncode == 0, proc.stderr
    swept = [line for line in proc.stderr.splitlines() if "swept" in line]
    assert len(swept) == 1 and "partial bundle(s) or work director" in swept[0], proc.stderr
    for d in doomed:
        assert not d.exists(), d
    for d in kept:
        assert d.exists(), d


def test_clean_of_an_unknown_run_id_says_so() -> None:
    run_id = new_run_id()
    proc = natlab_run(["clean", run_id])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f"natlab: no run {run_id} on this machine: no state file, process or link carries "
        "that id, and no natlab ran or swept it"]
    assert proc.stdout == ""


@pytest.mark.parametrize("name", ["TERM", "HUP"])
def test_terminating_parallel_workers(tmp_path: Path, name: str) -> None:
    """`natlab run -j 3` gets SIGTERM (to natlab alone, as `timeout` sends it) or SIGHUP (to
    the whole group, as a closed terminal sends it): every worker tears down, finished
    bundles are whole, nothing else is left."""
    from tests.kernel.test_interrupted_runs import check_results, interrupt

    signum = SIGNALS[name]
    out_dir = tmp_path / "results"
    status, out, err, runs = interrupt(out_dir, after_lines=1, delay=0.2, jobs=3,
                                       group=signum == signal.SIGHUP, signum=signum)
    assert status == 128 + signum, (status, err)
    assert own_lines(err) == [MESSAGES[signum]], err
    assert len(runs) >= 3
    check_results(out_dir, out, runs, jobs=3)
