"""The traffic agents on the real kernel: each step kind, its completion, what hosts received.

One `home` network and one set of agents for the module; the gateway's table is flushed
between cases. Ports differ between cases because the agents' sockets live for the module.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from experiments import craft
from experiments.kernel.protocol import Error, Ok, UdpOpen, UdpSend
from experiments.kernel.rules import load_rules
from experiments.kernel.traffic import StepResult, Traffic
from topologies.mininet_net import Network

RULES = """*nat
-A PREROUTING -i wan0 -p udp --dport 9999 -j DNAT --to-destination 192.168.1.8
-A POSTROUTING -o wan0 -j MASQUERADE
COMMIT
*filter
-A FORWARD -p udp --dport 6666 -j DROP
COMMIT
"""
LAPTOP = IPv4Address("192.168.1.8")
GW_LAN = IPv4Address("192.168.1.9")
GW_WAN = IPv4Address("203.0.113.1")
DESKTOP = IPv4Address("203.0.113.10")


@pytest.fixture(scope="module")
def traffic(home_net: Network) -> Iterator[Traffic]:
    load_rules(home_net.gateway, "iptables", RULES)
    with Traffic(home_net.hosts, home_net.topology, step_deadline=0.5) as tr:
        yield tr


@pytest.fixture(autouse=True)
def empty_table(home_net: Network) -> None:
    home_net.gateway.run(["conntrack", "-F"])


def table(net: Network) -> list[str]:
    out = net.gateway.run(["conntrack", "-L", "-f", "ipv4"]).stdout.decode()
    return [ln for ln in out.splitlines() if ln.strip()]


def one_entry(net: Network) -> list[str]:
    lines = table(net)
    assert len(lines) == 1, lines
    return lines[0].split()


def test_udp_through_dnat_with_reply(traffic: Traffic, home_net: Network) -> None:
    mark = traffic.mark()
    r = traffic.udp(0, "desktop", GW_LAN, 37611, 9999, b"hello laptop", reply=b"hello desktop",
                    listeners=["laptop"])
    assert r.completed, r
    assert r.action == "udp" and r.end >= r.start
    laptop = traffic.wait_received("laptop", lambda x: x.time >= r.start and x.proto == "udp")
    desktop = traffic.wait_received("desktop",
                                    lambda x: x.time >= r.start and x.proto == "udp")
    # The laptop saw the DNATed destination; the desktop saw the reply from the address it
    # had sent to (the reverse translation).
    assert [(x.src, x.sport, x.dst, x.dport, x.payload) for x in laptop] == [
        (DESKTOP, 37611, LAPTOP, 9999, b"hello laptop")]
    assert [(x.src, x.sport, x.dst, x.dport, x.payload) for x in desktop] == [
        (GW_LAN, 9999, DESKTOP, 37611, b"hello desktop")]
    assert laptop[0].time <= desktop[0].time <= r.end
    assert traffic.since(mark)
    words = one_entry(home_net)
    assert words[:2] == ["udp", "17"] and "[UNREPLIED]" not in words


def test_udp_step_is_fast(traffic: Traffic) -> None:
    durations = []
    for i in range(10):
        r = traffic.udp(i, "laptop", DESKTOP, 41000 + i, 5353, b"q", reply=b"a",
                        listeners=["desktop"])
        assert r.completed, r
        durations.append(r.duration)
    print(f"UDP step: median {statistics.median(durations) * 1000:.2f} ms, "
          f"max {max(durations) * 1000:.2f} ms")
    # Each step returned on the answer, not on its deadline (no wall-clock bound: a loaded
    # machine may be slow, and a step still waiting at its deadline is not completed).
    assert all(d < traffic.step_deadline for d in durations)


def test_udp_many_datagrams_one_socket(traffic: Traffic, home_net: Network) -> None:
    r = traffic.udp(0, "laptop", DESKTOP, 42000, 5000, b"tick", count=5, interval=0.002,
                    reply=b"tock", listeners=["desktop"])
    assert r.completed, r
    ticks = traffic.wait_received("desktop", lambda x: x.proto == "udp" and x.dport == 5000, 5)
    assert len(ticks) == 5
    # MASQUERADE: the desktop sees the gateway's WAN address, the source port kept.
    assert {(x.src, x.sport) for x in ticks} == {(GW_WAN, 42000)}
    tocks = [x for x in traffic.received()["laptop"] if x.proto == "udp" and x.dport == 42000]
    assert len(tocks) == 5 and {x.src for x in tocks} == {DESKTOP}
    assert "[ASSURED]" not in one_entry(home_net)   # all within 2 s of the first packet


def test_reply_flow_uses_the_listening_socket(traffic: Traffic) -> None:
    """A later step sends from the port that listened: same socket, so it is a real reply."""
    r1 = traffic.udp(0, "desktop", GW_LAN, 37612, 9999, b"ping", listeners=["laptop"])
    assert r1.completed, r1
    r2 = traffic.udp(1, "laptop", DESKTOP, 9999, 37612, b"pong", listeners=["desktop"])
    assert r2.completed, r2
    got = [x for x in traffic.received()["desktop"] if x.payload == b"pong"]
    # Reverse of the DNAT: it leaves as coming from the address the desktop sent to.
    assert [(x.src, x.sport, x.dport) for x in got] == [(GW_LAN, 9999, 37612)]


def test_udp_to_a_closed_port_gets_port_unreachable(traffic: Traffic) -> None:
    r = traffic.udp(0, "laptop", DESKTOP, 43000, 5999, b"anyone?", listeners=[])
    assert r.completed, r
    icmp = [x for x in traffic.received()["laptop"]
            if x.proto == "icmp" and x.time >= r.start]
    assert [(x.src, x.dst, x.note) for x in icmp] == [(DESKTOP, LAPTOP, "type 3 code 3")]
    # The quoted datagram is the original one (translated back by the gateway).
    quoted = icmp[0].payload
    assert quoted[12:16] == LAPTOP.packed and quoted[16:20] == DESKTOP.packed


def test_udp_dropped_by_the_gateway_reaches_the_deadline(traffic: Traffic) -> None:
    r = traffic.udp(0, "laptop", DESKTOP, 43001, 6666, b"lost", reply=b"x",
                    listeners=["desktop"])
    assert not r.completed
    assert "deadline" in r.detail
    assert r.duration >= traffic.step_deadline      # it waited the whole deadline
    assert not [x for x in traffic.received()["desktop"] if x.payload == b"lost"]


@pytest.mark.parametrize(("close", "state"), [("fin", "TIME_WAIT"), ("rst", "CLOSE"),
                                              ("none", "ESTABLISHED")])
def test_tcp_closes(traffic: Traffic, home_net: Network, close: str, state: str) -> None:
    sport = {"fin": 37611, "rst": 37613, "none": 37614}[close]
    r = traffic.tcp(0, "laptop", DESKTOP, sport, 443, send=b"GET / HTTP/1.0\r\n\r\n",
                    reply=b"HTTP/1.0 200 OK\r\n\r\nhi", close=close, listeners=["desktop"])
    assert r.completed, r                 # before the TCP deadline
    assert r.start < r.end
    got = traffic.received()
    server = [x for x in got["desktop"] if x.proto == "tcp" and x.sport == sport]
    client = [x for x in got["laptop"] if x.proto == "tcp" and x.dport == sport]
    assert b"".join(x.payload for x in server) == b"GET / HTTP/1.0\r\n\r\n"
    assert b"".join(x.payload for x in client) == b"HTTP/1.0 200 OK\r\n\r\nhi"
    assert {(x.src, x.dst, x.dport) for x in server} == {(GW_WAN, DESKTOP, 443)}
    assert {(x.src, x.sport, x.dst) for x in client} == {(DESKTOP, 443, LAPTOP)}
    words = one_entry(home_net)
    assert words[0] == "tcp" and words[3] == state
    assert "[ASSURED]" in words
    assert f"sport={sport}" in words


def test_tcp_to_a_closed_port_is_refused(traffic: Traffic, home_net: Network) -> None:
    r = traffic.tcp(0, "laptop", DESKTOP, 37615, 4444, send=b"x", listeners=[])
    assert r.completed and "ECONNREFUSED" in r.detail, r
    # An entry answered only by RST is destroyed at once (machine notes).
    assert table(home_net) == []
    # What each end received, segments without payload included: the desktop the bare SYN
    # (after MASQUERADE), the laptop the RST/ACK (after the reverse NAT).
    syns = traffic.wait_received("desktop", lambda x: x.time >= r.start and x.dport == 4444)
    rsts = traffic.wait_received("laptop", lambda x: x.time >= r.start and x.sport == 4444)
    assert [(x.src, x.flags, x.payload) for x in syns] == [(GW_WAN, "S", b"")]
    assert [(x.dst, x.dport, x.flags) for x in rsts] == [(LAPTOP, 37615, "RA")]


def test_ping_with_chosen_id(traffic: Traffic, home_net: Network) -> None:
    r = traffic.ping(0, "laptop", DESKTOP, 4242, count=3, interval=0.01)
    assert r.completed and r.detail == "3 of 3 answers", r
    requests = traffic.wait_received("desktop", lambda x: x.proto == "icmp"
                                     and x.time >= r.start, 3)
    replies = [x for x in traffic.received()["laptop"] if x.proto == "icmp" and x.time >= r.start]
    assert [(x.src, x.note) for x in requests] == [(GW_WAN, "type 8 code 0")] * 3
    assert [(x.src, x.note) for x in replies] == [(DESKTOP, "type 0 code 0")] * 3
    assert replies[0].payload == bytes(range(56))    # what follows the 8-byte ICMP header
    words = one_entry(home_net)
    assert words[0] == "icmp" and "id=4242" in words


def test_raw_crafted_packet(traffic: Traffic) -> None:
    """A crafted UDP datagram reaches a listener; a crafted SYN to a closed port gets RST."""
    opened = traffic.command("laptop", UdpOpen(port=7777, reply=None))
    assert isinstance(opened, Ok)
    pkt = craft.udp(DESKTOP, 1234, LAPTOP, 7777, b"crafted", ident=77).to_bytes()
    r = traffic.raw(0, "desktop", pkt)   # returns once the agents have been quiet a while
    assert r.completed, r
    got = traffic.wait_received("laptop", lambda x: x.payload == b"crafted")
    assert [(x.src, x.sport, x.dport) for x in got] == [(DESKTOP, 1234, 7777)]
    syn = craft.tcp(LAPTOP, 45000, DESKTOP, 4445, 0x02, seq=1000).to_bytes()
    r2 = traffic.raw(1, "laptop", syn)
    assert r2.completed
    delivered = [d for d in traffic.delivered()["laptop"] if d.time >= r2.start]
    rst = [d.data for d in delivered if d.data[9] == 6]
    assert rst and rst[0][20 + 13] & 0x04     # the desktop answered RST(|ACK)


def test_agent_errors_are_events(traffic: Traffic) -> None:
    ev = traffic.command_raw("laptop", {"op": "no_such_op"})
    assert isinstance(ev, Error) and "unknown op" in ev.message
    ev = traffic.command("laptop", UdpSend(sport=1, dst="not an address", dport=1,
                                           payload=b""))
    assert isinstance(ev, Error) and ev.op == "udp_send"
    ev = traffic.command("laptop", UdpOpen(port=70000))
    assert isinstance(ev, Error)
    # The agent is still alive and working.
    r = traffic.ping(0, "laptop", DESKTOP, 4343)
    assert r.completed


def test_sleep_and_unknown_steps(traffic: Traffic) -> None:
    r = traffic.sleep(0, 0.05)
    assert r.completed and r.duration >= 0.05

    class Other:
        action = "checkpoint"

    r2: StepResult = traffic.run_step(1, Other())
    assert r2.action == "checkpoint" and r2.completed


def test_agents_start_fast_and_stop_cleanly(home_net: Network) -> None:
    t = time.monotonic()
    tr = Traffic(home_net.hosts, home_net.topology)
    with tr:
        started = time.monotonic() - t
        procs = [a.proc for a in tr._agents.values()]
        assert all(p.poll() is None for p in procs)
        # A burst sent right before stopping: quit first reads what is queued.
        assert isinstance(tr.command("desktop", UdpOpen(port=5700)), Ok)
        assert isinstance(tr.command("laptop", UdpSend(sport=45700, dst=str(DESKTOP),
                                                       dport=5700, payload=b"last",
                                                       count=200)), Ok)
    assert all(p.poll() is not None for p in procs)
    got = [x for x in tr.received()["desktop"] if x.proto == "udp" and x.dport == 5700]
    assert len(got) == 200
    print(f"3 agents up in {started * 1000:.1f} ms")
    assert started < tr.start_timeout      # started within the deadline Traffic polls to
