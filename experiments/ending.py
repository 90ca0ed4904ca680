"""How a run ends on a signal: SIGINT, SIGTERM and SIGHUP all end it the way Ctrl-C does.

The first ending signal raises `Signalled` (a KeyboardInterrupt, so every path that tears down
on Ctrl-C tears down on these too); later ones are only recorded, so teardown is not cut; the
exit status is 128 + the signal (130, 143, 129).
"""

from __future__ import annotations

import signal

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
