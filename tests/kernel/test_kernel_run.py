"""Whole kernel runs of specs: the seeds, every step kind, the time base, and teardown."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from experiments.kernel.rules import RulesError
from experiments.kernel.run import Observation, run_on_kernel
from experiments.observed import FINAL
from experiments.spec import load_spec
from nat.listing import parse_pattern
from topologies.names import new_run_id
from topologies.sweep import find_leftovers

SPECS = Path(__file__).parents[2] / "experiments" / "specs"


def without_timeout(line: str) -> str:
    words = line.split()
    return " ".join(words[:2] + words[3:])


def check_consistent(obs: Observation) -> None:
    """What holds for every run: times on one base, files written, the record complete."""
    assert obs.steps, "no steps"
    last = max(s.end for s in obs.steps)
    assert all(0 <= s.start <= s.end for s in obs.steps)
    assert obs.final.time >= last
    assert all(-0.01 <= p.time <= obs.final.time_end for p in obs.packets)
    assert [p.time for p in obs.packets] == sorted(p.time for p in obs.packets)
    assert all(-0.01 <= e.time <= obs.final.time_end for e in obs.events)
    assert all(r.time >= -0.01 for rs in obs.received.values() for r in rs)
    assert obs.pcap.exists() and obs.event_log.exists()
    assert obs.sysctls["net.ipv4.ip_forward"] == "1"
    assert "net.netfilter.nf_conntrack_udp_timeout" in obs.sysctls
    assert obs.versions.kernel and obs.versions.conntrack.startswith("conntrack v")
    assert obs.capture_dropped == 0
    assert find_leftovers(obs.run_id).empty


def test_seed_dnat_udp(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "seed-dnat-udp.toml")
    obs = run_on_kernel(spec, workdir=tmp_path)
    check_consistent(obs)
    assert [without_timeout(ln) for ln in obs.final_conntrack_lines] == [
        "udp 17 src=203.0.113.10 dst=192.168.1.9 sport=37611 dport=9999 src=192.168.1.8 "
        "dst=203.0.113.10 sport=9999 dport=37611 mark=0 use=1"]
    laptop = [r for r in obs.received["laptop"] if r.proto == "udp"]
    assert [(str(r.dst), r.dport, r.payload) for r in laptop] == [
        ("192.168.1.8", 9999, b"hello laptop")]
    assert [(p.ifname, p.direction) for p in obs.packets] == [
        ("wan0", "in"), ("lan0", "out"), ("lan0", "in"), ("wan0", "out")]
    assert [e.type for e in obs.events] == ["NEW", "UPDATE"]
    # The step completed, and the gateway saw its datagrams while it ran (an ordering, not a
    # duration: a loaded machine may be slow).
    assert obs.steps[0].completed
    assert obs.steps[0].start <= obs.packets[0].time <= obs.packets[-1].time \
        <= obs.steps[0].end
    assert obs.ruleset.backend == "iptables" and "DNAT" in obs.ruleset.readback
    if spec.expect is not None:
        for want in spec.expect.conntrack:
            assert any(parse_pattern(want).matches(e) for e in obs.final_entries), want


def test_seed_snat_tcp_on_each_backend(tmp_path: Path) -> None:
    finals = {}
    for backend in ("iptables", "iptables-legacy", "nft"):
        spec = load_spec(SPECS / "seed-snat-tcp.toml", backend=backend)  # type: ignore[arg-type]
        obs = run_on_kernel(spec, workdir=tmp_path / backend)
        check_consistent(obs)
        assert obs.backend == backend
        finals[backend] = [without_timeout(ln) for ln in obs.final_conntrack_lines]
        assert spec.expect is not None
        for want in spec.expect.conntrack:
            assert any(parse_pattern(want).matches(e) for e in obs.final_entries), want
        wire = obs.wire_packets()
        assert wire[0].time == obs.packets[0].time and wire[0].iface == "lan0"
    assert finals["iptables"] == finals["iptables-legacy"] == finals["nft"]


SPEC_ALL_STEPS = """
name = "all-steps"
topology = "home"
rules = '''
*nat
-A POSTROUTING -o wan0 -j MASQUERADE
COMMIT
'''
sysctls = { "net.netfilter.nf_conntrack_udp_timeout" = "25" }

[host_rules]
desktop = '''
*filter
-A INPUT -p udp --dport 6000 -j DROP
COMMIT
'''

[[steps]]
action = "udp"
from = "laptop"
to = "desktop"
sport = 40000
dport = 5000
payload = "one"
reply = "two"

[[steps]]
action = "checkpoint"
name = "after-udp"

[[steps]]
action = "ping"
from = "laptop"
to = "desktop"
id = 555
count = 2
interval = 0.01

[[steps]]
action = "sleep"
seconds = 0.1

[[steps]]
action = "raw"
from = "laptop"
proto = "tcp"
dst = "203.0.113.10"
sport = 40001
dport = 7000
flags = "S"
seq = 1

[[steps]]
action = "udp"
from = "laptop"
to = "desktop"
sport = 40002
dport = 6000
payload = "dropped by the desktop"
"""


def test_every_step_kind_checkpoints_sysctls_host_rules(tmp_path: Path) -> None:
    path = tmp_path / "all-steps.toml"
    path.write_text(SPEC_ALL_STEPS)
    obs = run_on_kernel(load_spec(path), workdir=tmp_path / "run")
    check_consistent(obs)
    assert [s.action for s in obs.steps] == ["udp", "checkpoint", "ping", "sleep", "raw", "udp"]
    assert [s.completed for s in obs.steps] == [True, True, True, True, True, False]
    assert obs.sysctls["net.netfilter.nf_conntrack_udp_timeout"] == "25"
    assert "--dport 6000 -j DROP" in obs.host_rulesets["desktop"].readback

    cp = obs.snapshot("after-udp")
    (entry,) = cp.entries()
    assert entry.timeout is not None
    assert 20 <= entry.timeout <= 25       # the spec's UDP timeout applied
    assert obs.steps[1].start == cp.time
    assert obs.snapshot(FINAL) is obs.final
    final = {(e.orig.proto, e.orig.dport) for e in obs.final_entries}
    # UDP to 5000, the ping (type 8 << 8), the crafted SYN (answered by RST: destroyed at
    # once, so absent), UDP to 6000 (unanswered).
    assert final == {(17, 5000), (1, 8 << 8), (17, 6000)}
    sleep = obs.steps[3]
    assert sleep.duration >= 0.1
    assert obs.steps[2].end <= sleep.start <= sleep.end <= obs.steps[4].start
    # The crafted SYN crossed the gateway (in on lan0, out on wan0) between its step's times.
    syn = [p for p in obs.packets if p.data[9] == 6 and p.data[20 + 13] == 0x02]
    assert [(p.ifname, p.direction) for p in syn] == [("lan0", "in"), ("wan0", "out")]
    assert obs.steps[4].start <= syn[0].time <= obs.steps[4].end
    # Echo requests and replies: two of each on each side.
    icmp = [p for p in obs.packets if p.data[9] == 1]
    assert len(icmp) == 8


def test_a_bad_rule_fails_the_run_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('topology = "home"\nrules = "*nat\\n-A PREROUTING -j NOWHERE\\nCOMMIT\\n"\n'
                    '[[steps]]\naction = "sleep"\nseconds = 0.1\n')
    run_id = new_run_id()
    with pytest.raises(RulesError, match="NOWHERE"):
        run_on_kernel(load_spec(path), workdir=tmp_path / "run", run_id=run_id)
    assert find_leftovers(run_id).empty


def test_ctrl_c_in_the_middle_tears_everything_down(tmp_path: Path) -> None:
    path = tmp_path / "long.toml"
    path.write_text('topology = "home"\nrules = "*nat\\n-A POSTROUTING -o wan0 -j MASQUERADE'
                    '\\nCOMMIT\\n"\n[[steps]]\naction = "sleep"\nseconds = 30\n')
    run_id = new_run_id()
    began = time.monotonic()
    # Process-directed, so the main thread (asleep in the step) gets it, as with Ctrl-C.
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_on_kernel(load_spec(path), workdir=tmp_path / "run", run_id=run_id)
    finally:
        timer.cancel()
    assert time.monotonic() - began < 25.0     # the 30 s step was cut short
    left = find_leftovers(run_id)
    assert left.empty, left.describe()


SPEC_LAN_CLASH = """
name = "lan-clash"
topology = "lan"
rules = '''
*nat
-A POSTROUTING -o wan0 -j MASQUERADE
COMMIT
'''

[[steps]]
action = "udp"
from = "client1"
to = "server"
sport = 37611
dport = 53
payload = "from client1"
reply = "to client1"

[[steps]]
action = "udp"
from = "client2"
to = "server"
sport = 37611
dport = 53
payload = "from client2"
reply = "to client2"
"""


def test_lan_two_clients_same_port_one_is_remapped(tmp_path: Path) -> None:
    path = tmp_path / "lan.toml"
    path.write_text(SPEC_LAN_CLASH)
    obs = run_on_kernel(load_spec(path), workdir=tmp_path / "run")
    check_consistent(obs)
    assert set(obs.received) == {"client1", "client2", "client3", "client4", "gateway",
                                 "server"}
    assert all(s.completed for s in obs.steps)
    entries = {str(e.orig.src): e for e in obs.final_entries}
    assert set(entries) == {"192.168.1.11", "192.168.1.12"}
    first, second = entries["192.168.1.11"], entries["192.168.1.12"]
    assert first.reply.dport == 37611                      # the first keeps its port
    assert second.reply.dport != 37611                     # the second is moved ...
    assert 1024 <= second.reply.dport <= 65535             # ... within the port's class
    assert str(second.reply.dst) == "203.0.113.1"
    # Each client got its own answer back, on its own port.
    for client, ip in (("client1", "192.168.1.11"), ("client2", "192.168.1.12")):
        got = [r for r in obs.received[client] if r.proto == "udp"]
        assert [(str(r.dst), r.dport, r.payload) for r in got] == [
            (ip, 37611, f"to {client}".encode())]
    # The server saw two different source ports from the one outside address.
    seen = {(str(r.src), r.sport) for r in obs.received["server"] if r.proto == "udp"}
    assert seen == {("203.0.113.1", 37611), ("203.0.113.1", second.reply.dport)}
