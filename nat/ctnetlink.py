"""Changes to the conntrack table from user space: flush, delete, insert, update.

Mirrors net/netfilter/nf_conntrack_netlink.c as conntrack-tools 1.4.7 drives it:

- `conntrack -F`: ctnetlink_flush_conntrack() -> nf_ct_iterate_cleanup_net(): every entry is
  deleted (nf_ct_delete), expired or not.
- `conntrack -D FILTER`: the tool dumps the table (ctnetlink_dump_table: live entries only)
  and asks the kernel to delete each entry its filter matches, by tuple
  (ctnetlink_del_conntrack -> nf_ct_delete). A later packet of that flow finds nothing and
  starts a new entry (NEW), which meets the rules afresh.
- `conntrack -I`: ctnetlink_create_conntrack(): a new entry with the given original and reply
  tuples, CONFIRMED, `timeout` seconds from now (CTA_TIMEOUT), the given status bits
  (ctnetlink_change_status: SEEN_REPLY and ASSURED can only be set; the NAT bits are
  unchangeable, so without CTA_NAT_* attributes the entry has no NAT binding and no *_NAT_DONE
  bit), the mark, and the per-protocol state zeroed (`memset(&ct->proto, 0, ...)`: for UDP the
  stream timestamp is 0, long past, so the next packet after a reply makes a stream at once).
  It is inserted with nf_conntrack_hash_check_insert(): refused (EEXIST) when either tuple is
  held. nf_nat_setup_info() refuses confirmed entries ("Can't setup nat info for confirmed
  ct"), so NAT rules never bind an inserted entry.
- `conntrack -U FILTER -t T -m M`: the tool dumps and updates each matching entry
  (ctnetlink_change_conntrack): the timeout becomes now + T (ctnetlink_change_timeout), the
  mark M.

Pure functions over a `Table`; `now` is always passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from nat.conn import Conn
from nat.conntrack import Table, TableError
from nat.proto_udp import UdpState
from nat.status import Status
from nat.tuple import Proto, Tuple

# ctnetlink_change_status(): the bits user space may set on an entry.
SETTABLE_STATUS: dict[str, Status] = {"SEEN_REPLY": Status.SEEN_REPLY,
                                      "ASSURED": Status.ASSURED}
LONG_AGO = float("-inf")     # a zeroed jiffies timestamp: before any time of the run


@dataclass(frozen=True)
class CtFilter:
    """What `conntrack -D/-U` filters on (None = any): the original tuple's protocol,
    addresses and ports, and the reply tuple's addresses and ports."""

    proto: int | None = None
    src: IPv4Address | None = None
    dst: IPv4Address | None = None
    sport: int | None = None
    dport: int | None = None
    reply_src: IPv4Address | None = None
    reply_dst: IPv4Address | None = None
    reply_sport: int | None = None
    reply_dport: int | None = None

    def matches(self, conn: Conn) -> bool:
        """Every given field equals the entry's (conntrack-tools' masked nfct_cmp)."""
        o, r = conn.orig, conn.reply
        wanted = ((self.proto, o.proto), (self.src, o.src), (self.dst, o.dst),
                  (self.sport, o.sport if o.has_ports else None),
                  (self.dport, o.dport if o.has_ports else None),
                  (self.reply_src, r.src), (self.reply_dst, r.dst),
                  (self.reply_sport, r.sport if r.has_ports else None),
                  (self.reply_dport, r.dport if r.has_ports else None))
        return all(want is None or want == have for want, have in wanted)


def flush(table: Table) -> list[Conn]:
    """`conntrack -F`: every entry goes. Returns the removed entries."""
    gone = list(table)
    for conn in gone:
        table.delete(conn.id)
    return gone


def delete(table: Table, flt: CtFilter, now: float) -> list[Conn]:
    """`conntrack -D`: the live entries `flt` matches are deleted. Returns them."""
    gone = [c for c in table.conns(now) if flt.matches(c)]
    for conn in gone:
        table.delete(conn.id)
    return gone


def update(table: Table, flt: CtFilter, now: float, *, timeout: int | None = None,
           mark: int | None = None) -> list[Conn]:
    """`conntrack -U`: new timeout (seconds from now) and/or mark for the live entries `flt`
    matches. Returns the updated values."""
    done = []
    for conn in table.conns(now):
        if not flt.matches(conn):
            continue
        new = conn
        if timeout is not None:
            new = replace(new, timeout=now + timeout)
        if mark is not None:
            new = replace(new, mark=mark)
        table.replace(new)
        done.append(new)
    return done


class EntryExists(TableError):
    """`conntrack -I` of a tuple the table already holds (the kernel answers EEXIST)."""


def insert(table: Table, orig: Tuple, reply: Tuple, now: float, *, timeout: int,
           status: tuple[str, ...] = (), mark: int = 0) -> Conn:
    """`conntrack -I`: a confirmed entry with exactly these tuples, status bits, timeout and
    mark; no NAT binding. Raises EntryExists when a live entry holds either tuple."""
    bits = Status.CONFIRMED
    for name in status:
        bits |= SETTABLE_STATUS[name]
    conn = Conn(id=table.next_id(), orig=orig, reply=reply, status=bits, timeout=now + timeout,
                created=now, mark=mark,
                proto_state=UdpState(LONG_AGO) if orig.proto == Proto.UDP else None)
    for t in (orig, reply):
        hit = table.lookup(t, conn.zone, now)
        if hit is not None:
            raise EntryExists(f"tuple {t} is held by entry {hit[0].id}")
    table.insert(conn)
    return conn
