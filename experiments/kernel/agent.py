"""The traffic agent: one small process inside each host's network namespace for a whole run.

Started as `python -m experiments.kernel.agent` through `HostHandle.popen`; standard library
only, so
it is up in a few tens of milliseconds. It reads one JSON command per line on stdin and writes
one JSON event per line on stdout. The driver (`experiments/kernel/traffic.py`) turns the
events into
typed values; nothing here knows about specs or topologies.

Why a long-lived agent instead of one process per packet: sockets must outlive a step (a UDP
"reply" flow is sent from the very socket that listened; a TCP connection left open with
`close = "none"` stays ESTABLISHED), and spawning a process per datagram would cost more than
the step itself.

Commands (every command carries an integer `id`; it is answered by exactly one `ok` or
`error` event with that id, and `tcp_connect` later by one `done` event with the same id):

    udp_open     port, reply (hex or null)        bind UDP 0.0.0.0:port (reuses an open socket);
                                                  the socket answers every datagram with reply
    udp_send     sport, dst, dport, payload (hex), count, interval
    tcp_listen   port, reply (hex), expect (bytes to read before replying)
    tcp_connect  sport, dst, dport, send (hex), expect, close ("fin"|"rst"|"none"), timeout
    icmp_echo    dst, ident, seq, payload (hex)
    raw_send     dst, packet (hex, a whole IPv4 packet; sent with IP_HDRINCL)
    received     (answers with every record kept so far)
    quit

Unsolicited events: `udp_recv`, `tcp_accept`, `tcp_recv`, `tcp_closed`, `packet` (every IPv4
TCP/UDP/ICMP packet delivered to this host, seen by raw sockets), each with a wall-clock
`time` (time.time(), comparable across namespaces and with tcpdump's timestamps).
Errors from the network (ECONNREFUSED, timeouts, resets) are events, never crashes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import struct
import sys
import threading
import time
from typing import Any

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
        self._records: list[dict[str, Any]] = []
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

    def emit(self, event: str, **fields: Any) -> None:
        fields["event"] = event
        line = json.dumps(fields, separators=(",", ":"))
        with self._lock:
            if event in ("udp_recv", "tcp_recv", "tcp_accept", "tcp_closed", "packet"):
                self._records.append(fields)
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
            self.emit("packet", time=time.time(), data=data.hex())

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
            self.emit("udp_recv", time=time.time(), src=peer[0], sport=peer[1], dst=dst,
                      dport=port, payload=data.hex())
            reply = self._udp_reply.get(port)
            if reply is not None:
                with contextlib.suppress(OSError):
                    s.sendto(reply, peer)

    def udp_open(self, port: int, reply: str | None = None) -> dict[str, Any]:
        self._udp_socket(port)
        self._udp_reply[port] = None if reply is None else bytes.fromhex(reply)
        return {}

    def udp_send(self, sport: int, dst: str, dport: int, payload: str, count: int = 1,
                 interval: float = 0.0) -> dict[str, Any]:
        s = self._udp_socket(sport)
        # The sending socket of a step does not answer (two answering sockets would ping-pong).
        self._udp_reply[sport] = None
        data = bytes.fromhex(payload)
        times: list[float] = []
        for i in range(count):
            if i and interval > 0:
                time.sleep(interval)
            times.append(time.time())
            s.sendto(data, (dst, dport))
        return {"times": times}

    # ---- TCP ---------------------------------------------------------------------------

    def _next_conn(self) -> int:
        with self._lock:
            self._conn_seq += 1
            return self._conn_seq

    def tcp_listen(self, port: int, reply: str = "", expect: int = 0) -> dict[str, Any]:
        """Listen on `port` (once); later calls only change what new connections get."""
        self._tcp_conf[port] = (bytes.fromhex(reply), expect)
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
        return {}

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
        self.emit("tcp_accept", time=time.time(), conn=cid, side="server", src=peer[0],
                  sport=peer[1], dst=local[0], dport=local[1])
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
                self.emit("tcp_recv", time=time.time(), conn=cid, side="server", src=peer[0],
                          sport=peer[1], dst=local[0], dport=local[1], payload=data.hex())
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
        self.emit("tcp_closed", time=time.time(), conn=cid, side="server", how=how)

    def tcp_connect(self, cmd_id: int, sport: int, dst: str, dport: int, send: str = "",
                    expect: int = 0, close: str = "fin", timeout: float = 3.0) -> None:
        self._thread(self._client, cmd_id, sport, dst, dport, bytes.fromhex(send), expect,
                     close, timeout)

    def _client(self, cmd_id: int, sport: int, dst: str, dport: int, send: bytes, expect: int,
                close: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        cid = self._next_conn()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        result: dict[str, Any] = {"conn": cid, "connected": False, "error": None,
                                  "received": 0, "closed": None}
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", sport))
            s.settimeout(max(0.01, deadline - time.monotonic()))
            s.connect((dst, dport))
            result["connected"] = True
            local = s.getsockname()
            self.emit("tcp_accept", time=time.time(), conn=cid, side="client", src=dst,
                      sport=dport, dst=local[0], dport=local[1])
            if send:
                s.sendall(send)
            got = 0
            while got < expect:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                data = s.recv(65535)
                if not data:
                    break
                got += len(data)
                self.emit("tcp_recv", time=time.time(), conn=cid, side="client", src=dst,
                          sport=dport, dst=local[0], dport=local[1], payload=data.hex())
            result["received"] = got
            if close == "rst":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                result["closed"] = "rst"
            elif close == "fin":
                s.shutdown(socket.SHUT_WR)
                while True:  # drain until the server's FIN
                    s.settimeout(max(0.01, deadline - time.monotonic()))
                    data = s.recv(65535)
                    if not data:
                        break
                    self.emit("tcp_recv", time=time.time(), conn=cid, side="client", src=dst,
                              sport=dport, dst=local[0], dport=local[1], payload=data.hex())
                s.close()
                result["closed"] = "fin"
            else:
                self._open_tcp.append(s)
        except TimeoutError:
            result["error"] = "timeout"
        except OSError as e:
            result["error"] = errno.errorcode.get(e.errno or 0, str(e))
        if result["error"] is not None:
            with contextlib.suppress(OSError):
                s.close()
        if result["closed"] is not None:
            self.emit("tcp_closed", time=time.time(), conn=cid, side="client",
                      how=result["closed"])
        self.emit("done", id=cmd_id, **result)

    # ---- ICMP and crafted packets -----------------------------------------------------------

    def icmp_echo(self, dst: str, ident: int, seq: int, payload: str = "") -> dict[str, Any]:
        if self._icmp_send is None:
            self._icmp_send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        body = bytes.fromhex(payload)
        header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        csum = _checksum(header + body)
        msg = struct.pack("!BBHHH", 8, 0, csum, ident, seq) + body
        t = time.time()
        self._icmp_send.sendto(msg, (dst, 0))
        return {"time": t}

    def raw_send(self, dst: str, packet: str) -> dict[str, Any]:
        if self._raw_send is None:
            self._raw_send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self._raw_send.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        t = time.time()
        self._raw_send.sendto(bytes.fromhex(packet), (dst, 0))
        return {"time": t}

    # ---- the command loop ----------------------------------------------------------------

    def handle(self, cmd: dict[str, Any]) -> bool:
        """Run one command; False when the agent should stop."""
        cmd_id = cmd.pop("id", None)
        op = cmd.pop("op", None)
        try:
            if op == "quit":
                self.close()
                self.emit("ok", id=cmd_id)
                return False
            if op == "received":
                with self._lock:
                    records = list(self._records)
                self.emit("ok", id=cmd_id, records=records)
            elif op == "tcp_connect":
                self.tcp_connect(cmd_id if isinstance(cmd_id, int) else -1, **cmd)
                self.emit("ok", id=cmd_id)
            elif op in ("udp_open", "udp_send", "tcp_listen", "icmp_echo", "raw_send"):
                result = getattr(self, op)(**cmd)
                self.emit("ok", id=cmd_id, **result)
            else:
                self.emit("error", id=cmd_id, op=op, errno=None, message=f"unknown op {op!r}")
        except OSError as e:
            self.emit("error", id=cmd_id, op=op, errno=errno.errorcode.get(e.errno or 0),
                      message=str(e))
        except Exception as e:  # a bad argument must not end the run: report it
            self.emit("error", id=cmd_id, op=op, errno=None,
                      message=f"bad command: {type(e).__name__}: {e}")
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
    agent.emit("ready", pid=os.getpid(), time=time.time())
    try:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                cmd = json.loads(line)
            except json.JSONDecodeError as e:
                agent.emit("error", id=None, op=None, errno=None, message=f"bad JSON: {e}")
                continue
            if not isinstance(cmd, dict) or not agent.handle(cmd):
                break
    finally:
        agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
