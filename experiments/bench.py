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

Four modules, one job each: the workload (`bench_workload`), the measurements
(`bench_measure`), the presentation and the JSON format (`bench_report`), and here the command
line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

from rich.console import Console

from experiments.bench_measure import (
    Results,
    measure_listing,
    measure_replay,
    measure_search,
    measure_specs,
    spec_paths,
)
from experiments.bench_report import tables, to_json
from experiments.bench_workload import BenchError
from experiments.errors import UserError
from experiments.kernel.versions import collect_versions, machine_facts
from experiments.preflight import kernel_preflight

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
    res = Results(machine=machine_facts(), versions=collect_versions().to_json())
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
