"""The conntrack core: a packet meets the table (nf_conntrack_in) and a new entry enters it
(__nf_conntrack_confirm).

Mirrors net/netfilter/nf_conntrack_core.c: nf_conntrack_in(), resolve_normal_ct(),
init_conntrack(), nf_conntrack_handle_packet(), nf_conntrack_handle_icmp() with
nf_conntrack_icmpv4_error()/nf_conntrack_inet_error() (net/netfilter/nf_conntrack_proto_icmp.c),
__nf_conntrack_confirm() and __nf_ct_resolve_clash(). kernel-semantics.md §1.3, §2.3-2.5, §3.

A new entry is UNCONFIRMED: `nf_conntrack_in` returns it without putting it in the table,
and the caller carries it through the hooks (skb->_nfct) until `nf_conntrack_confirm`
inserts it. Dropping the packet in between simply forgets it, as in the kernel.

Times are absolute: a tracker's refresh of an unconfirmed entry already writes now + T, so
confirm (in the same packet walk, at the same `now`) does not add `now` again as the kernel's
relative-to-absolute step does; the result is the same.

Clash at confirm (simplified; the kernel's version-specific merge rule is nat_core's concern):
TCP, ICMP and every protocol without allow_clash → DROP; UDP and generic (allow_clash) →
merge into the existing entry if both tuples are identical, else DROP. The kernel's
"harder" path (insert the loser with only its reply node for 1 s) is not modelled: such
entries are invisible to `conntrack -L` anyway, and sequential traffic cannot reach it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from nat.conn import Conn
from nat.conntrack import Table
from nat.extract import get_tuple, inner_tuple
from nat.hooks import Hook
from nat.packet import IcmpHeader, Packet
from nat.profile import LINUX_LATEST, KernelProfile
from nat.proto_generic import TrackResult, generic_packet
from nat.proto_icmp import icmp_error, icmp_packet, is_error_type
from nat.proto_tcp import tcp_error, tcp_new, tcp_packet
from nat.proto_udp import udp_error, udp_packet
from nat.status import CtInfo, Status
from nat.sysctl import Sysctls
from nat.tuple import ICMPV6, Direction, NotInvertible, Proto, invert

Verdict = Literal["ACCEPT", "DROP"]

# Protocols whose l4proto sets allow_clash (UDP, UDPLITE, generic); the rest drop on clash.
_NO_CLASH = frozenset({Proto.TCP, Proto.ICMP, 132, 33})    # + SCTP, DCCP


@dataclass(frozen=True)
class CtResult:
    """What nf_conntrack_in attached to the packet.

    `conn` is the entry (None: nothing attached, INVALID or not tracked); unconfirmed when
    `new`. `direction` is the packet's direction in that entry. `verdict` is conntrack's
    own: ACCEPT (also for INVALID packets) or DROP.
    """

    conn: Conn | None
    ctinfo: CtInfo
    direction: Direction
    new: bool
    notes: tuple[str, ...]
    verdict: Verdict = "ACCEPT"


@dataclass(frozen=True)
class ConfirmResult:
    """What the confirm hook did: the entry the packet now carries and the verdict."""

    conn: Conn | None
    verdict: Verdict
    notes: tuple[str, ...] = ()


def _invalid(why: str, *more: str) -> CtResult:
    return CtResult(None, CtInfo.INVALID, Direction.ORIGINAL, False,
                    (f"INVALID: {why}",) + more)


def _ctinfo(conn: Conn, direction: Direction) -> CtInfo:
    """resolve_normal_ct(): reply node → ESTABLISHED_REPLY; original node → ESTABLISHED once
    a reply was seen, RELATED if expected, else NEW."""
    if direction is Direction.REPLY:
        return CtInfo.ESTABLISHED_REPLY
    if conn.status & Status.SEEN_REPLY:
        return CtInfo.ESTABLISHED
    if conn.status & Status.EXPECTED:
        return CtInfo.RELATED
    return CtInfo.NEW


def nf_conntrack_in(table: Table, pkt: Packet, hook: Hook, now: float, sysctls: Sysctls, *,
                    enabled: bool, zone: int = 0,
                    profile: KernelProfile = LINUX_LATEST) -> CtResult:
    """nf_conntrack_in() at PRE_ROUTING or LOCAL_OUT for one packet.

    `enabled`: whether conntrack hooks are registered in the namespace at all (some rule
    needs conntrack). `zone`: the zone a raw-table CT template would give (0 by default).
    `profile` picks the kernel's TCP RST timeout rule.
    """
    if not enabled:
        return CtResult(None, CtInfo.INVALID, Direction.ORIGINAL, False,
                        ("conntrack not active in this namespace (no rule needs it)",))
    if pkt.ip.frag & 0x1FFF:
        return _invalid("IP fragment (the model does not reassemble)")
    if pkt.proto == Proto.ICMP:
        why = icmp_error(pkt, hook, sysctls)
        if why is not None:
            return _invalid(why)
        assert isinstance(pkt.l4, IcmpHeader)
        if is_error_type(pkt.l4.type):
            return _icmp_error_lookup(table, pkt, now, zone)
    t = get_tuple(pkt)
    if t is None:
        return _invalid("cannot read the packet's tuple")
    notes: list[str] = []
    for _attempt in range(2):
        hit = table.lookup(t, zone, now)
        new = hit is None
        if hit is None:
            try:
                reply = invert(t)
            except NotInvertible as e:
                return _invalid(str(e))
            conn = Conn(table.next_id(), t, reply, created=now, zone=zone)
            direction = Direction.ORIGINAL
            notes.append("new entry, unconfirmed")
        else:
            conn, direction = hit
            notes.append(f"found entry {conn.id} in {direction.name.lower()} direction")
        ctinfo = _ctinfo(conn, direction)
        res = _handle_packet(conn, pkt, hook, direction, ctinfo, now, sysctls, profile)
        notes += res.notes
        if res.verdict == "REPEAT":
            table.delete(conn.id)
            continue
        if res.verdict in ("INVALID", "DROP"):
            if not new and res.conn is not conn and res.conn.id in table:
                table.replace(res.conn)         # the kernel's state edits stay on the entry
            if res.verdict == "DROP":
                return CtResult(None, CtInfo.INVALID, direction, False, tuple(notes), "DROP")
            return CtResult(None, CtInfo.INVALID, direction, False,
                            tuple(notes) + ("INVALID: no entry attached",))
        conn = res.conn
        if ctinfo is CtInfo.ESTABLISHED_REPLY and not conn.status & Status.SEEN_REPLY:
            conn = replace(conn, status=conn.status | Status.SEEN_REPLY)
            notes.append("first reply: SEEN_REPLY")
        if res.kill:
            table.delete(conn.id)
            conn = replace(conn, status=conn.status | Status.DYING)
        elif not new:
            table.replace(conn)
        return CtResult(conn, ctinfo, direction, new, tuple(notes))
    return CtResult(None, CtInfo.INVALID, Direction.ORIGINAL, False, tuple(notes), "DROP")


def _handle_packet(conn: Conn, pkt: Packet, hook: Hook, direction: Direction, ctinfo: CtInfo,
                   now: float, sysctls: Sysctls, profile: KernelProfile) -> TrackResult:
    """nf_conntrack_handle_packet(): the protocol's tracker (with its error checks and, for a
    new entry, its setup)."""
    proto = conn.orig.proto
    if proto == Proto.TCP:
        why = tcp_error(pkt, hook, sysctls)
        if why is not None:
            return TrackResult(conn, "INVALID", (why,))
        if not conn.confirmed:
            started = tcp_new(conn, pkt, sysctls)
            if started is None:
                return TrackResult(conn, "INVALID", ("this TCP packet cannot start an entry"
                                                     + ("" if sysctls.tcp_loose
                                                        else " (tcp_loose=0)"),))
            conn = started
        return tcp_packet(conn, pkt, direction, ctinfo, now, sysctls,
                          rst_timeout=profile.rst_timeout)
    if proto == Proto.UDP:
        why = udp_error(pkt, hook, sysctls)
        if why is not None:
            return TrackResult(conn, "INVALID", (why,))
        return udp_packet(conn, pkt, direction, ctinfo, now, sysctls)
    if proto == Proto.ICMP:
        return icmp_packet(conn, pkt, direction, ctinfo, now, sysctls)
    if proto == ICMPV6:
        # nf_conntrack_icmpv6_packet() answers -NF_ACCEPT when the hook's family is not IPv6:
        # the new entry is dropped, the packet goes on INVALID (untracked, so never NATed).
        return TrackResult(conn, "INVALID",
                           ("protocol 58 (ICMPv6) in an IPv4 packet: the ICMPv6 tracker "
                            "tracks IPv6 only",))
    return generic_packet(conn, pkt, direction, ctinfo, now, sysctls)


def _icmp_error_lookup(table: Table, pkt: Packet, now: float, zone: int) -> CtResult:
    """nf_conntrack_inet_error(): an ICMP error belongs to the entry its quoted packet is
    part of, if the outer destination is that entry's destination for the direction found."""
    quoted = inner_tuple(pkt)
    if quoted is None:
        return _invalid("ICMP error without a readable quoted packet")
    try:
        wanted = invert(quoted)
    except NotInvertible as e:
        return _invalid(f"quoted packet: {e}")
    hit = table.lookup(wanted, zone, now)
    if hit is None:
        return _invalid(f"ICMP error about an unknown flow ({wanted})")
    conn, direction = hit
    expected_dst = conn.tuple(direction).dst
    if pkt.ip.dst != expected_dst:
        return _invalid(f"outer destination {pkt.ip.dst} is not the entry's {expected_dst}")
    ctinfo = CtInfo.RELATED if direction is Direction.ORIGINAL else CtInfo.RELATED_REPLY
    return CtResult(conn, ctinfo, direction, False,
                    (f"ICMP error about entry {conn.id} ({direction.name.lower()} direction)",))


def nf_conntrack_confirm(table: Table, conn: Conn | None, ctinfo: CtInfo,
                         now: float) -> ConfirmResult:
    """The confirm hook (nf_confirm → __nf_conntrack_confirm) at POST_ROUTING / LOCAL_IN.

    An unconfirmed entry carried by an original-direction packet is checked for a clash and
    inserted (CONFIRMED). An already confirmed entry is written back (`replace`) so that
    changes made on the way (none today) are kept. Nothing happens for reply-direction
    packets of unconfirmed entries, or without an entry.
    """
    if conn is None or ctinfo in (CtInfo.INVALID, CtInfo.UNTRACKED):
        return ConfirmResult(conn, "ACCEPT")
    if conn.confirmed:
        if conn.id in table and not conn.status & Status.DYING:
            table.replace(conn)
        return ConfirmResult(conn, "ACCEPT")
    if ctinfo.is_reply:
        return ConfirmResult(conn, "ACCEPT", ("reply-direction packet: not confirmed",))
    if conn.status & Status.DYING:
        return ConfirmResult(conn, "DROP", ("entry is dying: insert failed",))
    clash = table.find_clash(conn, now)
    if clash is not None:
        return _resolve_clash(conn, clash)
    confirmed = replace(conn, status=conn.status | Status.CONFIRMED)
    table.insert(confirmed)
    return ConfirmResult(confirmed, "ACCEPT",
                         (f"confirmed: entry {confirmed.id} enters the table",))


def _resolve_clash(loser: Conn, winner: Conn) -> ConfirmResult:
    """nf_ct_resolve_clash(), simplified (see the module docstring)."""
    what = f"clash with entry {winner.id} ({winner.orig})"
    if loser.orig.proto in _NO_CLASH:
        return ConfirmResult(None, "DROP", (f"{what}: protocol cannot clash, dropped",))
    if winner.orig == loser.orig and winner.reply == loser.reply \
            and not winner.status & Status.DYING:
        return ConfirmResult(winner, "ACCEPT", (f"{what}: same flow, merged into it",))
    return ConfirmResult(None, "DROP", (f"{what}: tuples differ, dropped",))
