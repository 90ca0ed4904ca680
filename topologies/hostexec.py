"""Running commands inside one host's network namespace.

Commands are argument lists, run as `mnexec -a <pid> argv...` (mnexec joins the network and
mount namespaces of the process holding the host, then execs argv: the pid we wait on is the
command itself, so a timeout kills the right process). Exit codes are checked; a failure
raises `CommandError`, naming the host, the command and the kernel's message. It is a
`KernelError`, the one base of every kernel-side failure (rules refused, a conntrack, capture
or traffic program failed), which `natlab` shows in one line with exit status 2.

`nft`, the iptables loaders and savers and `conntrack` run jailed (`topologies/jail.py`): in a
mount namespace of their own whose root holds only the program and its libraries, so a path
in a spec's ruleset (`include "/etc/shadow"`) names no file of the host.

Every process started here carries `NATLAB_RUN=<run id>` in its environment so the sweeper can
find it even after the run's owner was killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any, Self

from topologies import jail
from topologies.names import ENV_MARKER

MNEXEC = "mnexec"


class KernelError(Exception):
    """The one base of kernel-side failures: a program natlab ran in a host failed, was
    missing or timed out, or a tool or the kernel refused what it was given. Not a bug in
    natlab: `natlab` shows str() (one line) with exit status 2. Carries the command (`argv`),
    the host (namespace) it ran in, its exit status (None when it never finished or never
    started) and its stderr; any of them may be empty when the failure was not one command's
    (a capture file that is not pcap names no command)."""

    def __init__(self, reason: str, *, argv: Sequence[str] = (), host: str = "",
                 returncode: int | None = None, stderr: str = "") -> None:
        self.argv = tuple(str(a) for a in argv)
        self.host = host
        self.returncode = returncode
        self.stderr = stderr
        self.reason = reason
        super().__init__(str(self))

    @classmethod
    def of(cls, e: KernelError) -> Self:
        """The same failure as this (more specific) kind, for a layer that names its own."""
        return cls(e.reason, argv=e.argv, host=e.host, returncode=e.returncode,
                   stderr=e.stderr)

    def __str__(self) -> str:
        detail = " ".join(self.stderr.split())
        if len(detail) > 300:
            detail = detail[:297] + "..."
        words = [f"[{self.host}]"] if self.host else []
        if self.argv:
            words.append(f"`{' '.join(self.argv)}`")
        words.append(self.reason)
        return " ".join(words) + (f": {detail}" if detail else "")


class CommandError(KernelError):
    """A command in a host failed, was missing, or timed out. `returncode` is None when the
    command never finished (timeout) or never started (missing binary)."""

    def __init__(
        self,
        argv: Sequence[str],
        host: str,
        returncode: int | None,
        stderr: str,
        reason: str = "",
    ) -> None:
        super().__init__(reason or f"exited with status {returncode}", argv=argv, host=host,
                         returncode=returncode, stderr=stderr)

    @classmethod
    def of(cls, e: KernelError) -> Self:
        return cls(e.argv, e.host, e.returncode, e.stderr, e.reason)


def _find(program: str) -> bool:
    if "/" in program:
        return os.access(program, os.X_OK)
    return shutil.which(program) is not None


class HostHandle:
    """A host's network namespace, reached through the pid of the process that holds it."""

    def __init__(self, name: str, pid: int, run_id: str | None = None) -> None:
        self.name = name
        self.pid = pid
        self.run_id = run_id
        self._children: list[subprocess.Popen[bytes]] = []

    def __repr__(self) -> str:
        return f"HostHandle({self.name!r}, pid={self.pid}, run_id={self.run_id!r})"

    def _prepare(self, argv: Sequence[str], env: dict[str, str] | None) -> tuple[list[str], Any]:
        args = [str(a) for a in argv]
        if not args:
            raise CommandError(args, self.name, None, "", "is an empty command")
        jailed = jail.is_jailed(args)
        for program in (MNEXEC, *((jail.BWRAP,) if jailed else ()), args[0]):
            if not _find(program):
                raise CommandError(args, self.name, None, "", f"cannot run: {program} not found")
        if jailed:
            try:
                return ([MNEXEC, "-a", str(self.pid), *jail.wrap(args)],
                        jail.env(self.run_id, ENV_MARKER))
            except jail.JailError as e:
                raise CommandError(args, self.name, None, str(e), "cannot be jailed") from None
        full_env = dict(os.environ if env is None else env)
        if self.run_id is not None:
            full_env[ENV_MARKER] = self.run_id
        return [MNEXEC, "-a", str(self.pid), *args], full_env

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float = 10.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run argv in this host and wait for it; stdout and stderr are captured.

        With `check` (the default) a non-zero exit raises CommandError. A timeout always
        raises CommandError (the command is killed first)."""
        full, env = self._prepare(argv, None)
        try:
            proc = subprocess.run(
                full,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                env=env,
            )
        except subprocess.TimeoutExpired as e:
            stderr = (e.stderr or b"").decode(errors="replace")
            raise CommandError(
                argv, self.name, None, stderr, f"timed out after {timeout} s"
            ) from None
        except OSError as e:
            raise CommandError(argv, self.name, None, str(e), "could not start") from None
        if check and proc.returncode != 0:
            raise CommandError(
                argv, self.name, proc.returncode, proc.stderr.decode(errors="replace")
            )
        # Report the command as the caller wrote it, not with the mnexec prefix.
        return subprocess.CompletedProcess(list(argv), proc.returncode, proc.stdout, proc.stderr)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start argv in this host without waiting. kwargs go to subprocess.Popen (stdout=...,
        env=...). The process is remembered so the network's teardown stops it."""
        full, env = self._prepare(argv, kwargs.pop("env", None))
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        try:
            proc: subprocess.Popen[bytes] = subprocess.Popen(full, env=env, **kwargs)
        except OSError as e:
            raise CommandError(argv, self.name, None, str(e), "could not start") from None
        self._children.append(proc)
        return proc

    @property
    def children(self) -> tuple[subprocess.Popen[bytes], ...]:
        """Processes started with popen that were not reaped by stop_children yet."""
        return tuple(self._children)

    def stop_children(self, grace: float = 1.0) -> None:
        """SIGTERM every popen'd process still running, SIGKILL those that outlive `grace`."""
        running = [p for p in self._children if p.poll() is None]
        for p in running:
            _signal(p, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in running:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(p, signal.SIGKILL)
                # A process stuck in the kernel is left to the teardown's final check.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5.0)
        for p in self._children:
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    stream.close()
        self._children.clear()


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop one process we started: SIGTERM, wait up to `timeout`, then SIGKILL and wait."""
    _signal(proc, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
