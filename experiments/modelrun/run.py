"""Run a spec through the model alone: no root, no namespaces, no kernel.

The spec's plan (`experiments/plan.py`, its steps resolved) drives the stand-in hosts of
`experiments/modelrun/world.py` around the modelled gateway (`nat.pipeline.Gateway`). The
result is the predicted conntrack table (at the end and at each checkpoint) and every
packet's journey through the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments import craft
from experiments.model_config import move_ruleset, spec_config
from experiments.model_moves import GatewayMoves
from experiments.modelrun.world import World
from experiments.observed import Received
from experiments.plan import (
    Action,
    Checkpoint,
    ConntrackChange,
    Ping,
    RawPacket,
    SetHostRules,
    SetRules,
    SetSysctls,
    Sleep,
    TcpFlow,
    UdpFlow,
    plan,
)
from experiments.spec import Spec
from nat.entry import Entry
from nat.journey import Journey
from nat.listing import render
from nat.pipeline import Gateway
from nat.profile import LINUX_LATEST, KernelProfile
from nat.rules.iptables import parse_iptables_restore

MOVE_TIME = 0.01     # model time a step that changes the world takes (a tool runs)


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
    movers = GatewayMoves(spec.sysctls, lambda mv, fed: move_ruleset(spec, mv, fed))
    for action in plan(spec).actions:
        if isinstance(action, SetRules | ConntrackChange | SetSysctls | SetHostRules):
            world.now += MOVE_TIME
            movers.apply(world.gateway, action, world.now)
            if isinstance(action, SetHostRules):
                world.host_rules[action.host] = parse_iptables_restore(action.rules)
            continue
        _run_action(world, action, checkpoints)
    return ModelResult(
        name=spec.name,
        entries=tuple(world.gateway.entries(world.now)),
        checkpoints=tuple(checkpoints),
        journeys=tuple(world.journeys),
        received=tuple(world.received),
    )


def _run_action(world: World, action: Action,
                checkpoints: list[tuple[str, tuple[Entry, ...]]]) -> None:
    """One step. A flow's source address is the one the sender's route gives (what an
    unbound socket gets on the kernel), not the plan's first address: for the gateway they
    differ whenever the flow leaves by another interface than its first."""
    match action:
        case Sleep(seconds=seconds):
            world.now += seconds
        case Checkpoint(name=name):
            checkpoints.append((name, tuple(world.gateway.entries(world.now))))
        case UdpFlow():
            src = world.source_address(action.sender, action.dst)
            for h in action.listeners:
                world.udp_listeners[(h, action.listen_port)] = action.reply
            world.udp_listeners.setdefault((action.sender, action.sport), None)
            for i in range(action.count):
                if i:
                    world.now += action.interval
                world.send(action.sender, craft.udp(src, action.sport, action.dst,
                                                    action.dport, action.payload))
        case TcpFlow():
            for h in action.listeners:
                world.tcp_listeners[(h, action.listen_port)] = action.reply or b""
            world.tcp_connect(action.sender, world.source_address(action.sender, action.dst),
                              action.sport, action.dst,
                              action.dport, action.send, action.close)
        case Ping():
            src = world.source_address(action.sender, action.dst)
            for i in range(action.count):
                if i:
                    world.now += action.interval
                world.send(action.sender, craft.icmp(src, action.dst, 8, 0,
                                                     id_=action.ident, seq=i + 1,
                                                     payload=action.payload))
        case RawPacket():
            world.send(action.sender, action.packet)
