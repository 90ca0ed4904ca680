"""A bridged segment sends nothing of its own: no stray packet reaches the gateway's capture.

With multicast snooping on (the kernel's default for a new bridge), `br0` joins the
all-snoopers group 224.0.0.106 and reports it with IGMP at a random moment after it comes up:
a packet nobody sent, captured at the gateway (found while testing runs under load, where it
showed up before t0 and broke the time-base check of a kernel-run test).
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.kernel.run import run_on_kernel
from experiments.spec import load_spec
from topologies.mininet_net import Network

SPECS = Path(__file__).parents[2] / "experiments" / "specs"


def test_the_bridge_does_not_snoop_or_join_groups(lan_net: Network) -> None:
    bridge = lan_net.bridge("lan")
    (link,) = json.loads(bridge.run(["ip", "-j", "-d", "link", "show", "br0"]).stdout)
    assert link["linkinfo"]["info_data"]["mcast_snooping"] == 0
    groups = bridge.run(["ip", "maddr", "show", "dev", "br0"]).stdout.decode()
    assert "224.0.0.106" not in groups


def test_a_lan_run_captures_only_its_own_traffic(tmp_path: Path) -> None:
    obs = run_on_kernel(load_spec(SPECS / "masquerade-clash.toml"), workdir=tmp_path)
    protocols = {p.data[9] for p in obs.packets}
    assert protocols == {17}, protocols  # the spec's UDP, nothing else (no IGMP: 2)
