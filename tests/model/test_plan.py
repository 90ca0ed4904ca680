"""The plan: a spec's steps resolved once (addresses, listeners, bytes, crafted packets), the
one input of both the kernel run and the model run."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from experiments import craft
from experiments.plan import (
    PING_PAYLOAD,
    Checkpoint,
    Flow,
    Ping,
    RawPacket,
    Sleep,
    TcpFlow,
    UdpFlow,
    listener_hosts,
    plan,
    resolve_address,
)
from experiments.spec import Spec, load_spec, spec_from_mapping
from nat.packet import parse
from topologies.presets import HOME, LAN

SPECS = sorted((Path(__file__).parents[2] / "experiments" / "specs").glob("*.toml"))
LAPTOP = IPv4Address("192.168.1.8")
GW_LAN = IPv4Address("192.168.1.9")
DESKTOP = IPv4Address("203.0.113.10")


def _spec(*steps: dict[str, Any], topology: str = "home") -> Spec:
    return spec_from_mapping({"name": "plan-check", "topology": topology, "steps": list(steps)},
                             Path("plan-check.toml"))


def _one(step: dict[str, Any], topology: str = "home") -> Any:
    (action,) = plan(_spec(step, topology=topology)).actions
    return action


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_library_spec_plans_one_action_per_step(path: Path) -> None:
    spec = load_spec(path)
    p = plan(spec)
    assert len(p.actions) == len(spec.steps)
    addresses = {i.ip for h in spec.topology.hosts for i in h.interfaces}
    names = {h.name for h in spec.topology.hosts}
    steps: tuple[Any, ...] = spec.steps
    for step, action in zip(steps, p.actions, strict=True):
        assert action.action == step.action
        with pytest.raises(dataclasses.FrozenInstanceError):
            action.x = 1  # type: ignore[union-attr]
        if isinstance(action, Flow | Ping):
            assert action.sender == step.from_
            assert action.src == spec.topology.host(action.sender).interfaces[0].ip
            to = step.to
            assert action.dst == (IPv4Address(to) if to not in names else
                                  spec.topology.host(to).interfaces[0].ip)
        if isinstance(action, Flow):
            assert set(action.listeners) <= names
            assert (action.listeners == ()) == (not step.listen)
            assert action.sport == step.sport
        if isinstance(action, RawPacket):
            assert action.data == action.packet.to_bytes()
            assert parse(action.data) == action.packet
            assert action.dst in addresses or action.dst == action.packet.ip.dst
    assert p.checkpoints() == spec.checkpoints()


def test_udp_flow_resolved() -> None:
    a = _one({"action": "udp", "from": "desktop", "to": "gateway", "sport": 40000,
              "dport": 9999, "payload": "héllo", "reply": "back", "count": 3,
              "interval": 0.5, "server_port": 53})
    assert a == UdpFlow(sender="desktop", src=DESKTOP, dst=GW_LAN, sport=40000, dport=9999,
                        listeners=("laptop",), listen_port=53, reply=b"back",
                        payload="héllo".encode(), count=3, interval=0.5)


def test_udp_flow_without_listener_or_reply() -> None:
    a = _one({"action": "udp", "from": "laptop", "to": "203.0.113.10", "sport": 1,
              "dport": 2, "listen": False})
    assert isinstance(a, UdpFlow)
    assert (a.dst, a.listeners, a.listen_port, a.reply, a.payload) == (DESKTOP, (), 2, None,
                                                                       b"")


def test_tcp_flow_resolved() -> None:
    a = _one({"action": "tcp", "from": "laptop", "to": "desktop", "sport": 40000,
              "dport": 443, "send": "GET", "reply": "OK", "close": "rst"})
    assert a == TcpFlow(sender="laptop", src=LAPTOP, dst=DESKTOP, sport=40000, dport=443,
                        listeners=("desktop",), listen_port=443, reply=b"OK", send=b"GET",
                        close="rst")
    assert isinstance(a, Flow)


def test_named_server_listens() -> None:
    a = _one({"action": "tcp", "from": "server", "to": "gateway", "sport": 40000,
              "dport": 80, "server": "client3"}, topology="lan")
    assert a.listeners == ("client3",)


def test_port_forward_listeners_are_every_other_host() -> None:
    a = _one({"action": "udp", "from": "server", "to": "203.0.113.1", "sport": 1, "dport": 2},
             topology="lan")
    assert a.listeners == ("client1", "client2", "client3", "client4")
    assert list(a.listeners) == listener_hosts(LAN, "server", "203.0.113.1", None)


def test_ping_resolved() -> None:
    a = _one({"action": "ping", "from": "laptop", "to": "desktop", "id": 4242, "count": 2,
              "interval": 0.01})
    assert a == Ping(sender="laptop", src=LAPTOP, dst=DESKTOP, ident=4242, count=2,
                     interval=0.01)
    assert a.payload == PING_PAYLOAD == bytes(range(56))


def test_raw_from_fields() -> None:
    a = _one({"action": "raw", "from": "laptop", "proto": "tcp", "dst": "desktop",
              "sport": 1234, "dport": 80, "flags": "SA", "seq": 7, "ttl": 9})
    want = craft.tcp(LAPTOP, 1234, DESKTOP, 80, 0x12, seq=7, ack=0, window=64240,
                     payload=b"", ttl=9)
    assert a == RawPacket(sender="laptop", packet=want, data=want.to_bytes())
    assert a.dst == DESKTOP


@pytest.mark.parametrize("window", [0, 1, 65535])
def test_raw_tcp_window_is_sent_as_written(window: int) -> None:
    """`window = 0` is a zero window, not "unset" (it used to become 64240)."""
    a = _one({"action": "raw", "from": "laptop", "proto": "tcp", "dst": "desktop",
              "sport": 1234, "dport": 80, "flags": "A", "window": window})
    assert isinstance(a, RawPacket)
    assert parse(a.data).tcp.window == window


def test_raw_from_hex_keeps_the_parsed_packet() -> None:
    pkt = craft.udp(IPv4Address("10.9.9.9"), 5, DESKTOP, 6, b"x", ident=77)
    a = _one({"action": "raw", "from": "laptop", "hex": pkt.to_bytes().hex()})
    assert a.packet == parse(pkt.to_bytes()) and a.data == pkt.to_bytes()
    assert a.packet.ip.src == IPv4Address("10.9.9.9")


def test_sleep_and_checkpoint() -> None:
    p = plan(_spec({"action": "sleep", "seconds": 1.5}, {"action": "checkpoint", "name": "c1"}))
    assert p.actions == (Sleep(1.5), Checkpoint("c1"))
    assert p.checkpoints() == ("c1",)


def test_resolve_address() -> None:
    assert resolve_address(HOME, "desktop") == DESKTOP
    assert resolve_address(HOME, "10.0.0.1") == IPv4Address("10.0.0.1")
