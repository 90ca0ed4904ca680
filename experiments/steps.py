"""What kernel run and model run must agree on about a spec's steps: where a step's server
listens, what address `to` means, the bytes of a crafted packet, and what a host received.

Kept apart from the model (nat.pipeline) so the kernel side does not import it, and apart from
the kernel side so `natlab model` needs no root.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from experiments import craft
from experiments.spec import RawStep
from nat.packet import Packet, parse
from topologies.description import Topology


def resolve_address(topology: Topology, to: str) -> IPv4Address:
    """A step's `to`: an IPv4 address, or a host name meaning its first address."""
    try:
        return IPv4Address(to)
    except ValueError:
        return topology.host(to).interfaces[0].ip


def listener_hosts(topology: Topology, sender: str, to: str, server: str | None) -> list[str]:
    """Where a step's server listens: `server` if the spec names one; else the host that owns
    `to`; when that is the gateway (a port forward), every other host but the sender."""
    if server is not None:
        return [server]
    owner = topology.host_by_address(resolve_address(topology, to))
    if owner is not None and owner.name != topology.gateway:
        return [owner.name]
    return [h.name for h in topology.hosts if h.name not in (sender, topology.gateway)]


def raw_packet(topo: Topology, step: RawStep) -> Packet:
    """The crafted packet of a `raw` step, from hex or from fields."""
    if step.hex is not None:
        return parse(bytes.fromhex(step.hex))
    src = IPv4Address(step.src) if step.src else topo.host(step.from_).interfaces[0].ip
    dst = resolve_address(topo, step.dst or "")
    proto = step.proto
    payload = (step.payload or "").encode()
    ttl = step.ttl if step.ttl is not None else 64
    if proto in ("tcp", 6):
        return craft.tcp(src, step.sport or 0, dst, step.dport or 0,
                         craft.tcp_flags(step.flags or "S"), seq=step.seq or 0,
                         ack=step.ack or 0, window=step.window or 64240, payload=payload, ttl=ttl)
    if proto in ("udp", 17):
        return craft.udp(src, step.sport or 0, dst, step.dport or 0, payload, ttl=ttl)
    if proto in ("icmp", 1):
        return craft.icmp(src, dst, step.icmp_type if step.icmp_type is not None else 8,
                          step.icmp_code or 0, id_=step.id or 0, payload=payload, ttl=ttl)
    raise ValueError(f"raw step: unsupported proto {proto!r}")
