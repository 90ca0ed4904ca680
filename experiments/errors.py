"""Errors a user can fix, kept apart from bugs.

`natlab` turns every `UserError` into one line on stderr (`natlab: <message>`) and exit status
2: a bad spec, a rule the model cannot read, a missing program, a command that needs root.
Any other exception is a bug in natlab and keeps its traceback (exit status 1).

The checks that run before a kernel command starts anything are in `experiments.preflight`;
how a run ends on a signal is in `experiments.ending`.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix. str() is one line, without the `natlab: ` prefix."""

    exit_status = 2


class InfrastructureError(UserError):
    """natlab's own machinery failed under a run (a helper process died, a command natlab
    needs failed, a namespace vanished) before anything could be recorded: not the spec's
    fault, so not exit status 2. Told in one line like a UserError, with exit status 4. (A
    failure once the traffic has started is recorded instead: verdict ERROR, same status.)"""

    exit_status = 4


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
