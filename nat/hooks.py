"""Netfilter hook points and the IPv4 priorities callbacks are ordered by.

Mirrors include/uapi/linux/netfilter.h (enum nf_inet_hooks) and
include/uapi/linux/netfilter_ipv4.h (enum nf_ip_hook_priorities); nftables' chain priority
keywords map onto the same numbers (net/netfilter/nf_tables_api.c, nft's `priority dstnat`).
`in_hook_order` is the order net/netfilter/core.c gives callbacks registered on one hook.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


class Hook(enum.IntEnum):
    """enum nf_inet_hooks (NF_INET_*)."""

    PRE_ROUTING = 0
    LOCAL_IN = 1
    FORWARD = 2
    LOCAL_OUT = 3
    POST_ROUTING = 4


class Priority(enum.IntEnum):
    """enum nf_ip_hook_priorities (NF_IP_PRI_*)."""

    RAW_BEFORE_DEFRAG = -450
    CONNTRACK_DEFRAG = -400
    RAW = -300
    SELINUX_FIRST = -225
    CONNTRACK = -200
    MANGLE = -150
    NAT_DST = -100
    FILTER = 0
    SECURITY = 50
    NAT_SRC = 100
    SELINUX_LAST = 225
    # Defined but not registered by 6.x kernels: helpers now run inside the confirm hook.
    CONNTRACK_HELPER = 300
    CONNTRACK_CONFIRM = 2**31 - 1


# The names iptables gives its built-in chains, and the hooks they sit on.
IPTABLES_CHAIN_HOOK: dict[str, Hook] = {
    "PREROUTING": Hook.PRE_ROUTING,
    "INPUT": Hook.LOCAL_IN,
    "FORWARD": Hook.FORWARD,
    "OUTPUT": Hook.LOCAL_OUT,
    "POSTROUTING": Hook.POST_ROUTING,
}

# nft hook names -> Hook.
NFT_HOOK: dict[str, Hook] = {
    "prerouting": Hook.PRE_ROUTING,
    "input": Hook.LOCAL_IN,
    "forward": Hook.FORWARD,
    "output": Hook.LOCAL_OUT,
    "postrouting": Hook.POST_ROUTING,
}

# nft priority keywords (for family ip) -> number.
NFT_PRIORITY_KEYWORD: dict[str, int] = {
    "raw": Priority.RAW,
    "mangle": Priority.MANGLE,
    "dstnat": Priority.NAT_DST,
    "filter": Priority.FILTER,
    "security": Priority.SECURITY,
    "srcnat": Priority.NAT_SRC,
}

# iptables tables -> the priority their chains run at.
IPTABLES_TABLE_PRIORITY: dict[str, dict[Hook, int]] = {
    "raw": {Hook.PRE_ROUTING: Priority.RAW, Hook.LOCAL_OUT: Priority.RAW},
    "mangle": {h: Priority.MANGLE for h in Hook},
    "nat": {
        Hook.PRE_ROUTING: Priority.NAT_DST,
        Hook.LOCAL_OUT: Priority.NAT_DST,
        Hook.POST_ROUTING: Priority.NAT_SRC,
        Hook.LOCAL_IN: Priority.NAT_SRC,
    },
    "filter": {Hook.LOCAL_IN: Priority.FILTER, Hook.FORWARD: Priority.FILTER,
               Hook.LOCAL_OUT: Priority.FILTER},
}


def in_hook_order(registered: Iterable[T], priority: Callable[[T], int]) -> list[T]:
    """Callbacks in the order the kernel runs them, given the order they were registered.

    nf_register_net_hook() (net/netfilter/core.c) rebuilds the hook's array with
    nf_hook_entries_grow(): the old entries are copied in order, and the new one is put in
    front of the first old entry whose priority is not lower than its own. So the array is
    sorted by priority, and among equal priorities the one registered LAST runs FIRST (kernels
    before 4.16 walked a list and put it after its equals; checked live on 6.18: of two nft
    filter chains at `hook output priority 0`, the one created second counted the packet).
    nf_hook_entries_insert_raw() uses the same function for the NAT core's private list.
    """
    order: list[T] = []
    for item in registered:
        prio = priority(item)
        at = next((i for i, old in enumerate(order) if priority(old) >= prio), len(order))
        order.insert(at, item)
    return order
