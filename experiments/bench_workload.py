"""The benchmark's synthetic gateway and workload: a MASQUERADE gateway, seeded flows (half
UDP, half TCP, from random ephemeral ports, or many clients on one source port), and the timer
that measures only the model's own calls (time.perf_counter around each `receive`; building
the packets is not timed). Every packet's verdict is checked: a benchmark that silently
measured dropped packets fails with `BenchError` instead.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from experiments import craft
from nat.netdev import Device, NetView, RouteEntry
from nat.packet import ACK, PSH, SYN, Packet
from nat.pipeline import Gateway, GatewayConfig
from nat.rules.iptables import parse_iptables_restore
from nat.tuple import Proto

LAN_IF, WAN_IF = "lan0", "wan0"
OUTSIDE = IPv4Address("203.0.113.1")
UPSTREAM = IPv4Address("203.0.113.254")
MASQUERADE_RULES = f"*nat\n-A POSTROUTING -o {WAN_IF} -j MASQUERADE\nCOMMIT\n"
CLIENTS = 500                  # inside hosts the flows are spread over
SERVERS = 16                   # outside servers, reached through the default route
UDP_PORTS = (53, 123, 443)
TCP_PORTS = (80, 443, 993)
EPHEMERAL = (32768, 60999)     # Linux's default ip_local_port_range
PAYLOAD = 64                   # bytes of data per packet in the steady phase
GAP = 1e-5                     # model seconds between packets: nothing expires during a run


class BenchError(RuntimeError):
    """The model did something the workload did not expect (a dropped packet, a lost entry):
    the numbers would be meaningless, so the benchmark stops."""


# --- the synthetic gateway and workload ---------------------------------------------------------


def bench_netview() -> NetView:
    """A gateway with a /16 LAN (room for many clients) and a WAN with a default route."""
    return NetView(
        devices=(Device(LAN_IF, 2, (IPv4Interface("192.168.0.1/16"),)),
                 Device(WAN_IF, 3, (IPv4Interface(f"{OUTSIDE}/24"),))),
        routes=(RouteEntry(IPv4Network("0.0.0.0/0"), WAN_IF, UPSTREAM),),
        forwarding=True,
    )


def masquerade_gateway() -> Gateway:
    return Gateway(GatewayConfig(bench_netview(), parse_iptables_restore(MASQUERADE_RULES)))


def client_address(index: int) -> IPv4Address:
    return IPv4Address(f"192.168.{1 + index // 250}.{2 + index % 250}")


def server_address(index: int) -> IPv4Address:
    return IPv4Address(f"198.51.100.{10 + index}")


@dataclass
class Flow:
    """One UDP flow or TCP connection, and what the gateway made of it."""

    proto: Proto
    client: IPv4Address
    sport: int
    server: IPv4Address
    dport: int
    outside_port: int = 0          # the source port after MASQUERADE (set by the opening)
    client_seq: int = 1000         # TCP: next sequence number of each side
    server_seq: int = 500_000


def make_flows(n: int, seed: int = 1) -> list[Flow]:
    """`n` distinct flows, half UDP and half TCP, from random ephemeral ports."""
    rnd = random.Random(seed)
    seen: set[tuple[Proto, IPv4Address, int, IPv4Address, int]] = set()
    flows: list[Flow] = []
    while len(flows) < n:
        i = len(flows)
        proto = Proto.UDP if i % 2 else Proto.TCP
        ports = UDP_PORTS if proto is Proto.UDP else TCP_PORTS
        key = (proto, client_address(rnd.randrange(min(n, CLIENTS))),
               rnd.randint(*EPHEMERAL), server_address(rnd.randrange(SERVERS)),
               rnd.choice(ports))
        if key not in seen:
            seen.add(key)
            flows.append(Flow(*key))
    return flows


def same_port_flows(n: int, port: int = 40000) -> list[Flow]:
    """`n` clients, all on source port `port`, all to one UDP server port: every flow after
    the first collides with an earlier one after MASQUERADE and needs the port search."""
    server = server_address(0)
    return [Flow(Proto.UDP, client_address(i), port, server, 53) for i in range(n)]


@dataclass
class Clock:
    """The model's time: advanced by GAP per packet."""

    now: float = 0.0

    def tick(self) -> float:
        self.now += GAP
        return self.now


@dataclass
class Timer:
    """Sums the time spent inside the model, and counts packets."""

    seconds: float = 0.0
    packets: int = 0

    def send(self, gw: Gateway, pkt: Packet, iface: str, now: float) -> Packet:
        """One packet through the gateway: the packet as it left, or BenchError if it was
        not forwarded."""
        start = time.perf_counter()
        journey = gw.receive(pkt, iface, now)
        self.seconds += time.perf_counter() - start
        self.packets += 1
        if journey.verdict != "ACCEPT" or journey.packet_out is None:
            raise BenchError(f"the model did not forward a workload packet "
                             f"({journey.verdict}):\n{journey.render()}")
        return journey.packet_out


def open_flow(gw: Gateway, flow: Flow, clock: Clock, timer: Timer) -> None:
    """UDP: request and reply. TCP: the three-way handshake. Records the outside port."""
    if flow.proto is Proto.UDP:
        out = timer.send(gw, craft.udp(flow.client, flow.sport, flow.server, flow.dport,
                                       bytes(PAYLOAD // 2)), LAN_IF, clock.tick())
        flow.outside_port = out.udp.sport
        timer.send(gw, craft.udp(flow.server, flow.dport, out.ip.src, flow.outside_port,
                                 bytes(PAYLOAD // 2)), WAN_IF, clock.tick())
        return
    out = timer.send(gw, craft.tcp(flow.client, flow.sport, flow.server, flow.dport, SYN,
                                   seq=flow.client_seq), LAN_IF, clock.tick())
    flow.outside_port = out.tcp.sport
    flow.client_seq += 1
    timer.send(gw, craft.tcp(flow.server, flow.dport, out.ip.src, flow.outside_port,
                             SYN | ACK, seq=flow.server_seq, ack=flow.client_seq),
               WAN_IF, clock.tick())
    flow.server_seq += 1
    timer.send(gw, craft.tcp(flow.client, flow.sport, flow.server, flow.dport, ACK,
                             seq=flow.client_seq, ack=flow.server_seq), LAN_IF, clock.tick())


def steady_packets(flows: Sequence[Flow], count: int) -> list[tuple[Packet, str]]:
    """`count` packets over established flows, round robin: a request and its answer (UDP),
    a data segment and its ACK (TCP)."""
    out: list[tuple[Packet, str]] = []
    i = 0
    while len(out) < count:
        f = flows[i % len(flows)]
        i += 1
        if f.proto is Proto.UDP:
            out.append((craft.udp(f.client, f.sport, f.server, f.dport, bytes(PAYLOAD)),
                        LAN_IF))
            out.append((craft.udp(f.server, f.dport, OUTSIDE, f.outside_port,
                                  bytes(PAYLOAD)), WAN_IF))
        else:
            out.append((craft.tcp(f.client, f.sport, f.server, f.dport, PSH | ACK,
                                  seq=f.client_seq, ack=f.server_seq, payload=bytes(PAYLOAD)),
                        LAN_IF))
            f.client_seq += PAYLOAD
            out.append((craft.tcp(f.server, f.dport, OUTSIDE, f.outside_port, ACK,
                                  seq=f.server_seq, ack=f.client_seq), WAN_IF))
    return out[:count]
