"""Judging a run: what the kernel did (as recorded) against what the model predicts.

`Observed` is the part of a kernel run that the verdict depends on, in a form that goes to
JSON and back; `judge_observed` is a pure function of it and the spec, used both right after a
run and by `natlab judge BUNDLE` later, anywhere, without root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from experiments.judging.compare import Diff, Status, compare_conntrack, compare_packets, verdict
from experiments.judging.replay import Prediction, replay
from experiments.model_config import netview_for
from experiments.modelrun.run import model_ruleset
from experiments.observed import WirePacket
from experiments.spec import Spec
from nat.entry import Entry
from nat.listing import parse_line, parse_pattern, render
from nat.pipeline import GatewayConfig
from nat.profile import profile_for_release
from nat.sysctl import Sysctls

FINAL = "final"


@dataclass(frozen=True)
class ObservedSnapshot:
    name: str
    time: float
    lines: tuple[str, ...]

    def entries(self) -> list[Entry]:
        return [parse_line(line) for line in self.lines]


@dataclass(frozen=True)
class ObservedReceived:
    host: str
    proto: str
    src: str
    dst: str
    sport: int | None
    dport: int | None
    payload: bytes


@dataclass(frozen=True)
class Observed:
    """What a verdict needs from a kernel run."""

    kernel_release: str
    sysctls: dict[str, str]
    snapshots: tuple[ObservedSnapshot, ...]         # checkpoints in order, then "final"
    packets: tuple[WirePacket, ...]
    received: tuple[ObservedReceived, ...] = ()
    incomplete_steps: tuple[str, ...] = ()
    ruleset_fed: str | None = None                  # the gateway's rules exactly as loaded

    def to_json(self) -> dict[str, Any]:
        return {
            "kernel_release": self.kernel_release,
            "sysctls": self.sysctls,
            "snapshots": [{"name": s.name, "time": s.time, "lines": list(s.lines)}
                          for s in self.snapshots],
            "received": [{"host": r.host, "proto": r.proto, "src": r.src, "dst": r.dst,
                          "sport": r.sport, "dport": r.dport, "payload": r.payload.hex()}
                         for r in self.received],
            "incomplete_steps": list(self.incomplete_steps),
            "ruleset_fed": self.ruleset_fed,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], packets: list[WirePacket]) -> Observed:
        return cls(
            kernel_release=str(obj["kernel_release"]),
            sysctls={str(k): str(v) for k, v in obj["sysctls"].items()},
            snapshots=tuple(ObservedSnapshot(s["name"], float(s["time"]), tuple(s["lines"]))
                            for s in obj["snapshots"]),
            packets=tuple(packets),
            received=tuple(ObservedReceived(r["host"], r["proto"], r["src"], r["dst"],
                                            r["sport"], r["dport"], bytes.fromhex(r["payload"]))
                           for r in obj.get("received", [])),
            incomplete_steps=tuple(obj.get("incomplete_steps", [])),
            ruleset_fed=obj.get("ruleset_fed"),
        )


@dataclass(frozen=True)
class ExpectResult:
    status: str                     # PASS / FAIL / NONE
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Judgement:
    name: str
    status: Status
    diffs: tuple[Diff, ...]
    expect: ExpectResult
    prediction: Prediction
    kernel_conntrack: tuple[str, ...]
    model_conntrack: tuple[str, ...]
    xfail: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def clean(self) -> bool:
        return self.status in ("MATCH", "XFAIL") and self.expect.status != "FAIL"

    def render(self) -> str:
        lines = [f"{self.name}: {self.status}  (expect: {self.expect.status})"]
        lines += [f"  {d.where}: {d.field}: kernel {d.kernel} | model {d.model}"
                  for d in self.diffs]
        lines += [f"  expect: {f}" for f in self.expect.failures]
        if self.xfail:
            lines.append(f"  known divergence: {self.xfail}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def model_config(spec: Spec, kernel_release: str, sysctls: dict[str, str],
                 ruleset_fed: str | None = None) -> GatewayConfig:
    netfilter = {k: v for k, v in sysctls.items() if k.startswith("net.netfilter.")}
    return GatewayConfig(netview_for(spec.topology), model_ruleset(spec, ruleset_fed),
                         Sysctls.from_mapping({**netfilter, **spec.sysctls}),
                         profile_for_release(kernel_release))


def judge_observed(spec: Spec, observed: Observed) -> Judgement:
    """Replay the captured input through the model and compare everything."""
    config = model_config(spec, observed.kernel_release, observed.sysctls,
                          observed.ruleset_fed)
    times = [(s.name, s.time) for s in observed.snapshots]
    prediction = replay(config, list(observed.packets), times)
    diffs: list[Diff] = []
    model_by_name = {name: list(entries) for name, _, entries in prediction.snapshots}
    final_model: list[Entry] = []
    final_kernel: list[Entry] = []
    for snap in observed.snapshots:
        kernel_entries = snap.entries()
        model_entries = model_by_name.get(snap.name, [])
        diffs += compare_conntrack(snap.name, kernel_entries, model_entries)
        if snap.name == FINAL:
            final_model, final_kernel = model_entries, kernel_entries
    diffs += compare_packets(list(observed.packets), list(prediction.sent))
    for c in prediction.choices:
        if not c.allowed_kernel:
            diffs.append(Diff(f"choice at packet #{c.packet_index + 1}", f"{c.manip} binding",
                              c.kernel or "(not seen)", f"allowed: {c.allowed}"))
    for index, why in prediction.unparsed:
        diffs.append(Diff(f"packet #{index + 1}", "unreadable by the model", why, ""))
    notes = tuple(f"step did not complete: {s}" for s in observed.incomplete_steps)
    return Judgement(
        name=spec.name,
        status=verdict(diffs, spec.xfail),
        diffs=tuple(diffs),
        expect=check_expect(spec, final_kernel, observed.received),
        prediction=prediction,
        kernel_conntrack=tuple(render(e) for e in final_kernel),
        model_conntrack=tuple(render(e) for e in final_model),
        xfail=spec.xfail,
        notes=notes,
    )


def check_expect(spec: Spec, kernel: list[Entry],
                 received: tuple[ObservedReceived, ...]) -> ExpectResult:
    """A spec's [expect]: each conntrack line must match one kernel entry on the fields it
    names; each `received` item must match something the host received."""
    if spec.expect is None or (not spec.expect.conntrack and not spec.expect.received):
        return ExpectResult("NONE")
    failures = []
    for line in spec.expect.conntrack:
        pattern = parse_pattern(line)
        if not any(pattern.matches(e) for e in kernel):
            failures.append(f"no kernel entry matches: {line}")
    for want in spec.expect.received:
        if not any(_received_matches(want, got) for got in received):
            failures.append(f"{want.host} did not receive {want.proto} "
                            f"{want.src or '*'}:{want.sport or '*'} > "
                            f"{want.dst or '*'}:{want.dport or '*'}"
                            + (f" {want.payload!r}" if want.payload is not None else ""))
    return ExpectResult("FAIL" if failures else "PASS", tuple(failures))


def _received_matches(want: Any, got: ObservedReceived) -> bool:
    return (want.host == got.host and want.proto == got.proto
            and (want.src is None or want.src == got.src)
            and (want.dst is None or want.dst == got.dst)
            and (want.sport is None or want.sport == got.sport)
            and (want.dport is None or want.dport == got.dport)
            and (want.payload is None or want.payload.encode() == got.payload))
