"""A conntrack entry as `conntrack -L` shows it: the one type both sides are compared in.

The kernel side parses `conntrack -L` into `Entry`; the model renders its table into `Entry`
at a given `now`. Comparison is then `==` on the fields that are deterministic, plus the
allowed-outcome rules for the ones that are not (timeout, use, id).

Mirrors what ctnetlink_fill_info() (net/netfilter/nf_conntrack_netlink.c) sends and
libnetfilter_conntrack's snprintf_default.c prints; see nat/listing.py for the text form.
"""

from __future__ import annotations

from dataclasses import dataclass

from nat.status import TcpState
from nat.tuple import Tuple


@dataclass(frozen=True)
class Entry:
    """One line of `conntrack -L` (IPv4).

    `timeout` is the remaining lifetime in whole seconds (None for offloaded entries).
    `state` is the TCP state (None for other protocols). `unreplied` is the absence of
    SEEN_REPLY; `assured` is ASSURED. `use` and `id` are the kernel's refcount and CTA_ID,
    not predicted by the model (None when unknown).
    """

    orig: Tuple
    reply: Tuple
    timeout: int | None = None
    state: TcpState | None = None
    unreplied: bool = False
    assured: bool = False
    mark: int = 0
    zone: int = 0
    zone_orig: int | None = None
    zone_reply: int | None = None
    use: int | None = None
    id: int | None = None

    @property
    def proto(self) -> int:
        return self.orig.proto

    def key(self) -> tuple[Tuple, Tuple]:
        """What identifies an entry across kernel and model: both tuples."""
        return (self.orig, self.reply)
