"""The pieces of the NAT binding: which tuples a new connection may be mapped to.

Mirrors net/netfilter/nf_nat_core.c: nf_nat_used_tuple() (and 6.12's nf_nat_used_tuple_new /
_harder), nf_in_range(), find_appropriate_src(), find_best_ips_proto() (see nat/jhash.py) and
nf_nat_l4proto_unique_tuple(). nf_nat_setup_info, get_unique_tuple and
__nf_nat_alloc_null_binding, which use these, are in nat/nat_setup.py. Behaviour as in
kernel-semantics.md §1.5, §4.2-4.5, §8.

Where the kernel draws a random number the model returns the set of tuples it could pick (a
`TupleChoice`); pass `rand` (a u16 source) to follow one draw exactly instead. When the search
gives up the kernel keeps a tuple that is in use and the packet is dropped at confirm: such a
tuple is a member of the choice, and `may_drop()` says whether there is one.

Known approximations (each only widens the allowed set):
- 6.12+ TIME_WAIT eviction: "harder" is taken to be the last 32 probes of each round.
- Give-up and eviction with a random start: allowed for any taken key once some start could
  reach it (a window of used ports long enough exists), not only the exact last probe.

Speed: with a random start the model's own pick is the first free key of the range; on a
`nat.conntrack.Table` it is found by bisection in the table's held_keys index when that is
exact (nothing expired, no entry with this connection's tuple), else by probing key by key.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from typing import Protocol, runtime_checkable

from nat.choice import Choice
from nat.conn import Conn
from nat.conntrack import KeyField
from nat.jhash import pick_ip
from nat.maniptype import ManipType
from nat.profile import KernelProfile
from nat.rules.ast import NatFlag
from nat.status import Status, TcpState
from nat.tuple import Direction, NotInvertible, Proto, Tuple, invert

# Range flag bits (include/uapi/linux/netfilter/nf_nat.h), named here for brevity.
MAP_IPS = NatFlag.MAP_IPS
PROTO_SPECIFIED = NatFlag.PROTO_SPECIFIED
PROTO_RANDOM = NatFlag.PROTO_RANDOM
PERSISTENT = NatFlag.PERSISTENT
PROTO_RANDOM_FULLY = NatFlag.PROTO_RANDOM_FULLY
PROTO_OFFSET = NatFlag.PROTO_OFFSET
PROTO_RANDOM_ALL = PROTO_RANDOM | PROTO_RANDOM_FULLY

MAX_ATTEMPTS = 128          # first round of the port search
HARDER_THRESHOLD = 32       # 6.12+: the last probes of a round may evict TIME_WAIT entries
_U16 = 0xFFFF

# Protocols whose clash at confirm may be resolved rather than dropped (kernel-semantics §3.4).
_CLASH_ALLOWED = frozenset({Proto.UDP, 136, 47})  # UDP, UDPLITE, GRE (and generic, below)
_PORT_PROTOS = frozenset({Proto.TCP, Proto.UDP, 132, 33, 136})  # TCP UDP SCTP DCCP UDPLITE


class NatRangeLike(Protocol):
    """What the NAT core reads from a range (struct nf_nat_range2): nat.rules.ast.NatRange, or
    anything with the same fields."""

    @property
    def flags(self) -> int: ...
    @property
    def min_addr(self) -> IPv4Address | None: ...
    @property
    def max_addr(self) -> IPv4Address | None: ...
    @property
    def min_proto(self) -> int: ...
    @property
    def max_proto(self) -> int: ...
    @property
    def base_proto(self) -> int: ...


class TupleSpace(Protocol):
    """What the NAT core needs from the conntrack table (nat.conntrack.Table)."""

    def tuple_taken(self, candidate_reply: Tuple, ignored: Conn, now: float) -> bool: ...
    def lookup(self, t: Tuple, zone: int, now: float) -> tuple[Conn, Direction] | None: ...
    def by_source(self, proto: int, src: IPv4Address, sport: int, zone: int) -> list[Conn]: ...
    def add_by_source(self, conn: Conn, seq: int) -> None: ...
    def __len__(self) -> int: ...


@runtime_checkable
class IndexedTupleSpace(TupleSpace, Protocol):
    """A TupleSpace that can also list held keys in order (nat.conntrack.Table): lets the
    port search skip runs of taken keys without probing each one."""

    def held_keys(self, t: Tuple, key: KeyField, zone: int) -> Sequence[int]: ...
    def earliest_expiry(self) -> float | None: ...
    def __contains__(self, conn_id: object) -> bool: ...


Rand = Callable[[], int]


@dataclass(frozen=True)
class TupleChoice(Choice[Tuple]):
    """The tuples get_unique_tuple may return. `reason` says which step decided."""

    reason: str = ""
    drop_check: Callable[[], bool] = field(default=lambda: False, compare=False, repr=False)

    def may_drop(self) -> bool:
        """Some member is a tuple in use: choosing it means the packet is dropped at confirm."""
        return self.drop_check()


def single_choice(t: Tuple, reason: str, taken: bool) -> TupleChoice:
    return TupleChoice(t, lambda x: x == t, f"exactly {t}" + (" (in use)" if taken else ""),
                       (t,), reason, lambda: taken)


# ---------------------------------------------------------------------------------------------
# Small pieces of the kernel's vocabulary


def manip_key(t: Tuple, manip: ManipType) -> int | None:
    """The 16-bit key the search may change: the ICMP id (either manip), the source port for
    SRC, the destination port for DST; None for protocols without one."""
    if t.proto == Proto.ICMP:
        return t.sport
    if t.proto in _PORT_PROTOS:
        return t.sport if manip is ManipType.SRC else t.dport
    return None


def with_manip_key(t: Tuple, manip: ManipType, key: int) -> Tuple:
    if t.proto == Proto.ICMP or manip is ManipType.SRC:
        return replace(t, sport=key)
    return replace(t, dport=key)


def l4proto_in_range(t: Tuple, manip: ManipType, lo: int, hi: int) -> bool:
    """Is the manipulable key inside [lo, hi]? Protocols without a key always are."""
    key = manip_key(t, manip)
    return key is None or lo <= key <= hi


def nf_in_range(t: Tuple, rng: NatRangeLike) -> bool:
    """Would source-mapping to `t` satisfy the range (address, and port if specified)?"""
    if rng.flags & MAP_IPS:
        assert rng.min_addr is not None and rng.max_addr is not None
        if not rng.min_addr <= t.src <= rng.max_addr:
            return False
    if not rng.flags & PROTO_SPECIFIED:
        return True
    return l4proto_in_range(t, ManipType.SRC, rng.min_proto, rng.max_proto)


def nf_nat_used_tuple(t: Tuple, conn: Conn, table: TupleSpace, now: float) -> bool:
    """Would mapping to `t` collide? The table holds reply tuples, so ask for invert(t)."""
    return table.tuple_taken(invert(t), conn, now)


def _uses_nat(c: Conn) -> bool:
    return bool(c.status & (Status.SRC_NAT | Status.DST_NAT | Status.SEQ_ADJUST))


def nf_nat_used_tuple_new(t: Tuple, conn: Conn, table: TupleSpace, now: float) -> bool:
    """6.12+: like nf_nat_used_tuple, but a reverse-direction race is not a collision.

    For protocols that may clash (UDP, generic, …), when neither entry uses NAT and the one
    in the way is this connection seen from the other side (its original is our reply and
    its reply our original), the tuple counts as free: confirm will resolve the race.
    """
    if not nf_nat_used_tuple(t, conn, table, now):
        return False
    if t.proto in (Proto.TCP, Proto.ICMP, 132, 33) or _uses_nat(conn):
        return True
    hit = table.lookup(invert(t), conn.zone, now)
    if hit is None:
        return True
    other, direction = hit
    if direction is not Direction.ORIGINAL or _uses_nat(other):
        return True
    return not (other.orig == conn.reply and other.reply == conn.orig)


def find_appropriate_src(cur: Tuple, rng: NatRangeLike, conn: Conn,
                         table: TupleSpace) -> tuple[Tuple, Conn] | None:
    """The mapping an earlier connection from the same inside (proto, address, key) got,
    applied to this destination, if it fits the range (most recently bound first; only the
    first that fits is tried, as in the kernel)."""
    for other in table.by_source(cur.proto, cur.src, cur.sport, conn.zone):
        if other.id == conn.id:
            continue
        mapped = invert(other.reply)
        result = Tuple(cur.proto, mapped.src, cur.dst, mapped.sport, cur.dport)
        if nf_in_range(result, rng):
            return result, other
    return None


def find_best_ips_proto(t: Tuple, rng: NatRangeLike, conn: Conn, manip: ManipType) -> Tuple:
    """Step 2: the address from the range (deterministic jhash2 pick), if MAP_IPS."""
    if not rng.flags & MAP_IPS:
        return t
    assert rng.min_addr is not None and rng.max_addr is not None
    addr = pick_ip(t.src, t.dst, rng.min_addr, rng.max_addr, conn.zone,
                   bool(rng.flags & PERSISTENT))
    return replace(t, src=addr) if manip is ManipType.SRC else replace(t, dst=addr)


# ---------------------------------------------------------------------------------------------
# Step 4: nf_nat_l4proto_unique_tuple


@dataclass(frozen=True)
class KeyRange:
    """Keys min + (off mod size) for a 16-bit offset. `size` exceeds 65536 only for a
    reversed ICMP id range, where the kernel's unsigned arithmetic wraps."""

    min: int
    size: int

    def key_at(self, off: int) -> int:
        return (self.min + off % self.size) & _U16

    def holds(self, key: int) -> bool:
        return self.size >= 65536 or ((key - self.min) & _U16) < self.size

    def __str__(self) -> str:
        if self.size >= 65536:
            return "0-65535"
        return f"{self.min}-{(self.min + self.size - 1) & _U16}"


def port_class(port: int) -> KeyRange:
    """The range a source port is remapped within when the rule gives none."""
    if port < 512:
        return KeyRange(1, 511)
    if port < 1024:
        return KeyRange(600, 424)
    return KeyRange(1024, 64512)


def search_range(t: Tuple, rng: NatRangeLike, manip: ManipType) -> KeyRange | None:
    """The keys nf_nat_l4proto_unique_tuple may try; None when it changes nothing."""
    specified = bool(rng.flags & PROTO_SPECIFIED)
    if t.proto == Proto.ICMP:
        if not specified:
            return KeyRange(0, 65536)
        return KeyRange(rng.min_proto, (rng.max_proto - rng.min_proto + 1) & 0xFFFFFFFF)
    if t.proto not in _PORT_PROTOS:
        return None  # GRE keys change only for PPTP children (helpers are not modelled)
    if not specified:
        if manip is ManipType.DST:
            return None  # DNAT without ports never changes the port
        key = manip_key(t, manip)
        assert key is not None
        return port_class(key)
    lo, hi = sorted((rng.min_proto, rng.max_proto))
    return KeyRange(lo, hi - lo + 1)


class _Status(enum.Enum):
    FREE = "free"
    TAKEN = "taken"
    EVICTABLE = "evictable"  # taken by an entry 6.12+ may kill in "harder" mode


def _orig_end(c: Conn) -> int | None:
    """proto.tcp.seen[0].td_end: the end of the highest sequence the originator sent."""
    seen = getattr(c.proto_state, "seen", None)
    if not isinstance(seen, tuple) or not seen:
        return None
    end = getattr(seen[0], "end", None)
    return end if isinstance(end, int) else None


def seq_has_advanced(old: Conn, new: Conn) -> bool:
    """nf_seq_has_advanced(): the new SYN's end lies after the old entry's original-direction
    end (32-bit serial arithmetic), so the old peer will see the new flow's packets as
    out-of-window rather than as its own."""
    a, b = _orig_end(old), _orig_end(new)
    if a is None or b is None:
        return False
    return 0 < (b - a) & 0xFFFFFFFF < 0x80000000


def evictable(old: Conn, direction: Direction, new: Conn) -> bool:
    """May nf_nat_used_tuple_harder() kill `old`, found holding a candidate's reply tuple in
    `direction`, for `new`? Only when the hit is old's reply tuple, old is TCP in TIME_WAIT or
    CLOSE with SRC_NAT, not FIXED_TIMEOUT/DYING (nf_nat_may_kill), not offloaded (then the
    kernel kills it but still counts the tuple as taken), and new's sequence has advanced."""
    if direction is not Direction.REPLY or old.id == new.id:
        return False
    state = old.tcp_state()
    bad = Status.FIXED_TIMEOUT | Status.DYING | Status.OFFLOAD | Status.HW_OFFLOAD
    return (state is not None and state >= TcpState.TIME_WAIT
            and bool(old.status & Status.SRC_NAT) and not old.status & bad
            and seq_has_advanced(old, new))


class _Prober:
    """Asks the table about candidate keys, once each."""

    def __init__(self, t: Tuple, manip: ManipType, conn: Conn, table: TupleSpace, now: float,
                 profile: KernelProfile) -> None:
        self.t, self.manip, self.conn, self.table, self.now = t, manip, conn, table, now
        self.harder = (profile.tcp_timewait_eviction and t.proto == Proto.TCP
                       and conn.tcp_state() is TcpState.SYN_SENT)
        self._cache: dict[int, _Status] = {}

    def candidate(self, key: int) -> Tuple:
        return with_manip_key(self.t, self.manip, key)

    def occupant(self, key: int) -> tuple[Conn, Direction] | None:
        return self.table.lookup(invert(self.candidate(key)), self.conn.zone, self.now)

    def status(self, key: int) -> _Status:
        st = self._cache.get(key)
        if st is None:
            if not nf_nat_used_tuple(self.candidate(key), self.conn, self.table, self.now):
                st = _Status.FREE
            elif self.harder and (occ := self.occupant(key)) is not None \
                    and evictable(occ[0], occ[1], self.conn):
                st = _Status.EVICTABLE
            else:
                st = _Status.TAKEN
            self._cache[key] = st
        return st


@dataclass(frozen=True)
class _Outcome:
    key: int
    kind: str  # "free" | "evict" | "giveup"


def _run_search(p: _Prober, keys: KeyRange, first_off: int, rand: Rand, *, evict: bool,
                rounds: int | None = None) -> _Outcome | None:
    """The kernel's probe loop. With `rounds` set, stop (None) after that many failed rounds."""
    off = first_off & _U16
    attempts = min(keys.size, MAX_ATTEMPTS)
    done = 0
    key = keys.key_at(off)
    while True:
        for i in range(attempts):
            key = keys.key_at(off)
            st = p.status(key)
            if st is _Status.FREE:
                return _Outcome(key, "free")
            if st is _Status.EVICTABLE and evict and attempts - i <= HARDER_THRESHOLD:
                return _Outcome(key, "evict")
            off = (off + 1) & _U16
        if attempts >= keys.size or attempts < 16:
            return _Outcome(key, "giveup")
        done += 1
        if rounds is not None and done >= rounds:
            return None
        attempts //= 2
        off = rand() & _U16


def _used_window_exists(p: _Prober, keys: KeyRange, length: int, table_len: int) -> bool:
    """Could some start offset see `length` taken keys in a row (so a round fails)?"""
    if length <= 0:
        return True
    # A window of `length` offsets meets at least ceil(length/2) distinct keys, and every
    # entry in the table blocks at most two keys (its two tuples).
    if 2 * table_len < (length + 1) // 2:
        return False
    size = min(keys.size, 65536)
    used = [p.status(keys.key_at(o)) is not _Status.FREE for o in range(size)]
    run = 0
    for o in range(65536 + length - 1):
        run = run + 1 if used[(o & _U16) % size] else 0
        if run >= length:
            return True
    return False


def _search_choice(p: _Prober, keys: KeyRange, first_off: int | None, table_len: int,
                   reason: str) -> TupleChoice:
    """Every tuple the probe loop could end on, when the start offset (or a restart) is
    random. Deterministic parts are simulated exactly."""
    fixed: set[int] = set()
    fixed_taken = False
    results: list[_Outcome | None] = []
    later_rounds = True          # random rounds may follow
    first_len = min(keys.size, MAX_ATTEMPTS)
    random_len = first_len       # attempts of the first random round
    if first_off is not None:
        # One round only: the restart draw is never made, so any source of numbers will do.
        # EVICTABLE is exact (nf_nat_used_tuple_harder's own test), so this round is too.
        results = [_run_search(p, keys, first_off, lambda: 0, evict=p.harder, rounds=1)]
        for r in results:
            if r is not None:
                fixed.add(r.key)
                fixed_taken = fixed_taken or r.kind != "free"
        later_rounds = any(r is None for r in results)
        random_len = first_len // 2

    def giveup_possible() -> bool:
        return later_rounds and _used_window_exists(p, keys, random_len, table_len)

    def evict_possible() -> bool:
        return later_rounds and p.harder and _used_window_exists(
            p, keys, random_len - HARDER_THRESHOLD, table_len)

    cache: dict[str, bool] = {}

    def lazily(name: str, f: Callable[[], bool]) -> bool:
        if name not in cache:
            cache[name] = f()
        return cache[name]

    t = p.t

    def rule(x: Tuple) -> bool:
        key = manip_key(x, p.manip)
        if key is None or x != p.candidate(key) or not keys.holds(key):
            return False
        if key in fixed:
            return True
        if not later_rounds:
            return False
        st = p.status(key)
        if st is _Status.FREE:
            return True
        if st is _Status.EVICTABLE and lazily("evict", evict_possible):
            return True
        return lazily("giveup", giveup_possible)

    # The model's own pick: the first free key from the start (0 if random), else give up.
    start = first_off if first_off is not None else 0
    scan_len = min(keys.size, 65536)
    default_key = None
    if first_off is not None and not later_rounds:
        only = results[0]
        default_key = only.key if only is not None else min(fixed)
    else:
        default_key = _first_free_indexed(p, keys, start)
        if default_key is None:
            for i in range(scan_len):
                k = keys.key_at(start + i)
                if p.status(k) is _Status.FREE:
                    default_key = k
                    break
    if default_key is None:
        out = _run_search(p, keys, start, lambda: 0, evict=p.harder)
        assert out is not None
        default_key = out.key
    key_name = "id" if t.proto == Proto.ICMP else "port"
    if first_off is not None and not later_rounds:
        text = "one of " + ", ".join(str(k) for k in sorted(fixed)) if len(fixed) > 1 else \
            f"{key_name} {next(iter(fixed))}"
        if fixed_taken:
            text += " (in use: a clash at confirm" + (
                ", unless an old entry is evicted)" if p.harder else ")")
    else:
        cur = manip_key(t, p.manip)
        except_ = f" except {cur}" if cur is not None and keys.holds(cur) and \
            p.status(cur) is not _Status.FREE else ""
        text = f"any free {key_name} in {keys}{except_}"
        if fixed:
            text = f"{key_name} {sorted(fixed)[0]} or, after a failed first round, " + text
    members = None
    if not later_rounds:
        members = tuple(p.candidate(k) for k in sorted(fixed))
    return TupleChoice(
        p.candidate(default_key), rule, text, members, reason,
        lambda: fixed_taken or (later_rounds and lazily("giveup", giveup_possible)),
    )


def _first_free_indexed(p: _Prober, keys: KeyRange, start: int) -> int | None:
    """The first key from offset `start` that is FREE, found by bisection in the table's
    held_keys index instead of one probe per key; None when this shortcut cannot answer
    exactly (then the caller probes key by key).

    Exact only when "held" means "taken": no entry in the table is expired (an expired holder
    counts as free, and probing it reaps it), no entry has this connection's original tuple
    or id (tuple_taken's exceptions), and the keys do not wrap around 65535.
    """
    table = p.table
    if not isinstance(table, IndexedTupleSpace) or not 0 < keys.size <= 65536 - keys.min:
        return None
    earliest = table.earliest_expiry()
    if earliest is not None and earliest - p.now <= 0:
        return None
    if p.conn.id in table or table.lookup(p.conn.orig, p.conn.zone, p.now) is not None:
        return None
    try:
        low, high = invert(p.candidate(keys.min)), invert(p.candidate(keys.min + 1))
    except NotInvertible:
        return None
    if (low.sport, high.sport) == (keys.min, keys.min + 1) and low.dport == high.dport:
        field: KeyField = "sport"
    elif (low.dport, high.dport) == (keys.min, keys.min + 1) and low.sport == high.sport:
        field = "dport"
    else:
        return None
    held = table.held_keys(low, field, p.conn.zone)
    first = keys.min + start % keys.size
    last = keys.min + keys.size - 1
    found = _first_not_in(held, first, last)
    if found is None and first > keys.min:
        found = _first_not_in(held, keys.min, first - 1)
    return found


def _first_not_in(held: Sequence[int], lo: int, hi: int) -> int | None:
    """The smallest key in [lo, hi] not in `held` (sorted, no repeats), or None."""
    i = bisect.bisect_left(held, lo)
    if i == len(held) or held[i] != lo:
        return lo
    # held[i + j] == lo + j holds for a prefix of j (the values are distinct and sorted):
    # find the end of that run of consecutive held keys.
    good, bad = 0, len(held) - i
    while bad - good > 1:
        mid = (good + bad) // 2
        if held[i + mid] == lo + mid:
            good = mid
        else:
            bad = mid
    key = lo + good + 1
    return key if key <= hi else None


def _start_offset(t: Tuple, rng: NatRangeLike, manip: ManipType,
                  profile: KernelProfile) -> int | None:
    """The first offset, or None when the kernel draws it at random."""
    if rng.flags & PROTO_OFFSET:
        key = manip_key(t, manip)
        assert key is not None
        return (key - rng.base_proto) & _U16
    if (profile.dnat_port_search_from_min and manip is ManipType.DST
            and not rng.flags & PROTO_RANDOM_ALL):
        return 0
    return None


def l4proto_unique_tuple(t: Tuple, rng: NatRangeLike, manip: ManipType, conn: Conn,
                         table: TupleSpace, now: float, profile: KernelProfile,
                         rand: Rand | None, reason: str) -> TupleChoice:
    """Step 4: search the key space for a free tuple (nf_nat_l4proto_unique_tuple)."""
    keys = search_range(t, rng, manip)
    if keys is None:
        taken = nf_nat_used_tuple(t, conn, table, now)
        return single_choice(t, reason + ("; in use: dropped at confirm" if taken else ""), taken)
    p = _Prober(t, manip, conn, table, now, profile)
    if keys.size == 1:
        # Every round probes the one key, whatever the start: free, evicted or given up.
        only = keys.key_at(0)
        st = p.status(only)
        kind = {_Status.FREE: "free", _Status.EVICTABLE: "evict"}.get(st, "giveup")
        return single_choice(p.candidate(only), f"{reason}; {kind}", st is _Status.TAKEN)
    first_off = _start_offset(t, rng, manip, profile)
    if rand is not None:
        start = first_off if first_off is not None else rand()
        out = _run_search(p, keys, start, rand, evict=p.harder)
        assert out is not None
        chosen = p.candidate(out.key)
        return single_choice(chosen, f"{reason}; {out.kind}", out.kind == "giveup")
    return _search_choice(p, keys, first_off, len(table), reason)
