"""Run a spec through the model alone: no root, no namespaces, no kernel.

The spec's steps drive the stand-in hosts of `experiments/modelrun/world.py` around the modelled
gateway (`nat.pipeline.Gateway`). The result is the predicted conntrack table (at the end and
at each checkpoint) and every packet's journey through the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments import craft
from experiments.model_config import spec_config
from experiments.modelrun.world import World
from experiments.observed import Received
from experiments.spec import (
    CheckpointStep,
    PingStep,
    RawStep,
    SleepStep,
    Spec,
    TcpStep,
    UdpStep,
)
from experiments.steps import listener_hosts, raw_packet, resolve_address
from nat.entry import Entry
from nat.journey import Journey
from nat.listing import render
from nat.pipeline import Gateway
from nat.profile import LINUX_LATEST, KernelProfile
from nat.rules.iptables import parse_iptables_restore
from topologies.description import Topology


@dataclass(frozen=True)
class ModelResult:
    name: str
    entries: tuple[Entry, ...]
    checkpoints: tuple[tuple[str, tuple[Entry, ...]], ...]
    journeys: tuple[Journey, ...]
    received: tuple[Received, ...]

    @property
    def conntrack_lines(self) -> list[str]:
        return [render(e) for e in self.entries]


def run_on_model(spec: Spec, *, profile: KernelProfile = LINUX_LATEST) -> ModelResult:
    config = spec_config(spec, profile)
    world = World(spec.topology, Gateway(config),
                  host_rules={h: parse_iptables_restore(text)
                              for h, text in spec.host_rules.items()})
    checkpoints: list[tuple[str, tuple[Entry, ...]]] = []
    for step in spec.steps:
        _run_step(world, spec.topology, step, checkpoints)
    return ModelResult(
        name=spec.name,
        entries=tuple(world.gateway.entries(world.now)),
        checkpoints=tuple(checkpoints),
        journeys=tuple(world.journeys),
        received=tuple(world.received),
    )


def _run_step(world: World, topo: Topology, step: object,
              checkpoints: list[tuple[str, tuple[Entry, ...]]]) -> None:
    if isinstance(step, SleepStep):
        world.now += step.seconds
    elif isinstance(step, CheckpointStep):
        checkpoints.append((step.name, tuple(world.gateway.entries(world.now))))
    elif isinstance(step, UdpStep):
        src = topo.host(step.from_).interfaces[0].ip
        dst = resolve_address(topo, step.to)
        server = getattr(step, "server", None)
        if step.listen:
            for h in listener_hosts(topo, step.from_, step.to, server):
                reply = step.reply.encode() if step.reply is not None else None
                world.udp_listeners[(h, step.listen_port)] = reply
        world.udp_listeners.setdefault((step.from_, step.sport), None)
        for i in range(step.count):
            if i:
                world.now += step.interval
            world.send(step.from_, craft.udp(src, step.sport, dst, step.dport,
                                             step.payload.encode()))
    elif isinstance(step, TcpStep):
        src = topo.host(step.from_).interfaces[0].ip
        dst = resolve_address(topo, step.to)
        if step.listen:
            for h in listener_hosts(topo, step.from_, step.to, getattr(step, "server", None)):
                world.tcp_listeners[(h, step.listen_port)] = step.reply.encode()
        world.tcp_connect(step.from_, src, step.sport, dst, step.dport, step.send.encode(),
                          step.close)
    elif isinstance(step, PingStep):
        src = topo.host(step.from_).interfaces[0].ip
        dst = resolve_address(topo, step.to)
        for i in range(step.count):
            if i:
                world.now += step.interval
            world.send(step.from_, craft.icmp(src, dst, 8, 0, id_=step.id, seq=i + 1,
                                              payload=bytes(range(56))))
    elif isinstance(step, RawStep):
        world.send(step.from_, raw_packet(topo, step))
    else:  # pragma: no cover - the spec's union is closed
        raise TypeError(f"unknown step {step!r}")
