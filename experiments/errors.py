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
import signal
from collections.abc import Iterable

from experiments.backends import BACKEND, DEBIAN_PACKAGE, KERNEL_RUN_BINARIES, BackendName


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


def require_root(command: str, *, euid: int | None = None) -> None:
    """Raise NotRoot unless running as root (`euid` is for tests)."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise NotRoot(command)


def require_binaries(names: Iterable[str], *, path: str | None = None) -> None:
    """Raise MissingBinary for the first program in `names` that is not on PATH (or `path`)."""
    for name in names:
        if shutil.which(name, path=path) is None:
            raise MissingBinary(name, DEBIAN_PACKAGE.get(name, name))


def kernel_preflight(command: str, backends: Iterable[BackendName]) -> None:
    """Before a kernel command starts anything: root, and every program it will run."""
    require_root(command)
    require_binaries(KERNEL_RUN_BINARIES)
    for backend in dict.fromkeys(backends):
        require_binaries(BACKEND[backend].binaries)


# --- signals ----------------------------------------------------------------------------------

# SIGINT, SIGTERM and SIGHUP all end a run the same way: a `Signalled` (a KeyboardInterrupt, so
# every path that tears down on Ctrl-C tears down on these too), then exit status 128 + signal.
ENDING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []


class Signalled(KeyboardInterrupt):
    """The process got SIGINT, SIGTERM or SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    """The first ending signal raises `Signalled`; later ones are only recorded (teardown is
    already under way and must not be cut)."""
    _received.append(signum)
    if len(_received) == 1:
        raise Signalled(signum)


def handle_ending_signals() -> None:
    """Install `_on_signal` for SIGINT, SIGTERM and SIGHUP (main thread), except where the
    signal is ignored (started with `nohup`, or in the background by a shell): that choice of
    whoever started natlab is kept."""
    for signum in ENDING_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)


def signal_consumed() -> None:
    """The signal was dealt with and the program goes on (Ctrl-C stopped a command in `natlab
    up`'s shell): the next one raises again."""
    _received.clear()


def received_signal() -> int | None:
    """The first ending signal this process got, if any."""
    return _received[0] if _received else None


def signal_exit_status(default: int = signal.SIGINT) -> tuple[int, str]:
    """(exit status, message) for a run ended by a signal: 130 interrupted, 143 SIGTERM,
    129 SIGHUP."""
    signum = received_signal() or default
    words = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)",
             signal.SIGHUP: "hung up (SIGHUP)"}
    return 128 + signum, words.get(signal.Signals(signum), signal.Signals(signum).name)
