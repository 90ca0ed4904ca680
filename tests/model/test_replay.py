"""The replay's pairing of each captured input with the kernel's output for it.

The model adopts the kernel's pick (a remapped port) from the packet the kernel sent for the
same input, and an outgoing packet no input explains is taken as sent by the gateway itself.
Both depend on finding the right kernel output: not the next one of the same protocol, but the
one that is this input forwarded (same IP id, length, payload, TCP sequence numbers, TTL one
less). The captures below are built by hand, so the kernel's behaviour is whatever the test
says; no root needed.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from experiments import craft
from experiments.judging.judgement import judge_observed
from experiments.judging.replay import replay
from experiments.model_config import model_config
from experiments.observed import Observed, Snapshot, WirePacket
from experiments.spec import Spec, spec_from_mapping
from nat.listing import parse_line
from nat.packet import Packet, parse

SERVER = IPv4Address("203.0.113.10")
GW_WAN = IPv4Address("203.0.113.1")
CLIENT = {i: IPv4Address(f"192.168.1.{10 + i}") for i in range(1, 5)}
RELEASE = "6.18.44"


def _spec(rules: str, sysctls: dict[str, str] | None = None) -> Spec:
    return spec_from_mapping({
        "name": "replay-pairing", "topology": "lan", "rules": rules,
        "sysctls": sysctls or {},
        "steps": [{"action": "udp", "from": "client1", "to": "server", "sport": 40000,
                   "dport": 5000, "payload": "a"}],
    }, Path("replay-pairing.toml"))


MASQ = "*nat\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n"


def _in(t: float, pkt: Packet) -> WirePacket:
    return WirePacket(t, "lan0", "in", pkt.to_bytes())


def _out(t: float, pkt: Packet) -> WirePacket:
    return WirePacket(t, "wan0", "out", pkt.to_bytes())


def _client(i: int, payload: bytes, ident: int = 0) -> Packet:
    return craft.udp(CLIENT[i], 40000, SERVER, 5000, payload, ident=ident)


def _masqueraded(port: int, payload: bytes, ident: int = 0) -> Packet:
    """What the kernel sends on wan0 for a client's datagram: source 203.0.113.1:port."""
    return craft.udp(GW_WAN, port, SERVER, 5000, payload, ttl=63, ident=ident)


def test_outputs_in_flight_out_of_order_are_paired_by_content() -> None:
    """client2 and client3 clash with client1's port; both are in flight when the kernel's
    outputs appear, client3's first (two CPUs). Each input must adopt its own output's port,
    and the model's packets must then equal the kernel's, whatever the capture order."""
    config = model_config(_spec(MASQ), RELEASE, {})
    packets = [
        _in(0.10, _client(1, b"one")), _out(0.11, _masqueraded(40000, b"one")),
        _in(0.20, _client(2, b"two")), _in(0.21, _client(3, b"three")),
        _out(0.22, _masqueraded(51003, b"three")), _out(0.23, _masqueraded(51002, b"two")),
    ]
    pred = replay(config, packets, [("final", 1.0)])
    picks = {c.packet_index: c.kernel for c in pred.choices}
    assert "sport=51002" in picks[2] and "sport=51003" in picks[3], picks
    assert all(c.allowed_kernel for c in pred.choices)
    kernel_out = [p.data for p in packets if p.direction == "out"]
    assert [data for _, _, data in pred.sent] == kernel_out
    replies = {str(e.orig.src): e.reply.dport for _, _, es in pred.snapshots for e in es}
    assert replies == {str(CLIENT[1]): 40000, str(CLIENT[2]): 51002, str(CLIENT[3]): 51003}


def test_a_packet_the_kernel_dropped_takes_no_other_output() -> None:
    """The kernel dropped client2's datagram (nothing sent for it); client3's output follows.
    client2 must not adopt client3's port, and client3 must still find its own output."""
    config = model_config(_spec(MASQ), RELEASE, {})
    packets = [
        _in(0.10, _client(1, b"one")), _out(0.11, _masqueraded(40000, b"one")),
        _in(0.20, _client(2, b"two")),
        _in(0.30, _client(3, b"three")), _out(0.31, _masqueraded(51003, b"three")),
    ]
    pred = replay(config, packets, [])
    by_index = {c.packet_index: c for c in pred.choices}
    assert by_index[2].kernel == "" and not by_index[2].allowed_kernel
    assert "sport=51003" in by_index[3].kernel and by_index[3].allowed_kernel


FORWARD_DROP_CLIENT1 = (
    "*filter\n-A FORWARD -s 192.168.1.11 -j DROP\nCOMMIT\n" + MASQ
)


def test_a_forwarded_packet_the_model_dropped_is_not_explained_as_the_gateways_own() -> None:
    """The model drops client1's datagram (FORWARD DROP) where this kernel forwarded it,
    masqueraded, so its source is the gateway's address. The entry has expired by the end
    (udp timeout 1 s), so only the packet shows the difference: it must be reported as sent
    by the kernel and not by the model, never replayed as a packet the gateway sent itself."""
    spec = _spec(FORWARD_DROP_CLIENT1, {"net.netfilter.nf_conntrack_udp_timeout": "1"})
    packets = (_in(0.10, _client(1, b"one")), _out(0.11, _masqueraded(40000, b"one")))
    observed = Observed(RELEASE, {}, (Snapshot("final", 5.0, ()),), packets)
    j = judge_observed(spec, observed)
    assert j.status == "MISMATCH", j.render()
    assert [(d.where, d.field, d.model) for d in j.diffs] == [
        ("packet out wan0 #1", "sent", "(not sent)")]
    assert j.prediction.sent == ()


def test_the_gateways_own_reply_is_still_replayed() -> None:
    """The control for the pairing: a packet the gateway's own stack sent (a REDIRECTed
    service's answer) has no input it is the forward of, and the model sends it through
    LOCAL_OUT and POST_ROUTING, un-NATed back to the port the client asked for."""
    rules = "*nat\n-A PREROUTING -i lan0 -p udp --dport 53 -j REDIRECT --to-ports 5353\nCOMMIT\n"
    config = model_config(_spec(rules), RELEASE, {})
    gw_lan = IPv4Address("192.168.1.1")
    query = craft.udp(CLIENT[1], 40000, gw_lan, 53, b"q")
    answer_seen = craft.udp(gw_lan, 53, CLIENT[1], 40000, b"q")   # echoes the payload
    packets = [_in(0.10, query), WirePacket(0.11, "lan0", "out", answer_seen.to_bytes())]
    pred = replay(config, packets, [("final", 1.0)])
    assert [(i, iface, data) for i, iface, data in pred.sent] == [(1, "lan0", packets[1].data)]
    assert [j.verdict for j in pred.journeys] == ["LOCAL", "ACCEPT"]
    (entry,) = pred.snapshots[0][2]
    assert entry == parse_line(
        "udp 17 29 src=192.168.1.11 dst=192.168.1.1 sport=40000 dport=53 src=192.168.1.1 "
        "dst=192.168.1.11 sport=5353 dport=40000 mark=0 use=1")


def test_the_crafted_kernel_output_is_a_forwarded_copy() -> None:
    """Sanity of the fixtures: each crafted kernel output parses, with the TTL one less."""
    assert parse(_masqueraded(1, b"x").to_bytes()).ip.ttl == _client(1, b"x").ip.ttl - 1
