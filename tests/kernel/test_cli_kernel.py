"""`natlab run` and `natlab up` on the real kernel (root): what the command line prints is
what the kernel did, and a rule the kernel refuses is one line naming spec and command."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.spec import load_spec
from nat.listing import parse_line, parse_pattern
from tests.kernel.natlab_process import own_lines

SPECS = Path(__file__).parents[2] / "experiments" / "specs"
SEEDS = ("seed-dnat-udp", "seed-snat-tcp")


def test_run_json_matches_the_seeds_expectations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--json", "--out", str(tmp_path), *SEEDS]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in results] == list(SEEDS)
    for result in results:
        spec = load_spec(SPECS / f"{result['name']}.toml")
        assert spec.expect is not None
        entries = [parse_line(line) for line in result["kernel"]["conntrack"]]
        for expected in spec.expect.conntrack:
            pattern = parse_pattern(expected)
            assert any(pattern.matches(e) for e in entries), (expected, entries)
        assert len(entries) == len(spec.expect.conntrack)
        received = result["kernel"]["received"]
        for exp in spec.expect.received:
            got = received[exp.host]
            assert any(
                r["proto"] == exp.proto and r["src"] == exp.src and r["dst"] == exp.dst
                and r["sport"] == exp.sport and r["dport"] == exp.dport
                and r["payload"] == exp.payload
                for r in got
            ), (exp, got)
        assert result["verdict"] == "MATCH", result["diffs"]
        assert result["expect"]["status"] == "PASS"
        # same entries (the timeout may differ within the comparison's tolerance)
        assert sorted(parse_line(x).key() for x in result["model"]["conntrack"]) == sorted(
            parse_line(x).key() for x in result["kernel"]["conntrack"])
        bundle = Path(result["bundle"])
        assert bundle.parent == tmp_path and result["name"] in bundle.name
        for name in ("spec.toml", "meta.json", "observed.json", "packets.jsonl",
                     "prediction.json", "verdict.json", "ruleset.txt", "conntrack/final.txt"):
            assert (bundle / name).is_file(), name
        assert main(["judge", str(bundle)]) == 0


def test_run_with_a_rule_the_kernel_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "refused.toml"
    spec.write_text((SPECS / "seed-dnat-udp.toml").read_text().replace(
        "--to-destination 192.168.1.8", "--to-destination 192.168.1.999"))
    assert main(["run", "--out", str(tmp_path), str(spec)]) == 2
    out, err = capsys.readouterr()
    lines = own_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"natlab: {spec}: ")
    assert "iptables-restore" in lines[0] and "gateway" in lines[0]


def test_up_shell_runs_commands_in_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "masq.rules"
    rules.write_text("*nat\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(
        "help\n"
        "laptop ping -c 1 -W 2 -q 203.0.113.10\n"
        "conntrack\n"
        "printer ls\n"
        "laptop false\n"
        "exit\n"
    ))
    assert main(["up", "home", "--rules", str(rules)]) == 0
    out, _ = capfd.readouterr()
    assert "topology home is up" in out
    assert "enter: mnexec -a" in out
    assert "1 packets transmitted, 1 received" in out
    # MASQUERADE: the reply tuple goes to the gateway's outside address.
    icmp = [ln for ln in out.splitlines() if ln.startswith("icmp")]
    assert len(icmp) == 1 and "dst=203.0.113.1 " in icmp[0], out
    assert "'printer': expected HOST COMMAND" in out
    assert "natlab: exit status 1" in out
    assert out.rstrip().endswith("natlab: tearing down")
