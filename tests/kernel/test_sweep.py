"""The sweeper: a run killed with SIGKILL is cleaned up; what natlab did not make survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from topologies.mininet_net import Network, running
from topologies.names import (
    RunState,
    new_run_id,
    process_start_time,
    read_state,
    state_path,
    write_state,
)
from topologies.presets import preset
from topologies.sweep import find_leftovers, root_links, scan_processes, sweep

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import subprocess, sys, time
    from topologies.mininet_net import running
    from topologies.presets import preset
    with running(preset("home"), run_id=sys.argv[1]) as net:
        gw = net.gateway
        gw.popen(["sleep", "60"])  # carries NATLAB_RUN
        # joins the gateway's namespace without our environment marker
        subprocess.Popen(["mnexec", "-a", str(gw.pid), "sleep", "61"], env={})
        print(gw.pid, flush=True)
        time.sleep(60)
    """
)


def alive(pid: int) -> bool:
    return process_start_time(pid) is not None


def in_netns(netns: str) -> list[int]:
    return [p.pid for p in scan_processes() if p.netns == netns]


@pytest.fixture
def decoys() -> Iterator[dict[str, object]]:
    """Things natlab did not make, some looking a little like natlab's."""
    other = new_run_id()
    # a namespace of someone else's, whose process even looks like a (non-natlab) Mininet host
    ns_proc = subprocess.Popen(
        ["unshare", "--net", "--", "bash", "-c", "sleep 60", "mininet:h1"],
        stdout=subprocess.DEVNULL,
    )
    # a root-namespace veth with a run-id-shaped name but no run behind it
    veth = f"{other}x"
    subprocess.run(
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", f"{other}y"], check=True
    )
    # a plain process in our namespace whose command line mentions a run id and whose
    # environment even carries the run marker (natlab never runs anything in this namespace)
    plain = subprocess.Popen(
        ["bash", "-c", "sleep 60", f"mininet:{other}h0"], env={**os.environ, "NATLAB_RUN": other}
    )
    try:
        yield {"ns_proc": ns_proc, "veth": veth, "plain": plain}
    finally:
        for p in (ns_proc, plain):
            p.kill()
            p.wait()
        subprocess.run(["ip", "link", "del", veth], check=False, capture_output=True)


def test_sigkilled_run_is_swept_and_decoys_survive(
    decoys: dict[str, object], home_net: Network, wait_until: Callable[..., None]
) -> None:
    run_id = new_run_id()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, run_id], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        gw_pid = int(child.stdout.readline())
        gw_netns = os.readlink(f"/proc/{gw_pid}/ns/net")
        wait_until(lambda: len(in_netns(gw_netns)) >= 3, what="the child's gateway processes")
        # also a leftover link in our namespace named with the run id
        subprocess.run(
            ["ip", "link", "add", f"{run_id}r0", "type", "veth", "peer", "name", f"{run_id}r1"],
            check=True,
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    state = read_state(run_id)
    assert state is not None and not state.owner_alive()
    left = find_leftovers(run_id)
    assert left.processes and left.links and left.state_file, left.describe()
    gw_processes = in_netns(gw_netns)
    assert gw_processes  # the sleeps keep the gateway's namespace alive

    report = sweep()

    assert run_id in report.swept, report.summary()
    assert home_net.run_id in report.skipped, report.summary()
    assert set(gw_processes) <= set(report.killed)
    assert set(report.links_removed) & {f"{run_id}r0", f"{run_id}r1"}
    assert not [n for n in root_links() if n.startswith(run_id)]
    assert run_id in report.state_files_removed
    assert not [e for e in report.errors if run_id in e], report.errors
    assert find_leftovers(run_id).empty
    assert not state_path(run_id).exists()
    assert not [pid for pid in gw_processes if alive(pid)]

    # decoys are untouched
    ns_proc = decoys["ns_proc"]
    plain = decoys["plain"]
    assert isinstance(ns_proc, subprocess.Popen) and isinstance(plain, subprocess.Popen)
    assert ns_proc.poll() is None and plain.poll() is None
    assert decoys["veth"] in root_links()
    # and the live run of this process still works
    assert (
        home_net.host("laptop").run(["ping", "-c1", "-W1", "203.0.113.10"], check=False).returncode
        == 0
    )
    assert read_state(home_net.run_id) is not None


def test_live_run_is_skipped_unless_named() -> None:
    with running(preset("home")) as net:
        report = sweep()
        assert net.run_id in report.skipped and net.run_id not in report.swept
        assert alive(net.gateway.pid)
        report = sweep(net.run_id)
        assert report.swept == (net.run_id,)
        assert net.gateway.pid in report.killed
        assert find_leftovers(net.run_id).empty
    # the context's own teardown copes with a network that was swept under it
    assert find_leftovers(net.run_id).empty


def test_stale_state_file_alone_is_removed() -> None:
    dead = subprocess.Popen(["sleep", "10"])
    start = process_start_time(dead.pid)
    assert start is not None
    dead.kill()
    dead.wait()
    run_id = new_run_id()
    write_state(RunState(run_id, dead.pid, start, "home", 0.0))
    report = sweep()
    assert run_id in report.state_files_removed
    assert read_state(run_id) is None


def test_garbled_state_file_is_removed() -> None:
    run_id = new_run_id()
    path = state_path(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    report = sweep()
    assert run_id in report.state_files_removed
    assert [e for e in report.errors if run_id in e and "unreadable" in e]
    assert not path.exists()


def test_sweep_rejects_a_non_run_id() -> None:
    with pytest.raises(ValueError, match="not a natlab run id"):
        sweep("eth0")
