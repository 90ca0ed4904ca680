"""Which side of a connection a NAT binding rewrites: the source or the destination.

Mirrors enum nf_nat_manip_type and HOOK2MANIP() in include/net/netfilter/nf_nat.h: DST manip is
done at PRE_ROUTING and LOCAL_OUT, SRC manip at POST_ROUTING and LOCAL_IN. Kept in its own tiny
module so the NAT core, the packet manip code and the rules can all import it without cycles.
"""

from __future__ import annotations

import enum

from nat.hooks import Hook
from nat.status import Status


class ManipType(enum.IntEnum):
    """NF_NAT_MANIP_SRC / NF_NAT_MANIP_DST."""

    SRC = 0
    DST = 1

    @classmethod
    def for_hook(cls, hook: Hook) -> ManipType:
        """HOOK2MANIP(): SRC at POST_ROUTING/LOCAL_IN, DST at PRE_ROUTING/LOCAL_OUT."""
        if hook in (Hook.POST_ROUTING, Hook.LOCAL_IN):
            return cls.SRC
        if hook in (Hook.PRE_ROUTING, Hook.LOCAL_OUT):
            return cls.DST
        raise ValueError(f"no NAT is done at {hook.name}")

    @property
    def nat_bit(self) -> Status:
        """IPS_SRC_NAT / IPS_DST_NAT: set when this manip changed the tuple."""
        return Status.SRC_NAT if self is ManipType.SRC else Status.DST_NAT

    @property
    def done_bit(self) -> Status:
        """IPS_SRC_NAT_DONE / IPS_DST_NAT_DONE: set once this manip's binding is made."""
        return Status.SRC_NAT_DONE if self is ManipType.SRC else Status.DST_NAT_DONE
