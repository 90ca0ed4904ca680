"""The packet REJECT sends back: the TCP reset of `--reject-with tcp-reset` / `reject with tcp
reset`.

Mirrors net/ipv4/netfilter/nf_reject_ipv4.c: nf_reject_ip_tcphdr_get() (when no reset is
sent), nf_reject_iphdr_put() and nf_reject_ip_tcphdr_put() (what the reset looks like), and
the part of nf_send_reset() that says which TTL it gets. Sending it (LOCAL_OUT and
POST_ROUTING with the rejected packet's entry attached, nf_ct_attach) is nat/pipeline.py's job.

Why build it byte for byte: the reset leaves the gateway like any other packet, so the capture
shows every field; the comparison checks all of them. What the kernel writes:
- IP: version 4, no options, TOS 0, id 0 (nothing picks an id for it: it is sent with
  ip_local_out, not through a socket), DF set, TTL from the route (ip4_dst_hoplimit: the
  namespace's ip_default_ttl, 64, unless the route says otherwise), source and destination
  swapped, total length 40, header checksum computed on the way out (__ip_local_out).
- TCP: ports swapped, a 20-byte header without options, window 0, urgent pointer 0; if the
  rejected segment had ACK set the reset takes its sequence number from that ack number and
  carries no ACK; otherwise its sequence number is 0 and it acknowledges everything the segment
  occupied (seq + SYN + FIN + payload length), flags RST|ACK. The checksum is the full one.

No reset is sent for a non-first fragment, a packet that is not TCP or too short to hold a TCP
header, a segment that is itself a reset ("no RST for RST"), or one whose TCP checksum does not
verify (nf_ip_checksum). The route checks of nf_send_reset (broadcast or multicast route, no
route back) are the caller's.
"""

from __future__ import annotations

from nat.checksum import checksums_ok, with_fresh_checksums
from nat.packet import IPv4Header, Packet, TcpHeader
from nat.tuple import Proto

# TCP flag bits as on the wire.
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
IP_DF = 0x4000
DEFAULT_TTL = 64  # net.ipv4.ip_default_ttl in a new namespace (IPDEFTTL)


def no_reset_reason(pkt: Packet) -> str | None:
    """nf_reject_ip_tcphdr_get(): why the kernel sends no reset for `pkt`, or None if it does."""
    if pkt.ip.frag & 0x1FFF:
        return "a non-first fragment"
    if pkt.ip.proto != Proto.TCP:
        return "not TCP"
    if not isinstance(pkt.l4, TcpHeader):
        return "no complete TCP header"
    if pkt.l4.flags & RST:
        return "the segment is a reset itself (no RST for RST)"
    if not checksums_ok(pkt)["l4"]:
        return "bad TCP checksum"
    return None


def tcp_reset(pkt: Packet, ttl: int = DEFAULT_TTL) -> Packet | None:
    """The reset nf_send_reset() builds in answer to `pkt`, checksums filled in; None when
    the kernel sends none (see `no_reset_reason`)."""
    if no_reset_reason(pkt) is not None:
        return None
    old = pkt.l4
    assert isinstance(old, TcpHeader)
    if old.flags & ACK:
        seq, ack, flags = old.ack, 0, RST
    else:
        occupied = len(pkt.payload) + (1 if old.flags & SYN else 0) + (1 if old.flags & FIN else 0)
        seq, ack, flags = 0, (old.seq + occupied) & 0xFFFFFFFF, RST | ACK
    ip = IPv4Header(src=pkt.ip.dst, dst=pkt.ip.src, proto=Proto.TCP, ttl=ttl, tos=0, ident=0,
                    frag=IP_DF, total_length=40)
    tcp = TcpHeader(sport=old.dport, dport=old.sport, seq=seq, ack=ack, flags=flags, window=0)
    return with_fresh_checksums(Packet(ip, tcp, b""))
