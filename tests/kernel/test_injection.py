"""No injection (issue 6, item 4): text from a spec is never executed.

Every string a spec can carry -- payloads, replies, rule comments, host rules, descriptions,
host and interface names, sysctl names and values, the spec's name -- is filled with shell
metacharacters and command substitutions that would each create a marker file if anything
ever handed them to a shell. Runs that can run do run (the payloads arrive byte for byte, the
comments sit in the kernel's ruleset verbatim), the others are refused with one line; no
marker file ever appears. The same holds for the line shell of `natlab up`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from experiments.cli import main
from tests.kernel.natlab_process import NATLAB, REPO, natlab_run, own_lines, state_files
from tests.model.test_bad_input import TWO


def tricks(marker: Path) -> list[str]:
    """Ways to smuggle `touch MARKER` into a shell command line."""
    m = str(marker)
    return [f"$(touch {m})", f"`touch {m}`", f"; touch {m}", f"| touch {m}", f"&& touch {m}",
            f"\ntouch {m}\n", f"' ; touch {m} ; '", f'" ; touch {m} ; "', f"$(touch${{IFS}}{m})",
            f";${{IFS}}touch${{IFS}}{m}", f"\\\"; touch {m} #"]


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text)


def test_every_trick_runs_when_a_shell_sees_it(tmp_path: Path) -> None:
    """The tricks are real: each one creates the marker in some shell quoting context."""
    marker = tmp_path / "shell"
    for trick in tricks(marker):
        fired = []
        for context in ("echo {}", "echo '{}'", 'echo "{}"'):
            subprocess.run(["sh", "-c", context.format(trick)], capture_output=True, check=False,
                           timeout=10)
            if marker.exists():
                fired.append(context)
                marker.unlink()
        assert fired, trick


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    m = tmp_path / "pwned"
    yield m
    assert not m.exists(), "spec text was executed"


def _payload_spec(path: Path, payload: str, comments: list[str], backend: str) -> Path:
    """Home topology: DNAT a UDP port to the laptop, a UDP and a TCP exchange whose data are
    the tricks, and one filter rule per trick with the trick as its comment (in the gateway
    and in a host)."""
    filters = "".join(f"-A FORWARD -p udp --dport {10000 + i} -m comment --comment {_toml(c)} "
                      "-j ACCEPT\n" for i, c in enumerate(comments))
    rules = ("*filter\n" + filters + "COMMIT\n*nat\n"
             "-A PREROUTING -i wan0 -p udp --dport 9999 -j DNAT --to-destination 192.168.1.8\n"
             "-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n")
    nft = ""
    if backend == "nft":
        accepts = "".join(f" udp dport {10000 + i} accept comment {_toml(c)}\n"
                          for i, c in enumerate(comments))
        nft = "nft = " + _toml(
            "table ip filter {\n chain forward { type filter hook forward priority filter;\n"
            + accepts + " }\n}\n"
            "table ip nat {\n chain prerouting { type nat hook prerouting priority dstnat;\n"
            ' iifname "wan0" udp dport 9999 dnat to 192.168.1.8\n }\n'
            " chain postrouting { type nat hook postrouting priority srcnat;\n"
            ' oifname "wan0" masquerade\n }\n}\n') + "\n"
    host_rules = "*filter\n" + filters.replace("FORWARD", "INPUT") + "COMMIT\n"
    path.write_text(f"""name = "injection-{backend}"
description = {_toml(payload)}
topology = "home"
backend = "{backend}"
rules = {_toml(rules)}
{nft}
[host_rules]
desktop = {_toml(host_rules)}

[[steps]]
action = "udp"
from = "desktop"
to = "192.168.1.9"
sport = 37611
dport = 9999
payload = {_toml(payload)}
reply = {_toml(payload[::-1])}

[[steps]]
action = "tcp"
from = "laptop"
to = "desktop"
sport = 40000
dport = 443
send = {_toml(payload)}
reply = {_toml(payload.upper())}
""")
    return path


@pytest.mark.parametrize("backend", ["iptables", "nft"])
def test_payloads_and_rule_comments_arrive_as_text(tmp_path: Path, marker: Path,
                                                   backend: str) -> None:
    payload = "".join(tricks(marker))
    # nft strings cannot hold a double quote at all (nor can iptables-restore-translate's
    # output for the host rules): those tricks go in the payloads only.
    comments = [t.replace("\n", " ") for t in tricks(marker)
                if backend != "nft" or '"' not in t]
    spec = _payload_spec(tmp_path / "inject.toml", payload, comments, backend)
    proc = natlab_run(["run", "--json", "--out", str(tmp_path / "results"), str(spec)])
    assert proc.returncode == 0, proc.stderr
    (result,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert result["verdict"] == "MATCH", result["diffs"]
    received = result["kernel"]["received"]
    assert any(r["proto"] == "udp" and r["payload"] == payload for r in received["laptop"])
    assert any(r["proto"] == "udp" and r["payload"] == payload[::-1]
               for r in received["desktop"])
    assert any(r["proto"] == "tcp" and r["payload"] == payload for r in received["desktop"])
    assert any(r["proto"] == "tcp" and r["payload"] == payload.upper()
               for r in received["laptop"])
    # The kernel holds the comments as text (iptables-save escapes quotes with backslashes).
    ruleset = (Path(result["bundle"]) / "ruleset.txt").read_text().replace("\\", "")
    for comment in comments:
        assert comment.replace("\\", "") in ruleset, comment


def _names_spec(tmp_path: Path, old: str, new: str) -> Path:
    assert old in TWO
    path = tmp_path / f"names-{len(list(tmp_path.iterdir()))}.toml"
    path.write_text(TWO.replace(old, new))
    return path


def test_names_and_sysctls_are_refused_or_inert(tmp_path: Path, marker: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Host, interface, spec, topology and checkpoint names, sysctl names and values with
    tricks in them. Names that reach the kernel are refused by the spec reader (one line,
    before anything is made); free text (a topology's name) and values only the kernel tools
    judge are run: the tool refuses them, or they are inert labels. No marker either way."""
    all_tricks = "".join(_toml(t)[1:-1] for t in tricks(marker))  # escaped for TOML
    cases = [
        ("[topology.hosts.a]", '[topology.hosts."a{t}"]'),
        ("interfaces = { eth0 =", 'interfaces = {{ "eth0{t}" ='),
        ('name = "bad"', 'name = "bad{t}"'),
        ("dport = 2000", 'dport = 2000\n[[steps]]\naction = "checkpoint"\nname = "c{t}"'),
        ('rules = ""', 'rules = ""\nsysctls = {{ "net.ipv4.{t}" = 1 }}'),
        ('to = "b"', 'to = "b{t}"'),
        ('via = "10.0.0.1"', 'via = "10.0.0.1{t}"'),
    ]
    refused = 0
    for old, new in cases:
        for trick in tricks(marker):
            path = _names_spec(tmp_path, old, new.format(t=_toml(trick)[1:-1]))
            assert main(["check", str(path)]) == 2, path.read_text()
            _, err = capsys.readouterr()
            assert len(err.splitlines()) == 1 and err.startswith(f"natlab: {path}: "), err
            refused += 1
    assert refused == len(cases) * len(tricks(marker))
    # Text that passes the reader goes to the kernel run as data.
    before = set(state_files())
    results = tmp_path / "results"
    for old, new, status in [
        ('name = "two"', f'name = "two{all_tricks}"', 0),      # a label, never a command
        ('rules = ""', f'rules = ""\nsysctls = {{ "net.ipv4.tcp_syncookies" = "1{all_tricks}" }}',
         2),                                                   # sysctl itself refuses it
    ]:
        path = _names_spec(tmp_path, old, new)
        assert main(["run", "--out", str(results), str(path)]) == status, path.read_text()
        _, err = capsys.readouterr()
        if status:
            lines = own_lines(err)
            assert len(lines) == 1 and lines[0].startswith(f"natlab: {path}: "), err
            assert "sysctl" in err
    assert not marker.exists()
    # every run of this process removed its state file (other tests' killed runs may be
    # there for a moment, until a natlab sweeps them)
    assert not {r for r, st in state_files().items()
                if r not in before and st.get("owner_pid") == os.getpid()}


def test_the_up_shell_runs_argument_lists(tmp_path: Path, marker: Path) -> None:
    lines = "".join(f"laptop echo {t.strip()}\n" for t in tricks(marker) if "\n" not in t.strip())
    proc = subprocess.run([*NATLAB, "up", "home", "--simple"], cwd=REPO, text=True,
                          input=lines + "exit\n", capture_output=True, timeout=60,
                          env={**os.environ}, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"$(touch {marker})" in proc.stdout  # echoed, not run
    assert f"`touch {marker}`" in proc.stdout
    assert proc.stdout.rstrip().endswith("natlab: tearing down")
