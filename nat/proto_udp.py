"""The UDP tracker: 30 s until it is a stream, then 120 s and ASSURED.

Mirrors net/netfilter/nf_conntrack_proto_udp.c: udp_error() and nf_conntrack_udp_packet()
(udp_timeouts[]: UDP_CT_UNREPLIED 30 s, UDP_CT_REPLIED 120 s). Same observable behaviour in
6.1, 6.12 and 7.2 (kernel-semantics §6.3), checked live on 6.18.44.

The 2-second rule: `stream_ts = now + 2` is set while the entry is unconfirmed (its first
packet). A packet handled while SEEN_REPLY is already set makes the entry a stream
(120 s, ASSURED) if it comes strictly after stream_ts; otherwise 30 s. SEEN_REPLY is set by
nf_conntrack_in only *after* the tracker ran, so the first reply itself still gets 30 s and
never assures: one request and one quick reply leave `udp 17 29 ... mark=0` with no flags.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nat.checksum import checksums_ok
from nat.conn import Conn
from nat.hooks import Hook
from nat.packet import Packet, UdpHeader
from nat.proto_generic import TrackResult, refresh
from nat.status import CtInfo, Status
from nat.sysctl import Sysctls
from nat.tuple import Direction

STREAM_AFTER = 2.0   # seconds after creation a packet must come to make a stream


@dataclass(frozen=True)
class UdpState:
    """struct nf_ct_udp: when the entry may become a stream (absolute time)."""

    stream_ts: float = 0.0


def udp_error(pkt: Packet, hook: Hook, sysctls: Sysctls) -> str | None:
    """udp_error(): why the datagram cannot be tracked, or None.

    Header missing; length field above the bytes present or below 8; a non-zero checksum
    that does not verify, checked only at PRE_ROUTING with nf_conntrack_checksum=1
    (checksum 0 means "none" and is fine).
    """
    udp = pkt.l4
    if not isinstance(udp, UdpHeader):
        return "short UDP packet"
    available = 8 + len(pkt.payload)
    if udp.length > available or udp.length < 8:
        return f"UDP length {udp.length} with {available} bytes present"
    if udp.checksum == 0:
        return None
    if hook is Hook.PRE_ROUTING and sysctls.checksum and not checksums_ok(pkt)["l4"]:
        return "bad UDP checksum"
    return None


def udp_new(conn: Conn, now: float) -> Conn:
    """A new entry's UDP state (the kernel sets stream_ts at the first packet, while the
    entry is unconfirmed; udp_packet does the same, so this is the same value)."""
    return replace(conn, proto_state=UdpState(now + STREAM_AFTER))


def udp_packet(conn: Conn, pkt: Packet, direction: Direction, ctinfo: CtInfo, now: float,
               sysctls: Sysctls) -> TrackResult:
    """nf_conntrack_udp_packet() after udp_error(): refresh, and maybe assure."""
    if not conn.confirmed:
        conn = replace(conn, proto_state=UdpState(now + STREAM_AFTER))
    state = conn.proto_state if isinstance(conn.proto_state, UdpState) else UdpState()
    if not conn.status & Status.SEEN_REPLY:
        t = sysctls.udp_timeout
        return TrackResult(refresh(conn, now, t), "ACCEPT", (f"timeout {t} s (no reply yet)",))
    if now > state.stream_ts:
        t = sysctls.udp_timeout_stream
        conn = refresh(conn, now, t)
        notes = [f"timeout {t} s (stream: both ways and over {STREAM_AFTER:g} s old)"]
        if not conn.status & (Status.NAT_CLASH | Status.ASSURED):
            conn = replace(conn, status=conn.status | Status.ASSURED)
            notes.append("ASSURED")
        return TrackResult(conn, "ACCEPT", tuple(notes))
    t = sysctls.udp_timeout
    return TrackResult(refresh(conn, now, t), "ACCEPT",
                       (f"timeout {t} s (replied, but within {STREAM_AFTER:g} s of creation)",))
