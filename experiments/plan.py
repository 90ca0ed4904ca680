"""A spec's steps resolved once into a typed plan, which the kernel run and the model run
both consume (each with one `match` over the action types).

Everything the two runs must agree on is decided here, once: the source and destination
addresses (a step's `to` may be a host name), the hosts whose servers listen, the bytes of
payloads and replies, the crafted packet of a `raw` step. The consumers only send.

Rootless: imported by the model-only run (`natlab model`) and by the kernel side, it imports
neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import ClassVar, Literal

from experiments import craft
from experiments.rules_delta import apply_delta
from experiments.spec import Spec
from experiments.spec_model import (
    CheckpointStep,
    ConntrackStep,
    HostRulesStep,
    PingStep,
    RawStep,
    RulesStep,
    SleepStep,
    Step,
    SysctlStep,
    TcpStep,
    UdpStep,
)
from nat.packet import Packet, parse
from topologies.description import Topology

PING_PAYLOAD = bytes(range(56))   # what `ping` sends: the kernel's agents and the model alike


# --- the actions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """What UDP and TCP flows share: who sends, from where to where, and who answers.

    `listeners` are the hosts whose servers bind `listen_port` (empty when the step says
    `listen = false`); `reply` is what each server answers with."""

    action: ClassVar[str]
    sender: str
    src: IPv4Address
    dst: IPv4Address
    sport: int
    dport: int
    listeners: tuple[str, ...]
    listen_port: int
    reply: bytes | None


@dataclass(frozen=True)
class UdpFlow(Flow):
    """`count` datagrams of `payload`, `interval` seconds apart, all from one socket."""

    action: ClassVar[str] = "udp"
    payload: bytes
    count: int
    interval: float


@dataclass(frozen=True)
class TcpFlow(Flow):
    """One connection: the client sends `send`, reads the reply, closes (fin/rst/none)."""

    action: ClassVar[str] = "tcp"
    send: bytes
    close: Literal["fin", "rst", "none"]


@dataclass(frozen=True)
class Ping:
    """Echo requests with identifier `ident`, sequence numbers 1..count."""

    action: ClassVar[str] = "ping"
    sender: str
    src: IPv4Address
    dst: IPv4Address
    ident: int
    count: int
    interval: float
    payload: bytes = PING_PAYLOAD


@dataclass(frozen=True)
class RawPacket:
    """One crafted IPv4 packet: `packet` as the model reads it, `data` its bytes on the wire."""

    action: ClassVar[str] = "raw"
    sender: str
    packet: Packet
    data: bytes

    @property
    def dst(self) -> IPv4Address:
        return IPv4Address(self.data[16:20])


@dataclass(frozen=True)
class Sleep:
    """Let time pass."""

    action: ClassVar[str] = "sleep"
    seconds: float


@dataclass(frozen=True)
class Checkpoint:
    """Read the gateway's conntrack table here, under `name`."""

    action: ClassVar[str] = "checkpoint"
    name: str


@dataclass(frozen=True)
class SetRules:
    """Replace the gateway's whole ruleset: `rules` (iptables-restore text) and, for the nft
    backend, `nft` (else `rules` is translated, as for the initial ruleset)."""

    action: ClassVar[str] = "rules"
    rules: str
    nft: str | None


@dataclass(frozen=True)
class ConntrackChange:
    """A change to the gateway's conntrack table, as `conntrack` takes it (`-F`, `-D`, `-I`,
    `-U`). For an insert, `reply` is the given reply tuple or the original one inverted."""

    action: ClassVar[str] = "conntrack"
    op: Literal["flush", "delete", "insert", "update"]
    match: CtMatch
    timeout: int | None = None
    status: tuple[str, ...] = ()
    mark: int | None = None


@dataclass(frozen=True)
class CtMatch:
    """The fields a `conntrack` filter (or an inserted entry) gives; None = any."""

    proto: Literal["tcp", "udp", "icmp"] | None = None
    src: IPv4Address | None = None
    dst: IPv4Address | None = None
    sport: int | None = None
    dport: int | None = None
    reply_src: IPv4Address | None = None
    reply_dst: IPv4Address | None = None
    reply_sport: int | None = None
    reply_dport: int | None = None


@dataclass(frozen=True)
class SetSysctls:
    """Set gateway sysctls (names and values as the spec's `sysctls` table)."""

    action: ClassVar[str] = "sysctl"
    values: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SetHostRules:
    """Replace another host's ruleset (iptables-restore text; "" removes every rule)."""

    action: ClassVar[str] = "host_rules"
    host: str
    rules: str


Move = SetRules | ConntrackChange | SetSysctls | SetHostRules
Action = UdpFlow | TcpFlow | Ping | RawPacket | Sleep | Checkpoint | Move


@dataclass(frozen=True)
class Plan:
    """A spec's steps, resolved; `actions[i]` is step `i`."""

    actions: tuple[Action, ...]

    def checkpoints(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.actions if isinstance(a, Checkpoint))


# --- resolving ---------------------------------------------------------------------------------


def plan(spec: Spec) -> Plan:
    """The spec's steps with every address, listener and byte resolved; a `rules` step's
    `change` becomes the whole ruleset after it (experiments/rules_delta.py), applied to the
    ruleset the steps before left (the spec's checked that it applies)."""
    after = rules_after_changes(spec)
    return Plan(tuple(SetRules(after[i], None) if i in after
                      else resolve_step(spec.topology, step)
                      for i, step in enumerate(spec.steps)))


def rules_after_changes(spec: Spec) -> dict[int, str]:
    """For each `rules` step with a `change`: the whole ruleset after it (iptables-restore
    text), the change applied to what the spec and the steps before it loaded."""
    current = spec.rules
    after: dict[int, str] = {}
    for i, step in enumerate(spec.steps):
        if isinstance(step, RulesStep):
            if step.change is None:
                current = step.rules
            else:
                current = after[i] = apply_delta(current, step.change)
    return after


def resolve_step(topo: Topology, step: Step) -> Action:
    """One step as an action (the step's host names must exist: the spec checked them)."""
    match step:
        case UdpStep():
            return UdpFlow(
                sender=step.from_, src=first_address(topo, step.from_),
                dst=resolve_address(topo, step.to), sport=step.sport, dport=step.dport,
                listeners=_listeners(topo, step), listen_port=step.listen_port,
                reply=None if step.reply is None else step.reply.encode(),
                payload=step.payload.encode(), count=step.count, interval=step.interval)
        case TcpStep():
            return TcpFlow(
                sender=step.from_, src=first_address(topo, step.from_),
                dst=resolve_address(topo, step.to), sport=step.sport, dport=step.dport,
                listeners=_listeners(topo, step), listen_port=step.listen_port,
                reply=step.reply.encode(), send=step.send.encode(), close=step.close)
        case PingStep():
            return Ping(sender=step.from_, src=first_address(topo, step.from_),
                        dst=resolve_address(topo, step.to), ident=step.id, count=step.count,
                        interval=step.interval)
        case RawStep():
            packet = raw_packet(topo, step)
            return RawPacket(sender=step.from_, packet=packet, data=packet.to_bytes())
        case SleepStep():
            return Sleep(step.seconds)
        case CheckpointStep():
            return Checkpoint(step.name)
        case RulesStep():
            return SetRules(step.rules, step.nft)
        case ConntrackStep():
            return _conntrack_change(step)
        case SysctlStep():
            return SetSysctls(tuple((k, str(v)) for k, v in step.set.items()))
        case HostRulesStep():
            return SetHostRules(step.host, step.rules)
    raise TypeError(f"unknown step {step!r}")  # pragma: no cover - the union is closed


def _address(text: str | None) -> IPv4Address | None:
    return None if text is None else IPv4Address(text)


def _conntrack_change(step: ConntrackStep) -> ConntrackChange:
    """A conntrack step with typed fields; an insert's reply tuple defaults to the original
    inverted (what `conntrack -I` would be given for an entry without NAT)."""
    src, dst = _address(step.src), _address(step.dst)
    match = CtMatch(step.proto, src, dst, step.sport, step.dport,
                    _address(step.reply_src), _address(step.reply_dst),
                    step.reply_sport, step.reply_dport)
    if step.op == "insert":
        match = CtMatch(step.proto, src, dst, step.sport, step.dport,
                        match.reply_src or dst, match.reply_dst or src,
                        step.reply_sport or step.dport, step.reply_dport or step.sport)
    return ConntrackChange(step.op, match, step.timeout, tuple(step.status), step.mark)


def first_address(topo: Topology, host: str) -> IPv4Address:
    """A host's own address: the one of its first interface."""
    return topo.host(host).interfaces[0].ip


def resolve_address(topology: Topology, to: str) -> IPv4Address:
    """A step's `to`: an IPv4 address, or a host name meaning its first address."""
    try:
        return IPv4Address(to)
    except ValueError:
        return first_address(topology, to)


def listener_hosts(topology: Topology, sender: str, to: str, server: str | None) -> list[str]:
    """Where a step's server listens: `server` if the spec names one; else the host that owns
    `to`; when that is the gateway (a port forward), every other host but the sender."""
    if server is not None:
        return [server]
    owner = topology.host_by_address(resolve_address(topology, to))
    if owner is not None and owner.name != topology.gateway:
        return [owner.name]
    return [h.name for h in topology.hosts if h.name not in (sender, topology.gateway)]


def _listeners(topo: Topology, step: UdpStep | TcpStep) -> tuple[str, ...]:
    if not step.listen:
        return ()
    return tuple(listener_hosts(topo, step.from_, step.to, step.server))


def raw_packet(topo: Topology, step: RawStep) -> Packet:
    """The crafted packet of a `raw` step, from hex or from fields."""
    if step.hex is not None:
        return parse(bytes.fromhex(step.hex))
    src = IPv4Address(step.src) if step.src else first_address(topo, step.from_)
    dst = resolve_address(topo, step.dst or "")
    proto = step.proto
    payload = (step.payload or "").encode()
    ttl = step.ttl if step.ttl is not None else 64
    if proto in ("tcp", 6):
        return craft.tcp(src, step.sport or 0, dst, step.dport or 0,
                         craft.tcp_flags(step.flags or "S"), seq=step.seq or 0,
                         ack=step.ack or 0,
                         window=step.window if step.window is not None else 64240,
                         payload=payload, ttl=ttl)
    if proto in ("udp", 17):
        return craft.udp(src, step.sport or 0, dst, step.dport or 0, payload, ttl=ttl)
    if proto in ("icmp", 1):
        return craft.icmp(src, dst, step.icmp_type if step.icmp_type is not None else 8,
                          step.icmp_code or 0, id_=step.id or 0, payload=payload, ttl=ttl)
    raise ValueError(f"raw step: unsupported proto {proto!r}")
