"""The allowed sets sampled on the real kernel: many flows that clash on purpose.

Four clients of the `lan` preset send UDP from the *same* source ports to the same server
through the gateway, so all but one of each port's flows must be remapped. For every flow
the kernel's pick (read back with `conntrack -L`) must be
- inside the set the kernel's rule allows, typed in here from nf_nat_core.c (the port's
  class, the `--to-ports` range, the one jhash address of an address range), and
- inside the model's allowed set, computed from the rest of the kernel's table;
and for one flow of each kind the model's set, enumerated over every port, must be no
larger than the rule's. The model-side tests that these sets are exact are in
tests/model/test_allowed_sets_exact.py.
"""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address

import pytest

from experiments.kernel.conntrack import flush, snapshot
from experiments.kernel.rules import load_rules
from nat.conn import Conn
from nat.conntrack import Table
from nat.entry import Entry
from nat.maniptype import ManipType
from nat.nat_core import (
    MAP_IPS,
    PERSISTENT,
    PROTO_RANDOM,
    PROTO_RANDOM_FULLY,
    PROTO_SPECIFIED,
    TupleChoice,
)
from nat.nat_setup import get_unique_tuple
from nat.profile import LINUX_LATEST
from nat.rules.ast import NatFlag, NatRange
from nat.status import Status
from nat.tuple import Proto, Tuple, invert
from topologies.mininet_net import Network

A = IPv4Address
WAN = A("203.0.113.1")
SERVER = A("203.0.113.10")
DPORT = 5353
CLIENTS = ("client1", "client2", "client3", "client4")
NOW = 0.0

# Below 512 / 512-1023 (512-599 never chosen) / 1024 and above, as in the kernel source.
CLASSES = [(range(1, 512), set(range(1, 512))),
           (range(512, 1024), set(range(600, 1024))),
           (range(1024, 65536), set(range(1024, 65536)))]


def kernel_class(port: int) -> set[int]:
    return next(allowed for where, allowed in CLASSES if port in where)


SEND = """
import socket, sys
dst, dport = sys.argv[1], int(sys.argv[2])
for p in sys.argv[3:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", int(p)))
    s.sendto(b"clash", (dst, dport))
    s.close()
"""


def send_from(net: Network, client: str, sports: list[int]) -> None:
    net.host(client).run(["python3", "-c", SEND, str(SERVER), str(DPORT), *map(str, sports)])


def clash(net: Network, rules: str, sports: list[int]) -> list[Entry]:
    """Every client sends from every port in `sports`, one client after the other; the
    gateway's UDP entries towards the server."""
    load_rules(net.gateway, "iptables", rules)
    flush(net.gateway)
    for client in CLIENTS:
        send_from(net, client, sports)
    _, entries = snapshot(net.gateway)
    return [e for e in entries if e.proto == Proto.UDP and e.orig.dst == SERVER
            and e.orig.dport == DPORT]


def model_choice(entries: list[Entry], flow: Entry, rng: NatRange) -> TupleChoice:
    """The model's allowed set for `flow`, given every other entry the kernel holds."""
    table = Table()
    ids = itertools.count(1)
    for e in entries:
        if e is not flow:
            table.insert(Conn(id=next(ids), orig=e.orig, reply=e.reply,
                              status=Status.CONFIRMED | Status.SRC_NAT, timeout=NOW + 30))
    c = Conn(id=next(ids), orig=flow.orig, reply=invert(flow.orig), created=NOW)
    return get_unique_tuple(flow.orig, rng, c, ManipType.SRC, table, NOW, LINUX_LATEST)


def picked(e: Entry) -> Tuple:
    """What the flow's original direction looks like after the kernel's SNAT."""
    return invert(e.reply)


def model_ports(choice: TupleChoice, t: Tuple) -> set[int]:
    return {k for k in range(65536) if choice.contains(Tuple(t.proto, t.src, t.dst, k, t.dport))}


MASQ = NatRange(NatFlag(MAP_IPS), WAN, WAN)


def test_clashing_ports_stay_in_their_class(lan_net: Network) -> None:
    sports = [100, 101, 102, 511, 512, 550, 599, 700, 1023, 1024, 40010, 40011, 65535]
    entries = clash(lan_net, "*nat\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n", sports)
    assert len(entries) == 4 * len(sports)
    checked_in_full: set[int] = set()
    for sport in sports:
        flows = [e for e in entries if e.orig.sport == sport]
        picks = [picked(e).sport for e in flows]
        assert len(set(picks)) == 4, (sport, picks)          # four distinct mappings
        for e in flows:
            out = picked(e)
            assert out.src == WAN
            # The kernel's rule: the port kept when free, else a port of its class.
            assert out.sport == sport or out.sport in kernel_class(sport), (sport, out)
            choice = model_choice(entries, e, MASQ)
            assert choice.contains(out), (sport, out, choice.describe())
            key = min(kernel_class(sport))
            if out.sport != sport and key not in checked_in_full:
                checked_in_full.add(key)
                assert model_ports(choice, out) <= kernel_class(sport), choice.describe()
        # Ports 512-599 are moved even though they are the only class member in use.
        if 512 <= sport < 600:
            assert sum(p == sport for p in picks) == 1
    assert len(checked_in_full) == 3


def test_port_range_picks_stay_in_the_range(lan_net: Network) -> None:
    rules = "*nat\n-A POSTROUTING -o wan0 -p udp -j MASQUERADE --to-ports 20000-20009\nCOMMIT\n"
    entries = clash(lan_net, rules, [40010, 40011])
    assert len(entries) == 8
    rng = NatRange(NatFlag(MAP_IPS | PROTO_SPECIFIED), WAN, WAN, 20000, 20009)
    outs = [picked(e) for e in entries]
    assert len({o.sport for o in outs}) == 8
    for e, out in zip(entries, outs, strict=True):
        assert out.src == WAN and 20000 <= out.sport <= 20009, out
        choice = model_choice(entries, e, rng)
        assert choice.contains(out), (out, choice.describe())
        assert model_ports(choice, out) <= set(range(20000, 20010))


@pytest.mark.parametrize("persistent", [False, True])
def test_address_range_picks_the_one_jhash_address(lan_net: Network, persistent: bool) -> None:
    lo, hi = A("203.0.113.50"), A("203.0.113.60")
    flag = " --persistent" if persistent else ""
    rules = (f"*nat\n-A POSTROUTING -o wan0 -j SNAT --to-source {lo}-{hi}{flag}\nCOMMIT\n")
    entries = clash(lan_net, rules, [40010, 40011, 700])
    assert len(entries) == 12
    rng = NatRange(NatFlag(MAP_IPS | (PERSISTENT if persistent else 0)), lo, hi)
    in_range = [A(int(lo) + i) for i in range(int(hi) - int(lo) + 1)]
    for e in entries:
        out = picked(e)
        assert lo <= out.src <= hi, out
        choice = model_choice(entries, e, rng)
        assert choice.contains(out), (out, choice.describe())
        # Exactly one address of the range is allowed: the one the kernel took.
        assert [a for a in in_range
                if choice.contains(Tuple(out.proto, a, out.dst, out.sport, out.dport))] == \
            [out.src]


@pytest.mark.parametrize("flag", ["--random", "--random-fully"])
def test_random_picks_stay_in_the_class_even_without_a_clash(lan_net: Network,
                                                             flag: str) -> None:
    rules = f"*nat\n-A POSTROUTING -o wan0 -j MASQUERADE {flag}\nCOMMIT\n"
    load_rules(lan_net.gateway, "iptables", rules)
    flush(lan_net.gateway)
    sports = {"client1": [100, 101, 102], "client2": [700, 701, 702],
              "client3": [40010, 40011, 40012], "client4": [40013, 40014, 40015]}
    for client, ports in sports.items():
        send_from(lan_net, client, ports)
    _, all_entries = snapshot(lan_net.gateway)
    entries = [e for e in all_entries if e.proto == Proto.UDP and e.orig.dst == SERVER]
    assert len(entries) == 12
    random = PROTO_RANDOM if flag == "--random" else PROTO_RANDOM_FULLY
    rng = NatRange(NatFlag(MAP_IPS | random), WAN, WAN)
    moved = 0
    for e in entries:
        out = picked(e)
        assert out.src == WAN and out.sport in kernel_class(e.orig.sport), (e.orig, out)
        moved += out.sport != e.orig.sport
        choice = model_choice(entries, e, rng)
        assert choice.contains(out), (out, choice.describe())
    # Twelve flows without any clash: the kernel moved (nearly) all of them, which a
    # "keep the port when free" model would not allow.
    assert moved >= 9
    sample = entries[0]
    assert model_ports(model_choice(entries, sample, rng), picked(sample)) <= \
        kernel_class(sample.orig.sport)
