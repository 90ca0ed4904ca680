"""The shapes of a spec file, as pydantic models: each step kind, `[expect]`, the top level.

Frozen, no unknown keys, no type coercion ("80" is not a port and 1 is not `true`). These
models check shape and types only; what the values mean (hosts exist, `to` is an address or a
host, checkpoint names are unique...) is checked by `experiments.spec`, the one reader of spec
files, which also turns pydantic's errors into one-line `SpecError`s.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from experiments.backends import BACKENDS, BackendName

MAX_SLEEP = 3600.0


# --- the models -------------------------------------------------------------


class _Model(BaseModel):
    """Frozen, no unknown keys, no type coercion."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, validate_by_name=True, validate_by_alias=True
    )


Port = typing.Annotated[int, Field(ge=1, le=65535)]
AnyPort = typing.Annotated[int, Field(ge=0, le=65535)]
U8 = typing.Annotated[int, Field(ge=0, le=255)]
U16 = typing.Annotated[int, Field(ge=0, le=65535)]
U32 = typing.Annotated[int, Field(ge=0, le=2**32 - 1)]


class _FlowStep(_Model):
    """What UDP and TCP steps share: who sends, from which port to where, and who listens.
    (`action` is declared here so that it is listed first, as the file shows it.)"""

    action: str
    from_: str = Field(validation_alias="from", serialization_alias="from")
    to: str
    sport: Port
    dport: Port
    listen: bool = True
    server: str | None = None
    server_port: Port | None = None
    # The answer this step waits for is dropped on purpose (a filter, an unanswered SYN):
    # its deadline passing is the expected outcome, a note rather than a warning.
    unanswered: bool = False

    @property
    def listen_port(self) -> int:
        """Where the server listens: `server_port` (a port forward that changes the port) or
        the destination port."""
        return self.server_port if self.server_port is not None else self.dport


class UdpStep(_FlowStep):
    """Send UDP datagrams from `from_` (TOML `from`) to `to`; `reply` makes the receiver
    answer each one, to the source address and port it saw."""

    action: Literal["udp"] = "udp"
    payload: str = ""
    count: int = Field(default=1, ge=1, le=100_000)
    interval: float = Field(default=0.0, ge=0, le=60)
    reply: str | None = None


class TcpStep(_FlowStep):
    """One TCP connection from `from_`:`sport` to `to`:`dport`: connect, send, read the
    reply, close (the client closes, with FIN or RST, or leaves it open)."""

    action: Literal["tcp"] = "tcp"
    send: str = ""
    reply: str = ""
    close: Literal["fin", "rst", "none"] = "fin"


class PingStep(_Model):
    """ICMP echo requests with identifier `id`, sequence numbers 1..count."""

    action: Literal["ping"] = "ping"
    from_: str = Field(validation_alias="from", serialization_alias="from")
    to: str
    id: U16
    count: int = Field(default=1, ge=1, le=10_000)
    interval: float = Field(default=0.2, ge=0, le=60)
    unanswered: bool = False        # as for UDP and TCP steps: no answer is expected


class RawStep(_Model):
    """One crafted IPv4 packet: the whole packet in `hex`, or built from the other fields."""

    action: Literal["raw"] = "raw"
    from_: str = Field(validation_alias="from", serialization_alias="from")
    hex: str | None = None
    proto: str | int | None = None
    src: str | None = None
    dst: str | None = None
    sport: AnyPort | None = None
    dport: AnyPort | None = None
    flags: str | None = None
    seq: U32 | None = None
    ack: U32 | None = None
    window: U16 | None = None
    icmp_type: U8 | None = None
    icmp_code: U8 | None = None
    id: U16 | None = None
    ttl: U8 | None = None
    payload: str | None = None


class SleepStep(_Model):
    """Let time pass (timeouts, UDP becoming a stream)."""

    action: Literal["sleep"] = "sleep"
    seconds: float = Field(gt=0, le=MAX_SLEEP)


class CheckpointStep(_Model):
    """Snapshot the gateway's conntrack table here, under `name`."""

    action: Literal["checkpoint"] = "checkpoint"
    name: str


MAX_CT_TIMEOUT = 2**31 // 1000     # what the kernel's timeout sysctls and CTA_TIMEOUT take here
CtStatusFlag = Literal["SEEN_REPLY", "ASSURED"]


class RulesStep(_Model):
    """Replace the gateway's whole ruleset now (`rules`, `nft`), or change it (`change`:
    iptables-restore --noflush text, -A/-I/-D/-F/-N/-X/-P), as one table replace: entries
    already in the conntrack table keep their NAT bindings; only new connections meet the
    new rules."""

    action: Literal["rules"] = "rules"
    rules: str = ""
    nft: str | None = None
    change: str | None = None


class ConntrackStep(_Model):
    """Change the gateway's conntrack table as `conntrack -F/-D/-I/-U` does (ctnetlink).

    The filter fields (`proto`, `src`, `dst`, `sport`, `dport` of the original tuple,
    `reply_*` of the reply tuple) are typed values (addresses are checked by the reader);
    they reach `conntrack` as separate arguments, never through a shell."""

    action: Literal["conntrack"] = "conntrack"
    op: Literal["flush", "delete", "insert", "update"]
    proto: Literal["tcp", "udp", "icmp"] | None = None
    src: str | None = None
    dst: str | None = None
    sport: Port | None = None
    dport: Port | None = None
    reply_src: str | None = None
    reply_dst: str | None = None
    reply_sport: Port | None = None
    reply_dport: Port | None = None
    timeout: int | None = Field(default=None, ge=1, le=MAX_CT_TIMEOUT)
    status: tuple[CtStatusFlag, ...] = Field(default=(), strict=False)
    mark: U32 | None = None


class SysctlStep(_Model):
    """Set gateway sysctls now (the same names and values as the top-level `sysctls`)."""

    action: Literal["sysctl"] = "sysctl"
    set: dict[str, Any]


class HostRulesStep(_Model):
    """Replace another host's ruleset now (iptables-restore text; "" removes every rule)."""

    action: Literal["host_rules"] = "host_rules"
    host: str
    rules: str = ""


Step = (UdpStep | TcpStep | PingStep | RawStep | SleepStep | CheckpointStep | RulesStep
        | ConntrackStep | SysctlStep | HostRulesStep)
STEP_KINDS: dict[str, type[_Model]] = {
    "udp": UdpStep,
    "tcp": TcpStep,
    "ping": PingStep,
    "raw": RawStep,
    "sleep": SleepStep,
    "checkpoint": CheckpointStep,
    "rules": RulesStep,
    "conntrack": ConntrackStep,
    "sysctl": SysctlStep,
    "host_rules": HostRulesStep,
}


TcpFlags = typing.Annotated[str, Field(pattern=r"^[FSRPAUEC]+$")]


class _Counted(_Model):
    """How many observations an expectation wants (none of the three: at least one), and in
    which snapshot: `final` (the end of the run) or a checkpoint's name."""

    count: int | None = Field(default=None, ge=0)
    at_least: int | None = Field(default=None, ge=0)
    at_most: int | None = Field(default=None, ge=0)
    at: str = "final"


class Received(_Counted):
    """Something a host is expected to have received (None = any value). TCP without `flags`
    is data a socket read; with `flags`, a segment without payload (RST, SYN/ACK, ACK). ICMP
    errors can be matched on the header they quote (`inner`, a one-direction pattern)."""

    host: str
    proto: Literal["udp", "tcp", "icmp"]
    src: str | None = None
    dst: str | None = None
    sport: int | str | None = None      # a port, `*` or `$NAME` (checked by experiments.spec)
    dport: int | str | None = None
    payload: str | None = None
    flags: TcpFlags | None = None
    icmp_type: U8 | None = None
    icmp_code: U8 | None = None
    inner: str | None = None


class EntryExpect(_Counted):
    """Conntrack entries matching a pattern (`conntrack -L` words, `*` and `$NAME` values),
    optionally with timeout bounds [low, high] (inclusive)."""

    match: str
    timeout: tuple[int, int] | None = Field(default=None, strict=False)


class Expect(_Model):
    """What should be seen: exact conntrack lines at the end (`conntrack`; timeout, mark and
    use may be left out), entries matching patterns (`entry`), what the hosts received, and
    relations between the values the patterns captured."""

    conntrack: tuple[str, ...] = Field(default=(), strict=False)
    received: tuple[Received, ...] = Field(default=(), strict=False)
    entry: tuple[EntryExpect, ...] = Field(default=(), strict=False)
    relations: tuple[str, ...] = Field(default=(), strict=False)


class SpecFile(_Model):
    """The top level of a spec file, before the topology and the steps are resolved."""

    name: str | None = None
    description: str = ""
    topology: Any = None
    backend: BackendName = "iptables"
    backends: tuple[BackendName, ...] = Field(default=BACKENDS, strict=False, min_length=1)
    rules: str = ""
    nft: str | None = None
    sysctls: dict[str, Any] = Field(default_factory=dict)
    host_rules: dict[str, str] = Field(default_factory=dict)
    steps: Any = None
    expect: Expect | None = None
    xfail: str | None = None
