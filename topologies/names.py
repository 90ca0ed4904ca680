"""Run-scoped names and the per-run state file.

Every kernel object a natlab run makes carries the run id, so two runs never collide and the
sweeper can tell natlab's leftovers from everything else on the machine:

- run id: `nl` + 4 base36 characters, e.g. `nlab12` (1.7 million values; short enough that
  Mininet's `{node}-eth{N}` interface names stay under Linux's 15 characters);
- Mininet node names: `{run_id}h{i}` for the i-th host, `{run_id}b{i}` for the i-th bridge,
  so each node's shell carries the marker `mininet:{node}` in its command line;
- every process natlab starts inside a namespace gets `NATLAB_RUN={run_id}` in its environment;
- a state file `/run/natlab/{run_id}.json`, written *before* anything is created and removed
  only after teardown verified that nothing is left, records the owner (pid and start time,
  so a recycled pid is not mistaken for a live owner) and each node's pid and namespace.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path

RUN_ID_PREFIX = "nl"
RUN_ID_RE = re.compile(r"nl[0-9a-z]{4}")
NODE_NAME_RE = re.compile(r"(nl[0-9a-z]{4})([hb])(\d+)")
SHELL_MARKER_PREFIX = "mininet:"
ENV_MARKER = "NATLAB_RUN"
STATE_DIR = Path("/run/natlab")
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_run_id() -> str:
    """A fresh random run id (`nl` + 4 base36 characters)."""
    return RUN_ID_PREFIX + "".join(secrets.choice(_BASE36) for _ in range(4))


def is_run_id(text: str) -> bool:
    return RUN_ID_RE.fullmatch(text) is not None


def host_node_name(run_id: str, index: int) -> str:
    """Mininet node name of the topology's `index`-th host."""
    return f"{run_id}h{index}"


def bridge_node_name(run_id: str, index: int) -> str:
    """Mininet node name of the namespace holding the `index`-th bridged segment."""
    return f"{run_id}b{index}"


def shell_marker(node: str) -> str:
    """The argument Mininet gives each node's shell (`bash ... -is mininet:<node>`)."""
    return SHELL_MARKER_PREFIX + node


def run_id_of_marker(arg: str) -> str | None:
    """The run id in a shell marker argument, or None when it is not a natlab node's marker."""
    if not arg.startswith(SHELL_MARKER_PREFIX):
        return None
    m = NODE_NAME_RE.fullmatch(arg[len(SHELL_MARKER_PREFIX) :])
    return m.group(1) if m else None


# --- processes -------------------------------------------------------------------------------


def process_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or None
    when the process is gone or a zombie (a zombie holds no namespace and runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_alive(pid: int, start_time: int) -> bool:
    """True when `pid` still runs and is the same process (same start time)."""
    return process_start_time(pid) == start_time


# --- state file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRecord:
    """One Mininet node of a run: its node name, what it stands for, its shell's pid and
    network namespace (`net:[inode]`), once known."""

    node: str
    host: str
    pid: int | None = None
    netns: str | None = None


@dataclass(frozen=True)
class RunState:
    run_id: str
    owner_pid: int
    owner_start: int
    topology: str
    created: float
    nodes: tuple[NodeRecord, ...] = ()

    def with_node(self, record: NodeRecord) -> RunState:
        others = tuple(n for n in self.nodes if n.node != record.node)
        return replace(self, nodes=(*others, record))

    def owner_alive(self) -> bool:
        return is_alive(self.owner_pid, self.owner_start)

    def to_json(self) -> str:
        return json.dumps(
            {
                "run_id": self.run_id,
                "owner_pid": self.owner_pid,
                "owner_start": self.owner_start,
                "topology": self.topology,
                "created": self.created,
                "nodes": [
                    {"node": n.node, "host": n.host, "pid": n.pid, "netns": n.netns}
                    for n in self.nodes
                ],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> RunState:
        d = json.loads(text)
        return cls(
            run_id=str(d["run_id"]),
            owner_pid=int(d["owner_pid"]),
            owner_start=int(d["owner_start"]),
            topology=str(d["topology"]),
            created=float(d["created"]),
            nodes=tuple(
                NodeRecord(str(n["node"]), str(n["host"]), n.get("pid"), n.get("netns"))
                for n in d.get("nodes", [])
            ),
        )


def new_state(run_id: str, topology: str) -> RunState:
    """The state of a run owned by this process, with no nodes yet."""
    pid = os.getpid()
    start = process_start_time(pid)
    assert start is not None
    return RunState(run_id, pid, start, topology, time.time())


def state_path(run_id: str, state_dir: Path = STATE_DIR) -> Path:
    if not is_run_id(run_id):
        raise ValueError(f"not a natlab run id: {run_id!r}")
    return state_dir / f"{run_id}.json"


def write_state(state: RunState, state_dir: Path = STATE_DIR) -> Path:
    """Write atomically (temporary file, fsync, rename): a reader never sees half a file."""
    state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = state_path(state.run_id, state_dir)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(state.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only still there when interrupted before the rename
    return path


def stale_temp_files(state_dir: Path = STATE_DIR) -> list[Path]:
    """Half-written state files (`<run_id>.tmp<pid>`) whose writer is gone (SIGKILL)."""
    if not state_dir.is_dir():
        return []
    out = []
    for p in state_dir.glob("*.tmp*"):
        stem, _, pid = p.name.partition(".tmp")
        if is_run_id(stem) and pid.isdigit() and process_start_time(int(pid)) is None:
            out.append(p)
    return out


def read_state(run_id: str, state_dir: Path = STATE_DIR) -> RunState | None:
    try:
        return RunState.from_json(state_path(run_id, state_dir).read_text())
    except FileNotFoundError:
        return None


def remove_state(run_id: str, state_dir: Path = STATE_DIR) -> bool:
    """Remove the run's state file; False when there was none."""
    try:
        state_path(run_id, state_dir).unlink()
        return True
    except FileNotFoundError:
        return False


def state_run_ids(state_dir: Path = STATE_DIR) -> list[str]:
    """Run ids that have a state file (files not named like a run id are ignored)."""
    if not state_dir.is_dir():
        return []
    return sorted(p.stem for p in state_dir.glob("*.json") if is_run_id(p.stem))


# --- owner marks on files --------------------------------------------------------------------

# A run's files (its work directory in $TMPDIR, a bundle being written) carry their owner's pid
# and start time, so the sweeper removes them only when that owner is dead.
OWNER_FILE = ".natlab-owner"
PARTIAL_RE = re.compile(r"\.partial-(nl[0-9a-z]{4})-(\d+)-(\d+)")


def owner_mark() -> str:
    """`<pid>-<start time>` of this process."""
    pid = os.getpid()
    return f"{pid}-{process_start_time(pid)}"


def mark_is_dead(mark: str) -> bool:
    """True when the process a mark names is gone (False for anything that is not a mark:
    what natlab cannot attribute, it leaves alone)."""
    pid, _, start = mark.strip().partition("-")
    if not (pid.isdigit() and start.isdigit()):
        return False
    return not is_alive(int(pid), int(start))


def partial_bundle_name(run_id: str) -> str:
    """The hidden name a bundle is written under before it is renamed into place."""
    return f".partial-{run_id}-{owner_mark()}"
