"""The NAT binding: get_unique_tuple's four steps and nf_nat_setup_info, which records it.

Mirrors net/netfilter/nf_nat_core.c: nf_nat_setup_info(), get_unique_tuple() and
__nf_nat_alloc_null_binding(); the pieces they use (nf_in_range, nf_nat_used_tuple,
find_appropriate_src, find_best_ips_proto and the port search nf_nat_l4proto_unique_tuple)
are in nat/nat_core.py. Behaviour as in kernel-semantics.md §1.5, §4.2-4.5, §8.

The result is a value: the allowed set of tuples (a `TupleChoice`), the tuple chosen from it
(by `choose`: the model's default, or the kernel's observed pick), and notes for the journey.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from nat.choice import Choice
from nat.conn import Conn
from nat.maniptype import ManipType
from nat.nat_core import (
    MAP_IPS,
    PROTO_OFFSET,
    PROTO_RANDOM_ALL,
    PROTO_SPECIFIED,
    NatRangeLike,
    Rand,
    TupleChoice,
    TupleSpace,
    evictable,
    find_appropriate_src,
    find_best_ips_proto,
    l4proto_in_range,
    l4proto_unique_tuple,
    manip_key,
    nf_in_range,
    nf_nat_used_tuple,
    nf_nat_used_tuple_new,
    single_choice,
)
from nat.profile import KernelProfile
from nat.rules.ast import NatRange
from nat.status import TcpState
from nat.tuple import Proto, Tuple, invert


def get_unique_tuple(cur: Tuple, rng: NatRangeLike, conn: Conn, manip: ManipType,
                     table: TupleSpace, now: float, profile: KernelProfile, *,
                     rand: Rand | None = None) -> TupleChoice:
    """The tuple the connection's original direction will look like after this manip."""
    random_all = bool(rng.flags & PROTO_RANDOM_ALL)
    sticky_from_expired: Tuple | None = None

    # Step 1 (SRC only, not --random): keep the tuple, or reuse an existing mapping.
    if manip is ManipType.SRC and not random_all:
        if nf_in_range(cur, rng):
            used = (nf_nat_used_tuple_new if profile.used_tuple_new else nf_nat_used_tuple)
            if not used(cur, conn, table, now):
                return single_choice(cur, "the current tuple fits the range and is free: kept",
                                     False)
        else:
            found = find_appropriate_src(cur, rng, conn, table)
            if found is not None and not nf_nat_used_tuple(found[0], conn, table, now):
                sticky, earlier = found
                reason = f"reused the mapping of earlier connection {earlier.id}"
                if not (earlier.confirmed and earlier.expired(now)):
                    return single_choice(sticky, reason, False)
                # The earlier entry has expired but may not be reaped yet: both are possible.
                sticky_from_expired = sticky

    # Step 2: the address.
    t = find_best_ips_proto(cur, rng, conn, manip)

    # Step 3: keep the port / id if it fits and is free.
    result: TupleChoice | None = None
    if not random_all:
        if rng.flags & PROTO_SPECIFIED:
            if (not rng.flags & PROTO_OFFSET
                    and l4proto_in_range(t, manip, rng.min_proto, rng.max_proto)):
                if rng.min_proto == rng.max_proto:
                    taken = nf_nat_used_tuple(t, conn, table, now)
                    result = single_choice(t, "single-port range", taken)
                elif not nf_nat_used_tuple(t, conn, table, now):
                    result = single_choice(t, "port in range and free: kept", False)
        elif not nf_nat_used_tuple(t, conn, table, now):
            result = single_choice(t, "address mapped, port kept", False)

    # Step 4: search.
    if result is None:
        key = manip_key(t, manip)
        why = ("random port requested" if random_all
               else f"{'id' if t.proto == Proto.ICMP else 'port'} {key} not usable")
        result = l4proto_unique_tuple(t, rng, manip, conn, table, now, profile, rand, why)

    if sticky_from_expired is None:
        return result
    both = single_choice(sticky_from_expired, "", False).union(result)
    return TupleChoice(both.default, both.rule, both.description, both.members,
                       "reused the mapping of an expired (maybe not yet reaped) entry, "
                       "or a fresh one", result.drop_check)


def default_choice(choice: Choice[Tuple]) -> Tuple:
    return choice.default


@dataclass(frozen=True)
class SetupResult:
    """nf_nat_setup_info's effect: the updated entry, the allowed set (None when nothing was
    done because the entry is already confirmed), notes, entries the search evicted (6.12+),
    and whether the chosen tuple is in use (the kernel then meets a clash at confirm)."""

    conn: Conn
    choice: TupleChoice | None
    notes: tuple[str, ...] = ()
    evicted: tuple[int, ...] = ()
    tuple_in_use: bool = False


def nf_nat_setup_info(conn: Conn, rng: NatRangeLike, manip: ManipType, table: TupleSpace,
                      now: float, profile: KernelProfile, *,
                      choose: Callable[[Choice[Tuple]], Tuple] = default_choice,
                      rand: Rand | None = None, bind_seq: int | None = None) -> SetupResult:
    """Bind the connection for one manip type: pick the tuple, alter the reply, set bits.

    `choose` picks from the allowed set (the default, or the kernel's observed value). A SRC
    binding is recorded in the table's by-source index (`bind_seq`, default the entry id,
    orders it: find_appropriate_src scans newest first).
    """
    if conn.confirmed:
        return SetupResult(conn, None, ("already confirmed: NAT cannot be set up",))
    if conn.status & manip.done_bit:
        raise ValueError(f"{manip.name} binding of entry {conn.id} is already set up")
    cur = invert(conn.reply)
    choice = get_unique_tuple(cur, rng, conn, manip, table, now, profile, rand=rand)
    new = choose(choice)
    if not choice.contains(new):
        raise ValueError(f"{new} is not an allowed binding: expected {choice.describe()}")
    notes = [f"{manip.name} binding: {choice.reason}"]
    status = conn.status
    reply = conn.reply
    if new != cur:
        reply = invert(new)
        status |= manip.nat_bit
        notes.append(f"{cur} -> {new}")
    evicted: tuple[int, ...] = ()
    in_use = False
    if profile.used_tuple_new and new == cur and nf_nat_used_tuple(new, conn, table, now) \
            and not nf_nat_used_tuple_new(new, conn, table, now):
        notes.append("reverse-direction race: left to confirm to resolve")
    elif nf_nat_used_tuple(new, conn, table, now):
        occ = table.lookup(invert(new), conn.zone, now)
        p_harder = (profile.tcp_timewait_eviction and new.proto == Proto.TCP
                    and conn.tcp_state() is TcpState.SYN_SENT)
        if occ is not None and p_harder and evictable(occ[0], occ[1], conn):
            evicted = (occ[0].id,)
            notes.append(f"entry {occ[0].id} in {occ[0].tcp_state()} evicted to reuse its port")
        else:
            in_use = True
            notes.append("the tuple is in use: confirm will find a clash (dropped)")
    status |= manip.done_bit
    new_conn = replace(conn, reply=reply, status=status)
    if manip is ManipType.SRC:
        seq = conn.id if bind_seq is None else bind_seq
        new_conn = replace(new_conn, src_bound_seq=seq)
        table.add_by_source(new_conn, seq)
    return SetupResult(new_conn, choice, tuple(notes), evicted, in_use)


def null_binding(conn: Conn, manip: ManipType, table: TupleSpace, now: float,
                 profile: KernelProfile, *,
                 choose: Callable[[Choice[Tuple]], Tuple] = default_choice,
                 rand: Rand | None = None, bind_seq: int | None = None) -> SetupResult:
    """__nf_nat_alloc_null_binding: no rule bound this manip, so bind to the current address
    with no port range. The port (or ICMP id) can still move if the tuple is taken."""
    addr = conn.reply.dst if manip is ManipType.SRC else conn.reply.src
    rng = NatRange(MAP_IPS, addr, addr)
    result = nf_nat_setup_info(conn, rng, manip, table, now, profile, choose=choose, rand=rand,
                               bind_seq=bind_seq)
    return replace(result, notes=("null binding (no NAT rule matched)",) + result.notes)
