"""One run of a spec on the real kernel: topology up, rules, traffic, captures, snapshots.

The order matters and is the same for every run:

1. the topology comes up (`topologies.mininet_net.running`, run-scoped names);
2. `host_rules` into the other hosts, then the gateway's ruleset (one backend per run), then
   the spec's sysctls in the gateway (after the rules: on a machine where nothing used
   conntrack yet, `net.netfilter.*` appears only once a rule loaded the module), and the
   record of all `net.netfilter.*` values and `net.ipv4.ip_forward`;
3. the capture (tcpdump in the gateway) and the conntrack event log start, then the agents;
   only when all report ready does the clock start: `t0`;
4. the spec's plan (`experiments.plan`, resolved before anything starts) runs in order; a
   checkpoint reads the gateway's table (`conntrack -L`); a step that changes the world
   (`experiments.kernel.moves`) runs its tool and records the moment it took effect;
5. the final table is read, everything is stopped, and the result is returned as a frozen
   `Observation` whose times are all seconds since `t0` (the model's time base).

Everything started is registered for teardown before it is started (an ExitStack), so an
error or Ctrl-C at any point leaves nothing behind.

Failures are told apart by when they happen. Until the rules are in, a `KernelError` is the
spec's (a tool refused its rules or sysctls). From the capture on, a failure is natlab's own
machinery: the capture, the event log or an agent that does not start is an
`InfrastructureFailure` (no run to record); a step or snapshot whose helper died or whose
command failed ends the traffic there, and the run is still recorded, with `error` set (the
verdict is ERROR).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from experiments.backends import BackendName
from experiments.kernel.capture import Capture, CapturedPacket
from experiments.kernel.conntrack import ConntrackEvent, EventLog, snapshot
from experiments.kernel.moves import apply_move
from experiments.kernel.rules import (
    LoadedRuleset,
    load_rules,
    record_sysctls,
    set_sysctls,
)
from experiments.kernel.traffic import Delivered, StepResult, Traffic
from experiments.kernel.versions import Versions, collect_versions
from experiments.observed import FINAL, Moment, Observed, Received, Snapshot, WirePacket
from experiments.plan import Action, Move, plan
from experiments.spec import Spec
from nat.entry import Entry
from topologies.hostexec import HostHandle, KernelError
from topologies.mininet_net import running


class InfrastructureFailure(KernelError):
    """natlab's own machinery failed before the run could start (the capture, the conntrack
    event log, a traffic agent): not the spec's fault, and nothing to record."""


BeforeStep = Callable[[int, Traffic], None]
_BEFORE_STEP: list[BeforeStep] = []


@contextmanager
def before_each_step(hook: BeforeStep) -> Iterator[None]:
    """Tests only (no spec text reaches it): call `hook(index, traffic)` before each step of
    the runs made inside the `with`, to inject a real failure (kill an agent) and check that
    the run says ERROR rather than looking clean."""
    _BEFORE_STEP.append(hook)
    try:
        yield
    finally:
        _BEFORE_STEP.remove(hook)


@dataclass(frozen=True)
class Observation:
    """Everything the kernel did in one run, with all times in seconds since `t0`."""

    spec_name: str
    run_id: str
    backend: BackendName
    t0: float                                      # wall-clock start (seconds since epoch)
    checkpoints: tuple[Snapshot, ...]
    final: Snapshot
    events: tuple[ConntrackEvent, ...]
    packets: tuple[CapturedPacket, ...]            # in and out of the gateway, in order
    received: dict[str, tuple[Received, ...]]      # per host, what its sockets/stack got
    delivered: dict[str, tuple[Delivered, ...]]    # per host, every packet delivered to it
    steps: tuple[StepResult, ...]
    ruleset: LoadedRuleset
    host_rulesets: dict[str, LoadedRuleset]
    sysctls: dict[str, str]                        # the gateway's, after the spec's were set
    versions: Versions
    ifnames: dict[int, str]                        # the gateway's interfaces
    pcap: Path                                     # the whole capture (LINUX_SLL2)
    event_log: Path                                # conntrack -E output as printed
    capture_dropped: int | None                    # tcpdump's "dropped by kernel"
    moments: tuple[Moment, ...] = ()               # when each move took effect
    timing: dict[str, float] = field(default_factory=dict)   # setup / traffic / teardown
    error: str | None = None                       # the failure that cut the traffic short

    @property
    def final_conntrack_lines(self) -> list[str]:
        return list(self.final.lines)

    @property
    def final_entries(self) -> list[Entry]:
        return self.final.entries()

    def snapshot(self, name: str) -> Snapshot:
        if name == FINAL:
            return self.final
        for s in self.checkpoints:
            if s.name == name:
                return s
        raise KeyError(f"no checkpoint named {name!r}")

    def wire_packets(self) -> list[WirePacket]:
        """The capture in the replay's form (times are already relative to t0)."""
        return [p.to_wire(0.0) for p in self.packets]


def _snapshot(gateway: HostHandle, name: str, t0: float) -> Snapshot:
    start = time.time() - t0
    lines, _ = snapshot(gateway)
    return Snapshot(name, start, tuple(lines), time.time() - t0)


def _same_packet(sent: bytes) -> Callable[[list[CapturedPacket]], bool]:
    """A predicate over a capture: did `sent` enter the gateway? (Addresses, protocol and the
    L4 bytes; the kernel may fill in the IP id, length and checksum of a crafted packet.)"""
    ihl = (sent[0] & 0x0F) * 4
    key = (sent[9], sent[12:20], sent[ihl:])

    def seen(packets: list[CapturedPacket]) -> bool:
        for p in packets:
            d = p.data
            if p.direction == "in" and len(d) >= 20:
                h = (d[0] & 0x0F) * 4
                if (d[9], d[12:20], d[h:]) == key:
                    return True
        return False

    return seen


def run_on_kernel(spec: Spec, *, workdir: Path, run_id: str | None = None) -> Observation:
    """Run `spec` on the real kernel (root). Files (captures, event log) go to `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    versions = collect_versions()
    timing: dict[str, float] = {}
    began = time.monotonic()
    topo = spec.topology
    backend: BackendName = spec.backend
    actions = plan(spec).actions   # resolved before the clock starts
    with ExitStack() as stack:
        net = stack.enter_context(running(topo, run_id))
        gw = net.host(topo.gateway)

        host_rulesets = {name: load_rules(net.host(name), backend, text, None)
                         for name, text in spec.host_rules.items()}
        ruleset = load_rules(gw, backend, spec.rules, spec.nft)
        set_sysctls(gw, spec.sysctls)
        sysctls = record_sysctls(gw, spec.sysctls.keys())

        try:
            capture = Capture(gw, workdir / "gateway.pcap")
            stack.callback(capture.stop)
            capture.start()
            events = EventLog(gw, workdir / "conntrack-events.txt")
            stack.callback(events.stop)
            events.start()
            traffic = stack.enter_context(Traffic(net.hosts, topo))
        except KernelError as e:
            raise InfrastructureFailure.of(e) from None
        t0 = traffic.t0 = time.time()
        timing["setup"] = time.monotonic() - began

        def raw_seen(data: bytes) -> bool:
            pred = _same_packet(data)
            return capture.wait_for(pred, traffic.step_deadline)

        checkpoints: list[Snapshot] = []

        def checkpoint(index: int, name: str) -> StepResult:
            snap = _snapshot(gw, name, t0)
            checkpoints.append(snap)
            return StepResult(index, "checkpoint", snap.time, snap.time_end or snap.time, True,
                              f"{len(snap.lines)} entries")

        moments: list[Moment] = []

        def move(index: int, action: Move) -> StepResult:
            start = time.time() - t0
            did, fed = apply_move(net.hosts, topo.gateway, backend, action)
            end = time.time() - t0
            moments.append(Moment(index, end, fed))
            return StepResult(index, action.action, start, end, True, did)

        traffic_began = time.monotonic()
        results, error = _run_steps(traffic, actions, raw_seen, checkpoint, move)
        try:
            final = _snapshot(gw, FINAL, t0)
        except KernelError as e:
            error = error or f"the final conntrack table could not be read: {e}"
            final = Snapshot(FINAL, time.time() - t0, ())
        timing["traffic"] = time.monotonic() - traffic_began

        stopping = time.monotonic()
        traffic.stop()
        events.stop()
        capture.stop()
        received = {h: tuple(r) for h, r in traffic.received().items()}
        delivered = {h: tuple(d) for h, d in traffic.delivered().items()}
        packets = tuple(replace(p, time=p.time - t0) for p in capture.packets())
        event_list = tuple(replace(e, time=e.time - t0) for e in events.events())
        ifnames = capture.ifnames
        dropped = capture.dropped
        timing["stop"] = time.monotonic() - stopping
    timing["total"] = time.monotonic() - began

    return Observation(
        spec_name=spec.name,
        run_id=net.run_id,
        backend=backend,
        t0=t0,
        checkpoints=tuple(checkpoints),
        final=final,
        events=event_list,
        packets=packets,
        received=received,
        delivered=delivered,
        steps=tuple(results),
        ruleset=ruleset,
        host_rulesets=host_rulesets,
        sysctls=sysctls,
        versions=versions,
        ifnames=ifnames,
        pcap=capture.path,
        event_log=events.path,
        capture_dropped=dropped,
        moments=tuple(moments),
        timing=timing,
        error=error,
    )


def _run_steps(traffic: Traffic, actions: tuple[Action, ...],
               raw_seen: Callable[[bytes], bool],
               checkpoint: Callable[[int, str], StepResult],
               move: Callable[[int, Move], StepResult]
               ) -> tuple[list[StepResult], str | None]:
    """The plan's steps in order, until one fails for want of natlab's machinery (an agent
    died, a command natlab needs failed): then the rest are not run and the failure is
    returned, to be recorded (a step that merely did not complete is in its StepResult)."""
    results: list[StepResult] = []
    for index, action in enumerate(actions):
        try:
            for hook in tuple(_BEFORE_STEP):
                hook(index, traffic)
            results.append(traffic.run_step(index, action, raw_seen, checkpoint, move))
        except KernelError as e:
            left = len(actions) - index - 1
            return results, (f"step #{index + 1} failed, {left} later step(s) not run: {e}")
    return results, None


def observed_from(obs: Observation) -> Observed:
    """The part of a kernel run that a verdict depends on (what a bundle keeps for `judge`)."""
    return Observed(
        kernel_release=obs.versions.kernel,
        sysctls=dict(obs.sysctls),
        snapshots=(*obs.checkpoints, obs.final),
        packets=tuple(obs.wire_packets()),
        received=tuple(r for items in obs.received.values() for r in items),
        incomplete_steps=tuple(f"#{s.index + 1} {s.action}: {s.detail}"
                               for s in obs.steps if not s.completed),
        ruleset_fed=obs.ruleset.fed if obs.ruleset.fed.strip() else None,
        error=obs.error,
        moments=obs.moments,
    )
