"""Steps that change the world, on the real kernel: the gateway's ruleset replaced on every
backend, `conntrack -F/-D/-I/-U` built from typed values and checked against the model's
ctnetlink changes, and a run recording the moment of each move between the captures around
it. One `home` topology for the module (rules and table emptied between tests)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from experiments.backends import BACKENDS
from experiments.backends import BackendName as Backend
from experiments.judging.judgement import judge_observed
from experiments.kernel.conntrack import snapshot
from experiments.kernel.moves import apply_move, conntrack_argv, conntrack_change
from experiments.kernel.rules import RulesError, clear_rules, load_rules, read_rules
from experiments.kernel.run import observed_from, run_on_kernel
from experiments.model_config import spec_config
from experiments.model_moves import GatewayMoves
from experiments.plan import ConntrackChange, CtMatch, SetRules, SetSysctls
from experiments.spec import load_spec
from nat.listing import parse_line
from nat.pipeline import Gateway
from nat.rules.iptables import parse_iptables_restore
from topologies.mininet_net import Network

SPECS = Path(__file__).parents[2] / "experiments" / "specs"
LAPTOP, DESKTOP = IPv4Address("192.168.1.8"), IPv4Address("203.0.113.10")
FIRST = ("*filter\n-A FORWARD -p udp --dport 9 -j DROP\nCOMMIT\n"
         "*nat\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n")
SECOND = "*nat\n-A PREROUTING -i wan0 -p udp --dport 9999 -j DNAT --to-destination " \
         "192.168.1.8\nCOMMIT\n"


@pytest.fixture
def gw(home_net: Network) -> Iterator[Network]:
    yield home_net
    for backend in ("nft", "iptables-legacy"):
        clear_rules(home_net.gateway, backend)
    home_net.gateway.run(("conntrack", "-F"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_rules_move_replaces_the_whole_ruleset(gw: Network, backend: Backend) -> None:
    load_rules(gw.gateway, backend, FIRST)
    fed = apply_move(gw.hosts, "gateway", backend, SetRules(SECOND, None))[1]
    after = read_rules(gw.gateway, backend)
    assert "DNAT" in after.upper() or "dnat to" in after
    assert "MASQUERADE" not in after.upper()           # the old nat rule is gone
    assert "dport 9 " not in after and "--dport 9 " not in after   # and the filter rule
    assert fed is not None
    # The model reads what was fed: the new DNAT rule and nothing of the old rules.
    if backend != "nft":
        rules = parse_iptables_restore(fed).rules()
        assert [str(r.target).split()[0] for r in rules] == ["DNAT"]
    apply_move(gw.hosts, "gateway", backend, SetRules("", None))
    assert "-A " not in read_rules(gw.gateway, backend)
    assert " dnat " not in read_rules(gw.gateway, backend)


def _kernel_entries(net: Network) -> set[tuple[object, ...]]:
    lines, _ = snapshot(net.gateway)
    return {(*e.key(), e.mark) for e in map(parse_line, lines)}


def test_conntrack_moves_match_the_models_ctnetlink(gw: Network) -> None:
    """The same sequence of changes on the kernel's table and the model's: the same entries
    (tuples and marks) after each."""
    model = Gateway(spec_config(load_spec(SPECS / "ct-insert-then-send.toml")))
    movers = GatewayMoves({}, lambda mv, fed: parse_iptables_restore(mv.rules))
    moves = [
        ConntrackChange("insert", CtMatch("udp", LAPTOP, DESKTOP, 5000, 6000, DESKTOP, LAPTOP,
                                          6000, 5000), timeout=60, status=("SEEN_REPLY",),
                        mark=3),
        ConntrackChange("insert", CtMatch("udp", LAPTOP, DESKTOP, 5001, 6000, DESKTOP, LAPTOP,
                                          6000, 5001), timeout=60),
        ConntrackChange("update", CtMatch(src=LAPTOP), mark=8, timeout=100),
        ConntrackChange("delete", CtMatch("udp", sport=5001)),
        ConntrackChange("delete", CtMatch("udp", sport=5999)),      # matches nothing: fine
        ConntrackChange("flush", CtMatch()),
    ]
    for move in moves:
        conntrack_change(gw.gateway, move)
        movers.apply(model, move, 1.0)
        assert _kernel_entries(gw) == {(*e.key(), e.mark) for e in model.entries(1.0)}, move


def test_conntrack_insert_of_a_held_tuple_is_one_line(gw: Network) -> None:
    move = ConntrackChange("insert", CtMatch("udp", LAPTOP, DESKTOP, 7, 8, DESKTOP, LAPTOP,
                                             8, 7), timeout=30)
    conntrack_change(gw.gateway, move)
    with pytest.raises(RulesError) as info:
        conntrack_change(gw.gateway, move)
    said = str(info.value)
    assert "\n" not in said and "conntrack -I" in said and "gateway" in said


def test_conntrack_argv_is_the_typed_values_one_per_argument() -> None:
    argv = conntrack_argv(ConntrackChange("delete", CtMatch("udp", LAPTOP, None, 5, None)))
    assert argv == ("conntrack", "-D", "-p", "udp", "-s", "192.168.1.8", "--sport", "5")
    argv = conntrack_argv(ConntrackChange("update", CtMatch(dst=DESKTOP), timeout=9, mark=1))
    assert argv == ("conntrack", "-U", "-d", "203.0.113.10", "-t", "9", "-m", "1")


def test_a_sysctl_move_the_kernel_refuses_names_it(gw: Network) -> None:
    load_rules(gw.gateway, "nft", FIRST)      # net.netfilter appears once conntrack is used
    with pytest.raises(RulesError) as info:
        apply_move(gw.hosts, "gateway", "nft",
                   SetSysctls((("net.netfilter.nf_conntrack_udp_timeout", "x"),)))
    assert "nf_conntrack_udp_timeout" in str(info.value)


def test_a_run_records_each_move_between_the_packets_around_it(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "ct-flush-new-entry.toml")
    obs = run_on_kernel(spec, workdir=tmp_path)
    (moment,) = obs.moments
    assert moment.step == 2 and moment.fed is None
    before = [p.time for p in obs.packets if p.time < moment.time]
    after = [p.time for p in obs.packets if p.time > moment.time]
    assert len(before) == 4 and len(after) == 4      # request and reply, in and out, each
    snaps = {s.name: s for s in obs.checkpoints}
    assert snaps["before-flush"].time < moment.time < snaps["after-flush"].time
    assert len(snaps["after-flush"].lines) == 0
    # The replay needs the moment: without it the model keeps the flushed entry.
    observed = observed_from(obs)
    assert judge_observed(spec, observed).status == "MATCH"
    assert judge_observed(spec, replace(observed, moments=())).status == "MISMATCH"


def test_rules_move_with_nft_text_is_fed_as_given(gw: Network) -> None:
    nft = ("table ip nat {\n chain pre { type nat hook prerouting priority dstnat; "
           'policy accept; iifname "wan0" udp dport 9999 dnat to 192.168.1.8; }\n}\n')
    load_rules(gw.gateway, "nft", FIRST)
    fed = apply_move(gw.hosts, "gateway", "nft", SetRules("", nft))[1]
    assert fed == nft
    after = read_rules(gw.gateway, "nft")
    assert "dnat to 192.168.1.8" in after and "masquerade" not in after
    assert "table ip filter" not in after
