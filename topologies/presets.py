"""The built-in topologies a spec can name with `preset = "..."`.

Each preset is plain frozen data, checked by `topologies.inline.check_topology` in the tests.
Addresses come from the documentation ranges people recognise: a private LAN behind a
gateway, and TEST-NET-3 (203.0.113.0/24) standing in for "the internet".
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from topologies.description import Endpoint, Host, Interface, Route, Segment, Topology

_DEFAULT = IPv4Network("0.0.0.0/0")


def _host(
    name: str,
    interfaces: dict[str, str],
    default_via: str | None = None,
    forwarding: bool = False,
) -> Host:
    routes = () if default_via is None else (Route(_DEFAULT, IPv4Address(default_via)),)
    return Host(
        name=name,
        interfaces=tuple(Interface(n, IPv4Interface(a)) for n, a in interfaces.items()),
        routes=routes,
        forwarding=forwarding,
    )


def _segment(name: str, *ends: str) -> Segment:
    endpoints = tuple(Endpoint(*end.split(":", 1)) for end in ends)
    return Segment(name=name, endpoints=endpoints)


HOME = Topology(
    name="home",
    description=(
        "A laptop behind a home gateway; a desktop on the gateway's outside network plays "
        "the internet."
    ),
    hosts=(
        _host("laptop", {"eth0": "192.168.1.8/24"}, default_via="192.168.1.9"),
        _host(
            "gateway",
            {"lan0": "192.168.1.9/24", "wan0": "203.0.113.1/24"},
            forwarding=True,
        ),
        _host("desktop", {"eth0": "203.0.113.10/24"}, default_via="203.0.113.1"),
    ),
    segments=(
        _segment("lan", "laptop:eth0", "gateway:lan0"),
        _segment("wan", "gateway:wan0", "desktop:eth0"),
    ),
    gateway="gateway",
)

LAN = Topology(
    name="lan",
    description=(
        "Four clients on one bridged LAN behind a gateway, and a server outside: for source "
        "port clashes between clients and for hairpinning."
    ),
    hosts=(
        *(
            _host(f"client{i}", {"eth0": f"192.168.1.{10 + i}/24"}, default_via="192.168.1.1")
            for i in range(1, 5)
        ),
        _host(
            "gateway",
            {"lan0": "192.168.1.1/24", "wan0": "203.0.113.1/24"},
            forwarding=True,
        ),
        _host("server", {"eth0": "203.0.113.10/24"}, default_via="203.0.113.1"),
    ),
    segments=(
        _segment("lan", *(f"client{i}:eth0" for i in range(1, 5)), "gateway:lan0"),
        _segment("wan", "gateway:wan0", "server:eth0"),
    ),
    gateway="gateway",
    notes=("The LAN segment is a Linux bridge in a namespace of its own.",),
)

PRESETS: dict[str, Topology] = {t.name: t for t in (HOME, LAN)}


def preset(name: str) -> Topology:
    """The preset called `name`; KeyError naming the known presets otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise KeyError(f"unknown topology preset {name!r} (known: {known})") from None
