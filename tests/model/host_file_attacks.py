"""An attacker's corpus: rule text that tries to make nft or iptables read (or run) a file of
the machine natlab runs on. Shared by the model tests (refused up front, docs/safety.md) and
the kernel tests (the tools run jailed: even unchecked text reaches no host file).

Each attack is built around a `Secrets` folder the test creates: a marker file holding a
random secret, a symlink to it, and a program that would copy the secret out if run.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from tests.model.test_bad_input import TWO


@dataclass(frozen=True)
class Secrets:
    """A folder of host files that no spec may reach, and the secret they hold."""

    folder: Path
    secret: str

    @property
    def marker(self) -> Path:
        return self.folder / "marker.txt"

    @property
    def link(self) -> Path:
        return self.folder / "link.nft"

    @property
    def program(self) -> Path:
        return self.folder / "modprobe.sh"

    @property
    def ran(self) -> Path:
        """The file the program creates if anything ever runs it."""
        return self.folder / "ran.txt"

    def leaked(self, *texts: str | bytes) -> bool:
        return any(self.secret in (t.decode(errors="replace") if isinstance(t, bytes) else t)
                   for t in texts)


def make_secrets(folder: Path) -> Secrets:
    folder.mkdir(parents=True, exist_ok=True)
    s = Secrets(folder, "natlab-secret-" + secrets.token_hex(12))
    s.marker.write_text(f"{s.secret}\nsecond line {s.secret}\n")
    s.link.symlink_to(s.marker)
    s.program.write_text(f"#!/bin/sh\ncat {s.marker} > {s.ran}\necho {s.secret}\n")
    s.program.chmod(0o755)
    return s


@dataclass(frozen=True)
class Attack:
    name: str
    field: str        # the spec field the refusal names
    syntax: str       # "nft" or "iptables"
    text: str         # the rule text


def attacks(s: Secrets) -> list[Attack]:
    """Rule texts, each reaching for the secret (or running the program) another way."""
    nat = "table ip t { chain c { type nat hook postrouting priority srcnat; masquerade; } }\n"
    nft = [
        ("nft-include-etc-shadow", 'include "/etc/shadow"\n'),
        ("nft-include-marker", f'include "{s.marker}"\n'),
        ("nft-include-relative", 'include "marker.txt"\n'),
        ("nft-include-dotdot", f'include "../{s.folder.name}/marker.txt"\n'),
        ("nft-include-glob", f'include "{s.folder}/*.txt"\n'),
        ("nft-include-proc-environ", 'include "/proc/self/environ"\n'),
        ("nft-include-proc-root", f'include "/proc/1/root{s.marker}"\n'),
        ("nft-include-symlink", f'include "{s.link}"\n'),
        ("nft-define-then-include", f'define f = "{s.marker}"\ninclude $f\n'),
        ("nft-include-after-rules", nat + f'include "{s.marker}"\n'),
        ("nft-include-after-semicolon", f'flush ruleset; include "{s.marker}"\n'),
        ("nft-include-no-space", f'include"{s.marker}"\n'),
        ("nft-include-continued", f'inc\\\nlude "{s.marker}"\n'),
        ("nft-include-in-chain", "table ip t {\n chain c {\n  include \"" + str(s.marker)
         + '"\n }\n}\n'),
    ]
    ipt = [
        ("ipt-modprobe-short", f"*nat\n-A POSTROUTING -M {s.program} -j MASQUERADE\nCOMMIT\n"),
        ("ipt-modprobe-long", f"*nat\n-A POSTROUTING --modprobe={s.program} -j MASQUERADE\n"
         "COMMIT\n"),
        ("ipt-modprobe-abbrev", f"*nat\n-A POSTROUTING --modp {s.program} -j MASQUERADE\n"
         "COMMIT\n"),
        ("ipt-modprobe-cluster", f"*nat\n-A POSTROUTING -4M {s.program} -j MASQUERADE\n"
         "COMMIT\n"),
        ("ipt-modprobe-quoted", f'*nat\n-A POSTROUTING "-M" "{s.program}" -j MASQUERADE\n'
         "COMMIT\n"),
        ("ipt-bpf-pinned", f"*filter\n-A INPUT -m bpf --object-pinned {s.marker} -j DROP\n"
         "COMMIT\n"),
    ]
    return ([Attack(n, "nft", "nft", t) for n, t in nft]
            + [Attack(n, "rules", "iptables", t) for n, t in ipt])


def _basic(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's): holds any text."""
    return json.dumps(text)


def spec_text(attack: Attack, *, host_rules: bool = False) -> str:
    """The two-host spec (tests.model.test_bad_input.TWO) carrying `attack`: in `nft` (with
    backend nft), in `rules`, or in `host_rules.a`."""
    if attack.syntax == "nft":
        return TWO.replace('rules = ""',
                           f'rules = ""\nbackend = "nft"\nnft = {_basic(attack.text)}')
    if host_rules:
        return TWO.replace("\n[[steps]]",
                           f"\n[host_rules]\na = {_basic(attack.text)}\n\n[[steps]]", 1)
    return TWO.replace('rules = ""', f"rules = {_basic(attack.text)}")
