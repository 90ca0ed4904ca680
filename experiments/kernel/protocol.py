"""The protocol between natlab's traffic driver (`traffic.py`) and its agents (`agent.py`):
every command and every event as a frozen dataclass, one JSON object per line.

Both ends import this module, so they cannot disagree on a name or a field. It imports only
the standard library: the agent starts inside each namespace and must be up in a few tens
of milliseconds.

On the wire a command is `{"op": NAME, "id": N, ...fields}` and an event is
`{"event": NAME, ...fields}`; bytes travel as hex strings. Reading a line that is not one of
these messages (bad JSON, an unknown name, a missing, unknown or mistyped field) raises
`ProtocolError`, whose str() says which and where.

Commands (each answered by exactly one `Ok` or `Error` with its id; `TcpConnect` later also
by one `Done` with the same id):

    udp_open     port, reply (or null)     bind UDP 0.0.0.0:port (reuses an open socket); the
                                           socket answers every datagram with reply
    udp_send     sport, dst, dport, payload, count, interval
    tcp_listen   port, reply, expect (bytes to read before replying)
    tcp_connect  sport, dst, dport, send, expect, close ("fin"|"rst"|"none"), timeout
    icmp_echo    dst, ident, seq, payload
    raw_send     dst, packet (a whole IPv4 packet; sent with IP_HDRINCL)
    quit

Unsolicited events: `udp_recv`, `tcp_accept`, `tcp_recv`, `tcp_closed`, `packet` (every IPv4
TCP/UDP/ICMP packet delivered to the host), each with a wall-clock `time` (time.time(),
comparable across namespaces and with tcpdump's timestamps); `ready` once, at start.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal


class ProtocolError(ValueError):
    """A line that is not a message of this protocol (one line, says what is wrong)."""


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UdpOpen:
    op: ClassVar[str] = "udp_open"
    port: int
    reply: bytes | None = None
    id: int = 0


@dataclass(frozen=True)
class UdpSend:
    op: ClassVar[str] = "udp_send"
    sport: int
    dst: str
    dport: int
    payload: bytes = b""
    count: int = 1
    interval: float = 0.0
    id: int = 0


@dataclass(frozen=True)
class TcpListen:
    op: ClassVar[str] = "tcp_listen"
    port: int
    reply: bytes = b""
    expect: int = 0
    id: int = 0


@dataclass(frozen=True)
class TcpConnect:
    op: ClassVar[str] = "tcp_connect"
    sport: int
    dst: str
    dport: int
    send: bytes = b""
    expect: int = 0
    close: Literal["fin", "rst", "none"] = "fin"
    timeout: float = 3.0
    id: int = 0


@dataclass(frozen=True)
class IcmpEcho:
    op: ClassVar[str] = "icmp_echo"
    dst: str
    ident: int
    seq: int
    payload: bytes = b""
    id: int = 0


@dataclass(frozen=True)
class RawSend:
    op: ClassVar[str] = "raw_send"
    dst: str
    packet: bytes
    id: int = 0


@dataclass(frozen=True)
class Quit:
    op: ClassVar[str] = "quit"
    id: int = 0


Command = UdpOpen | UdpSend | TcpListen | TcpConnect | IcmpEcho | RawSend | Quit
COMMANDS: dict[str, type[Command]] = {
    c.op: c for c in (UdpOpen, UdpSend, TcpListen, TcpConnect, IcmpEcho, RawSend, Quit)}


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """The agent is up: its sniffers are open."""

    event: ClassVar[str] = "ready"
    pid: int
    time: float


@dataclass(frozen=True)
class Ok:
    """Command `id` done; `times` are the send times (udp_send, icmp_echo, raw_send)."""

    event: ClassVar[str] = "ok"
    id: int | None
    times: tuple[float, ...] = ()


@dataclass(frozen=True)
class Error:
    """Command `id` (of `op`) failed; `errno` is the symbolic name (ECONNREFUSED) if any."""

    event: ClassVar[str] = "error"
    id: int | None
    op: str | None
    errno: str | None
    message: str


@dataclass(frozen=True)
class Done:
    """A `tcp_connect` finished: connected or not, bytes read, how the client closed."""

    event: ClassVar[str] = "done"
    id: int
    conn: int
    connected: bool
    error: str | None
    received: int
    closed: str | None


@dataclass(frozen=True)
class UdpRecv:
    event: ClassVar[str] = "udp_recv"
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


@dataclass(frozen=True)
class TcpAccept:
    """A connection is established (`side` "server": accepted; "client": connected)."""

    event: ClassVar[str] = "tcp_accept"
    time: float
    conn: int
    side: str
    src: str
    sport: int
    dst: str
    dport: int


@dataclass(frozen=True)
class TcpRecv:
    event: ClassVar[str] = "tcp_recv"
    time: float
    conn: int
    side: str
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


@dataclass(frozen=True)
class TcpClosed:
    """A connection is over; `how`: "fin", "rst", or what went wrong."""

    event: ClassVar[str] = "tcp_closed"
    time: float
    conn: int
    side: str
    how: str


@dataclass(frozen=True)
class PacketIn:
    """An IPv4 packet the host's IP layer delivered locally (seen by a raw socket)."""

    event: ClassVar[str] = "packet"
    time: float
    data: bytes


Event = Ready | Ok | Error | Done | UdpRecv | TcpAccept | TcpRecv | TcpClosed | PacketIn
EVENTS: dict[str, type[Event]] = {
    e.event: e for e in (Ready, Ok, Error, Done, UdpRecv, TcpAccept, TcpRecv, TcpClosed,
                         PacketIn)}


# --- to and from JSON --------------------------------------------------------------------------


def to_json(message: Command | Event) -> str:
    """One line of JSON (no newline): the name first, then the fields, bytes as hex."""
    name = ("op", message.op) if isinstance(message, _COMMAND_TYPES) else (
        "event", typing.cast(Event, message).event)
    out: dict[str, Any] = {name[0]: name[1]}
    for f in dataclasses.fields(message):
        out[f.name] = _encode(getattr(message, f.name))
    return json.dumps(out, separators=(",", ":"))


def command_from_json(line: str | bytes) -> Command:
    """The command on `line`, or ProtocolError."""
    return typing.cast(Command, _from_json(line, "op", COMMANDS))


def event_from_json(line: str | bytes) -> Event:
    """The event on `line`, or ProtocolError."""
    return typing.cast(Event, _from_json(line, "event", EVENTS))


def message_id(line: str | bytes) -> tuple[int | None, str | None]:
    """The id and op of a command line, as far as they can be read (for error answers)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    ident, op = obj.get("id"), obj.get("op")
    return (ident if type(ident) is int else None), (op if isinstance(op, str) else None)


_COMMAND_TYPES = tuple(COMMANDS.values())


def _encode(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return list(value)
    return value


def _from_json(line: str | bytes, key: str, kinds: dict[str, type[Any]]) -> object:
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise ProtocolError(f"bad JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"expected a JSON object, got {type(obj).__name__}")
    name = obj.pop(key, None)
    if not isinstance(name, str):
        raise ProtocolError(f"missing {key!r} (one of: {', '.join(kinds)})")
    cls = kinds.get(name)
    if cls is None:
        what = "op" if key == "op" else "event"
        raise ProtocolError(f"unknown {what} {name!r} (one of: {', '.join(kinds)})")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(obj) - set(fields))
    if unknown:
        raise ProtocolError(f"{name}: unknown field {unknown[0]!r}")
    values: dict[str, object] = {}
    for fname, f in fields.items():
        if fname not in obj:
            if f.default is dataclasses.MISSING:
                raise ProtocolError(f"{name}: missing field {fname!r}")
            continue
        values[fname] = _decode(obj[fname], hints[fname], f"{name}.{fname}")
    return cls(**values)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _decode(value: object, hint: Any, where: str) -> object:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _decode(value, inner, where)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ProtocolError(f"{where}: expected one of {typing.get_args(hint)}, "
                                f"got {value!r}")
        return value
    if origin is tuple:
        (inner, _) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ProtocolError(f"{where}: expected an array, got {value!r}")
        return tuple(_decode(v, inner, f"{where}.{i}") for i, v in enumerate(value))
    if hint is bytes:
        if not isinstance(value, str):
            raise ProtocolError(f"{where}: expected hex, got {value!r}")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ProtocolError(f"{where}: not hex: {value[:40]!r}") from None
    if hint is float:
        if type(value) not in (int, float):
            raise ProtocolError(f"{where}: expected a number, got {value!r}")
        return float(typing.cast(float, value))
    if hint in (int, bool, str):
        if type(value) is not hint:
            raise ProtocolError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    raise TypeError(f"{where}: no decoder for {hint!r}")  # pragma: no cover - our own types
