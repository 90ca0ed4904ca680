"""Fail early (issue 11, item 5): an output place where no bundle can be written and a sysctl
that no network namespace has are refused in one line (exit 2) before anything is built: no
run id is ever made, so no state file, namespace or link."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.spec import load_spec

SPECS = Path(__file__).parents[2] / "experiments" / "specs"


@pytest.fixture
def no_run_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building anything would first need a run id: fail the test if one is made."""
    import topologies.mininet_net

    def refuse() -> str:
        raise AssertionError("a run was started")

    monkeypatch.setattr(topologies.mininet_net, "new_run_id", refuse)


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    start = time.monotonic()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if not x.startswith("natlab: swept")]
    assert out == "" and len(lines) == 1 and "Traceback" not in err, err
    assert time.monotonic() - start < 5
    return lines[0]


@pytest.mark.usefixtures("no_run_allowed")
def test_out_that_cannot_take_a_bundle_is_refused_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, words in [(a_file, "is not a directory"), (a_file / "sub", "is not a directory"),
                       (Path("/proc"), "/proc is not a place"),
                       (Path("/proc/self/x"), "/proc is not a place"),
                       (Path("/sys/kernel/y"), "/sys is not a place")]:
        line = _refused(["run", "--out", str(out), "seed-dnat-udp"], capsys)
        assert line.startswith(f"natlab: --out {out}: ") and words in line, line
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere" / "deeper")
    line = _refused(["run", "--out", str(dangling / "x"), "seed-dnat-udp"], capsys)
    assert "dangling symbolic link" in line, line


def test_read_only_out_is_refused_first(tmp_path: Path) -> None:
    """A read-only file system (a read-only tmpfs in a private mount namespace)."""
    import subprocess

    from tests.kernel.natlab_process import NATLAB, REPO

    ro = tmp_path / "ro"
    ro.mkdir()
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs -o ro none "$1" && shift && exec "$@"', "sh", str(ro), *NATLAB,
         "run", "--out", str(ro / "results"), "seed-dnat-udp"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if not x.startswith("natlab: swept")]
    assert lines == [f"natlab: --out {ro / 'results'}: cannot write in {ro} (read-only or "
                     "no permission)"], proc.stderr


@pytest.mark.usefixtures("no_run_allowed")
def test_unknown_or_read_only_sysctl_is_refused_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (SPECS / "sysctl-timeouts.toml").read_text()
    assert '"net.netfilter.nf_conntrack_udp_timeout"' in text
    for name, words in [("net.netfilter.nf_conntrack_udp_timeot", "no such sysctl"),
                        ("net.ipv4.no_such_knob", "no such sysctl"),
                        ("net.ipv4.conf.wan0.no_such_knob", "no such sysctl")]:
        spec = tmp_path / f"{name}.toml"
        spec.write_text(text.replace('"net.netfilter.nf_conntrack_udp_timeout"', f'"{name}"'))
        load_spec(spec)  # the spec itself is valid: only the kernel can tell
        line = _refused(["run", "--out", str(tmp_path / "r"), str(spec)], capsys)
        assert line == f'natlab: {spec}: sysctls."{name}": {words} in a network namespace ' \
                       "on this kernel", line
    assert not (tmp_path / "r").exists()


def test_checking_sysctl_names_is_cheap() -> None:
    from experiments.kernel.sysctl_names import namespace_sysctls

    start = time.monotonic()
    known = namespace_sysctls()
    took = time.monotonic() - start
    assert "net.ipv4.ip_forward" in known and known["net.ipv4.ip_forward"]
    assert "net.ipv4.conf.default.rp_filter" in known
    print(f"one throwaway namespace, {len(known)} sysctls: {took * 1000:.1f} ms")
    assert took < 1.0
    assert os.geteuid() == 0
