"""Crash cleanup (issue 6, item 1): natlab killed with SIGKILL at any point of a run leaves
nothing that `natlab clean` does not remove, and cleaning never touches what natlab did not
make.

`natlab run` is started as a separate process and killed with SIGKILL (it gets no chance to
tear anything down) when its run reaches a chosen point, found by watching the kernel side:
while the topology is being created (after 0, 1 or 2 namespaces), while the rules load
(`iptables-restore` running), when the capture starts (`tcpdump` running), during the traffic
(agents running), while its processes are being stopped, while the network is torn down (a
namespace's shell gone), and at random times. Half the runs use a topology with a bridge
namespace. After each kill `natlab clean RUN_ID` must leave no process, namespace, link,
mount or state file of the run (looked up independently of the sweeper), and the decoys -- a
namespace with a link inside, a link and processes in our namespace that look like natlab's --
must survive every cleanup, and a final `natlab clean` of all dead runs.
"""

from __future__ import annotations

import ctypes
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.kernel.natlab_process import (
    STATE_DIR,
    bundle_problems,
    in_namespaces_of,
    leftovers,
    natlab,
    natlab_run,
    processes,
    results_entries,
    root_links,
    runs_owned_by,
)
from topologies.names import new_run_id

KILLS_PER_PHASE = 3
MAX_TRIES_PER_PHASE = 8
RULES = 600  # enough filter rules that loading them takes a while



def _spec(directory: Path, topology: str) -> Path:
    rules = "\n".join(f"-A FORWARD -p udp --dport {10000 + i} -j ACCEPT" for i in range(RULES))
    client, server = ("laptop", "desktop") if topology == "home" else ("client1", "server")
    path = directory / f"crash-{topology}.toml"
    path.write_text(f'''name = "crash-{topology}"
topology = "{topology}"
rules = """
*filter
{rules}
COMMIT
*nat
-A POSTROUTING -o wan0 -j MASQUERADE
COMMIT
"""

[[steps]]
action = "udp"
from = "{client}"
to = "{server}"
sport = 40000
dport = 9000
payload = "crash"
reply = "ok"
count = 150
interval = 0.002

[[steps]]
action = "tcp"
from = "{client}"
to = "{server}"
sport = 40001
dport = 443
send = "hello"
reply = "world"
''')
    return path


# --- watching a run ----------------------------------------------------------------------------


@dataclass
class Watch:
    """What has been seen of one run so far."""

    run_id: str | None = None
    since: float = 0.0              # when its state file appeared (monotonic)
    nodes: int = 0
    commands: list[str] = field(default_factory=list)   # command lines of its processes now
    shells: int = 0
    max_shells: int = 0
    agents_seen_at: float | None = None
    agents_gone: bool = False
    shell_gone: bool = False

    def update(self, owner: int) -> bool:
        """Look again; False until the run has a state file."""
        if self.run_id is None:
            runs = runs_owned_by([owner])
            if not runs:
                return False
            self.run_id = next(iter(runs))
            self.since = time.monotonic()
        state = runs_owned_by([owner]).get(self.run_id, {})
        nodes = state.get("nodes", [])
        self.nodes = max(self.nodes, len(nodes) if isinstance(nodes, list) else 0)
        marker = f"mininet:{self.run_id}"
        mine = [p for p in processes() if p.env_run == self.run_id or marker in p.cmdline]
        self.commands = [p.cmdline for p in mine]
        self.shells = sum(marker in p.cmdline for p in mine)
        agents = any("experiments.kernel.agent" in c for c in self.commands)
        if agents and self.agents_seen_at is None:
            self.agents_seen_at = time.monotonic()
        if self.agents_seen_at is not None and not agents:
            self.agents_gone = True
        if self.agents_gone and self.shells < self.max_shells:
            self.shell_gone = True
        self.max_shells = max(self.max_shells, self.shells)
        return True

    def running(self, program: str) -> bool:
        return any(program in c for c in self.commands)


Trigger = Callable[[Watch], bool]


def triggers(rng: random.Random) -> dict[str, Callable[[], Trigger]]:
    """Phase name -> a maker of a fresh trigger (some draw a random point)."""

    def topology() -> Trigger:
        k = rng.randrange(3)
        return lambda w: w.nodes >= k

    def traffic() -> Trigger:
        delay = rng.uniform(0.02, 0.3)
        return lambda w: w.agents_seen_at is not None and \
            time.monotonic() - w.agents_seen_at >= delay

    def anywhere() -> Trigger:
        delay = rng.uniform(0.0, 1.2)
        return lambda w: time.monotonic() - w.since >= delay

    return {
        "topology": topology,
        "rules": lambda: lambda w: w.running("iptables-restore"),
        "capture": lambda: lambda w: w.running("tcpdump"),
        "traffic": traffic,
        "stopping": lambda: lambda w: w.agents_gone,
        "teardown": lambda: lambda w: w.shell_gone,
        "random": anywhere,
    }


@dataclass(frozen=True)
class Kill:
    phase: str
    run_id: str
    alive_at_kill: int      # processes of the run when natlab was killed
    swept: int              # processes still there for `natlab clean` to kill


def kill_when(spec: Path, out: Path, trigger: Trigger, env: dict[str, str]
              ) -> tuple[subprocess.Popen[str], Watch, bool]:
    """Run `natlab run SPEC` and SIGKILL it when `trigger` fires (True if it fired before the
    run ended by itself)."""
    proc = natlab(["run", "--json", "--out", str(out), str(spec)], env=env)
    watch = Watch()
    deadline = time.monotonic() + 60
    fired = False
    while proc.poll() is None and time.monotonic() < deadline:
        if watch.update(proc.pid) and trigger(watch):
            os.kill(proc.pid, signal.SIGKILL)
            fired = True
            break
        time.sleep(0.001)
    proc.communicate(timeout=60)
    return proc, watch, fired


# --- decoys ------------------------------------------------------------------------------------


@dataclass
class Decoys:
    namespace: subprocess.Popen[bytes]      # its own network namespace, a link inside
    plain: subprocess.Popen[bytes]          # our namespace, looks like a natlab node's shell
    link: str                               # our namespace, named like a run's link

    def check(self) -> None:
        assert self.namespace.poll() is None, "the decoy namespace's process was killed"
        assert self.plain.poll() is None, "the decoy process was killed"
        assert self.link in root_links(), "the decoy link was deleted"
        inside = subprocess.run(["mnexec", "-a", str(self.namespace.pid), "ip", "link", "show",
                                 "nldecoy0"], capture_output=True, timeout=10, check=False)
        assert inside.returncode == 0, "the link inside the decoy namespace is gone"


def _die_with_parent() -> None:
    """In a decoy child: be killed when the test process dies, whatever way it dies
    (prctl PR_SET_PDEATHSIG survives exec)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


@pytest.fixture
def decoys(wait_until: Callable[..., None]) -> Iterator[Decoys]:
    """A namespace holding a link (its process's command line looks like a Mininet host's),
    a process in our namespace carrying a run-id-shaped marker, and a link in our namespace
    named like a run's. Names are fresh per test; every decoy dies with the test process."""
    decoy_run = new_run_id()  # shaped like a run id; no run has it
    namespace = subprocess.Popen(
        ["unshare", "--net", "--", sys.executable, "-c",
         "import subprocess, time; subprocess.run(['ip', 'link', 'add', 'nldecoy0', 'type', "
         "'veth', 'peer', 'name', 'nldecoy1'], check=True); time.sleep(600)", "mininet:h1"],
        preexec_fn=_die_with_parent)
    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                              f"mininet:{decoy_run}h0"],
                             env={**os.environ, "NATLAB_RUN": decoy_run},
                             preexec_fn=_die_with_parent)
    link = f"{decoy_run}a"
    try:
        subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name",
                        f"{decoy_run}b"], check=True, timeout=10)
        wait_until(lambda: subprocess.run(
            ["mnexec", "-a", str(namespace.pid), "ip", "link", "show", "nldecoy0"],
            capture_output=True, check=False).returncode == 0, what="the decoy namespace")
        yield Decoys(namespace, plain, link)
    finally:
        for p in (namespace, plain):
            p.kill()
            p.wait()
        subprocess.run(["ip", "link", "del", link], check=False, capture_output=True)


# --- the test ----------------------------------------------------------------------------------


def test_sigkill_at_any_point_then_clean_leaves_nothing(tmp_path: Path, decoys: Decoys) -> None:
    seed = int(os.environ.get("NATLAB_CRASH_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    specs = [_spec(tmp_path, "home"), _spec(tmp_path, "lan")]
    out = tmp_path / "results"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    kills: list[Kill] = []
    missed: dict[str, int] = {}
    decoys.check()
    for phase, make in triggers(rng).items():
        landed = tries = 0
        while landed < KILLS_PER_PHASE and tries < MAX_TRIES_PER_PHASE:
            spec = specs[tries % 2]
            tries += 1
            proc, watch, fired = kill_when(spec, out, make(), env)
            where = f"seed {seed}, phase {phase}, try {tries}, run {watch.run_id}"
            assert watch.run_id is not None, f"{where}: never saw the run's state file"
            run_id = watch.run_id
            # Many of the run's processes end by themselves when natlab dies (the node
            # shells and agents read EOF, tcpdump gets SIGPIPE): whatever is left, is swept.
            in_namespaces = in_namespaces_of(run_id)
            # A process in our namespace carrying this run's marker by accident.
            inherited = subprocess.Popen(["sleep", "600"],
                                         env={**os.environ, "NATLAB_RUN": run_id})
            try:
                clean = natlab_run(["clean", run_id], timeout=60)
                assert clean.returncode == 0, f"{where}: {clean.stdout} {clean.stderr}"
                # Swept by this clean, or already by a natlab run of another test (or the
                # run was killed after its own teardown).
                assert f"swept 1 run(s) {run_id}" in clean.stdout \
                    or f"run {run_id}: nothing left" in clean.stdout, where
                assert leftovers(run_id, in_namespaces, ignore=[inherited.pid]) == [], where
                assert not list(STATE_DIR.glob(f"{run_id}.tmp*")), where
                assert inherited.poll() is None, f"{where}: a process in our namespace died"
                decoys.check()
            finally:
                inherited.kill()
                inherited.wait()
            if fired and proc.returncode == -signal.SIGKILL:
                landed += 1
                found = re.search(r"killed (\d+) process", clean.stdout)
                swept = int(found.group(1)) if found else 0
                kills.append(Kill(phase, run_id, len(watch.commands), swept))
            else:
                missed[phase] = missed.get(phase, 0) + 1
        assert landed == KILLS_PER_PHASE, f"seed {seed}: only {landed} kills in phase {phase}"

    # A final sweep of every dead run on the machine spares the decoys too.
    final = natlab_run(["clean"], timeout=60)
    assert "Traceback" not in final.stderr, final.stderr
    decoys.check()
    for kill in kills:
        assert leftovers(kill.run_id) == [], kill
    bundles, _ = results_entries(out)
    for bundle in bundles:  # a run killed after writing its bundle: the bundle is whole
        assert bundle_problems(bundle) == [], bundle
    assert len(kills) >= 20
    # Not a vacuous test: some kills left processes behind that only the sweeper removed.
    assert sum(k.swept for k in kills) >= 3, kills
    print(f"seed {seed}: {len(kills)} kills, missed {missed}, "
          f"{sum(k.swept for k in kills)} processes swept")
