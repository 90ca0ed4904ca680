"""The TCP conntrack tracker: state table, flag validity, window tracking, timeouts.

Mirrors net/netfilter/nf_conntrack_proto_tcp.c: tcp_conntracks[][][] (the state table),
get_conntrack_index() (packet classes), tcp_error() (tcp_valid_flags[]), tcp_new(),
tcp_options(), tcp_sack(), tcp_init_sender(), tcp_in_window(), nf_tcp_handle_invalid() and
nf_conntrack_tcp_packet(). Pinned to the 6.1 source (6.1.192, read) and checked against the
live facts of kernel-semantics.md §6.2 (6.18.44). The one known difference between kernels
(the timeout after a RST; 6.12.117's rule is taken from kernel-semantics §6.2, not read) is
the `rst_timeout` argument, fed from `nat.profile.KernelProfile.rst_timeout`.

Window tracking is implemented in full, as tcp_in_window() does it: per direction
(end, maxend, maxwin, maxack, scale, flags), the four checks (I) seq <= sender.maxend,
(II) end >= sender.end - receiver.maxwin, (III) ack <= receiver.end,
(IV) ack >= receiver.end - max(sender.maxwin, 66000), window scaling from the SYN options,
SACK right edges when SACK was permitted, and the be_liberal switches. NAT sequence
adjustment (helpers) is not modelled: the model has no helpers, so the offset is always 0.

The tracker never raises for a packet: INVALID, IGNORE, REPEAT are results (`TrackResult`).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field, replace
from typing import Literal

from nat.checksum import checksums_ok
from nat.conn import Conn
from nat.hooks import Hook
from nat.packet import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG, Packet, TcpHeader
from nat.proto_generic import TrackResult, TrackVerdict
from nat.status import CtInfo, Status, TcpState
from nat.sysctl import Sysctls
from nat.tuple import Direction

RstTimeout = Literal["close10", "unack300"]

_U32 = 0xFFFFFFFF
MAXACKWINCONST = 66000       # lower bound of the ack window (MAXACKWINDOW)
TCP_MAX_WSCALE = 14


# ---------------------------------------------------------------------------------------------
# Packet classes and the state table


class PacketClass(enum.IntEnum):
    """enum tcp_bit_set: what get_conntrack_index() makes of a segment's flags."""

    SYN = 0
    SYNACK = 1
    FIN = 2
    ACK = 3
    RST = 4
    NONE = 5


class Special(enum.Enum):
    """The two pseudo-states of the table: sIV (invalid) and sIG (ignore)."""

    IV = "IV"
    IG = "IG"


Next = TcpState | Special

sNO, sSS, sSR, sES, sFW = (TcpState.NONE, TcpState.SYN_SENT, TcpState.SYN_RECV,
                           TcpState.ESTABLISHED, TcpState.FIN_WAIT)
sCW, sLA, sTW, sCL, sS2 = (TcpState.CLOSE_WAIT, TcpState.LAST_ACK, TcpState.TIME_WAIT,
                           TcpState.CLOSE, TcpState.SYN_SENT2)
IV, IG = Special.IV, Special.IG

COLUMNS: tuple[TcpState, ...] = (sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2)


def _rows(rows: dict[PacketClass, tuple[Next, ...]]) -> dict[PacketClass, dict[TcpState, Next]]:
    return {cls: dict(zip(COLUMNS, row, strict=True)) for cls, row in rows.items()}


# tcp_conntracks[0]: a packet in the ORIGINAL direction; rows = class, columns = current state.
ORIGINAL: dict[PacketClass, dict[TcpState, Next]] = _rows({
    #                      sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
    PacketClass.SYN:    (sSS, sSS, IG,  IG,  IG,  IG,  IG,  sSS, sSS, sS2),
    PacketClass.SYNACK: (IV,  IV,  sSR, IV,  IV,  IV,  IV,  IV,  IV,  sSR),
    PacketClass.FIN:    (IV,  IV,  sFW, sFW, sLA, sLA, sLA, sTW, sCL, IV),
    PacketClass.ACK:    (sES, IV,  sES, sES, sCW, sCW, sTW, sTW, sCL, IV),
    PacketClass.RST:    (IV,  sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),
    PacketClass.NONE:   (IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV),
})

# tcp_conntracks[1]: a packet in the REPLY direction.
REPLY: dict[PacketClass, dict[TcpState, Next]] = _rows({
    #                      sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
    PacketClass.SYN:    (IV,  sS2, IV,  IV,  IV,  IV,  IV,  sSS, IV,  sS2),
    PacketClass.SYNACK: (IV,  sSR, IG,  IG,  IG,  IG,  IG,  IG,  IG,  sSR),
    PacketClass.FIN:    (IV,  IV,  sFW, sFW, sLA, sLA, sLA, sTW, sCL, IV),
    PacketClass.ACK:    (IV,  IG,  sSR, sES, sCW, sCW, sTW, sTW, sCL, IG),
    PacketClass.RST:    (IV,  sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),
    PacketClass.NONE:   (IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV),
})

TABLE: dict[Direction, dict[PacketClass, dict[TcpState, Next]]] = {
    Direction.ORIGINAL: ORIGINAL,
    Direction.REPLY: REPLY,
}


def next_state(direction: Direction, cls: PacketClass, state: TcpState) -> Next:
    """One cell of the table."""
    return TABLE[direction][cls][state]


def packet_class(flags: int) -> PacketClass:
    """get_conntrack_index(): RST wins, then SYN (with ACK: SYNACK), then FIN, then ACK."""
    if flags & RST:
        return PacketClass.RST
    if flags & SYN:
        return PacketClass.SYNACK if flags & ACK else PacketClass.SYN
    if flags & FIN:
        return PacketClass.FIN
    if flags & ACK:
        return PacketClass.ACK
    return PacketClass.NONE


# tcp_valid_flags[]: the flag sets (after dropping PSH, ECE, CWR) tcp_error() lets through.
VALID_FLAGS: frozenset[int] = frozenset({
    SYN, SYN | URG, SYN | ACK, RST, RST | ACK, FIN | ACK, FIN | ACK | URG, ACK, ACK | URG,
})


# ---------------------------------------------------------------------------------------------
# Per-entry state (struct ip_ct_tcp, struct ip_ct_tcp_state)


class TcpFlag(enum.IntFlag):
    """IP_CT_TCP_FLAG_* (include/uapi/linux/netfilter/nf_conntrack_tcp.h). The last two are
    only kept in `last_flags`."""

    NONE = 0
    WINDOW_SCALE = 0x01
    SACK_PERM = 0x02
    CLOSE_INIT = 0x04
    BE_LIBERAL = 0x08
    DATA_UNACKNOWLEDGED = 0x10
    MAXACK_SET = 0x20
    EXP_CHALLENGE_ACK = 0x40
    SIMULTANEOUS_OPEN = 0x80


@dataclass(frozen=True)
class TcpPeer:
    """struct ip_ct_tcp_state: what one direction's sender has shown."""

    end: int = 0          # td_end: highest seq + len sent
    maxend: int = 0       # td_maxend: highest ack + window the peer advertised
    maxwin: int = 0       # td_maxwin: largest window seen (0: nothing seen yet)
    maxack: int = 0       # td_maxack: highest ack sent
    scale: int = 0        # td_scale: window scale
    flags: TcpFlag = TcpFlag.NONE


@dataclass(frozen=True)
class TcpConnState:
    """struct ip_ct_tcp: the TCP part of an entry (Conn.proto_state for TCP)."""

    state: TcpState = TcpState.NONE
    seen: tuple[TcpPeer, TcpPeer] = (TcpPeer(), TcpPeer())
    last_dir: Direction = Direction.ORIGINAL
    retrans: int = 0
    last_index: PacketClass = PacketClass.SYN   # 0 after the kernel's memset
    last_seq: int = 0
    last_ack: int = 0
    last_end: int = 0
    last_win: int = 0
    last_wscale: int = 0
    last_flags: TcpFlag = TcpFlag.NONE


# ---------------------------------------------------------------------------------------------
# Sequence arithmetic and options


def before(a: int, b: int) -> bool:
    """before(seq1, seq2): a comes before b in 32-bit sequence space."""
    return ((a - b) & _U32) >= 0x80000000


def after(a: int, b: int) -> bool:
    return before(b, a)


def segment_end(tcp: TcpHeader, payload_len: int) -> int:
    """segment_seq_plus_len(): seq + data length, + 1 for SYN, + 1 for FIN."""
    return (tcp.seq + payload_len + (1 if tcp.flags & SYN else 0)
            + (1 if tcp.flags & FIN else 0)) & _U32


@dataclass(frozen=True)
class TcpOptions:
    """What tcp_options() reads: SACK permitted, window scale (None if absent)."""

    present: bool
    sack_perm: bool = False
    wscale: int | None = None


def parse_options(options: bytes) -> TcpOptions:
    """tcp_options(): scan for SACK-permitted and window scale, stopping where the kernel
    stops (EOL, a silly or partial option)."""
    if not options:
        return TcpOptions(False)
    sack_perm = False
    wscale: int | None = None
    i, length = 0, len(options)
    while length > 0:
        opcode = options[i]
        i += 1
        if opcode == 0:          # EOL
            break
        if opcode == 1:          # NOP
            length -= 1
            continue
        if length < 2:
            break
        opsize = options[i]
        i += 1
        if opsize < 2 or opsize > length:
            break
        if opcode == 4 and opsize == 2:
            sack_perm = True
        elif opcode == 3 and opsize == 3:
            wscale = min(options[i], TCP_MAX_WSCALE)
        i += opsize - 2
        length -= opsize
    return TcpOptions(True, sack_perm, wscale)


def highest_sack(options: bytes, sack: int) -> int:
    """tcp_sack(): the highest right edge among the first SACK option's blocks, if above
    `sack` (the ack); a timestamp-only option block is skipped at once."""
    length = len(options)
    if not length:
        return sack
    if length == 12 and options[:4] == bytes((1, 1, 8, 10)):
        return sack
    i = 0
    while length > 0:
        opcode = options[i]
        i += 1
        if opcode == 0:
            return sack
        if opcode == 1:
            length -= 1
            continue
        if length < 2:
            return sack
        opsize = options[i]
        i += 1
        if opsize < 2 or opsize > length:
            return sack
        if opcode == 5 and opsize >= 10 and (opsize - 2) % 8 == 0:
            for block in range(0, opsize - 2, 8):
                (right,) = struct.unpack_from("!I", options, i + block + 4)
                if after(right, sack):
                    sack = right
            return sack
        i += opsize - 2
        length -= opsize
    return sack


def _with_options(peer: _Peer, opts: TcpOptions) -> None:
    """Apply tcp_options() to a peer: no options leave it as it was; otherwise scale and
    every flag but BE_LIBERAL are reset first."""
    if not opts.present:
        return
    peer.scale = 0
    peer.flags &= TcpFlag.BE_LIBERAL
    if opts.sack_perm:
        peer.flags |= TcpFlag.SACK_PERM
    if opts.wscale is not None:
        peer.scale = opts.wscale
        peer.flags |= TcpFlag.WINDOW_SCALE


# ---------------------------------------------------------------------------------------------
# Mutable working copies (the kernel edits the entry in place under its lock)


@dataclass
class _Peer:
    end: int = 0
    maxend: int = 0
    maxwin: int = 0
    maxack: int = 0
    scale: int = 0
    flags: TcpFlag = TcpFlag.NONE

    @classmethod
    def of(cls, p: TcpPeer) -> _Peer:
        return cls(p.end, p.maxend, p.maxwin, p.maxack, p.scale, p.flags)

    def frozen(self) -> TcpPeer:
        return TcpPeer(self.end & _U32, self.maxend & _U32, self.maxwin & _U32,
                       self.maxack & _U32, self.scale, self.flags)

    def reset(self) -> None:
        """nf_ct_tcp_state_reset(): forget everything but BE_LIBERAL."""
        self.end = self.maxend = self.maxwin = self.maxack = self.scale = 0
        self.flags &= TcpFlag.BE_LIBERAL


@dataclass
class _Work:
    state: TcpState
    seen: list[_Peer]
    last_dir: Direction
    retrans: int
    last_index: PacketClass
    last_seq: int
    last_ack: int
    last_end: int
    last_win: int
    last_wscale: int
    last_flags: TcpFlag
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, s: TcpConnState) -> _Work:
        return cls(s.state, [_Peer.of(s.seen[0]), _Peer.of(s.seen[1])], s.last_dir, s.retrans,
                   s.last_index, s.last_seq, s.last_ack, s.last_end, s.last_win, s.last_wscale,
                   s.last_flags)

    def frozen(self) -> TcpConnState:
        return TcpConnState(self.state, (self.seen[0].frozen(), self.seen[1].frozen()),
                            self.last_dir, self.retrans, self.last_index, self.last_seq & _U32,
                            self.last_ack & _U32, self.last_end & _U32, self.last_win,
                            self.last_wscale, self.last_flags)


# ---------------------------------------------------------------------------------------------
# tcp_error, tcp_new


def tcp_error(pkt: Packet, hook: Hook, sysctls: Sysctls) -> str | None:
    """tcp_error(): why the segment cannot be tracked at all, or None if it can.

    Truncated header; bad checksum (only at PRE_ROUTING and with nf_conntrack_checksum=1: the
    output path trusts its own checksums); a flag combination outside tcp_valid_flags[].
    """
    tcp = pkt.l4
    if not isinstance(tcp, TcpHeader):
        return "truncated TCP header"
    if sysctls.checksum and hook is Hook.PRE_ROUTING and not checksums_ok(pkt)["l4"]:
        return "bad TCP checksum"
    if tcp.flags & ~(ECE | CWR | PSH) & 0xFF not in VALID_FLAGS:
        return f"invalid TCP flag combination {_flag_names(tcp.flags)}"
    return None


def tcp_new(conn: Conn, pkt: Packet, sysctls: Sysctls) -> Conn | None:
    """tcp_new(): set up the TCP state of a brand-new entry, or None if this first packet
    cannot start one (only a SYN, or with nf_conntrack_tcp_loose=1 a bare ACK: "pickup")."""
    tcp = pkt.tcp
    cls = packet_class(tcp.flags)
    first = ORIGINAL[cls][sNO]
    end = segment_end(tcp, len(pkt.payload))
    win = tcp.window or 1
    if first is sSS:
        peer = _Peer(end=end, maxend=end, maxwin=win)
        _with_options(peer, parse_options(tcp.options))
        seen = (peer.frozen(), TcpPeer())
    elif first is sES and sysctls.tcp_loose:
        liberal = TcpFlag.SACK_PERM | TcpFlag.BE_LIBERAL
        seen = (TcpPeer(end=end, maxend=(end + win) & _U32, maxwin=win, flags=liberal),
                TcpPeer(flags=liberal))
    else:
        return None
    return replace(conn, proto_state=TcpConnState(seen=seen, last_index=PacketClass.NONE))


# ---------------------------------------------------------------------------------------------
# tcp_in_window

_Action = Literal["ACCEPT", "IGNORE", "INVALID"]


def _init_sender(w: _Work, d: int, tcp: TcpHeader, end: int, win: int) -> None:
    """tcp_init_sender(): a SYN or SYN/ACK (re)starts this direction's window state."""
    sender, receiver = w.seen[d], w.seen[1 - d]
    sender.end = sender.maxend = end
    sender.maxwin = win or 1
    _with_options(sender, parse_options(tcp.options))
    if d == Direction.REPLY and not (sender.flags & TcpFlag.WINDOW_SCALE
                                     and receiver.flags & TcpFlag.WINDOW_SCALE):
        sender.scale = 0
        receiver.scale = 0


def tcp_in_window(w: _Work, d: Direction, cls: PacketClass, pkt: Packet,
                  sysctls: Sysctls) -> tuple[_Action, str]:
    """tcp_in_window(): is the segment inside what each side has shown? Updates `w`."""
    tcp = pkt.tcp
    sender, receiver = w.seen[d], w.seen[1 - d]
    seq = tcp.seq
    ack = sack = tcp.ack
    win_raw = tcp.window
    win = win_raw
    end = segment_end(tcp, len(pkt.payload))
    if receiver.flags & TcpFlag.SACK_PERM:
        sack = highest_sack(tcp.options, sack)
    syn, has_ack = bool(tcp.flags & SYN), bool(tcp.flags & ACK)

    def store_invalid(action: _Action, why: str) -> tuple[_Action, str]:
        if sender.flags & TcpFlag.BE_LIBERAL or sysctls.tcp_be_liberal:
            return "ACCEPT", f"{why} (accepted: be_liberal)"
        return action, why

    if sender.maxwin == 0:
        if syn:
            _init_sender(w, d, tcp, end, win)
            if not has_ack:
                return "ACCEPT", "simultaneous open SYN"
        else:
            # Mid-connection: take what this packet shows.
            sender.end = end
            swin = (win << sender.scale) & _U32
            sender.maxwin = swin or 1
            sender.maxend = (end + sender.maxwin) & _U32
            if receiver.maxwin == 0:
                receiver.end = receiver.maxend = sack
            elif sack == (receiver.end + 1) & _U32:
                receiver.end = (receiver.end + 1) & _U32
    elif syn and after(end, sender.end) and w.state in (sSS, sSR):
        _init_sender(w, d, tcp, end, win)
        if d == Direction.REPLY and not has_ack:
            return "ACCEPT", "re-initialised SYN"

    if not has_ack or (tcp.flags & (ACK | RST) == ACK | RST and ack == 0):
        ack = sack = receiver.end
    if tcp.flags & RST and seq == 0 and w.state is sSS:
        seq = end = sender.end

    maxackwin = max(sender.maxwin, MAXACKWINCONST)
    if not before(seq, (sender.maxend + 1) & _U32):                    # (I) fails
        overshot = (end - sender.maxend + 1) & _U32
        ack_ok = after(sack, (receiver.end - maxackwin - 1) & _U32)
        in_recv_win = bool(receiver.maxwin) and after(
            end, (sender.end - receiver.maxwin - 1) & _U32)
        if (in_recv_win and ack_ok and overshot <= receiver.maxwin
                and before(sack, (receiver.end + 1) & _U32)):
            sender.end = end
            sender.flags |= TcpFlag.DATA_UNACKNOWLEDGED
            return store_invalid("IGNORE", f"{overshot} bytes more than the window")
        return store_invalid("INVALID", f"SEQ {seq} over upper bound {sender.maxend + 1}")
    if not before(sack, (receiver.end + 1) & _U32):                    # (III) fails
        return store_invalid("INVALID", f"ACK {sack} over upper bound {receiver.end + 1}")
    if receiver.maxwin and not after(end, (sender.end - receiver.maxwin - 1) & _U32):   # (II)
        return store_invalid("IGNORE", "SEQ under lower bound (retransmitted, already ACKed)")
    if not after(sack, (receiver.end - maxackwin - 1) & _U32):         # (IV)
        return store_invalid("IGNORE", "ACK under lower bound (overly delayed)")

    if not syn:
        win = (win << sender.scale) & _U32
    swin = (win + ((sack - ack) & _U32)) & _U32
    if sender.maxwin < swin:
        sender.maxwin = swin
    if after(end, sender.end):
        sender.end = end
        sender.flags |= TcpFlag.DATA_UNACKNOWLEDGED
    if has_ack:
        if not sender.flags & TcpFlag.MAXACK_SET:
            sender.maxack = ack
            sender.flags |= TcpFlag.MAXACK_SET
        elif after(ack, sender.maxack):
            sender.maxack = ack
    if receiver.maxwin != 0 and after(end, sender.maxend):
        receiver.maxwin = (receiver.maxwin + ((end - sender.maxend) & _U32)) & _U32
    if after((sack + win) & _U32, (receiver.maxend - 1) & _U32):
        receiver.maxend = (sack + win) & _U32
        if win == 0:
            receiver.maxend = (receiver.maxend + 1) & _U32
    if ack == receiver.end:
        receiver.flags &= ~TcpFlag.DATA_UNACKNOWLEDGED
    if cls is PacketClass.ACK:
        if (w.last_dir == d and w.last_seq == seq and w.last_ack == ack
                and w.last_end == end and w.last_win == win_raw):
            w.retrans += 1
        else:
            w.last_dir, w.last_seq, w.last_ack, w.last_end, w.last_win = d, seq, ack, end, win_raw
            w.retrans = 0
    return "ACCEPT", ""


# ---------------------------------------------------------------------------------------------
# nf_conntrack_tcp_packet


def _state_of(conn: Conn) -> TcpConnState:
    st = conn.proto_state
    return st if isinstance(st, TcpConnState) else TcpConnState()


def _established(conn: Conn, w: _Work) -> bool:
    """nf_conntrack_tcp_established(): ESTABLISHED and ASSURED."""
    return w.state is sES and bool(conn.status & Status.ASSURED)


def tcp_packet(conn: Conn, pkt: Packet, direction: Direction, ctinfo: CtInfo, now: float,
               sysctls: Sysctls, *, rst_timeout: RstTimeout = "close10") -> TrackResult:
    """nf_conntrack_tcp_packet() after tcp_error()/tcp_new(): one segment on an entry.

    `conn` carries a TcpConnState (tcp_new made it for a new entry). Returns the entry's new
    value and the verdict; see TrackResult.
    """
    tcp = pkt.tcp
    w = _Work.of(_state_of(conn))
    d = direction
    cls = packet_class(tcp.flags)
    old = w.state
    new: Next = next_state(d, cls, old)
    notes: list[str] = []

    def result(verdict: TrackVerdict, c: Conn | None = None, kill: bool = False) -> TrackResult:
        base = conn if c is None else c
        return TrackResult(replace(base, proto_state=w.frozen()), verdict, tuple(notes), kill)

    skip_window = False
    if new is sSS and old in (sTW, sCL):
        closing = (w.seen[d].flags | w.seen[1 - d].flags) & TcpFlag.CLOSE_INIT
        after_rst = w.last_dir == d and w.last_index is PacketClass.RST
        if closing or after_rst:
            why = "a FIN was seen" if closing else "the last packet this way was a RST"
            notes.append(f"SYN in {old.name} reopens ({why}): old entry deleted, "
                         "packet looked up again")
            return result("REPEAT")
        notes.append(f"SYN in {old.name} without a close or reset before it: ignored")
        new = IG
    if new is IG:
        if (cls is PacketClass.SYNACK and w.last_index is PacketClass.SYN
                and w.last_dir != d and tcp.ack == w.last_end):
            # This SYN/ACK answers a SYN we ignored: both ends agree, get in sync with them.
            ld = w.last_dir
            old, new = sSS, sSR
            peer = w.seen[ld]
            peer.end = peer.maxend = w.last_end
            peer.maxwin = w.last_win or 1
            peer.scale = w.last_wscale
            w.last_flags &= ~TcpFlag.EXP_CHALLENGE_ACK
            peer.flags = w.last_flags
            w.seen[d].reset()
            notes.append("SYN/ACK answers the ignored SYN: resynchronised")
        else:
            w.last_index, w.last_dir = cls, d
            w.last_seq = tcp.seq
            w.last_end = segment_end(tcp, len(pkt.payload))
            w.last_win = tcp.window
            if cls is PacketClass.SYN and d is Direction.ORIGINAL:
                opts = parse_options(tcp.options)
                w.last_flags = TcpFlag.NONE
                w.last_wscale = 0
                if opts.wscale is not None:
                    w.last_flags |= TcpFlag.WINDOW_SCALE
                    w.last_wscale = opts.wscale
                if opts.sack_perm:
                    w.last_flags |= TcpFlag.SACK_PERM
                if old is sLA:
                    w.last_flags |= TcpFlag.EXP_CHALLENGE_ACK
            if old is sSS and cls is PacketClass.ACK and d is Direction.REPLY:
                w.last_ack = tcp.ack
            notes.append(f"{cls.name} in {old.name} ignored: state and timeout unchanged")
            return result("ACCEPT")
    if new is IV:
        notes.append(f"{cls.name} is invalid in {old.name} ({d.name.lower()} direction)")
        return result("INVALID")
    assert isinstance(new, TcpState)
    if new is sTW:
        if (old is sLA and cls is PacketClass.ACK and w.last_dir != d
                and w.last_index is PacketClass.SYN
                and w.last_flags & TcpFlag.EXP_CHALLENGE_ACK):
            w.last_flags &= ~TcpFlag.EXP_CHALLENGE_ACK
            notes.append("challenge ACK to a SYN in LAST_ACK: ignored")
            return result("ACCEPT")
    elif new is sS2:
        w.last_flags |= TcpFlag.SIMULTANEOUS_OPEN
    elif new is sSR:
        if (d is Direction.REPLY and cls is PacketClass.ACK
                and w.last_flags & TcpFlag.SIMULTANEOUS_OPEN):
            new = sES
    elif new is sCL and cls is PacketClass.RST:
        verdict, keep = _rst_checks(conn, w, d, tcp, old, notes, sysctls)
        if verdict == "INVALID":
            return result("INVALID")
        skip_window = verdict == "SKIP"
        if keep:
            new = old

    if not skip_window:
        action, why = tcp_in_window(w, d, cls, pkt, sysctls)
        if action == "IGNORE":
            notes.append(f"out of window, ignored: {why}")
            return result("ACCEPT")
        if action == "INVALID":
            notes.append(f"out of window: {why}")
            lowered = _handle_invalid(conn, w, d, cls, now, sysctls)
            if lowered is not None:
                notes.append(f"timeout lowered to {sysctls.tcp_timeout_unacknowledged} s")
                return result("INVALID", replace(conn, timeout=lowered))
            return result("INVALID")
        if why:
            notes.append(why)

    # In window from here on.
    w.last_index, w.last_dir = cls, d
    w.state = new
    if old is not new:
        notes.append(f"{old.name} → {new.name}")
    if old is not new and new is sFW:
        w.seen[d].flags |= TcpFlag.CLOSE_INIT

    timeout, why_timeout = _choose_timeout(w, cls, new, sysctls, rst_timeout)
    status = conn.status
    if not status & Status.SEEN_REPLY:
        if tcp.flags & RST:
            notes.append("RST before any reply: entry deleted")
            return result("ACCEPT", kill=True)
        if cls is PacketClass.SYN and old is sSS:
            notes.append("SYN retransmitted: timeout not refreshed")
            return result("ACCEPT")
        if new is sES and timeout > sysctls.tcp_timeout_unacknowledged:
            timeout = sysctls.tcp_timeout_unacknowledged
            why_timeout = "picked up, no reply yet"
    elif (not status & Status.ASSURED and old in (sSR, sES) and new is sES):
        status |= Status.ASSURED
        notes.append("ASSURED")
    updated = replace(conn, status=status)
    if not status & Status.FIXED_TIMEOUT:
        updated = replace(updated, timeout=now + timeout)
        notes.append(f"timeout {timeout} s" + (f" ({why_timeout})" if why_timeout else ""))
    return result("ACCEPT", updated)


def _rst_checks(conn: Conn, w: _Work, d: Direction, tcp: TcpHeader, old: TcpState,
                notes: list[str], sysctls: Sysctls) -> tuple[str, bool]:
    """The RST cases of nf_conntrack_tcp_packet() before the window check.

    Returns (action, keep): action "SKIP" (no window check), "INVALID", or "" (window check
    as usual); keep = stay in the old state instead of CLOSE (an inexact RST in an
    established connection waits for the RFC 5961 challenge-ACK exchange).
    """
    if old in (sFW, sLA, sTW, sCL, sCW):        # tcp_can_early_drop(): closing anyway
        return "SKIP", False
    keep = False
    peer = w.seen[1 - d]
    if peer.flags & TcpFlag.MAXACK_SET and w.last_index is not PacketClass.SYN:
        seq = tcp.seq
        if seq == 0 and not _established(conn, w):
            return "", False
        if before(seq, peer.maxack) and not sysctls.tcp_ignore_invalid_rst:
            notes.append(f"RST seq {seq} below the peer's highest ACK {peer.maxack}: invalid")
            return "INVALID", False
        if not _established(conn, w) or seq == peer.maxack:
            return "", False
        if w.last_index is PacketClass.ACK and w.last_dir == d and seq == w.last_end:
            return "", False
        notes.append("RST not exactly at the expected seq: state kept (challenge ACK awaited)")
        keep = True
    half_open = ((conn.status & Status.SEEN_REPLY and w.last_index is PacketClass.SYN
                  and w.last_dir != d)
                 or (not conn.status & Status.ASSURED and w.last_index is PacketClass.ACK))
    if half_open and tcp.ack == w.last_end:
        notes.append("RST answers a packet we let through: window check skipped")
        return "SKIP", keep
    if (old is sSS and w.last_index is PacketClass.ACK and w.last_dir is Direction.REPLY
            and tcp.seq == w.last_ack):
        notes.append("RST answers a challenge ACK: window check skipped")
        return "SKIP", keep
    return "", keep


def _handle_invalid(conn: Conn, w: _Work, d: Direction, cls: PacketClass, now: float,
                    sysctls: Sysctls) -> float | None:
    """nf_tcp_handle_invalid(): an out-of-window FIN/RST answering a FIN/RST from the other
    side shortens a long remaining timeout to UNACK. Returns the new absolute timeout."""
    if not conn.status & Status.ASSURED or conn.status & Status.FIXED_TIMEOUT:
        return None
    if cls not in (PacketClass.RST, PacketClass.FIN):
        return None
    if w.last_dir != d and w.last_index in (PacketClass.FIN, PacketClass.RST):
        remaining = max(0.0, conn.timeout - now)
        if remaining < 120:
            return None
        unack = sysctls.tcp_timeout_unacknowledged
        if remaining > unack:
            return now + unack
    else:
        w.last_index, w.last_dir = cls, d
    return None


def _choose_timeout(w: _Work, cls: PacketClass, new: TcpState, sysctls: Sysctls,
                    rst_timeout: RstTimeout) -> tuple[int, str]:
    t_new = sysctls.tcp_timeout(new)
    t_retrans = sysctls.tcp_timeout_max_retrans
    t_unack = sysctls.tcp_timeout_unacknowledged
    unacked = (w.seen[0].flags | w.seen[1].flags) & TcpFlag.DATA_UNACKNOWLEDGED
    if w.retrans >= sysctls.tcp_max_retrans and t_new > t_retrans:
        return t_retrans, "retransmissions"
    if cls is PacketClass.RST and rst_timeout == "close10":
        return sysctls.tcp_timeout_close, "RST"
    if (cls is PacketClass.RST and rst_timeout == "unack300" and new is sES
            and sysctls.tcp_timeout_established > t_unack):
        return t_unack, "RST"
    if unacked and t_new > t_unack:
        return t_unack, "unacknowledged data"
    if w.last_win == 0 and t_new > t_retrans:
        return t_retrans, "zero window"
    return t_new, ""


# ---------------------------------------------------------------------------------------------
# The table as a document


SPECIAL_RULES: tuple[str, ...] = (
    "A first packet may only be a SYN (-> SYN_SENT) or, with nf_conntrack_tcp_loose=1, an "
    "ACK (-> ESTABLISHED, picked up: window checks liberal, timeout capped at 300 s until a "
    "reply).",
    "SYN in TIME_WAIT/CLOSE: if either side sent the first FIN, or the last packet this way was "
    "a RST, the entry is deleted and the SYN starts a new one; otherwise it is ignored.",
    "IG: accepted with the entry attached, no state change, no refresh; a reply-direction IG "
    "packet still sets SEEN_REPLY. A SYN/ACK answering an ignored SYN resynchronises to SYN_RECV.",
    "RST: in ESTABLISHED, a RST inside the window but not at the expected sequence keeps the "
    "state (RFC 5961); a RST below the peer's highest ACK is invalid unless "
    "nf_conntrack_tcp_ignore_invalid_rst=1.",
    "Timeout: RST -> CLOSE's 10 s (6.1, 6.18; 6.12.117 differs); 3 retransmissions or a "
    "zero window -> at most 300 s; unacknowledged data -> at most 300 s.",
    "Before any reply: a RST deletes the entry; a retransmitted SYN does not refresh it.",
    "ASSURED: the first valid packet after a reply that moves SYN_RECV or ESTABLISHED to "
    "ESTABLISHED.",
)


def _cell(n: Next) -> str:
    return n.value if isinstance(n, Special) else _SHORT[n]


_SHORT: dict[TcpState, str] = {
    sNO: "NO", sSS: "SS", sSR: "SR", sES: "ES", sFW: "FW", sCW: "CW", sLA: "LA", sTW: "TW",
    sCL: "CL", sS2: "S2",
}


def render_state_table() -> str:
    """docs/tcp-states.md: both directions as Markdown tables and a mermaid diagram, drawn
    from ORIGINAL and REPLY so the document cannot drift from the code."""
    lines = [
        "# TCP conntrack states",
        "",
        "Generated from `nat/proto_tcp.py` (`ORIGINAL`, `REPLY`) by",
        "`python -m nat.proto_tcp > docs/tcp-states.md`; do not edit by hand.",
        "Kernel: `tcp_conntracks` in net/netfilter/nf_conntrack_proto_tcp.c, 6.1 source,",
        "checked live on 6.18.",
        "",
        "States: " + ", ".join(f"{_SHORT[s]} = {s.name}" for s in COLUMNS[:5]) + ",",
        ", ".join(f"{_SHORT[s]} = {s.name}" for s in COLUMNS[5:]) + ".",
        "IV = invalid (no entry attached), IG = ignored (accepted, no state change, no refresh).",
        "Packet class: RST, else SYN (SYNACK with ACK), else FIN, else ACK, else NONE.",
        "",
    ]
    for direction, table in TABLE.items():
        lines += [f"## {direction.name.capitalize()} direction", ""]
        lines.append("| class | " + " | ".join(_SHORT[s] for s in COLUMNS) + " |")
        lines.append("|---" * (len(COLUMNS) + 1) + "|")
        for cls, row in table.items():
            lines.append(f"| {cls.name.lower()} | "
                         + " | ".join(_cell(row[s]) for s in COLUMNS) + " |")
        lines.append("")
    lines += ["## Diagram (state changes only)", "", "```mermaid", "stateDiagram-v2"]
    edges: dict[tuple[TcpState, TcpState], list[str]] = {}
    for direction, table in TABLE.items():
        tag = "o" if direction is Direction.ORIGINAL else "r"
        for cls, row in table.items():
            for state, nxt in row.items():
                if isinstance(nxt, TcpState) and nxt is not state:
                    edges.setdefault((state, nxt), []).append(f"{cls.name.lower()}/{tag}")
    for (src, dst), labels in edges.items():
        lines.append(f"    {src.name} --> {dst.name}: {' '.join(labels)}")
    lines += ["```", "", "Labels: packet class / direction (o = original, r = reply).", ""]
    lines += ["## After the table", ""] + [f"- {rule}" for rule in SPECIAL_RULES] + [""]
    return "\n".join(lines)


def _flag_names(flags: int) -> str:
    names = [n for n, bit in (("FIN", FIN), ("SYN", SYN), ("RST", RST), ("PSH", PSH),
                              ("ACK", ACK), ("URG", URG), ("ECE", ECE), ("CWR", CWR))
             if flags & bit]
    return "|".join(names) or "none"


if __name__ == "__main__":
    print(render_state_table(), end="")
