"""The xtables built-in chain table, typed in again from the kernel as an independent oracle.

Each iptable_*.c module of net/ipv4/netfilter/ declares its `valid_hooks` and registers its
hooks at one priority (iptable_nat: NF_IP_PRI_NAT_DST on PREROUTING/OUTPUT, NF_IP_PRI_NAT_SRC
on INPUT/POSTROUTING); the numbers are enum nf_ip_hook_priorities
(include/uapi/linux/netfilter_ipv4.h).
"""

from __future__ import annotations

from nat.hooks import Hook
from nat.rules.builtin_chains import BUILTIN_CHAINS, chain_names

RAW, MANGLE, NAT_DST, FILTER, SECURITY, NAT_SRC = -300, -150, -100, 0, 50, 100
PRE, IN, FWD, OUT, POST = (Hook.PRE_ROUTING, Hook.LOCAL_IN, Hook.FORWARD, Hook.LOCAL_OUT,
                           Hook.POST_ROUTING)

KERNEL: dict[str, list[tuple[str, Hook, int]]] = {
    "raw": [("PREROUTING", PRE, RAW), ("OUTPUT", OUT, RAW)],
    "mangle": [("PREROUTING", PRE, MANGLE), ("INPUT", IN, MANGLE), ("FORWARD", FWD, MANGLE),
               ("OUTPUT", OUT, MANGLE), ("POSTROUTING", POST, MANGLE)],
    "nat": [("PREROUTING", PRE, NAT_DST), ("INPUT", IN, NAT_SRC), ("OUTPUT", OUT, NAT_DST),
            ("POSTROUTING", POST, NAT_SRC)],
    "filter": [("INPUT", IN, FILTER), ("FORWARD", FWD, FILTER), ("OUTPUT", OUT, FILTER)],
    "security": [("INPUT", IN, SECURITY), ("FORWARD", FWD, SECURITY),
                 ("OUTPUT", OUT, SECURITY)],
}


def test_the_table_is_the_kernels() -> None:
    got = {table: [(c.name, c.hook, c.priority) for c in chains.values()]
           for table, chains in BUILTIN_CHAINS.items()}
    assert got == KERNEL


def test_chain_names_in_iptables_save_order() -> None:
    assert chain_names("nat") == ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")
    assert chain_names("broute") == ()
