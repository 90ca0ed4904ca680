"""The journey of one packet through the gateway, as a value a student can read step by step.

Each `Step` is one callback that ran: the hook, its priority, the kernel function it mirrors,
and what it did. `Journey.render()` prints it in the order the kernel runs things, so the
seeds' "A DNAT Packet's Journey" can be followed line by line next to the kernel source.
"""

from __future__ import annotations

from dataclasses import dataclass

from nat.entry import Entry
from nat.hook_table import Registration
from nat.hooks import Hook, Priority
from nat.listing import render as render_entry
from nat.packet import Packet


@dataclass(frozen=True)
class Step:
    """One callback: where it ran, which kernel function it stands for, what it did."""

    hook: Hook | None          # None for steps between hooks (the routing decision)
    priority: int | None
    function: str              # the kernel function it mirrors, e.g. "nf_conntrack_in"
    did: str                   # what it did, in words

    def render(self) -> str:
        where = self.hook.name if self.hook is not None else "routing"
        if self.priority is None:
            prio = ""
        elif self.priority == Priority.CONNTRACK_CONFIRM:
            prio = "INT_MAX"
        else:
            prio = str(self.priority)
        return f"  {where:<12} {prio:>7}  {self.function:<28} {self.did}"


@dataclass(frozen=True)
class Journey:
    """What the gateway did with one packet.

    `verdict` is ACCEPT (sent on `out_iface`), LOCAL (delivered to the gateway's own stack),
    UNRESOLVED (left for `out_iface`, but no host owns the next hop: queued, then dropped),
    or DROP. `packet_out` is the packet as it left the hooks (for LOCAL: as the gateway's
    own stack receives it). `entry` is the packet's conntrack entry after the packet (None
    if untracked or gone), as `conntrack -L` would show it at `time`. `passed` lists the
    registered callbacks the packet was handed to, in order (nat chains run by the NAT core
    included), as the hook table has them; `render()` does not show it (docs/hooks.md does).
    `answers` are the journeys of packets the gateway built and sent because of this one (the
    TCP reset of a REJECT).
    """

    time: float
    in_iface: str | None       # None for packets the gateway itself sent
    packet_in: Packet
    steps: tuple[Step, ...]
    verdict: str
    packet_out: Packet | None = None
    out_iface: str | None = None
    entry: Entry | None = None
    passed: tuple[Registration, ...] = ()
    answers: tuple[Journey, ...] = ()   # packets the gateway sent in answer (REJECT's reset)

    def render(self) -> str:
        origin = f"in {self.in_iface}" if self.in_iface else "sent by the gateway"
        lines = [f"t={self.time:.3f} {origin}: {self.packet_in.summary()}"]
        lines += [s.render() for s in self.steps]
        if self.verdict == "ACCEPT" and self.packet_out is not None:
            lines.append(f"  => out {self.out_iface}: {self.packet_out.summary()}")
        elif self.verdict == "UNRESOLVED" and self.packet_out is not None:
            lines.append(f"  => not sent: {self.out_iface} cannot resolve the next hop "
                         f"for {self.packet_out.summary()}")
        elif self.verdict == "LOCAL":
            lines.append("  => delivered to the gateway's own stack")
        else:
            lines.append(f"  => {self.verdict}")
        if self.entry is not None:
            lines.append(f"  entry: {render_entry(self.entry)}")
        for answer in self.answers:
            lines.append("  answered with:")
            lines += ["  " + line for line in answer.render().splitlines()]
        return "\n".join(lines)
