"""Watching the gateway's conntrack table: snapshots (`conntrack -L`) and events (`conntrack -E`).

Snapshots keep the raw lines for the record and parse them with `nat.listing.parse_line` into
`nat.entry.Entry`, the very type the model renders, so kernel and model compare as values.
`conntrack -L` prints the entries on stdout and a summary on stderr; its exit status is
checked, and an empty table is a normal answer.

The event log runs `conntrack -E -o timestamp` in the gateway for the whole traffic phase. It
is "ready" only once its netlink socket has joined the conntrack multicast groups (read from
/proc/<pid>/net/netlink), and it stops only once a marker event sent after the traffic is in
its file, so no event of the run is lost at either end. The marker's own events are natlab's,
not the experiment's: `events()` and the bundle's events.txt (`event_text`) leave them out.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from nat.entry import Entry
from nat.listing import EntryPattern, parse_line, parse_pattern
from topologies.hostexec import CommandError, HostHandle, KernelError, terminate

EventType = Literal["NEW", "UPDATE", "DESTROY"]

LIST: tuple[str, ...] = ("conntrack", "-L", "-f", "ipv4")
FLUSH: tuple[str, ...] = ("conntrack", "-F")
# Line-buffered (stdbuf), so each event is in the file as soon as conntrack printed it.
EVENTS: tuple[str, ...] = ("stdbuf", "-oL", "conntrack", "-E", "-f", "ipv4", "-o", "timestamp")
# The end-of-log marker: an entry inserted by hand, with addresses no traffic of ours uses.
MARKER_SRC = "127.255.0.1"
MARKER_DST = "127.255.0.2"

NETLINK_NETFILTER = 12  # include/uapi/linux/netlink.h


def is_marker_line(line: str) -> bool:
    """Whether an event line is about natlab's end-of-log marker entry (its NEW, its
    DESTROY by `conntrack -D` or by its timeout): those addresses carry nothing else."""
    return f"src={MARKER_SRC} dst={MARKER_DST} " in line


def event_text(path: Path) -> str:
    """The event log as people get it in a bundle: conntrack's lines as printed, without the
    marker's. A last line without its newline is left out too: conntrack was stopped while
    printing it, after the marker's NEW (`drain`), so it is the marker's DESTROY (seen as
    a bare time stamp)."""
    if not path.exists():
        return ""
    text = path.read_text(errors="replace")
    lines = text.split("\n")[:-1]        # complete lines only
    return "".join(line + "\n" for line in lines if not is_marker_line(line))


class ObserveError(KernelError):
    """A conntrack command failed; str() is one line naming the command, host and message."""


def _one_line(text: bytes | str) -> str:
    s = text.decode(errors="replace") if isinstance(text, bytes) else text
    return "; ".join(" ".join(ln.split()) for ln in s.splitlines() if ln.strip())


def _is_summary(line: str) -> bool:
    return line.startswith("conntrack v") and "(conntrack-tools)" in line


def snapshot(host: HostHandle, *, timeout: float = 10.0) -> tuple[list[str], list[Entry]]:
    """`conntrack -L -f ipv4` inside `host`: the raw lines and the parsed entries (IPv6 is
    outside the model, so the kernel is asked for IPv4 only)."""
    try:
        proc = host.run(LIST, timeout=timeout)
    except CommandError as e:
        raise ObserveError.of(e) from None
    lines = [ln for ln in proc.stdout.decode().splitlines()
             if ln.strip() and not _is_summary(ln)]
    return lines, [parse_line(ln) for ln in lines]


def flush(host: HostHandle) -> None:
    """`conntrack -F` inside `host` (only that namespace's table)."""
    try:
        host.run(FLUSH)
    except CommandError as e:
        raise ObserveError.of(e) from None


@dataclass(frozen=True)
class ConntrackEvent:
    """One `conntrack -E -o timestamp` line. `time` is the event's wall-clock time (or, once a
    run rebased it, seconds since the run's start).

    Event lines leave fields out (a DESTROY has no mark, usually no timeout; none has use=),
    so the entry is an `EntryPattern`: the fields the line gave, None for the rest. It is
    None when the line could not be parsed (the reason is in `error`)."""

    time: float
    type: EventType
    line: str
    entry: EntryPattern | None
    error: str | None = None


_EVENT_RE = re.compile(
    r"^\[(?P<time>\d+\.\d+)\]\s+\[(?P<type>NEW|UPDATE|DESTROY)\]\s+(?P<rest>.*)$")
# Only in events that userspace caused (conntrack -I/-D/-F): "[USERSPACE] portid=N
# progname=NAME" at the end of the line. Not part of the entry.
_USERSPACE_RE = re.compile(r"\s*\[USERSPACE\].*$")


def parse_event_line(line: str) -> ConntrackEvent | None:
    """A line of `conntrack -E -o timestamp`; None for the summary and blank lines."""
    m = _EVENT_RE.match(line.strip())
    if m is None:
        return None
    rest = _USERSPACE_RE.sub("", m["rest"]).strip()
    etype: EventType = m["type"]  # type: ignore[assignment]
    try:
        entry: EntryPattern | None = parse_pattern(rest)
        error = None
    except ValueError as e:
        entry, error = None, str(e)
    return ConntrackEvent(float(m["time"]), etype, line.rstrip("\n"), entry, error)


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for fd in names:
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def netlink_socket_state(pid: int) -> tuple[int, int] | None:
    """(groups, rmem) of `pid`'s NETLINK_NETFILTER socket that listens to multicast groups,
    read from /proc/<pid>/net/netlink (the process's own namespace view); None if absent."""
    inodes = _socket_inodes(pid)
    try:
        text = Path(f"/proc/{pid}/net/netlink").read_text()
    except OSError:
        return None
    for row in text.splitlines()[1:]:
        cols = row.split()
        # sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
        if len(cols) >= 10 and cols[1] == str(NETLINK_NETFILTER) and cols[9] in inodes:
            groups = int(cols[3], 16)
            if groups:
                return groups, int(cols[4])
    return None


class EventLog:
    """`conntrack -E -o timestamp` in `host`, writing to `path`; a context manager."""

    def __init__(self, host: HostHandle, path: Path, *, ready_timeout: float = 5.0) -> None:
        self.host = host
        self.path = path
        self.ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._err_path = path.with_suffix(path.suffix + ".stderr")
        self._err: IO[bytes] | None = None
        self.drained: bool | None = None   # did stop() see its end marker in the file?

    def start(self) -> None:
        self._out = open(self.path, "wb")  # noqa: SIM115 - closed in stop()
        self._err = open(self._err_path, "wb")  # noqa: SIM115
        self._proc = self.host.popen(EVENTS, stdout=self._out, stderr=self._err)
        deadline = time.monotonic() + self.ready_timeout
        while netlink_socket_state(self._proc.pid) is None:
            if self._proc.poll() is not None:
                self._close_files()
                raise ObserveError(f"exited with status {self._proc.returncode}",
                                   argv=EVENTS, host=self.host.name,
                                   returncode=self._proc.returncode,
                                   stderr=_one_line(self._err_path.read_bytes()))
            if time.monotonic() > deadline:
                self.stop()
                raise ObserveError("did not subscribe to conntrack events within "
                                   f"{self.ready_timeout} s", argv=EVENTS, host=self.host.name)
            time.sleep(0.002)

    def _marker(self, op: str, port: int) -> tuple[str, ...]:
        argv = ("conntrack", op, "-p", "udp", "-s", MARKER_SRC, "-d", MARKER_DST,
                "--sport", "9", "--dport", str(port))
        return argv + (("-t", "5") if op == "-I" else ())

    def drain(self, timeout: float = 2.0) -> bool:
        """Make sure every event the kernel sent so far is in the file.

        Events travel in order on one netlink socket, so a marker entry is inserted
        (`conntrack -I`), and the log is complete up to now once the marker's NEW event is in
        the file. The marker is deleted at once; events() leaves its lines out."""
        port = secrets.randbelow(60000) + 1024
        try:
            self.host.run(self._marker("-I", port))
        except CommandError:
            return False
        needle = f"src={MARKER_SRC} dst={MARKER_DST} sport=9 dport={port} "
        deadline = time.monotonic() + timeout
        found = False
        while time.monotonic() < deadline:
            if needle in self.path.read_text(errors="replace"):
                found = True
                break
            time.sleep(0.002)
        with contextlib.suppress(CommandError):   # gone already: it has a 5-s timeout
            self.host.run(self._marker("-D", port))
        return found

    def stop(self) -> None:
        """Drain (see drain()), then SIGTERM our own conntrack process and wait for it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self.drained = self.drain()
            terminate(proc, 2.0)
        self._proc = None
        self._close_files()

    def _close_files(self) -> None:
        for f in (self._out, self._err):
            if f is not None:
                f.close()
        self._out = self._err = None

    def events(self) -> list[ConntrackEvent]:
        """Every event written so far (the whole run's after stop())."""
        if not self.path.exists():
            return []
        out: list[ConntrackEvent] = []
        for line in self.path.read_text(errors="replace").splitlines():
            ev = parse_event_line(line)
            if ev is not None and not is_marker_line(line):
                out.append(ev)
        return out

    def __enter__(self) -> EventLog:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
