"""docs/hooks.md, generated from the hook table: `python -m nat.hooks_doc > docs/hooks.md`.

Two parts, both data from the model: the fixed registrations per hook in the order the kernel
runs them (nat/hook_table.py), and the callbacks seed 001 (experiments/specs/seed-dnat-udp.toml)
passes, as the modelled gateway records them (`Journey.passed`). The seed's gateway is restated
here (nat/ reads no spec files); tests/model/test_hook_table.py checks that its dance equals the
one the spec itself produces, and that docs/hooks.md equals `render_doc()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface

from nat.checksum import with_fresh_checksums
from nat.hook_table import Kind, Registration, fixed_registrations, priority_text
from nat.hooks import Hook, in_hook_order
from nat.journey import Journey
from nat.netdev import Device, NetView
from nat.packet import IPv4Header, Packet, UdpHeader
from nat.pipeline import Gateway, GatewayConfig
from nat.rules.iptables import parse_iptables_restore
from nat.tuple import Proto

# Seed 001 as the model sees it: the home gateway, one DNAT rule, one datagram and its answer.
SEED_NAME = "seed-dnat-udp"
SEED_RULES = """*nat
-A PREROUTING -i wan0 -p udp --dport 9999 -j DNAT --to-destination 192.168.1.8
COMMIT
"""
SEED_NET = NetView((Device("lan0", 2, (IPv4Interface("192.168.1.9/24"),)),
                    Device("wan0", 3, (IPv4Interface("203.0.113.1/24"),))))
DESKTOP, GATEWAY, LAPTOP = (IPv4Address(a) for a in ("203.0.113.10", "192.168.1.9",
                                                     "192.168.1.8"))


def _udp(src: IPv4Address, sport: int, dst: IPv4Address, dport: int, payload: bytes) -> Packet:
    pkt = Packet(IPv4Header(src=src, dst=dst, proto=Proto.UDP, ttl=64, ident=0),
                 UdpHeader(sport, dport, 8 + len(payload)), payload)
    pkt = replace(pkt, ip=replace(pkt.ip, total_length=pkt.ip.header_length + 8 + len(payload)))
    return with_fresh_checksums(pkt)


def seed_dance() -> tuple[Journey, Journey]:
    """The seed's first datagram (desktop -> gateway:9999, DNATed to the laptop) and the
    laptop's answer, through the modelled gateway."""
    gw = Gateway(GatewayConfig(SEED_NET, parse_iptables_restore(SEED_RULES)))
    first = gw.receive(_udp(DESKTOP, 37611, GATEWAY, 9999, b"hello laptop"), "wan0", 0.001)
    answer = gw.receive(_udp(LAPTOP, 9999, DESKTOP, 37611, b"hello desktop"), "lan0", 0.002)
    return first, answer


def _row(reg: Registration) -> str:
    what = reg.callback
    if reg.kind is Kind.NAT_CHAIN and reg.chain is not None:
        what = f"↳ {reg.callback}: nat chain {reg.chain.name} (priority {reg.priority})"
    return f"| {reg.hook.name} | {priority_text(reg.priority)} | `{what}` | {reg.kind.value} |"


def render_doc(dance: Sequence[Journey] | None = None) -> str:
    """The whole of docs/hooks.md."""
    dance = seed_dance() if dance is None else dance
    fixed = fixed_registrations(conntrack=True, nat=True)
    lines = [
        "# Hook callbacks and their order",
        "",
        "Generated from `nat/hook_table.py` by `python -m nat.hooks_doc > docs/hooks.md`; do not",
        "edit by hand. Kernel: net/netfilter/core.c (nf_hook_entries_grow), nf_conntrack_proto.c",
        "(ipv4_conntrack_ops), nf_nat_proto.c (nf_nat_ipv4_ops), nf_nat_core.c",
        "(nf_nat_register_fn, nf_nat_inet_fn); names as in 6.18 (6.1 calls nf_confirm's slot",
        "ipv4_confirm).",
        "",
        "Each hook runs its callbacks by priority, lowest first. Among equal priorities the one",
        "registered last runs first. Conntrack's callbacks (with defrag) are registered once a",
        "rule needs conntrack; the NAT core's once a nat chain exists. A filter base chain is a",
        "callback of its own, at its own hook and priority (any of the five hooks). A nat chain",
        "is not: the NAT core's callback runs the nat chains of its hook, ordered by their",
        "priorities, for a connection's first packet. A filter chain with the same priority as",
        "one of the callbacks below on the same hook is refused by the model: the kernel's order",
        "then depends on what was loaded first.",
        "",
        "## The fixed registrations, per hook, in run order",
        "",
        "| hook | priority | callback | kind |",
        "|---|---|---|---|",
    ]
    for hook in Hook:
        regs = in_hook_order((r for r in fixed if r.hook == hook), lambda r: r.priority)
        if not regs:
            lines.append(f"| {hook.name} | | (none: only filter chains) | |")
        lines += [_row(r) for r in regs]
    lines += [
        "",
        "The model's defrag passes packets on unchanged (it does not reassemble; conntrack",
        "calls a fragment INVALID).",
        "",
        f"## Seed 001's dance ({SEED_NAME})",
        "",
        "The callbacks the seed's packets are handed to, in order, as the model records them",
        "(`Journey.passed`); `↳` marks a nat chain run from inside the NAT core's callback.",
        "The routing decision comes between PRE_ROUTING and FORWARD; FORWARD has no callback",
        "in this ruleset.",
    ]
    titles = ("The first datagram (desktop → gateway:9999, DNAT to the laptop)",
              "The answer (laptop → desktop)")
    for title, journey in zip(titles, dance, strict=True):
        lines += ["", f"### {title}", "", f"`{journey.packet_in.summary()}` "
                  f"(verdict {journey.verdict})", "", "| hook | priority | callback | kind |",
                  "|---|---|---|---|"]
        lines += [_row(r) for r in journey.passed]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_doc(), end="")
