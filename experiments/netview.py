"""The gateway's devices and routes as the model sees them, read from a topology description.

The one place where a `topologies` value becomes a `nat` value, so the model never imports
the topology package (design.md: the walls between the rooms).
"""

from __future__ import annotations

from ipaddress import IPv4Network

from nat.netdev import Device, NetView, RouteEntry
from topologies.description import Topology


def netview_for(topology: Topology, ifindex: dict[str, int] | None = None) -> NetView:
    """The gateway host of `topology` as a NetView. `ifindex` maps interface names to the
    kernel's indexes when known (a running network); otherwise they are numbered from 2
    (1 is lo) in description order."""
    gw = topology.gateway_host
    devices = tuple(
        Device(intf.name, (ifindex or {}).get(intf.name, i + 2), (intf.address,))
        for i, intf in enumerate(gw.interfaces)
    )
    routes = []
    for r in gw.routes:
        dev = r.dev
        if dev is None and r.via is not None:
            dev = next((i.name for i in gw.interfaces if r.via in i.network), None)
        if dev is None:
            continue
        routes.append(RouteEntry(IPv4Network(r.dest), dev, r.via))
    return NetView(devices, tuple(routes), forwarding=gw.forwarding)
