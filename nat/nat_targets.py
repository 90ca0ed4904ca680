"""Turning a NAT target into the range nf_nat_setup_info gets, at the hook where it runs.

Mirrors net/netfilter/xt_nat.c (SNAT, DNAT: the range as written),
net/netfilter/nf_nat_masquerade.c (nf_nat_masquerade_ipv4: the outgoing device's address,
chosen like inet_select_addr() in net/ipv4/devinet.c), net/netfilter/nf_nat_redirect.c
(nf_nat_redirect_ipv4: the incoming device's first address, or 127.0.0.1 for local output)
and net/netfilter/xt_NETMAP.c (netmap_tg4). kernel-semantics.md §4.6.

Each function returns the range, or None where the kernel drops the packet.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from nat.hooks import Hook
from nat.maniptype import ManipType
from nat.netdev import Device, NetView
from nat.rules.ast import Dnat, Masquerade, NatFlag, NatRange, Redirect, Snat

LOOPBACK = IPv4Address("127.0.0.1")
_HOST_SCOPE = IPv4Network("127.0.0.0/8")  # lo's addresses have host scope, never "universe"
_ANY = IPv4Address("0.0.0.0")


def _global_primaries(dev: Device) -> list[IPv4Address]:
    """A device's primary addresses of universe (global) scope, in list order."""
    return [a.ip for a in dev.primary_addresses() if a.ip not in _HOST_SCOPE]


def inet_select_addr(dev: Device, dst: IPv4Address | None,
                     view: NetView | None = None) -> IPv4Address | None:
    """The source address the kernel picks on `dev` for talking to `dst` (scope universe).

    The first primary global address whose subnet holds `dst`; else the first primary global
    address; if the device has none, the first primary global address of any device in
    `view` (the kernel walks all devices in order). None if there is none at all.
    """
    chosen: IPv4Address | None = None
    for iface in dev.primary_addresses():
        if iface.ip in _HOST_SCOPE:
            continue
        if dst is None or dst in iface.network:
            return iface.ip
        if chosen is None:
            chosen = iface.ip
    if chosen is not None or view is None:
        return chosen
    for other in view.devices:
        addrs = _global_primaries(other)
        if addrs:
            return addrs[0]
    return None


def snat_range(target: Snat) -> NatRange:
    """SNAT: the range as written (SRC manip)."""
    return target.range


def dnat_range(target: Dnat) -> NatRange:
    """DNAT: the range as written (DST manip)."""
    return target.range


def masquerade_range(target: Masquerade, out_dev: Device, nexthop: IPv4Address,
                     orig_src: IPv4Address, view: NetView | None = None) -> NatRange | None:
    """nf_nat_masquerade_ipv4: a single-address range on the outgoing device's address for
    the next hop, with the rule's ports and flags. None: the device has no usable address
    (the kernel drops the packet and logs "<dev> ate my IP address").

    An original source of 0.0.0.0 is not masqueraded: the kernel returns without a binding
    and the null binding follows. Here that is the same single-address range on 0.0.0.0,
    which gives the same binding unless a later nat chain at the same hook would bind.
    The caller records `masq_index = out_dev.index` on the entry when a range is returned.
    """
    if orig_src == _ANY:
        return NatRange(NatFlag.MAP_IPS, _ANY, _ANY)
    newsrc = inet_select_addr(out_dev, nexthop, view)
    if newsrc is None:
        return None
    return replace(target.range, flags=target.range.flags | NatFlag.MAP_IPS,
                   min_addr=newsrc, max_addr=newsrc)


def redirect_range(target: Redirect, hook: Hook, in_dev: Device | None) -> NatRange | None:
    """nf_nat_redirect_ipv4: to 127.0.0.1 in LOCAL_OUT; in PRE_ROUTING to the first address
    in the incoming device's list (None: it has none, the kernel drops). Ports from the rule
    (--to-ports), else unchanged."""
    if hook is Hook.LOCAL_OUT:
        newdst = LOOPBACK
    elif hook is Hook.PRE_ROUTING:
        if in_dev is None or not in_dev.addresses:
            return None
        newdst = in_dev.addresses[0].ip
        if newdst == _ANY:
            return None
    else:
        raise ValueError(f"REDIRECT is only valid in PREROUTING and OUTPUT, not {hook.name}")
    rng = target.range
    return NatRange(rng.flags | NatFlag.MAP_IPS, newdst, newdst, rng.min_proto, rng.max_proto)


def netmap_range(rng: NatRange, hook: Hook, saddr: IPv4Address,
                 daddr: IPv4Address) -> NatRange:
    """netmap_tg4: keep the host part, replace the network part by the range's prefix.

    DST side (PRE_ROUTING, LOCAL_OUT) maps the destination, SRC side the source; the result
    is a single-address range with the rule's ports, so the usual port logic still applies.
    """
    if rng.min_addr is None or rng.max_addr is None:
        raise ValueError("NETMAP needs an address range")
    lo, hi = int(rng.min_addr), int(rng.max_addr)
    mask = ~(lo ^ hi) & 0xFFFFFFFF
    addr = daddr if ManipType.for_hook(hook) is ManipType.DST else saddr
    new = IPv4Address((int(addr) & ~mask & 0xFFFFFFFF) | (lo & mask))
    return NatRange(rng.flags | NatFlag.MAP_IPS, new, new, rng.min_proto, rng.max_proto)
