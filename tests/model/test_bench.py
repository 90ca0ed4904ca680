"""`natlab bench --quick`: runs without root, prints every table with its ratio column, and
the workload it measures is the one it claims (no timing assertions: speed is not a test)."""

from __future__ import annotations

import json
import re

import pytest

from experiments import bench
from experiments import bench_measure as measure
from experiments import bench_workload as workload
from experiments.bench_report import FORMAT
from experiments.cli import main as natlab_main
from experiments.errors import UserError
from nat.listing import parse_listing, render
from nat.tuple import Proto

RATIO = re.compile(r"\b\d+\.\d\dx\b")


def test_quick_bench_prints_every_table_with_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    assert natlab_main(["bench", "--quick"]) == 0
    out = capsys.readouterr().out
    for title in ("Model replay", "NAT port search", "conntrack -L text",
                  "Scenario library"):
        assert title in out
    assert "time/packet vs 10 flows" in out
    assert "parse time / render time" in out
    assert "model / kernel" in out
    # Each measured row carries a ratio: 3 replay sizes, 2 search sizes, 1 listing row.
    assert len(RATIO.findall(out)) >= 6
    assert "1.00x" in out                      # the baseline row of the replay and search
    assert "kernel columns need --kernel" in out
    for path in bench.spec_paths([]):
        assert path.stem in out


def test_json_output_has_rates_for_each_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--quick", "--json", "--sizes", "5,40", "--packets", "60",
                       "--spec", "seed-dnat-udp"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [r["flows"] for r in res["replay"]] == [5, 40]
    assert all(r["packets_per_s"] > 0 and r["steady_packets"] == 60 for r in res["replay"])
    assert [r["entries"] for r in res["listing"]] == [40]
    assert [s["name"] for s in res["specs"]] == ["seed-dnat-udp"]
    assert res["specs"][0]["kernel_seconds"] is None
    # Versioned, with the machine facts and versions a bundle records.
    assert res["format"] == FORMAT == 1
    assert set(res["machine"]) == {"python", "kernel", "cpus", "machine"}
    assert res["versions"]["kernel"] == res["machine"]["kernel"]
    assert {"natlab", "git_commit", "conntrack"} <= set(res["versions"])


def test_only_selects_measurements(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--quick", "--only", "listing", "--sizes", "20"]) == 0
    out = capsys.readouterr().out
    assert "conntrack -L text" in out
    assert "Model replay" not in out and "Scenario library" not in out


def test_bad_arguments_are_usage_errors() -> None:
    assert bench.main(["--sizes", "0,10"]) == 2
    assert natlab_main(["bench", "--packets", "many"]) == 2
    with pytest.raises(UserError, match="no built-in spec"):
        bench.main(["--quick", "--only", "specs", "--spec", "no-such-spec"])


def test_replay_workload_is_what_it_claims() -> None:
    flows = workload.make_flows(200)
    assert len({(f.proto, f.client, f.sport, f.server, f.dport) for f in flows}) == 200
    assert sum(f.proto is Proto.UDP for f in flows) == 100
    row, gw, now = measure.measure_replay(200, 400)
    assert row.entries == len(gw.table) == 200
    assert row.steady_packets == 400 and row.open_packets == 100 * 2 + 100 * 3
    entries = gw.entries(now)
    assert all(not e.unreplied for e in entries)          # every flow saw its answer
    assert all(e.reply.dst == workload.OUTSIDE for e in entries)    # all masqueraded
    assert parse_listing("\n".join(render(e) for e in entries)) == entries


def test_same_port_clients_all_get_distinct_outside_ports() -> None:
    row = measure.measure_search(30)
    assert row.clients == 30 and row.remapped == 29     # the first keeps its port


def test_a_packet_the_model_does_not_forward_stops_the_bench() -> None:
    gw = workload.masquerade_gateway()
    stray = workload.Flow(Proto.TCP, workload.client_address(0), 40001,
                          workload.server_address(0), 80, outside_port=40001)
    answer, iface = workload.steady_packets([stray], 2)[1]    # an ACK for no connection
    with pytest.raises(workload.BenchError, match="did not forward"):
        workload.Timer().send(gw, answer, iface, 1.0)
