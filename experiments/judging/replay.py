"""Feed the model the packets the real gateway received, in order, at their capture times.

This is the model side of a differential run. The model predicts what the gateway sends and
what its table holds; where the kernel may pick among several outcomes (a NAT port after a
clash, `--random`), the model's allowed set is checked against what the kernel actually sent,
and the model then follows the kernel's pick, so later packets stay comparable
(kernel-semantics.md §8).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from experiments.observed import WirePacket
from nat.checksum import with_fresh_checksums
from nat.choice import Choice
from nat.entry import Entry
from nat.extract import get_tuple, icmp_error_inner
from nat.journey import Journey
from nat.manip import manip_pkt
from nat.maniptype import ManipType
from nat.netdev import LOOPBACK_NAME
from nat.packet import IcmpHeader, MalformedPacket, Packet, TcpHeader, parse
from nat.pipeline import UNRESOLVED, Gateway, GatewayConfig
from nat.tuple import ICMP_ERROR_TYPES, Tuple, invert, invertible

Evidence = tuple[tuple[float, tuple[Entry, ...]], ...]
"""The kernel's conntrack tables as snapshotted during the run: (time, entries), in order."""

Pick = tuple[int, str]
"""Where a choice was made: (index of the captured packet, manip type name)."""

WIRE, TABLE, FORCED, UNSEEN = "wire", "table", "forced", "unseen"
ICMP_DEST_UNREACH, ICMP_HOST_UNREACH = 3, 1


@dataclass(frozen=True)
class ChoiceRecord:
    """One place where the kernel could pick among several outcomes."""

    packet_index: int
    manip: str
    allowed: str          # the model's description of the allowed set
    kernel: str           # what the kernel picked ("" if it could not be seen)
    model_default: str
    allowed_kernel: bool  # the kernel's pick is inside the allowed set
    # Where the pick came from: WIRE (a forwarded copy), TABLE (the kernel's conntrack
    # entry), FORCED (a pick the judgement tried because nothing showed the kernel's), or
    # UNSEEN (nothing shows it: the model's default was followed).
    source: str = WIRE
    chosen: str = ""      # the tuple the replay went on with


@dataclass(frozen=True)
class Prediction:
    """What the model predicts for one run."""

    journeys: tuple[Journey, ...]
    sent: tuple[tuple[int, str, bytes], ...]          # (index of the input packet, iface, bytes)
    snapshots: tuple[tuple[str, float, tuple[Entry, ...]], ...]
    choices: tuple[ChoiceRecord, ...]
    unparsed: tuple[tuple[int, str], ...]             # input packets the model could not read


@dataclass(frozen=True)
class _Unseen:
    """A choice nothing showed, kept with its allowed set so the judgement can try others."""

    pick: Pick
    choice: Choice[Tuple]


class _KernelChooser:
    """Adopts the kernel's pick when the model allows it; else keeps the model's default.

    The pick is read, in this order, from the packet's forwarded copy on the wire, from the
    kernel's conntrack table (the entry whose original tuple is this packet's: its reply
    tuple holds every binding, so it shows a pick the wire cannot, e.g. for a packet
    delivered to the gateway itself), or from `forced` (a pick the judgement asks to try).
    A pick nothing shows follows the model's default and is logged as UNSEEN."""

    def __init__(self, index: int, observed: Packet | None, log: list[ChoiceRecord],
                 orig: Tuple | None = None, evidence: Evidence = (), at: float = 0.0,
                 forced: Mapping[Pick, Tuple] | None = None,
                 unseen: list[_Unseen] | None = None) -> None:
        self.index = index
        self.observed = observed
        self.log = log
        self.orig = orig
        self.evidence = evidence
        self.at = at
        self.forced = forced or {}
        self.unseen = unseen if unseen is not None else []

    def __call__(self, choice: Choice[Tuple], manip: ManipType) -> Tuple:
        if choice.determined:
            return choice.default
        source = WIRE
        seen = self._candidate(choice.default, manip)
        if seen is None:
            source, seen = TABLE, self._from_table(choice.default, manip)
        if seen is None:
            forced = self.forced.get((self.index, manip.name))
            if forced is not None and choice.contains(forced):
                self._record(choice, manip, "", False, FORCED, forced)
                return forced
            self.unseen.append(_Unseen((self.index, manip.name), choice))
            self._record(choice, manip, "", False, UNSEEN, choice.default)
            return choice.default
        ok = choice.contains(seen)
        chosen = seen if ok else choice.default
        self._record(choice, manip, str(seen), ok, source, chosen)
        return chosen

    def _record(self, choice: Choice[Tuple], manip: ManipType, kernel: str, ok: bool,
                source: str, chosen: Tuple) -> None:
        self.log.append(ChoiceRecord(self.index, manip.name, choice.describe(), kernel,
                                     str(choice.default), ok, source, str(chosen)))

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

    def _from_table(self, default: Tuple, manip: ManipType) -> Tuple | None:
        """The pick as the kernel's table shows it: the first snapshot at or after this
        packet holding an entry with this packet's original tuple. The original direction
        after NAT is the inverse of the reply tuple; this manip's part of it is the pick."""
        if self.orig is None:
            return None
        entry = kernel_entry(self.evidence, self.at, lambda e: e.orig == self.orig)
        if entry is None or entry.reply.proto != default.proto:
            return None
        after = invert(entry.reply)
        if manip is ManipType.SRC:
            return replace(default, src=after.src, sport=after.sport)
        if default.has_ports:
            return replace(default, dst=after.dst, dport=after.dport)
        return replace(default, dst=after.dst, sport=after.sport)


def kernel_entry(evidence: Evidence, at: float,
                 wanted: Callable[[Entry], bool]) -> Entry | None:
    """The first entry `wanted` accepts in the first snapshot taken at or after `at`
    that has one (an entry enters the table at confirm, after the packet was captured)."""
    for time, entries in evidence:
        if time + 1e-9 < at:
            continue
        for e in entries:
            if wanted(e):
                return e
    return None


def _key(pkt: Packet, manip: ManipType) -> int | None:
    if isinstance(pkt.l4, IcmpHeader):
        return pkt.l4.id
    if pkt.l4 is None:
        return None
    return pkt.l4.sport if manip is ManipType.SRC else pkt.l4.dport


@dataclass
class _Run:
    """One replay's accumulating results."""

    gateway: Gateway
    packets: list[WirePacket]
    evidence: Evidence
    forced: Mapping[Pick, Tuple]
    journeys: list[Journey] = field(default_factory=list)
    sent: list[tuple[int, str, bytes]] = field(default_factory=list)
    choices: list[ChoiceRecord] = field(default_factory=list)
    unparsed: list[tuple[int, str]] = field(default_factory=list)
    unseen: list[_Unseen] = field(default_factory=list)
    unresolved: list[Packet] = field(default_factory=list)   # left for an unowned next hop

    def note(self, journey: Journey) -> Journey:
        """Keep a journey; remember a packet the model left in a neighbour queue."""
        self.journeys.append(journey)
        if journey.verdict == UNRESOLVED and journey.packet_out is not None:
            self.unresolved.append(journey.packet_out)
        return journey

    def chooser(self, index: int, observed: Packet | None, orig: Tuple | None) -> _KernelChooser:
        return _KernelChooser(index, observed, self.choices, orig, self.evidence,
                              self.packets[index].time, self.forced, self.unseen)


# A change of the world at a moment: applied to the modelled gateway at that time (a step that
# changes the gateway's rules, conntrack table or sysctls; experiments/model_moves.py).
TimedMove = tuple[float, Callable[[Gateway, float], object]]


def replay(config: GatewayConfig, packets: list[WirePacket],
           snapshot_times: list[tuple[str, float]], *, evidence: Evidence = (),
           forced: Mapping[Pick, Tuple] | None = None,
           moves: Sequence[TimedMove] = ()) -> Prediction:
    """Run every captured incoming packet through a fresh modelled gateway.

    `evidence` is the kernel's tables as snapshotted (where picks the wire cannot show are
    read, and the packets the gateway's own sockets wrote are recovered); `forced` are picks
    to follow where nothing shows the kernel's (see `unseen_picks`). `moves` are applied
    between packets, each before the first packet captured after its time (and before a
    snapshot taken after it), in time order."""
    return _replay(config, packets, snapshot_times, evidence, forced or {}, moves)[0]


def unseen_picks(config: GatewayConfig, packets: list[WirePacket],
                 snapshot_times: list[tuple[str, float]], *, evidence: Evidence = (),
                 forced: Mapping[Pick, Tuple] | None = None,
                 moves: Sequence[TimedMove] = ()
                 ) -> tuple[Prediction, tuple[_Unseen, ...]]:
    """`replay`, and the choices in it that nothing showed (their allowed sets), in order."""
    return _replay(config, packets, snapshot_times, evidence, forced or {}, moves)


def _replay(config: GatewayConfig, packets: list[WirePacket],
            snapshot_times: list[tuple[str, float]], evidence: Evidence,
            forced: Mapping[Pick, Tuple], moves: Sequence[TimedMove] = ()
            ) -> tuple[Prediction, tuple[_Unseen, ...]]:
    run = _Run(Gateway(config), packets, evidence, forced)
    gateway = run.gateway
    timeline = sorted(moves, key=lambda m: m[0])
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
        if wp.iface == LOOPBACK_NAME:
            # The gateway talking to itself: captured once, between POST_ROUTING on the way
            # out and PRE_ROUTING on the way back in.
            _replay_loopback(run, index)
            continue
        if wp.direction == "out":
            if index not in consumed and _replay_local(run, index):
                order.append(index)
            continue
        try:
            pkt = parse(wp.data)
        except MalformedPacket as exc:
            run.unparsed.append((index, str(exc)))
            continue
        found = _next_out(packets, index, pkt, consumed)
        observed_index, observed = found if found is not None else (None, None)
        if observed_index is not None:
            # The kernel forwarded this very packet: its copy is no packet of the gateway's
            # own, whatever the model does with the input.
            consumed.add(observed_index)
        journey = run.note(gateway.receive(pkt, wp.iface, wp.time,
                                           run.chooser(index, observed, get_tuple(pkt))))
        if journey.verdict == "ACCEPT" and journey.packet_out is not None and journey.out_iface:
            run.sent.append((index, journey.out_iface, journey.packet_out.to_bytes()))
            order.append(observed_index if observed_index is not None else index)
        for answer in journey.answers:
            if answer.verdict == "ACCEPT" and answer.packet_out is not None and answer.out_iface:
                data = answer.packet_out.to_bytes()
                seen_at = _answer_out(packets, index, answer.out_iface, data, consumed)
                if seen_at is not None:
                    consumed.add(seen_at)
                run.sent.append((index, answer.out_iface, data))
                order.append(seen_at if seen_at is not None else index)
    catch_up(float("inf"))
    # In the kernel's capture order, so that outputs of packets in flight together line up
    # with the kernel's, whichever of them the kernel sent first.
    in_order = tuple(s for _, s in sorted(zip(order, run.sent, strict=True), key=lambda x: x[0]))
    prediction = Prediction(tuple(run.journeys), in_order, tuple(snapshots), tuple(run.choices),
                            tuple(run.unparsed))
    return prediction, tuple(run.unseen)


def _as_written(gateway: Gateway, seen: Packet, at: float, evidence: Evidence) -> Packet:
    """The packet as the gateway's own socket wrote it, from its copy captured after
    POST_ROUTING. NAT may have rewritten it on the way out; the entry it belongs to says
    how. In the model's table: a reply-direction packet of a NATed entry was written as
    the entry's reply tuple, an original-direction one as its original tuple. A flow's
    first packet has no entry in the model yet: the kernel's own table has it (the entry
    whose reply tuple is the inverse of what was captured), and its original tuple is
    what the socket wrote (nf_conntrack_in records the packet before any NAT). Without
    either, the capture is taken as written."""
    t = get_tuple(seen)
    if t is None or not invertible(t):
        return seen
    written: Tuple | None = None
    for conn in gateway.table.conns(at):
        if not invertible(conn.orig):
            continue
        if t == invert(conn.orig) and conn.reply != t:
            written = conn.reply
            break
        if t == invert(conn.reply) and conn.orig != t:
            written = conn.orig
            break
    else:
        entry = kernel_entry(evidence, at, lambda e: e.reply == invert(t))
        if entry is not None and entry.orig != t:
            written = entry.orig
    if written is None:
        return seen
    return manip_pkt(manip_pkt(seen, written, ManipType.SRC), written, ManipType.DST)


def _unreachable_as_written(run: _Run, seen: Packet) -> Packet:
    """An ICMP host unreachable the gateway sent after failed neighbour resolution quotes
    the packet as it sat in the neighbour queue, after POST_ROUTING (ipv4_link_failure ->
    icmp_send); NAT on its way out then translated the quote (nf_nat_icmp_reply_translation).
    When the model left a packet with the same IP id and protocol in a queue, the error as
    written quotes the model's packet: the model's own NAT must then turn it into what was
    captured. The outer header is kept as captured."""
    l4 = seen.l4
    if not (isinstance(l4, IcmpHeader) and l4.type == ICMP_DEST_UNREACH
            and l4.code == ICMP_HOST_UNREACH):
        return seen
    inner = icmp_error_inner(seen)
    if inner is None:
        return seen
    for queued in run.unresolved:
        if (queued.ip.ident, queued.proto) == (inner.ip.ident, inner.proto):
            run.unresolved.remove(queued)
            quote = queued.to_bytes()[: len(seen.payload)]
            return with_fresh_checksums(replace(seen, payload=quote), lengths=True)
    return seen


def _replay_local(run: _Run, index: int) -> bool:
    """A packet the kernel sent that no received packet explains: the gateway's own stack
    sent it (its own flow, a REDIRECTed service answering, an ICMP error of its own). It is
    rebuilt as written (`_as_written`) and run through LOCAL_OUT and POST_ROUTING like any
    locally generated packet. True if the model sent it (appended to `run.sent`)."""
    wp = run.packets[index]
    try:
        seen = parse(wp.data)
    except MalformedPacket as exc:
        run.unparsed.append((index, str(exc)))
        return False
    gateway = run.gateway
    local = _as_written(gateway, _unreachable_as_written(run, seen), wp.time, run.evidence)
    if not gateway.config.net.is_local(local.ip.src):
        # Not from one of the gateway's addresses: a forwarded packet the model did not
        # send (it dropped it, or delivered it locally). Left unexplained, so the comparison
        # reports it as sent by the kernel and not by the model. (REJECT's reset is not
        # one: the model sends it as an answer to the rejected packet, in the main loop.)
        return False
    journey = run.note(gateway.send_local(local, wp.time,
                                          run.chooser(index, seen, get_tuple(local))))
    if journey.verdict == "ACCEPT" and journey.packet_out is not None and journey.out_iface \
            and journey.out_iface != LOOPBACK_NAME:
        run.sent.append((index, journey.out_iface, journey.packet_out.to_bytes()))
        return True
    return False


def _replay_loopback(run: _Run, index: int) -> None:
    """A packet captured on `lo`: sent by the gateway to one of its own addresses. The model
    sends it out and back in; it is compared through what it leaves
    behind (entries, what the gateway's own stack answers), not as a packet on a wire.
    `Gateway.send_local` loops it back, as the route to a local address is `lo`."""
    wp = run.packets[index]
    try:
        seen = parse(wp.data)
    except MalformedPacket as exc:
        run.unparsed.append((index, str(exc)))
        return
    local = _as_written(run.gateway, seen, wp.time, run.evidence)
    run.note(run.gateway.send_local(local, wp.time, run.chooser(index, seen, get_tuple(local))))


def _answer_out(packets: list[WirePacket], index: int, iface: str, data: bytes,
                consumed: set[int]) -> int | None:
    """Where the kernel's copy of a packet the model's gateway sent in answer to the input at
    `index` (REJECT's reset) was captured: the first unconsumed outgoing packet after it on
    the same interface with the same addresses, protocol and ports (so that a reset the model
    builds differently is still compared field by field, not reported as a stray packet)."""
    want = data[12:20], data[9:10], data[20:24]
    for j in range(index + 1, min(len(packets), index + 64)):
        wp = packets[j]
        if wp.direction != "out" or j in consumed or wp.iface != iface or len(wp.data) < 24:
            continue
        if wp.data == data or (wp.data[12:20], wp.data[9:10], wp.data[20:24]) == want:
            return j
    return None


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
