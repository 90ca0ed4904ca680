"""Driving the hosts' traffic: one agent per host (experiments/kernel/agent.py), steps run in order.

`Traffic` starts an agent in every host of the topology and keeps them for the whole run, so
sockets outlive steps (a reply flow leaves from the socket that listened). Each step sends
its commands and then waits, with a deadline, for the event that shows the step is over:
the replies or the datagrams arrived, both TCP ends reported the close, the echo replies or
ICMP errors came back. No step sleeps to synchronise; a deadline that passes is an outcome
(the gateway dropped the traffic), recorded in the step's result, not an error.

Which hosts listen, and every address and byte, come resolved in the spec's plan
(`experiments.plan`), the one the model's stand-in world consumes too.
What each host received comes back as `experiments.modelrun.world.Received`, the model's own type.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import IO, Literal, TypeVar

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
    TcpClosed,
    TcpConnect,
    TcpListen,
    TcpRecv,
    UdpOpen,
    UdpRecv,
    UdpSend,
    event_from_json,
    to_json,
)
from experiments.observed import Received
from experiments.plan import (
    PING_PAYLOAD,
    Checkpoint,
    ConntrackChange,
    Move,
    Ping,
    RawPacket,
    SetHostRules,
    SetRules,
    SetSysctls,
    Sleep,
    TcpFlow,
    UdpFlow,
)
from topologies.description import Topology
from topologies.hostexec import HostHandle, KernelError

AGENT_ARGV: tuple[str, ...] = (sys.executable, "-m", "experiments.kernel.agent")
ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})



@dataclass(frozen=True)
class AgentExit:
    """The agent's output ended (seen by the driver; never on the wire)."""


@dataclass(frozen=True)
class Garbage:
    """A line from the agent that is not an event of the protocol, and why."""

    line: str
    problem: str


Seen = Event | AgentExit | Garbage
E = TypeVar("E")


class TrafficError(KernelError):
    """An agent could not be started, stopped responding or reported a failed command (one
    line, names the host and, where it is the agent's own doing, its argv and stderr)."""


@dataclass(frozen=True)
class Delivered:
    """A packet the host's IP layer delivered locally (seen by the agent's raw sockets)."""

    host: str
    time: float          # seconds since the run's start
    data: bytes          # the IPv4 packet


@dataclass(frozen=True)
class StepResult:
    """How one step went. `completed` is False when its deadline passed first (e.g. the
    gateway dropped the traffic); `detail` says what was waited for and what happened."""

    index: int
    action: str
    start: float         # seconds since the run's start
    end: float
    completed: bool
    detail: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start


class _Agent:
    """One agent process and the thread that reads its events."""

    def __init__(self, host: HostHandle, argv: Sequence[str], sink: Callable[[str, Seen], None]
                 ) -> None:
        self.host = host
        self.argv = tuple(argv)
        self.proc = host.popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        self._sink = sink
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            ev: Seen
            try:
                ev = event_from_json(raw)
            except ProtocolError as e:
                ev = Garbage(raw.decode(errors="replace"), str(e))
                self._stderr.append(f"malformed event from the agent: {e}")
            self._sink(self.host.name, ev)
        self._sink(self.host.name, AgentExit())

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._stderr.append(raw.decode(errors="replace").rstrip())

    @property
    def stderr(self) -> str:
        return " | ".join(self._stderr[-5:])

    def send(self, line: str) -> None:
        stdin: IO[bytes] | None = self.proc.stdin
        if stdin is None or self.proc.poll() is not None:
            raise TrafficError(f"is not running (status {self.proc.returncode})",
                               argv=self.argv, host=self.host.name,
                               returncode=self.proc.returncode, stderr=self.stderr)
        try:
            stdin.write((line + "\n").encode())
            stdin.flush()
        except BrokenPipeError:
            raise TrafficError("went away", argv=self.argv, host=self.host.name,
                               returncode=self.proc.poll(), stderr=self.stderr) from None

    def stop(self, timeout: float = 2.0) -> None:
        if self.proc.poll() is None:
            try:
                self.send(to_json(Quit(id=-1)))
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except (TrafficError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout)
        self._reader.join(timeout)
        self._err_reader.join(timeout)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class Traffic:
    """The agents of one run; a context manager. Times are seconds since `t0` (wall clock)."""

    def __init__(self, hosts: Mapping[str, HostHandle], topology: Topology, *,
                 t0: float | None = None, agent_argv: Sequence[str] = AGENT_ARGV,
                 step_deadline: float = 1.0, tcp_deadline: float = 3.0,
                 start_timeout: float = 10.0) -> None:
        self.hosts = dict(hosts)
        self.topology = topology
        self.t0 = time.time() if t0 is None else t0
        self.agent_argv = tuple(agent_argv)
        self.step_deadline = step_deadline
        self.tcp_deadline = tcp_deadline
        self.start_timeout = start_timeout
        self._agents: dict[str, _Agent] = {}
        self._events: list[tuple[str, Seen]] = []
        self._cond = threading.Condition()
        self._next_id = 0

    # ---- lifecycle ------------------------------------------------------------------------

    def _sink(self, host: str, ev: Seen) -> None:
        with self._cond:
            self._events.append((host, ev))
            self._cond.notify_all()

    def start(self) -> None:
        try:
            for name, handle in self.hosts.items():
                self._agents[name] = _Agent(handle, self.agent_argv, self._sink)
            for name in self.hosts:
                ok = self._wait(_started(name), self.start_timeout)
                ready = ok and any(h == name and isinstance(e, Ready) for h, e in self._events)
                if not ready:
                    agent = self._agents[name]
                    raise TrafficError("did not start" + ("" if agent.stderr else
                                                          " (no message)"),
                                       argv=agent.argv, host=name,
                                       returncode=agent.proc.poll(), stderr=agent.stderr)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for agent in self._agents.values():
            agent.stop()

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- plumbing ----------------------------------------------------------------------------

    def _wait(self, predicate: Callable[[list[tuple[str, Seen]]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self._events):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def mark(self) -> int:
        """A position in the event stream: `since(mark)` gives what came after it."""
        with self._cond:
            return len(self._events)

    def since(self, mark: int) -> list[tuple[str, Seen]]:
        with self._cond:
            return list(self._events[mark:])

    def command(self, host: str, cmd: Command, timeout: float = 5.0) -> Ok | Error:
        """Send one command (with the next id) and wait for its `Ok` or `Error` (returned,
        not raised)."""
        self._next_id += 1
        return self._exchange(host, to_json(dataclasses.replace(cmd, id=self._next_id)),
                              self._next_id, cmd.op, timeout)

    def command_raw(self, host: str, fields: Mapping[str, object],
                    timeout: float = 5.0) -> Ok | Error:
        """Send `fields` (and the next id) as they are, commands or not: how the agent answers
        a message outside the protocol."""
        self._next_id += 1
        line = json.dumps({**fields, "id": self._next_id})
        return self._exchange(host, line, self._next_id, str(fields.get("op")), timeout)

    def _exchange(self, host: str, line: str, cmd_id: int, op: str, timeout: float
                  ) -> Ok | Error:
        pos = self.mark()
        self._agents[host].send(line)
        ev = self._first_any(pos, lambda h, e: h == host and (
            isinstance(e, AgentExit) or isinstance(e, Ok | Error) and e.id == cmd_id), timeout)
        if ev is None:
            raise TrafficError(f"did not answer {op} within {timeout} s",
                               argv=self._agents[host].argv, host=host)
        if isinstance(ev, AgentExit):
            agent = self._agents[host]
            raise TrafficError(f"exited during {op}", argv=agent.argv, host=host,
                               returncode=agent.proc.poll(), stderr=agent.stderr)
        assert isinstance(ev, Ok | Error)
        return ev

    def _first(self, pos: int, kind: type[E], pred: Callable[[str, E], bool], timeout: float
               ) -> E | None:
        """The first event of type `kind` after `pos` matching `pred`, waiting up to
        `timeout`."""
        ev = self._first_any(pos, lambda h, e: isinstance(e, kind) and pred(h, e), timeout)
        return ev if isinstance(ev, kind) else None

    def _first_any(self, pos: int, pred: Callable[[str, Seen], bool], timeout: float
                   ) -> Seen | None:
        """The first event after `pos` matching `pred`, waiting up to `timeout`."""
        found: list[Seen] = []
        seen = [pos]

        def match(evs: list[tuple[str, Seen]]) -> bool:
            for h, e in evs[seen[0]:]:
                if pred(h, e):
                    found.append(e)
                    return True
            seen[0] = len(evs)
            return False

        self._wait(match, timeout)
        return found[0] if found else None

    def _now(self) -> float:
        return time.time() - self.t0

    def _count(self, pos: int, pred: Callable[[str, Seen], bool]) -> int:
        return sum(1 for h, e in self.since(pos) if pred(h, e))

    def _wait_count(self, pos: int, pred: Callable[[str, Seen], bool], n: int,
                    timeout: float) -> bool:
        """Wait for `n` events matching `pred` after `pos`; each event is looked at once."""
        seen = [pos, 0]   # next index to look at, matches so far

        def enough(evs: list[tuple[str, Seen]]) -> bool:
            for h, e in evs[seen[0]:]:
                seen[1] += pred(h, e)
            seen[0] = len(evs)
            return seen[1] >= n

        return self._wait(enough, timeout)

    def _quiet(self, period: float, timeout: float) -> None:
        """Wait until no agent event arrived for `period` seconds (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        last = self.mark()
        while time.monotonic() < deadline:
            self._wait(_longer_than(last), min(period, deadline - time.monotonic()))
            now = self.mark()
            if now == last:
                return
            last = now

    # ---- steps ---------------------------------------------------------------------------

    def udp(self, index: int, sender: str, dst: IPv4Address, sport: int, dport: int,
            payload: bytes, *, count: int = 1, interval: float = 0.0,
            reply: bytes | None = None, listeners: Sequence[str] = (),
            listen_port: int | None = None) -> StepResult:
        """Datagrams from sender:sport to dst:dport; `listeners` bind dport (and answer with
        `reply`). Done when the replies (or, without reply, the datagrams, or without
        listeners, the ICMP errors) have arrived."""
        start = self._now()
        pos = self.mark()
        for host in listeners:
            self._check(self.command(host, UdpOpen(listen_port or dport, reply)), host)
        ev = self.command(sender, UdpSend(sport, str(dst), dport, payload, count, interval),
                          timeout=5.0 + count * interval)
        if isinstance(ev, Error):
            return StepResult(index, "udp", start, self._now(), False,
                              f"send failed: {ev.errno} {ev.message}")
        wait = self.step_deadline
        if listeners and reply is not None:
            what = f"{count} replies at {sender}:{sport}"
            ok = self._wait_count(pos, lambda h, e: h == sender and isinstance(e, UdpRecv)
                                  and e.dport == sport, count, wait)
        elif listeners:
            what = f"{count} datagrams at a listener"
            ok = self._wait_count(pos, lambda h, e: h != sender and isinstance(e, UdpRecv)
                                  and e.payload == payload, count, wait)
        else:
            what = f"{count} ICMP errors at {sender}"
            ok = self._wait_count(pos, lambda h, e: h == sender and _icmp_type(e) in ICMP_ERRORS,
                                  count, wait)
        return StepResult(index, "udp", start, self._now(), ok,
                          f"waited for {what}: " + ("arrived" if ok else "deadline passed"))

    def tcp(self, index: int, sender: str, dst: IPv4Address, sport: int, dport: int, *,
            send: bytes = b"", reply: bytes = b"", close: Literal["fin", "rst", "none"] = "fin",
            listeners: Sequence[str] = (), listen_port: int | None = None) -> StepResult:
        """One connection: connect from sport, send, read the reply, close (fin/rst/none).
        Done when the client finished and, for fin/rst, the server saw the close complete."""
        start = self._now()
        pos = self.mark()
        for host in listeners:
            self._check(self.command(host, TcpListen(listen_port or dport, reply, len(send))),
                        host)
        # The agent's own connect timeout is TcpConnect's default (3 s), as it always was;
        # tcp_deadline bounds the wait for the answer.
        ev = self.command(sender, TcpConnect(sport, str(dst), dport, send,
                                             len(reply) if listeners else 0, close),
                          timeout=self.tcp_deadline)
        cmd_id = ev.id
        if isinstance(ev, Error):
            return StepResult(index, "tcp", start, self._now(), False,
                              f"connect failed: {ev.message}")
        done = self._first(pos, Done, lambda h, e: h == sender and e.id == cmd_id,
                           self.tcp_deadline + 2.0)
        if done is None:
            return StepResult(index, "tcp", start, self._now(), False, "client never finished")
        if not done.connected or done.error is not None:
            return StepResult(index, "tcp", start, self._now(), done.error is not None,
                              f"client: {done.error or 'not connected'}")
        if close in ("fin", "rst"):
            server = self._first(pos, TcpClosed, lambda h, e: h != sender
                                 and e.side == "server", self.tcp_deadline)
            how = server.how if server else "no close seen"
            return StepResult(index, "tcp", start, self._now(), how in ("fin", "rst"),
                              f"client closed with {done.closed}, server: {how}")
        return StepResult(index, "tcp", start, self._now(), True,
                          f"received {done.received} bytes, left open")

    def ping(self, index: int, sender: str, dst: IPv4Address, ident: int, *, count: int = 1,
             interval: float = 0.2, payload: bytes = PING_PAYLOAD) -> StepResult:
        """Echo requests with identifier `ident`, seq 1..count; done when as many echo
        replies or ICMP errors came back."""
        start = self._now()
        pos = self.mark()
        for seq in range(1, count + 1):
            if seq > 1 and interval > 0:
                time.sleep(interval)   # the spec's pacing, not a synchronisation
            ev = self.command(sender, IcmpEcho(str(dst), ident, seq, payload))
            if isinstance(ev, Error):
                return StepResult(index, "ping", start, self._now(), False,
                                  f"send failed: {ev.errno} {ev.message}")

        def answer(h: str, e: Seen) -> bool:
            t = _icmp_type(e)
            return h == sender and (t in ICMP_ERRORS or (t == 0 and _icmp_id(e) == ident))

        ok = self._wait_count(pos, answer, count, self.step_deadline)
        return StepResult(index, "ping", start, self._now(), ok,
                          f"{self._count(pos, answer)} of {count} answers")

    def raw(self, index: int, sender: str, packet: bytes,
            seen: Callable[[], bool] | None = None, quiet: float = 0.02) -> StepResult:
        """Send a crafted IPv4 packet. Done when `seen()` (e.g. the gateway's capture shows
        it) and the agents have been quiet for `quiet` seconds."""
        start = self._now()
        dst = str(IPv4Address(packet[16:20]))
        ev = self.command(sender, RawSend(dst, packet))
        if isinstance(ev, Error):
            return StepResult(index, "raw", start, self._now(), False,
                              f"send failed: {ev.errno} {ev.message}")
        ok = seen() if seen is not None else True
        self._quiet(quiet, self.step_deadline)
        return StepResult(index, "raw", start, self._now(), ok,
                          "sent" + ("" if ok else "; not seen at the gateway"))

    def sleep(self, index: int, seconds: float) -> StepResult:
        """Let time pass (conntrack timeouts are the point of a sleep step)."""
        start = self._now()
        time.sleep(seconds)
        return StepResult(index, "sleep", start, self._now(), True, f"{seconds} s")

    def run_step(self, index: int, action: object,
                 raw_seen: Callable[[bytes], bool] | None = None,
                 checkpoint: Callable[[int, str], StepResult] | None = None,
                 move: Callable[[int, Move], StepResult] | None = None) -> StepResult:
        """Run one action of the spec's plan. A checkpoint is `checkpoint`'s (it reads the
        gateway's table, which the agents cannot), a step that changes the world is `move`'s
        (it runs tools in the namespaces); without them, it has nothing to send."""
        match action:
            case UdpFlow():
                return self.udp(index, action.sender, action.dst, action.sport, action.dport,
                                action.payload, count=action.count, interval=action.interval,
                                reply=action.reply, listeners=action.listeners,
                                listen_port=action.listen_port)
            case TcpFlow():
                return self.tcp(index, action.sender, action.dst, action.sport, action.dport,
                                send=action.send, reply=action.reply or b"",
                                close=action.close, listeners=action.listeners,
                                listen_port=action.listen_port)
            case Ping():
                return self.ping(index, action.sender, action.dst, action.ident,
                                 count=action.count, interval=action.interval,
                                 payload=action.payload)
            case RawPacket(data=data):
                return self.raw(index, action.sender, data,
                                None if raw_seen is None else (lambda: raw_seen(data)))
            case Sleep(seconds=seconds):
                return self.sleep(index, seconds)
            case Checkpoint(name=name) if checkpoint is not None:
                return checkpoint(index, name)
            case SetRules() | ConntrackChange() | SetSysctls() | SetHostRules() \
                    if move is not None:
                return move(index, action)
            case _:
                now = self._now()
                return StepResult(index, str(getattr(action, "action", type(action).__name__)),
                                  now, now, True, "nothing to send")

    @staticmethod
    def _check(ev: Ok | Error, host: str) -> None:
        if isinstance(ev, Error):
            raise TrafficError(f"agent command failed: {ev.errno} {ev.message}", host=host)

    # ---- what the hosts got ------------------------------------------------------------------

    def received(self) -> dict[str, list[Received]]:
        """Per host, in arrival order: UDP datagrams and TCP data its sockets read, and every
        ICMP message delivered to it (note = "type T code C", payload = the quoted header), and
        every TCP segment without payload (RST, bare SYN/ACK, ACK: `flags`), which no socket
        read reports but the raw sniffers see."""
        out: dict[str, list[Received]] = {name: [] for name in self.hosts}
        for host, e in self.since(0):
            if isinstance(e, UdpRecv | TcpRecv):
                out[host].append(Received(host, e.time - self.t0,
                                          "udp" if isinstance(e, UdpRecv) else "tcp",
                                          IPv4Address(e.src), IPv4Address(e.dst),
                                          e.sport, e.dport, e.payload))
            elif isinstance(e, PacketIn) and _icmp_type(e) is not None:
                data = e.data
                ihl = (data[0] & 0x0F) * 4
                out[host].append(Received(host, e.time - self.t0, "icmp",
                                          IPv4Address(data[12:16]), IPv4Address(data[16:20]),
                                          None, None, data[ihl + 8:],
                                          f"type {data[ihl]} code {data[ihl + 1]}"))
            elif isinstance(e, PacketIn) and (seg := _bare_segment(e.data)) is not None:
                sport, dport, flags = seg
                out[host].append(Received(host, e.time - self.t0, "tcp",
                                          IPv4Address(e.data[12:16]), IPv4Address(e.data[16:20]),
                                          sport, dport, b"", "segment", flags))
        return out

    def wait_received(self, host: str, predicate: Callable[[Received], bool], count: int = 1,
                      timeout: float = 1.0) -> list[Received]:
        """What `host` received that satisfies `predicate`, once there are `count` of them
        or the deadline passed. Each agent reports on its own pipe, so right after a step
        another host's report of the same exchange may still be on its way."""
        deadline = time.monotonic() + timeout
        while True:
            mark = self.mark()
            got = [r for r in self.received()[host] if predicate(r)]
            left = deadline - time.monotonic()
            if len(got) >= count or left <= 0:
                return got
            self._wait(_longer_than(mark), left)

    def delivered(self) -> dict[str, list[Delivered]]:
        """Per host, every IPv4 TCP/UDP/ICMP packet its IP layer delivered locally."""
        out: dict[str, list[Delivered]] = {name: [] for name in self.hosts}
        for host, e in self.since(0):
            if isinstance(e, PacketIn):
                out[host].append(Delivered(host, e.time - self.t0, e.data))
        return out


def _longer_than(n: int) -> Callable[[list[tuple[str, Seen]]], bool]:
    return lambda evs: len(evs) > n


def _started(host: str) -> Callable[[list[tuple[str, Seen]]], bool]:
    def started(evs: list[tuple[str, Seen]]) -> bool:
        return any(h == host and isinstance(e, Ready | AgentExit) for h, e in evs)
    return started


def _icmp_type(e: Seen) -> int | None:
    """The ICMP type of a `packet` event, or None for any other event."""
    if not isinstance(e, PacketIn):
        return None
    data = e.data
    if len(data) < 20 or data[9] != 1:
        return None
    ihl = (data[0] & 0x0F) * 4
    return data[ihl] if len(data) > ihl else None


_TCP_FLAG_LETTERS = "FSRPAUEC"     # bit 0 (FIN) to bit 7 (CWR), as tcpdump names them


def _bare_segment(data: bytes) -> tuple[int, int, str] | None:
    """(sport, dport, flags) of an IPv4 TCP segment that carries no payload, else None."""
    if len(data) < 20 or data[9] != 6:
        return None
    ihl = (data[0] & 0x0F) * 4
    total = int.from_bytes(data[2:4], "big")
    if len(data) < ihl + 20:
        return None
    offset = (data[ihl + 12] >> 4) * 4
    if total - ihl - offset > 0:
        return None
    bits = data[ihl + 13]
    flags = "".join(c for i, c in enumerate(_TCP_FLAG_LETTERS) if bits >> i & 1)
    return (int.from_bytes(data[ihl:ihl + 2], "big"), int.from_bytes(data[ihl + 2:ihl + 4], "big"),
            flags)


def _icmp_id(e: Seen) -> int | None:
    if not isinstance(e, PacketIn):
        return None
    data = e.data
    ihl = (data[0] & 0x0F) * 4
    if len(data) < ihl + 8:
        return None
    return int.from_bytes(data[ihl + 4:ihl + 6], "big")
