"""Each captured packet's comments for the bundle's pcapng files: the model's journey of it.

A reader who opens pcap/all.pcapng in Wireshark sees, on each IPv4 packet, what the model did
with it, in the same numbering as packets.jsonl and verdict.json (packet #1 is the first IPv4
packet the gateway's capture holds):

- a packet the gateway received: one line that sums the journey up (the conntrack verdict,
  the NAT rule that bound, each rewrite, where it went and which captured packet the model's
  output is), then, for the first `DETAIL_PACKETS` packets, one comment per step of the
  journey and the entry after it, as `natlab run -v` prints them;
- a packet the gateway sent: which received packet it is the output of, as the verdict pairs
  them (the n-th packet out of an interface against the model's n-th), or the journey of the
  gateway's own packet.

Only plain values in, plain strings out (no root, no kernel side): the session hands them to
the bundle writer, which writes them without knowing what they say. Every string is escaped
for the terminal (`experiments.terminal.literal`): rule text from a spec ends up here, and
tshark prints comments as they are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.judging.replay import Prediction
from experiments.observed import WirePacket
from experiments.terminal import literal
from nat.journey import Journey, Step
from nat.listing import render

DETAIL_PACKETS = 2000      # step-by-step comments for this many packets; one line after that
_SEARCH = 256              # how far past the last match a journey's packet is looked for
_REWRITES = ("nf_nat_manip_pkt", "nf_nat_icmp_reply_translation")


@dataclass(frozen=True)
class _Pair:
    """A packet the model sent, put next to the kernel's as the verdict compares them."""

    iface: str
    ordinal: int              # the model's n-th packet out of `iface` (1-based)
    kernel: int | None        # the index of the kernel's n-th packet out of `iface`
    same: bool                # byte for byte


def journeys_by_packet(packets: Sequence[WirePacket],
                       journeys: Sequence[Journey]) -> dict[int, Journey]:
    """Which captured packet each journey is of. The replay makes journeys in capture order,
    one per received packet (at its time, on its interface) and one per packet the gateway
    sent of its own (at that packet's time, no input interface); a journey that fits no
    packet is left out."""
    out: dict[int, Journey] = {}
    cursor = 0
    for journey in journeys:
        for k in range(cursor, min(len(packets), cursor + _SEARCH)):
            wp = packets[k]
            own = journey.in_iface is None and wp.direction == "out"
            received = wp.direction == "in" and wp.iface == journey.in_iface
            if wp.time == journey.time and (own or received):
                out[k] = journey
                cursor = k + 1
                break
    return out


def _pairs(packets: Sequence[WirePacket],
           prediction: Prediction) -> tuple[dict[int, list[_Pair]], dict[int, tuple[str, int]]]:
    """(input index -> where its outputs went, kernel out index -> (iface, ordinal))."""
    kernel_out: dict[str, list[int]] = defaultdict(list)
    ordinal_of: dict[int, tuple[str, int]] = {}
    for k, wp in enumerate(packets):
        if wp.direction == "out":
            kernel_out[wp.iface].append(k)
            ordinal_of[k] = (wp.iface, len(kernel_out[wp.iface]))
    seen: dict[str, int] = defaultdict(int)
    by_input: dict[int, list[_Pair]] = defaultdict(list)
    for index, iface, data in prediction.sent:
        seen[iface] += 1
        n = seen[iface]
        outs = kernel_out.get(iface, [])
        kernel = outs[n - 1] if n <= len(outs) else None
        same = kernel is not None and packets[kernel].data == data
        by_input[index].append(_Pair(iface, n, kernel, same))
    return by_input, ordinal_of


def _went(pair: _Pair) -> str:
    where = f"out {pair.iface}"
    if pair.kernel is None:
        return f"{where}, but the kernel sent no packet out {pair.iface} #{pair.ordinal}"
    if pair.same:
        return f"{where} as packet #{pair.kernel + 1}"
    return (f"{where}; the kernel's packet out {pair.iface} #{pair.ordinal} "
            f"(packet #{pair.kernel + 1}) differs (verdict.json)")


def _outcome(journey: Journey, pairs: Sequence[_Pair]) -> str:
    if journey.verdict == "ACCEPT" and pairs:
        return "=> " + ", ".join(_went(p) for p in pairs)
    if journey.verdict == "ACCEPT" and journey.out_iface:
        return f"=> out {journey.out_iface}"
    if journey.verdict == "LOCAL":
        return "=> delivered to the gateway's own stack"
    last = journey.steps[-1] if journey.steps else None
    why = f": {last.function}: {last.did}" if last is not None else ""
    return f"=> {journey.verdict}{why}"


def _where(step: Step) -> str:
    return step.hook.name if step.hook is not None else "routing"


def summary(journey: Journey, pairs: Sequence[_Pair]) -> str:
    """The journey in one line: conntrack's verdict, the NAT rule that bound, the rewrites,
    the outcome."""
    parts: list[str] = []
    for step in journey.steps:
        if step.function == "nf_conntrack_in":
            parts.append(step.did.split(":", 1)[0])
        elif step.function.startswith("nat ") and "nf_nat_setup_info" in step.did:
            parts.append(f"{_where(step)} {step.did.split(': nf_nat_setup_info', 1)[0]}")
        elif step.function in _REWRITES:
            parts.append(f"{_where(step)} {step.did}")
    parts.append(_outcome(journey, pairs))
    return "; ".join(parts)


def detail(journey: Journey) -> list[str]:
    """Each step as `natlab run -v` prints it (spaces squeezed), then the entry after it."""
    lines = [" ".join(step.render().split()) for step in journey.steps]
    if journey.entry is not None:
        lines.append(f"entry: {' '.join(render(journey.entry).split())}")
    return lines


def packet_comments(packets: Sequence[WirePacket],
                    prediction: Prediction) -> dict[int, tuple[str, ...]]:
    """Comments by packet index (0 is packet #1), for every IPv4 packet of the capture."""
    journeys = journeys_by_packet(packets, prediction.journeys)
    by_input, ordinal_of = _pairs(packets, prediction)
    model_out = {(p.iface, p.ordinal): (index, p)
                 for index, pairs in by_input.items() for p in pairs}
    unreadable = dict(prediction.unparsed)
    out: dict[int, tuple[str, ...]] = {}
    for k, wp in enumerate(packets):
        head = f"packet #{k + 1} {wp.direction} {wp.iface}"
        journey = journeys.get(k)
        lines: list[str]
        if k in unreadable:
            lines = [f"{head}: the model cannot read it: {unreadable[k]}"]
        elif journey is not None:
            own = " (sent by the gateway itself)" if wp.direction == "out" else ""
            lines = [f"{head}{own}, the model's journey: "
                     f"{summary(journey, by_input.get(k, []))}"]
            if k < DETAIL_PACKETS:
                lines += detail(journey)
        elif wp.direction == "out":
            lines = [f"{head}: {_source(ordinal_of[k], model_out)}"]
        else:
            lines = [f"{head}: the model's replay has no journey of it"]
        out[k] = tuple(literal(line, markup=False) for line in lines)
    return out


def _source(at: tuple[str, int], model_out: dict[tuple[str, int], tuple[int, _Pair]]) -> str:
    """What the model says of the kernel's n-th packet out of an interface (`at`)."""
    iface, n = at
    found = model_out.get(at)
    if found is None:
        return (f"the model sent no packet out {iface} #{n} "
                f"(verdict.json: packet out {iface} #{n})")
    index, pair = found
    if pair.same:
        return (f"packet #{index + 1} after the gateway, as the model predicted "
                f"(see packet #{index + 1}'s journey)")
    return (f"the model's packet out {iface} #{n} (from packet #{index + 1}) differs from "
            f"it (verdict.json: packet out {iface} #{n})")
