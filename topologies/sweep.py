"""Find and remove what earlier natlab runs left behind, and nothing else.

A run can die without tearing down (SIGKILL, a crash, a power-cut test runner). Its leftovers
are recognised only by natlab's own marks (see `topologies.names`):

- processes whose command line carries a natlab node's shell marker (`mininet:nlab12h0`) or
  whose environment carries `NATLAB_RUN=nlab12`, and every process sharing a network namespace
  with such a marked shell (the namespace is certainly natlab's while its shell lives);
- links in our own (root) namespace whose names start with the run id;
- the state file `/run/natlab/<run_id>.json`.

A run whose owner (pid + start time from the state file) is still alive is skipped unless it is
asked for by id. Processes are killed by pid with os.kill, after re-checking their start time;
no pattern-based killing. Recorded namespace inodes are never trusted on their own: the kernel
reuses inode numbers as soon as a namespace is freed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from topologies.names import (
    ENV_MARKER,
    OWNER_FILE,
    PARTIAL_RE,
    STATE_DIR,
    is_alive,
    is_run_id,
    mark_is_dead,
    process_start_time,
    read_state,
    remove_state,
    run_id_of_marker,
    stale_temp_files,
    state_path,
    state_run_ids,
)


@dataclass(frozen=True)
class ProcInfo:
    """One process as the sweeper sees it."""

    pid: int
    start: int
    netns: str | None
    marker_run: str | None  # run id from a Mininet shell marker in the command line
    env_run: str | None  # run id from NATLAB_RUN in the environment
    cmdline: tuple[str, ...] = ()


def _read_proc(pid: int) -> ProcInfo | None:
    start = process_start_time(pid)
    if start is None:
        return None
    base = Path(f"/proc/{pid}")
    try:
        cmdline = tuple(
            a.decode(errors="replace") for a in (base / "cmdline").read_bytes().split(b"\0") if a
        )
        netns: str | None = os.readlink(base / "ns" / "net")
    except OSError:
        return None  # gone, or a kernel thread without a namespace link
    marker = next((r for r in map(run_id_of_marker, cmdline) if r is not None), None)
    env_run = None
    try:
        for var in (base / "environ").read_bytes().split(b"\0"):
            if var.startswith(ENV_MARKER.encode() + b"="):
                value = var.split(b"=", 1)[1].decode(errors="replace")
                env_run = value if is_run_id(value) else None
                break
    except OSError:
        pass
    return ProcInfo(pid, start, netns, marker, env_run, cmdline)


def scan_processes() -> list[ProcInfo]:
    """Every readable process on the machine (cheap: a few hundred small /proc reads)."""
    out = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != me:
            info = _read_proc(int(entry.name))
            if info is not None:
                out.append(info)
    return out


def _protected_namespaces() -> set[str]:
    """Our own namespace and init's: never treat every process in them as natlab's."""
    out = set()
    for pid in ("self", "1"):
        with contextlib.suppress(OSError):
            out.add(os.readlink(f"/proc/{pid}/ns/net"))
    return out


def processes_of(run_id: str, procs: Iterable[ProcInfo]) -> list[ProcInfo]:
    """The processes belonging to `run_id`: marked ones, and all that share a network
    namespace with a marked one (a namespace holding a live marked process is certainly ours).

    natlab runs nothing in our own or init's namespace, so no process there is ever counted,
    even one that inherited NATLAB_RUN by accident."""
    protected = _protected_namespaces()
    procs = [p for p in procs if p.netns is not None and p.netns not in protected]
    namespaces = {p.netns for p in procs if run_id in (p.marker_run, p.env_run)}
    return [p for p in procs if p.netns in namespaces]


def root_links() -> list[str]:
    """Names of the links in our own network namespace."""
    # A session of its own: a terminal's Ctrl-C to natlab's process group during teardown
    # (which natlab holds back) must not kill the check.
    # A dump can be cut short while links are being deleted (a teardown, another run's): the
    # read is tried again a few times before it counts as a failure.
    for _ in range(3):
        proc = subprocess.run(
            ["ip", "-j", "link", "show"], capture_output=True, timeout=10, check=False,
            start_new_session=True,
        )
        if proc.returncode == 0:
            return [str(link["ifname"]) for link in json.loads(proc.stdout or b"[]")]
    raise RuntimeError(f"`ip -j link show` failed (exit status {proc.returncode}): "
                       f"{proc.stderr.decode().strip()}")


def links_of(run_id: str, links: Iterable[str]) -> list[str]:
    return [name for name in links if name.startswith(run_id)]


def delete_links(run_id: str) -> tuple[list[str], list[str]]:
    """Delete the links in our namespace named with `run_id`. Deleting one end of a veth
    deletes its peer too, so the list is read again after each deletion.
    Returns (names deleted, error messages)."""
    removed: list[str] = []
    errors: list[str] = []
    failed: set[str] = set()
    while True:
        names = [n for n in links_of(run_id, root_links()) if n not in failed]
        if not names:
            return removed, errors
        proc = subprocess.run(
            ["ip", "link", "del", "dev", names[0]], capture_output=True, timeout=10, check=False,
            start_new_session=True,
        )
        if proc.returncode == 0:
            removed.append(names[0])
        else:
            failed.add(names[0])
            errors.append(f"`ip link del dev {names[0]}`: {proc.stderr.decode().strip()}")


@dataclass(frozen=True)
class Leftovers:
    """What of a run still exists."""

    run_id: str
    processes: tuple[ProcInfo, ...]
    links: tuple[str, ...]
    state_file: bool

    @property
    def empty(self) -> bool:
        return not self.processes and not self.links and not self.state_file

    def describe(self) -> str:
        parts = []
        if self.processes:
            procs = ", ".join(f"{p.pid} ({' '.join(p.cmdline)[:60]})" for p in self.processes)
            parts.append(f"processes {procs}")
        if self.links:
            parts.append(f"links {', '.join(self.links)}")
        if self.state_file:
            parts.append("its state file")
        return f"run {self.run_id}: " + ("; ".join(parts) if parts else "nothing left")


def find_leftovers(run_id: str, state_dir: Path = STATE_DIR) -> Leftovers:
    return Leftovers(
        run_id,
        tuple(processes_of(run_id, scan_processes())),
        tuple(links_of(run_id, root_links())),
        state_path(run_id, state_dir).exists(),
    )


def kill_processes(procs: Iterable[ProcInfo], timeout: float = 5.0) -> list[int]:
    """SIGKILL each process that is still the same process (pid and start time), then wait
    until all are gone or zombies. Returns the pids signalled."""
    procs = list(procs)
    killed = []
    for p in procs:
        if process_start_time(p.pid) != p.start:
            continue
        try:
            os.kill(p.pid, signal.SIGKILL)
            killed.append(p.pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    pending = [p for p in procs if p.pid in killed]
    while pending and time.monotonic() < deadline:
        pending = [p for p in pending if process_start_time(p.pid) == p.start]
        if pending:
            time.sleep(0.01)
    return killed


# --- files of dead runs ------------------------------------------------------------------------


def dead_files(results: Path | None = None, tmpdir: Path | None = None) -> list[Path]:
    """Hidden partial bundles (`.partial-<run id>-<pid>-<start>`) in `results` and work
    directories (`natlab-*` holding an owner mark) in `tmpdir` whose owner is dead. Anything
    without a readable mark is not natlab's to judge and is left alone."""
    out: list[Path] = []
    if results is not None and results.is_dir():
        for p in results.iterdir():
            m = PARTIAL_RE.fullmatch(p.name)
            if m and p.is_dir() and not p.is_symlink() \
                    and not is_alive(int(m.group(2)), int(m.group(3))):
                out.append(p)
    if tmpdir is not None and tmpdir.is_dir():
        for p in tmpdir.glob("natlab-*"):
            if not p.is_dir() or p.is_symlink():
                continue
            try:
                mark = (p / OWNER_FILE).read_text()
            except OSError:
                continue
            if mark_is_dead(mark):
                out.append(p)
    return sorted(out)


def remove_dead_files(paths: Iterable[Path]) -> tuple[list[str], list[str]]:
    """Remove each directory (re-checked just before: still a directory, not a link).
    Returns (paths removed, error messages)."""
    removed, errors = [], []
    for p in paths:
        if not p.is_dir() or p.is_symlink():
            continue
        try:
            shutil.rmtree(p)
            removed.append(str(p))
        except OSError as e:
            errors.append(f"removing {p}: {e.strerror or e}")
    return removed, errors


# --- the record of ended runs -----------------------------------------------------------------

# In the state directory, one line per run that ended: `<run id> <time> <pid> <how> <killed>`,
# how = `teardown` (its own natlab tore it down) or `swept` (a sweep removed what was left).
ENDED_LOG = "ended.log"
_ENDED_MAX_BYTES = 1 << 20


def record_ended(runs: dict[str, int], how: str, state_dir: Path = STATE_DIR) -> None:
    """Append to the record (O_APPEND: lines of concurrent natlabs never overwrite each
    other); the oldest half is dropped once it grows past 1 MiB."""
    if not runs:
        return
    now = time.time()
    text = "".join(f"{rid} {now:.0f} {os.getpid()} {how} {n}\n" for rid, n in runs.items())
    path = state_dir / ENDED_LOG
    with contextlib.suppress(OSError):
        state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        if path.stat().st_size > _ENDED_MAX_BYTES:
            lines = path.read_text().splitlines(keepends=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text("".join(lines[len(lines) // 2:]))
            os.replace(tmp, path)


def ended_before(run_id: str, state_dir: Path = STATE_DIR) -> str | None:
    """How `run_id` ended earlier, or None when this machine has no record of it."""
    try:
        lines = (state_dir / ENDED_LOG).read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        words = line.split()
        if len(words) == 5 and words[0] == run_id:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(words[1])))
            if words[3] == "teardown":
                return f"torn down by its own natlab (pid {words[2]}) at {when}"
            return f"already swept at {when} by natlab pid {words[2]} (killed {words[4]} " \
                   "process(es))"
    return None


class UnknownRun(ValueError):
    """`natlab clean ID` for an id this machine has no trace of."""


@dataclass(frozen=True)
class SweepReport:
    swept: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # runs whose owner is still alive
    killed: tuple[int, ...] = ()
    links_removed: tuple[str, ...] = ()
    state_files_removed: tuple[str, ...] = ()
    files_removed: tuple[str, ...] = ()   # partial bundles, work directories
    errors: tuple[str, ...] = field(default=())
    earlier: str | None = None   # `clean ID` of a run another natlab swept already

    @property
    def anything(self) -> bool:
        """Did this sweep remove anything?"""
        return bool(self.swept or self.killed or self.links_removed or self.state_files_removed
                    or self.files_removed or self.errors)

    def summary(self) -> str:
        if self.earlier is not None:
            return f"run {' '.join(self.swept)}: nothing left ({self.earlier})"
        return (
            f"swept {len(self.swept)} run(s) {' '.join(self.swept)}; "
            f"killed {len(self.killed)} process(es), removed {len(self.links_removed)} link(s), "
            f"{len(self.state_files_removed)} state file(s) "
            f"and {len(self.files_removed)} partial bundle(s) or work director(y/ies); "
            f"skipped {len(self.skipped)} live run(s)"
            + (f"; errors: {'; '.join(self.errors)}" if self.errors else "")
        )


def sweep(run_id: str | None = None, state_dir: Path = STATE_DIR, *,
          results: Path | None = None, tmpdir: Path | None = None) -> SweepReport:
    """Remove the leftovers of dead natlab runs (or of `run_id`, even if its owner lives),
    and the partial bundles in `results` and work directories in `tmpdir` of dead owners.
    Raises UnknownRun for a `run_id` of which nothing is known (never made here, or swept
    long ago).

    One sweep at a time on the machine (an exclusive lock on `state_dir/.sweep.lock`): every
    run, up and clean sweeps first, and two sweepers interleaving over one dead run would each
    report half of what was removed."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".sweep.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _sweep(run_id, state_dir, results=results, tmpdir=tmpdir)


def _sweep(run_id: str | None, state_dir: Path, *,
           results: Path | None, tmpdir: Path | None) -> SweepReport:
    procs = scan_processes()
    errors: list[str] = []
    if run_id is not None:
        if not is_run_id(run_id):
            raise ValueError(f"not a natlab run id: {run_id!r}")
        if not state_path(run_id, state_dir).exists() and not processes_of(run_id, procs) \
                and not links_of(run_id, root_links()):
            earlier = ended_before(run_id, state_dir)
            if earlier is None:
                raise UnknownRun(f"no run {run_id} on this machine: no state file, process or "
                                 "link carries that id, and no natlab ran or swept it")
            return SweepReport(swept=(run_id,), earlier=earlier)
        targets = [run_id]
        skipped: list[str] = []
    else:
        candidates = set(state_run_ids(state_dir))
        protected = _protected_namespaces()
        for p in procs:
            if p.netns not in protected:
                candidates |= {r for r in (p.marker_run, p.env_run) if r}
        targets, skipped = [], []
        for rid in sorted(candidates):
            try:
                state = read_state(rid, state_dir)
            except (ValueError, KeyError, TypeError) as e:
                errors.append(f"run {rid}: unreadable state file ({e}); treating it as dead")
                state = None
            if state is not None and state.owner_alive():
                skipped.append(rid)
            else:
                targets.append(rid)
    killed: list[int] = []
    links_removed: list[str] = []
    states_removed: list[str] = []
    killed_of: dict[str, int] = {}
    for rid in targets:
        mine = kill_processes(processes_of(rid, procs))
        killed += mine
        killed_of[rid] = len(mine)
        removed, failed = delete_links(rid)
        links_removed += removed
        errors += failed
        left = find_leftovers(rid, state_dir)
        if left.processes or left.links:
            errors.append("still there after sweeping " + left.describe())
        elif remove_state(rid, state_dir):
            states_removed.append(rid)
    for tmp in stale_temp_files(state_dir):
        tmp.unlink(missing_ok=True)
        states_removed.append(tmp.name)
    files_removed, failed = remove_dead_files(dead_files(results, tmpdir))
    errors += failed
    record_ended(killed_of, "swept", state_dir)
    return SweepReport(
        swept=tuple(targets),
        skipped=tuple(skipped),
        killed=tuple(killed),
        links_removed=tuple(links_removed),
        state_files_removed=tuple(states_removed),
        files_removed=tuple(files_removed),
        errors=tuple(errors),
    )


def sweep_before_run(results: Path | None) -> str | None:
    """What `natlab run` and `natlab up` do first: sweep every dead run of this machine (never
    a live one), partial bundles of dead owners under `results` and work directories of dead
    owners under $TMPDIR. Returns one line saying what was swept, or None when nothing was."""
    report = sweep(results=results, tmpdir=Path(tempfile.gettempdir()))
    if not report.anything:
        return None
    return "swept what dead natlab runs left: " + report.summary()
