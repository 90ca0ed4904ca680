"""The verdict: that `natlab judge` on a bundle reproduces it, and that nothing a spec may say
makes two different snapshots be compared as one."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments import craft
from experiments.judging.judgement import judge_observed
from experiments.observed import Observed, Snapshot, WirePacket
from experiments.spec import SpecError, spec_from_mapping

SERVER = IPv4Address("203.0.113.10")
CLIENT1 = IPv4Address("192.168.1.11")
GW_WAN = IPv4Address("203.0.113.1")
MASQ = "*nat\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n"
STEP = {"action": "udp", "from": "client1", "to": "server", "sport": 40000, "dport": 5000,
        "payload": "a"}


def _spec(steps: list[dict[str, object]]) -> dict[str, object]:
    return {"name": "judge-check", "topology": "lan", "rules": MASQ, "steps": steps}


def _through_bundle(observed: Observed) -> Observed:
    """What `natlab judge` reads back: observed.json and packets.jsonl, as bundle.py writes
    and loads them."""
    packets = [WirePacket.from_json(json.loads(json.dumps(p.to_json())))
               for p in observed.packets]
    return Observed.from_json(json.loads(json.dumps(observed.to_json())), packets)


@given(st.floats(min_value=0, max_value=1e5, allow_nan=False))
def test_a_capture_time_survives_the_bundle_exactly(t: float) -> None:
    wp = WirePacket(t, "wan0", "out", b"\x45")
    assert WirePacket.from_json(json.loads(json.dumps(wp.to_json()))) == wp


def test_judge_reproduces_a_verdict_decided_below_a_microsecond() -> None:
    """The capture has nanosecond times. A checkpoint taken 0.1 us before the first packet
    (kernel: empty table) must stay before it when the bundle is re-judged."""
    spec = spec_from_mapping(_spec([STEP]), Path("judge-check.toml"))
    query = craft.udp(CLIENT1, 40000, SERVER, 5000, b"a")
    sent = craft.udp(GW_WAN, 40000, SERVER, 5000, b"a", ttl=63)
    final = ("udp      17 29 src=192.168.1.11 dst=203.0.113.10 sport=40000 dport=5000 "
             "[UNREPLIED] src=203.0.113.10 dst=203.0.113.1 sport=5000 dport=40000 mark=0 use=1")
    observed = Observed(
        "6.18.44", {},
        (Snapshot("before", 1.0000003, ()), Snapshot("final", 2.0, (final,))),
        (WirePacket(1.0000004, "lan0", "in", query.to_bytes()),
         WirePacket(1.0000005, "wan0", "out", sent.to_bytes())))
    live = judge_observed(spec, observed)
    assert live.status == "MATCH", live.render()
    again = judge_observed(spec, _through_bundle(observed))
    assert (again.status, again.diffs) == (live.status, live.diffs), again.render()


def test_a_checkpoint_cannot_take_the_final_snapshots_name() -> None:
    """The final snapshot is called "final" (observed.json, conntrack/final.txt, the
    judgement's pairing by name): a checkpoint of that name would be compared against the
    model's final table and overwrite the bundle's final.txt."""
    steps = [STEP, {"action": "checkpoint", "name": "final"}, STEP]
    with pytest.raises(SpecError, match="final"):
        spec_from_mapping(_spec(steps), Path("judge-check.toml"))
