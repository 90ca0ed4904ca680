"""`natlab bench`: how fast the model is, printed as rates and ratios (never asserted in tests).

Four measurements, each a table:

1. replay: packets per second through `nat.pipeline.Gateway` for a synthetic MASQUERADE
   workload (half UDP flows, half TCP connections, clients on random ephemeral ports), with
   10, 1,000 and 10,000 flows in the table. The ratio columns are the time per new flow and
   per packet compared with the smallest table: near 1 when costs do not grow with the table.
2. port search: many clients on ONE source port to one server, so every connection after the
   first needs the NAT port search (get_unique_tuple step 4). The ratio column is the time per
   new connection compared with the smallest run.
3. listing: `conntrack -L` text for the replay's largest table, rendered
   (`nat.listing.render`) and parsed back (`nat.listing.parse_listing`).
4. specs: the scenario library through the model alone (`natlab model`), and with `--kernel`
   (root) on the real kernel (`natlab run`'s kernel part) and the model's replay of what the
   kernel captured; the ratio is model time / kernel time.

Only the model calls are timed (time.perf_counter around each `receive`); building the
packets is not. Every packet's verdict is checked, so a benchmark that silently measured
dropped packets fails instead. The workload is seeded: two runs send the same packets.
Measured numbers and what they led to in the model: docs/bench.md.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from experiments import craft
from experiments.errors import UserError, kernel_preflight
from experiments.library import BUILTIN_SPECS
from experiments.modelrun.run import run_on_model
from experiments.spec import Spec, load_spec
from nat.entry import Entry
from nat.listing import parse_listing, render
from nat.netdev import Device, NetView, RouteEntry
from nat.packet import ACK, PSH, SYN, Packet
from nat.pipeline import Gateway, GatewayConfig
from nat.rules.iptables import parse_iptables_restore
from nat.tuple import Proto

LAN_IF, WAN_IF = "lan0", "wan0"
OUTSIDE = IPv4Address("203.0.113.1")
UPSTREAM = IPv4Address("203.0.113.254")
MASQUERADE_RULES = f"*nat\n-A POSTROUTING -o {WAN_IF} -j MASQUERADE\nCOMMIT\n"
CLIENTS = 500                  # inside hosts the flows are spread over
SERVERS = 16                   # outside servers, reached through the default route
UDP_PORTS = (53, 123, 443)
TCP_PORTS = (80, 443, 993)
EPHEMERAL = (32768, 60999)     # Linux's default ip_local_port_range
PAYLOAD = 64                   # bytes of data per packet in the steady phase
GAP = 1e-5                     # model seconds between packets: nothing expires during a run


class BenchError(RuntimeError):
    """The model did something the workload did not expect (a dropped packet, a lost entry):
    the numbers would be meaningless, so the benchmark stops."""


# --- the synthetic gateway and workload ---------------------------------------------------------


def bench_netview() -> NetView:
    """A gateway with a /16 LAN (room for many clients) and a WAN with a default route."""
    return NetView(
        devices=(Device(LAN_IF, 2, (IPv4Interface("192.168.0.1/16"),)),
                 Device(WAN_IF, 3, (IPv4Interface(f"{OUTSIDE}/24"),))),
        routes=(RouteEntry(IPv4Network("0.0.0.0/0"), WAN_IF, UPSTREAM),),
        forwarding=True,
    )


def masquerade_gateway() -> Gateway:
    return Gateway(GatewayConfig(bench_netview(), parse_iptables_restore(MASQUERADE_RULES)))


def client_address(index: int) -> IPv4Address:
    return IPv4Address(f"192.168.{1 + index // 250}.{2 + index % 250}")


def server_address(index: int) -> IPv4Address:
    return IPv4Address(f"198.51.100.{10 + index}")


@dataclass
class Flow:
    """One UDP flow or TCP connection, and what the gateway made of it."""

    proto: Proto
    client: IPv4Address
    sport: int
    server: IPv4Address
    dport: int
    outside_port: int = 0          # the source port after MASQUERADE (set by the opening)
    client_seq: int = 1000         # TCP: next sequence number of each side
    server_seq: int = 500_000


def make_flows(n: int, seed: int = 1) -> list[Flow]:
    """`n` distinct flows, half UDP and half TCP, from random ephemeral ports."""
    rnd = random.Random(seed)
    seen: set[tuple[Proto, IPv4Address, int, IPv4Address, int]] = set()
    flows: list[Flow] = []
    while len(flows) < n:
        i = len(flows)
        proto = Proto.UDP if i % 2 else Proto.TCP
        ports = UDP_PORTS if proto is Proto.UDP else TCP_PORTS
        key = (proto, client_address(rnd.randrange(min(n, CLIENTS))),
               rnd.randint(*EPHEMERAL), server_address(rnd.randrange(SERVERS)),
               rnd.choice(ports))
        if key not in seen:
            seen.add(key)
            flows.append(Flow(*key))
    return flows


def same_port_flows(n: int, port: int = 40000) -> list[Flow]:
    """`n` clients, all on source port `port`, all to one UDP server port: every flow after
    the first collides with an earlier one after MASQUERADE and needs the port search."""
    server = server_address(0)
    return [Flow(Proto.UDP, client_address(i), port, server, 53) for i in range(n)]


@dataclass
class Clock:
    """The model's time: advanced by GAP per packet."""

    now: float = 0.0

    def tick(self) -> float:
        self.now += GAP
        return self.now


@dataclass
class Timer:
    """Sums the time spent inside the model, and counts packets."""

    seconds: float = 0.0
    packets: int = 0

    def send(self, gw: Gateway, pkt: Packet, iface: str, now: float) -> Packet:
        """One packet through the gateway: the packet as it left, or BenchError if it was
        not forwarded."""
        start = time.perf_counter()
        journey = gw.receive(pkt, iface, now)
        self.seconds += time.perf_counter() - start
        self.packets += 1
        if journey.verdict != "ACCEPT" or journey.packet_out is None:
            raise BenchError(f"the model did not forward a workload packet "
                             f"({journey.verdict}):\n{journey.render()}")
        return journey.packet_out


def open_flow(gw: Gateway, flow: Flow, clock: Clock, timer: Timer) -> None:
    """UDP: request and reply. TCP: the three-way handshake. Records the outside port."""
    if flow.proto is Proto.UDP:
        out = timer.send(gw, craft.udp(flow.client, flow.sport, flow.server, flow.dport,
                                       bytes(PAYLOAD // 2)), LAN_IF, clock.tick())
        flow.outside_port = out.udp.sport
        timer.send(gw, craft.udp(flow.server, flow.dport, out.ip.src, flow.outside_port,
                                 bytes(PAYLOAD // 2)), WAN_IF, clock.tick())
        return
    out = timer.send(gw, craft.tcp(flow.client, flow.sport, flow.server, flow.dport, SYN,
                                   seq=flow.client_seq), LAN_IF, clock.tick())
    flow.outside_port = out.tcp.sport
    flow.client_seq += 1
    timer.send(gw, craft.tcp(flow.server, flow.dport, out.ip.src, flow.outside_port,
                             SYN | ACK, seq=flow.server_seq, ack=flow.client_seq),
               WAN_IF, clock.tick())
    flow.server_seq += 1
    timer.send(gw, craft.tcp(flow.client, flow.sport, flow.server, flow.dport, ACK,
                             seq=flow.client_seq, ack=flow.server_seq), LAN_IF, clock.tick())


def steady_packets(flows: Sequence[Flow], count: int) -> list[tuple[Packet, str]]:
    """`count` packets over established flows, round robin: a request and its answer (UDP),
    a data segment and its ACK (TCP)."""
    out: list[tuple[Packet, str]] = []
    i = 0
    while len(out) < count:
        f = flows[i % len(flows)]
        i += 1
        if f.proto is Proto.UDP:
            out.append((craft.udp(f.client, f.sport, f.server, f.dport, bytes(PAYLOAD)),
                        LAN_IF))
            out.append((craft.udp(f.server, f.dport, OUTSIDE, f.outside_port,
                                  bytes(PAYLOAD)), WAN_IF))
        else:
            out.append((craft.tcp(f.client, f.sport, f.server, f.dport, PSH | ACK,
                                  seq=f.client_seq, ack=f.server_seq, payload=bytes(PAYLOAD)),
                        LAN_IF))
            f.client_seq += PAYLOAD
            out.append((craft.tcp(f.server, f.dport, OUTSIDE, f.outside_port, ACK,
                                  seq=f.server_seq, ack=f.client_seq), WAN_IF))
    return out[:count]


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
    machine: dict[str, str] = field(default_factory=dict)
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
    paths = sorted(BUILTIN_SPECS.glob("*.toml"))
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


def machine_info() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpus": str(os.cpu_count() or "?"),
        "machine": platform.machine(),
    }


# --- presentation -------------------------------------------------------------------------------


def ratio(value: float, base: float) -> str:
    """value/base as `1.04x`; a small one also as a fraction: `0.0017x (1/590)`."""
    if base <= 0 or value <= 0:
        return "-"
    r = value / base
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x (1/{1 / r:,.0f})"


def _rate(x: float) -> str:
    return f"{x:,.0f}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def tables(res: Results) -> list[Any]:
    """The results as rich Tables (one per measurement that ran)."""
    from rich.table import Table

    out: list[Any] = []
    if res.replay:
        base, first = res.replay[0].us_per_packet, res.replay[0]
        t = Table(title="Model replay: MASQUERADE, half UDP flows, half TCP connections "
                        "(nat.pipeline.Gateway)")
        for col in ("flows in table", "remapped", "new flows/s",
                    f"time/new flow vs {first.flows:,}", "packets", "packets/s", "us/packet",
                    f"time/packet vs {first.flows:,} flows"):
            t.add_column(col, justify="right")
        for r in res.replay:
            t.add_row(f"{r.flows:,}", f"{r.remapped:,}", _rate(r.new_flows_per_s),
                      ratio(first.new_flows_per_s, r.new_flows_per_s),
                      f"{r.steady_packets:,}", _rate(r.packets_per_s),
                      f"{r.us_per_packet:.1f}", ratio(r.us_per_packet, base))
        out.append(t)
    if res.search:
        base = res.search[0].us_per_flow
        t = Table(title="NAT port search: N clients on one source port to one server "
                        "(get_unique_tuple step 4)")
        for col in ("clients", "remapped", "new flows/s", "us/new flow",
                    f"time/flow vs {res.search[0].clients:,} clients"):
            t.add_column(col, justify="right")
        for q in res.search:
            t.add_row(f"{q.clients:,}", f"{q.remapped:,}", _rate(q.clients / q.seconds),
                      f"{q.us_per_flow:.1f}", ratio(q.us_per_flow, base))
        out.append(t)
    if res.listing:
        t = Table(title="conntrack -L text: nat.listing.render vs nat.listing.parse_listing")
        for col in ("entries", "render lines/s", "parse lines/s", "parse time / render time"):
            t.add_column(col, justify="right")
        for li in res.listing:
            t.add_row(f"{li.entries:,}", _rate(li.render_per_s), _rate(li.parse_per_s),
                      ratio(li.parse_seconds, li.render_seconds))
        out.append(t)
    if res.specs:
        t = Table(title="Scenario library: model vs kernel, per spec")
        t.add_column("spec")
        t.add_column("backend")
        for col in ("model ms", "kernel ms", "replay ms", "verdict", "model / kernel"):
            t.add_column(col, justify="right")
        for s in res.specs:
            t.add_row(s.name, s.backend, _ms(s.model_seconds), _ms(s.kernel_seconds),
                      _ms(s.replay_seconds), s.verdict or "-",
                      ratio(s.model_seconds, s.kernel_seconds) if s.kernel_seconds else "-")
        model_total = sum(s.model_seconds for s in res.specs)
        kernel_total = sum(s.kernel_seconds or 0.0 for s in res.specs)
        replay_total = sum(s.replay_seconds or 0.0 for s in res.specs)
        t.add_row("total", "", _ms(model_total), _ms(kernel_total or None),
                  _ms(replay_total or None), "",
                  ratio(model_total, kernel_total) if kernel_total else "-",
                  end_section=True)
        out.append(t)
    return out


def to_json(res: Results) -> dict[str, Any]:
    def rows(items: Sequence[Any], *props: str) -> list[dict[str, Any]]:
        return [{**asdict(i), **{p: getattr(i, p) for p in props}} for i in items]

    return {
        "machine": res.machine,
        "replay": rows(res.replay, "new_flows_per_s", "packets_per_s"),
        "search": rows(res.search, "us_per_flow"),
        "listing": rows(res.listing, "render_per_s", "parse_per_s"),
        "specs": rows(res.specs),
        "kernel_note": res.kernel_note,
    }


# --- command line -------------------------------------------------------------------------------

SECTIONS = ("replay", "search", "listing", "specs")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="natlab bench",
        description="Measure the model's speed (and, with --kernel, the kernel's); printed as "
                    "rates and ratios. Runs without root unless --kernel is given.")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and one round each (seconds, for tests)")
    p.add_argument("--kernel", action="store_true",
                   help="also run each spec on the real kernel (root; ~0.5 s per spec)")
    p.add_argument("--backend", choices=("iptables", "iptables-legacy", "nft"),
                   help="the rules backend for the specs (default: each spec's own)")
    p.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                   help=f"run only these measurements ({', '.join(SECTIONS)}); repeatable")
    p.add_argument("--sizes", type=_sizes, metavar="N,N,...",
                   help="flows in the table for the replay (default 10,1000,10000)")
    p.add_argument("--packets", type=int, metavar="N",
                   help="packets sent over established flows per size (default 20000)")
    p.add_argument("--spec", action="append", default=[], metavar="NAME",
                   help="only this built-in spec (repeatable; default: all)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    return p


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> Results:
    """Every measurement the arguments ask for."""
    sections = set(args.only or SECTIONS)
    sizes = args.sizes or ([10, 100, 300] if args.quick else [10, 1_000, 10_000])
    packets = args.packets or (600 if args.quick else 20_000)
    search_sizes = [10, 100] if args.quick else [10, 1_000, 10_000]
    min_seconds = 0.0 if args.quick else 0.3
    res = Results(machine=machine_info())
    if sections & {"replay", "listing", "search"}:
        measure_replay(10, 200)      # warm-up: first calls pay for imports and caches, and
        measure_search(10)           # the smallest size is every ratio's baseline
    if sections & {"replay", "listing"}:
        largest = max(sizes)
        for n in sizes:
            progress(f"replay: {n:,} flows")
            row, gw, now = measure_replay(n, packets, min_seconds=min_seconds)
            if "replay" in sections:
                res.replay.append(row)
            if "listing" in sections and n == largest and not res.listing:
                progress(f"listing: {n:,} entries")
                res.listing.append(measure_listing(gw.entries(now), min_seconds))
            del gw
    if "search" in sections:
        for n in search_sizes:
            progress(f"port search: {n:,} clients")
            res.search.append(measure_search(n, min_seconds))
    if "specs" in sections:
        if args.kernel:
            kernel_preflight("bench --kernel", [args.backend or "iptables"])
        else:
            res.kernel_note = "kernel columns need --kernel (root)"
        progress("specs" + (" (model and kernel)" if args.kernel else " (model)"))
        res.specs = measure_specs(spec_paths(args.spec), 1 if args.quick else 5, args.kernel,
                                  args.backend)
    return res


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:      # --help (0) or a usage error (2), printed by argparse
        return e.code if isinstance(e.code, int) else 2
    from rich.console import Console

    console = Console(highlight=False, width=None if os.isatty(1) else 160)
    err = Console(stderr=True, highlight=False)
    quiet = args.json or not err.is_terminal

    def progress(what: str) -> None:
        if not quiet:
            err.print(f"[dim]bench: {what}[/dim]")

    start = time.perf_counter()
    try:
        res = run(args, progress)
    except BenchError as e:
        raise UserError(f"bench: {e}") from None
    if args.json:
        print(json.dumps(to_json(res), separators=(",", ":")))
        return 0
    m = res.machine
    console.print(f"natlab bench: Python {m['python']}, Linux {m['kernel']}, "
                  f"{m['cpus']} CPUs ({m['machine']})")
    for t in tables(res):
        console.print(t)
    if res.kernel_note and res.specs:
        console.print(res.kernel_note)
    console.print(f"bench took {time.perf_counter() - start:.1f} s")
    return 0
