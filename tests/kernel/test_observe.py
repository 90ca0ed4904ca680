"""Reading the gateway's conntrack table and events on the real kernel.

Real `conntrack -L` output for UDP (replied, unreplied), TCP in SYN_SENT, ESTABLISHED and
TIME_WAIT, and ICMP, NATed and not, parsed into `Entry` and rendered back byte for byte;
`conntrack -E` events from the first packet after start() to the last one before stop().
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from experiments import craft
from experiments.kernel.conntrack import EventLog, ObserveError, flush, parse_event_line, snapshot
from experiments.kernel.rules import load_rules
from experiments.kernel.traffic import Traffic
from nat.entry import Entry
from nat.listing import render
from nat.status import TcpState
from nat.tuple import Proto, Tuple
from topologies.mininet_net import Network

# MASQUERADE for TCP and ICMP only, so UDP towards the desktop leaves un-NATed.
RULES = """*nat
-A PREROUTING -i wan0 -p udp --dport 9999 -j DNAT --to-destination 192.168.1.8
-A POSTROUTING -o wan0 -p tcp -j MASQUERADE
-A POSTROUTING -o wan0 -p icmp -j MASQUERADE
COMMIT
"""
# The desktop ignores SYNs to 8080: the gateway's entry stays in SYN_SENT.
DESKTOP_RULES = """*filter
-A INPUT -p tcp --syn --dport 8080 -j DROP
COMMIT
"""
LAPTOP = IPv4Address("192.168.1.8")
GW_LAN = IPv4Address("192.168.1.9")
GW_WAN = IPv4Address("203.0.113.1")
DESKTOP = IPv4Address("203.0.113.10")
UDP, TCP = Proto.UDP, Proto.TCP


@pytest.fixture(scope="module")
def traffic(home_net: Network) -> Iterator[Traffic]:
    load_rules(home_net.gateway, "iptables", RULES)
    load_rules(home_net.host("desktop"), "iptables", DESKTOP_RULES)
    with Traffic(home_net.hosts, home_net.topology) as tr:
        yield tr


@pytest.fixture(autouse=True)
def empty_table(home_net: Network, traffic: Traffic) -> None:
    flush(home_net.gateway)


def by_orig(entries: list[Entry]) -> dict[Tuple, Entry]:
    return {e.orig: e for e in entries}


def test_empty_table(home_net: Network) -> None:
    assert snapshot(home_net.gateway) == ([], [])


def test_real_listing_parses_and_renders_back(home_net: Network, traffic: Traffic) -> None:
    assert traffic.udp(0, "desktop", GW_LAN, 37611, 9999, b"hello laptop",
                       reply=b"hello desktop", listeners=["laptop"]).completed
    assert traffic.udp(1, "laptop", DESKTOP, 40000, 5500, b"nobody", listeners=[]).completed
    syn = craft.tcp(LAPTOP, 40100, DESKTOP, 8080, 0x02, seq=12345).to_bytes()
    assert traffic.raw(2, "laptop", syn).completed
    assert traffic.tcp(3, "laptop", DESKTOP, 40200, 80, send=b"GET", reply=b"OK",
                       close="none", listeners=["desktop"]).completed
    assert traffic.tcp(4, "laptop", DESKTOP, 37611, 443, send=b"GET", reply=b"OK",
                       close="fin", listeners=["desktop"]).completed
    assert traffic.ping(5, "laptop", DESKTOP, 4242).completed

    lines, entries = snapshot(home_net.gateway)
    assert len(lines) == len(entries) == 6
    # Byte for byte: the parser loses nothing that conntrack printed.
    assert [render(e) for e in entries] == lines
    assert all(e.mark == 0 and e.use == 1 and e.zone == 0 for e in entries)
    got = by_orig(entries)

    dnat = got[Tuple(UDP, DESKTOP, GW_LAN, 37611, 9999)]
    assert dnat.reply == Tuple(UDP, LAPTOP, DESKTOP, 9999, 37611)
    assert (dnat.unreplied, dnat.assured, dnat.state) == (False, False, None)
    assert dnat.timeout is not None and 25 <= dnat.timeout <= 30

    plain = got[Tuple(UDP, LAPTOP, DESKTOP, 40000, 5500)]   # not NATed; answered by ICMP
    assert plain.reply == Tuple(UDP, DESKTOP, LAPTOP, 5500, 40000)
    assert (plain.unreplied, plain.assured) == (True, False)

    syn_sent = got[Tuple(TCP, LAPTOP, DESKTOP, 40100, 8080)]
    assert syn_sent.reply == Tuple(TCP, DESKTOP, GW_WAN, 8080, 40100)
    assert (syn_sent.state, syn_sent.unreplied, syn_sent.assured) == (
        TcpState.SYN_SENT, True, False)
    assert syn_sent.timeout is not None and 115 <= syn_sent.timeout <= 120

    est = got[Tuple(TCP, LAPTOP, DESKTOP, 40200, 80)]
    assert (est.state, est.unreplied, est.assured) == (TcpState.ESTABLISHED, False, True)
    assert est.timeout is not None and 431990 <= est.timeout <= 432000

    tw = got[Tuple(TCP, LAPTOP, DESKTOP, 37611, 443)]
    assert tw.reply == Tuple(TCP, DESKTOP, GW_WAN, 443, 37611)
    assert (tw.state, tw.assured) == (TcpState.TIME_WAIT, True)
    assert tw.timeout is not None and 115 <= tw.timeout <= 120

    icmp = got[Tuple.icmp(LAPTOP, DESKTOP, 8, 0, 4242)]
    assert icmp.reply == Tuple.icmp(DESKTOP, GW_WAN, 0, 0, 4242)
    assert (icmp.unreplied, icmp.assured, icmp.state) == (False, False, None)
    assert icmp.timeout is not None and 25 <= icmp.timeout <= 30


def test_event_log_from_first_to_last_packet(home_net: Network, traffic: Traffic,
                                             tmp_path: Path) -> None:
    before = time.time()
    log = EventLog(home_net.gateway, tmp_path / "events.txt")
    with log:
        # Straight after start(): the subscription is already in place.
        assert traffic.udp(0, "desktop", GW_LAN, 37612, 9999, b"x", reply=b"y",
                           listeners=["laptop"]).completed
        assert traffic.tcp(1, "laptop", DESKTOP, 37613, 443, send=b"a", reply=b"b",
                           close="fin", listeners=["desktop"]).completed
        flush(home_net.gateway)   # DESTROY events, right before stop(): must not be lost
    after = time.time()
    assert log.drained
    events = log.events()
    assert "127.255.0.1" in log.path.read_text()          # the marker, in the file only
    assert all("127.255.0.1" not in e.line for e in events)
    assert all(e.error is None and e.entry is not None for e in events), events
    assert all(before <= e.time <= after for e in events)
    assert [e.time for e in events] == sorted(e.time for e in events)

    udp = [e for e in events if e.entry is not None and e.entry.orig.proto == UDP]
    assert [e.type for e in udp] == ["NEW", "UPDATE", "DESTROY"]
    assert udp[0].entry is not None
    assert udp[0].entry.orig == Tuple(UDP, DESKTOP, GW_LAN, 37612, 9999)
    assert udp[0].entry.reply == Tuple(UDP, LAPTOP, DESKTOP, 9999, 37612)
    assert udp[0].entry.unreplied

    tcp = [e for e in events if e.entry is not None and e.entry.orig.proto == TCP]
    states = [e.entry.state for e in tcp if e.entry is not None and e.type != "DESTROY"]
    assert tcp[0].type == "NEW" and states[0] == TcpState.SYN_SENT
    assert TcpState.ESTABLISHED in states and states[-1] == TcpState.TIME_WAIT
    assert states == sorted(states, key=lambda s: (s or 0))   # the close only moves forward
    assert tcp[-1].type == "DESTROY"
    assert sum(e.type == "DESTROY" for e in events) == 2


def test_event_lines() -> None:
    ev = parse_event_line("[1795435669.644868]\t[DESTROY] udp      17 9 src=1.1.1.1 "
                          "dst=2.2.2.2 sport=1 dport=2 [UNREPLIED] src=2.2.2.2 dst=1.1.1.1 "
                          "sport=2 dport=1 [USERSPACE] portid=3153574414 progname=conntrack")
    assert ev is not None and ev.type == "DESTROY" and ev.time == 1795435669.644868
    assert ev.entry is not None and ev.entry.mark is None and ev.entry.timeout == 9
    assert ev.entry.orig == Tuple(UDP, IPv4Address("1.1.1.1"), IPv4Address("2.2.2.2"), 1, 2)
    assert parse_event_line("conntrack v1.4.7 (conntrack-tools): 2 flow events have been "
                            "shown.") is None
    bad = parse_event_line("[1.5]\t[NEW] udp 17 garbage")
    assert bad is not None and bad.entry is None and bad.error


def test_errors_name_the_command(home_net: Network) -> None:
    from topologies.hostexec import HostHandle

    dead = HostHandle("ghost", 2**22 + 12345)   # no such process: mnexec cannot attach
    with pytest.raises(ObserveError) as info:
        snapshot(dead)
    assert "conntrack -L" in str(info.value) and "ghost" in str(info.value)
    assert "\n" not in str(info.value)
