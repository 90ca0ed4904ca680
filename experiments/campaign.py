"""Many runs at once: up to N specs in forked worker processes, results in spec order.

Each worker owns its run (namespaces, captures, signal handling). On Ctrl-C, SIGTERM, SIGHUP
or an error every running worker is interrupted, tears its run down, and is waited for;
nothing is left behind and only complete results are reported. A worker's UserError,
interruption or bug is raised in the parent when that spec's turn comes, as if the specs had
run one by one.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TypeVar

from experiments.ending import ENDING_SIGNALS
from experiments.errors import UserError

T = TypeVar("T")

# What a worker sends back: ("ok", value) | ("user", message) | ("interrupted",) | ("bug", tb)
_Outcome = tuple[object, ...]


def in_order(count: int, jobs: int, one: Callable[[int], T]) -> Iterator[T]:
    """`one(i)` for i in 0..count-1, results in that order. With jobs > 1, up to `jobs` of
    them run at once, each in a forked worker (its result must pickle)."""
    if jobs <= 1 or count <= 1:
        for i in range(count):
            yield one(i)
        return
    ctx = multiprocessing.get_context("fork")
    running: dict[Connection, tuple[int, BaseProcess]] = {}
    proc: BaseProcess
    done: dict[int, _Outcome] = {}
    todo, turn = 0, 0
    try:
        while turn < count:
            while todo < count and len(running) < jobs:
                reader, writer = ctx.Pipe(duplex=False)
                sys.stdout.flush()
                sys.stderr.flush()
                # The ending signals stay blocked until the worker has its own handlers.
                signal.pthread_sigmask(signal.SIG_BLOCK, ENDING_SIGNALS)
                try:
                    proc = ctx.Process(target=_worker, args=(one, todo, writer))
                    proc.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, ENDING_SIGNALS)
                writer.close()
                running[reader] = (todo, proc)
                todo += 1
            for ready in wait(list(running)):
                assert isinstance(ready, Connection)
                i, proc = running.pop(ready)
                try:
                    done[i] = ready.recv()
                except EOFError:
                    proc.join()
                    done[i] = ("bug", f"the worker of spec #{i + 1} died ({proc.exitcode})")
                ready.close()
                proc.join()
            while turn in done:
                kind, *value = done.pop(turn)
                turn += 1
                if kind == "ok":
                    yield value[0]  # type: ignore[misc]
                elif kind == "user":
                    raise UserError(str(value[0]))
                elif kind == "interrupted":
                    raise KeyboardInterrupt
                else:
                    raise RuntimeError(f"a natlab worker failed:\n{value[0]}")
    finally:
        # Wait for their teardown; SIGINT, SIGTERM, SIGHUP meanwhile cannot cut it.
        previous = {s: signal.signal(s, _absorb) for s in ENDING_SIGNALS}
        try:
            for _, proc in running.values():
                if proc.is_alive() and proc.pid is not None:
                    os.kill(proc.pid, signal.SIGINT)
            for _, proc in running.values():
                proc.join()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _absorb(signum: int, frame: object) -> None:
    """Take a signal and do nothing. (Not SIG_IGN: a signal that arrived just before the switch
    would then be raised as "OSError: Signal N ignored due to race condition" wherever the
    program is, in the middle of a teardown.)"""


def _worker(one: Callable[[int], object], i: int, writer: Connection) -> None:
    """A forked worker: run item `i`, send back the outcome.

    The first ending signal raises KeyboardInterrupt (the run tears down) and turns every
    later one into a no-op, so at most one is ever raised; once the outcome is settled none
    is (a signal there used to escape as a traceback from the worker)."""
    working = True

    def interrupt_once(signum: int, frame: object) -> None:
        for s in ENDING_SIGNALS:  # a second signal must not cut teardown
            signal.signal(s, _absorb)
        if working:
            raise KeyboardInterrupt

    for s in ENDING_SIGNALS:
        signal.signal(s, interrupt_once)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, ENDING_SIGNALS)
    result: _Outcome = ("interrupted",)
    try:
        result = _outcome(one, i)
    except KeyboardInterrupt:   # the signal came while the outcome was being put together
        result = ("interrupted",)
    finally:
        working = False
    for s in ENDING_SIGNALS:
        signal.signal(s, _absorb)
    with contextlib.suppress(OSError):  # the parent is gone
        writer.send(result)
    writer.close()


def _outcome(one: Callable[[int], object], i: int) -> _Outcome:
    try:
        return ("ok", one(i))
    except UserError as e:
        return ("user", str(e))
    except KeyboardInterrupt:
        return ("interrupted",)
    except BaseException:  # noqa: BLE001 - a bug: its traceback goes to the parent
        return ("bug", traceback.format_exc())
