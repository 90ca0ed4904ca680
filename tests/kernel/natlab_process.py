"""Test helpers: `natlab` as a separate process, and what a run may leave behind.

What is left of a run is looked up here independently of natlab's own sweeper (which the
tests exercise): by /proc (environment marker, Mininet shell marker, network namespace),
`ip link`, /proc/self/mountinfo and the state directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# natlab with the signal dispositions the tests rely on: a process started in the background
# inherits SIGINT ignored (and `nohup` SIGHUP), and natlab keeps an ignored signal ignored.
_START = ("import signal, sys\n"
          "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
          "for s in (signal.SIGTERM, signal.SIGHUP):\n"
          "    signal.signal(s, signal.SIG_DFL)\n"
          "from experiments.cli import main\n"
          "sys.exit(main())\n")
NATLAB = (sys.executable, "-c", _START)
SWEPT_PREFIX = "natlab: swept what dead natlab runs left: "


def own_lines(stderr: str) -> list[str]:
    """stderr's lines without the sweep report (`natlab run` first sweeps the runs that
    other tests killed, and says so)."""
    return [line for line in stderr.splitlines() if not line.startswith(SWEPT_PREFIX)]
STATE_DIR = Path("/run/natlab")
RUN_ID_RE = re.compile(r"nl[0-9a-z]{4}")
BUNDLE_FILES = ("spec.toml", "meta.json", "observed.json", "packets.jsonl", "prediction.json",
                "verdict.json", "ruleset.txt", "conntrack/final.txt", "pcap/all.pcapng")


def natlab(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `natlab ARGS...` (this checkout's) in a session of its own, output piped."""
    return subprocess.Popen([*NATLAB, *args], cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, env=env)


def natlab_run(args: Sequence[str], timeout: float = 120, env: dict[str, str] | None = None,
               prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run `[*prefix,] natlab ARGS...` to the end (a prefix like `setpriv --reuid=...`)."""
    return subprocess.run([*prefix, *NATLAB, *args], cwd=REPO, text=True, capture_output=True,
                          timeout=timeout, env=env, check=False)


# --- runs and their leftovers -----------------------------------------------------------------


def state_files() -> dict[str, dict[str, object]]:
    """run id -> the state file's content, for every readable natlab state file."""
    out = {}
    if STATE_DIR.is_dir():
        for path in STATE_DIR.glob("*.json"):
            try:
                out[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
    return out


def runs_owned_by(pids: Iterable[int]) -> dict[str, dict[str, object]]:
    wanted = set(pids)
    return {rid: s for rid, s in state_files().items() if s.get("owner_pid") in wanted}


@dataclass(frozen=True)
class Proc:
    pid: int
    start: str
    netns: str
    cmdline: str
    env_run: str | None


def processes() -> list[Proc]:
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        base = f"/proc/{entry.name}"
        try:
            stat = Path(f"{base}/stat").read_text()
            netns = os.readlink(f"{base}/ns/net")
            cmdline = Path(f"{base}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
            environ = Path(f"{base}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] in ("Z", "X"):
            continue
        env_run = next((v.split(b"=", 1)[1].decode(errors="replace") for v in environ
                        if v.startswith(b"NATLAB_RUN=")), None)
        out.append(Proc(int(entry.name), fields[19], netns, cmdline, env_run))
    return out


def root_links() -> set[str]:
    proc = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, check=True,
                          timeout=10)
    return {str(link["ifname"]) for link in json.loads(proc.stdout)}


def mount_lines() -> list[str]:
    return Path("/proc/self/mountinfo").read_text().splitlines()


def leftovers(run_id: str, seen: Iterable[tuple[int, str]] = (), ignore: Iterable[int] = ()
              ) -> list[str]:
    """Everything of run `run_id` that still exists: processes marked with it, processes
    `seen` in its namespaces earlier (pid and start time: a namespace's inode number is
    reused as soon as it is freed, so it cannot identify the namespace later), links in our
    namespace named with it, mounts naming it, its state file. `ignore`: pids of decoys."""
    seen = set(seen)
    skip = set(ignore)
    found = [f"process {p.pid} ({p.cmdline[:80]})" for p in processes()
             if p.pid not in skip and (p.env_run == run_id or f"mininet:{run_id}" in p.cmdline
                                       or (p.pid, p.start) in seen)]
    found += [f"link {name}" for name in root_links() if name.startswith(run_id)]
    found += [f"mount {line}" for line in mount_lines() if run_id in line]
    if (STATE_DIR / f"{run_id}.json").exists():
        found.append("state file")
    return found


def in_namespaces_of(run_id: str) -> set[tuple[int, str]]:
    """(pid, start time) of every process in the run's network namespaces now (from one scan
    of /proc); never ours or init's (a command natlab starts is briefly in ours, before
    `mnexec` moves it)."""
    ours = _ours()  # init's may be hidden from us
    procs = processes()
    spaces = {p.netns for p in procs
              if p.env_run == run_id or f"mininet:{run_id}" in p.cmdline} - ours
    return {(p.pid, p.start) for p in procs if p.netns in spaces}


def _ours() -> set[str]:
    out = set()
    for pid in ("self", "1"):
        with contextlib.suppress(OSError):
            out.add(os.readlink(f"/proc/{pid}/ns/net"))
    return out


# --- bundles ----------------------------------------------------------------------------------


def bundle_problems(bundle: Path) -> list[str]:
    """Why `bundle` is not a complete natlab bundle ([] when it is): every file present, the
    JSON readable, and the verdict recomputed from it the same as recorded."""
    from experiments.records.bundle import judge

    problems = [f"missing {name}" for name in BUNDLE_FILES if not (bundle / name).is_file()]
    if problems:
        return problems
    try:
        verdict = judge(bundle)
    except Exception as e:  # noqa: BLE001 - any failure to read it is the finding
        return [f"cannot be re-judged: {e}"]
    if not verdict.same:
        problems.append(f"re-judged {verdict.judgement.status}, recorded "
                        f"{verdict.recorded.get('verdict')}")
    return problems


def results_entries(results: Path) -> tuple[list[Path], list[Path]]:
    """(bundles, anything else) in a results directory."""
    if not results.exists():
        return [], []
    entries = sorted(results.iterdir())
    bundles = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    return bundles, [p for p in entries if p not in bundles]


# --- natlab as another user -----------------------------------------------------------------

_LOAD = ("import contextlib, io, sys\n"
         "from experiments.cli import main\n"
         "with contextlib.redirect_stdout(io.StringIO()):\n"
         "    main(['list'])\n"
         "for m in list(sys.modules.values()):\n"
         "    f = getattr(m, '__file__', None) or ''\n"
         "    if 'site-packages/' in f:\n"
         "        print(f.split('site-packages/', 1)[1].split('/', 1)[0])\n")


def readable_copy(dest: Path) -> tuple[list[str], dict[str, str]]:
    """natlab's code and the third-party packages it loads, copied into `dest` (made readable
    by everyone): a checkout under /root (mode 0700) cannot be read by `nobody`, nor can the
    venv's interpreter be reached there. Returns (argv that starts natlab from the copy with
    the interpreter's real path, environment); run it with cwd=`dest`."""
    import shutil

    loaded = subprocess.run([sys.executable, "-c", _LOAD], cwd=REPO, capture_output=True,
                            text=True, check=True, timeout=60).stdout.split()
    site = Path(next(p for p in sys.path if p.endswith("site-packages")
                     and Path(p, "pydantic").exists()))
    for top in sorted(set(loaded)):
        if top.startswith(("__editable__", "_distutils_hack")):
            continue
        source = site / top
        if source.is_dir():
            shutil.copytree(source, dest / "site" / top, ignore=shutil.ignore_patterns(
                "__pycache__"))
        elif source.is_file():
            (dest / "site").mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / "site" / top)
    for package in ("nat", "topologies", "experiments"):
        shutil.copytree(REPO / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    env = {**os.environ, "PYTHONPATH": f"{dest / 'site'}", "PYTHONDONTWRITEBYTECODE": "1"}
    return [os.path.realpath(sys.executable), "-c", _START], env
