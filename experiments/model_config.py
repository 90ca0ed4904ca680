"""The gateway's devices and routes as the model sees them, read from a topology description.

The one place where a `topologies` value becomes a `nat` value, so the model never imports
the topology package (design.md: the walls between the rooms).
"""

from __future__ import annotations

from ipaddress import IPv4Network

from nat.netdev import Device, NetView, RouteEntry
from topologies.description import Topology
from topologies.names import interface_indexes


def netview_for(topology: Topology) -> NetView:
    """The gateway host of `topology` as a NetView, with the interface indexes natlab gives
    the interfaces when it builds the topology (topologies.names.interface_indexes)."""
    gw = topology.gateway_host
    indexes = interface_indexes(topology)
    devices = tuple(
        Device(intf.name, indexes[(gw.name, intf.name)], (intf.address,))
        for intf in gw.interfaces
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
