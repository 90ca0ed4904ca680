"""The captures' per-packet comments (experiments.records.packet_notes), from the golden
bundles' recorded runs re-judged without root: every IPv4 packet gets one, in the bundle's
numbering; a received packet carries the model's journey of it, a sent one says which
received packet it is the output of (as the verdict pairs them) or that the model differs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from experiments.judging.judgement import judge_observed
from experiments.judging.replay import Prediction
from experiments.observed import WirePacket
from experiments.records import packet_notes
from experiments.records.bundle import load_observed
from experiments.records.packet_notes import journeys_by_packet, packet_comments
from nat.journey import Journey, Step

GOLDEN = Path(__file__).parent / "golden"
BUNDLES = sorted(p for p in GOLDEN.iterdir() if p.is_dir())


def _judged(name: str) -> tuple[tuple[WirePacket, ...], Prediction]:
    spec, observed, _ = load_observed(GOLDEN / name)
    return observed.packets, judge_observed(spec, observed).prediction


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_every_packet_is_commented_in_the_bundles_numbering(bundle: Path) -> None:
    packets, prediction = _judged(bundle.name)
    comments = packet_comments(packets, prediction)
    assert sorted(comments) == list(range(len(packets)))
    journeys = journeys_by_packet(packets, prediction.journeys)
    assert len(journeys) == len(prediction.journeys)        # each journey found its packet
    for k, wp in enumerate(packets):
        head = comments[k][0]
        assert head.startswith(f"packet #{k + 1} {wp.direction} {wp.iface}")
        if wp.direction == "in":
            assert "the model's journey: " in head
            assert journeys[k].time == wp.time and journeys[k].in_iface == wp.iface
        else:       # the golden runs all MATCH: every output is the model's
            assert ("as the model predicted" in head
                    or "(sent by the gateway itself), the model's journey" in head), head


def test_the_seed_dnat_packets_read_as_their_journeys() -> None:
    comments = packet_comments(*_judged("seed-dnat-udp"))
    assert comments[0][0] == (
        "packet #1 in wan0, the model's journey: NEW; PRE_ROUTING nat PREROUTING: rule 1 of "
        "PREROUTING (line 2: -A PREROUTING -i wan0 -p udp --dport 9999 -j DNAT "
        "--to-destination 192.168.1.8): DNAT to 192.168.1.8; PRE_ROUTING destination "
        "192.168.1.9:9999 -> 192.168.1.8:9999; => out lan0 as packet #2")
    assert comments[0][1].startswith("PRE_ROUTING -200 nf_conntrack_in NEW: new entry")
    assert comments[0][-1].startswith("entry: udp 17 30 src=203.0.113.10 dst=192.168.1.9")
    assert comments[1] == ("packet #2 out lan0: packet #1 after the gateway, as the model "
                           "predicted (see packet #1's journey)",)
    assert comments[2][0].endswith("; POST_ROUTING source 192.168.1.8:9999 -> "
                                   "192.168.1.9:9999; => out wan0 as packet #4")


def test_a_prediction_that_differs_says_so_on_both_packets() -> None:
    packets, prediction = _judged("seed-dnat-udp")
    index, iface, data = prediction.sent[0]
    wrong = dataclasses.replace(prediction, sent=((index, iface, data[:-1] + b"!"),
                                                  *prediction.sent[1:]))
    comments = packet_comments(packets, wrong)
    assert comments[0][0].endswith("=> out lan0; the kernel's packet out lan0 #1 (packet #2) "
                                   "differs (verdict.json)")
    assert comments[1] == ("packet #2 out lan0: the model's packet out lan0 #1 (from packet "
                           "#1) differs from it (verdict.json: packet out lan0 #1)",)
    nothing = packet_comments(packets, dataclasses.replace(prediction, sent=()))
    assert nothing[1] == ("packet #2 out lan0: the model sent no packet out lan0 #1 "
                          "(verdict.json: packet out lan0 #1)",)
    assert nothing[0][0].endswith("192.168.1.8:9999; => out lan0")


def test_unreadable_and_unjourneyed_packets(monkeypatch: pytest.MonkeyPatch) -> None:
    packets, prediction = _judged("seed-dnat-udp")
    odd = dataclasses.replace(prediction, journeys=prediction.journeys[1:],
                              unparsed=((2, "truncated IPv4 header"),))
    comments = packet_comments(packets, odd)
    assert comments[0] == ("packet #1 in wan0: the model's replay has no journey of it",)
    assert comments[2] == ("packet #3 in lan0: the model cannot read it: truncated IPv4 "
                           "header",)
    monkeypatch.setattr(packet_notes, "DETAIL_PACKETS", 1)
    short = packet_comments(packets, prediction)
    assert len(short[0]) > 1 and len(short[2]) == 1     # past the limit: the headline only


def test_spec_text_in_a_journey_reaches_the_comment_escaped() -> None:
    packets, prediction = _judged("seed-dnat-udp")
    first = prediction.journeys[0]
    hostile = Step(None, None, "nf_nat_manip_pkt", "destination \x1b[2J\x07 -> x\nnext")
    journey: Journey = dataclasses.replace(first, steps=(*first.steps, hostile))
    comments = packet_comments(packets, dataclasses.replace(
        prediction, journeys=(journey, *prediction.journeys[1:])))
    text = "\n".join(comments[0])
    assert "\x1b" not in text and "\x07" not in text and "\n" not in "".join(comments[0])
    assert "routing destination \\x1b[2J\\x07 -> x\\nnext" in comments[0][0]
