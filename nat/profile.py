"""What differs between the kernels natlab checks against (kernel-semantics.md Appendix A).

The model follows one `KernelProfile`; `profile_for_release(uname -r)` picks it. Known points:
6.1 (source 6.1.192 read), 6.12 (source 6.12.117 read), and 6.13+ (source 7.2.13 read, live
6.18.44 measured). Releases between 6.2 and 6.11 were not read; they get the 6.1 profile,
the nearest older one that was (say so in a report if it matters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ClashMerge = Literal["6.1", "6.12"]
RstTimeout = Literal["close10", "unack300"]


@dataclass(frozen=True)
class KernelProfile:
    """Behaviour switches, each named after what it changes.

    - dnat_port_search_from_min: nf_nat_l4proto_unique_tuple starts a DST-manip search without
      random flags at offset 0, i.e. at the range minimum (6.12+); 6.1 starts at random.
    - tcp_timewait_eviction: the "harder" port search may evict a TIME_WAIT/CLOSE entry (6.12+).
    - used_tuple_new: get_unique_tuple step 1 tolerates a reverse-direction race
      (nf_nat_used_tuple_new, 6.12+).
    - clash_merge: which rule decides whether a clashing UDP entry merges at confirm (§3.4).
    - rst_timeout: TCP timeout after RST: CLOSE's 10 s, or 6.12.117's UNACK 300-s rule (§6.2).
    """

    name: str
    dnat_port_search_from_min: bool
    tcp_timewait_eviction: bool
    used_tuple_new: bool
    clash_merge: ClashMerge
    rst_timeout: RstTimeout


LINUX_6_1 = KernelProfile(
    name="6.1",
    dnat_port_search_from_min=False,
    tcp_timewait_eviction=False,
    used_tuple_new=False,
    clash_merge="6.1",
    rst_timeout="close10",
)

LINUX_6_12 = KernelProfile(
    name="6.12",
    dnat_port_search_from_min=True,
    tcp_timewait_eviction=True,
    used_tuple_new=True,
    clash_merge="6.12",
    rst_timeout="unack300",
)

# 6.13 and later: 7.2.13 source and the live 6.18.44 agree on every point above.
LINUX_LATEST = KernelProfile(
    name="6.18",
    dnat_port_search_from_min=True,
    tcp_timewait_eviction=True,
    used_tuple_new=True,
    clash_merge="6.12",
    rst_timeout="close10",
)

_RELEASE = re.compile(r"^\s*(\d+)\.(\d+)")


def profile_for_release(release: str) -> KernelProfile:
    """The profile for a `uname -r` string ("6.1.0-28-amd64", "6.18.44-fc-v595", …).

    Before 6.12 → 6.1; 6.12.x → 6.12; 6.13 and later → latest; unparseable → latest.
    """
    m = _RELEASE.match(release)
    if m is None:
        return LINUX_LATEST
    version = (int(m.group(1)), int(m.group(2)))
    if version < (6, 12):
        return LINUX_6_1
    if version == (6, 12):
        return LINUX_6_12
    return LINUX_LATEST
