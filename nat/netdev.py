"""The gateway's own view of its network devices, addresses and routes.

The model never imports the topology package: the caller translates a topology description
into this view. Mirrors what the kernel consults in net/ipv4/fib_*.c (route lookup) and
net/ipv4/devinet.c (a device's address list, inet_select_addr()).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

_LOOPBACK = IPv4Address("127.0.0.1")
_LOOPBACK_NET = IPv4Network("127.0.0.0/8")
LOOPBACK_NAME = "lo"


@dataclass(frozen=True)
class Device:
    """A network device in the gateway's namespace. `addresses` in the kernel's list order:
    the first address of each subnet is primary, later ones in the same subnet are secondary."""

    name: str
    index: int
    addresses: tuple[IPv4Interface, ...]

    def primary_addresses(self) -> tuple[IPv4Interface, ...]:
        seen: set[IPv4Network] = set()
        out = []
        for a in self.addresses:
            if a.network not in seen:
                seen.add(a.network)
                out.append(a)
        return tuple(out)


@dataclass(frozen=True)
class RouteEntry:
    dest: IPv4Network
    dev: str
    via: IPv4Address | None = None


@dataclass(frozen=True)
class NetView:
    """Devices plus routes. Connected routes are derived from the device addresses."""

    devices: tuple[Device, ...]
    routes: tuple[RouteEntry, ...] = ()
    forwarding: bool = True
    # The addresses some host on the gateway's links owns, i.e. the next hops ARP resolves
    # (net/core/neighbour.c, net/ipv4/arp.c). None: unknown, every next hop resolves.
    neighbours: frozenset[IPv4Address] | None = None

    def resolves(self, dev: Device, nexthop: IPv4Address) -> bool:
        """Whether neighbour resolution of `nexthop` on `dev` succeeds: always on lo (no
        neighbours there), else when some host owns the address."""
        return dev.name == LOOPBACK_NAME or self.neighbours is None \
            or nexthop in self.neighbours

    def device(self, name: str) -> Device:
        for d in self.devices:
            if d.name == name:
                return d
        if name == LOOPBACK_NAME:
            return self.loopback
        raise KeyError(f"no device {name}")

    @cached_property
    def loopback(self) -> Device:
        """`lo`, which every namespace has (ifindex 1, 127.0.0.1/8): the device a packet to
        one of the gateway's own addresses leaves and comes back in on (the local routing
        table's RTN_LOCAL routes all point at it)."""
        return Device(LOOPBACK_NAME, 1, (IPv4Interface("127.0.0.1/8"),))

    def local_addresses(self) -> frozenset[IPv4Address]:
        return self._local

    def is_local(self, addr: IPv4Address) -> bool:
        return addr in self._local or addr in _LOOPBACK_NET

    def all_routes(self) -> tuple[RouteEntry, ...]:
        return self._all_routes

    # Worked out once per view (it is frozen): every packet asks.
    @cached_property
    def _local(self) -> frozenset[IPv4Address]:
        own = frozenset(a.ip for d in self.devices for a in d.addresses)
        return own | {_LOOPBACK}

    @cached_property
    def _all_routes(self) -> tuple[RouteEntry, ...]:
        connected = tuple(
            RouteEntry(a.network, d.name) for d in self.devices for a in d.primary_addresses()
        )
        return connected + self.routes

    def lookup(self, dst: IPv4Address) -> tuple[Device, IPv4Address] | None:
        """fib_lookup(): the local table first (an address of the gateway's own goes out
        `lo`), then the longest matching prefix; returns (device, next hop)."""
        if self.is_local(dst):
            return self.loopback, dst
        best: RouteEntry | None = None
        for r in self.all_routes():
            if dst in r.dest and (best is None or r.dest.prefixlen > best.dest.prefixlen):
                best = r
        if best is None:
            return None
        return self.device(best.dev), (best.via if best.via is not None else dst)
