"""What a kernel run observed, as plain values: the types shared by the kernel side (which
produces them), judging (which compares them with the model) and records (which store them).

`WirePacket` is a packet as the capture saw it at the gateway; `Received` is what a host's
application or stack got; `Observed` is the part of a run that a verdict depends on, in a form
that goes to JSON and back, so a bundle on disk can be re-judged anywhere without root and
without the pcap machinery. No kernel side, no model: just the values.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, Literal

from nat.entry import Entry
from nat.listing import parse_line

Way = Literal["in", "out"]


@dataclass(frozen=True)
class WirePacket:
    time: float          # seconds since the run's start (the model's clock)
    iface: str           # the interface name inside the gateway's namespace
    direction: Way       # "in": the gateway received it; "out": the gateway sent it
    data: bytes          # the IPv4 packet, from its first header byte

    def to_json(self) -> dict[str, object]:
        # The time unrounded (JSON keeps a float exactly): the capture has nanoseconds, and a
        # re-judged bundle must order packets and snapshots as the run's own judgement did.
        return {"time": self.time, "iface": self.iface, "direction": self.direction,
                "data": self.data.hex()}

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> WirePacket:
        direction = obj["direction"]
        if direction not in ("in", "out"):
            raise ValueError(f"bad direction {direction!r}")
        return cls(float(obj["time"]), str(obj["iface"]), direction,  # type: ignore[arg-type]
                   bytes.fromhex(str(obj["data"])))


@dataclass(frozen=True)
class Received:
    """What a host's application (or stack) got: shown to the user, checked by [expect]."""

    host: str
    time: float
    proto: str
    src: IPv4Address
    dst: IPv4Address
    sport: int | None
    dport: int | None
    payload: bytes
    note: str = ""
    flags: str | None = None     # TCP segments without payload: their flags ("SA", "R", "A")

    def render(self) -> str:
        ports = f":{self.sport} > " if self.sport is not None else " > "
        dst = f"{self.dst}:{self.dport}" if self.dport is not None else str(self.dst)
        text = self.payload.decode("utf-8", "replace")
        extra = f" ({self.note})" if self.note else ""
        if self.flags is not None:
            return f"{self.host}: {self.proto} {self.src}{ports}{dst} [{self.flags}]{extra}"
        return f"{self.host}: {self.proto} {self.src}{ports}{dst} {text!r}{extra}"

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "time": self.time, "proto": self.proto, "src": str(self.src),
                "dst": str(self.dst), "sport": self.sport, "dport": self.dport,
                "payload": self.payload.hex(), "note": self.note, "flags": self.flags}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Received:
        # Bundles of format 1 carry neither time nor note; before format 3, no flags.
        flags = obj.get("flags")
        return cls(str(obj["host"]), float(obj.get("time", 0.0)), str(obj["proto"]),
                   IPv4Address(obj["src"]), IPv4Address(obj["dst"]), obj["sport"], obj["dport"],
                   bytes.fromhex(obj["payload"]), str(obj.get("note", "")),
                   None if flags is None else str(flags))


FINAL = "final"    # the name of the snapshot taken at the end of every run


@dataclass(frozen=True)
class Snapshot:
    """The gateway's conntrack table at one moment, as `conntrack -L` printed it. `time`..
    `time_end` bracket the call (seconds since t0; the kernel's timeouts were read in between;
    a bundle records only `time`)."""

    name: str
    time: float
    lines: tuple[str, ...]
    time_end: float | None = None

    def entries(self) -> list[Entry]:
        return [parse_line(line) for line in self.lines]


@dataclass(frozen=True)
class Moment:
    """When a step that changes the world (plan step `step`) took effect on the kernel:
    `time` is the end of its command, seconds since t0 on the captures' clock. `fed` is the
    gateway ruleset text a `rules` step loaded (the model parses exactly that)."""

    step: int
    time: float
    fed: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "time": self.time, "fed": self.fed}


@dataclass(frozen=True)
class Observed:
    """What a verdict needs from a kernel run."""

    kernel_release: str
    sysctls: dict[str, str]
    snapshots: tuple[Snapshot, ...]         # checkpoints in order, then "final"
    packets: tuple[WirePacket, ...]
    received: tuple[Received, ...] = ()
    incomplete_steps: tuple[str, ...] = ()
    ruleset_fed: str | None = None                  # the gateway's rules exactly as loaded
    # An infrastructure failure that cut the run short (a helper process died, a command
    # natlab needs failed): what was recorded is not the whole run, and the verdict is ERROR.
    error: str | None = None
    moments: tuple[Moment, ...] = ()                # when each move took effect

    def to_json(self) -> dict[str, Any]:
        return {
            "kernel_release": self.kernel_release,
            "sysctls": self.sysctls,
            "snapshots": [{"name": s.name, "time": s.time, "lines": list(s.lines)}
                          for s in self.snapshots],
            "received": [r.to_json() for r in self.received],
            "incomplete_steps": list(self.incomplete_steps),
            "ruleset_fed": self.ruleset_fed,
            "error": self.error,
            "moments": [m.to_json() for m in self.moments],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], packets: list[WirePacket]) -> Observed:
        return cls(
            kernel_release=str(obj["kernel_release"]),
            sysctls={str(k): str(v) for k, v in obj["sysctls"].items()},
            snapshots=tuple(Snapshot(s["name"], float(s["time"]), tuple(s["lines"]))
                            for s in obj["snapshots"]),
            packets=tuple(packets),
            received=tuple(Received.from_json(r) for r in obj.get("received", [])),
            incomplete_steps=tuple(obj.get("incomplete_steps", [])),
            ruleset_fed=obj.get("ruleset_fed"),
            error=obj.get("error"),
            moments=tuple(Moment(int(m["step"]), float(m["time"]), m.get("fed"))
                          for m in obj.get("moments", [])),
        )
