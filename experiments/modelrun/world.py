"""A model-only world: the spec's hosts as tiny stand-in network stacks around the modelled
gateway, so `natlab model` can run a spec without root, namespaces or a kernel.

The hosts answer as Linux would in the cases the specs use: a UDP listener records and may
reply to the source it saw; a closed UDP port answers ICMP port unreachable; TCP does the
handshake, one request and one reply, and closes with FIN or RST; a closed TCP port answers
RST; an echo request gets an echo reply. Sequence numbers, IP ids and timing are the model's
own (deterministic), so byte-exact comparison is done only in the differential run, where the
model is fed the packets the real gateway received.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from experiments import craft
from experiments.observed import Received
from nat.hooks import Hook
from nat.journey import Journey
from nat.packet import ACK, FIN, RST, SYN, IcmpHeader, Packet, TcpHeader, UdpHeader
from nat.pipeline import UNRESOLVED, Gateway
from nat.rule_eval import RuleContext, evaluate
from nat.rules.ast import Drop, Reject, Ruleset
from topologies.description import Host, Topology

PACKET_GAP = 0.0005   # model time between one packet and the next
# REJECT --reject-with kinds answered with ICMP destination unreachable, and their codes
# (net/ipv4/netfilter/ipt_REJECT.c).
REJECT_CODES: dict[str, int] = {
    "icmp-net-unreachable": 0, "icmp-host-unreachable": 1, "icmp-proto-unreachable": 2,
    "icmp-port-unreachable": 3, "icmp-net-prohibited": 9, "icmp-host-prohibited": 10,
    "icmp-admin-prohibited": 13,
}


@dataclass
class _TcpEnd:
    """One end of a modelled TCP connection."""

    role: str                      # "client" | "server"
    local: tuple[IPv4Address, int]
    remote: tuple[IPv4Address, int]
    snd_nxt: int
    rcv_nxt: int = 0
    state: str = "SYN_SENT"
    send: bytes = b""
    reply: bytes = b""
    close: str = "fin"


@dataclass
class World:
    topology: Topology
    gateway: Gateway
    now: float = 0.0
    journeys: list[Journey] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    udp_listeners: dict[tuple[str, int], bytes | None] = field(default_factory=dict)
    tcp_listeners: dict[tuple[str, int], bytes] = field(default_factory=dict)
    tcp: dict[tuple[str, IPv4Address, int, IPv4Address, int], _TcpEnd] = field(
        default_factory=dict)
    host_rules: dict[str, Ruleset] = field(default_factory=dict)
    _queue: deque[tuple[str, Packet]] = field(default_factory=deque)
    _isn: int = 1_000_000

    # -- sending and routing ------------------------------------------------------------------

    def send(self, host: str, pkt: Packet) -> None:
        """`host` sends `pkt`; everything it triggers runs before this returns. The gateway's
        own packets go through its output hooks (`_from_gateway`), as on the kernel."""
        self._queue.append((host, pkt))
        while self._queue:
            sender, p = self._queue.popleft()
            self.now += PACKET_GAP
            if sender == self.topology.gateway:
                self._from_gateway(p)
            else:
                self._carry(sender, p)

    def source_address(self, host: str, dst: IPv4Address) -> IPv4Address:
        """The source address a socket of `host` gets when it sends to `dst` unbound: the
        address of the interface the route to `dst` leaves by (inet_select_addr on the
        route's device); to one of the gateway's own addresses, that address itself (the
        local route's preferred source). The first address when no route fits."""
        if host == self.topology.gateway:
            net = self.gateway.config.net
            if net.is_local(dst):
                return dst
            found = net.lookup(dst)
            if found is not None:
                dev, nexthop = found
                own = dev.primary_addresses()
                inside = [a.ip for a in own if nexthop in a.network]
                if inside or own:
                    return (inside or [a.ip for a in own])[0]
        h = self.topology.host(host)
        hop = _next_hop(h, dst)
        if hop is not None:
            for intf in h.interfaces:
                if intf.name == hop[0]:
                    return intf.ip
        return h.interfaces[0].ip

    def _carry(self, sender: str, pkt: Packet) -> None:
        host = self.topology.host(sender)
        hop = _next_hop(host, pkt.ip.dst)
        if hop is None:
            return
        ifname, nexthop = hop
        receiver = self._host_at(sender, ifname, nexthop)
        if receiver is None:
            return
        if receiver.name == self.topology.gateway:
            in_iface = self._peer_interface(sender, ifname, receiver.name)
            journey = self.gateway.receive(pkt, in_iface, self.now)
            self.journeys.append(journey)
            if journey.verdict == "ACCEPT" and journey.packet_out is not None:
                out = journey.packet_out
                gw_hop = _next_hop(receiver, out.ip.dst)
                if gw_hop is not None:
                    target = self._host_at(receiver.name, journey.out_iface or gw_hop[0],
                                           gw_hop[1])
                    if target is not None:
                        self._deliver(target, out)
            elif journey.verdict == "LOCAL":
                for answer in self._answer(receiver, journey.packet_out or pkt):
                    self._queue.append((receiver.name, answer))
            elif journey.verdict == UNRESOLVED and journey.packet_out is not None:
                self._queue.append((receiver.name, self._host_unreachable(journey.packet_out)))
            return
        self._deliver(receiver, pkt)

    def _from_gateway(self, pkt: Packet) -> None:
        """A packet of the gateway's own stack: LOCAL_OUT and POST_ROUTING, then the wire;
        to one of its own addresses, out and back in on lo (Gateway.loopback) and answered
        by its own stack."""
        gw = self.topology.gateway_host
        journey = self.gateway.send_local(pkt, self.now)
        self.journeys.append(journey)
        if journey.verdict == "LOCAL" and journey.packet_out is not None:
            for answer in self._answer(gw, journey.packet_out):
                self._queue.append((gw.name, answer))
        elif journey.verdict == "ACCEPT" and journey.packet_out is not None:
            hop = _next_hop(gw, journey.packet_out.ip.dst)
            if hop is not None:
                target = self._host_at(gw.name, hop[0], hop[1])
                if target is not None:
                    self._deliver(target, journey.packet_out)

    def _host_unreachable(self, queued: Packet) -> Packet:
        """What the gateway's stack sends when neighbour resolution fails for a packet it
        forwarded (ipv4_link_failure -> icmp_send): host unreachable to the packet's source,
        quoting it as it sat in the queue. On the kernel it leaves ~3 s later (3 ARP
        requests 1 s apart); the model's clock does not wait for it."""
        src = self.source_address(self.topology.gateway, queued.ip.src)
        return craft.icmp_error(src, queued, 3, 1)

    def _host_at(self, sender: str, ifname: str, addr: IPv4Address) -> Host | None:
        """The host on the same segment as (sender, ifname) that owns `addr`."""
        for seg in self.topology.segments:
            names = {(e.host, e.interface) for e in seg.endpoints}
            if (sender, ifname) not in names:
                continue
            for e in seg.endpoints:
                h = self.topology.host(e.host)
                if e.host != sender and addr in h.addresses():
                    return h
        return None

    def _peer_interface(self, sender: str, ifname: str, peer: str) -> str:
        for seg in self.topology.segments:
            names = {(e.host, e.interface) for e in seg.endpoints}
            if (sender, ifname) in names:
                for e in seg.endpoints:
                    if e.host == peer:
                        return e.interface
        raise KeyError(f"{peer} is not on {sender}'s {ifname}")

    def _deliver(self, host: Host, pkt: Packet) -> None:
        for answer in self._answer(host, pkt):
            self._queue.append((host.name, answer))

    # -- the hosts' stacks -------------------------------------------------------------------

    def _answer(self, host: Host, pkt: Packet) -> list[Packet]:
        if pkt.ip.dst not in host.addresses():
            return []
        refused = self._refused_by_host_rules(host, pkt)
        if refused is not None:
            return refused
        l4 = pkt.l4
        if isinstance(l4, UdpHeader):
            return self._udp_in(host, pkt, l4)
        if isinstance(l4, TcpHeader):
            return self._tcp_in(host, pkt, l4)
        if isinstance(l4, IcmpHeader):
            self._record(host, pkt, "icmp", None, None, pkt.payload,
                         note=f"type {l4.type} code {l4.code}")
            if l4.type == 8:
                return [craft.icmp(pkt.ip.dst, pkt.ip.src, 0, 0, id_=l4.id, seq=l4.seq,
                                   payload=pkt.payload)]
        return []

    def _refused_by_host_rules(self, host: Host, pkt: Packet) -> list[Packet] | None:
        """A host's own filter INPUT rules (spec `host_rules`), as a new packet meets them:
        None when they accept it, else what the host answers (nothing for DROP, the ICMP
        error of an ICMP REJECT, as ipt_REJECT's nf_send_unreach; a tcp-reset REJECT is
        modelled as a drop). The stand-in hosts keep no conntrack of their own, so every
        packet counts as NEW."""
        rules = self.host_rules.get(host.name)
        if rules is None:
            return None
        in_iface = next((i.name for i in host.interfaces if pkt.ip.src in i.network),
                        host.interfaces[0].name)
        for chain in rules.base_chains(Hook.LOCAL_IN, "filter"):
            outcome = evaluate(rules, chain, RuleContext(pkt, in_iface, None, "NEW"))
            if isinstance(outcome.target, Reject) and outcome.target.with_ in REJECT_CODES:
                return [craft.icmp_error(pkt.ip.dst, pkt, 3, REJECT_CODES[outcome.target.with_])]
            if isinstance(outcome.target, Drop | Reject):
                return []
        return None

    def _udp_in(self, host: Host, pkt: Packet, udp: UdpHeader) -> list[Packet]:
        key = (host.name, udp.dport)
        if key not in self.udp_listeners:
            return [craft.icmp_error(pkt.ip.dst, pkt, 3, 3)]
        self._record(host, pkt, "udp", udp.sport, udp.dport, pkt.payload)
        reply = self.udp_listeners[key]
        if reply is None:
            return []
        # The listener's socket is bound to the wildcard address (as the kernel side's
        # agent binds it): its answer's source is the one the route back gives, which is
        # not always the address the request came to (an INPUT SNAT to one of the
        # gateway's own addresses sends the answer through lo, from that address).
        src = self.source_address(host.name, pkt.ip.src)
        return [craft.udp(src, udp.dport, pkt.ip.src, udp.sport, reply)]

    def _tcp_in(self, host: Host, pkt: Packet, seg: TcpHeader) -> list[Packet]:
        me, peer = (pkt.ip.dst, seg.dport), (pkt.ip.src, seg.sport)
        key = (host.name, *me, *peer)
        end = self.tcp.get(key)
        if end is None:
            if seg.flags & RST:
                return []
            listener = self.tcp_listeners.get((host.name, seg.dport))
            if not (seg.flags & SYN) or (seg.flags & ACK) or listener is None:
                ack_no = seg.seq + len(pkt.payload) + (1 if seg.flags & (SYN | FIN) else 0)
                if seg.flags & ACK:
                    return [self._seg(me, peer, RST, seg.ack, 0)]
                return [self._seg(me, peer, RST | ACK, 0, ack_no)]
            end = _TcpEnd("server", me, peer, self._next_isn(), seg.seq + 1, "SYN_RECV",
                          reply=listener)
            self.tcp[key] = end
            end.snd_nxt += 1
            return [self._seg(me, peer, SYN | ACK, end.snd_nxt - 1, end.rcv_nxt)]
        if seg.flags & RST:
            end.state = "CLOSED"
            return []
        out: list[Packet] = []
        if end.state == "SYN_SENT" and seg.flags & SYN and seg.flags & ACK:
            end.rcv_nxt = seg.seq + 1
            end.state = "ESTABLISHED"
            out.append(self._seg(me, peer, ACK, end.snd_nxt, end.rcv_nxt))
            if end.send:
                out.append(self._data(end, end.send))
            else:
                out += self._client_close(end)
            return out
        if pkt.payload:
            end.rcv_nxt = seg.seq + len(pkt.payload)
            self._record(host, pkt, "tcp", seg.sport, seg.dport, pkt.payload)
            if end.role == "server":
                return [self._data(end, end.reply)] if end.reply else \
                    [self._seg(me, peer, ACK, end.snd_nxt, end.rcv_nxt)]
            return [self._seg(me, peer, ACK, end.snd_nxt, end.rcv_nxt), *self._client_close(end)]
        if seg.flags & FIN:
            end.rcv_nxt = seg.seq + 1
            if end.state in ("FIN_WAIT", "FIN_WAIT2"):
                end.state = "TIME_WAIT"
                return [self._seg(me, peer, ACK, end.snd_nxt, end.rcv_nxt)]
            end.state = "LAST_ACK"
            end.snd_nxt += 1
            return [self._seg(me, peer, FIN | ACK, end.snd_nxt - 1, end.rcv_nxt)]
        if end.state == "SYN_RECV":
            end.state = "ESTABLISHED"
        elif end.state == "LAST_ACK":
            end.state = "CLOSED"
        elif end.state == "FIN_WAIT":
            end.state = "FIN_WAIT2"
        return []

    def _client_close(self, end: _TcpEnd) -> list[Packet]:
        if end.close == "fin":
            end.state = "FIN_WAIT"
            end.snd_nxt += 1
            return [self._seg(end.local, end.remote, FIN | ACK, end.snd_nxt - 1, end.rcv_nxt)]
        if end.close == "rst":
            end.state = "CLOSED"
            return [self._seg(end.local, end.remote, RST | ACK, end.snd_nxt, end.rcv_nxt)]
        return []

    def _data(self, end: _TcpEnd, data: bytes) -> Packet:
        pkt = craft.tcp(end.local[0], end.local[1], end.remote[0], end.remote[1], 0x18,
                        seq=end.snd_nxt, ack=end.rcv_nxt, payload=data)
        end.snd_nxt += len(data)
        return pkt

    def _seg(self, me: tuple[IPv4Address, int], peer: tuple[IPv4Address, int], flags: int,
             seq: int, ack: int) -> Packet:
        return craft.tcp(me[0], me[1], peer[0], peer[1], flags, seq=seq, ack=ack)

    def _next_isn(self) -> int:
        self._isn += 1_000_000
        return self._isn

    def tcp_connect(self, host: str, src: IPv4Address, sport: int, dst: IPv4Address,
                    dport: int, send: bytes, close: str) -> None:
        """`host` connects: the SYN goes now, the rest as the two ends answer each other
        (the server's reply is the listener's, in `tcp_listeners`)."""
        isn = self._next_isn()
        end = _TcpEnd("client", (src, sport), (dst, dport), isn + 1, send=send, close=close)
        self.tcp[(host, src, sport, dst, dport)] = end
        self.send(host, craft.tcp(src, sport, dst, dport, SYN, seq=isn))

    def _record(self, host: Host, pkt: Packet, proto: str, sport: int | None,
                dport: int | None, payload: bytes, note: str = "") -> None:
        self.received.append(Received(host.name, self.now, proto, pkt.ip.src, pkt.ip.dst,
                                      sport, dport, payload, note))


def _next_hop(host: Host, dst: IPv4Address) -> tuple[str, IPv4Address] | None:
    """The interface and next hop `host` sends to `dst` through (longest prefix)."""
    best: tuple[int, str, IPv4Address] | None = None
    for intf in host.interfaces:
        if dst in intf.network and (best is None or intf.network.prefixlen > best[0]):
            best = (intf.network.prefixlen, intf.name, dst)
    for route in host.routes:
        if dst in route.dest and (best is None or route.dest.prefixlen > best[0]) \
                and route.via is not None:
            ifname = route.dev or next((i.name for i in host.interfaces
                                        if route.via in i.network), None)
            if ifname is not None:
                best = (route.dest.prefixlen, ifname, route.via)
    return None if best is None else (best[1], best[2])

