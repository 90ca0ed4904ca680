"""The generic tracker (any protocol without its own), and the result every tracker returns.

Mirrors net/netfilter/nf_conntrack_proto_generic.c (nf_ct_generic_timeout) and
generic_packet() in net/netfilter/nf_conntrack_core.c: the entry is keyed by addresses and
protocol number only, every packet refreshes it to nf_conntrack_generic_timeout (600 s), and
it is never ASSURED.

GRE has its own tracker in the kernel (when built; 30 s / 180 s and keys); the model has none,
so GRE is tracked here like any other protocol (a known difference, not used by natlab).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from nat.conn import Conn
from nat.packet import Packet
from nat.status import CtInfo, Status
from nat.sysctl import Sysctls
from nat.tuple import Direction

TrackVerdict = Literal["ACCEPT", "INVALID", "DROP", "REPEAT"]


@dataclass(frozen=True)
class TrackResult:
    """What a tracker made of one packet.

    `conn` is the entry's new value, also for INVALID (the kernel may have updated its TCP
    state before saying invalid). `verdict`: ACCEPT (ct attached), INVALID (no ct attached,
    packet still accepted), DROP, REPEAT (the old entry must be deleted and the packet looked
    up again: TCP reopen). `kill`: delete the entry now (TCP RST before any reply); the
    packet itself is still accepted with it attached.
    """

    conn: Conn
    verdict: TrackVerdict
    notes: tuple[str, ...] = ()
    kill: bool = False


def refresh(conn: Conn, now: float, seconds: int) -> Conn:
    """nf_ct_refresh(): expire `seconds` from now, unless the timeout is fixed."""
    if conn.status & Status.FIXED_TIMEOUT:
        return conn
    return replace(conn, timeout=now + seconds)


def generic_new(conn: Conn) -> Conn:
    """Nothing to set up: the generic tracker keeps no state."""
    return conn


def generic_packet(conn: Conn, pkt: Packet, direction: Direction, ctinfo: CtInfo, now: float,
                   sysctls: Sysctls) -> TrackResult:
    """generic_packet(): refresh to the generic timeout."""
    t = sysctls.generic_timeout
    return TrackResult(refresh(conn, now, t), "ACCEPT", (f"timeout {t} s",))
