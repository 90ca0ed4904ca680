"""Host isolation (issue 6, item 2): the whole test session leaves the root namespace as it
found it.

A session fixture (`host_isolation`, autouse through tests/conftest.py) snapshots the root
network namespace before the first test and after the last one, and fails the session when
anything differs:

- `nft list ruleset`, `iptables-save` and `iptables-legacy-save` (comment lines, which carry
  a timestamp, left out);
- `net.ipv4.ip_forward`, the `forwarding` sysctls and every `net.netfilter.*` sysctl (except
  `nf_conntrack_count`, which moves with the host's own traffic);
- the conntrack entries of the root namespace that involve natlab's topology address ranges
  (192.168.1.0/24, 203.0.113.0/24): the host has traffic of its own, so only those count.

Loading a kernel module (the first rule that needs conntrack, anywhere) makes new
`net.netfilter.*` keys appear in every namespace: a key that appears while a module appeared
in /sys/module is the kernel's doing, not a change natlab made, and is reported, not failed;
so is a `nf_log.N` logger going from NONE to the module that just loaded (it registers itself
in every namespace). Any other change of value, and any key that disappears, fails.

The snapshot takes a command prefix, so the tests in tests/kernel/test_host_isolation.py can
prove on a namespace of their own that each kind of change is caught.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

TOPOLOGY_RANGES = (IPv4Network("192.168.1.0/24"), IPv4Network("203.0.113.0/24"))
SYSCTL_PATTERN = (r"^net\.(netfilter\.|ipv4\.ip_forward$|ipv4\.conf\.(all|default)\.forwarding$"
                  r"|ipv6\.conf\.(all|default)\.forwarding$)")
VOLATILE_SYSCTLS = frozenset({"net.netfilter.nf_conntrack_count"})


class SnapshotError(RuntimeError):
    """A command the snapshot needs failed."""


@dataclass(frozen=True)
class HostState:
    """What natlab must never change in a namespace it does not own."""

    nft: str
    iptables: str
    iptables_legacy: str
    sysctls: dict[str, str]
    conntrack: frozenset[str]     # flow identities in the topology ranges
    modules: frozenset[str]       # /sys/module, to tell module loading from changes


def _run(runner: Sequence[str], argv: Sequence[str], *, check: bool = True) -> str:
    proc = subprocess.run([*runner, *argv], capture_output=True, text=True, timeout=30,
                          check=False)
    if check and proc.returncode != 0:
        raise SnapshotError(f"`{' '.join(argv)}` failed ({proc.returncode}): "
                            f"{proc.stderr.strip()}")
    return proc.stdout


def _without_comments(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines() if not line.startswith("#"))


def _sysctls(runner: Sequence[str]) -> dict[str, str]:
    out = _run(runner, ["sysctl", "-a", "-r", SYSCTL_PATTERN], check=False)
    values = {}
    for line in out.splitlines():
        key, sep, value = line.partition(" = ")
        if sep and key not in VOLATILE_SYSCTLS:
            values[key] = " ".join(value.split())
    if "net.ipv4.ip_forward" not in values:
        raise SnapshotError(f"`sysctl -a` did not show net.ipv4.ip_forward: {out[:200]!r}")
    return values


def flow_identity(line: str) -> str | None:
    """A `conntrack -L` line reduced to what names the flow (protocol, both tuples), or None
    when no address of it is in a topology range. Timeouts, states and counters move."""
    words = line.split()
    if len(words) < 2:
        return None
    keep = [words[0]]
    involved = False
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key not in ("src", "dst", "sport", "dport", "type", "code", "id"):
            continue
        keep.append(word)
        if key in ("src", "dst"):
            try:
                addr = IPv4Address(value)
            except ValueError:
                continue
            involved = involved or any(addr in net for net in TOPOLOGY_RANGES)
    return " ".join(keep) if involved else None


def _conntrack(runner: Sequence[str]) -> frozenset[str]:
    proc = subprocess.run([*runner, "conntrack", "-L"], capture_output=True, text=True,
                          timeout=30, check=False)
    if proc.returncode != 0:
        # No conntrack table (the module never loaded) is an empty table.
        if not Path("/sys/module/nf_conntrack").exists():
            return frozenset()
        raise SnapshotError(f"`conntrack -L` failed ({proc.returncode}): {proc.stderr.strip()}")
    return frozenset(f for f in map(flow_identity, proc.stdout.splitlines()) if f is not None)


def snapshot(runner: Sequence[str] = ()) -> HostState:
    """The state of the namespace `runner` enters (`()`: our own, the root namespace)."""
    return HostState(
        nft=_run(runner, ["nft", "list", "ruleset"]),
        iptables=_without_comments(_run(runner, ["iptables-save"])),
        iptables_legacy=_without_comments(_run(runner, ["iptables-legacy-save"])),
        sysctls=_sysctls(runner),
        conntrack=_conntrack(runner),
        modules=frozenset(os.listdir("/sys/module")),
    )


def differences(before: HostState, after: HostState) -> tuple[list[str], list[str]]:
    """(changes, notes): what differs and fails, and what differs by a module load only."""
    changes: list[str] = []
    notes: list[str] = []
    for name in ("nft", "iptables", "iptables_legacy"):
        old, new = getattr(before, name), getattr(after, name)
        if old != new:
            changes.append(f"{name} ruleset changed:\n--- before\n{old}--- after\n{new}")
    for key in sorted(before.sysctls.keys() | after.sysctls.keys()):
        old_value, new_value = before.sysctls.get(key), after.sysctls.get(key)
        if old_value == new_value:
            continue
        loaded = after.modules > before.modules
        if old_value is None and loaded:
            notes.append(f"sysctl {key} = {new_value} appeared with a kernel module")
        elif old_value == "NONE" and key.startswith("net.netfilter.nf_log.") and loaded:
            notes.append(f"sysctl {key}: a newly loaded logger registered as {new_value}")
        elif old_value is None:
            changes.append(f"sysctl {key} appeared: {new_value}")
        elif new_value is None:
            changes.append(f"sysctl {key} disappeared (was {old_value})")
        else:
            changes.append(f"sysctl {key} changed: {old_value} -> {new_value}")
    for flow in sorted(after.conntrack - before.conntrack):
        changes.append(f"conntrack entry appeared: {flow}")
    for flow in sorted(before.conntrack - after.conntrack):
        changes.append(f"conntrack entry disappeared: {flow}")
    return changes, notes


@pytest.fixture(scope="session", autouse=True)
def host_isolation() -> Iterator[HostState | None]:
    """Snapshot the root namespace around the whole session; fail it on any change.
    Yields the snapshot taken before the first test (None when not root: nothing to check)."""
    if os.geteuid() != 0:
        yield None
        return
    before = snapshot()
    yield before
    changes, notes = differences(before, snapshot())
    for note in notes:
        print(f"host isolation: {note}")
    if changes:
        pytest.fail("the test session changed the root network namespace:\n"
                    + "\n".join(changes), pytrace=False)
