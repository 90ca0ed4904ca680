"""Kernel-side failures share one base, `KernelError` (argv, host, exit status, stderr), and
`natlab` shows them in one line with exit status 2; a bug keeps its traceback. No root: the
hosts and the kernel run are fakes."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from experiments import cli, session, shell
from experiments.cli import main
from experiments.kernel import conntrack, rules
from experiments.kernel.capture import CaptureError, read_raw_pcap
from experiments.kernel.conntrack import ObserveError
from experiments.kernel.rules import RulesError
from experiments.kernel.traffic import TrafficError
from topologies.hostexec import CommandError, KernelError


class FailingHost:
    """A HostHandle whose every command fails as `tool` would: exit 1, this stderr."""

    def __init__(self, stderr: str, returncode: int | None = 1) -> None:
        self.name = "gw"
        self.stderr = stderr
        self.returncode = returncode

    def run(self, argv: Sequence[str], **_: Any) -> subprocess.CompletedProcess[bytes]:
        raise CommandError(argv, self.name, self.returncode, self.stderr,
                           "" if self.returncode is not None else "timed out after 10 s")


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("natlab: ") and "Traceback" not in err
    return lines[0]


def test_every_kernel_side_error_is_a_kernel_error() -> None:
    for kind in (CommandError, RulesError, ObserveError, CaptureError, TrafficError):
        assert issubclass(kind, KernelError), kind


def test_a_refused_ruleset_keeps_command_host_status_and_stderr() -> None:
    host: Any = FailingHost("iptables-restore v1.8.9 (nf_tables): line 2 failed\n")
    with pytest.raises(RulesError) as info:
        rules.load_rules(host, "iptables", "*nat\n-A BOGUS\nCOMMIT\n")
    e = info.value
    assert (e.host, e.returncode, e.argv) == ("gw", 1, ("iptables-restore",))
    assert "line 2 failed" in e.stderr
    assert str(e).startswith("loading iptables rules on host gw: `iptables-restore` failed: ")
    assert str(e).endswith("line 2 failed")


def test_of_keeps_every_field_in_each_kind() -> None:
    base = CommandError(("nft", "-f", "-"), "gw", 1, "Error: syntax error")
    for kind in (CommandError, RulesError, ObserveError, CaptureError, TrafficError):
        e = kind.of(base)
        assert isinstance(e, kind) and isinstance(e, KernelError)
        assert (e.argv, e.host, e.returncode, e.stderr) == (base.argv, "gw", 1, base.stderr)
        assert "\n" not in str(e) and "gw" in str(e) and "syntax error" in str(e)


def test_a_failed_conntrack_command_is_an_observe_error() -> None:
    host: Any = FailingHost("conntrack v1.4.7 (conntrack-tools): Operation not permitted")
    with pytest.raises(ObserveError) as info:
        conntrack.snapshot(host)
    e = info.value
    assert e.argv == conntrack.LIST and e.host == "gw" and e.returncode == 1
    assert str(e) == ("[gw] `conntrack -L -f ipv4` exited with status 1: conntrack v1.4.7 "
                      "(conntrack-tools): Operation not permitted")
    host = FailingHost("", returncode=None)
    with pytest.raises(ObserveError, match=r"^\[gw\] `conntrack -F` timed out after 10 s$"):
        conntrack.flush(host)


def test_errors_without_a_command_still_read_as_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(b"\x00" * 24)
    with pytest.raises(CaptureError) as info:
        read_raw_pcap(path)
    assert info.value.argv == () and info.value.host == ""
    e = TrafficError("did not start", argv=("python3", "-m", "agent"), host="laptop",
                     returncode=1, stderr="Traceback ...\nImportError: no\n")
    assert str(e) == "[laptop] `python3 -m agent` did not start: Traceback ... ImportError: no"


@pytest.fixture
def kernel_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BaseException]]:
    """`natlab run` as root with every program present, its kernel run raising what the
    test puts in the list."""
    raised: list[BaseException] = []

    def run_on_kernel(spec: object, **_: object) -> object:
        raise raised[0]

    monkeypatch.setattr(cli, "kernel_preflight", lambda command, backends: None)
    monkeypatch.setattr(session, "run_on_kernel", run_on_kernel)
    yield raised


@pytest.mark.parametrize("error", [
    RulesError("loading iptables rules", ("iptables-restore",), "gw", "line 2 failed", 1,
               "iptables-restore: line 2 failed"),
    CommandError(("ip", "link", "add"), "gw", 2, "RTNETLINK answers: File exists"),
    ObserveError("exited with status 1", argv=conntrack.EVENTS, host="gw", returncode=1,
                 stderr="Operation not permitted"),
    CaptureError("did not report listening within 5 s", argv=("tcpdump",), host="gw"),
    TrafficError("did not start", argv=("python3",), host="laptop", stderr="ImportError\n"),
], ids=lambda e: type(e).__name__)
def test_run_shows_a_kernel_error_in_one_line(kernel_run: list[BaseException],
                                              error: KernelError,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    kernel_run.append(error)
    assert main(["run", "seed-dnat-udp"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "seed-dnat-udp.toml" in line and error.host in line
    assert " ".join(str(error).split()) in line


def test_run_keeps_the_traceback_of_a_bug(kernel_run: list[BaseException]) -> None:
    kernel_run.append(KeyError("a bug in natlab"))
    with pytest.raises(KeyError, match="a bug in natlab"):
        main(["run", "seed-dnat-udp"])


def test_up_shows_a_kernel_error_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    @contextlib.contextmanager
    def running(topology: object) -> Iterator[object]:
        raise CommandError(("ip", "link", "add", "x"), "gw", 2, "RTNETLINK answers: nope")
        yield  # pragma: no cover

    monkeypatch.setattr(shell, "kernel_preflight", lambda command, backends: None)
    monkeypatch.setattr(shell, "running", running)
    assert main(["up", "home"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == "natlab: [gw] `ip link add x` exited with status 2: RTNETLINK answers: nope"
