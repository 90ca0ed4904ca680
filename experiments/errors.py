"""Errors a user can fix, kept apart from bugs.

`natlab` turns every `UserError` into one line on stderr (`natlab: <message>`) and exit status
2: a bad spec, a rule the model cannot read, a missing program, a command that needs root.
Any other exception is a bug in natlab and keeps its traceback (exit status 1).

The two checks here (root, programs on PATH) run before a kernel command starts anything, so
the user learns what to install or how to rerun before any namespace exists.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable


class UserError(Exception):
    """Something the user can fix. str() is one line, without the `natlab: ` prefix."""

    exit_status = 2


class NotRoot(UserError):
    """A kernel command was started without root."""

    def __init__(self, command: str) -> None:
        super().__init__(
            f"natlab {command} needs root: network namespaces, veth links, iptables/nft and "
            f"conntrack all need CAP_NET_ADMIN (try: sudo natlab {command} ...)"
        )
        self.command = command


class MissingBinary(UserError):
    """A program natlab runs is not installed."""

    def __init__(self, binary: str, package: str) -> None:
        super().__init__(
            f"{binary} not found on PATH: install the Debian package {package} "
            f"(apt-get install {package}), or run `make setup`"
        )
        self.binary = binary
        self.package = package


# The programs the kernel side runs, and the Debian package that provides each.
DEBIAN_PACKAGE: dict[str, str] = {
    "mnexec": "mininet",
    "ip": "iproute2",
    "ethtool": "ethtool",
    "sysctl": "procps",
    "conntrack": "conntrack",
    "tcpdump": "tcpdump",
    "iptables-restore": "iptables",
    "iptables-save": "iptables",
    "iptables-legacy-restore": "iptables",
    "iptables-legacy-save": "iptables",
    "iptables-restore-translate": "iptables",
    "nft": "nftables",
}

# What every kernel run needs, whatever the backend.
KERNEL_RUN_BINARIES: tuple[str, ...] = ("mnexec", "ip", "ethtool", "sysctl", "conntrack",
                                        "tcpdump")
# What each rules backend needs on top (restore to load, save to read back).
BACKEND_BINARIES: dict[str, tuple[str, ...]] = {
    "iptables": ("iptables-restore", "iptables-save"),
    "iptables-legacy": ("iptables-legacy-restore", "iptables-legacy-save"),
    "nft": ("nft", "iptables-restore-translate"),
}


def require_root(command: str, *, euid: int | None = None) -> None:
    """Raise NotRoot unless running as root (`euid` is for tests)."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise NotRoot(command)


def require_binaries(names: Iterable[str], *, path: str | None = None) -> None:
    """Raise MissingBinary for the first program in `names` that is not on PATH (or `path`)."""
    for name in names:
        if shutil.which(name, path=path) is None:
            raise MissingBinary(name, DEBIAN_PACKAGE.get(name, name))
