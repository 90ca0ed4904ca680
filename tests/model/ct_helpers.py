"""Packet builders and a tiny gateway driver for the conntrack tests (test helper).

`Flow` sends packets of one connection through nf_conntrack_in and confirm, as the gateway's
PRE_ROUTING → POST_ROUTING walk would, with no NAT, and reads the entry back the way
`conntrack -L` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from nat.checksum import with_fresh_checksums
from nat.conntrack import Table
from nat.core import CtResult, nf_conntrack_confirm, nf_conntrack_in
from nat.entry import Entry
from nat.hooks import Hook
from nat.packet import IcmpHeader, IPv4Header, Packet, TcpHeader, UdpHeader
from nat.profile import LINUX_LATEST, KernelProfile
from nat.sysctl import Sysctls
from nat.tuple import Proto

CLIENT = IPv4Address("192.0.2.10")
SERVER = IPv4Address("198.51.100.2")


def tcp(src: IPv4Address, dst: IPv4Address, sport: int, dport: int, flags: int, seq: int,
        ack: int = 0, payload: bytes = b"", window: int = 64240, options: bytes = b"") -> Packet:
    hdr = TcpHeader(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, window,
                    options=options)
    return with_fresh_checksums(Packet(IPv4Header(src, dst, Proto.TCP), hdr, payload),
                                lengths=True)


def udp(src: IPv4Address, dst: IPv4Address, sport: int, dport: int,
        payload: bytes = b"x" * 10) -> Packet:
    return with_fresh_checksums(
        Packet(IPv4Header(src, dst, Proto.UDP), UdpHeader(sport, dport), payload), lengths=True)


def icmp(src: IPv4Address, dst: IPv4Address, type_: int, code: int = 0, id_: int = 0,
         seq: int = 1, payload: bytes = b"") -> Packet:
    hdr = IcmpHeader(type_, code, 0, (id_ << 16) | seq)
    return with_fresh_checksums(Packet(IPv4Header(src, dst, Proto.ICMP), hdr, payload),
                                lengths=True)


def icmp_error(src: IPv4Address, dst: IPv4Address, quoted: Packet, type_: int = 3,
               code: int = 3) -> Packet:
    """An ICMP error quoting the IP header and first 8 bytes of `quoted`."""
    body = quoted.to_bytes()[: quoted.ip.header_length + 8]
    hdr = IcmpHeader(type_, code, 0, 0)
    return with_fresh_checksums(Packet(IPv4Header(src, dst, Proto.ICMP), hdr, body),
                                lengths=True)


def generic(src: IPv4Address, dst: IPv4Address, proto: int = 47) -> Packet:
    return with_fresh_checksums(Packet(IPv4Header(src, dst, proto), None, b"\0" * 8),
                                lengths=True)


@dataclass
class Gateway:
    """One table; each `send` is one packet's PRE_ROUTING (track) + POST_ROUTING (confirm)."""

    sysctls: Sysctls = field(default_factory=Sysctls)
    profile: KernelProfile = LINUX_LATEST
    table: Table = field(default_factory=Table)

    def send(self, pkt: Packet, now: float, hook: Hook = Hook.PRE_ROUTING) -> CtResult:
        res = nf_conntrack_in(self.table, pkt, hook, now, self.sysctls, enabled=True,
                              profile=self.profile)
        if res.verdict == "ACCEPT" and res.conn is not None:
            nf_conntrack_confirm(self.table, res.conn, res.ctinfo, now)
        return res

    def entries(self, now: float) -> list[Entry]:
        return self.table.entries(now)

    def only(self, now: float) -> Entry:
        found = self.entries(now)
        assert len(found) == 1, found
        return found[0]


def line(e: Entry) -> str:
    """A short `conntrack -L`-like summary: '431999 ESTABLISHED [ASSURED]'."""
    words = [str(e.timeout)]
    if e.state is not None:
        words.append(e.state.name)
    if e.unreplied:
        words.append("[UNREPLIED]")
    if e.assured:
        words.append("[ASSURED]")
    return " ".join(words)
