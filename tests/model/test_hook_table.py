"""The hook registration table (nat/hook_table.py): order, ties, refusals, and the walk.

The fixed order is typed in again from kernel-semantics.md 1.2 as an independent oracle.
Kernel facts checked live on 6.18 (see nat/hook_table.py): equal priorities run newest
first; a filter chain at output -250 sees `ct state invalid`; a chain tied with
ipv4_conntrack_local runs before or after it depending on load order.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from experiments import craft
from experiments.cli import main
from experiments.modelrun.run import run_on_model
from experiments.spec import load_spec
from nat.hook_table import ChainNotModelled, Kind, build_hook_table, fixed_registrations
from nat.hooks import Hook, in_hook_order
from nat.hooks_doc import SEED_NET, render_doc, seed_dance
from nat.pipeline import Gateway, GatewayConfig
from nat.rules.ast import Chain, RuleError, Ruleset
from nat.rules.iptables import parse_iptables_restore
from nat.rules.nft import parse_nft

ROOT = Path(__file__).parents[2]
DESKTOP, GW_WAN, GW_LAN, LAPTOP = (IPv4Address(a) for a in (
    "203.0.113.10", "203.0.113.1", "192.168.1.9", "192.168.1.8"))
INT_MAX = 2**31 - 1

# kernel-semantics.md 1.2, without raw/mangle/security (not modelled) and with defrag.
EXPECTED = {
    Hook.PRE_ROUTING: [(-400, "ipv4_conntrack_defrag"), (-200, "ipv4_conntrack_in"),
                       (-100, "nf_nat_ipv4_pre_routing")],
    Hook.LOCAL_IN: [(100, "nf_nat_ipv4_local_in"), (INT_MAX, "nf_confirm")],
    Hook.FORWARD: [],
    Hook.LOCAL_OUT: [(-400, "ipv4_conntrack_defrag"), (-200, "ipv4_conntrack_local"),
                     (-100, "nf_nat_ipv4_local_fn")],
    Hook.POST_ROUTING: [(100, "nf_nat_ipv4_out"), (INT_MAX, "nf_confirm")],
}
MASQ = "*nat\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n"


def heads(table_hooks: object, hook: Hook) -> list[tuple[int, str]]:
    table = build_hook_table(table_hooks) if isinstance(table_hooks, Ruleset) else table_hooks
    return [(r.priority, r.callback) for r in table.at(hook)]  # type: ignore[attr-defined]


def nft_gateway(text: str) -> Gateway:
    return Gateway(GatewayConfig(SEED_NET, parse_nft(text)))


def table(*chains: str) -> str:
    return "table ip t {\n" + "\n".join(f"  chain {c}" for c in chains) + "\n}\n"


# -- order ------------------------------------------------------------------------------------

def test_fixed_callbacks_run_in_the_kernels_order() -> None:
    t = build_hook_table(parse_iptables_restore(MASQ))
    for hook in Hook:
        assert heads(t, hook) == EXPECTED[hook], hook
    assert [(r.hook, r.kind) for r in t if r.kind is Kind.CONFIRM] == [
        (Hook.LOCAL_IN, Kind.CONFIRM), (Hook.POST_ROUTING, Kind.CONFIRM)]


def test_callbacks_are_registered_on_demand() -> None:
    assert all(not build_hook_table(Ruleset()).at(h) for h in Hook)
    ct_only = parse_iptables_restore("*filter\n-A FORWARD -m conntrack --ctstate NEW -j ACCEPT\n"
                                     "COMMIT\n")
    assert heads(ct_only, Hook.PRE_ROUTING) == [(-400, "ipv4_conntrack_defrag"),
                                                (-200, "ipv4_conntrack_in")]
    assert [r.kind for r in build_hook_table(ct_only).at(Hook.FORWARD)] == [Kind.FILTER_CHAIN]
    assert len(fixed_registrations()) == 10


def test_equal_priorities_run_newest_first() -> None:
    items = [("a", 0), ("b", 0), ("c", -5), ("d", 0), ("e", 5)]
    assert [n for n, _ in in_hook_order(items, lambda i: i[1])] == ["c", "d", "b", "a", "e"]
    gw = nft_gateway(table(
        "a { type filter hook forward priority 0; policy accept; counter; }",
        "b { type filter hook forward priority 0; policy accept; counter; }"))
    assert [r.chain.name for r in gw.hooks.at(Hook.FORWARD) if r.chain] == ["b", "a"]
    j = gw.receive(craft.udp(LAPTOP, 1000, DESKTOP, 53), "lan0", 0.0)
    assert [s.function for s in j.steps if s.hook is Hook.FORWARD] == ["ip t b", "ip t a"]


def test_nat_chains_run_inside_the_nat_core_at_its_priority() -> None:
    rs = parse_nft(table(
        "n1 { type nat hook prerouting priority -150; policy accept; "
        "udp dport 1 dnat to 192.168.1.8; }",
        "f { type filter hook prerouting priority -150; policy accept; }",
        "n2 { type nat hook prerouting priority -150; policy accept; }",
        "n3 { type nat hook prerouting priority -160; policy accept; }"))
    pre = build_hook_table(rs).at(Hook.PRE_ROUTING)
    assert [(r.priority, r.kind) for r in pre] == [
        (-400, Kind.DEFRAG), (-200, Kind.CONNTRACK), (-150, Kind.FILTER_CHAIN), (-100, Kind.NAT)]
    assert [r.chain.name for r in pre[-1].nat_chains if r.chain] == ["n3", "n2", "n1"]
    assert all(r.kind is Kind.NAT_CHAIN for r in pre[-1].nat_chains)


# -- the walk ---------------------------------------------------------------------------------

def test_a_filter_chain_at_prerouting_drops() -> None:
    gw = nft_gateway(table(
        "pre { type filter hook prerouting priority 0; policy accept; udp dport 53 drop; }",
        "post { type filter hook postrouting priority 0; policy accept; udp dport 54 drop; }"))
    dropped = gw.receive(craft.udp(LAPTOP, 1000, DESKTOP, 53), "lan0", 0.0)
    assert dropped.verdict == "DROP" and dropped.packet_out is None
    assert [s.function for s in dropped.steps] == ["ip t pre"]
    late = gw.receive(craft.udp(LAPTOP, 1000, DESKTOP, 54), "lan0", 0.0)
    assert late.verdict == "DROP" and late.steps[-1].hook is Hook.POST_ROUTING
    passed = gw.receive(craft.udp(LAPTOP, 1000, DESKTOP, 55), "lan0", 0.0)
    assert passed.verdict == "ACCEPT"
    assert [r.callback for r in passed.passed] == ["nft_do_chain_ipv4"] * 2


def test_prerouting_drop_after_dnat_leaves_no_entry() -> None:
    gw = nft_gateway(table(
        "dn { type nat hook prerouting priority dstnat; policy accept; "
        "udp dport 9999 dnat to 192.168.1.8; }",
        "pre { type filter hook prerouting priority 0; policy accept; "
        "ip daddr 192.168.1.8 drop; }"))
    j = gw.receive(craft.udp(DESKTOP, 1000, GW_WAN, 9999), "wan0", 0.0)
    assert j.verdict == "DROP" and j.entry is None and gw.entries(0.0) == []
    assert "the unconfirmed entry vanishes" in j.steps[-1].did


@pytest.mark.parametrize(("priority", "dropped"), [(-250, True), (-150, False), (0, False)])
def test_an_output_chain_below_conntrack_sees_invalid(priority: int, dropped: bool) -> None:
    gw = nft_gateway(table(f"out {{ type filter hook output priority {priority}; "
                           "policy accept; ct state invalid drop; }"))
    j = gw.send_local(craft.udp(GW_LAN, 1000, LAPTOP, 53), 0.0)
    assert (j.verdict == "DROP") == dropped
    kinds = [r.kind for r in j.passed]
    if dropped:
        assert kinds == [Kind.DEFRAG, Kind.FILTER_CHAIN] and not gw.entries(0.0)
    else:
        assert kinds.index(Kind.CONNTRACK) < kinds.index(Kind.FILTER_CHAIN)
        assert len(gw.entries(0.0)) == 1


# -- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("chain", "tied_with"), [
    ("type filter hook output priority -200;", "ipv4_conntrack_local"),
    ("type filter hook prerouting priority dstnat;", "nf_nat_ipv4_pre_routing"),
    ("type filter hook postrouting priority srcnat;", "nf_nat_ipv4_out"),
    ("type filter hook input priority 2147483647;", "nf_confirm"),
    ("type filter hook prerouting priority -400;", "ipv4_conntrack_defrag"),
])
def test_a_tie_with_a_fixed_callback_is_refused_naming_the_chain(chain: str,
                                                                 tied_with: str) -> None:
    text = ("table ip t {\n chain n { type nat hook postrouting priority srcnat; masquerade; }\n"
            f" chain odd {{\n  {chain}\n }}\n}}\n")
    with pytest.raises(ChainNotModelled) as info:
        parse_nft(text)
    message = str(info.value)
    assert isinstance(info.value, RuleError) and "\n" not in message
    assert message.startswith("line 3: not supported by the model: chain odd of table ip t")
    assert tied_with in message and info.value.lineno == 3


def test_no_tie_without_the_fixed_callback() -> None:
    rs = parse_nft(table("o { type filter hook output priority -200; policy accept; }"))
    assert heads(rs, Hook.LOCAL_OUT) == [(-200, "nft_do_chain_ipv4")]


def test_a_chain_the_model_cannot_run_is_refused_when_the_table_is_built() -> None:
    route = Chain("ip t", "rt", "route", Hook.LOCAL_OUT, -150, "ACCEPT")  # type: ignore[arg-type]
    with pytest.raises(ChainNotModelled, match="chain rt of table ip t .*chain type route"):
        Gateway(GatewayConfig(SEED_NET, Ruleset((route,), "nft")))
    fwd_nat = Chain("nat", "F", "nat", Hook.FORWARD, 0, "ACCEPT")
    with pytest.raises(ChainNotModelled, match="no NAT is done at FORWARD"):
        build_hook_table(Ruleset((fwd_nat,)))


def test_natlab_check_model_refuses_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = (ROOT / "experiments" / "specs" / "filter-prerouting.toml").read_text()
    path = tmp_path / "tied.toml"
    path.write_text(seed.replace("priority -250;", "priority -200;"))
    assert main(["check", str(path)]) == 0
    capsys.readouterr()
    assert main(["check", "--model", str(path)]) != 0
    err = capsys.readouterr().err
    assert "nft: line 2 (line 21 of the file)" in err and "chain untracked of table ip gw" in err
    assert "ipv4_conntrack_in" in err and len(err.strip().splitlines()) == 1


# -- the generated document -------------------------------------------------------------------

def test_the_restated_seed_dances_as_the_seed_spec_does() -> None:
    result = run_on_model(load_spec(ROOT / "experiments" / "specs" / "seed-dnat-udp.toml"))
    assert [j.passed for j in seed_dance()] == [j.passed for j in result.journeys]
    assert [j.verdict for j in result.journeys] == ["ACCEPT", "ACCEPT"]


def test_doc_is_up_to_date() -> None:
    assert (ROOT / "docs" / "hooks.md").read_text() == render_doc(), \
        "regenerate with: python -m nat.hooks_doc > docs/hooks.md"
