"""The gateway's walk against kernel-semantics.md, for the cases the spec library does not
reach: built with craft packets and a modelled gateway, no root."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from experiments import craft
from experiments.model_config import model_config
from experiments.spec import spec_from_mapping
from nat.pipeline import Gateway
from nat.status import Status

SERVER = IPv4Address("203.0.113.10")
ROUTER = IPv4Address("203.0.113.254")      # another router on the WAN segment
CLIENT1 = IPv4Address("192.168.1.11")
GW_WAN = IPv4Address("203.0.113.1")


def _gateway(rules: str) -> Gateway:
    spec = spec_from_mapping({
        "name": "pipeline-check", "topology": "lan", "rules": rules,
        "steps": [{"action": "udp", "from": "client1", "to": "server", "sport": 40000,
                   "dport": 5000, "payload": "a"}],
    }, Path("pipeline-check.toml"))
    return Gateway(model_config(spec, "6.18.44", {}))


MASQ = "*nat\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n"
NAT_NO_RULE = "*nat\n-A POSTROUTING -o lan0 -j MASQUERADE\nCOMMIT\n"   # never binds here


def _flow_then_icmp(rules: str, type_: int, code: int) -> tuple[Gateway, str, Status]:
    """client1's datagram goes out (and is answered, so the entry is confirmed and NAT is
    done for both manip types); then the WAN sends an ICMP error quoting what it saw."""
    gw = _gateway(rules)
    out = gw.receive(craft.udp(CLIENT1, 40000, SERVER, 5000, b"a"), "lan0", 1.0)
    assert out.verdict == "ACCEPT" and out.packet_out is not None
    seen = out.packet_out
    answer = craft.udp(SERVER, 5000, seen.ip.src, 40000, b"b")
    assert gw.receive(answer, "wan0", 1.1).verdict == "ACCEPT"
    error = craft.icmp_error(ROUTER, seen, type_, code)
    journey = gw.receive(error, "wan0", 1.2)
    (conn,) = gw.table.conns(1.2)
    return gw, journey.verdict, conn.status


def test_an_icmp_redirect_about_a_natted_flow_is_dropped() -> None:
    """nf_nat_icmp_reply_translation(): a redirect (type 5) RELATED to an entry with SRC_NAT
    or DST_NAT is dropped (kernel-semantics 5.4), not translated and forwarded."""
    _, verdict, status = _flow_then_icmp(MASQ, 5, 1)
    assert status & Status.SRC_NAT
    assert verdict == "DROP"


def test_an_icmp_redirect_about_an_un_natted_flow_passes() -> None:
    """The same redirect about a flow whose NAT is done (null bindings) but changed nothing:
    it goes on, untouched."""
    _, verdict, status = _flow_then_icmp(NAT_NO_RULE, 5, 1)
    assert status & Status.SRC_NAT_DONE and status & Status.DST_NAT_DONE
    assert not status & (Status.SRC_NAT | Status.DST_NAT)
    assert verdict == "ACCEPT"


def test_a_destination_unreachable_about_a_natted_flow_is_translated() -> None:
    """The control: any other error about the NATed flow is translated and forwarded."""
    _, verdict, _ = _flow_then_icmp(MASQ, 3, 3)
    assert verdict == "ACCEPT"
