"""Bob Jenkins' lookup3 word hash, and the NAT core's pick of an address from a range.

The kernel's jhash2() (include/linux/jhash.h) is lookup3's public-domain `hashword`. The NAT
core uses it in find_best_ips_proto() (net/netfilter/nf_nat_core.c) to spread connections over
an address range deterministically: the same client always lands on the same address (no
secret seed), which is why natlab can predict the pick exactly (kernel-semantics.md §4.4).
Written from the published lookup3 description, not from the kernel's code.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address

_MASK = 0xFFFFFFFF
JHASH_INITVAL = 0xDEADBEEF


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


# mix(): six steps; step i works on word x = i % 3 with z = the word before it and y = the word
# after it: x -= z; x ^= rol(z, r); z += y. The rotations are lookup3's.
_MIX_ROT = (4, 6, 8, 16, 19, 4)
# final(): seven steps; x runs c, a, b, c, …, z is the previous x: x ^= z; x -= rol(z, r).
_FINAL_STEPS = ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14), (2, 1, 24))


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    """lookup3 mix(): reversible mixing of three 32-bit words."""
    s = [a, b, c]
    for i, r in enumerate(_MIX_ROT):
        x, y, z = i % 3, (i + 1) % 3, (i + 2) % 3
        s[x] = (s[x] - s[z]) & _MASK
        s[x] ^= _rol(s[z], r)
        s[z] = (s[z] + s[y]) & _MASK
    return s[0], s[1], s[2]


def _final(a: int, b: int, c: int) -> int:
    """lookup3 final(): the last avalanche; only c is needed."""
    s = [a, b, c]
    for x, z, r in _FINAL_STEPS:
        s[x] ^= s[z]
        s[x] = (s[x] - _rol(s[z], r)) & _MASK
    return s[2]


def jhash2(words: Sequence[int], initval: int) -> int:
    """jhash2(k, length, initval): hash 32-bit words. Empty input returns the seed unmixed."""
    n = len(words)
    a = b = c = (JHASH_INITVAL + (n << 2) + initval) & _MASK
    i = 0
    while n - i > 3:
        a = (a + words[i]) & _MASK
        b = (b + words[i + 1]) & _MASK
        c = (c + words[i + 2]) & _MASK
        a, b, c = _mix(a, b, c)
        i += 3
    rest = n - i
    if rest == 0:
        return c
    a = (a + words[i]) & _MASK
    if rest >= 2:
        b = (b + words[i + 1]) & _MASK
    if rest == 3:
        c = (c + words[i + 2]) & _MASK
    return _final(a, b, c)


def native_word(addr: IPv4Address) -> int:
    """The address as the kernel's u32 holds it on x86_64: network bytes read little-endian
    (10.0.0.1 -> 0x0100000a)."""
    return int.from_bytes(addr.packed, "little")


def reciprocal_scale(value: int, span: int) -> int:
    """Map a 32-bit value onto [0, span) by a 64-bit multiply and shift (span taken mod 2^32)."""
    return ((value & _MASK) * (span & _MASK)) >> 32


def pick_ip(src: IPv4Address, dst: IPv4Address, rng_min: IPv4Address, rng_max: IPv4Address,
            zone: int, persistent: bool) -> IPv4Address:
    """find_best_ips_proto() for IPv4: the address the kernel picks from [rng_min, rng_max].

    The hash input is the tuple's source address as the 16-byte field (one address word,
    three zero words); the seed is 0 with PERSISTENT, else the destination word XOR the zone
    id. This holds for both manip types: for DST manip the source is still hashed.
    """
    if rng_min == rng_max:
        return rng_min
    seed = 0 if persistent else (native_word(dst) ^ zone) & _MASK
    j = jhash2([native_word(src), 0, 0, 0], seed)
    lo, hi = int(rng_min), int(rng_max)
    return IPv4Address((lo + reciprocal_scale(j, hi - lo + 1)) & _MASK)
