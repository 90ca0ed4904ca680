"""The conntrack hash table: confirmed entries, found by either of their two tuples.

Mirrors net/netfilter/nf_conntrack_core.c: the hash of tuplehash nodes (nf_conntrack_hash,
__nf_conntrack_hash_insert, ____nf_conntrack_find, nf_ct_key_equal), the expiry check every
walk does (nf_ct_is_expired + nf_ct_gc_expired), nf_conntrack_tuple_taken(), the clash check
of __nf_conntrack_confirm(), and the NAT by-source list of net/netfilter/nf_nat_core.c
(nf_nat_bysource, find_appropriate_src's walk). The dump side is ctnetlink_dump_table().

A `Table` is the one mutable thing in the model, like the kernel's hash: it maps an entry id
to the current frozen `Conn` value and each (tuple, zone) to the entry holding it. Callers
never mutate a Conn; they `replace` the stored value. Unconfirmed entries are never in here:
the packet carries them (skb->_nfct) until confirm inserts them, so other packets cannot see
them, as in the kernel.

Zones: `Conn.zone` is one id for both directions (the model has no directional zones), and a
lookup compares it with the packet's zone.

Expiry: an entry is expired when `timeout - now <= 0` (nf_ct_is_expired). Lookups and
`tuple_taken` skip an expired entry they meet and reap it, as the kernel's walks do; listings
leave it out. The kernel's GC worker also reaps unvisited ones some seconds later; `reap(now)`
is that worker run to completion. `by_source` does not look at expiry (neither does the
kernel's find_appropriate_src), so an expired entry nobody has reaped still counts there.

Indexes for speed (no behaviour of their own): by-source records are bucketed by source like
the kernel's nf_nat_bysource hash; `held_keys` lists, in order, the ports held for one
(proto, addresses, other port, zone), so the NAT port search can find a free port by
bisection; `earliest_expiry` says whether anything in the table could be expired.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address
from typing import Literal

from nat.conn import Conn
from nat.entry import Entry
from nat.tuple import Direction, Tuple

_Key = tuple[Tuple, int]
_SrcKey = tuple[int, IPv4Address, int, int]       # (proto, source address, source key, zone)
_Space = tuple[int, IPv4Address, IPv4Address, int, int]   # a tuple without one key, and zone
KeyField = Literal["sport", "dport"]


class TableError(ValueError):
    """A caller broke the table's rules (double insert, unknown id, occupied tuple)."""


class Table:
    """Confirmed conntrack entries, hashed by (tuple, zone) in both directions."""

    def __init__(self) -> None:
        self._conns: dict[int, Conn] = {}
        self._hash: dict[_Key, tuple[int, Direction]] = {}
        self._bysource: dict[int, int] = {}      # entry id -> by-source order (newest highest)
        # The same records grouped by source, so by_source reads one bucket, as the kernel's
        # nf_nat_bysource hash does, instead of every record (O(1) per new connection).
        self._bysource_index: dict[_SrcKey, set[int]] = {}
        self._bysource_key: dict[int, _SrcKey] = {}     # entry id -> its bucket above
        # Every hashed tuple once more, grouped by all its fields but one key, with that key's
        # values sorted: the NAT port search finds the first key nobody holds by bisection
        # (held_keys) instead of one lookup per key.
        self._sports: dict[_Space, list[int]] = {}     # (proto, src, dst, dport, zone)
        self._dports: dict[_Space, list[int]] = {}     # (proto, src, dst, sport, zone)
        # (timeout, id) of every stored value, stale ones dropped lazily: earliest_expiry.
        self._expiry: list[tuple[float, int]] = []
        self._last_id = 0

    # -- ids ------------------------------------------------------------------------------

    def next_id(self) -> int:
        """A fresh entry id (1, 2, ...): never reused, so ids also order entries by creation."""
        self._last_id += 1
        return self._last_id

    # -- the hash -------------------------------------------------------------------------

    def lookup(self, t: Tuple, zone: int, now: float) -> tuple[Conn, Direction] | None:
        """____nf_conntrack_find(): the live entry holding `t` in `zone`, and which of its
        tuples it is. An expired entry found on the way is reaped and not returned."""
        hit = self._hash.get((t, zone))
        if hit is None:
            return None
        conn_id, direction = hit
        conn = self._conns[conn_id]
        if conn.expired(now):
            self.delete(conn_id)
            return None
        return conn, direction

    def get(self, conn_id: int) -> Conn | None:
        """The current value of entry `conn_id` (expired or not), or None if not in the table."""
        return self._conns.get(conn_id)

    def __contains__(self, conn_id: object) -> bool:
        return conn_id in self._conns

    def __len__(self) -> int:
        """Entries held, including expired ones not reaped yet (like nf_conntrack_count)."""
        return len(self._conns)

    def __iter__(self) -> Iterator[Conn]:
        """Every held entry, expired or not, in id order."""
        return iter([self._conns[i] for i in sorted(self._conns)])

    def insert(self, conn: Conn) -> None:
        """__nf_conntrack_hash_insert(): add both direction nodes of a confirmed entry.

        The caller (confirm) has checked for clashes with `find_clash`, which also reaps
        expired entries in the way; any entry still holding one of the tuples is a caller
        error. An entry whose two tuples are equal (a host talking to itself from and to the
        same port) is found as REPLY, as in the kernel, whose reply node goes in last at the
        head of the same bucket.
        """
        if not conn.confirmed:
            raise TableError(f"entry {conn.id} is not CONFIRMED: only confirm inserts")
        if conn.id in self._conns:
            raise TableError(f"entry {conn.id} is already in the table")
        keys = self._keys(conn)
        for key in keys:
            hit = self._hash.get(key)
            if hit is not None:
                raise TableError(f"tuple {key[0]} (zone {key[1]}) of entry {conn.id} is held "
                                 f"by entry {hit[0]}")
        self._conns[conn.id] = conn
        self._hash[keys[0]] = (conn.id, Direction.ORIGINAL)
        self._hash[keys[1]] = (conn.id, Direction.REPLY)
        for t, zone in keys:
            self._hold(t, zone)
        self._note_expiry(conn)
        self._reindex_source(conn)

    def replace(self, conn: Conn) -> None:
        """Store a new value for an entry already in the table (same id).

        The kernel never rehashes a confirmed entry; if the tuples or zone changed anyway, the
        nodes are moved (and an occupied target is an error, as for insert).
        """
        old = self._conns.get(conn.id)
        if old is None:
            raise TableError(f"entry {conn.id} is not in the table")
        if self._keys(old) == self._keys(conn):
            self._conns[conn.id] = conn
            if conn.timeout != old.timeout:
                self._note_expiry(conn)
            return
        self._unhash(old)
        try:
            del self._conns[conn.id]
            self.insert(conn)
        except TableError:
            self._conns[old.id] = old
            self._hash[self._keys(old)[0]] = (old.id, Direction.ORIGINAL)
            self._hash[self._keys(old)[1]] = (old.id, Direction.REPLY)
            for t, zone in self._keys(old):
                self._hold(t, zone)
            raise
        self._reindex_source(conn)

    def delete(self, conn_id: int) -> Conn | None:
        """nf_ct_delete(): remove the entry (and its by-source record). Returns the removed
        value, or None if it was not there."""
        conn = self._conns.pop(conn_id, None)
        if conn is None:
            return None
        self._unhash(conn)
        self._unindex_source(conn_id)
        return conn

    def reap(self, now: float) -> list[Conn]:
        """The GC worker (gc_worker) run to completion: remove every expired entry."""
        gone = [c for c in self._conns.values() if c.expired(now)]
        for conn in gone:
            self.delete(conn.id)
        return gone

    # -- questions NAT and confirm ask ------------------------------------------------------

    def tuple_taken(self, candidate_reply: Tuple, ignored: Conn, now: float) -> bool:
        """nf_conntrack_tuple_taken(): does another live entry hold `candidate_reply` as either
        of its tuples (in ignored's zone)? An entry whose ORIGINAL tuple equals ignored's
        original is the same flow racing itself and does not count (kernel-semantics 4.3)."""
        hit = self.lookup(candidate_reply, ignored.zone, now)
        if hit is None:
            return False
        other, _ = hit
        if other.id == ignored.id:
            return False
        return other.orig != ignored.orig

    def find_clash(self, conn: Conn, now: float) -> Conn | None:
        """__nf_conntrack_confirm()'s check: a live entry holding `conn`'s original tuple or
        its reply tuple (in conn's zone), i.e. the entry it would clash with on insertion.

        The kernel compares against every confirmed node in the bucket without an expiry
        test; an expired one can only be there if no lookup or GC met it, so the model
        treats it as gone (and reaps it).
        """
        for t in (conn.orig, conn.reply):
            hit = self.lookup(t, conn.zone, now)
            if hit is not None and hit[0].id != conn.id:
                return hit[0]
        return None

    def add_by_source(self, conn: Conn, seq: int) -> None:
        """nf_nat_setup_info() for SRC manip: record `conn` in the by-source list with order
        `seq` (find_appropriate_src walks newest first). The conn may still be unconfirmed:
        it is listed by `by_source` only once confirm has put it in the table."""
        self._unindex_source(conn.id)
        self._bysource[conn.id] = seq
        self._index_source(conn)

    def by_source(self, proto: int, src: IPv4Address, sport: int, zone: int) -> list[Conn]:
        """Entries given a SRC binding whose ORIGINAL source is (proto, src, sport) in `zone`,
        most recently bound first (nf_nat_bysource + same_src()). No expiry check."""
        found = [
            (self._bysource[cid], c)
            for cid in self._bysource_index.get((proto, src, sport, zone), ())
            if (c := self._conns.get(cid)) is not None
            and c.orig.proto == proto and c.orig.src == src and c.orig.sport == sport
            and c.zone == zone
        ]
        found.sort(key=lambda item: (item[0], item[1].id), reverse=True)
        return [c for _, c in found]

    def held_keys(self, t: Tuple, key: KeyField, zone: int) -> Sequence[int]:
        """The values of `key` (sport or dport) for which the table holds a tuple equal to
        `t` in every other field, in `zone`, sorted ascending. Expired entries not reaped yet
        are included. Read-only: do not modify the returned sequence."""
        if key == "sport":
            return self._sports.get((t.proto, t.src, t.dst, t.dport, zone), ())
        return self._dports.get((t.proto, t.src, t.dst, t.sport, zone), ())

    def earliest_expiry(self) -> float | None:
        """The smallest `timeout` of the held entries (None when empty): nothing in the table
        is expired at `now` when `earliest_expiry() - now > 0`."""
        heap = self._expiry
        while heap:
            timeout, conn_id = heap[0]
            conn = self._conns.get(conn_id)
            if conn is not None and conn.timeout == timeout:
                return timeout
            heapq.heappop(heap)
        return None

    # -- views ----------------------------------------------------------------------------

    def conns(self, now: float) -> list[Conn]:
        """The live (non-expired) entries, in id order."""
        return [c for c in self if not c.expired(now)]

    def entries(self, now: float) -> list[Entry]:
        """`conntrack -L` at `now` (ctnetlink_dump_table): live entries only, in id order
        (the kernel's order is hash order: compare as multisets)."""
        return [c.as_entry(now) for c in self.conns(now)]

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _keys(conn: Conn) -> tuple[_Key, _Key]:
        return (conn.orig, conn.zone), (conn.reply, conn.zone)

    @staticmethod
    def _source_key(conn: Conn) -> _SrcKey:
        return conn.orig.proto, conn.orig.src, conn.orig.sport, conn.zone

    def _index_source(self, conn: Conn) -> None:
        key = self._source_key(conn)
        self._bysource_key[conn.id] = key
        self._bysource_index.setdefault(key, set()).add(conn.id)

    def _reindex_source(self, conn: Conn) -> None:
        """Keep the by-source record in the bucket of the entry's current original."""
        key = self._bysource_key.get(conn.id)
        if key is not None and key != self._source_key(conn):
            seq = self._bysource[conn.id]
            self._unindex_source(conn.id)
            self._bysource[conn.id] = seq
            self._index_source(conn)

    def _unindex_source(self, conn_id: int) -> None:
        """Forget entry `conn_id`'s by-source record (if any)."""
        self._bysource.pop(conn_id, None)
        key = self._bysource_key.pop(conn_id, None)
        if key is None:
            return
        bucket = self._bysource_index[key]
        bucket.discard(conn_id)
        if not bucket:
            del self._bysource_index[key]

    def _unhash(self, conn: Conn) -> None:
        for key in self._keys(conn):
            if self._hash.get(key, (None,))[0] == conn.id:
                del self._hash[key]
                self._release(*key)

    def _hold(self, t: Tuple, zone: int) -> None:
        """Add `t` to the held_keys index (once, even if both tuples of an entry are `t`)."""
        for values, key in ((self._sports.setdefault((t.proto, t.src, t.dst, t.dport, zone),
                                                     []), t.sport),
                            (self._dports.setdefault((t.proto, t.src, t.dst, t.sport, zone),
                                                     []), t.dport)):
            i = bisect.bisect_left(values, key)
            if i == len(values) or values[i] != key:
                values.insert(i, key)

    def _release(self, t: Tuple, zone: int) -> None:
        for index, space, key in ((self._sports, (t.proto, t.src, t.dst, t.dport, zone), t.sport),
                                  (self._dports, (t.proto, t.src, t.dst, t.sport, zone), t.dport)):
            values = index.get(space)
            if values is None:
                continue
            i = bisect.bisect_left(values, key)
            if i < len(values) and values[i] == key:
                del values[i]
            if not values:
                del index[space]

    def _note_expiry(self, conn: Conn) -> None:
        heap = self._expiry
        heapq.heappush(heap, (conn.timeout, conn.id))
        if len(heap) > 4 * len(self._conns) + 1024:     # mostly stale: rebuild
            self._expiry = [(c.timeout, c.id) for c in self._conns.values()]
            heapq.heapify(self._expiry)
