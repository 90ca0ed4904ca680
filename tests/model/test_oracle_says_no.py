"""The oracle can say no (issue 20): every kind of diff the comparison emits, every failing
expectation, and every verdict, produced from a recorded kernel run (tests/model/golden, no
root) with one thing on one side made wrong on purpose.

Where the wrong side is the kernel's record (a line of `conntrack -L` edited, a captured packet
changed), the model is the real one and the bundle is otherwise as recorded: the test says what
the comparison must notice when the kernel and the model disagree on that one field. Each test
checks the exact set of (place, field) pairs, so a comparison that forgets a field, or blames
the wrong one, fails here.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from experiments import craft
from experiments.cli import main
from experiments.judging.compare import (
    TIMEOUT_ABOVE,
    TIMEOUT_BELOW,
    Diff,
    packet_field_diffs,
    verdict,
)
from experiments.judging.judgement import Judgement, check_expect, judge_observed
from experiments.observed import Observed, WirePacket
from experiments.records.bundle import judge, load_observed, verdict_json
from experiments.spec import Expect, Received, Spec, spec_hash
from nat.packet import parse

GOLDEN = Path(__file__).parent / "golden"
DNAT_FLOW = "conntrack final: udp 203.0.113.10:37611 -> 192.168.1.9:9999"
DNAT_LINE = ("udp      17 29 src=203.0.113.10 dst=192.168.1.9 sport=37611 dport=9999 "
             "src=192.168.1.8 dst=203.0.113.10 sport=9999 dport=37611 mark=0 use=1")
TCP_OPEN = ("tcp      6 431999 ESTABLISHED src=192.168.1.8 dst=203.0.113.10 sport=37700 "
            "dport=80 src=203.0.113.10 dst=203.0.113.1 sport=80 dport=37700 [ASSURED] mark=0 "
            "use=1")


def _load(name: str) -> tuple[Spec, Observed]:
    spec, observed, _ = load_observed(GOLDEN / name)
    return spec, observed


def _edit_snapshot(observed: Observed, snap_name: str, old: str, new: str) -> Observed:
    """The observation with `old` replaced by `new` in the lines of one snapshot."""
    snaps = []
    found = False
    for s in observed.snapshots:
        if s.name == snap_name:
            lines = tuple(line.replace(old, new) for line in s.lines)
            found = found or lines != s.lines
            s = replace(s, lines=lines)
        snaps.append(s)
    assert found, f"{old!r} not in snapshot {snap_name!r}"
    return replace(observed, snapshots=tuple(snaps))


def _set_lines(observed: Observed, snap_name: str, lines: tuple[str, ...]) -> Observed:
    return replace(observed, snapshots=tuple(replace(s, lines=lines) if s.name == snap_name
                                             else s for s in observed.snapshots))


def _edit_packet(observed: Observed, iface: str, direction: str, n: int,
                 data: bytes | None) -> Observed:
    """The n-th (from 1) packet on `iface` in `direction` replaced by `data` (None: removed)."""
    out: list[WirePacket] = []
    seen = 0
    for p in observed.packets:
        if p.iface == iface and p.direction == direction:
            seen += 1
            if seen == n:
                if data is not None:
                    out.append(replace(p, data=data))
                continue
        out.append(p)
    assert seen >= n
    return replace(observed, packets=tuple(out))


def _packet(observed: Observed, iface: str, direction: str, n: int) -> bytes:
    return [p.data for p in observed.packets
            if p.iface == iface and p.direction == direction][n - 1]


def _places(j: Judgement) -> set[tuple[str, str]]:
    return {(d.where, d.field) for d in j.diffs}


def _diff(j: Judgement, where: str, field: str) -> Diff:
    return next(d for d in j.diffs if (d.where, d.field) == (where, field))


@pytest.mark.parametrize("name", ["seed-dnat-udp", "tcp-lifecycle", "icmp-error-related",
                                  "masquerade-clash"])
def test_the_bundles_as_recorded_match(name: str) -> None:
    """The control for every test below: nothing edited, MATCH, expectations PASS."""
    j = judge_observed(*_load(name))
    assert (j.status, j.diffs, j.expect.status) == ("MATCH", (), "PASS"), j.render()


# -- conntrack ------------------------------------------------------------------------------

def test_a_kernel_entry_the_model_lacks() -> None:
    """The kernel holds an entry the model never made: a diff "entry", kernel side shown."""
    spec, observed = _load("seed-dnat-udp")
    extra = ("udp      17 20 src=192.168.1.8 dst=203.0.113.10 sport=5353 dport=53 [UNREPLIED] "
             "src=203.0.113.10 dst=203.0.113.1 sport=53 dport=5353 mark=0 use=1")
    j = judge_observed(spec, _set_lines(observed, "final", (DNAT_LINE, extra)))
    assert j.status == "MISMATCH"
    where = "conntrack final: udp 192.168.1.8:5353 -> 203.0.113.10:53"
    assert _places(j) == {(where, "entry")}
    d = _diff(j, where, "entry")
    assert "sport=5353" in d.kernel and d.model == "(none)"


def test_every_kernel_entry_the_model_lacks_is_named() -> None:
    """Two of them, with no ports (ICMP; protocol 2, which natlab has no name for): a diff
    for each, named by protocol and addresses."""
    spec, observed = _load("seed-dnat-udp")
    icmp = ("icmp     1 29 src=192.168.1.8 dst=203.0.113.10 type=8 code=0 id=7 "
            "src=203.0.113.10 dst=203.0.113.1 type=0 code=0 id=7 mark=0 use=1")
    igmp = "unknown  2 599 src=1.2.3.4 dst=5.6.7.8 src=5.6.7.8 dst=1.2.3.4 mark=0 use=1"
    j = judge_observed(spec, _set_lines(observed, "final", (icmp, igmp, DNAT_LINE)))
    assert _places(j) == {("conntrack final: icmp 192.168.1.8 -> 203.0.113.10", "entry"),
                          ("conntrack final: 2 1.2.3.4 -> 5.6.7.8", "entry")}
    assert [e.orig.proto for e in j.kernel_conntrack] == [1, 2, 17]
    assert len(j.model_conntrack) == 1


def test_a_model_entry_the_kernel_lacks() -> None:
    """The kernel's table is empty where the model has the DNAT entry: a diff "entry" with
    the model side shown, and the expectation on that entry FAILs."""
    spec, observed = _load("seed-dnat-udp")
    j = judge_observed(spec, _set_lines(observed, "final", ()))
    assert j.status == "MISMATCH"
    assert _places(j) == {(DNAT_FLOW, "entry")}
    d = _diff(j, DNAT_FLOW, "entry")
    assert d.kernel == "(none)" and "dport=9999" in d.model
    assert j.expect.status == "FAIL"
    assert j.expect.failures == (f"no kernel entry matches: {spec.expect.conntrack[0]}",)  # type: ignore[union-attr]
    assert not j.clean


def test_a_different_reply_tuple() -> None:
    """The same original tuple, another reply tuple: one "reply tuple" diff (not two entries)."""
    spec, observed = _load("seed-dnat-udp")
    j = judge_observed(spec, _edit_snapshot(observed, "final", "src=192.168.1.8 dst=203.0.113.10",
                                            "src=192.168.1.7 dst=203.0.113.10"))
    assert _places(j) == {(DNAT_FLOW, "reply tuple")}
    d = _diff(j, DNAT_FLOW, "reply tuple")
    assert "192.168.1.7" in d.kernel and "192.168.1.8" in d.model


@pytest.mark.parametrize(("snap", "old", "new", "field", "kernel", "model"), [
    ("final", "119 TIME_WAIT", "119 CLOSE", "state", "CLOSE", "TIME_WAIT"),
    ("open", "ESTABLISHED", "SYN_RECV", "state", "SYN_RECV", "ESTABLISHED"),
    ("open", "[ASSURED] mark=0", "mark=0", "assured", "False", "True"),
    ("open", "[ASSURED] mark=0", "[ASSURED] mark=7", "mark", "7", "0"),
    ("open", "mark=0 use=1", "mark=0 zone=3 use=1", "zone", "3", "0"),
    ("open", "dport=80 src=", "dport=80 zone-orig=2 src=", "zone_orig", "2", "None"),
    ("open", "dport=37700 [ASSURED]", "dport=37700 zone-reply=2 [ASSURED]", "zone_reply", "2",
     "None"),
])
def test_a_field_of_a_tcp_entry(snap: str, old: str, new: str, field: str, kernel: str,
                                model: str) -> None:
    """tcp-lifecycle's checkpoint "open" and final table, one field of one entry changed."""
    spec, observed = _load("tcp-lifecycle")
    j = judge_observed(spec, _edit_snapshot(observed, snap, old, new))
    assert j.status == "MISMATCH"
    port = 37701 if snap == "final" else 37700
    where = f"conntrack {snap}: tcp 192.168.1.8:{port} -> 203.0.113.10:80"
    assert _places(j) == {(where, field)}
    d = _diff(j, where, field)
    assert (d.kernel, d.model) == (kernel, model)


def test_unreplied() -> None:
    """The kernel says the DNAT entry of icmp-error-related was replied; the model says not."""
    spec, observed = _load("icmp-error-related")
    j = judge_observed(spec, _edit_snapshot(observed, "final", "[UNREPLIED] ", ""))
    where = "conntrack final: udp 203.0.113.10:37611 -> 192.168.1.9:9999"
    assert _places(j) == {(where, "unreplied")}
    d = _diff(j, where, "unreplied")
    assert (d.kernel, d.model) == ("False", "True")


def test_the_timeout_tolerance_is_exactly_its_bounds() -> None:
    """The model's remaining time m: a kernel timeout in [m - 2, m + 1] is no diff, one
    second outside either bound is."""
    spec, observed = _load("seed-dnat-udp")
    model_timeout = judge_observed(spec, observed).model_conntrack[0].timeout
    assert model_timeout is not None
    for k, ok in ((model_timeout - TIMEOUT_BELOW, True), (model_timeout + TIMEOUT_ABOVE, True),
                  (model_timeout - TIMEOUT_BELOW - 1, False),
                  (model_timeout + TIMEOUT_ABOVE + 1, False)):
        j = judge_observed(spec, _edit_snapshot(observed, "final", "udp      17 29 ",
                                                f"udp      17 {k} "))
        assert (j.status == "MATCH") == ok, (k, model_timeout, j.render())


# -- packets --------------------------------------------------------------------------------

def test_the_model_sends_what_the_kernel_did_not() -> None:
    """The kernel's answer to the desktop was not captured: "sent", kernel side "(not sent)"."""
    spec, observed = _load("seed-dnat-udp")
    j = judge_observed(spec, _edit_packet(observed, "wan0", "out", 1, None))
    assert _places(j) == {("packet out wan0 #1", "sent")}
    d = _diff(j, "packet out wan0 #1", "sent")
    assert d.kernel == "(not sent)"
    assert d.model == "UDP 192.168.1.9:9999 > 203.0.113.10:37611 len=13"


def test_every_packet_of_an_interface_is_compared() -> None:
    """tcp-lifecycle: the first packet out of lan0 equal, a later one not: still found."""
    spec, observed = _load("tcp-lifecycle")
    sent = [p.data for p in observed.packets if p.iface == "lan0" and p.direction == "out"]
    n = next(i for i, d in enumerate(sent, 1) if i > 1 and parse(d).payload)
    data = bytearray(sent[n - 1])
    data[-1] ^= 0x20
    j = judge_observed(spec, _edit_packet(observed, "lan0", "out", n, bytes(data)))
    assert {f for w, f in _places(j) if w == f"packet out lan0 #{n}"} >= {"payload"}
    assert {w for w, _ in _places(j)} == {f"packet out lan0 #{n}"}


def test_a_kernel_pick_the_wire_does_not_show_is_read_from_its_table() -> None:
    """masquerade-clash without the kernel's datagram for client2 (the one whose port the
    kernel had to pick): the kernel's final table still shows the pick in client2's reply
    tuple, so it is adopted from there; what differs is the datagram the capture lacks."""
    spec, observed = _load("masquerade-clash")
    j = judge_observed(spec, _edit_packet(observed, "wan0", "out", 2, None))
    assert not [d for d in j.diffs if d.field == "SRC binding"], j.render()
    assert [d.field for d in j.diffs] == ["sent"], j.render()
    assert {c.source for c in j.prediction.choices} >= {"table"}


def test_a_kernel_pick_nothing_shows_is_no_difference_by_itself() -> None:
    """The same, with client2's entry also gone from every snapshot: nothing shows the
    pick, so it is no difference in itself (a note says the model's default was followed);
    the missing datagram and entry still are."""
    spec, observed = _load("masquerade-clash")
    cut = _edit_packet(observed, "wan0", "out", 2, None)
    client2 = "src=192.168.1.12 "
    cut = replace(cut, snapshots=tuple(
        replace(s, lines=tuple(line for line in s.lines if client2 not in line))
        for s in cut.snapshots))
    j = judge_observed(spec, cut)
    assert not [d for d in j.diffs if d.field == "SRC binding"], j.render()
    assert "sent" in {d.field for d in j.diffs} and "entry" in {d.field for d in j.diffs}
    assert any("shows neither on the wire nor in its table" in n for n in j.notes), j.notes


def test_no_final_snapshot() -> None:
    """A run cut short before the final table was read: nothing to show on either side."""
    spec, observed = _load("tcp-lifecycle")
    j = judge_observed(spec, replace(observed, snapshots=observed.snapshots[:1]))
    assert (j.kernel_conntrack, j.model_conntrack) == ((), ())
    assert j.expect.status == "FAIL"


def test_a_diff_as_json() -> None:
    assert Diff("w", "f", "k", "m").to_json() == {"where": "w", "field": "f", "kernel": "k",
                                                  "model": "m"}


def test_every_packet_sent_by_one_side_only_is_named() -> None:
    """The last two packets out of lan0 missing from the kernel's capture: two "sent" diffs,
    not one."""
    spec, observed = _load("tcp-lifecycle")
    n = sum(p.iface == "lan0" and p.direction == "out" for p in observed.packets)
    cut = _edit_packet(_edit_packet(observed, "lan0", "out", n, None), "lan0", "out", n - 1,
                       None)
    j = judge_observed(spec, cut)
    assert _places(j) == {(f"packet out lan0 #{n - 1}", "sent"), (f"packet out lan0 #{n}", "sent")}
    assert {d.kernel for d in j.diffs} == {"(not sent)"}


def test_a_different_payload() -> None:
    spec, observed = _load("seed-dnat-udp")
    data = bytearray(_packet(observed, "lan0", "out", 1))
    data[-1] ^= 0x20                                        # "hello laptoP"
    j = judge_observed(spec, _edit_packet(observed, "lan0", "out", 1, bytes(data)))
    assert _places(j) == {("packet out lan0 #1", "payload")}
    d = _diff(j, "packet out lan0 #1", "payload")
    assert bytes.fromhex(d.kernel) == b"hello laptoP"
    assert bytes.fromhex(d.model) == b"hello laptop"


def test_another_transport_protocol() -> None:
    """The kernel sent a TCP segment where the model sends the UDP datagram: "l4" names both
    header types (and the IP header's protocol, length and checksum differ with it)."""
    spec, observed = _load("seed-dnat-udp")
    udp = parse(_packet(observed, "lan0", "out", 1))
    tcp = craft.tcp(udp.ip.src, 37611, udp.ip.dst, 9999, craft.tcp_flags("S"),
                    ttl=63).to_bytes()
    j = judge_observed(spec, _edit_packet(observed, "lan0", "out", 1, tcp))
    fields = {f for w, f in _places(j) if w == "packet out lan0 #1"}
    assert "l4" in fields and "ip.proto" in fields
    d = _diff(j, "packet out lan0 #1", "l4")
    assert (d.kernel, d.model) == ("TcpHeader", "UdpHeader")


def test_an_unparseable_kernel_packet() -> None:
    spec, observed = _load("seed-dnat-udp")
    j = judge_observed(spec, _edit_packet(observed, "lan0", "out", 1, b"\x45\x00\x00"))
    # The replay reads the gateway's output too (to see the kernel's NAT picks): packet #2
    # of the capture is that one.
    assert _places(j) == {("packet out lan0 #1", "bytes"),
                          ("packet #2", "unreadable by the model")}
    d = _diff(j, "packet out lan0 #1", "bytes")
    assert (d.kernel, d.model) == ("450000", _packet(observed, "lan0", "out", 1).hex())


def test_equal_fields_unequal_bytes() -> None:
    """The last resort: when no header field or payload differs (the caller compares only
    unequal packets), the diff is on "bytes"."""
    spec, observed = _load("seed-dnat-udp")
    data = _packet(observed, "lan0", "out", 1)
    assert packet_field_diffs("here", data, data) == [Diff("here", "bytes", data.hex(),
                                                           data.hex())]


def test_an_input_packet_the_model_cannot_read() -> None:
    spec, observed = _load("seed-dnat-udp")
    junk = WirePacket(observed.packets[-1].time + 0.001, "wan0", "in", b"\x45\x00")
    j = judge_observed(spec, replace(observed, packets=(*observed.packets, junk)))
    assert j.status == "MISMATCH"
    (d,) = j.diffs
    assert d == Diff(f"packet #{len(observed.packets) + 1}", "unreadable by the model",
                     "IPv4 header needs 20 bytes, got 2", "")


# -- expectations ---------------------------------------------------------------------------

def _expected(spec: Spec, **change: object) -> Spec:
    assert spec.expect is not None
    want = spec.expect.received[0].model_copy(update=change)
    return replace(spec, expect=spec.expect.model_copy(update={"received": (want,)}))


@pytest.mark.parametrize("change", [
    {"host": "desktop"}, {"proto": "tcp"}, {"src": "203.0.113.11"}, {"dst": "192.168.1.7"},
    {"sport": 1}, {"dport": 1}, {"payload": "hello laptoP"},
])
def test_a_received_expectation_that_fails(change: dict[str, object]) -> None:
    """seed-dnat-udp's laptop expectation with one field wrong: FAIL, naming what was wanted."""
    spec, observed = _load("seed-dnat-udp")
    j = judge_observed(_expected(spec, **change), observed)
    assert j.status == "MATCH"          # the comparison is untouched
    assert j.expect.status == "FAIL" and not j.clean
    (failure,) = j.expect.failures
    host = change.get("host", "laptop")
    assert failure.startswith(f"expect.received.0: {host} received 0 packets like ")
    assert ", wanted at least 1; " in failure


@pytest.mark.parametrize("unset", ["src", "dst", "sport", "dport", "payload"])
def test_an_unset_field_matches_anything(unset: str) -> None:
    spec, observed = _load("seed-dnat-udp")
    j = judge_observed(_expected(spec, **{unset: None}), observed)
    assert j.expect.status == "PASS", j.expect.failures


def test_the_failure_text_of_a_received_expectation() -> None:
    spec, observed = _load("seed-dnat-udp")
    j = judge_observed(_expected(spec, sport=None, payload="nope"), observed)
    assert j.expect.failures == (
        "expect.received.0: laptop received 0 packets like udp 203.0.113.10:* > "
        "192.168.1.8:9999 'nope', wanted at least 1; nearest: payload is 'hello laptop', "
        "not 'nope' in laptop: udp 203.0.113.10:37611 > 192.168.1.8:9999 'hello laptop'",)
    j = judge_observed(_expected(spec, src=None, dst=None, dport=None, payload=None,
                                 host="desktop", sport=4), observed)
    assert j.expect.failures == (
        "expect.received.0: desktop received 0 packets like udp *:4 > *:*, wanted at least "
        "1; nearest: sport is 9999, not 4 in desktop: udp 192.168.1.9:9999 > "
        "203.0.113.10:37611 'hello desktop'",)


def test_a_conntrack_expectation_that_fails() -> None:
    """The expectation names a mark the kernel's entry does not carry."""
    spec, observed = _load("seed-dnat-udp")
    assert spec.expect is not None
    line = spec.expect.conntrack[0].replace("mark=0", "mark=1")
    wrong = replace(spec, expect=spec.expect.model_copy(update={"conntrack": (line,)}))
    j = judge_observed(wrong, observed)
    assert j.expect == replace(j.expect, status="FAIL",
                               failures=(f"no kernel entry matches: {line}",))
    assert j.status == "MATCH" and not j.clean


def test_no_expectations() -> None:
    spec, observed = _load("seed-dnat-udp")
    assert check_expect(replace(spec, expect=None), [], ()).status == "NONE"
    empty = replace(spec, expect=Expect(conntrack=(), received=()))
    assert check_expect(empty, [], ()).status == "NONE"
    only_received = replace(spec, expect=Expect(conntrack=(), received=(
        Received(host="laptop", proto="udp"),)))
    assert check_expect(only_received, [], ()).status == "FAIL"


# -- verdicts -------------------------------------------------------------------------------

def test_the_verdict_table() -> None:
    d = [Diff("w", "f", "k", "m")]
    assert verdict([], None) == "MATCH"
    assert verdict(d, None) == "MISMATCH"
    assert verdict(d, "known") == "XFAIL"
    assert verdict([], "known") == "XPASS"
    assert verdict([], None, error="boom") == "ERROR"
    assert verdict(d, "known", error="boom") == "ERROR"


def test_xpass_and_xfail_and_mismatch_from_a_bundle() -> None:
    """A declared divergence that does not show is XPASS (not clean); one that shows is
    XFAIL (clean); without the declaration, the same diffs are MISMATCH."""
    spec, observed = _load("seed-dnat-udp")
    xspec = replace(spec, xfail="the model is thought to get the TTL wrong")
    xpass = judge_observed(xspec, observed)
    assert (xpass.status, xpass.clean) == ("XPASS", False)
    broken = _edit_snapshot(observed, "final", "udp      17 29 ", "udp      17 5 ")
    xfail = judge_observed(xspec, broken)
    assert (xfail.status, xfail.clean) == ("XFAIL", True)
    assert xfail.xfail == xspec.xfail and "known divergence" in xfail.render()
    mismatch = judge_observed(spec, broken)
    assert (mismatch.status, mismatch.clean) == ("MISMATCH", False)
    assert mismatch.diffs == xfail.diffs
    match = judge_observed(spec, observed)
    assert (match.status, match.clean) == ("MATCH", True)


def _bundle_with(tmp_path: Path, name: str, spec_extra: str) -> Path:
    """A golden bundle whose spec says more, as if it had been recorded so (the spec_hash
    in meta.json follows the edit: judge refuses a spec changed after its run)."""
    bundle = tmp_path / name
    shutil.copytree(GOLDEN / name, bundle)
    spec_toml = bundle / "spec.toml"
    spec_toml.write_text(spec_extra + spec_toml.read_text())
    meta = json.loads((bundle / "meta.json").read_text())
    meta["spec_hash"] = spec_hash(spec_toml)
    (bundle / "meta.json").write_text(json.dumps(meta))
    return bundle


def test_natlab_judge_says_xpass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """End to end through the CLI: a spec declaring `xfail` on a run that matches."""
    bundle = _bundle_with(tmp_path, "seed-dnat-udp", 'xfail = "a divergence that is gone"\n')
    assert main(["judge", str(bundle)]) == 3
    out = capsys.readouterr().out
    assert out.startswith("seed-dnat-udp: XPASS")
    assert "known divergence: a divergence that is gone" in out
    assert judge(bundle).status == "CHANGED"


def test_natlab_judge_says_xfail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """End to end through the CLI: `xfail` declared, the final table edited (5 s left)."""
    bundle = _bundle_with(tmp_path, "seed-dnat-udp", 'xfail = "the timeout runs fast"\n')
    observed = bundle / "observed.json"
    observed.write_text(observed.read_text().replace("udp      17 29 ", "udp      17 5 "))
    first = judge(bundle)
    assert (first.judgement.status, first.status) == ("XFAIL", "CHANGED")
    assert main(["judge", str(bundle)]) == 3          # recorded MATCH, now XFAIL: CHANGED
    assert "DIFFERENT from the recorded MATCH" in capsys.readouterr().out
    # As a bundle recorded with the declaration would say: XFAIL, clean (exit status 0).
    (bundle / "verdict.json").write_text(json.dumps(verdict_json(first.judgement)))
    assert main(["judge", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("seed-dnat-udp: XFAIL")
    assert "the same as recorded" in out
    assert f"{DNAT_FLOW}: timeout: kernel 5 | model " in out


def test_natlab_judge_says_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle_with(tmp_path, "seed-dnat-udp", "")
    observed = bundle / "observed.json"
    observed.write_text(observed.read_text().replace("mark=0", "mark=5"))
    assert main(["judge", str(bundle)]) == 3
    assert capsys.readouterr().out.startswith("seed-dnat-udp: MISMATCH")


def test_incomplete_steps_are_warnings_that_fail_the_expectation() -> None:
    spec, observed = _load("seed-dnat-udp")
    step = "#1 udp: send failed: 99 Cannot assign requested address"
    j = judge_observed(spec, replace(observed, incomplete_steps=(step,)))
    assert j.warnings == (f"step did not complete: {step}",)
    assert j.expect.status == "FAIL" and j.expect.failures[-1] == j.warnings[0]
    assert j.status == "MATCH" and not j.clean
    assert f"warning: step did not complete: {step}" in j.render()


def test_render_lists_diffs_and_failures() -> None:
    spec, observed = _load("seed-dnat-udp")
    j = judge_observed(_expected(spec, payload="nope"),
                       _edit_snapshot(observed, "final", "udp      17 29 ", "udp      17 5 "))
    text = j.render().splitlines()
    assert text[0] == "seed-dnat-udp: MISMATCH  (expect: FAIL)"
    assert text[1].startswith(f"  {DNAT_FLOW}: timeout: kernel 5 | model ")
    assert text[2].startswith("  expect: expect.received.0: laptop received 0 packets")
