"""How `natlab bench` shows its results: rich tables with rates and ratios, or one JSON object.

The JSON object carries `format`, its version (as result bundles do: experiments/bundle_format.py),
and the machine facts and versions a bundle's meta.json records (experiments.kernel.versions), so
numbers from two machines or two checkouts are never compared unknowingly. Its history:

- 1: the first versioned format: `format`, `machine` (python, kernel, cpus, machine),
  `versions` (as a bundle's meta.json `versions`), the rows of `replay`, `search`, `listing`
  and `specs` (each with its derived rates), and `kernel_note`. Before it, the object had no
  `format` and no `versions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from rich.table import Table

from experiments.bench_measure import Results

FORMAT = 1

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
        "format": FORMAT,
        "machine": res.machine,
        "versions": res.versions,
        "replay": rows(res.replay, "new_flows_per_s", "packets_per_s"),
        "search": rows(res.search, "us_per_flow"),
        "listing": rows(res.listing, "render_per_s", "parse_per_s"),
        "specs": rows(res.specs),
        "kernel_note": res.kernel_note,
    }
