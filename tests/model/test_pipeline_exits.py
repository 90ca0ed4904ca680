"""Every way out of the gateway's walk (nat/pipeline.py): each DROP exit, forwarding off,
MASQUERADE on a device without an address, and the 6.12+ TIME_WAIT eviction, built with craft
packets and a modelled gateway (no root). Each test checks the verdict *and* the step that
says why, so a walk that drops for another reason, or forwards where it must not, fails."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from experiments import craft
from experiments.model_config import model_config
from experiments.spec import spec_from_mapping
from nat.choice import Choice
from nat.hooks import Hook
from nat.journey import Journey
from nat.maniptype import ManipType
from nat.netdev import Device, NetView, RouteEntry
from nat.packet import Packet
from nat.pipeline import Gateway
from nat.status import TcpState
from nat.tuple import Proto, Tuple
from tests.model.test_pipeline import _gateway

SERVER = IPv4Address("203.0.113.10")
CLIENT1 = IPv4Address("192.168.1.11")
CLIENT2 = IPv4Address("192.168.1.12")
CLIENT3 = IPv4Address("192.168.1.13")
GW_WAN = IPv4Address("203.0.113.1")
GW_LAN = IPv4Address("192.168.1.1")
MASQ = "*nat\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n"


def _query(src: IPv4Address = CLIENT1, dst: IPv4Address = SERVER, ttl: int = 64) -> Packet:
    return craft.udp(src, 40000, dst, 5000, b"a", ttl=ttl)


def _why(j: Journey) -> list[str]:
    return [f"{s.function}: {s.did}" for s in j.steps]


def _dropped_by(j: Journey, function: str, did: str) -> None:
    assert j.verdict == "DROP" and j.packet_out is None, j.render()
    last = j.steps[-1]
    assert (last.function, did in last.did) == (function, True), j.render()


def _with_net(gw: Gateway, net: NetView) -> Gateway:
    return Gateway(replace(gw.config, net=net))


def test_the_control_forwards() -> None:
    j = _gateway(MASQ).receive(_query(), "lan0", 1.0)
    assert j.verdict == "ACCEPT" and j.out_iface == "wan0"
    assert j.packet_out is not None and j.packet_out.ip.src == GW_WAN


def test_forwarding_off_drops_what_is_not_local() -> None:
    """net.ipv4.ip_forward = 0: a packet for another host is dropped after PRE_ROUTING (and
    never reaches FORWARD); one for the gateway itself is still delivered."""
    gw = _gateway(MASQ)
    off = _with_net(gw, replace(gw.config.net, forwarding=False))
    j = off.receive(_query(), "lan0", 1.0)
    _dropped_by(j, "ip_route_input", "forwarding is off")
    assert not any(s.function == "ip_forward" for s in j.steps)
    assert off.entries(1.0) == []           # the unconfirmed entry never entered the table
    local = off.receive(_query(dst=GW_LAN), "lan0", 1.0)
    assert local.verdict == "LOCAL"


def test_no_route_drops() -> None:
    j = _gateway(MASQ).receive(_query(dst=IPv4Address("198.51.100.7")), "lan0", 1.0)
    _dropped_by(j, "ip_route_input", "no route to 198.51.100.7")


def test_ttl_1_is_not_forwarded() -> None:
    gw = _gateway(MASQ)
    _dropped_by(gw.receive(_query(ttl=1), "lan0", 1.0), "ip_forward", "TTL would reach 0")
    j = gw.receive(_query(ttl=2), "lan0", 1.1)
    assert j.verdict == "ACCEPT" and j.packet_out is not None and j.packet_out.ip.ttl == 1


def _nft_gateway(chain: str) -> Gateway:
    spec = spec_from_mapping({
        "name": "pipeline-check", "topology": "lan", "backend": "nft", "backends": ["nft"],
        "nft": "table ip gw {\n" + chain + "\n}\n",
        "steps": [{"action": "udp", "from": "client1", "to": "server", "sport": 40000,
                   "dport": 5000, "payload": "a"}],
    }, Path("pipeline-check.toml"))
    return Gateway(model_config(spec, "6.18.44", {}))


@pytest.mark.parametrize(("hook", "kind", "where"), [
    ("prerouting", "filter", Hook.PRE_ROUTING),
    ("prerouting", "nat", Hook.PRE_ROUTING),
    ("forward", "filter", Hook.FORWARD),
    ("postrouting", "filter", Hook.POST_ROUTING),
    ("postrouting", "nat", Hook.POST_ROUTING),
])
def test_a_drop_rule_at_each_forwarding_hook(hook: str, kind: str, where: Hook) -> None:
    """nft base chains (iptables has no filter chain at PRE/POSTROUTING): a drop at each hook
    a forwarded packet passes ends its walk there."""
    # A nat chain runs only for tracked packets (nf_nat_inet_fn accepts a packet without a
    # ct), and a nat chain alone takes no conntrack reference: `ct state` does.
    ct = " ct state new" if kind == "nat" else ""
    gw = _nft_gateway(f"chain pre {{ type {kind} hook {hook} priority 0; policy accept; "
                      f'iifname "lan0"{ct} drop }}')
    j = gw.receive(_query(), "lan0", 1.0)
    assert j.verdict == "DROP" and j.packet_out is None, j.render()
    last = j.steps[-1]
    assert (last.hook, last.did.endswith("DROP: dropped")) == (where, True), j.render()
    assert gw.entries(1.0) == []        # dropped before confirm: the entry vanished


def test_iptables_drop_in_forward() -> None:
    j = _gateway("*filter\n-A FORWARD -i lan0 -j DROP\nCOMMIT\n").receive(_query(), "lan0", 1.0)
    _dropped_by(j, "filter FORWARD", "dropped")


def test_a_drop_in_input_stops_local_delivery() -> None:
    j = _gateway("*filter\n-A INPUT -i lan0 -j DROP\nCOMMIT\n").receive(
        _query(dst=GW_LAN), "lan0", 1.0)
    _dropped_by(j, "filter INPUT", "dropped")


def test_a_drop_in_output_and_no_route_for_the_gateways_own_packet() -> None:
    gw = _gateway("*filter\n-A OUTPUT -o wan0 -j DROP\nCOMMIT\n")
    _dropped_by(gw.send_local(_query(src=GW_WAN), 1.0), "filter OUTPUT", "dropped")
    gw = _gateway(MASQ)
    sent = gw.send_local(_query(src=GW_WAN), 1.0)
    assert sent.verdict == "ACCEPT" and sent.out_iface == "wan0"
    _dropped_by(gw.send_local(_query(src=GW_WAN, dst=IPv4Address("198.51.100.7")), 1.0),
                "ip_route_input", "no route")


def test_masquerade_on_a_device_without_an_address() -> None:
    """wan0 has no address (a route still sends the server's subnet out of it): the kernel
    drops ("wan0 ate my IP address"); the model says so at nat POSTROUTING."""
    gw = _gateway(MASQ)
    lan0, wan0 = gw.config.net.devices
    bare = NetView((lan0, Device(wan0.name, wan0.index, ())),
                   (RouteEntry(IPv4Interface("203.0.113.0/24").network, "wan0"),))
    j = _with_net(gw, bare).receive(_query(), "lan0", 1.0)
    _dropped_by(j, "nat POSTROUTING", "wan0 has no address: dropped")


def test_redirect_on_a_device_without_an_address() -> None:
    gw = _gateway("*nat\n-A PREROUTING -i lan0 -p udp -j REDIRECT --to-ports 53\nCOMMIT\n")
    lan0, wan0 = gw.config.net.devices
    bare = NetView((Device(lan0.name, lan0.index, ()), wan0))
    j = _with_net(gw, bare).receive(_query(), "lan0", 1.0)
    _dropped_by(j, "nat PREROUTING", "incoming device has no address: dropped")


def _tcp(gw: Gateway, src: IPv4Address, flags: str, seq: int, ack: int, now: float,
         reply_to: int | None = None) -> Journey:
    """One segment: from the client (reply_to None) or, from the server, to the gateway's
    port `reply_to`."""
    if reply_to is None:
        pkt = craft.tcp(src, 40000, SERVER, 443, craft.tcp_flags(flags), seq=seq, ack=ack)
        return gw.receive(pkt, "lan0", now)
    pkt = craft.tcp(SERVER, 443, GW_WAN, reply_to, craft.tcp_flags(flags), seq=seq, ack=ack)
    return gw.receive(pkt, "wan0", now)


def _connect_and_close(gw: Gateway, client: IPv4Address, now: float) -> int:
    """A whole TCP connection from `client`, closed by both ends: its entry in TIME_WAIT.
    Returns the port the gateway gave it."""
    syn = _tcp(gw, client, "S", 100, 0, now)
    assert syn.verdict == "ACCEPT" and syn.packet_out is not None
    port = syn.packet_out.l4.sport       # type: ignore[union-attr]
    for flags, seq, ack, server in (("SA", 500, 101, True), ("A", 101, 501, False),
                                    ("FA", 101, 501, False), ("FA", 501, 102, True),
                                    ("A", 102, 502, False)):
        j = _tcp(gw, client, flags, seq, ack, now, reply_to=port if server else None)
        assert j.verdict == "ACCEPT", j.render()
    assert j.entry is not None and j.entry.state is TcpState.TIME_WAIT
    return int(port)


def test_time_wait_eviction_through_the_walk() -> None:
    """MASQUERADE --to-ports 1000-1001, two closed connections (TIME_WAIT on both ports):
    the third client's SYN, given port 1001 (the kernel's pick in the live run of
    test_nat_core's twin test), evicts the TIME_WAIT entry there (6.12+), and the walk says
    so; the table then holds the new entry and the other TIME_WAIT one."""
    gw = _gateway("*nat\n-A POSTROUTING -o wan0 -p tcp -j MASQUERADE --to-ports 1000-1001\n"
                  "COMMIT\n")
    ports = [_connect_and_close(gw, c, 1.0) for c in (CLIENT1, CLIENT2)]
    assert sorted(ports) == [1000, 1001]
    owner = {p: c for p, c in zip(ports, (CLIENT1, CLIENT2), strict=True)}
    live = Tuple(Proto.TCP, GW_WAN, SERVER, 1001, 443)

    def kernel_pick(choice: Choice[Tuple], manip: ManipType) -> Tuple:
        if manip is ManipType.DST:               # PREROUTING's null binding
            return choice.default
        assert choice.contains(live)
        return live

    # seq 5000 lies after the old connections' last (102): nf_seq_has_advanced() allows it
    syn = craft.tcp(CLIENT3, 40000, SERVER, 443, craft.tcp_flags("S"), seq=5000)
    j = gw.receive(syn, "lan0", 2.0, kernel_pick)
    assert j.verdict == "ACCEPT", j.render()
    evictions = [s for s in j.steps if s.function == "nf_nat_used_tuple_harder"]
    assert len(evictions) == 1 and evictions[0].did.startswith("evicted entry #")
    assert j.packet_out is not None and j.packet_out.l4.sport == 1001  # type: ignore[union-attr]
    left = {(e.orig.src, e.state) for e in gw.entries(2.0)}
    assert left == {(owner[1000], TcpState.TIME_WAIT), (CLIENT3, TcpState.SYN_SENT)}
