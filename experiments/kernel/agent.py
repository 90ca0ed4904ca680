"""The traffic agent: one small process inside each host's network namespace for a whole run.

Started as `python -m experiments.kernel.agent` through `HostHandle.popen`; standard library
only, so
it is up in a few tens of milliseconds. It reads one JSON command per line on stdin and writes
one JSON event per line on stdout, both in the typed protocol of
`experiments/kernel/protocol.py` (shared with the driver, `experiments/kernel/traffic.py`);
nothing here knows about specs or topologies.

Why a long-lived agent instead of one process per packet: sockets must outlive a step (a UDP
"reply" flow is sent from the very socket that listened; a TCP connection left open with
`close = "none"` stays ESTABLISHED), and spawning a process per datagram would cost more than
the step itself.

The commands and events are the frozen dataclasses of `experiments/kernel/protocol.py`,
shared with the driver; a line that is not a command is answered with an `Error` event.
Errors from the network (ECONNREFUSED, timeouts, resets) are events, never crashes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import sys
import threading
import time
from typing import Any

from experiments.kernel.protocol import (
    Command,
    Done,
    Error,
    Event,
    IcmpEcho,
    Ok,
    PacketIn,
    ProtocolError,
    Quit,
    RawSend,
    Ready,
    TcpAccept,
    TcpClosed,
    TcpConnect,
    TcpListen,
    TcpRecv,
    UdpOpen,
    UdpRecv,
    UdpSend,
    command_from_json,
    message_id,
    to_json,
)

# linux/in.h: IP_PKTINFO ancillary data = struct in_pktinfo {int ifindex; in_addr spec_dst, addr}.
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_PKTINFO_LEN = 12
# linux/tcp.h: struct tcp_info starts with the u8 tcpi_state; TCP_CLOSE is 7 (net/tcp_states.h).
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_TCP_CLOSE = 7
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_RCVBUF = 8 << 20


class Agent:
    """All sockets of one host and the event writer they share."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._udp: dict[int, socket.socket] = {}
        self._udp_reply: dict[int, bytes | None] = {}
        self._tcp_listeners: dict[int, socket.socket] = {}
        self._tcp_conf: dict[int, tuple[bytes, int]] = {}
        self._open_tcp: list[socket.socket] = []
        self._conn_seq = 0
        self._stopping = threading.Event()
        self._icmp_send: socket.socket | None = None
        self._sniffers: list[socket.socket] = []
        self._readers: list[threading.Thread] = []
        self._raw_send: socket.socket | None = None

    # ---- output -------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        line = to_json(event)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def _thread(self, target: Any, *args: Any) -> threading.Thread:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        return t

    # ---- sniffing: what the host's IP layer delivers ------------------------------------

    def start_sniffers(self) -> None:
        """Raw sockets get a copy of every locally delivered packet of their protocol."""
        for proto in (socket.IPPROTO_ICMP, socket.IPPROTO_TCP, socket.IPPROTO_UDP):
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
            _big_buffer(s)
            self._sniffers.append(s)
            self._readers.append(self._thread(self._sniff, s))

    def _sniff(self, s: socket.socket) -> None:
        while True:
            try:
                data = s.recv(65535)
            except OSError:
                return
            if not data and self._stopping.is_set():
                return   # shut down by close(), after the queue was read to its end
            self.emit(PacketIn(time.time(), data))

    # ---- UDP ---------------------------------------------------------------------------

    def _udp_socket(self, port: int) -> socket.socket:
        s = self._udp.get(port)
        if s is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
                _big_buffer(s)
                s.bind(("0.0.0.0", port))
            except BaseException:
                s.close()
                raise
            self._udp[port] = s
            self._udp_reply.setdefault(port, None)
            self._readers.append(self._thread(self._udp_loop, port, s))
        return s

    def _udp_loop(self, port: int, s: socket.socket) -> None:
        while True:
            try:
                data, anc, _flags, peer = s.recvmsg(65535, socket.CMSG_SPACE(_PKTINFO_LEN))
            except OSError as e:
                if self._stopping.is_set() or e.errno == errno.EBADF:
                    return
                # An ICMP error queued on the socket (e.g. port unreachable): keep going.
                continue
            if not data and self._stopping.is_set():
                return   # shut down by close(), after the queue was read to its end
            dst = "0.0.0.0"
            for level, kind, blob in anc:
                if level == socket.IPPROTO_IP and kind == _IP_PKTINFO:
                    dst = socket.inet_ntoa(blob[8:12])
            self.emit(UdpRecv(time.time(), peer[0], peer[1], dst, port, data))
            reply = self._udp_reply.get(port)
            if reply is not None:
                with contextlib.suppress(OSError):
                    s.sendto(reply, peer)

    def udp_open(self, cmd: UdpOpen) -> Ok:
        self._udp_socket(cmd.port)
        self._udp_reply[cmd.port] = cmd.reply
        return Ok(cmd.id)

    def udp_send(self, cmd: UdpSend) -> Ok:
        s = self._udp_socket(cmd.sport)
        # The sending socket of a step does not answer (two answering sockets would ping-pong).
        self._udp_reply[cmd.sport] = None
        times: list[float] = []
        for i in range(cmd.count):
            if i and cmd.interval > 0:
                time.sleep(cmd.interval)
            times.append(time.time())
            s.sendto(cmd.payload, (cmd.dst, cmd.dport))
        return Ok(cmd.id, tuple(times))

    # ---- TCP ---------------------------------------------------------------------------

    def _next_conn(self) -> int:
        with self._lock:
            self._conn_seq += 1
            return self._conn_seq

    def tcp_listen(self, cmd: TcpListen) -> Ok:
        """Listen on `port` (once); later calls only change what new connections get."""
        port = cmd.port
        self._tcp_conf[port] = (cmd.reply, cmd.expect)
        if port not in self._tcp_listeners:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", port))
                s.listen(16)
            except BaseException:
                s.close()
                raise
            self._tcp_listeners[port] = s
            self._thread(self._accept_loop, port, s)
        return Ok(cmd.id)

    def _accept_loop(self, port: int, s: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, peer = s.accept()
            except OSError:
                return
            self._open_tcp.append(conn)
            reply, expect = self._tcp_conf[port]
            self._thread(self._serve, conn, peer, reply, expect)

    def _serve(self, conn: socket.socket, peer: tuple[str, int], reply: bytes,
               expect: int) -> None:
        """Read, answer once `expect` bytes arrived, and close after the peer does."""
        cid = self._next_conn()
        local = conn.getsockname()
        self.emit(TcpAccept(time.time(), cid, "server", peer[0], peer[1], local[0], local[1]))
        got = 0
        replied = False
        how = "fin"
        try:
            while True:
                if not replied and got >= expect:
                    replied = True
                    if reply:
                        conn.sendall(reply)
                data = conn.recv(65535)
                if not data:
                    break
                got += len(data)
                self.emit(TcpRecv(time.time(), cid, "server", peer[0], peer[1], local[0],
                                  local[1], data))
            # The peer closed: send our FIN, then wait for its last ACK (LAST_ACK -> CLOSE),
            # so the driver knows the whole close has crossed the gateway.
            conn.shutdown(socket.SHUT_WR)
            state = _wait_tcp_closed(conn, deadline=time.monotonic() + 3.0)
            if state != _TCP_CLOSE:
                how = f"fin-unacked(state {state})"
        except OSError as e:
            how = "rst" if e.errno == errno.ECONNRESET else f"error: {e.strerror}"
        finally:
            with contextlib.suppress(OSError):
                conn.close()
        self.emit(TcpClosed(time.time(), cid, "server", how))

    def tcp_connect(self, cmd: TcpConnect) -> Ok:
        self._thread(self._client, cmd)
        return Ok(cmd.id)

    def _client(self, cmd: TcpConnect) -> None:
        sport, dst, dport, send = cmd.sport, cmd.dst, cmd.dport, cmd.send
        expect, close, timeout = cmd.expect, cmd.close, cmd.timeout
        deadline = time.monotonic() + timeout
        cid = self._next_conn()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        connected = False
        error: str | None = None
        received = 0
        closed: str | None = None
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", sport))
            s.settimeout(max(0.01, deadline - time.monotonic()))
            s.connect((dst, dport))
            connected = True
            local = s.getsockname()
            self.emit(TcpAccept(time.time(), cid, "client", dst, dport, local[0], local[1]))
            if send:
                s.sendall(send)
            got = 0
            while got < expect:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                data = s.recv(65535)
                if not data:
                    break
                got += len(data)
                self.emit(TcpRecv(time.time(), cid, "client", dst, dport, local[0], local[1],
                                  data))
            received = got
            if close == "rst":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                closed = "rst"
            elif close == "fin":
                s.shutdown(socket.SHUT_WR)
                while True:  # drain until the server's FIN
                    s.settimeout(max(0.01, deadline - time.monotonic()))
                    data = s.recv(65535)
                    if not data:
                        break
                    self.emit(TcpRecv(time.time(), cid, "client", dst, dport, local[0],
                                      local[1], data))
                s.close()
                closed = "fin"
            else:
                self._open_tcp.append(s)
        except TimeoutError:
            error = "timeout"
        except OSError as e:
            error = errno.errorcode.get(e.errno or 0, str(e))
        if error is not None:
            with contextlib.suppress(OSError):
                s.close()
        if closed is not None:
            self.emit(TcpClosed(time.time(), cid, "client", closed))
        self.emit(Done(cmd.id, cid, connected, error, received, closed))

    # ---- ICMP and crafted packets -----------------------------------------------------------

    def icmp_echo(self, cmd: IcmpEcho) -> Ok:
        if self._icmp_send is None:
            self._icmp_send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        body = cmd.payload
        header = struct.pack("!BBHHH", 8, 0, 0, cmd.ident, cmd.seq)
        csum = _checksum(header + body)
        msg = struct.pack("!BBHHH", 8, 0, csum, cmd.ident, cmd.seq) + body
        t = time.time()
        self._icmp_send.sendto(msg, (cmd.dst, 0))
        return Ok(cmd.id, (t,))

    def raw_send(self, cmd: RawSend) -> Ok:
        if self._raw_send is None:
            self._raw_send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self._raw_send.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        t = time.time()
        self._raw_send.sendto(cmd.packet, (cmd.dst, 0))
        return Ok(cmd.id, (t,))

    # ---- the command loop ----------------------------------------------------------------

    def handle(self, cmd: Command) -> bool:
        """Run one command; False when the agent should stop."""
        try:
            match cmd:
                case Quit():
                    self.close()
                    self.emit(Ok(cmd.id))
                    return False
                case UdpOpen():
                    self.emit(self.udp_open(cmd))
                case UdpSend():
                    self.emit(self.udp_send(cmd))
                case TcpListen():
                    self.emit(self.tcp_listen(cmd))
                case TcpConnect():
                    self.emit(self.tcp_connect(cmd))
                case IcmpEcho():
                    self.emit(self.icmp_echo(cmd))
                case RawSend():
                    self.emit(self.raw_send(cmd))
        except OSError as e:
            self.emit(Error(cmd.id, cmd.op, errno.errorcode.get(e.errno or 0), str(e)))
        except Exception as e:  # a bad argument must not end the run: report it
            self.emit(Error(cmd.id, cmd.op, None, f"bad command: {type(e).__name__}: {e}"))
        return True

    def close(self) -> None:
        """Record what is still queued, then close everything.

        Receiving sockets are shut down for reading first: their threads then read every
        packet already queued and stop at the end of the queue, so nothing that reached the
        host before `quit` goes unrecorded."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for receiving in [*self._sniffers, *self._udp.values()]:
            with contextlib.suppress(OSError):
                receiving.shutdown(socket.SHUT_RD)
        deadline = time.monotonic() + 2.0
        for t in self._readers:
            t.join(max(0.0, deadline - time.monotonic()))
        socks: list[socket.socket | None] = [*self._sniffers, *self._udp.values(),
                                             *self._tcp_listeners.values(), *self._open_tcp,
                                             self._icmp_send, self._raw_send]
        for s in socks:
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()


def _big_buffer(s: socket.socket) -> None:
    """A receive buffer that holds a burst (SO_RCVBUFFORCE: root may exceed rmem_max), so a
    step's datagrams are not lost in the receiving socket while the agent is busy."""
    try:
        s.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RCVBUF)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)


def _wait_tcp_closed(conn: socket.socket, deadline: float) -> int:
    """Poll tcpi_state until the socket reaches TCP_CLOSE (its FIN was acknowledged)."""
    state = -1
    while time.monotonic() < deadline:
        state = conn.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0]
        if state == _TCP_CLOSE:
            return state
        time.sleep(0.0005)
    return state


def _checksum(data: bytes) -> int:
    """RFC 1071 internet checksum (the agent stays standard-library only)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def main() -> int:
    out = sys.stdout
    agent = Agent(out)
    agent.start_sniffers()
    agent.emit(Ready(os.getpid(), time.time()))
    try:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                cmd = command_from_json(line)
            except ProtocolError as e:
                ident, op = message_id(line)
                agent.emit(Error(ident, op, None, str(e)))
                continue
            if not agent.handle(cmd):
                break
    finally:
        agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
