"""Feed the model the packets the real gateway received, in order, at their capture times.

This is the model side of a differential run. The model predicts what the gateway sends and
what its table holds; where the kernel may pick among several outcomes (a NAT port after a
clash, `--random`), the model's allowed set is checked against what the kernel actually sent,
and the model then follows the kernel's pick, so later packets stay comparable
(kernel-semantics.md §8).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from experiments.observed import WirePacket
from nat.choice import Choice
from nat.entry import Entry
from nat.extract import get_tuple
from nat.journey import Journey
from nat.manip import manip_pkt
from nat.maniptype import ManipType
from nat.packet import IcmpHeader, MalformedPacket, Packet, TcpHeader, parse
from nat.pipeline import Gateway, GatewayConfig
from nat.tuple import ICMP_ERROR_TYPES, Tuple, invert, invertible


@dataclass(frozen=True)
class ChoiceRecord:
    """One place where the kernel could pick among several outcomes."""

    packet_index: int
    manip: str
    allowed: str          # the model's description of the allowed set
    kernel: str           # what the kernel picked ("" if it could not be seen)
    model_default: str
    allowed_kernel: bool  # the kernel's pick is inside the allowed set


@dataclass(frozen=True)
class Prediction:
    """What the model predicts for one run."""

    journeys: tuple[Journey, ...]
    sent: tuple[tuple[int, str, bytes], ...]          # (index of the input packet, iface, bytes)
    snapshots: tuple[tuple[str, float, tuple[Entry, ...]], ...]
    choices: tuple[ChoiceRecord, ...]
    unparsed: tuple[tuple[int, str], ...]             # input packets the model could not read


class _KernelChooser:
    """Adopts the kernel's pick when the model allows it; else keeps the model's default."""

    def __init__(self, index: int, observed: Packet | None, log: list[ChoiceRecord]) -> None:
        self.index = index
        self.observed = observed
        self.log = log

    def __call__(self, choice: Choice[Tuple], manip: ManipType) -> Tuple:
        if choice.determined:
            return choice.default
        seen = self._candidate(choice.default, manip)
        ok = seen is not None and choice.contains(seen)
        self.log.append(ChoiceRecord(self.index, manip.name, choice.describe(),
                                     str(seen) if seen is not None else "",
                                     str(choice.default), ok))
        return seen if ok and seen is not None else choice.default

    def _candidate(self, default: Tuple, manip: ManipType) -> Tuple | None:
        pkt = self.observed
        if pkt is None or pkt.proto != default.proto:
            return None
        key = _key(pkt, manip)
        if manip is ManipType.SRC:
            return replace(default, src=pkt.ip.src, sport=key if key is not None else default.sport)
        if default.has_ports:
            return replace(default, dst=pkt.ip.dst, dport=key if key is not None else default.dport)
        return replace(default, dst=pkt.ip.dst, sport=key if key is not None else default.sport)


def _key(pkt: Packet, manip: ManipType) -> int | None:
    if isinstance(pkt.l4, IcmpHeader):
        return pkt.l4.id
    if pkt.l4 is None:
        return None
    return pkt.l4.sport if manip is ManipType.SRC else pkt.l4.dport


# A change of the world at a moment: applied to the modelled gateway at that time (a step that
# changes the gateway's rules, conntrack table or sysctls; experiments/model_moves.py).
TimedMove = tuple[float, Callable[[Gateway, float], object]]


def replay(config: GatewayConfig, packets: list[WirePacket],
           snapshot_times: list[tuple[str, float]],
           moves: Sequence[TimedMove] = ()) -> Prediction:
    """Run every captured incoming packet through a fresh modelled gateway. `moves` are
    applied between packets, each before the first packet captured after its time (and
    before a snapshot taken after it), in time order."""
    gateway = Gateway(config)
    timeline = sorted(moves, key=lambda m: m[0])
    journeys: list[Journey] = []
    sent: list[tuple[int, str, bytes]] = []
    choices: list[ChoiceRecord] = []
    unparsed: list[tuple[int, str]] = []
    snapshots: list[tuple[str, float, tuple[Entry, ...]]] = []
    pending = sorted(snapshot_times, key=lambda s: s[1])
    consumed: set[int] = set()
    order: list[int] = []       # per sent packet: where the kernel's copy of it was captured

    def catch_up(until: float) -> None:
        """Snapshots and moves up to `until`, in time order (a move first at equal times:
        its step ended before a later checkpoint's began)."""
        while (pending and pending[0][1] <= until) or (timeline and timeline[0][0] <= until):
            if timeline and (not pending or timeline[0][0] <= pending[0][1]):
                at, apply = timeline.pop(0)
                apply(gateway, at)
            else:
                name, at = pending.pop(0)
                snapshots.append((name, at, tuple(gateway.entries(at))))

    for index, wp in enumerate(packets):
        catch_up(wp.time)
        if wp.direction == "out":
            if index not in consumed and _replay_local(gateway, packets, index, journeys, sent,
                                                       choices, unparsed):
                order.append(index)
            continue
        try:
            pkt = parse(wp.data)
        except MalformedPacket as exc:
            unparsed.append((index, str(exc)))
            continue
        found = _next_out(packets, index, pkt, consumed)
        observed_index, observed = found if found is not None else (None, None)
        if observed_index is not None:
            # The kernel forwarded this very packet: its copy is no packet of the gateway's
            # own, whatever the model does with the input.
            consumed.add(observed_index)
        chooser = _KernelChooser(index, observed, choices)
        journey = gateway.receive(pkt, wp.iface, wp.time, chooser)
        journeys.append(journey)
        if journey.verdict == "ACCEPT" and journey.packet_out is not None and journey.out_iface:
            sent.append((index, journey.out_iface, journey.packet_out.to_bytes()))
            order.append(observed_index if observed_index is not None else index)
    catch_up(float("inf"))
    # In the kernel's capture order, so that outputs of packets in flight together line up
    # with the kernel's, whichever of them the kernel sent first.
    in_order = tuple(s for _, s in sorted(zip(order, sent, strict=True), key=lambda x: x[0]))
    return Prediction(tuple(journeys), in_order, tuple(snapshots), tuple(choices),
                      tuple(unparsed))


def _replay_local(gateway: Gateway, packets: list[WirePacket], index: int,
                  journeys: list[Journey], sent: list[tuple[int, str, bytes]],
                  choices: list[ChoiceRecord], unparsed: list[tuple[int, str]]) -> bool:
    """A packet the kernel sent that no received packet explains: the gateway's own stack
    sent it (a REDIRECTed service answering, an ICMP error of its own). The capture shows
    it after POST_ROUTING; when it belongs to a NATed entry, the packet as the local stack
    wrote it is that entry's reply tuple, so it is rebuilt that way and run through
    LOCAL_OUT and POST_ROUTING like any locally generated packet. True if the model sent
    it (appended to `sent`)."""
    wp = packets[index]
    try:
        seen = parse(wp.data)
    except MalformedPacket as exc:
        unparsed.append((index, str(exc)))
        return False
    local = seen
    t = get_tuple(seen)
    if t is not None:
        for conn in gateway.table.conns(wp.time):
            if invertible(conn.orig) and t == invert(conn.orig) and conn.reply != t:
                local = manip_pkt(manip_pkt(seen, conn.reply, ManipType.SRC),
                                  conn.reply, ManipType.DST)
                break
    if not gateway.config.net.is_local(local.ip.src):
        # Not from one of the gateway's addresses: a forwarded packet the model did not
        # send (it dropped it, or delivered it locally). Left unexplained, so the comparison
        # reports it as sent by the kernel and not by the model. (A tcp-reset from REJECT
        # in FORWARD would also land here: the model does not build those.)
        return False
    journey = gateway.send_local(local, wp.time, _KernelChooser(index, seen, choices))
    journeys.append(journey)
    if journey.verdict == "ACCEPT" and journey.packet_out is not None and journey.out_iface:
        sent.append((index, journey.out_iface, journey.packet_out.to_bytes()))
        return True
    return False


def _next_out(packets: list[WirePacket], index: int, pkt: Packet,
              consumed: set[int]) -> tuple[int, Packet] | None:
    """The kernel's output for the input `pkt` at `index`: the first unconsumed outgoing
    packet captured after it that is `pkt` forwarded (`_forward_of`). Not merely the next
    one of the same protocol: with two packets in flight, or one the kernel dropped, that
    is another packet's output."""
    for j in range(index + 1, min(len(packets), index + 64)):
        wp = packets[j]
        if wp.direction == "out" and j not in consumed and len(wp.data) > 9 \
                and wp.data[9] == pkt.proto:
            try:
                out = parse(wp.data)
            except MalformedPacket:
                continue
            if _forward_of(pkt, out):
                return j, out
        if wp.direction == "in" and j > index + 8:
            break
    return None


def _forward_of(pkt: Packet, out: Packet) -> bool:
    """Whether `out` can be `pkt` after ip_forward and NAT: NAT rewrites addresses, ports,
    the ICMP id, the quote inside an ICMP error and checksums (nf_nat_manip_pkt,
    nf_nat_icmp_reply_translation); ip_forward takes one from the TTL. Everything else is
    the sender's and stays."""
    if (out.ip.ttl != pkt.ip.ttl - 1 or out.ip.ident != pkt.ip.ident
            or out.ip.total_length != pkt.ip.total_length or out.ip.tos != pkt.ip.tos):
        return False
    a, b = pkt.l4, out.l4
    if isinstance(a, TcpHeader) and isinstance(b, TcpHeader):
        same_l4 = (a.seq, a.ack, a.flags, a.window) == (b.seq, b.ack, b.flags, b.window)
    elif isinstance(a, IcmpHeader) and isinstance(b, IcmpHeader):
        if a.type in ICMP_ERROR_TYPES:     # the quoted packet is translated
            return (a.type, a.code) == (b.type, b.code)
        same_l4 = (a.type, a.code, a.seq) == (b.type, b.code, b.seq)
    else:
        same_l4 = type(a) is type(b)
    return same_l4 and pkt.payload == out.payload
