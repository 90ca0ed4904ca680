"""A topology as plain frozen data: hosts, their interfaces and routes, the segments joining
them, and which host is the gateway.

Both sides read this one description: the kernel side builds namespaces and veths from it,
and the model reads the gateway's interfaces, addresses and routes from it (routing decision,
MASQUERADE's address choice, REDIRECT's address). Nothing here touches the machine.

Interface names are the stable names *inside* each host's namespace (`eth0`, `lan0`, `wan0`):
rules refer to them. The Mininet adapter gives the kernel objects run-scoped names while it
creates them and renames them to these names inside each namespace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network


@dataclass(frozen=True)
class Interface:
    """One interface of a host: its name inside the host's namespace and its address."""

    name: str
    address: IPv4Interface

    @property
    def ip(self) -> IPv4Address:
        return self.address.ip

    @property
    def network(self) -> IPv4Network:
        return self.address.network


@dataclass(frozen=True)
class Route:
    """A static route: `dest` via `via` (a next hop), or directly out of `dev`."""

    dest: IPv4Network
    via: IPv4Address | None = None
    dev: str | None = None


@dataclass(frozen=True)
class Host:
    name: str
    interfaces: tuple[Interface, ...]
    routes: tuple[Route, ...] = ()
    forwarding: bool = False

    def interface(self, name: str) -> Interface:
        for intf in self.interfaces:
            if intf.name == name:
                return intf
        raise KeyError(f"host {self.name} has no interface {name}")

    def addresses(self) -> tuple[IPv4Address, ...]:
        return tuple(i.ip for i in self.interfaces)


@dataclass(frozen=True)
class Endpoint:
    """A host's end of a segment: (host name, interface name)."""

    host: str
    interface: str


@dataclass(frozen=True)
class Segment:
    """A layer-2 segment. Two endpoints: one veth pair. More: a Linux bridge that lives in a
    namespace of its own (never in the root namespace)."""

    name: str
    endpoints: tuple[Endpoint, ...]

    @property
    def bridged(self) -> bool:
        return len(self.endpoints) > 2


@dataclass(frozen=True)
class Topology:
    name: str
    hosts: tuple[Host, ...]
    segments: tuple[Segment, ...]
    gateway: str
    description: str = ""
    notes: tuple[str, ...] = field(default=())

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"topology {self.name} has no host {name}")

    @property
    def gateway_host(self) -> Host:
        return self.host(self.gateway)

    def host_by_address(self, addr: IPv4Address) -> Host | None:
        for h in self.hosts:
            if addr in h.addresses():
                return h
        return None
