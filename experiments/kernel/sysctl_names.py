"""Checks a kernel run makes before anything is built: the spec's sysctl names.

A sysctl that does not exist in a network namespace (a typo, a module this kernel lacks, a
root-namespace-only knob) would otherwise fail the run after the topology is up. The names
that exist are read from /proc/sys/net inside one throwaway network namespace (`unshare -n`,
no topology; a few milliseconds, once per batch). `net.netfilter.*` appears only once the
kernel's conntrack module is loaded (the first rule that needs it loads it): while it is not,
those names are left to the run itself.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

from experiments.errors import UserError
from experiments.spec import Spec

_PER_INTERFACE = ("net.ipv4.conf.", "net.ipv6.conf.", "net.ipv4.neigh.", "net.ipv6.neigh.")


def namespace_sysctls() -> dict[str, bool]:
    """Every sysctl of a fresh network namespace: name -> writable."""
    try:
        proc = subprocess.run(["unshare", "-n", "find", "/proc/sys/net", "-type", "f",
                               "-printf", "%m %P\\n"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"cannot list a network namespace's sysctls (`unshare -n`): {e}") \
            from None
    if proc.returncode != 0:
        raise UserError("cannot list a network namespace's sysctls (`unshare -n find "
                        f"/proc/sys/net`): {' '.join(proc.stderr.split())}")
    out = {}
    for line in proc.stdout.splitlines():
        mode, _, rel = line.partition(" ")
        out["net." + rel.replace("/", ".")] = int(mode, 8) & 0o222 != 0
    return out


def _lookup_name(name: str) -> str:
    """Per-interface names (`net.ipv4.conf.wan0.rp_filter`) are checked as `default`'s: the
    topology's interfaces do not exist yet."""
    for prefix in _PER_INTERFACE:
        if name.startswith(prefix):
            rest = name[len(prefix):].split(".", 1)
            if len(rest) == 2 and rest[0] not in ("all", "default"):
                return f"{prefix}default.{rest[1]}"
    return name


def check_sysctl_names(specs: Iterable[Spec]) -> None:
    """Refuse (one line, naming the spec and the field) a sysctl that does not exist or is
    read-only in a network namespace of this kernel. No namespace is made when no spec sets
    a sysctl."""
    specs = [s for s in specs if s.sysctls]
    if not specs:
        return
    known = namespace_sysctls()
    netfilter = any(n.startswith("net.netfilter.") for n in known)
    for spec in specs:
        for name in spec.sysctls:
            writable = known.get(_lookup_name(name))
            if writable is None:
                if name.startswith("net.netfilter.") and not netfilter:
                    continue
                raise UserError(f"{spec.path}: sysctls.\"{name}\": no such sysctl in a network "
                                "namespace on this kernel")
            if not writable:
                raise UserError(f"{spec.path}: sysctls.\"{name}\": read-only in a network "
                                "namespace (it can be set only in the machine's own)")
