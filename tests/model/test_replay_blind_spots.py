"""The replay where the wire alone cannot tell the model what happened (issue 13, part 3).

Recorded kernel runs (tests/model/golden, tests/model/golden_unseen: Linux 6.18, iptables
backend), re-judged without root, each with a control that breaks the one thing the fix
relies on and shows the verdict then changes:
- the gateway's own first packet, rewritten by NAT on its way out, is rebuilt as the socket
  wrote it from the kernel's entry (its reply tuple is the inverse of the capture);
- a pick the wire cannot show is read from the kernel's table; one that nothing shows is no
  difference by itself, and the judgement looks for an allowed pick consistent with the run;
- packets on lo go out and back in; a next hop nobody owns leaves the packet UNRESOLVED and
  explains the kernel's ICMP host unreachable;
- `natlab model` alone predicts the gateway's own flows as `natlab run` judged them.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from experiments.judging.judgement import judge_observed
from experiments.judging.replay import Prediction, replay
from experiments.model_config import model_config
from experiments.modelrun.run import run_on_model
from experiments.observed import FINAL, Observed, Received
from experiments.records.bundle import load_observed
from experiments.spec import Spec
from nat.entry import Entry
from nat.packet import IcmpHeader, UdpHeader, parse

GOLDEN = Path(__file__).parent / "golden"
UNSEEN = Path(__file__).parent / "golden_unseen"


def _load(path: Path) -> tuple[Spec, Observed]:
    spec, observed, _ = load_observed(path)
    return spec, observed


def _evidence(observed: Observed) -> tuple[tuple[float, tuple[Entry, ...]], ...]:
    return tuple((s.time, tuple(s.entries())) for s in observed.snapshots)


def _final(observed: Observed) -> list[Entry]:
    return next(s.entries() for s in observed.snapshots if s.name == FINAL)


def _replay(spec: Spec, observed: Observed, *, evidence: bool = True) -> Prediction:
    config = model_config(spec, observed.kernel_release, observed.sysctls,
                          observed.ruleset_fed)
    return replay(config, list(observed.packets), [(s.name, s.time) for s in observed.snapshots],
                  evidence=_evidence(observed) if evidence else ())


# --- the gateway's own flows ---------------------------------------------------------------

def test_output_dnat_own_flow_is_fed_as_the_socket_wrote_it() -> None:
    spec, observed = _load(GOLDEN / "output-dnat-own-flow")
    j = judge_observed(spec, observed)
    assert j.status == "MATCH", j.render()
    first = j.prediction.journeys[0]
    assert first.in_iface is None        # sent by the gateway
    udp = first.packet_in.l4
    assert isinstance(udp, UdpHeader)
    assert (str(first.packet_in.ip.dst), udp.dport) == ("203.0.113.10", 7000)
    assert first.packet_out is not None and str(first.packet_out.ip.dst) == "192.168.1.8"


def test_without_the_kernels_table_the_capture_is_taken_as_written() -> None:
    """The control: with no snapshot to read the original tuple from, the model is fed the
    datagram as captured (after DNAT) and records the rewritten address as the original."""
    spec, observed = _load(GOLDEN / "output-dnat-own-flow")
    blind = _replay(spec, observed, evidence=False)
    seeing = _replay(spec, observed)
    kernel_orig = {e.orig for e in _final(observed)}
    assert {e.orig for e in seeing.snapshots[-1][2]} == kernel_orig
    assert {e.orig for e in blind.snapshots[-1][2]}.isdisjoint(kernel_orig)


def test_masquerade_random_own_flow_keeps_the_sockets_port_in_the_original() -> None:
    spec, observed = _load(GOLDEN / "masquerade-random-own-flow")
    j = judge_observed(spec, observed)
    assert j.status == "MATCH", j.render()
    (entry,) = j.model_conntrack
    assert entry.orig.sport == 40001
    sent = parse(next(p.data for p in observed.packets if p.direction == "out"))
    assert isinstance(sent.l4, UdpHeader) and entry.reply.dport == sent.l4.sport
    assert [c.source for c in j.prediction.choices] == ["wire"]


@pytest.mark.parametrize("name", ["output-dnat-own-flow", "masquerade-random-own-flow",
                                  "input-snat-answer-via-lo", "forward-to-unowned-address"])
def test_natlab_model_predicts_what_natlab_run_judged(name: str) -> None:
    """`natlab model` alone, no capture: the same entries as the kernel (the random port of
    masquerade-random-own-flow aside: the model's own pick), and the same hosts received
    the same payloads from the same addresses."""
    spec, observed = _load(GOLDEN / name)
    alone = run_on_model(spec)
    kernel = _final(observed)

    def shape(e: Entry) -> tuple[object, ...]:
        random_port = name == "masquerade-random-own-flow"
        return (e.orig, replace(e.reply, dport=0) if random_port else e.reply,
                e.state, e.unreplied, e.assured)

    assert sorted(map(shape, alone.entries), key=str) == sorted(map(shape, kernel), key=str)

    def got(r: Received) -> tuple[object, ...]:
        return (r.host, r.proto, r.src, r.dst)

    assert sorted(map(got, alone.received), key=str) == sorted(map(got, observed.received),
                                                               key=str)


# --- picks the wire cannot show ------------------------------------------------------------

def test_a_one_port_redirect_is_no_choice() -> None:
    """`--to-ports 5353 --random`: the search has one member, so nothing is left to pick
    (nf_nat_l4proto_unique_tuple tries the only port)."""
    spec, observed = _load(GOLDEN / "redirect-random-local-service")
    j = judge_observed(spec, observed)
    assert j.status == "MATCH", j.render()
    assert j.prediction.choices == ()


def test_a_redirect_pick_the_model_does_not_allow_is_a_difference() -> None:
    """The control: the kernel's table edited to a port outside the REDIRECT range."""
    spec, observed = _load(GOLDEN / "redirect-random-local-service")
    edited = replace(observed, snapshots=tuple(
        replace(s, lines=tuple(line.replace("sport=5353", "sport=5354") for line in s.lines))
        for s in observed.snapshots))
    j = judge_observed(spec, edited)
    assert j.status == "MISMATCH"
    assert any("sport=5354" in d.kernel for d in j.diffs), j.render()


def test_a_one_port_snat_that_died_at_confirm_is_no_difference() -> None:
    """client1 takes the only port of `--to-source 203.0.113.1:20000`; client2's flow gets
    the same tuple and dies at confirm. With one port there is no pick to see or guess."""
    spec, observed = _load(GOLDEN / "snat-one-port-exhausted")
    j = judge_observed(spec, observed)
    assert j.status == "MATCH", j.render()
    assert j.prediction.choices == ()


def test_a_random_pick_a_later_hook_dropped_is_searched_for() -> None:
    """The kernel picked a port FORWARD drops: no entry, nothing forwarded. The model's
    default (7000) would be forwarded; the judgement finds an allowed port it would drop."""
    spec, observed = _load(UNSEEN / "dnat-random-pick-dropped")
    assert not [p for p in observed.packets if p.direction == "out"]
    j = judge_observed(spec, observed)
    assert j.status == "MATCH", j.render()
    (choice,) = j.prediction.choices
    assert choice.source == "forced" and "dport=7000" not in choice.chosen
    assert j.model_conntrack == ()


def test_the_same_pick_seen_on_the_wire_is_adopted() -> None:
    spec, observed = _load(UNSEEN / "dnat-random-pick-forwarded")
    j = judge_observed(spec, observed)
    assert j.status == "MATCH", j.render()
    (choice,) = j.prediction.choices
    assert choice.source == "wire" and "dport=7000" in choice.kernel


def test_no_allowed_pick_explains_the_run_then_it_is_a_mismatch() -> None:
    """The control: the same run judged against rules whose FORWARD accepts everything.
    Every allowed port would then be forwarded; the kernel forwarded nothing, so no pick is
    consistent and the search must not make one up."""
    spec, observed = _load(UNSEEN / "dnat-random-pick-dropped")
    assert observed.ruleset_fed is not None
    opened = observed.ruleset_fed.replace(":FORWARD DROP", ":FORWARD ACCEPT")
    assert opened != observed.ruleset_fed
    j = judge_observed(spec, replace(observed, ruleset_fed=opened))
    assert j.status == "MISMATCH"
    assert {d.field for d in j.diffs} >= {"entry", "sent"}, j.render()


def test_a_kernel_entry_for_a_port_forward_drops_is_a_mismatch() -> None:
    """The control for the table: the kernel's final table claims an entry for port 7001,
    which FORWARD drops before confirm; the pick read from the table leaves the model with no
    entry, and the comparison says so."""
    spec, observed = _load(UNSEEN / "dnat-random-pick-dropped")
    line = ("udp      17 28 src=203.0.113.10 dst=203.0.113.1 sport=40000 dport=53 [UNREPLIED] "
            "src=192.168.1.8 dst=203.0.113.10 sport=7001 dport=40000 mark=0 use=1")
    edited = replace(observed, snapshots=tuple(
        replace(s, lines=(*s.lines, line)) if s.name == FINAL else s
        for s in observed.snapshots))
    j = judge_observed(spec, edited)
    assert j.status == "MISMATCH"
    assert [c.source for c in j.prediction.choices] == ["table"]


# --- lo and unresolved next hops -----------------------------------------------------------

def test_packets_on_lo_go_out_and_back_in() -> None:
    spec, observed = _load(GOLDEN / "input-snat-answer-via-lo")
    j = judge_observed(spec, observed)
    assert j.status == "MATCH", j.render()
    looped = [jr for jr in j.prediction.journeys if jr.in_iface == "lo"]
    assert [jr.verdict for jr in looped] == ["LOCAL", "LOCAL"]
    assert [jr.packet_in.proto for jr in looped] == [17, 1]
    assert any(s.function == "nf_conntrack_in" and "looped back" in s.did
               for s in looped[0].steps)
    assert j.prediction.sent == ()


def test_a_next_hop_nobody_owns_is_unresolved_and_explains_the_host_unreachable() -> None:
    spec, observed = _load(GOLDEN / "forward-to-unowned-address")
    j = judge_observed(spec, observed)
    assert j.status == "MATCH", j.render()
    first, error = j.prediction.journeys
    assert (first.verdict, first.out_iface) == ("UNRESOLVED", "lan0")
    assert error.verdict == "ACCEPT" and isinstance(error.packet_in.l4, IcmpHeader)
    # As written, the error quotes the queued packet (to 192.168.1.77); NAT translated it.
    assert b"\xc0\xa8\x01\x4d" in error.packet_in.payload
    kernel_out = [p.data for p in observed.packets if p.direction == "out"]
    assert [data for _, _, data in j.prediction.sent] == kernel_out


def test_a_next_hop_someone_owns_would_have_been_sent() -> None:
    """The control: the same run judged with 192.168.1.77 owned by a host (a topology where
    the laptop has that address too): the model forwards the datagram, which the kernel
    did not, and cannot explain the host unreachable as its own."""
    spec, observed = _load(GOLDEN / "forward-to-unowned-address")
    config = model_config(spec, observed.kernel_release, observed.sysctls,
                          observed.ruleset_fed)
    assert config.net.neighbours is not None
    owned = replace(config, net=replace(config.net, neighbours=config.net.neighbours
                                        | {IPv4Address("192.168.1.77")}))
    pred = replay(owned, list(observed.packets), [(s.name, s.time) for s in observed.snapshots],
                  evidence=_evidence(observed))
    assert pred.journeys[0].verdict == "ACCEPT"
    assert [iface for _, iface, _ in pred.sent][:1] == ["lan0"]
