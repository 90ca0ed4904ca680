"""A spec never reaches the host's files, on the kernel side (issue 11, item 1).

The rule tools run jailed (topologies/jail.py): an empty root with only their program and
libraries. Here the attacker's corpus (tests/model/host_file_attacks.py) goes straight to
`load_rules`, past the up-front check: whatever the tools do with it, the secret never shows
in their messages and the program never runs. A control shows the same include does read the
file when nft runs unjailed, so the test would see a leak. End to end, `natlab run` and
`natlab up --rules` refuse the corpus with exit status 2 and one line, and leave no bundle.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.backends import BACKENDS
from experiments.kernel.conntrack import snapshot
from experiments.kernel.rules import RulesError, clear_rules, load_rules, translate
from tests.kernel.natlab_process import natlab_run
from tests.model.host_file_attacks import Secrets, attacks, make_secrets, spec_text
from topologies import jail
from topologies.mininet_net import Network, running
from topologies.presets import preset


@pytest.fixture(scope="module")
def net() -> Iterator[Network]:
    with running(preset("home")) as n:
        yield n


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Secrets:
    s = make_secrets(tmp_path / "host")
    monkeypatch.chdir(s.folder)                         # relative includes would find it
    monkeypatch.setenv("NATLAB_TEST_SECRET", s.secret)  # and /proc/self/environ would too
    return s


def test_control_unjailed_nft_does_read_the_file(net: Network, secrets_dir: Secrets) -> None:
    """Without the jail, nft in the gateway's namespace reads and prints the host file."""
    proc = subprocess.run(["mnexec", "-a", str(net.gateway.pid), "nft", "-c", "-f", "-"],
                          input=f'include "{secrets_dir.marker}"\n'.encode(),
                          capture_output=True, timeout=10, check=False)
    assert secrets_dir.leaked(proc.stdout, proc.stderr)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_corpus_reaches_no_host_file_through_the_tools(
        net: Network, secrets_dir: Secrets, backend: str) -> None:
    gw = net.gateway
    for attack in attacks(secrets_dir):
        if (attack.syntax == "nft") != (backend == "nft") and attack.syntax == "nft":
            continue
        nft = attack.text if attack.syntax == "nft" else None
        rules = "" if nft is not None else attack.text
        try:
            loaded = load_rules(gw, backend, rules, nft)  # type: ignore[arg-type]
            said = " ".join([loaded.readback, loaded.fed, loaded.translation or ""])
        except RulesError as e:
            said = " ".join([str(e), e.stderr])
        assert not secrets_dir.leaked(said), (attack.name, said)
        assert not secrets_dir.ran.exists(), attack.name
        clear_rules(gw, backend)  # type: ignore[arg-type]


def test_the_jailed_tools_still_do_their_work(net: Network) -> None:
    text = "*nat\n-A POSTROUTING -o wan0 -p tcp --dport ssh -j MASQUERADE\nCOMMIT\n"
    assert "masquerade" in translate(net.gateway, text)
    for backend in BACKENDS:
        loaded = load_rules(net.gateway, backend, text)
        assert "22" in loaded.readback and "asquerade" in loaded.readback.lower(), backend
        clear_rules(net.gateway, backend)
    snapshot(net.gateway)


def test_the_jail_holds_no_host_file() -> None:
    """What a jailed tool is given: its program, libraries, name tables; no /proc, no /etc
    beyond the name tables, no home, no work directory."""
    for program in sorted(jail.JAILED_PROGRAMS):
        argv = jail.wrap([program])
        binds = [argv[i + 2] for i, a in enumerate(argv)
                 if a in ("--ro-bind", "--ro-bind-try", "--dev-bind")]
        for dest in binds:
            assert dest.startswith(("/usr/", "/lib", "/dev/null", "/proc/net/ip_tables_names",
                                    *jail.NAME_TABLES)), (program, dest)
        assert "--proc" not in argv and "--bind" not in argv


@pytest.mark.parametrize("name", ["nft-include-marker", "nft-include-relative",
                                  "nft-define-then-include", "ipt-modprobe-short"])
def test_natlab_run_refuses_before_building(name: str, secrets_dir: Secrets,
                                            tmp_path: Path) -> None:
    attack = next(a for a in attacks(secrets_dir) if a.name == name)
    spec = secrets_dir.folder / f"{name}.toml"
    spec.write_text(spec_text(attack))
    out = tmp_path / "results"
    proc = natlab_run(["run", "--out", str(out), str(spec)])
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(f"natlab: {spec}: ")
    assert not secrets_dir.leaked(proc.stdout, proc.stderr)
    assert not out.exists()


@pytest.mark.parametrize(("backend", "name"), [("nft", "nft-include-marker"),
                                               ("nft", "nft-include-glob"),
                                               ("iptables", "ipt-modprobe-long")])
def test_up_rules_refuses_before_building(backend: str, name: str,
                                          secrets_dir: Secrets) -> None:
    attack = next(a for a in attacks(secrets_dir) if a.name == name)
    rules = secrets_dir.folder / "rules.txt"
    rules.write_text(attack.text)
    proc = natlab_run(["up", "home", "--backend", backend, "--rules", str(rules)], timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"natlab: {rules}: --rules: line ")
    assert not secrets_dir.leaked(proc.stdout, proc.stderr)
