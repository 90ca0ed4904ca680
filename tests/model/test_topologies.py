"""Topology descriptions without root: presets, the inline form, its errors and round trip."""

from __future__ import annotations

import copy
import tomllib
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topologies.description import Endpoint, Host, Interface, Route, Segment, Topology
from topologies.ifindex import interface_indexes
from topologies.inline import (
    TopologyError,
    check_topology,
    topology_from_mapping,
    topology_to_mapping,
)
from topologies.names import (
    NodeRecord,
    bridge_node_name,
    host_node_name,
    is_run_id,
    new_run_id,
    new_state,
    read_state,
    remove_state,
    run_id_of_marker,
    shell_marker,
    stale_temp_files,
    state_path,
    state_run_ids,
    write_state,
)
from topologies.presets import PRESETS, preset

EXAMPLE = """
[topology]
gateway = "gw"
[topology.hosts.a]
interfaces = { eth0 = "10.0.0.2/24" }
routes = [ { dest = "default", via = "10.0.0.1" } ]
[topology.hosts.gw]
interfaces = { lan0 = "10.0.0.1/24", wan0 = "198.51.100.1/24" }
forwarding = true
[topology.hosts.b]
interfaces = { eth0 = "198.51.100.2/24" }
routes = [ { dest = "10.0.0.0/8", via = "198.51.100.1", dev = "eth0" } ]
[[topology.links]]
ends = ["a:eth0", "gw:lan0"]
[[topology.links]]
name = "wan"
ends = ["gw:wan0", "b:eth0"]
"""


def example() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE)["topology"]  # type: ignore[no-any-return]


# --- presets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_is_consistent(name: str) -> None:
    t = preset(name)
    check_topology(t)
    assert t.name == name
    for seg in t.segments:
        nets = {t.host(e.host).interface(e.interface).network for e in seg.endpoints}
        assert len(nets) == 1, seg
    for h in t.hosts:
        for r in h.routes:
            assert r.via is not None
            assert any(r.via in i.network for i in h.interfaces)
    wired = {(e.host, e.interface) for s in t.segments for e in s.endpoints}
    assert wired == {(h.name, i.name) for h in t.hosts for i in h.interfaces}


def test_home_preset_matches_brief() -> None:
    t = preset("home")
    assert t.gateway == "gateway"
    assert t.host("laptop").interface("eth0").address == IPv4Interface("192.168.1.8/24")
    assert t.host("laptop").routes == (Route(IPv4Network("0.0.0.0/0"), IPv4Address("192.168.1.9")),)
    gw = t.gateway_host
    assert gw.forwarding
    assert gw.interface("lan0").address == IPv4Interface("192.168.1.9/24")
    assert gw.interface("wan0").address == IPv4Interface("203.0.113.1/24")
    assert t.host("desktop").routes[0].via == IPv4Address("203.0.113.1")
    assert [s.name for s in t.segments] == ["lan", "wan"]
    assert not any(s.bridged for s in t.segments)


def test_lan_preset_has_one_bridged_lan() -> None:
    t = preset("lan")
    lan = next(s for s in t.segments if s.name == "lan")
    assert lan.bridged
    assert {e.host for e in lan.endpoints} == {
        "client1",
        "client2",
        "client3",
        "client4",
        "gateway",
    }
    addrs = sorted(t.host(f"client{i}").interface("eth0").ip for i in range(1, 5))
    assert addrs == [IPv4Address(f"192.168.1.{n}") for n in range(11, 15)]
    assert t.host("server").routes[0].via == IPv4Address("203.0.113.1")


def test_unknown_preset_names_known_ones() -> None:
    with pytest.raises(KeyError, match="home, lan"):
        preset("office")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_round_trips(name: str) -> None:
    t = preset(name)
    assert topology_from_mapping(topology_to_mapping(t)) == t


# --- inline form -----------------------------------------------------------------------------


def test_example_parses() -> None:
    t = topology_from_mapping(example(), "spec.toml: topology")
    assert t.name == "inline"
    assert t.gateway == "gw"
    assert [h.name for h in t.hosts] == ["a", "gw", "b"]
    assert t.host("gw").forwarding and not t.host("a").forwarding
    assert t.segments == (
        Segment("link0", (Endpoint("a", "eth0"), Endpoint("gw", "lan0"))),
        Segment("wan", (Endpoint("gw", "wan0"), Endpoint("b", "eth0"))),
    )
    assert t.host("b").routes == (
        Route(IPv4Network("10.0.0.0/8"), IPv4Address("198.51.100.1"), "eth0"),
    )
    assert topology_from_mapping(topology_to_mapping(t)) == t


def test_three_ends_make_a_bridged_link() -> None:
    data = example()
    data["hosts"]["c"] = {"interfaces": {"eth0": "10.0.0.3/24"}}
    data["links"][0]["ends"].append("c:eth0")
    t = topology_from_mapping(data)
    assert t.segments[0].bridged


def _set(data: dict[str, Any], path: str, value: object) -> None:
    """Set a value at a dotted path with [i] indexes; value None deletes the key."""
    parts = [p for p in path.replace("[", ".").replace("]", "").split(".") if p]
    node: Any = data
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is None:
        del node[last]
    else:
        node[last] = value


BAD: list[tuple[str, object, str, str]] = [
    # (path to change, new value, expected error path, expected words in message)
    ("colour", "blue", "topology.colour", "unknown key"),
    ("preset", "home", "topology.preset", "spec"),
    ("hosts.a.mtu", 1500, "topology.hosts.a.mtu", "unknown key"),
    ("hosts.a.interfaces.eth0", "10.0.0.300/24", "topology.hosts.a.interfaces.eth0", "not a valid"),
    ("hosts.a.interfaces.eth0", "10.0.0.2", "topology.hosts.a.interfaces.eth0", "prefix"),
    ("hosts.a.interfaces.eth0", "10.0.0.2/33", "topology.hosts.a.interfaces.eth0", "not a valid"),
    ("hosts.a.interfaces.eth0", 42, "topology.hosts.a.interfaces.eth0", "expected a string"),
    (
        "hosts.a.interfaces.eth0",
        "10.0.0.0/24",
        "topology.hosts.a.interfaces.eth0",
        "network address",
    ),
    ("links[0].ends[0]", "x:eth0", "topology.links[0].ends[0]", "unknown host 'x'"),
    ("links[0].ends[0]", "a:eth9", "topology.links[0].ends[0]", "no interface 'eth9'"),
    ("links[0].ends[0]", "a-eth0", "topology.links[0].ends[0]", "host:interface"),
    ("links[1].ends[1]", "a:eth0", "topology.links[1].ends[1]", "already on link"),
    (
        "hosts.gw.interfaces.wan0",
        "198.51.101.1/24",
        "topology.links[1].ends[1]",
        "not in the subnet",
    ),
    ("gateway", "router", "topology.gateway", "not one of the hosts"),
    ("gateway", None, "topology.gateway", "missing"),
    ("hosts.a.routes[0].via", "10.9.0.1", "topology.hosts.a.routes[0].via", "connected subnet"),
    ("hosts.a.routes[0].via", "10.0.0.2", "topology.hosts.a.routes[0].via", "own address"),
    ("hosts.a.routes[0].via", "10.0.0.x", "topology.hosts.a.routes[0].via", "not an IPv4 address"),
    ("hosts.a.routes[0].dest", "10.1.0.0", "topology.hosts.a.routes[0].dest", "prefix"),
    ("hosts.a.routes[0].dest", "10.1.0.1/16", "topology.hosts.a.routes[0].dest", "host bits"),
    ("hosts.a.routes[0]", {"dest": "default"}, "topology.hosts.a.routes[0]", "via"),
    ("hosts.b.routes[0].dev", "eth1", "topology.hosts.b.routes[0].dev", "no interface 'eth1'"),
    ("hosts.gw.forwarding", "yes", "topology.hosts.gw.forwarding", "true or false"),
    ("hosts.gw.interfaces.wan0", "10.0.0.5/16", "topology.hosts.gw.interfaces.wan0", "overlaps"),
    ("hosts.gw.interfaces.lo", "10.9.9.9/24", "topology.hosts.gw.interfaces.lo", "not 'lo'"),
    (
        "hosts.gw.interfaces.dmz0",
        "10.9.9.9/24",
        "topology.hosts.gw.interfaces.dmz0",
        "not on any link",
    ),
    ("hosts.a.interfaces", {}, "topology.hosts.a.interfaces", "at least one"),
    ("hosts.a.interfaces", None, "topology.hosts.a.interfaces", "missing"),
    ("links[1].name", "link0", "topology.links[1].name", "duplicate link name"),
    ("links[1].ends", ["gw:wan0"], "topology.links[1].ends", "at least two"),
    ("links", {"ends": []}, "topology.links", "expected an array"),
    ("hosts", [], "topology.hosts", "expected a table"),
]


@pytest.mark.parametrize(("path", "value", "where", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_inline_names_the_field(path: str, value: object, where: str, words: str) -> None:
    data = example()
    _set(data, path, value)
    with pytest.raises(TopologyError) as info:
        topology_from_mapping(data)
    assert info.value.where == where
    assert words in info.value.message
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(where + ": ")


@pytest.mark.parametrize("name", ["Laptop", "verylonghost", "1host", "a_b", ""])
def test_bad_host_names(name: str) -> None:
    data = example()
    data["hosts"][name] = data["hosts"].pop("b")
    data["links"][1]["ends"][1] = f"{name}:eth0"
    with pytest.raises(TopologyError) as info:
        topology_from_mapping(data)
    assert info.value.where == f"topology.hosts.{name}"


def test_where_prefix_is_used() -> None:
    data = example()
    data["gateway"] = "nobody"
    with pytest.raises(TopologyError, match=r"^lab\.toml: topology\.gateway: "):
        topology_from_mapping(data, "lab.toml: topology")


def test_checks_apply_to_descriptions_too() -> None:
    t = preset("home")
    dup = Topology(t.name, (*t.hosts, t.hosts[0]), t.segments, t.gateway)
    with pytest.raises(TopologyError, match="duplicate host name"):
        check_topology(dup)


def test_input_mapping_is_not_modified() -> None:
    data = example()
    before = copy.deepcopy(data)
    topology_from_mapping(data)
    assert data == before


# --- round trip, as a property ---------------------------------------------------------------

_names = st.lists(
    st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True), min_size=2, max_size=6, unique=True
)


@st.composite
def chains(draw: st.DrawFn) -> Topology:
    """Hosts in a chain: host i and host i+1 share subnet 10.i.0.0/<prefix>; the middle hosts
    forward; every non-first host has a default route back towards host 0."""
    names = draw(_names)
    n = len(names)
    prefixes = [draw(st.integers(min_value=8, max_value=30)) for _ in range(n - 1)]
    nets = [IPv4Network(f"10.{i}.0.0/{max(p, 16)}") for i, p in enumerate(prefixes)]
    hosts = []
    segments = []
    for i, name in enumerate(names):
        intfs = []
        routes = []
        if i > 0:
            net = nets[i - 1]
            intfs.append(
                Interface("up0", IPv4Interface(f"{net.network_address + 2}/{net.prefixlen}"))
            )
            routes.append(Route(IPv4Network("0.0.0.0/0"), net.network_address + 1))
        if i < n - 1:
            net = nets[i]
            intfs.append(
                Interface("down0", IPv4Interface(f"{net.network_address + 1}/{net.prefixlen}"))
            )
            if draw(st.booleans()):
                routes.append(Route(IPv4Network("172.16.0.0/12"), dev="down0"))
            segments.append(
                Segment(
                    draw(st.sampled_from(["lan", "wan", "x"])) + str(i),
                    (Endpoint(name, "down0"), Endpoint(names[i + 1], "up0")),
                )
            )
        hosts.append(Host(name, tuple(intfs), tuple(routes), forwarding=0 < i < n - 1))
    gateway = draw(st.sampled_from(names))
    desc = draw(st.text(max_size=20))
    return Topology("chain", tuple(hosts), tuple(segments), gateway, description=desc)


@settings(max_examples=60, deadline=None)
@given(chains())
def test_round_trip_property(t: Topology) -> None:
    check_topology(t)
    mapping = topology_to_mapping(t)
    assert topology_from_mapping(mapping) == t
    assert topology_to_mapping(topology_from_mapping(mapping)) == mapping


# --- run-scoped names, state files, planned interface indexes --------------------------------


def test_run_ids_and_node_names_fit_linux_limits() -> None:
    ids = {new_run_id() for _ in range(200)}
    assert len(ids) > 190
    for run_id in ids:
        assert is_run_id(run_id)
        for node in (host_node_name(run_id, 9), bridge_node_name(run_id, 9)):
            assert len(f"{node}-eth9") <= 15
            assert run_id_of_marker(shell_marker(node)) == run_id
    assert run_id_of_marker("mininet:h1") is None
    assert run_id_of_marker("nlab12h0") is None
    assert run_id_of_marker("mininet:nlab12") is None


def test_state_file_round_trip(tmp_path: Path) -> None:
    state = new_state("nlab12", "home").with_node(NodeRecord("nlab12h0", "laptop", 42, "net:[1]"))
    state = state.with_node(NodeRecord("nlab12h0", "laptop", 43, "net:[2]"))
    assert len(state.nodes) == 1 and state.nodes[0].pid == 43
    assert state.owner_alive()
    write_state(state, tmp_path)
    assert read_state("nlab12", tmp_path) == state
    assert state_run_ids(tmp_path) == ["nlab12"]
    assert remove_state("nlab12", tmp_path) and not remove_state("nlab12", tmp_path)
    assert read_state("nlab12", tmp_path) is None
    with pytest.raises(ValueError, match="not a natlab run id"):
        state_path("../etc/x", tmp_path)


def test_stale_temp_files(tmp_path: Path) -> None:
    import os
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f"nlab12.tmp{dead.pid}").write_text("{")
    (tmp_path / f"nlab13.tmp{os.getpid()}").write_text("{")  # its writer is alive
    (tmp_path / "other.tmp1").write_text("{")  # not ours
    assert stale_temp_files(tmp_path) == [tmp_path / f"nlab12.tmp{dead.pid}"]


def test_dead_owner_is_not_alive() -> None:
    state = new_state("nlab12", "home")
    assert not replace(state, owner_start=state.owner_start + 1).owner_alive()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_planned_ifindexes_differ_across_each_link(name: str) -> None:
    from topologies.mininet_net import plan_ifindexes

    t = preset(name)
    indexes = interface_indexes(t)
    assert sorted(indexes.values()) == list(range(2, 2 + len(indexes)))
    for h in t.hosts:
        for intf in h.interfaces:
            assert (h.name, intf.name) in indexes
    plan = plan_ifindexes(t, "nlab12")
    assert sorted(plan.values()) == sorted(indexes.values())
    for i, h in enumerate(t.hosts):
        for intf in h.interfaces:
            assert plan[(host_node_name("nlab12", i), intf.name)] == indexes[(h.name, intf.name)]


def test_home_indexes() -> None:
    assert interface_indexes(preset("home")) == {
        ("laptop", "eth0"): 2,
        ("gateway", "lan0"): 3,
        ("gateway", "wan0"): 4,
        ("desktop", "eth0"): 5,
    }


def test_interface_macs_are_unicast_and_local() -> None:
    from topologies.mininet_net import interface_mac

    assert interface_mac(IPv4Address("192.168.1.8")) == "02:00:c0:a8:01:08"
    assert interface_mac(IPv4Address("192.168.1.8"), bridge_port=True) == "06:00:c0:a8:01:08"
    for mac in (
        interface_mac(IPv4Address("10.0.0.1")),
        interface_mac(IPv4Address("10.0.0.1"), True),
    ):
        first = int(mac.split(":")[0], 16)
        assert first & 0x02 and not first & 0x01


def test_docs_example_parses() -> None:
    """The full example in docs/topologies.md stays valid."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "topologies.md").read_text()
    blocks = doc.split("```toml\n")[1:]
    full = next(b.split("```")[0] for b in blocks if "[[topology.links]]" in b)
    t = topology_from_mapping(tomllib.loads(full)["topology"], "docs")
    assert [s.bridged for s in t.segments] == [False, True]
    assert t.gateway_host.forwarding
