"""Bad input on the kernel side (issue 6, item 3): `natlab run` refuses every bad spec of the
corpus, a missing program and a user without root with exit status 2 and one line, and
leaves nothing behind: no state file, no link, no process, no bundle.

The corpus is tests/model/bad_specs plus tests/model/test_bad_input.py's BAD_INPUTS. Most are
refused before anything is made; rules only the kernel (or only the model) refuses are run
and refused after the kernel had its say, and the run is torn down.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.cli import main
from tests.kernel.natlab_process import (
    leftovers,
    natlab,
    own_lines,
    readable_copy,
    runs_owned_by,
)
from tests.model.test_bad_input import BAD_INPUTS, CORPUS_FILES, write_bad_input
from topologies.names import new_run_id

KERNEL_WORDS = ("iptables-restore", "nft", "sysctl", "`")  # how a kernel tool's refusal reads


def test_every_bad_spec_is_refused_by_run_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import topologies.mininet_net

    run_ids: list[str] = []

    def recorded() -> str:
        run_ids.append(new_run_id())
        return run_ids[-1]

    monkeypatch.setattr(topologies.mininet_net, "new_run_id", recorded)
    paths = list(CORPUS_FILES) + [write_bad_input(tmp_path, b) for b in BAD_INPUTS]
    assert len(paths) >= 50
    results = tmp_path / "results"
    unmodeled = tmp_path / "unmodeled"
    ran_on_kernel = loads = ran_unmodeled = 0
    for path in paths:
        loads += main(["check", str(path)]) == 0  # valid but for its rules: run on the kernel
        capsys.readouterr()
        assert main(["check", "--model", str(path)]) == 2, path
        _, check_err = capsys.readouterr()
        status = main(["run", "--json", "--out", str(unmodeled), str(path)])
        out, err = capsys.readouterr()
        if status != 2 and "not supported by the model" in check_err:
            # Rules the kernel takes but the model does not cover run on the kernel alone.
            assert json.loads(out)["verdict"] == "UNMODELED", (path, out, err)
            ran_unmodeled += 1
            continue
        assert status == 2, (path, err)
        lines = own_lines(err)
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith(f"natlab: {path}: "), lines[0]
        if lines[0] != check_err.strip():  # refused by a kernel tool, after a real run
            assert any(w in lines[0] for w in KERNEL_WORDS), lines[0]
            ran_on_kernel += 1
        assert out == ""
    assert ran_on_kernel >= 2  # the corpus has rules only the kernel refuses
    assert not results.exists() or not any(results.iterdir())
    assert ran_unmodeled >= 1  # rules-netmap: NETMAP is outside the model, not the kernel
    assert len(run_ids) == loads >= ran_on_kernel + ran_unmodeled  # nothing else made a run
    for run_id in run_ids:
        assert leftovers(run_id) == [], run_id


def _path_without(tmp_path: Path, missing: str) -> str:
    """A PATH of one directory holding a symlink to every program on the current PATH,
    except `missing`."""
    bindir = tmp_path / f"bin-without-{missing}"
    bindir.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = bindir / entry.name
            if entry.name != missing and not link.exists() and not link.is_symlink() \
                    and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    assert shutil.which(missing, path=str(bindir)) is None
    assert shutil.which("ip", path=str(bindir)) is not None
    return str(bindir)


@pytest.mark.parametrize(("missing", "package", "backend"), [
    ("conntrack", "conntrack", "iptables"),
    ("tcpdump", "tcpdump", "iptables"),
    ("mnexec", "mininet", "iptables"),
    ("nft", "nftables", "nft"),
    ("iptables-legacy-restore", "iptables", "iptables-legacy"),
])
def test_a_missing_program_is_named(tmp_path: Path, missing: str, package: str,
                                    backend: str) -> None:
    env = {**os.environ, "PATH": _path_without(tmp_path, missing)}
    popen = natlab(["run", "--backend", backend, "--out", str(tmp_path / "results"),
                    "seed-dnat-udp"], env=env)
    out, err = popen.communicate(timeout=120)
    proc = subprocess.CompletedProcess(popen.args, popen.returncode, out, err)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"natlab: {missing} not found on PATH: install the Debian package {package} "
        f"(apt-get install {package}), or run `make setup`"]
    assert proc.stdout == ""
    assert not (tmp_path / "results").exists()
    # No run was made: no state file of this natlab (other tests' killed runs may be there
    # for a moment, until a natlab sweeps them).
    assert not runs_owned_by([popen.pid])


@pytest.fixture(scope="module")
def readable_natlab() -> Iterator[tuple[list[str], dict[str, str], Path]]:
    """natlab copied where `nobody` can read it (the checkout may be under /root, 0700)."""
    dest = Path(tempfile.mkdtemp(prefix="nltest-readable-"))
    try:
        argv, env = readable_copy(dest)
        yield argv, env, dest
    finally:
        shutil.rmtree(dest, ignore_errors=True)


@pytest.mark.parametrize("command", [["run", "seed-dnat-udp"], ["clean"], ["up", "home"]])
def test_not_root_is_refused_with_one_line(
    readable_natlab: tuple[list[str], dict[str, str], Path], command: list[str]
) -> None:
    argv, env, where = readable_natlab
    proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           *argv, *command], cwd=where, text=True, capture_output=True,
                          timeout=60, env={**env, "HOME": str(where)}, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"natlab: natlab {command[0]} needs root: network namespaces, veth links, iptables/nft "
        f"and conntrack all need CAP_NET_ADMIN (try: sudo natlab {command[0]} ...)"]
    assert proc.stdout == ""
