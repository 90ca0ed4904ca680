"""A packet as the capture saw it at the gateway: when, on which interface, which way.

The one type shared by the capture parser, the replay and the comparison, so that a bundle on
disk (JSON lines of these) can be re-judged anywhere without the pcap machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
