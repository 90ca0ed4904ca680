"""REJECT's reset (nat/reject.py, nat/pipeline.py) and the refusal of the answers the model
does not build (nat/rules/modelled.py).

The fields are the ones nf_reject_iphdr_put / nf_reject_ip_tcphdr_put write; the library
specs reject-tcp-reset-* compare them byte for byte with the kernel's capture."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given

from experiments import craft
from experiments.cli import main
from experiments.model_config import model_config
from experiments.spec import spec_from_mapping
from nat.checksum import checksums_ok, with_fresh_checksums
from nat.packet import Packet, TcpHeader
from nat.pipeline import Gateway
from nat.reject import ACK, FIN, RST, SYN, no_reset_reason, tcp_reset
from nat.rules.ast import UnsupportedRule
from nat.rules.iptables import parse_iptables_restore
from nat.rules.modelled import check_modelled
from nat.rules.nft import parse_nft
from nat.status import TcpState
from tests.model.packet_strategies import tcp_packets

CLIENT1 = IPv4Address("192.168.1.11")
SERVER = IPv4Address("203.0.113.10")


@given(tcp_packets())
def test_the_reset_answers_any_tcp_segment_that_is_not_a_reset(pkt: Packet) -> None:
    tcp = pkt.tcp
    rst = tcp_reset(pkt)
    if tcp.flags & RST or pkt.ip.frag & 0x1FFF:
        assert rst is None and no_reset_reason(pkt) is not None
        return
    assert rst is not None
    assert (rst.ip.src, rst.ip.dst, rst.tcp.sport, rst.tcp.dport) == \
        (pkt.ip.dst, pkt.ip.src, tcp.dport, tcp.sport)
    assert (rst.ip.ident, rst.ip.frag, rst.ip.ttl, rst.ip.tos, rst.ip.total_length) == \
        (0, 0x4000, 64, 0, 40)
    assert (rst.tcp.window, rst.tcp.urgent, rst.tcp.options, rst.payload) == (0, 0, b"", b"")
    assert checksums_ok(rst) == {"ip": True, "l4": True}
    if tcp.flags & ACK:
        assert (rst.tcp.seq, rst.tcp.ack, rst.tcp.flags) == (tcp.ack, 0, RST)
    else:
        occupied = len(pkt.payload) + bool(tcp.flags & SYN) + bool(tcp.flags & FIN)
        assert (rst.tcp.seq, rst.tcp.ack, rst.tcp.flags) == \
            (0, (tcp.seq + occupied) % 2**32, RST | ACK)


def test_no_reset_for_a_bad_checksum() -> None:
    syn = craft.tcp(CLIENT1, 40000, SERVER, 443, SYN, seq=7)
    broken = Packet(syn.ip, TcpHeader(40000, 443, 7, 0, SYN, checksum=syn.tcp.checksum ^ 1))
    assert tcp_reset(broken) is None and no_reset_reason(broken) == "bad TCP checksum"
    assert tcp_reset(with_fresh_checksums(broken)) is not None


def _gateway(rules: str, topology: str = "lan") -> Gateway:
    spec = spec_from_mapping({
        "name": "reject-check", "topology": topology, "rules": rules,
        "steps": [{"action": "udp", "from": "client1", "to": "server", "sport": 40000,
                   "dport": 5000, "payload": "a"}],
    }, Path("reject-check.toml"))
    return Gateway(model_config(spec, "6.18.44", {}))


RESET_443 = ("*filter\n-A FORWARD -p tcp --dport 443 --tcp-flags PSH PSH "
             "-j REJECT --reject-with tcp-reset\nCOMMIT\n"
             "*nat\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n")


def test_a_rejected_syn_is_answered_out_of_its_incoming_side_and_leaves_no_entry() -> None:
    gw = _gateway("*filter\n-A FORWARD -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n")
    syn = craft.tcp(CLIENT1, 41000, SERVER, 443, SYN, seq=1000)
    j = gw.receive(syn, "lan0", 1.0)
    assert j.verdict == "DROP" and len(j.answers) == 1
    (answer,) = j.answers
    assert answer.verdict == "ACCEPT" and answer.out_iface == "lan0"
    assert answer.packet_out == tcp_reset(craft.tcp(CLIENT1, 41000, SERVER, 443, SYN, seq=1000,
                                                    ttl=63))
    assert gw.entries(1.0) == []


def test_a_rejected_segment_of_an_established_flow_closes_its_entry() -> None:
    gw = _gateway(RESET_443)
    gw.receive(craft.tcp(CLIENT1, 41000, SERVER, 443, SYN, seq=100), "lan0", 1.0)
    gw.receive(craft.tcp(SERVER, 443, IPv4Address("203.0.113.1"), 41000, SYN | ACK, seq=500,
                         ack=101), "wan0", 1.1)
    gw.receive(craft.tcp(CLIENT1, 41000, SERVER, 443, ACK, seq=101, ack=501), "lan0", 1.2)
    j = gw.receive(craft.tcp(CLIENT1, 41000, SERVER, 443, ACK | 0x08, seq=101, ack=501,
                             payload=b"hello"), "lan0", 1.3)
    (answer,) = j.answers
    assert answer.packet_out is not None
    assert (answer.packet_out.tcp.seq, answer.packet_out.tcp.flags) == (501, RST)
    (conn,) = gw.table.conns(1.3)
    assert conn.tcp_state() is TcpState.CLOSE and conn.timeout == pytest.approx(11.3)


@pytest.mark.parametrize(("rules", "parse", "construct"), [
    ("*filter\n-A INPUT -p udp -j REJECT\nCOMMIT\n", parse_iptables_restore,
     "REJECT --reject-with icmp-port-unreachable"),
    ("*filter\n-A FORWARD -j REJECT --reject-with icmp-admin-prohibited\nCOMMIT\n",
     parse_iptables_restore, "REJECT --reject-with icmp-admin-prohibited"),
    ("table ip t {\n chain c {\n  type filter hook input priority 0;\n"
     "  reject with icmp type host-unreachable\n }\n}\n", parse_nft,
     "reject (icmp-host-unreachable)"),
])
def test_answers_the_model_does_not_build_are_refused_by_line(rules: str, parse: object,
                                                              construct: str) -> None:
    assert callable(parse)
    ruleset = parse(rules)
    with pytest.raises(UnsupportedRule) as e:
        check_modelled(ruleset)
    assert construct in str(e.value) and "not supported by the model" in str(e.value)
    assert e.value.lineno in (2, 4)


def test_natlab_check_names_the_refused_reject(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "icmp-reject.toml"
    spec.write_text('name = "icmp-reject"\ntopology = "home"\nrules = """\n*filter\n'
                    '-A FORWARD -p udp -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n'
                    '"""\n[[steps]]\naction = "udp"\nfrom = "laptop"\nto = "desktop"\n'
                    'sport = 1\ndport = 2\npayload = "x"\n')
    assert main(["check", "--model", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "REJECT --reject-with icmp-host-prohibited" in err and "rules" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
