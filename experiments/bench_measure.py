"""The benchmark's measurements, as rows of numbers: the model's replay at several table
sizes, the NAT port search, `conntrack -L` rendering and parsing, and the scenario library
through the model (and, with --kernel, on the kernel through the session). Presentation is
`experiments.bench_report`; the command line `experiments.bench`.
"""

from __future__ import annotations

import gc
import importlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from experiments.bench_workload import (
    BenchError,
    Clock,
    Timer,
    make_flows,
    masquerade_gateway,
    open_flow,
    same_port_flows,
    steady_packets,
)
from experiments.errors import UserError
from experiments.library import builtin_spec_paths
from experiments.modelrun.run import run_on_model
from experiments.spec import Spec, load_spec
from nat.entry import Entry
from nat.listing import parse_listing, render
from nat.pipeline import Gateway

# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayRow:
    flows: int
    entries: int                   # entries in the table after opening the flows
    remapped: int                  # flows whose source port MASQUERADE changed
    open_packets: int
    open_seconds: float            # n x the median time per new flow over chunks
    steady_packets: int
    steady_seconds: float
    us_per_packet: float           # median over chunks of CHUNK steady packets

    @property
    def new_flows_per_s(self) -> float:
        return self.flows / self.open_seconds

    @property
    def packets_per_s(self) -> float:
        return 1e6 / self.us_per_packet


@dataclass(frozen=True)
class SearchRow:
    clients: int
    remapped: int
    seconds: float                 # opening all flows (request + reply each)

    @property
    def us_per_flow(self) -> float:
        return 1e6 * self.seconds / self.clients


@dataclass(frozen=True)
class ListingRow:
    entries: int
    render_seconds: float          # per pass over all entries
    parse_seconds: float

    @property
    def render_per_s(self) -> float:
        return self.entries / self.render_seconds

    @property
    def parse_per_s(self) -> float:
        return self.entries / self.parse_seconds


@dataclass(frozen=True)
class SpecRow:
    name: str
    backend: str
    model_seconds: float
    kernel_seconds: float | None = None
    replay_seconds: float | None = None   # judge_observed on the kernel's capture
    verdict: str | None = None


@dataclass
class Results:
    machine: dict[str, str] = field(default_factory=dict)      # versions.machine_facts()
    versions: dict[str, object] = field(default_factory=dict)  # as in a bundle's meta.json
    replay: list[ReplayRow] = field(default_factory=list)
    search: list[SearchRow] = field(default_factory=list)
    listing: list[ListingRow] = field(default_factory=list)
    specs: list[SpecRow] = field(default_factory=list)
    kernel_note: str = ""


# --- the measurements ---------------------------------------------------------------------------


CHUNK = 1000                   # steady packets per timed chunk
FLOW_CHUNK = 100               # new flows per timed chunk


def measure_replay(n: int, packets: int, seed: int = 1,
                   min_seconds: float = 0.0) -> tuple[ReplayRow, Gateway, float]:
    """Open `n` flows (again on fresh gateways until `min_seconds` have passed), then send
    `packets` packets over them. Returns the row, the gateway (its table holds the flows)
    and the model time at the end.

    Both phases are timed in chunks (FLOW_CHUNK flows, CHUNK packets) and the median chunk
    is reported, so a moment of load from elsewhere on the machine does not move the ratios.
    """
    gc.collect()                   # earlier sizes' garbage is not this size's cost
    spent = 0.0
    per_flow: list[float] = []     # seconds per new flow, one value per chunk of flows
    while True:                    # small sizes: open on fresh gateways until min_seconds
        gw = masquerade_gateway()
        flows = make_flows(n, seed)
        clock, opening = Clock(), Timer()
        for i in range(0, n, FLOW_CHUNK):
            chunk = Timer()
            for f in flows[i:i + FLOW_CHUNK]:
                open_flow(gw, f, clock, chunk)
            per_flow.append(chunk.seconds / len(flows[i:i + FLOW_CHUNK]))
            opening.seconds += chunk.seconds
            opening.packets += chunk.packets
        spent += opening.seconds
        if spent >= min_seconds:
            break
    entries = len(gw.table)
    if entries != n:
        raise BenchError(f"{n} flows opened but the table holds {entries} entries")
    remapped = sum(1 for f in flows if f.outside_port != f.sport)
    work = steady_packets(flows, packets)
    chunks: list[Timer] = []
    for i in range(0, len(work), CHUNK):
        timer = Timer()
        for pkt, iface in work[i:i + CHUNK]:
            timer.send(gw, pkt, iface, clock.tick())
        chunks.append(timer)
    if len(gw.table) != n:
        raise BenchError(f"the table went from {n} to {len(gw.table)} entries")
    per_packet = statistics.median(1e6 * c.seconds / c.packets for c in chunks)
    row = ReplayRow(n, entries, remapped, opening.packets, statistics.median(per_flow) * n,
                    sum(c.packets for c in chunks), sum(c.seconds for c in chunks), per_packet)
    return row, gw, clock.now


def measure_search(n: int, min_seconds: float = 0.0) -> SearchRow:
    """Open `n` same-port flows on a fresh gateway; repeated (fresh each time) until
    `min_seconds` have passed, and the fastest run is reported."""
    best: SearchRow | None = None
    spent = 0.0
    while best is None or spent < min_seconds:
        gc.collect()
        gw = masquerade_gateway()
        flows = same_port_flows(n)
        clock, timer = Clock(), Timer()
        for f in flows:
            open_flow(gw, f, clock, timer)
        if len(gw.table) != n:
            raise BenchError(f"{n} same-port flows opened but the table holds {len(gw.table)}")
        ports = {f.outside_port for f in flows}
        if len(ports) != n:
            raise BenchError(f"{n} same-port flows got only {len(ports)} distinct outside ports")
        row = SearchRow(n, sum(1 for f in flows if f.outside_port != f.sport), timer.seconds)
        spent += timer.seconds
        if best is None or row.seconds < best.seconds:
            best = row
    return best


def _best_of(fn: Callable[[], object], min_seconds: float, max_rounds: int = 50) -> float:
    """The fastest of repeated calls, repeating until `min_seconds` in all have passed."""
    best = float("inf")
    spent = 0.0
    for _ in range(max_rounds):
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        best = min(best, took)
        spent += took
        if spent >= min_seconds:
            break
    return best


def measure_listing(entries: Sequence[Entry], min_seconds: float) -> ListingRow:
    """Render every entry as `conntrack -L` does, and parse the text back (checked equal)."""
    lines = [render(e) for e in entries]
    text = "\n".join(lines) + "\n"
    if parse_listing(text) != list(entries):
        raise BenchError("parse_listing(render(entries)) is not the entries")
    render_s = _best_of(lambda: [render(e) for e in entries], min_seconds)
    parse_s = _best_of(lambda: parse_listing(text), min_seconds)
    return ListingRow(len(entries), render_s, parse_s)


def spec_paths(names: Sequence[str]) -> list[Path]:
    paths = builtin_spec_paths()
    if not names:
        return paths
    by_name = {p.stem: p for p in paths}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UserError(f"bench: no built-in spec {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(by_name))})")
    return [by_name[n] for n in names]


def measure_specs(paths: Sequence[Path], repeat: int, kernel: bool,
                  backend: str | None) -> list[SpecRow]:
    """Each spec through the model alone (best of `repeat`); with `kernel`, once on the
    kernel too, and the model's replay of that run (the work `natlab run` adds)."""
    specs = [load_spec(p, backend=backend) for p in paths]  # type: ignore[arg-type]
    rows: list[SpecRow] = []
    for spec in specs:
        model_s = min(_timed(partial(run_on_model, spec)) for _ in range(max(1, repeat)))
        if not kernel:
            rows.append(SpecRow(spec.name, spec.backend, model_s))
            continue
        kernel_s, replay_s, verdict = _kernel_run(spec)
        rows.append(SpecRow(spec.name, spec.backend, model_s, kernel_s, replay_s, verdict))
    return rows


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _kernel_run(spec: Spec) -> tuple[float, float, str]:
    """One `natlab run` of the spec without the bundle (the session's own steps): kernel
    time, replay time, verdict. The session needs root, so it is imported only here."""
    run_and_judge = importlib.import_module("experiments.session").run_and_judge
    files = Path(tempfile.mkdtemp(prefix=f"natlab-bench-{spec.name}-"))
    try:
        judged = run_and_judge(spec, files)
    finally:
        shutil.rmtree(files, ignore_errors=True)
    return judged.kernel_seconds, judged.judge_seconds, str(judged.judgement.status)
