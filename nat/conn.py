"""The model's conntrack entry (struct nf_conn) as a frozen value.

Mirrors include/net/netfilter/nf_conntrack.h (struct nf_conn: tuplehash[2], status, timeout,
mark, zone, proto) and the per-protocol state kept in union nf_conntrack_proto. Updates make a
new value (`dataclasses.replace`); the table (nat/conntrack.py) maps ids to the current value.

`timeout` is the absolute time (in the caller's clock, seconds) at which the entry expires,
`as_entry(now)` gives what `conntrack -L` would show at `now`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nat.entry import Entry
from nat.status import Status, TcpState
from nat.tuple import Direction, Proto, Tuple


@dataclass(frozen=True)
class Conn:
    id: int                      # the model's own sequence number (not the kernel CTA_ID)
    orig: Tuple                  # tuplehash[IP_CT_DIR_ORIGINAL]
    reply: Tuple                 # tuplehash[IP_CT_DIR_REPLY]
    status: Status = Status.NONE
    timeout: float = 0.0         # absolute expiry time
    created: float = 0.0
    mark: int = 0
    zone: int = 0
    masq_index: int = 0          # ifindex recorded by MASQUERADE (nf_nat_masquerade_ipv4)
    proto_state: Any = None      # per-protocol tracker state (frozen dataclass of that tracker)
    src_bound_seq: int = 0       # by-source order (find_appropriate_src: newest first)

    def tuple(self, direction: Direction) -> Tuple:
        return self.orig if direction is Direction.ORIGINAL else self.reply

    @property
    def confirmed(self) -> bool:
        return bool(self.status & Status.CONFIRMED)

    def expired(self, now: float) -> bool:
        """nf_ct_is_expired(): timeout - now <= 0."""
        return self.timeout - now <= 0

    def tcp_state(self) -> TcpState | None:
        if self.orig.proto != Proto.TCP or self.proto_state is None:
            return None
        state = getattr(self.proto_state, "state", None)
        return state if isinstance(state, TcpState) else None

    def as_entry(self, now: float) -> Entry:
        """The `conntrack -L` view at `now`: timeout floored to whole seconds, never negative."""
        remaining = max(0, math.floor(self.timeout - now + 1e-9))
        return Entry(
            orig=self.orig,
            reply=self.reply,
            timeout=remaining,
            state=self.tcp_state(),
            unreplied=not (self.status & Status.SEEN_REPLY),
            assured=bool(self.status & Status.ASSURED),
            mark=self.mark,
            zone=self.zone,
            use=1,
        )
