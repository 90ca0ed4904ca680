"""The inline topology form: a spec's `[topology]` table <-> a `Topology`, with checks.

Parsing goes in two steps so each error names exactly one field:
1. structure (`topology_from_mapping`): known keys, types, address syntax;
2. meaning (`check_topology`, also run on presets): names, subnets, links, routes.

Every problem raises `TopologyError(path, message)` where `path` is the dotted field path in
the spec (`topology.hosts.a.routes[0].via`), so `str(error)` is one line a user can act on.
The syntax is documented with a full example in docs/topologies.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from topologies.description import Endpoint, Host, Interface, Route, Segment, Topology

HOST_NAME_RE = re.compile(r"[a-z][a-z0-9]{0,7}")
# Linux allows up to 15 bytes (IFNAMSIZ - 1); we also keep names shell- and rule-friendly.
IFNAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,14}")
SEGMENT_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_ADDRESS_RE = re.compile(r"\d{1,3}(\.\d{1,3}){3}/\d{1,2}")
_DEFAULT = IPv4Network("0.0.0.0/0")

TOPOLOGY_KEYS = ("name", "description", "notes", "gateway", "hosts", "links")
HOST_KEYS = ("interfaces", "routes", "forwarding")
ROUTE_KEYS = ("dest", "via", "dev")
LINK_KEYS = ("name", "ends")


class TopologyError(ValueError):
    """A topology that cannot be built. `where` is the dotted path of the offending field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


# --- structure -------------------------------------------------------------------------------


def _table(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise TopologyError(where, f"expected a table, got {_kind(value)}")
    return value


def _array(value: object, where: str) -> Sequence[object]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TopologyError(where, f"expected an array, got {_kind(value)}")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise TopologyError(where, f"expected a string, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, Sequence):
        return "an array"
    return type(value).__name__


def _known_keys(table: Mapping[str, object], allowed: Sequence[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            hint = (
                "preset is chosen by the spec, not inside [topology]; " if key == "preset" else ""
            )
            raise TopologyError(
                f"{where}.{key}", f"unknown key ({hint}expected one of: {', '.join(allowed)})"
            )


def _address(value: object, where: str) -> IPv4Interface:
    text = _string(value, where)
    if not _ADDRESS_RE.fullmatch(text):
        raise TopologyError(
            where, f"{text!r} is not an IPv4 address with a prefix, like 10.0.0.2/24"
        )
    try:
        return IPv4Interface(text)
    except ValueError as e:
        raise TopologyError(where, f"{text!r} is not a valid IPv4 address/prefix: {e}") from None


def _ip(value: object, where: str) -> IPv4Address:
    text = _string(value, where)
    try:
        return IPv4Address(text)
    except ValueError:
        raise TopologyError(where, f"{text!r} is not an IPv4 address") from None


def _network(value: object, where: str) -> IPv4Network:
    text = _string(value, where)
    if text == "default":
        return _DEFAULT
    if "/" not in text:
        raise TopologyError(where, f"{text!r} needs a prefix (like 10.0.0.0/8) or 'default'")
    try:
        return IPv4Network(text)
    except ValueError as e:
        raise TopologyError(where, f"{text!r} is not a network: {e}") from None


def _route(value: object, where: str) -> Route:
    table = _table(value, where)
    _known_keys(table, ROUTE_KEYS, where)
    if "dest" not in table:
        raise TopologyError(f"{where}.dest", "missing (a network like 10.0.0.0/8, or 'default')")
    dest = _network(table["dest"], f"{where}.dest")
    via = _ip(table["via"], f"{where}.via") if "via" in table else None
    dev = _string(table["dev"], f"{where}.dev") if "dev" in table else None
    if via is None and dev is None:
        raise TopologyError(where, "a route needs 'via' (a next hop) or 'dev' (an interface)")
    return Route(dest=dest, via=via, dev=dev)


def _host(name: str, value: object, where: str) -> Host:
    if not HOST_NAME_RE.fullmatch(name):
        raise TopologyError(where, "host names are 1-8 characters, [a-z][a-z0-9]*")
    table = _table(value, where)
    _known_keys(table, HOST_KEYS, where)
    if "interfaces" not in table:
        raise TopologyError(
            f"{where}.interfaces", 'missing (a table like { eth0 = "10.0.0.2/24" })'
        )
    intf_table = _table(table["interfaces"], f"{where}.interfaces")
    if not intf_table:
        raise TopologyError(f"{where}.interfaces", "a host needs at least one interface")
    interfaces = tuple(
        Interface(ifname, _address(addr, f"{where}.interfaces.{ifname}"))
        for ifname, addr in intf_table.items()
    )
    routes_value = table.get("routes", [])
    routes = tuple(
        _route(r, f"{where}.routes[{i}]")
        for i, r in enumerate(_array(routes_value, f"{where}.routes"))
    )
    forwarding = table.get("forwarding", False)
    if not isinstance(forwarding, bool):
        raise TopologyError(
            f"{where}.forwarding", f"expected true or false, got {_kind(forwarding)}"
        )
    return Host(name=name, interfaces=interfaces, routes=routes, forwarding=forwarding)


def _endpoint(value: object, where: str) -> Endpoint:
    text = _string(value, where)
    host, sep, ifname = text.partition(":")
    if not sep or not host or not ifname:
        raise TopologyError(where, f"{text!r} should be 'host:interface', like 'a:eth0'")
    return Endpoint(host, ifname)


def _link(index: int, value: object, where: str) -> Segment:
    table = _table(value, where)
    _known_keys(table, LINK_KEYS, where)
    name = _string(table["name"], f"{where}.name") if "name" in table else f"link{index}"
    if "ends" not in table:
        raise TopologyError(f"{where}.ends", 'missing (a list like ["a:eth0", "gw:lan0"])')
    ends = _array(table["ends"], f"{where}.ends")
    endpoints = tuple(_endpoint(e, f"{where}.ends[{i}]") for i, e in enumerate(ends))
    return Segment(name=name, endpoints=endpoints)


def topology_from_mapping(data: Mapping[str, object], where: str = "topology") -> Topology:
    """Build and check a topology from a spec's `[topology]` table (as loaded by tomllib).

    `where` prefixes every error path (e.g. "myspec.toml: topology").
    """
    table = _table(data, where)
    _known_keys(table, TOPOLOGY_KEYS, where)
    for required in ("gateway", "hosts"):
        if required not in table:
            raise TopologyError(f"{where}.{required}", "missing")
    name = _string(table.get("name", "inline"), f"{where}.name")
    description = _string(table.get("description", ""), f"{where}.description")
    notes = tuple(
        _string(n, f"{where}.notes[{i}]")
        for i, n in enumerate(_array(table.get("notes", []), f"{where}.notes"))
    )
    gateway = _string(table["gateway"], f"{where}.gateway")
    hosts_table = _table(table["hosts"], f"{where}.hosts")
    if not hosts_table:
        raise TopologyError(f"{where}.hosts", "no hosts")
    hosts = tuple(_host(n, v, f"{where}.hosts.{n}") for n, v in hosts_table.items())
    links = _array(table.get("links", []), f"{where}.links")
    segments = tuple(_link(i, v, f"{where}.links[{i}]") for i, v in enumerate(links))
    topology = Topology(
        name=name,
        hosts=hosts,
        segments=segments,
        gateway=gateway,
        description=description,
        notes=notes,
    )
    check_topology(topology, where)
    return topology


# --- meaning ---------------------------------------------------------------------------------


def check_topology(t: Topology, where: str = "topology") -> None:
    """Raise TopologyError for the first thing that would stop this topology from working.

    Paths name fields as the inline form spells them (segments are `links[i]`).
    """
    hosts_seen: set[str] = set()
    for host in t.hosts:
        hw = f"{where}.hosts.{host.name}"
        if not HOST_NAME_RE.fullmatch(host.name):
            raise TopologyError(hw, "host names are 1-8 characters, [a-z][a-z0-9]*")
        if host.name in hosts_seen:
            raise TopologyError(hw, "duplicate host name")
        hosts_seen.add(host.name)
        _check_interfaces(host, hw)
        _check_routes(host, hw)
    if t.gateway not in hosts_seen:
        raise TopologyError(f"{where}.gateway", f"{t.gateway!r} is not one of the hosts")
    _check_segments(t, where)


def _check_interfaces(host: Host, hw: str) -> None:
    names: set[str] = set()
    for intf in host.interfaces:
        iw = f"{hw}.interfaces.{intf.name}"
        if not IFNAME_RE.fullmatch(intf.name) or intf.name == "lo":
            raise TopologyError(
                iw, "interface names are 1-15 characters, [a-z][a-z0-9_-]*, and not 'lo'"
            )
        if intf.name in names:
            raise TopologyError(iw, "duplicate interface name")
        names.add(intf.name)
        ip, net = intf.ip, intf.network
        if (
            ip.is_loopback
            or ip.is_multicast
            or ip.is_unspecified
            or ip == IPv4Address("255.255.255.255")
        ):
            raise TopologyError(iw, f"{ip} cannot be a host address")
        if net.prefixlen == 0:
            raise TopologyError(iw, f"prefix /0 is not a subnet: {intf.address}")
        if net.prefixlen <= 30 and ip in (net.network_address, net.broadcast_address):
            what = "network" if ip == net.network_address else "broadcast"
            raise TopologyError(iw, f"{ip} is the {what} address of {net}")
    for i, a in enumerate(host.interfaces):
        for b in host.interfaces[:i]:
            if a.network.overlaps(b.network):
                raise TopologyError(
                    f"{hw}.interfaces.{a.name}",
                    f"subnet {a.network} overlaps {b.network} of interface {b.name}",
                )


def _check_routes(host: Host, hw: str) -> None:
    dests: set[IPv4Network] = set()
    for i, route in enumerate(host.routes):
        rw = f"{hw}.routes[{i}]"
        if route.dest in dests:
            raise TopologyError(f"{rw}.dest", f"duplicate route to {route.dest}")
        dests.add(route.dest)
        if route.via is None and route.dev is None:
            raise TopologyError(rw, "a route needs 'via' (a next hop) or 'dev' (an interface)")
        candidates = host.interfaces
        if route.dev is not None:
            if route.dev not in {i.name for i in host.interfaces}:
                raise TopologyError(f"{rw}.dev", f"host {host.name} has no interface {route.dev!r}")
            candidates = (host.interface(route.dev),)
        if route.via is not None:
            if route.via in host.addresses():
                raise TopologyError(f"{rw}.via", f"{route.via} is this host's own address")
            if not any(route.via in c.network for c in candidates):
                nets = ", ".join(str(c.network) for c in candidates)
                raise TopologyError(
                    f"{rw}.via", f"{route.via} is not on a connected subnet ({nets})"
                )


def _check_segments(t: Topology, where: str) -> None:
    seg_names: set[str] = set()
    used: dict[tuple[str, str], str] = {}
    for s, seg in enumerate(t.segments):
        sw = f"{where}.links[{s}]"
        if not SEGMENT_NAME_RE.fullmatch(seg.name):
            raise TopologyError(f"{sw}.name", "link names are [a-z][a-z0-9_-]*, at most 32")
        if seg.name in seg_names:
            raise TopologyError(f"{sw}.name", f"duplicate link name {seg.name!r}")
        seg_names.add(seg.name)
        if len(seg.endpoints) < 2:
            raise TopologyError(f"{sw}.ends", "a link needs at least two ends")
        first: Interface | None = None
        addresses: set[IPv4Address] = set()
        for e, end in enumerate(seg.endpoints):
            ew = f"{sw}.ends[{e}]"
            try:
                host = t.host(end.host)
            except KeyError:
                raise TopologyError(ew, f"unknown host {end.host!r}") from None
            try:
                intf = host.interface(end.interface)
            except KeyError:
                raise TopologyError(
                    ew, f"host {end.host} has no interface {end.interface!r}"
                ) from None
            key = (end.host, end.interface)
            if key in used:
                raise TopologyError(
                    ew, f"{end.host}:{end.interface} is already on link {used[key]}"
                )
            used[key] = seg.name
            if first is None:
                first = intf
            elif intf.network != first.network:
                raise TopologyError(
                    ew,
                    f"{end.host}:{end.interface} ({intf.address}) is not in the subnet "
                    f"{first.network} of the link's first end",
                )
            if intf.ip in addresses:
                raise TopologyError(ew, f"address {intf.ip} is used twice on this link")
            addresses.add(intf.ip)
    for host in t.hosts:
        for intf in host.interfaces:
            if (host.name, intf.name) not in used:
                raise TopologyError(
                    f"{where}.hosts.{host.name}.interfaces.{intf.name}", "not on any link"
                )


# --- back to a mapping -----------------------------------------------------------------------


def topology_to_mapping(t: Topology) -> dict[str, object]:
    """The inline form of `t` (for result bundles); `topology_from_mapping` reads it back equal."""
    out: dict[str, object] = {"name": t.name}
    if t.description:
        out["description"] = t.description
    if t.notes:
        out["notes"] = list(t.notes)
    out["gateway"] = t.gateway
    hosts: dict[str, object] = {}
    for h in t.hosts:
        host: dict[str, object] = {"interfaces": {i.name: str(i.address) for i in h.interfaces}}
        if h.routes:
            host["routes"] = [_route_to_mapping(r) for r in h.routes]
        host["forwarding"] = h.forwarding
        hosts[h.name] = host
    out["hosts"] = hosts
    out["links"] = [
        {"name": s.name, "ends": [f"{e.host}:{e.interface}" for e in s.endpoints]}
        for s in t.segments
    ]
    return out


def _route_to_mapping(r: Route) -> dict[str, str]:
    out = {"dest": "default" if r.dest == _DEFAULT else str(r.dest)}
    if r.via is not None:
        out["via"] = str(r.via)
    if r.dev is not None:
        out["dev"] = r.dev
    return out
