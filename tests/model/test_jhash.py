"""jhash2 and the NAT address pick.

The vectors chain to published values: lookup3's byte hash `hashlittle` has known results
(Bob Jenkins' driver5: "Four score and seven years ago" → 0x17770551 with seed 0, 0xcd628161
with seed 1). A separate, line-by-line hashlittle written here from the lookup3 description
reproduces them; on a little-endian machine hashword (= jhash2) of n words equals hashlittle
of the same 4n bytes, so jhash2 is checked against it on random inputs.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st

from nat.jhash import jhash2, native_word, pick_ip, reciprocal_scale

M = 0xFFFFFFFF


def rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & M


def ref_hashlittle(data: bytes, initval: int) -> int:
    """lookup3 hashlittle, spelled out as in the published description (independent of nat/)."""
    a = b = c = (0xDEADBEEF + len(data) + initval) & M
    n = len(data)
    if n == 0:
        return c
    pos = 0
    while n - pos > 12:
        k0, k1, k2 = struct.unpack_from("<III", data, pos)
        a = (a + k0) & M
        b = (b + k1) & M
        c = (c + k2) & M
        # mix
        a = (a - c) & M
        a ^= rot(c, 4)
        c = (c + b) & M
        b = (b - a) & M
        b ^= rot(a, 6)
        a = (a + c) & M
        c = (c - b) & M
        c ^= rot(b, 8)
        b = (b + a) & M
        a = (a - c) & M
        a ^= rot(c, 16)
        c = (c + b) & M
        b = (b - a) & M
        b ^= rot(a, 19)
        a = (a + c) & M
        c = (c - b) & M
        c ^= rot(b, 4)
        b = (b + a) & M
        pos += 12
    tail = data[pos:] + bytes(12 - (n - pos))
    k0, k1, k2 = (int(w) for w in struct.unpack("<III", tail))
    a = (a + k0) & M
    b = (b + k1) & M
    c = (c + k2) & M
    # final
    c ^= b
    c = (c - rot(b, 14)) & M
    a ^= c
    a = (a - rot(c, 11)) & M
    b ^= a
    b = (b - rot(a, 25)) & M
    c ^= b
    c = (c - rot(b, 16)) & M
    a ^= c
    a = (a - rot(c, 4)) & M
    b ^= a
    b = (b - rot(a, 14)) & M
    c ^= b
    c = (c - rot(b, 24)) & M
    return c


def test_reference_hashlittle_matches_published_vectors() -> None:
    text = b"Four score and seven years ago"
    assert ref_hashlittle(b"", 0) == 0xDEADBEEF
    assert ref_hashlittle(text, 0) == 0x17770551
    assert ref_hashlittle(text, 1) == 0xCD628161


def test_jhash2_empty_returns_the_unmixed_seed() -> None:
    assert jhash2([], 0) == 0xDEADBEEF
    assert jhash2([], 0xDEADBEEF) == (0xDEADBEEF * 2) & M


@given(st.lists(st.integers(0, M), max_size=9), st.integers(0, M))
def test_jhash2_equals_hashlittle_of_the_little_endian_bytes(words: list[int], seed: int) -> None:
    data = b"".join(struct.pack("<I", w) for w in words)
    assert jhash2(words, seed) == ref_hashlittle(data, seed)


def test_jhash2_vectors_for_ipv4_address_words() -> None:
    # 10.0.0.1 as the kernel's 16-byte address field: words [0x0100000a, 0, 0, 0].
    words = [native_word(IPv4Address("10.0.0.1")), 0, 0, 0]
    assert words[0] == 0x0100000A
    expected = ref_hashlittle(bytes([10, 0, 0, 1]) + bytes(12), 0)
    assert jhash2(words, 0) == expected
    # The seed matters and the result is a 32-bit value.
    assert jhash2(words, 1) != jhash2(words, 0)
    assert 0 <= jhash2(words, 0xFFFFFFFF) <= M


def test_reciprocal_scale() -> None:
    assert reciprocal_scale(0, 11) == 0
    assert reciprocal_scale(M, 11) == 10
    assert reciprocal_scale(1 << 31, 10) == 5
    assert reciprocal_scale(12345, 0) == 0  # a span of 2^32 wraps to 0, as in u32 arithmetic


def _predict(src: str, dst: str, lo: str, hi: str, zone: int, persistent: bool) -> IPv4Address:
    """The §4.4 formula spelled out with the reference hash."""
    s, d = IPv4Address(src), IPv4Address(dst)
    seed = 0 if persistent else (int.from_bytes(d.packed, "little") ^ zone)
    j = ref_hashlittle(s.packed + bytes(12), seed)
    span = int(IPv4Address(hi)) - int(IPv4Address(lo)) + 1
    return IPv4Address(int(IPv4Address(lo)) + ((j * span) >> 32))


def test_pick_ip_single_address_range_is_that_address() -> None:
    a = IPv4Address("203.0.113.10")
    assert pick_ip(IPv4Address("10.0.0.2"), IPv4Address("1.2.3.4"), a, a, 0, False) == a


def test_pick_ip_follows_the_formula_and_stays_in_range() -> None:
    lo, hi = IPv4Address("203.0.113.10"), IPv4Address("203.0.113.20")
    picks = set()
    for i in range(2, 40):
        src = IPv4Address(f"192.0.2.{i}")
        got = pick_ip(src, IPv4Address("198.51.100.2"), lo, hi, 0, False)
        assert got == _predict(str(src), "198.51.100.2", str(lo), str(hi), 0, False)
        assert lo <= got <= hi
        picks.add(got)
    assert len(picks) > 3  # spread over the range, not stuck on one address


def test_pick_ip_persistent_ignores_destination_and_zone() -> None:
    lo, hi = IPv4Address("203.0.113.10"), IPv4Address("203.0.113.20")
    src = IPv4Address("192.0.2.10")
    got = {pick_ip(src, IPv4Address(f"198.51.100.{d}"), lo, hi, z, True)
           for d in range(1, 30) for z in (0, 5)}
    assert len(got) == 1
    # Without --persistent the destination and the zone enter the seed.
    varied = {pick_ip(src, IPv4Address(f"198.51.100.{d}"), lo, hi, 0, False) for d in range(1, 30)}
    assert len(varied) > 1
    assert pick_ip(src, IPv4Address("198.51.100.2"), lo, hi, 5, False) == _predict(
        "192.0.2.10", "198.51.100.2", str(lo), str(hi), 5, False)


# Observed on Linux 6.18.44 (netns, iptables-nft): one UDP datagram from each client to
# 198.51.100.2, through `SNAT --to-source 203.0.113.10-203.0.113.20` (and with --persistent).
LIVE_PICKS = [
    ("192.0.2.2", False, "203.0.113.15"), ("192.0.2.4", False, "203.0.113.13"),
    ("192.0.2.8", False, "203.0.113.11"), ("192.0.2.12", False, "203.0.113.10"),
    ("192.0.2.16", False, "203.0.113.19"), ("192.0.2.32", False, "203.0.113.17"),
    ("192.0.2.2", True, "203.0.113.10"), ("192.0.2.3", True, "203.0.113.17"),
    ("192.0.2.6", True, "203.0.113.12"), ("192.0.2.9", True, "203.0.113.18"),
    ("192.0.2.10", True, "203.0.113.19"),
]


def test_pick_ip_matches_the_live_kernel() -> None:
    lo, hi = IPv4Address("203.0.113.10"), IPv4Address("203.0.113.20")
    for src, persistent, seen in LIVE_PICKS:
        got = pick_ip(IPv4Address(src), IPv4Address("198.51.100.2"), lo, hi, 0, persistent)
        assert got == IPv4Address(seen), (src, persistent)
