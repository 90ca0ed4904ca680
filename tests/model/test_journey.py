"""The seeds' "A DNAT Packet's Journey", step by step, out of the model (issue 3, item 10).

The seed DNAT scenario (desktop -> gateway:9999, DNAT to the laptop, the laptop answers) runs
through `run_on_model`; each packet's `Journey` must list the callbacks the kernel runs, in
the kernel's order, as `Step` values (hook, priority, the kernel function), and say what each
did. The statements at the end hold for every journey of every spec in the library.
"""

from __future__ import annotations

from dataclasses import fields
from ipaddress import IPv4Address

import pytest

from experiments import craft
from experiments.library import builtin_spec_paths
from experiments.model_config import model_ruleset, netview_for
from experiments.modelrun.run import ModelResult, run_on_model
from experiments.spec import load_spec
from nat.checksum import checksums_ok
from nat.hooks import Hook, Priority
from nat.journey import Journey, Step
from nat.packet import Packet, UdpHeader
from nat.pipeline import Gateway, GatewayConfig
from nat.status import Status
from nat.tuple import Proto, Tuple

SEED = next(p for p in builtin_spec_paths() if p.stem == "seed-dnat-udp")
DESKTOP, GATEWAY_WAN, LAPTOP = (IPv4Address(a) for a in
                                ("203.0.113.10", "192.168.1.9", "192.168.1.8"))
PRE, POST = Hook.PRE_ROUTING, Hook.POST_ROUTING

FIRST_PACKET = [
    (PRE, Priority.CONNTRACK, "nf_conntrack_in"),
    (PRE, Priority.NAT_DST, "nat PREROUTING"),          # the nat table's chain: DNAT target
    (PRE, Priority.NAT_DST, "nf_nat_manip_pkt"),
    (None, None, "ip_route_input"),
    (None, None, "ip_forward"),
    (POST, Priority.NAT_SRC, "nf_nat_setup_info"),      # no SNAT rule: the null binding
    (POST, Priority.CONNTRACK_CONFIRM, "__nf_conntrack_confirm"),
]
REPLY = [
    (PRE, Priority.CONNTRACK, "nf_conntrack_in"),
    (None, None, "ip_route_input"),
    (None, None, "ip_forward"),
    (POST, Priority.NAT_SRC, "nf_nat_manip_pkt"),
]


def _shape(j: Journey) -> list[tuple[Hook | None, int | None, str]]:
    return [(s.hook, s.priority, s.function) for s in j.steps]


@pytest.fixture(scope="module")
def seed() -> ModelResult:
    return run_on_model(load_spec(SEED))


@pytest.fixture(scope="module")
def first(seed: ModelResult) -> Journey:
    return seed.journeys[0]


@pytest.fixture(scope="module")
def reply(seed: ModelResult) -> Journey:
    return seed.journeys[1]


def test_two_packets_cross_the_gateway(seed: ModelResult) -> None:
    assert [(j.in_iface, j.verdict, j.out_iface) for j in seed.journeys] == \
        [("wan0", "ACCEPT", "lan0"), ("lan0", "ACCEPT", "wan0")]


def test_first_packet_callbacks_in_kernel_order(first: Journey) -> None:
    assert _shape(first) == FIRST_PACKET
    track, dnat, manip, route, forward, null, confirm = first.steps
    assert track.did.startswith("NEW: new entry, unconfirmed")
    assert "DNAT to 192.168.1.8" in dnat.did
    assert "nf_nat_setup_info DST: reply tuple altered: " \
           "src=192.168.1.8 dst=203.0.113.10 sport=9999 dport=37611" in dnat.did
    assert manip.did == "destination 192.168.1.9:9999 -> 192.168.1.8:9999"
    assert route.did == "forward to 192.168.1.8 out lan0"
    assert forward.did == "TTL 64 -> 63"
    assert null.did == "no rule bound SRC: null binding"     # the port stays: no clash
    assert confirm.did.startswith("confirmed")


def test_first_packet_headers(first: Journey) -> None:
    """Before: to the gateway's outside address; after: to the laptop, one hop older, with
    both checksums right; nothing else changed."""
    before, after = first.packet_in, first.packet_out
    assert after is not None
    assert (before.ip.dst, after.ip.dst) == (GATEWAY_WAN, LAPTOP)
    assert (before.ip.ttl, after.ip.ttl) == (64, 63)
    assert isinstance(after.l4, UdpHeader) and (after.l4.sport, after.l4.dport) == (37611, 9999)
    assert checksums_ok(before) == checksums_ok(after) == {"ip": True, "l4": True}
    assert _changed(before, after) == {"ip.dst", "ip.ttl", "ip.checksum", "l4.checksum"}
    assert after.payload == before.payload == b"hello laptop"


def test_first_packet_entry(first: Journey) -> None:
    e = first.entry
    assert e is not None and e.unreplied and not e.assured
    assert e.orig == Tuple(Proto.UDP, DESKTOP, GATEWAY_WAN, 37611, 9999)
    assert e.reply == Tuple(Proto.UDP, LAPTOP, DESKTOP, 9999, 37611)
    assert e.timeout == 30


def test_reply_callbacks_in_kernel_order(reply: Journey) -> None:
    """The reply finds the entry (ESTABLISHED_REPLY, first reply: SEEN_REPLY); no nat rule
    runs and nothing is bound again; the source is rewritten back at POST_ROUTING."""
    assert _shape(reply) == REPLY
    track, route, forward, manip = reply.steps
    assert track.did.startswith("ESTABLISHED_REPLY: found entry 1 in reply direction")
    assert "SEEN_REPLY" in track.did
    assert route.did == "forward to 203.0.113.10 out wan0"
    assert forward.did == "TTL 64 -> 63"
    assert manip.did == "source 192.168.1.8:9999 -> 192.168.1.9:9999"


def test_reply_headers_and_entry(reply: Journey) -> None:
    before, after = reply.packet_in, reply.packet_out
    assert after is not None
    assert (before.ip.src, after.ip.src) == (LAPTOP, GATEWAY_WAN)
    assert after.ip.dst == DESKTOP
    assert isinstance(after.l4, UdpHeader) and (after.l4.sport, after.l4.dport) == (9999, 37611)
    assert checksums_ok(after) == {"ip": True, "l4": True}
    assert _changed(before, after) == {"ip.src", "ip.ttl", "ip.checksum", "l4.checksum"}
    e = reply.entry
    assert e is not None and not e.unreplied and not e.assured and e.timeout == 30


def test_status_bits_along_the_way() -> None:
    """The entry's status as the kernel sets it: after the first packet CONFIRMED, DST_NAT and
    both *_NAT_DONE (the null binding marks SRC done); the reply adds SEEN_REPLY only."""
    spec = load_spec(SEED)
    gw = Gateway(GatewayConfig(netview_for(spec.topology), model_ruleset(spec)))
    gw.receive(craft.udp(DESKTOP, 37611, GATEWAY_WAN, 9999, b"hello laptop"), "wan0", 1.0)
    (conn,) = gw.table
    assert conn.status == (Status.CONFIRMED | Status.DST_NAT | Status.DST_NAT_DONE
                           | Status.SRC_NAT_DONE)
    gw.receive(craft.udp(LAPTOP, 9999, DESKTOP, 37611, b"hello desktop"), "lan0", 1.5)
    (conn,) = gw.table
    assert conn.status == (Status.SEEN_REPLY | Status.CONFIRMED | Status.DST_NAT
                           | Status.DST_NAT_DONE | Status.SRC_NAT_DONE)


def test_rendered_journey_reads_in_order(first: Journey) -> None:
    lines = first.render().splitlines()
    assert lines[0].startswith("t=") and "in wan0: UDP 203.0.113.10:37611 > 192.168.1.9:9999" \
        in lines[0]
    heads = [line.split()[:3] for line in lines[1:8]]
    assert heads == [["PRE_ROUTING", "-200", "nf_conntrack_in"],
                     ["PRE_ROUTING", "-100", "nat"],
                     ["PRE_ROUTING", "-100", "nf_nat_manip_pkt"],
                     ["routing", "ip_route_input", "forward"],
                     ["routing", "ip_forward", "TTL"],
                     ["POST_ROUTING", "100", "nf_nat_setup_info"],
                     ["POST_ROUTING", "INT_MAX", "__nf_conntrack_confirm"]]
    assert lines[8] == "  => out lan0: UDP 203.0.113.10:37611 > 192.168.1.8:9999 len=12"
    assert lines[9].startswith("  entry: udp      17 30 src=203.0.113.10 dst=192.168.1.9 ")


def _changed(a: Packet, b: Packet) -> set[str]:
    out = {f"ip.{f.name}" for f in fields(a.ip) if getattr(a.ip, f.name) != getattr(b.ip, f.name)}
    if a.l4 is not None and b.l4 is not None:
        out |= {f"l4.{f.name}" for f in fields(a.l4)
                if getattr(a.l4, f.name) != getattr(b.l4, f.name)}
    return out


# --- every journey of the library --------------------------------------------------------

# The order hooks come in on each path (net/ipv4: ip_rcv -> ip_forward / ip_local_deliver ->
# ip_output; locally sent: __ip_local_out -> ip_output).
RECEIVED_ORDER = {Hook.PRE_ROUTING: 0, Hook.LOCAL_IN: 1, Hook.FORWARD: 1, Hook.POST_ROUTING: 2}
SENT_ORDER = {Hook.LOCAL_OUT: 0, Hook.POST_ROUTING: 1}
# Sent to one of the gateway's own addresses: out to lo, then back in on lo.
LOOPED_ORDER = {Hook.LOCAL_OUT: 0, Hook.POST_ROUTING: 1, Hook.PRE_ROUTING: 2, Hook.LOCAL_IN: 3}
LIBRARY = builtin_spec_paths()


@pytest.fixture(scope="module")
def library() -> dict[str, ModelResult]:
    return {p.stem: run_on_model(load_spec(p)) for p in LIBRARY}


@pytest.mark.parametrize("name", [p.stem for p in LIBRARY])
def test_every_journey_runs_callbacks_in_hook_and_priority_order(
        name: str, library: dict[str, ModelResult]) -> None:
    journeys = library[name].journeys
    assert journeys
    for j in journeys:
        looped = j.in_iface == "lo"
        order = LOOPED_ORDER if looped else \
            RECEIVED_ORDER if j.in_iface is not None else SENT_ORDER
        hooked = [s for s in j.steps if s.hook is not None]
        keys = [(order[s.hook], s.priority) for s in hooked if s.hook is not None]
        assert keys == sorted(keys), j.render()
        if looped:
            # Confirmed at POST_ROUTING on the way out; the way back in keeps the entry.
            confirms = [s.hook for s in j.steps if s.function == "__nf_conntrack_confirm"]
            assert confirms in ([], [Hook.POST_ROUTING]), j.render()
            continue
        hooks = {s.hook for s in hooked}
        assert not (Hook.LOCAL_IN in hooks and hooks & {Hook.FORWARD, Hook.POST_ROUTING})
        confirms = [i for i, s in enumerate(j.steps) if s.function == "__nf_conntrack_confirm"]
        # Last, or followed only by the neighbour layer's note (UNRESOLVED).
        last = len(j.steps) - (2 if j.verdict == "UNRESOLVED" else 1)
        assert confirms in ([], [last]), j.render()
        if j.in_iface is not None and j.steps:
            # The routing decision comes after PRE_ROUTING and before any later hook.
            first_route = next((i for i, s in enumerate(j.steps) if s.hook is None), None)
            if first_route is not None:
                assert all(s.hook is PRE for s in j.steps[:first_route]
                           if s.hook is not None), j.render()
                assert all(s.hook is not PRE for s in j.steps[first_route:]), j.render()


@pytest.mark.parametrize("name", [p.stem for p in LIBRARY])
def test_nat_rules_only_for_a_connections_first_packet(
        name: str, library: dict[str, ModelResult]) -> None:
    """nf_nat_inet_fn consults the nat chains (or makes the null binding) only for NEW and
    RELATED packets; established traffic follows the binding."""
    for j in library[name].journeys:
        track = next((s for s in j.steps if s.function == "nf_conntrack_in"), None)
        if track is None or not track.did.startswith("ESTABLISHED"):
            continue
        binding = [s for s in j.steps
                   if s.function.startswith("nat ") or s.function == "nf_nat_setup_info"]
        assert binding == [], j.render()


def test_step_is_a_value() -> None:
    s = Step(PRE, Priority.CONNTRACK, "nf_conntrack_in", "NEW")
    assert s == Step(Hook.PRE_ROUTING, -200, "nf_conntrack_in", "NEW")
    assert s.render().split() == ["PRE_ROUTING", "-200", "nf_conntrack_in", "NEW"]
