"""The interface indexes natlab gives a topology's interfaces: topology data, no namespaces.

The model (through `experiments.model_config`) and the Mininet adapter both need these numbers
(captures name interfaces by index), so they are worked out from the description alone, here,
and neither the model's configuration nor a bundle's judge has to load the namespace runtime.
"""

from __future__ import annotations

from topologies.description import Topology

BRIDGE = "br0"  # the Linux bridge inside a bridged segment's namespace
FIRST_IFINDEX = 2  # 1 is lo in every namespace


def bridge_label(segment: str) -> str:
    """How a bridged segment's namespace is named in errors and index maps: `bridge:<segment>`."""
    return f"bridge:{segment}"


def interface_indexes(topology: Topology) -> dict[tuple[str, str], int]:
    """The interface indexes natlab creates, keyed by (host name, interface name); a bridged
    segment's bridge and ports are keyed by (`bridge_label(segment)`, name).

    Every host interface, in description order, then each bridge and its ports (named after
    the hosts), gets the next number from FIRST_IFINDEX (home: laptop eth0 = 2, gateway
    lan0 = 3, wan0 = 4, desktop eth0 = 5). Captures then show the same indexes on every run,
    and the two ends of a veth never share an index: when they do, the kernel's linkwatch
    treats the carrier change as not urgent and delays it up to a second, and until then the
    interface drops what it is given.
    """
    out: dict[tuple[str, str], int] = {}
    index = FIRST_IFINDEX
    for host in topology.hosts:
        for intf in host.interfaces:
            out[(host.name, intf.name)] = index
            index += 1
    for seg in topology.segments:
        if seg.bridged:
            for name in (BRIDGE, *(end.host for end in seg.endpoints)):
                out[(bridge_label(seg.name), name)] = index
                index += 1
    return out
