"""The filesystem a rule tool sees: its own program and libraries, nothing of the host.

`nft -f -`, `iptables-restore` and their kin read text that comes from a spec, and nft can be
told to read files (`include "/etc/shadow"`) and print them in its error. `mnexec -a PID`
changes the network namespace only, so such a tool would see every file of the host. Each of
these tools therefore runs under bubblewrap (`bwrap`, Debian package bubblewrap) in a mount
namespace of its own, created for the one call and gone when it exits, whose root is an empty
tmpfs holding only:

- the program, at the path it has on the host (so a multi-call binary such as
  xtables-nft-multi still sees its own name), and the shared libraries `ldd` lists for it,
  every one bound read-only;
- for the iptables tools, their extension directory (`xtables/*.so`, loaded with dlopen) and
  those libraries' own libraries, read-only;
- for iptables-legacy, the one file `/proc/net/ip_tables_names` of its network namespace
  (iptables-legacy-save learns from it which tables exist), and no other part of /proc;
- `/etc/protocols` and `/etc/services` read-only (the public name tables behind `-p gre` or
  `dport ssh`), `/dev/null`, and an empty writable `/run` (iptables-legacy's lock file);
- when the command names `/dev/stdin` (`iptables-restore-translate -f /dev/stdin`, which
  cannot read a pipe), the call's standard input copied into the read-only file `/stdin`,
  named instead (there is no /proc for /dev/stdin to point into).

No `/proc`, `/sys`, `/etc/passwd`, home or work directory exists in there, so a path in a
ruleset names nothing of the host. The tool keeps only CAP_NET_ADMIN and CAP_NET_RAW (it
needs nothing else to talk netlink to its namespace's kernel), gets a minimal environment
(PATH, LC_ALL=C and the run's mark), a new session (no terminal to write to) and dies with
its parent. The network namespace is the one the caller's `mnexec -a PID` joined.

The library closure of a program is read once per process (`ldd`, a few milliseconds).
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
from collections.abc import Sequence

BWRAP = "bwrap"
# Tables the tools may look names up in: public, and the same on every Debian machine.
NAME_TABLES: tuple[str, ...] = ("/etc/protocols", "/etc/services")
XTABLES_DIRS: tuple[str, ...] = ("/usr/lib/x86_64-linux-gnu/xtables", "/usr/lib/xtables",
                                 "/lib/xtables")
# The programs that load or read rules and tables, and the ones that must see no host file.
JAILED_PROGRAMS: frozenset[str] = frozenset({
    "nft", "iptables-restore", "iptables-save", "iptables-legacy-restore",
    "iptables-legacy-save", "iptables-restore-translate", "conntrack",
})
STDIN_FILE = "/stdin"


class JailError(Exception):
    """A program cannot be jailed: it is not installed, or its libraries cannot be listed."""


def _ldd(paths: Sequence[str]) -> list[str]:
    """Every library (and the dynamic loader) `ldd` lists for `paths`, as the paths they are
    loaded from."""
    proc = subprocess.run(["ldd", *paths], capture_output=True, timeout=30,
                          env={"PATH": os.defpath, "LC_ALL": "C"})
    libs: list[str] = []
    for line in proc.stdout.decode(errors="replace").splitlines():
        words = line.split()
        if "=>" in words and len(words) > words.index("=>") + 1:
            target = words[words.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif words and words[0].startswith("/") and not words[0].endswith(":"):
            libs.append(words[0])
    if proc.returncode != 0 and not libs:
        raise JailError(f"ldd {' '.join(paths)} failed: "
                        + " ".join(proc.stderr.decode(errors='replace').split()))
    return libs


@functools.cache
def binds_for(program: str) -> tuple[str, ...]:
    """The bwrap arguments that place `program` (a name on PATH or a path) and everything it
    loads into an empty root. Cached: the answer does not change while natlab runs."""
    where = program if "/" in program else shutil.which(program)
    if where is None:
        raise JailError(f"{program} not found on PATH")
    where = os.path.abspath(where)
    real = os.path.realpath(where)
    objects = [real]
    extra_dirs: list[str] = []
    if os.path.basename(real).startswith("xtables-"):
        for d in XTABLES_DIRS:
            if os.path.isdir(d) and d not in extra_dirs:
                extra_dirs.append(d)
                objects.extend(sorted(glob.glob(os.path.join(d, "*.so"))))
    args: list[str] = ["--ro-bind", real, where]
    seen = {where}
    for lib in _ldd(objects):
        if lib not in seen:
            seen.add(lib)
            args += ["--ro-bind", os.path.realpath(lib), lib]
    for d in extra_dirs:
        args += ["--ro-bind", d, d]
    if os.path.basename(real).startswith("xtables-legacy"):
        # iptables-legacy-save lists the tables the namespace holds from this one file.
        args += ["--ro-bind-try", "/proc/self/net/ip_tables_names", "/proc/net/ip_tables_names"]
    for table in NAME_TABLES:
        if os.path.isfile(table):
            args += ["--ro-bind", table, table]
    return tuple(args)


def is_jailed(argv: Sequence[str]) -> bool:
    """Whether `argv` runs one of the programs that must see no host file."""
    return bool(argv) and os.path.basename(str(argv[0])) in JAILED_PROGRAMS


def wrap(argv: Sequence[str]) -> list[str]:
    """`argv` as a bubblewrap command line that runs it in an empty filesystem (see above).
    The caller runs the result in the host's network namespace (`mnexec -a PID ...`)."""
    args = [str(a) for a in argv]
    if not args:
        raise JailError("an empty command")
    program = args[0]
    full = [BWRAP, "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--cap-add", "CAP_NET_ADMIN", "--cap-add", "CAP_NET_RAW",
            *binds_for(program),
            "--dev-bind", "/dev/null", "/dev/null", "--tmpfs", "/run", "--chdir", "/"]
    if "/dev/stdin" in args[1:]:
        full += ["--ro-bind-data", "0", STDIN_FILE]
        args = [args[0], *(STDIN_FILE if a == "/dev/stdin" else a for a in args[1:])]
    where = program if "/" in program else shutil.which(program)
    return [*full, "--", os.path.abspath(where or program), *args[1:]]


def env(run_id: str | None, marker: str) -> dict[str, str]:
    """The whole environment of a jailed tool: nothing of natlab's own."""
    out = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    if run_id is not None:
        out[marker] = run_id
    return out
