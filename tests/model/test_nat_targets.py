"""Targets → ranges: MASQUERADE's address choice, REDIRECT's, NETMAP, SNAT/DNAT as written."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

import pytest

from nat.hooks import Hook
from nat.nat_targets import (
    inet_select_addr,
    masquerade_range,
    netmap_range,
    redirect_range,
    snat_range,
)
from nat.netdev import Device, NetView
from nat.rules.ast import Dnat, Masquerade, NatFlag, NatRange, Redirect, Snat

A = IPv4Address
I = IPv4Interface  # noqa: E741

WAN = Device("wan0", 3, (I("203.0.113.1/24"), I("198.51.100.1/24"), I("203.0.113.7/24")))
LAN = Device("lan0", 2, (I("192.168.1.1/24"),))
BARE = Device("dummy0", 4, ())
LO = Device("lo", 1, (I("127.0.0.1/8"),))


def test_inet_select_addr_prefers_the_subnet_of_the_next_hop() -> None:
    assert inet_select_addr(WAN, A("198.51.100.254")) == A("198.51.100.1")
    assert inet_select_addr(WAN, A("203.0.113.10")) == A("203.0.113.1")
    # No subnet holds it: the first primary address.
    assert inet_select_addr(WAN, A("8.8.8.8")) == A("203.0.113.1")


def test_inet_select_addr_never_picks_a_secondary_address() -> None:
    # 203.0.113.7 is secondary (second address in 203.0.113.0/24).
    picks = {inet_select_addr(WAN, A(f"203.0.113.{i}")) for i in range(2, 255)}
    assert picks == {A("203.0.113.1")}


def test_inet_select_addr_falls_back_to_other_devices() -> None:
    view = NetView((LO, LAN, BARE))
    assert inet_select_addr(BARE, A("8.8.8.8"), view) == A("192.168.1.1")
    assert inet_select_addr(BARE, A("8.8.8.8")) is None
    assert inet_select_addr(LO, A("8.8.8.8")) is None  # host scope only


def test_masquerade_range_is_a_single_address_with_the_rule_ports_and_flags() -> None:
    target = Masquerade(NatRange(NatFlag.PROTO_SPECIFIED | NatFlag.PROTO_RANDOM_FULLY,
                                 None, None, 1024, 2047))
    rng = masquerade_range(target, WAN, A("203.0.113.254"), A("192.168.1.8"))
    assert rng == NatRange(NatFlag.MAP_IPS | NatFlag.PROTO_SPECIFIED
                           | NatFlag.PROTO_RANDOM_FULLY,
                           A("203.0.113.1"), A("203.0.113.1"), 1024, 2047)
    plain = masquerade_range(Masquerade(), WAN, A("198.51.100.9"), A("192.168.1.8"))
    assert plain == NatRange(NatFlag.MAP_IPS, A("198.51.100.1"), A("198.51.100.1"))


def test_masquerade_without_an_address_drops_and_zero_source_is_left_alone() -> None:
    assert masquerade_range(Masquerade(), BARE, A("8.8.8.8"), A("192.168.1.8")) is None
    rng = masquerade_range(Masquerade(), WAN, A("8.8.8.8"), A("0.0.0.0"))
    assert rng == NatRange(NatFlag.MAP_IPS, A("0.0.0.0"), A("0.0.0.0"))


def test_redirect_range() -> None:
    ports = NatRange(NatFlag.PROTO_SPECIFIED, None, None, 8080, 8080)
    assert redirect_range(Redirect(ports), Hook.LOCAL_OUT, None) == NatRange(
        NatFlag.MAP_IPS | NatFlag.PROTO_SPECIFIED, A("127.0.0.1"), A("127.0.0.1"), 8080, 8080)
    # PRE_ROUTING: the FIRST address of the incoming device, even a second subnet's is ignored.
    assert redirect_range(Redirect(), Hook.PRE_ROUTING, WAN) == NatRange(
        NatFlag.MAP_IPS, A("203.0.113.1"), A("203.0.113.1"))
    assert redirect_range(Redirect(), Hook.PRE_ROUTING, BARE) is None
    assert redirect_range(Redirect(), Hook.PRE_ROUTING, None) is None
    with pytest.raises(ValueError, match="PREROUTING"):
        redirect_range(Redirect(), Hook.POST_ROUTING, WAN)


def test_snat_and_dnat_pass_their_range_through() -> None:
    rng = NatRange(NatFlag.MAP_IPS, A("203.0.113.10"), A("203.0.113.20"))
    assert snat_range(Snat(rng)) is rng
    assert Dnat(rng).range is rng


def test_netmap_keeps_the_host_part() -> None:
    rng = NatRange(NatFlag.MAP_IPS, A("10.5.0.0"), A("10.5.0.255"))
    pre = netmap_range(rng, Hook.PRE_ROUTING, A("1.2.3.4"), A("192.168.7.42"))
    assert pre.min_addr == pre.max_addr == A("10.5.0.42")
    post = netmap_range(rng, Hook.POST_ROUTING, A("192.168.7.9"), A("1.2.3.4"))
    assert post.min_addr == A("10.5.0.9") and post.flags & NatFlag.MAP_IPS
