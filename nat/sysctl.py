"""The per-namespace netfilter conntrack sysctls the model reads, with the kernel defaults.

Mirrors the sysctl table in net/netfilter/nf_conntrack_standalone.c (nf_ct_sysctl_table) and
the default timeouts in tcp_timeouts[] (nf_conntrack_proto_tcp.c), udp_timeouts[]
(nf_conntrack_proto_udp.c), nf_ct_icmp_timeout (nf_conntrack_proto_icmp.c) and
nf_ct_generic_timeout (nf_conntrack_proto_generic.c). Defaults: kernel-semantics.md §6.1,
identical in 6.1, 6.12 and 7.2 source and live on 6.18.44.

Timeouts are whole seconds, as `sysctl` shows them (proc_dointvec_jiffies). Switches that the
kernel stores as a u8 limited to 0..1 (proc_dou8vec_minmax) are booleans here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from nat.status import TcpState

_PREFIXES = ("net.netfilter.", "net/netfilter/", "/proc/sys/net/netfilter/")
_NF_PREFIX = "nf_conntrack_"

# The u8 sysctls that are not 0/1 switches: name -> (min, max).
_U8_RANGES: dict[str, tuple[int, int]] = {"tcp_max_retrans": (0, 255)}


@dataclass(frozen=True)
class Sysctls:
    """net.netfilter.nf_conntrack_* values of one namespace (a new netns starts at these).

    `other` keeps every key from `from_mapping` that the model does not read, so a run's
    record shows everything that was set; it changes nothing the model computes.
    """

    tcp_timeout_syn_sent: int = 120
    tcp_timeout_syn_recv: int = 60
    tcp_timeout_established: int = 432000
    tcp_timeout_fin_wait: int = 120
    tcp_timeout_close_wait: int = 60
    tcp_timeout_last_ack: int = 30
    tcp_timeout_time_wait: int = 120
    tcp_timeout_close: int = 10
    tcp_timeout_max_retrans: int = 300
    tcp_timeout_unacknowledged: int = 300
    tcp_loose: bool = True
    tcp_be_liberal: bool = False
    tcp_ignore_invalid_rst: bool = False
    tcp_max_retrans: int = 3
    udp_timeout: int = 30
    udp_timeout_stream: int = 120
    icmp_timeout: int = 30
    generic_timeout: int = 600
    checksum: bool = True
    acct: bool = False
    timestamp: bool = False
    other: tuple[tuple[str, str], ...] = ()

    def tcp_timeout(self, state: TcpState) -> int:
        """T[state]: the timeout a TCP entry gets on entering `state` (tcp_timeouts[]).

        SYN_SENT2 has no sysctl of its own; the kernel gives it 120 s (its slot in
        tcp_timeouts[] is not tied to a sysctl). NONE never keeps an entry alive.
        """
        return {
            TcpState.NONE: 0,
            TcpState.SYN_SENT: self.tcp_timeout_syn_sent,
            TcpState.SYN_RECV: self.tcp_timeout_syn_recv,
            TcpState.ESTABLISHED: self.tcp_timeout_established,
            TcpState.FIN_WAIT: self.tcp_timeout_fin_wait,
            TcpState.CLOSE_WAIT: self.tcp_timeout_close_wait,
            TcpState.LAST_ACK: self.tcp_timeout_last_ack,
            TcpState.TIME_WAIT: self.tcp_timeout_time_wait,
            TcpState.CLOSE: self.tcp_timeout_close,
            TcpState.SYN_SENT2: 120,
        }[state]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Sysctls:
        """Sysctls from `{"net.netfilter.nf_conntrack_tcp_loose": "0", ...}`.

        Keys may be spelled with dots, slashes or a /proc/sys/ prefix. Netfilter keys the
        model does not know (and any other key) are kept in `other` and otherwise ignored.
        A value the kernel would refuse (not an integer, out of the sysctl's range) raises
        ValueError naming the key. Negative timeouts are refused too: the kernel takes them,
        but they only mean "expire at once", which no natlab experiment wants.
        """
        known = {f.name: f for f in fields(cls) if f.name != "other"}
        changes: dict[str, Any] = {}
        other: list[tuple[str, str]] = []
        for key, raw in values.items():
            name = _short_name(key)
            if name is None or name not in known:
                other.append((key, str(raw)))
                continue
            number = _as_int(key, raw)
            kind = known[name].type
            if kind in (bool, "bool"):
                if number not in (0, 1):
                    raise ValueError(f"sysctl {key}: {raw!r} is out of range 0..1")
                changes[name] = bool(number)
            elif name in _U8_RANGES:
                lo, hi = _U8_RANGES[name]
                if not lo <= number <= hi:
                    raise ValueError(f"sysctl {key}: {raw!r} is out of range {lo}..{hi}")
                changes[name] = number
            else:
                if number < 0 or number > 2**31 // 1000:
                    raise ValueError(f"sysctl {key}: timeout {raw!r} is out of range")
                changes[name] = number
        return cls(**changes, other=tuple(sorted(other)))


def _short_name(key: str) -> str | None:
    """`net.netfilter.nf_conntrack_tcp_loose` -> `tcp_loose`; None for non-conntrack keys."""
    rest = key.strip()
    for prefix in _PREFIXES:
        if rest.startswith(prefix):
            rest = rest[len(prefix):]
            break
    else:
        return None
    if not rest.startswith(_NF_PREFIX):
        return None
    return rest[len(_NF_PREFIX):]


def _as_int(key: str, raw: Any) -> int:
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        try:
            return int(text, 10)
        except ValueError:
            pass
    raise ValueError(f"sysctl {key}: {raw!r} is not an integer")
