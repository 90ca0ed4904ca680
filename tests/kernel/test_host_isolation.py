"""Host isolation (issue 6, item 2): the session fixture that guards the root namespace works.

The fixture itself (tests/conftest_isolation.py) compares the root namespace before the first
test and after the last. Here: the root namespace has not changed so far; on a namespace of our
own, every kind of change it must catch is caught (rulesets of all three tools, sysctls, a
conntrack entry in the topology ranges) while entries outside the ranges are ignored; and a
session whose snapshots differ really fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest_isolation import HostState, differences, flow_identity, snapshot
from topologies.mininet_net import running
from topologies.presets import preset

REPO = Path(__file__).resolve().parents[2]


def test_the_root_namespace_is_unchanged_so_far(host_isolation: HostState | None) -> None:
    assert isinstance(host_isolation, HostState)
    assert "net.ipv4.ip_forward" in host_isolation.sysctls
    changes, _ = differences(host_isolation, snapshot())
    assert changes == []


def test_every_kind_of_change_is_caught_in_a_namespace_of_our_own() -> None:
    with running(preset("home")) as net:
        gw = net.gateway
        runner = ["mnexec", "-a", str(gw.pid)]
        before = snapshot(runner)
        assert before.sysctls["net.ipv4.ip_forward"] == "1"
        assert differences(before, snapshot(runner)) == ([], [])

        gw.run(["nft", "add", "table", "ip", "natlab_isolation_test"])
        gw.run(["iptables-restore"], input=b"*nat\n-A POSTROUTING -o wan0 -j MASQUERADE\n"
                                            b"COMMIT\n")
        gw.run(["iptables-legacy-restore"], input=b"*filter\n-A FORWARD -p udp --dport 7 "
                                                   b"-j DROP\nCOMMIT\n")
        gw.run(["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_tcp_loose=0"])
        gw.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=0",
                "net.ipv4.ip_forward=1"])  # set and set back: no change
        laptop = net.host("laptop")
        laptop.run(["ping", "-c1", "-W2", "203.0.113.10"])
        # An entry outside natlab's ranges: the host's own traffic, never compared.
        gw.run(["conntrack", "-I", "-p", "udp", "-s", "10.9.9.9", "-d", "10.8.8.8",
                "--sport", "1", "--dport", "2", "-t", "100", "-r", "10.8.8.8",
                "-q", "10.9.9.9", "--reply-port-src", "2", "--reply-port-dst", "1"])
        after = snapshot(runner)

    changes, notes = differences(before, after)
    text = "\n".join(changes)
    assert "natlab_isolation_test" in text and "nft ruleset changed" in text
    assert "iptables ruleset changed" in text and "MASQUERADE" in text
    assert "iptables_legacy ruleset changed" in text and "--dport 7" in text
    assert "sysctl net.netfilter.nf_conntrack_tcp_loose changed: 1 -> 0" in text
    assert "ip_forward" not in text
    (flow,) = [c for c in changes if c.startswith("conntrack entry appeared")]
    assert "src=192.168.1.8 dst=203.0.113.10" in flow and "type=8" in flow
    assert "10.9.9.9" not in text
    assert notes == []


def test_flow_identity_keeps_only_the_topology_ranges() -> None:
    line = ("tcp      6 119 TIME_WAIT src=192.168.1.8 dst=203.0.113.10 sport=37611 dport=443 "
            "src=203.0.113.10 dst=203.0.113.1 sport=443 dport=37611 [ASSURED] mark=0 use=1")
    assert flow_identity(line) == ("tcp src=192.168.1.8 dst=203.0.113.10 sport=37611 dport=443 "
                                   "src=203.0.113.10 dst=203.0.113.1 sport=443 dport=37611")
    later = line.replace(" 119 TIME_WAIT", " 3 TIME_WAIT").replace("use=1", "use=2")
    assert flow_identity(later) == flow_identity(line)
    assert flow_identity("udp 17 29 src=10.0.0.2 dst=10.0.0.1 sport=1 dport=2 src=10.0.0.1 "
                         "dst=10.0.0.2 sport=2 dport=1 mark=0 use=1") is None
    assert flow_identity("") is None


def test_a_session_that_changes_the_host_fails(tmp_path: Path) -> None:
    """An inner pytest session whose two snapshots differ ends in an error naming the change."""
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""
        import dataclasses
        import tests.conftest_isolation as iso
        from tests.conftest_isolation import host_isolation

        real = iso.snapshot()
        changed = dataclasses.replace(
            real, sysctls={**real.sysctls, "net.ipv4.ip_forward": "7"},
            conntrack=real.conntrack | {"udp src=192.168.1.8 dst=203.0.113.10 sport=1 dport=2"})
        states = iter([real, changed])
        iso.snapshot = lambda runner=(): next(states)
    """))
    (tmp_path / "test_inner.py").write_text("def test_nothing():\n    pass\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode != 0, proc.stdout
    assert "1 passed, 1 error" in proc.stdout, proc.stdout
    assert "the test session changed the root network namespace" in proc.stdout
    assert "sysctl net.ipv4.ip_forward changed: " in proc.stdout
    assert "conntrack entry appeared: udp src=192.168.1.8" in proc.stdout
